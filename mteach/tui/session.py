"""What the studio works on, without any widget: data, spec text, votes, gold, review log.

Kept free of textual so it can be tested (and reused) on its own. The app calls
``Session.analyze(text)`` in a worker thread and shows the ``Analysis`` it returns.
"""
from __future__ import annotations

import csv
import io
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..compiler.checker import load_spec
from ..compiler.spec import Spec
from ..engine.analysis import IncrementalStats, select_rows
from ..engine.gold import GoldRequest
from ..engine.incremental import IncrementalVotes
from ..engine.votes import batch_ids
from ..engine.datasets import open_source
from ..errors import DataError, Diagnostic, SpecError

GOLD_HEADER = ["id", "label", "reviewer", "time"]
SAMPLE_MODES = ("ranked", "uncovered", "conflicted", "random")
# The studio holds its rows in memory; past this many it studies a seeded sample. The
# refresh goal (a one-rule edit in under 1 s) is measured at this size.
DEFAULT_MAX_ROWS = 1_000_000


def gold_path_for(spec_path: Path) -> Path:
    """``specs/youtube_spam.mt`` → ``specs/youtube_spam.gold.csv``."""
    return spec_path.with_name(spec_path.stem + ".gold.csv")


@dataclass
class Analysis:
    """One checked version of the spec and what its rules do."""
    spec: Spec
    votes: np.ndarray            # (rows × rules) int8
    stats: pa.Table              # engine.analysis.rule_stats
    summary: object              # engine.analysis.Summary
    verdict: np.ndarray          # majority vote per row, -1 = none
    conflicted: np.ndarray       # bool per row
    evaluated: list              # rules re-applied for this version
    seconds: float
    warnings: list = field(default_factory=list)
    contributions: Optional[np.ndarray] = None  # label model (rows × rules), when available
    sample_of: Optional[int] = None  # the file's rows, when the studio holds a sample of them


@dataclass
class GoldProblems:
    unknown_labels: list = field(default_factory=list)   # (line number, id, label)
    unknown_ids: list = field(default_factory=list)      # (line number, id)
    malformed: list = field(default_factory=list)        # (line number, text)

    def __bool__(self):
        return bool(self.unknown_labels or self.unknown_ids or self.malformed)

    def describe(self) -> str:
        parts = []
        if self.unknown_labels:
            ex = ", ".join(f"line {n}: {lab!r}" for n, _, lab in self.unknown_labels[:3])
            parts.append(f"{len(self.unknown_labels)} line(s) with a label the spec lacks ({ex})")
        if self.unknown_ids:
            ex = ", ".join(f"line {n}: {i}" for n, i in self.unknown_ids[:3])
            parts.append(f"{len(self.unknown_ids)} id(s) not in the data ({ex})")
        if self.malformed:
            parts.append(f"{len(self.malformed)} malformed line(s) (line {self.malformed[0][0]})")
        return "; ".join(parts) + ". They are kept in the file and left out of the counts."


class ReviewLog:
    """The review gold file: ``id,label,reviewer,time``, appended, flushed and fsynced per label.

    It is never rewritten: lines this session cannot use (unknown label or id) stay
    in the file and are reported. Duplicate ids: the last line wins, and a line with an
    empty label takes the id's label back (``undo`` writes one; ``read_gold_file`` reads
    the empty label as missing, so gold files stay readable by every command).
    """

    def __init__(self, path: Path, reviewer: str):
        self.path = Path(path)
        self.reviewer = reviewer
        self.entries: dict = {}  # id -> label name (last wins), every readable line
        self.problems = GoldProblems()
        self.header = list(GOLD_HEADER)  # an existing file's own columns are kept when appending
        self.history: list = []  # (id, its label before) per label appended by this session

    def check_target(self) -> None:
        """Refuse a gold file that is a link leading out of its folder (the spec's): labels are
        appended to it, and a link to, say, ~/.ssh/authorized_keys must not receive them."""
        if not self.path.is_symlink():
            return
        real = Path(os.path.realpath(self.path))
        folder = Path(os.path.realpath(self.path.parent))
        if folder not in real.parents:
            raise DataError(f"{self.path}: is a link to {real}, outside the spec's folder {self.path.parent}; "
                            "gold labels are not written through it — replace the link with a file")

    def load(self, labels, known_ids: set) -> "ReviewLog":
        self.check_target()
        self.entries.clear()
        self.problems = GoldProblems()
        if not self.path.exists():
            return self
        text = self.path.read_text(encoding="utf-8", errors="replace")
        reader = csv.reader(io.StringIO(text))
        header = next(reader, None)
        if header is None:
            return self
        if [h.strip() for h in header[:2]] != ["id", "label"]:
            self.problems.malformed.append((1, ",".join(header)))
            return self
        self.header = [h.strip() for h in header]
        for n, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) < 2:
                self.problems.malformed.append((n, ",".join(row)))
                continue
            rid, label = row[0], row[1]
            if not label.strip():  # a taken-back label
                self.entries.pop(rid, None)
                continue
            if label not in labels:
                self.problems.unknown_labels.append((n, rid, label))
                continue
            if rid not in known_ids:
                self.problems.unknown_ids.append((n, rid))
            self.entries[rid] = label
        return self

    def append(self, row_id: str, label: str) -> None:
        """Write one label now: a killed session keeps every label already confirmed."""
        self.history.append((row_id, self.entries.get(row_id)))
        self._write(row_id, label)

    def undo(self) -> Optional[str]:
        """Take back this session's last label by appending a correction line (the label
        the id had before, or an empty one): returns the id, or None when none is left."""
        if not self.history:
            return None
        row_id, before = self.history.pop()
        self._write(row_id, before or "")
        return row_id

    def _write(self, row_id: str, label: str) -> None:
        self.check_target()
        new = not self.path.exists() or self.path.stat().st_size == 0
        needs_newline = False
        if not new:
            with open(self.path, "rb") as f:
                f.seek(-1, os.SEEK_END)
                needs_newline = f.read(1) not in (b"\n", b"\r")
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        if new:
            w.writerow(GOLD_HEADER)
        values = {"id": row_id, "label": label, "reviewer": self.reviewer,
                  "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        w.writerow([values.get(h, "") for h in (GOLD_HEADER if new else self.header)])
        with open(self.path, "a", encoding="utf-8", newline="") as f:
            if needs_newline:
                f.write("\n")
            f.write(buf.getvalue())
            f.flush()
            os.fsync(f.fileno())
        if label:
            self.entries[row_id] = label
        else:
            self.entries.pop(row_id, None)


class Session:
    """Data in memory, the spec's path and last good analysis, gold labels and the review log."""

    def __init__(self, spec_path, table: pa.Table, schema: pa.Schema, ids: pa.Array, *,
                 text_column: Optional[str] = None, base_gold: Optional[np.ndarray] = None,
                 reviewer: str = "", seed: int = 0, data_path=None, sample_of: Optional[int] = None):
        self.spec_path = Path(spec_path)
        self.data_path = Path(data_path) if data_path else None
        self.table = table
        self.schema = schema
        self.ids = ids  # string ids, one per row
        self.id_list = ids.to_pylist()
        self.row_of = {rid: i for i, rid in enumerate(self.id_list)}
        self.text_column = text_column
        self.base_gold = base_gold  # from --gold / --gold-column, label indices (-1 unknown)
        self.seed = seed
        self.sample_of = sample_of  # the file's rows when ``table`` is a sample of them
        self.engine = IncrementalVotes(table)
        self.rule_stats, self._stats_lock = IncrementalStats(), threading.Lock()
        self.review = ReviewLog(gold_path_for(self.spec_path), reviewer)
        self.labels: tuple = ()
        self.last: Optional[Analysis] = None
        self._order = np.random.default_rng(seed).permutation(table.num_rows)
        self.queue_path: Optional[Path] = None  # --queue: review exactly these rows, in this order
        self.skipped: set = set()
        self._excluded = None  # bool per row: reviewed or skipped
        self._suggest_data = None  # engine.suggest.SuggestData, built on first use
        self.guidance = None  # the last engine.suggest.Guidance: ranked rows, groups

    # -- opening -------------------------------------------------------------------------
    @classmethod
    def open(cls, spec_path, data_path, id_column=None, gold=None, gold_column=None, gold_map=None,
             reviewer=None, seed=0, queue=None, max_rows: int = DEFAULT_MAX_ROWS) -> "Session":
        """Read the data (raises ``DataError`` with a clear message) and the spec's labels.
        Past ``max_rows`` rows (0: no cap) a seeded sample of them (``studio_rows``)."""
        source = open_source(data_path)
        if id_column and id_column not in source.schema.names:
            from ..errors import did_you_mean
            raise DataError(f"{data_path}: no id column {id_column!r}{did_you_mean(id_column, source.schema.names)}"
                            f" (columns: {', '.join(source.schema.names)})")
        table, ids, total = studio_rows(source, id_column, max_rows, seed,
                                        lambda: _listed_ids(gold_path_for(Path(spec_path)), queue, gold))
        spec_path = Path(spec_path)
        if spec_path.is_dir():
            raise DataError(f"{spec_path}: is a folder; give a spec file (.mt)")
        if spec_path.exists():
            try:
                spec_path.read_text(encoding="utf-8")
            except UnicodeDecodeError as err:
                raise DataError(f"{spec_path}: is not UTF-8 text (byte {err.start}); save it as UTF-8") from None
            except OSError as err:
                raise DataError(f"{spec_path}: cannot read it: {err.strerror}") from None
        spec, labels = _spec_and_labels(spec_path, source.schema)
        request = GoldRequest(gold, gold_column, gold_map)
        request.check(source.schema, id_column, data_path)
        if request and not labels:
            raise DataError(f"{spec_path}: the spec has no readable labels line, so gold labels cannot be read")
        base_gold = request.resolve(labels, ids, table, data_path, id_column)
        text_column = _text_column(spec) if spec is not None else None
        reviewer = reviewer or os.environ.get("USER") or os.environ.get("USERNAME") or "unknown"
        s = cls(spec_path, table, source.schema, ids, text_column=text_column, base_gold=base_gold,
                reviewer=reviewer, seed=seed, data_path=data_path,
                sample_of=total if total > table.num_rows else None)
        s.labels = labels
        if labels:
            s.review.load(labels, set(s.row_of))
        if queue:
            s._order, s.queue_path = queue_rows(queue, s.row_of, data_path), Path(queue)
        return s

    def read_spec_text(self) -> str:
        try:
            return self.spec_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return ""

    # -- analysis ------------------------------------------------------------------------
    def check(self, text: str) -> Spec:
        """Check the editor's text against the data's schema; raises ``SpecError``."""
        return load_spec(self.spec_path, self.schema, text=text)

    def analyze(self, text: str, with_contributions: bool = True) -> Analysis:
        t0 = time.perf_counter()
        spec = self.check(text)
        votes = self.engine.votes(spec)
        evaluated = list(self.engine.last_evaluated)
        a = self._stats(spec, votes, evaluated, t0)
        if with_contributions and votes.shape[1]:
            a.contributions = label_model_contributions(spec, votes)
        return a  # the caller decides whether it is the current one: ``accept(a)``

    def accept(self, a: Analysis) -> None:
        """Make ``a`` the current analysis (called on the UI thread)."""
        self.last = a
        self.set_text_column(a.spec)
        if tuple(a.spec.labels) != tuple(self.labels):
            self.labels = tuple(a.spec.labels)
            self.review.load(self.labels, set(self.row_of))
            self._excluded = None

    def _stats(self, spec, votes, evaluated, t0) -> Analysis:
        labels = list(spec.labels)
        gold = self.gold(labels)
        with self._stats_lock:  # updated from the columns that changed since the last call
            s = self.rule_stats.update(votes, self.engine.column_keys(spec), spec.rule_names,
                                       [r.rule.label for r in spec.rules], labels, gold)
        return Analysis(spec, votes, s.rules, s.summary, s.verdict, s.conflicted, evaluated,
                        time.perf_counter() - t0, list(spec.warnings), sample_of=self.sample_of)

    def restat(self) -> Optional[Analysis]:
        """Recompute the statistics of the last analysis (gold changed); no rule re-applied."""
        if self.last is None:
            return None
        old = self.last
        a = self._stats(old.spec, old.votes, [], time.perf_counter())
        a.contributions = old.contributions
        self.last = a
        return a

    def gold(self, labels=None) -> Optional[np.ndarray]:
        """Gold label index per row: --gold/--gold-column, overridden by reviewed labels."""
        labels = list(labels if labels is not None else self.labels)
        if self.base_gold is None and not self.review.entries:
            return None
        gold = self.base_gold.copy() if self.base_gold is not None else np.full(self.table.num_rows, -1, np.int64)
        for rid, lab in list(self.review.entries.items()):  # a snapshot: the UI thread may append
            i = self.row_of.get(rid)
            if i is not None and lab in labels:
                gold[i] = labels.index(lab)
        return gold

    # -- rows ----------------------------------------------------------------------------
    def text_of(self, i: int) -> str:
        if self.text_column is None:
            return " ".join(str(v) for v in self.table.slice(i, 1).to_pylist()[0].values())
        value = self.table.column(self.text_column)[i].as_py()
        return "" if value is None else str(value)

    def set_text_column(self, spec: Spec) -> None:
        column = _text_column(spec)
        if column in self.table.column_names:
            self.text_column = column

    def filter_rows(self, a: Analysis, mode: str = "all", rule: Optional[int] = None,
                    label: Optional[int] = None, search: str = "") -> np.ndarray:
        """Row indices matching a filter: all | rule | conflicted | uncovered | label; then text search."""
        if (mode == "rule" and (rule is None or rule >= a.votes.shape[1])) or (mode == "label" and label is None):
            mode = "all"
        gold = self.gold(a.spec.labels) if mode == "wrong" else None
        if mode == "wrong" and gold is None:
            return np.zeros(0, dtype=np.int64)
        keep = select_rows(a.votes, mode, rule=rule, label=label, verdict=a.verdict, gold=gold)
        if search and self.text_column:
            col = self.table.column(self.text_column)
            hit = pc.fill_null(pc.match_substring(col, search, ignore_case=True), False)
            keep &= hit.to_numpy(zero_copy_only=False) if not isinstance(hit, pa.ChunkedArray) \
                else np.concatenate([c.to_numpy(zero_copy_only=False) for c in hit.chunks] or [np.zeros(0, bool)])
        if mode == "uncovered" and self.guidance is not None and self.guidance.groups:
            grouped = np.concatenate([g.rows for g in self.guidance.groups])  # largest group first
            grouped = grouped[grouped < len(keep)]
            rest = np.setdiff1d(np.flatnonzero(keep), grouped)
            return np.concatenate([grouped[keep[grouped]], rest])
        return np.flatnonzero(keep)

    def guide(self, a: Analysis, n: int = 10):
        """Suggestions for this analysis (engine.suggest.guide), with the session's gold."""
        from ..engine.suggest import SuggestData, guide
        if self._suggest_data is None:
            self._suggest_data = SuggestData(self.table, self.ids)
        return guide(a.spec, self._suggest_data, a.votes, gold=self.gold(a.spec.labels), n=n, seed=self.seed)

    # -- review --------------------------------------------------------------------------
    def _want(self, a: Analysis, mode: str) -> np.ndarray:
        if self.queue_path is not None:
            want = np.zeros(self.table.num_rows, dtype=bool)
            want[self._order] = True
            return want
        return select_rows(a.votes, mode if mode in ("uncovered", "conflicted") else "all")

    def excluded(self) -> np.ndarray:
        """Rows already reviewed (in the gold file) or skipped this session."""
        if self._excluded is None:
            ex = np.zeros(self.table.num_rows, dtype=bool)
            for rid in list(self.review.entries) + list(self.skipped):
                i = self.row_of.get(rid)
                if i is not None:
                    ex[i] = True
            self._excluded = ex
        return self._excluded

    def next_to_review(self, a: Analysis, mode: str) -> Optional[int]:
        """The next row of the seeded sample in ``mode`` not yet reviewed or skipped."""
        order = self._order
        if mode == "ranked" and self.guidance is not None and len(self.guidance.review_order) == len(order):
            order = self.guidance.review_order
        todo = order[self._want(a, mode)[order] & ~self.excluded()[order]]
        return int(todo[0]) if len(todo) else None

    def remaining(self, a: Analysis, mode: str) -> int:
        return int((self._want(a, mode) & ~self.excluded()).sum())

    def skip(self, i: int) -> None:
        self.skipped.add(self.id_list[i])
        self.excluded()[i] = True

    def record(self, i: int, label: str) -> None:
        self.review.append(self.id_list[i], label)
        self.excluded()[i] = True

    def undo(self) -> Optional[int]:
        """Take back the last label of this session; the row it was for (to review again)."""
        row_id = self.review.undo()
        i = self.row_of.get(row_id) if row_id is not None else None
        if i is not None:
            self.excluded()[i] = False
        return i

def studio_rows(source, id_column: Optional[str], max_rows: int, seed: int, keep=frozenset) -> tuple:
    """(table, string ids, rows in the file): every row when there are at most ``max_rows``
    (0: no cap); else a seeded random sample of ``max_rows`` rows, in file order, plus every
    row whose id is in ``keep()`` (reviewed, queued, gold: read only when sampling), read batch
    by batch so memory follows the sample, not the file. Without ``id_column`` the ids are row numbers in the
    whole file, so labels recorded on a sample name the same rows as on the full data."""
    total, held = source.num_rows, None
    if total is None:  # CSV, JSONL: count while reading, holding the rows while they fit
        total, held = 0, []
        for batch in source.batches():
            total += batch.num_rows
            if held is not None and max_rows and total > max_rows:
                held = None  # too many: a second pass takes the sample
            elif held is not None:
                held.append(batch)
    if total == 0:
        raise DataError(f"{source.path}: the file has a header but no rows")
    if not max_rows or total <= max_rows:
        table = pa.Table.from_batches(held, schema=source.schema) if held is not None else source.read_all()
        return table, pc.cast(batch_ids(table, id_column, source.path, 0), pa.string()), total
    picked = np.sort(np.random.default_rng(seed).choice(total, max_rows, replace=False))
    wanted = pa.array(sorted(keep()), pa.string())
    parts, offset = [], 0
    for batch in source.batches():
        mask = np.zeros(batch.num_rows, dtype=bool)
        mask[picked[(picked >= offset) & (picked < offset + batch.num_rows)] - offset] = True
        ids = pc.cast(batch_ids(batch, id_column, source.path, offset), pa.string())
        if len(wanted):
            mask |= pc.is_in(ids, value_set=wanted).to_numpy(zero_copy_only=False)
        offset += batch.num_rows
        if mask.any():
            rows = pa.array(np.flatnonzero(mask))
            parts.append((batch.take(rows), ids.take(rows)))
    table = pa.Table.from_batches([b for b, _ in parts], schema=source.schema)
    return table, pa.concat_arrays([i for _, i in parts]), total


def _listed_ids(*paths) -> frozenset:
    """The ids in the ``id`` column of each file that exists (the review log, a queue, a gold
    file): rows a sample must keep. Unreadable files are left to the readers that report them."""
    ids = set()
    for path in paths:
        if not path or not Path(path).is_file():
            continue
        try:
            ids.update(str(v) for v in open_source(path).read_all(["id"]).column("id").to_pylist() if v is not None)
        except (DataError, KeyError, pa.ArrowException):
            continue
    return frozenset(ids)


def queue_rows(path, row_of: dict, data_path) -> np.ndarray:
    """Row indices of a review queue file (a CSV with an ``id`` column, as ``mteach drift -o``
    writes it), in its order; an id the data does not have is an error naming its line."""
    import pyarrow.csv as pacsv
    try:
        table = pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(column_types={"id": pa.string()}))
    except FileNotFoundError:
        raise DataError(f"{path}: no such queue file") from None
    except (pa.ArrowInvalid, OSError) as err:
        raise DataError(f"{path}: cannot read the queue file: {str(err).splitlines()[0]}") from None
    if "id" not in table.column_names:
        raise DataError(f"{path}: a queue file needs an id column (found: {', '.join(table.column_names)})")
    rows = []
    for line, rid in enumerate(table.column("id").to_pylist(), start=2):
        if rid not in row_of:
            raise DataError(f"{path}, line {line}: id {rid!r} is not in {data_path}; give the data the queue "
                            "was drawn from (and the same --id)")
        rows.append(row_of[rid])
    if not rows:
        raise DataError(f"{path}: the queue file has no rows")
    return np.array(list(dict.fromkeys(rows)), dtype=np.int64)


def _spec_and_labels(spec_path: Path, schema) -> tuple:
    """(the spec or None, its labels), the labels read even when the spec has other errors."""
    try:
        spec = load_spec(spec_path, schema)
        return spec, tuple(spec.labels)
    except SpecError:
        pass
    except Exception:
        return None, ()
    try:
        from ..grammar import ast
        from ..grammar.parser import parse
        tree, _ = parse(spec_path.read_text(encoding="utf-8"), str(spec_path))
        for st in tree.statements:
            if isinstance(st, ast.Labels):
                return None, tuple(st.names)
    except Exception:
        pass
    return None, ()


def _text_column(spec: Spec) -> Optional[str]:
    """The column of the spec's first text field: the text shown for a row."""
    return spec.column(spec.text_fields[0]) if spec.text_fields else None


def label_model_contributions(spec: Spec, votes: np.ndarray) -> Optional[np.ndarray]:
    """Per-rule log-odds contributions from the label model ``[label_model]`` of mteach.toml
    names (as label and train fit it); None while it cannot be fitted (e.g. no rule votes
    yet, or mteach.toml has an error, which the Model pane reports)."""
    from ..engine.label_model import fit_for_spec
    from ..engine.ledger import label_model_params
    from ..settings import SettingsError
    from .components.model import studio_settings
    try:
        params = label_model_params(studio_settings().label_model)
        return np.asarray(fit_for_spec(spec, votes, **params).contributions(votes))
    except (DataError, SettingsError):
        return None


__all__ = ["Analysis", "Diagnostic", "ReviewLog", "Session", "SAMPLE_MODES", "gold_path_for"]
