"""What changed between two git revisions of a spec, and which rows change label."""
from __future__ import annotations

import contextlib
from typing import Optional

import numpy as np
import pyarrow as pa

from ..compiler.checker import load_spec
from ..compiler.evaluator import columns_needed, vote_matrix
from ..compiler.spec import Spec
from ..errors import DataError
from .apply import resolve_id_column
from .gitfacts import resolve_commit, spec_at_revision, spec_repo_path
from .datasets import open_source
from .io import DEFAULT_BATCH_ROWS
from .ledger import label_model_params, rule_content_key
from .votes import VoteSpool, vote_batches


def _labels_of(spec: Spec, votes: np.ndarray, seed: int, label_model_settings=None) -> np.ndarray:
    """Label index per row (-1 where no rule voted), from the label model of ``[label_model]``
    fitted on these votes (one batch of ``_LabelModelFit``)."""
    fit = _LabelModelFit(spec, seed, label_model_settings)
    fit.add(votes)
    return fit.fitted().labels(votes)


class _LabelModelFit:
    """A revision's label model, fitted on the vote-pattern counts of every batch
    (``label_model.VoteCounts``, as ``label`` fits it); ``labels(votes)`` then gives a batch's
    label indices (-1 where no rule voted; all -1 when no rule votes anywhere)."""

    def __init__(self, spec: Spec, seed: int, settings=None):
        from .label_model import VoteCounts  # scikit-learn is slow to import; only verbs that fit pay for it
        self.spec, self.seed, self.settings = spec, seed, settings
        self.counts, self.covered, self.model = VoteCounts(len(spec.rules)), 0, None

    def add(self, votes: np.ndarray) -> None:
        self.counts.add(votes)
        self.covered += int((votes != -1).any(axis=1).sum())

    def fitted(self) -> "_LabelModelFit":
        from .label_model import fit_counted
        if self.covered:
            self.model = fit_counted(self.spec, self.counts, **label_model_params(self.settings, self.seed))
        return self

    def labels(self, votes: np.ndarray) -> np.ndarray:
        if self.model is None:
            return np.full(len(votes), -1, np.int64)
        return np.where((votes != -1).any(axis=1), self.model.predict(votes), -1)


def diff_revisions(spec_path, rev_from: str, rev_to: str, data, id_column: Optional[str] = None,
                   seed: int = 0, sample: int = 10, threads: int = 2, label_model_settings=None,
                   batch_rows: int = DEFAULT_BATCH_ROWS) -> dict:
    """Rules added / removed / changed between two git revisions of a spec, and the rows
    whose label flips, counted by the rule changes responsible; labels from the label model of
    ``label_model_settings`` (``[label_model]`` of mteach.toml; None: its defaults).

    Streamed, memory bounded by the batch: a pass over the data applies both revisions batch
    by batch, fits each one's label model on its vote-pattern counts and spools the votes to
    disk (``VoteSpool``); a second pass over the spooled votes counts the rows that flip; the
    first ``sample`` of them are then read back (id and text) from the data."""
    root, rel = spec_repo_path(spec_path)
    source = open_source(data)
    id_column = resolve_id_column(source, id_column)
    with contextlib.ExitStack() as stack:
        s0, s1 = (load_spec(stack.enter_context(spec_at_revision(root, rel, rev)), source.schema)
                  for rev in (rev_from, rev_to))
        c0, c1 = resolve_commit(root, rev_from), resolve_commit(root, rev_to)
        fits = _LabelModelFit(s0, seed, label_model_settings), _LabelModelFit(s1, seed, label_model_settings)
        spools = [stack.enter_context(contextlib.closing(VoteSpool(len(spec.rules)))) for spec in (s0, s1)]
        # each batch's votes under both revisions, from one read of the data
        for batch in vote_batches(s0, source, id_column, columns=columns_needed(s1), threads=threads,
                                  batch_rows=batch_rows):
            for fit, spool, votes in zip(fits, spools, (batch.votes, vote_matrix(s1, batch.table))):
                fit.add(votes)
                spool.add(votes)
        if not fits[0].counts.rows:
            raise DataError(f"{source.path}: the file has a header but no rows")
        fit0, fit1 = (fit.fitted() for fit in fits)
        changes, renamed = _rule_changes(s0, s1)
        flips = _Flips(s0, s1, changes, sample)
        for v0, v1 in zip(*spools):
            flips.add(v0, v1, fit0.labels(v0), fit1.labels(v1))
    text_field = (s1.text_fields or s0.text_fields or [None])[0]
    spec_for_text = s1 if s1.text_fields else s0
    flips.read_kept(source, id_column, spec_for_text.column(text_field) if text_field is not None else None,
                    batch_rows)
    if list(s0.labels) != list(s1.labels):
        labels_note = f"the labels changed: {', '.join(s0.labels)} → {', '.join(s1.labels)}"
    else:
        labels_note = None
    added = [name for kind, name in changes if kind == "added"]
    removed = [name for kind, name in changes if kind == "removed"]
    changed = [name for kind, name in changes if kind == "changed"]

    def rule_info(spec, name):
        r = next(x for x in spec.rules if x.name == name)
        return {"rule": name, "label": r.rule.label, "file": rel, "line": r.rule.span.line,
                "source": r.rule.text}
    counted = flips.by_rule_change()
    return {"spec": rel, "from": {"rev": rev_from, "commit": c0, "rules": len(s0.rules), "spec_hash": s0.content_hash},
            "to": {"rev": rev_to, "commit": c1, "rules": len(s1.rules), "spec_hash": s1.content_hash},
            "labels_note": labels_note,
            "added": [rule_info(s1, x) for x in added], "removed": [rule_info(s0, x) for x in removed],
            "changed": [{"rule": x, "before": rule_info(s0, x), "after": rule_info(s1, x)} for x in changed],
            "renamed": renamed, "rows": flips.rows, "flipped": flips.flipped,
            "transitions": dict(sorted(flips.transitions.items())),
            "by_rule_change": counted, "label_model_reweighting": flips.reweighted,
            "sample": flips.samples(counted), "text_field": text_field}


def _rule_changes(s0: Spec, s1: Spec) -> tuple:
    """([(kind, rule name)] for the rules added, removed and changed, in that order, and the
    renamed ones): rules match by content first (a moved or renamed rule is not a change),
    then by name."""
    k0 = {r.name: rule_content_key(r) for r in s0.rules}
    k1 = {r.name: rule_content_key(r) for r in s1.rules}
    left0, left1 = dict(k0), dict(k1)
    renamed = []
    for n1, key in k1.items():
        if n1 in left0 and left0[n1] == key:
            left0.pop(n1)
            left1.pop(n1)
    for n1, key in list(left1.items()):
        match = next((n0 for n0, key0 in left0.items() if key0 == key and n0 not in left1), None)
        if match is not None:
            renamed.append({"from": match, "to": n1})
            left0.pop(match)
            left1.pop(n1)
    changes = ([("added", n) for n in left1 if n not in left0] + [("removed", n) for n in left0 if n not in left1]
               + [("changed", n) for n in left1 if n in left0])
    return changes, renamed


class _Flips:
    """The rows whose label flips between two revisions, counted batch by batch: in all, per
    transition ("SPAM → none"), per rule change that votes differently on them, those no rule
    change explains (the label model re-weighting), and the first ``sample`` of them."""

    def __init__(self, s0: Spec, s1: Spec, changes: list, sample: int):
        self.s0, self.s1, self.changes, self.sample = s0, s1, changes, sample
        self.names = (np.array(list(s0.labels) + [""], dtype=object), np.array(list(s1.labels) + [""], dtype=object))
        self.rows = self.flipped = self.reweighted = 0
        self.hits = np.zeros(len(changes), np.int64)
        self.moved = np.zeros(len(changes), np.int64)
        self.transitions: dict = {}
        self.kept: list = []  # the first flips: row, from, to, which changes moved it (then id, text)

    def add(self, v0, v1, lab0, lab1) -> None:
        """The next rows' votes and label indices under both revisions."""
        n = len(v0)
        none = np.full(n, -1, np.int8)
        col0 = lambda name: v0[:, self.s0.rule_names.index(name)] if name in self.s0.rule_names else none
        col1 = lambda name: v1[:, self.s1.rule_names.index(name)] if name in self.s1.rule_names else none
        names_0, names_1 = self.names[0][lab0], self.names[1][lab1]  # by name: a relabelled spec compares by meaning
        flipped = names_0 != names_1
        moved = np.zeros((len(self.changes), n), dtype=bool)
        for i, (kind, name) in enumerate(self.changes):
            a, b = col0(name), col1(name)
            moved[i] = {"changed": a != b, "added": b != -1, "removed": a != -1}[kind]
        hits = moved & flipped
        self.hits += hits.sum(axis=1)
        self.moved += moved.sum(axis=1)
        self.reweighted += int((flipped & ~hits.any(axis=0)).sum())
        flip_rows = np.flatnonzero(flipped)
        self.flipped += len(flip_rows)
        if len(flip_rows):
            keys = np.char.add(np.char.add(np.where(names_0[flip_rows] == "", "none", names_0[flip_rows]).astype(str),
                                           " → "),
                               np.where(names_1[flip_rows] == "", "none", names_1[flip_rows]).astype(str))
            values, counts = np.unique(keys, return_counts=True)
            for value, count in zip(values.tolist(), counts.tolist()):
                self.transitions[value] = self.transitions.get(value, 0) + count
        for r in flip_rows[: max(0, self.sample - len(self.kept))]:
            self.kept.append({"row": self.rows + int(r), "from": names_0[r] or None, "to": names_1[r] or None,
                              "moved": moved[:, r].copy(), "id": None, "text": None})
        self.rows += n

    def read_kept(self, source, id_column: Optional[str], text_column: Optional[str], batch_rows: int) -> None:
        """The id and text of each flipped row kept, read from the data (those columns only,
        up to the last row kept)."""
        wanted = np.array([k["row"] for k in self.kept], dtype=np.int64)
        columns = list(dict.fromkeys(c for c in (id_column, text_column) if c))
        start = 0
        for batch in (source.batches(columns=columns, batch_rows=batch_rows) if len(wanted) else ()):
            inside = wanted[(wanted >= start) & (wanted < start + batch.num_rows)]
            if len(inside):
                take = pa.array(inside - start)
                ids = batch.column(id_column).take(take).to_pylist() if id_column else inside.tolist()
                texts = batch.column(text_column).take(take).to_pylist() if text_column else [None] * len(inside)
                for row, row_id, text in zip(inside.tolist(), ids, texts):
                    self.kept[int(np.searchsorted(wanted, row))].update({"id": row_id, "text": text})
            start += batch.num_rows
            if start > wanted[-1]:
                break

    def by_rule_change(self) -> list:
        """Per rule change: flipped rows it votes differently on, and all rows it votes differently on."""
        counted = [{"rule": name, "change": kind, "flipped_rows": int(self.hits[i]),
                    "rows_voting_differently": int(self.moved[i])} for i, (kind, name) in enumerate(self.changes)]
        return sorted(counted, key=lambda c: (-c["flipped_rows"], c["rule"]))

    def samples(self, counted: list) -> list:
        """The flipped rows kept, each with the rule changes responsible (in ``counted``'s order)."""
        index = {name: i for i, (_, name) in enumerate(self.changes)}
        return [{"id": k["id"], "from": k["from"], "to": k["to"],
                 "rules": [c["rule"] for c in counted if c["flipped_rows"] and k["moved"][index[c["rule"]]]]
                 or ["(label model re-weighting)"], "text": k["text"]} for k in self.kept]
