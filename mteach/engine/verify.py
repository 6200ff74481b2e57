"""Re-run the spec version a ledger records (from git, or a given file) and compare."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..compiler.checker import load_spec
from ..compiler.evaluator import columns_needed
from ..errors import DataError
from .apply import ROW_NUMBER, resolve_id_column
from .gitfacts import repo_root, resolve_commit, spec_at_revision
from .datasets import open_source, source_fingerprint
from .io import DEFAULT_BATCH_ROWS
from .ledger import (Ledger, LedgerError, LedgerFacts, canonical_json, label_model_params, ledger_batches,
                     ledger_columns, ledger_metadata, ledger_rows, row_fields)
from .votes import VoteSpool, vote_batches


@dataclass
class Verification:
    identical: bool
    rows: int
    spec_hash_ok: bool
    data_ok: bool
    vote_differences: list = field(default_factory=list)   # {id, rule, recorded, now}
    label_differences: list = field(default_factory=list)  # {id, recorded, now, recorded_p, now_p}
    n_vote_differences: int = 0
    n_label_differences: int = 0
    notes: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def verify_ledger(ledger: Ledger, data, spec_path=None, repo=None, threads: int = 2, limit: int = 20,
                  batch_rows: int = DEFAULT_BATCH_ROWS) -> Verification:
    """Re-run the recorded spec version on ``data`` and compare with the ledger.

    The spec comes from git at the recorded commit (its folder is extracted with
    ``git archive``), or from ``spec_path`` when given (its content hash must match).
    """
    run = ledger.run
    git = run.get("git") or {}
    notes = []
    if spec_path is not None:
        return _verify_with(ledger, data, Path(spec_path), threads, limit, batch_rows, notes)
    if git.get("state") != "clean" or not git.get("commit"):
        why = "uncommitted changes" if git.get("state") == "dirty" else "a spec outside git"
        raise LedgerError(f"{ledger.path} was made from {why}, so no commit is recorded to re-run; "
                          "give the spec file with --spec to verify against it")
    root = Path(repo) if repo else _find_repo_for(ledger, data)
    with spec_at_revision(root, git["path_in_repo"], git["commit"]) as path:
        notes.append(f"spec {git['path_in_repo']} read from git at commit {git['commit'][:10]}")
        return _verify_with(ledger, data, path, threads, limit, batch_rows, notes)


def _find_repo_for(ledger, data) -> Path:
    """The repository holding the recorded commit: searched from the spec's folder as seen from
    the data (``spec_from_data``), the working folder, the ledger's folder and the data's folder
    (the ledger records no absolute path)."""
    commit = ledger.run["git"]["commit"]
    from_data = ledger.run.get("spec_from_data")
    candidates = [Path(data).parent / from_data] if isinstance(from_data, str) else []
    roots = []
    for candidate in candidates + [Path("."), Path(ledger.path or ".").parent, Path(data).parent]:
        root = repo_root(candidate) if candidate.exists() else None
        if root is not None and root not in roots:
            roots.append(root)
    for root in roots:
        with contextlib.suppress(DataError):
            resolve_commit(root, commit)
            return root
    if roots:
        return roots[0]  # says the commit is missing there
    raise DataError("cannot find the git repository of the spec; run from inside it or give --repo DIR")


def recorded_label_model(run: dict):
    """The ``[label_model]`` settings a ledger was labelled with (its kind, prior_strength and
    max_iter, as recorded in its run facts), so the re-run fits the same label model."""
    from ..settings import LabelModelSettings
    from .label_model import LABEL_MODELS
    recorded = (run.get("settings") or {}).get("label_model") or {}
    kind = next((k for k, cls in LABEL_MODELS.items() if cls.__name__ == recorded.get("class")), "mteach")
    params = recorded.get("params") or {}
    defaults = LABEL_MODELS[kind]().get_params()
    return LabelModelSettings(kind=kind, prior_strength=params.get("prior_strength", defaults.get("prior_strength", 10.0)),
                              max_iter=params.get("max_iter", defaults.get("max_iter", 100)))


def _verify_with(ledger, data, spec_path, threads, limit, batch_rows, notes) -> Verification:
    """Re-apply the spec batch by batch and compare with the ledger's rows, read in step (the
    ledger's rows are in the data's row order): a first pass counts the vote patterns (as
    ``label`` does, with the ledger's gold labels), checks the ids and spools the votes to
    disk; then the label model is refitted on the counts and a second pass compares votes,
    labels, probabilities, contributions and field values batch by batch, keeping the first
    ``limit`` differences; memory is bounded by the batch."""
    run = ledger.run
    source = open_source(data)
    spec = load_spec(spec_path, source.schema)
    spec_ok = spec.content_hash == run["spec_hash"]
    if not spec_ok:
        notes.append(f"the spec read now hashes to {spec.content_hash[:16]}…, the ledger records "
                     f"{run['spec_hash'][:16]}…")
    data_ok = source_fingerprint(source) == run.get("data_sha256")
    if not data_ok:
        notes.append(f"{data} is not the data file the ledger was made from (sha256 differs)")
    id_column = run.get("id_column")
    id_column = None if id_column == ROW_NUMBER and id_column not in source.schema.names else id_column
    id_column = resolve_id_column(source, id_column)
    result = Verification(False, 0, spec_ok, data_ok, notes=notes)
    with contextlib.closing(VoteSpool(len(spec.rules))) as spool:
        first = _first_pass(ledger, spec, source, id_column, spool, threads, batch_rows)
        result.rows = first.rows
        return _compare(ledger, spec, source, id_column, first, result, limit, batch_rows)


@dataclass
class _FirstPass:
    """What the first pass over the data found: the vote-pattern counts (with the ledger's
    gold labels, as ``label`` fitted the label model), the ledger's facts, the data's and the
    ledger's rows, whether they line up (same ids, same order), the votes spooled to disk."""
    counts: object
    facts: LedgerFacts
    spool: VoteSpool
    rows: int = 0
    ledger_rows: int = 0
    same_rows: bool = True
    has_gold: bool = False
    has_fields: bool = False


def _first_pass(ledger, spec, source, id_column, spool, threads, batch_rows) -> _FirstPass:
    from .label_model import VoteCounts  # scikit-learn is slow to import
    labels, names = list(spec.labels), _columns(ledger)
    first = _FirstPass(VoteCounts(len(spec.rules)), LedgerFacts(), spool, has_gold="gold" in names,
                       has_fields="fields" in names)
    recorded = _InStep(_ledger_batches(ledger, ["id"] + (["gold"] if first.has_gold else []), batch_rows))
    for batch in vote_batches(spec, source, id_column, batch_rows=batch_rows, threads=threads):
        old = recorded.take(batch.num_rows)
        first.rows += batch.num_rows
        first.same_rows = first.same_rows and old is not None and old.num_rows == batch.num_rows and \
            _same_ids(old.column("id"), batch.ids)
        gold = _gold_indices(old.column("gold"), labels) if first.has_gold and first.same_rows else None
        first.counts.add(batch.votes, gold)
        first.facts.add(batch.votes, gold)
        spool.add(batch.votes)
    if first.rows == 0:
        raise DataError(f"{source.path}: the file has a header but no rows")
    first.ledger_rows = recorded.count_all()
    first.same_rows = first.same_rows and first.ledger_rows == first.rows
    return first


def _compare(ledger, spec, source, id_column, first: _FirstPass, result, limit, batch_rows) -> Verification:
    """The second pass: the label model refitted on the counts, then the spooled votes, the
    ledger's rows and (for its ``fields`` column) the data's, batch by batch in step."""
    from .label_model import fit_counted  # scikit-learn is slow to import
    run, labels = ledger.run, list(spec.labels)
    has_gold, has_fields = first.has_gold, first.has_fields
    seed = run.get("settings", {}).get("seed", 0)
    model = fit_counted(spec, first.counts, **label_model_params(recorded_label_model(run), seed))
    if not first.same_rows:
        result.notes.append(f"the rows differ: the ledger has {first.ledger_rows:,} rows, the data {first.rows:,} "
                            "(or their ids differ in order)")
        return result
    new_model = ledger_metadata(spec, model, first.facts, git=False)[2]
    if ledger.labels != labels:
        result.notes.append(f"the labels differ: ledger {ledger.labels}, spec {labels}")
    # pass 2: votes rule by rule (by name: a rule missing on one side counts as abstaining
    # there), then labels and probabilities on rows the rules decide (the end model is not re-run)
    old_names, new_names = ledger.rule_names, spec.rule_names
    all_names = list(dict.fromkeys(old_names + new_names))
    first_votes = {name: [] for name in all_names}  # the first ``limit`` differences of each rule
    end_model_rows, contrib_same, fields_same = False, True, True
    columns = ["id", "votes", "contributions", "label", "probability", "decided_by"]
    columns += (["gold"] if has_gold else []) + (["fields"] if has_fields else [])
    recorded = _InStep(_ledger_batches(ledger, columns, batch_rows))
    # the data's columns as the votes' batches held them, for the fields the ledger records
    wanted = list(dict.fromkeys(columns_needed(spec) + ([id_column] if id_column else [])))
    data = _InStep(source.batches(columns=wanted, batch_rows=batch_rows)) if has_fields else None
    for votes in first.spool:
        n = len(votes)
        old = recorded.take(n)
        gold = _gold_indices(old.column("gold"), labels) if has_gold else None
        new = ledger_rows(spec, model, old.column("id"), votes, gold=gold)
        id_strings = pc.cast(old.column("id"), pa.string()).combine_chunks()
        old_votes = Ledger(old, ledger.run, ledger.rules, ledger.model, ledger.path).votes_matrix()

        def column(mat, names, name):
            return mat[:, names.index(name)] if name in names else np.full(n, -1, np.int8)
        for name in all_names:
            a, b = column(old_votes, old_names, name), column(votes, new_names, name)
            diff = np.flatnonzero(a != b)
            result.n_vote_differences += len(diff)
            kept = first_votes[name]
            for r in diff[: max(0, limit - len(kept))]:
                kept.append({"id": id_strings[int(r)].as_py(), "rule": name,
                             "recorded": ledger.labels[a[r]] if a[r] >= 0 else "abstain",
                             "now": labels[b[r]] if b[r] >= 0 else "abstain"})
        by_rules = pc.equal(old.column("decided_by"), "rules").to_numpy(zero_copy_only=False)
        end_model_rows = end_model_rows or bool(
            (~by_rules & pc.equal(old.column("decided_by"), "end_model").to_numpy(zero_copy_only=False)).any())
        now_rules = pc.equal(new.column("decided_by"), "rules").to_numpy(zero_copy_only=False)
        old_lab = pc.fill_null(old.column("label"), "").to_numpy(zero_copy_only=False)
        new_lab = pc.fill_null(new.column("label"), "").to_numpy(zero_copy_only=False)
        old_p = pc.fill_null(old.column("probability"), -1.0).to_numpy(zero_copy_only=False)
        new_p = pc.fill_null(new.column("probability"), -1.0).to_numpy(zero_copy_only=False)
        new_lab = np.where(now_rules | by_rules, new_lab, old_lab)
        new_p = np.where(now_rules | by_rules, new_p, old_p)
        diff = np.flatnonzero((old_lab != new_lab) | (old_p != new_p))
        result.n_label_differences += len(diff)
        for r in diff[: max(0, limit - len(result.label_differences))]:
            result.label_differences.append({"id": id_strings[int(r)].as_py(), "recorded": old_lab[r] or None,
                                             "now": new_lab[r] or None, "recorded_probability": _p(old_p[r]),
                                             "now_probability": _p(new_p[r])})
        old_c = old.column("contributions").combine_chunks().flatten().field("contribution")
        new_c = new.column("contributions").combine_chunks().flatten().field("contribution")
        contrib_same = contrib_same and len(old_c) == len(new_c) and \
            pc.all(pc.equal(old_c, new_c)).as_py() in (True, None)
        # the rows' text as the audit page shows it (a ledger with a fields column)
        fields_same = fields_same and (not has_fields or old.column("fields").combine_chunks().equals(
            row_fields(spec, data.take(n))))
    result.vote_differences = [d for name in all_names for d in first_votes[name]][:limit]
    if end_model_rows:
        result.notes.append("rows decided by the end model are not re-checked (verify re-runs the rules "
                            "and the label model)")
    if not contrib_same and not result.n_vote_differences:
        result.notes.append("the rules' log-odds contributions differ (the label model's fit changed)")
    if _model_differs(ledger.model, new_model):
        result.notes.append("the label model's parameters differ from the recorded ones")
    if not fields_same:
        result.notes.append("the rows' field values recorded in the ledger (the text the audit page shows) "
                            "differ from the data's")
    result.identical = (result.spec_hash_ok and result.data_ok and result.n_vote_differences == 0 and
                        result.n_label_differences == 0 and contrib_same and ledger.labels == labels and
                        not _model_differs(ledger.model, new_model) and fields_same)
    return result


def _ledger_batches(ledger: Ledger, columns: list, batch_rows: int) -> Iterator[pa.RecordBatch]:
    """A ledger's rows (``columns`` of them) in batches: an opened ledger's (a file or a
    partitioned one) read a batch at a time, one in memory sliced."""
    if ledger.streamed:
        return ledger_batches(ledger.path, columns, batch_rows)
    return iter(ledger.table.select(columns).to_batches(max_chunksize=batch_rows))


class _InStep:
    """Rows from ``batches``, handed out in slices of the lengths asked for (the data's batches
    and the ledger's row groups fall at different rows)."""

    def __init__(self, batches: Iterator[pa.RecordBatch]):
        self.batches, self.pending, self.rows = iter(batches), [], 0

    def take(self, n: int) -> Optional[pa.Table]:
        """The next ``n`` rows (fewer at the end; None past it)."""
        held = sum(b.num_rows for b in self.pending)
        while held < n:
            batch = next(self.batches, None)
            if batch is None:
                break
            self.pending.append(batch)
            held += batch.num_rows
            self.rows += batch.num_rows
        if not held:
            return None
        table = pa.Table.from_batches(self.pending)
        self.pending = table.slice(n).to_batches() if held > n else []
        return table.slice(0, n)

    def count_all(self) -> int:
        """The rows: those handed out or held, and the rest, read to count them."""
        for batch in self.batches:
            self.rows += batch.num_rows
        return self.rows


def _columns(ledger: Ledger) -> list:
    """The ledger's column names (a streamed one's from its file's footer)."""
    return ledger_columns(ledger.path) if ledger.streamed else ledger.table.column_names


def _same_ids(recorded, now) -> bool:
    return len(recorded) == len(now) and pc.all(pc.equal(pc.cast(recorded, pa.string()),
                                                          pc.cast(now, pa.string()))).as_py() is True


def _gold_indices(gold, labels) -> np.ndarray:
    """The ledger's gold label names as label indices (-1 unknown)."""
    gold = gold.combine_chunks() if isinstance(gold, pa.ChunkedArray) else gold
    idx = pc.index_in(gold, value_set=pa.array(list(labels), pa.string()))
    return pc.fill_null(idx, -1).to_numpy(zero_copy_only=False).astype(np.int64)


def _p(x):
    return None if x < 0 else float(x)


def _model_differs(a: dict, b: dict) -> bool:
    return any(canonical_json(a.get(k)) != canonical_json(b.get(k)) for k in ("baseline", "weights", "accuracy"))
