"""What changed between two git revisions of a spec, and which rows change label."""
from __future__ import annotations

from typing import Optional

import numpy as np
import pyarrow as pa

from ..compiler.checker import load_spec
from ..compiler.spec import Spec
from .apply import resolve_id_column
from .gitfacts import resolve_commit, spec_at_revision, spec_repo_path
from .io import open_data
from .ledger import fit_label_model, rule_content_key
from .votes import collect_votes


def _labels_of(spec: Spec, votes: np.ndarray, seed: int, label_model_settings=None) -> np.ndarray:
    """Label index per row (-1 where no rule voted), from the label model of ``[label_model]``."""
    covered = (votes != -1).any(axis=1)
    if not covered.any():
        return np.full(len(votes), -1, np.int64)
    model = fit_label_model(spec, votes, None, seed, label_model_settings)
    return np.where(covered, model.predict(votes), -1)


def diff_revisions(spec_path, rev_from: str, rev_to: str, data, id_column: Optional[str] = None,
                   seed: int = 0, sample: int = 10, threads: int = 2, label_model_settings=None) -> dict:
    """Rules added / removed / changed between two git revisions of a spec, and the rows
    whose label flips, counted by the rule changes responsible; labels from the label model of
    ``label_model_settings`` (``[label_model]`` of mteach.toml; None: its defaults)."""
    root, rel = spec_repo_path(spec_path)
    source = open_data(data)
    id_column = resolve_id_column(source, id_column)
    sides = {}
    for side, rev in (("from", rev_from), ("to", rev_to)):
        with spec_at_revision(root, rel, rev) as path:
            spec = load_spec(path, source.schema)
            batch = collect_votes(spec, source, id_column, threads=threads)
            ids, votes = batch.ids, batch.votes
            sides[side] = (spec, ids, votes, resolve_commit(root, rev))
    (s0, ids, v0, c0), (s1, _, v1, c1) = sides["from"], sides["to"]
    if list(s0.labels) != list(s1.labels):
        labels_note = f"the labels changed: {', '.join(s0.labels)} → {', '.join(s1.labels)}"
    else:
        labels_note = None
    # match rules: same content first (a moved or renamed rule is not a change), then same name
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
    changed = [n for n in left1 if n in left0]
    added = [n for n in left1 if n not in left0]
    removed = [n for n in left0 if n not in left1]

    def rule_info(spec, name):
        r = next(x for x in spec.rules if x.name == name)
        return {"rule": name, "label": r.rule.label, "file": rel, "line": r.rule.span.line,
                "source": r.rule.text}
    names0, names1 = s0.rule_names, s1.rule_names
    n = len(ids)
    none = np.full(n, -1, np.int8)
    col0 = lambda name: v0[:, names0.index(name)] if name in names0 else none
    col1 = lambda name: v1[:, names1.index(name)] if name in names1 else none
    # labels as names so a relabelled spec still compares by meaning
    lab0, lab1 = (_labels_of(s0, v0, seed, label_model_settings), _labels_of(s1, v1, seed, label_model_settings))
    names_0 = np.array(list(s0.labels) + [""], dtype=object)[lab0]
    names_1 = np.array(list(s1.labels) + [""], dtype=object)[lab1]
    flipped = names_0 != names_1
    changes = ([("added", x, none, col1(x)) for x in added] + [("removed", x, col0(x), none) for x in removed]
               + [("changed", x, col0(x), col1(x)) for x in changed])
    responsible_any = np.zeros(n, dtype=bool)
    counted = []
    for kind, name, a, b in changes:
        moved = {"changed": a != b, "added": b != -1, "removed": a != -1}[kind]
        hits = flipped & moved
        responsible_any |= hits
        counted.append({"rule": name, "change": kind, "flipped_rows": int(hits.sum()),
                        "rows_voting_differently": int(moved.sum())})
    counted.sort(key=lambda c: (-c["flipped_rows"], c["rule"]))
    reweighted = int((flipped & ~responsible_any).sum())
    flip_rows = np.flatnonzero(flipped)
    text_field = (s1.text_fields or s0.text_fields or [None])[0]
    spec_for_text = s1 if s1.text_fields else s0
    samples = []
    if len(flip_rows) and sample > 0:
        take = flip_rows[:sample]
        texts = None
        if text_field is not None:
            column = spec_for_text.column(text_field)
            texts = source.read_all([column]).column(column).take(pa.array(take)).to_pylist()
        id_list = ids.take(pa.array(take)).to_pylist()
        for i, r in enumerate(take):
            why = [c["rule"] for c in counted if _moved(c, col0, col1, int(r))]
            samples.append({"id": id_list[i], "from": names_0[r] or None, "to": names_1[r] or None,
                            "rules": why or ["(label model re-weighting)"],
                            "text": texts[i] if texts is not None else None})
    transitions = {}
    if len(flip_rows):
        keys = np.char.add(np.char.add(np.where(names_0[flip_rows] == "", "none", names_0[flip_rows]).astype(str),
                                       " → "),
                           np.where(names_1[flip_rows] == "", "none", names_1[flip_rows]).astype(str))
        values, counts = np.unique(keys, return_counts=True)
        transitions = {str(v): int(c) for v, c in zip(values, counts)}
    return {"spec": rel, "from": {"rev": rev_from, "commit": c0, "rules": len(s0.rules), "spec_hash": s0.content_hash},
            "to": {"rev": rev_to, "commit": c1, "rules": len(s1.rules), "spec_hash": s1.content_hash},
            "labels_note": labels_note,
            "added": [rule_info(s1, x) for x in added], "removed": [rule_info(s0, x) for x in removed],
            "changed": [{"rule": x, "before": rule_info(s0, x), "after": rule_info(s1, x)} for x in changed],
            "renamed": renamed, "rows": n, "flipped": int(flipped.sum()), "transitions": transitions,
            "by_rule_change": counted, "label_model_reweighting": reweighted, "sample": samples,
            "text_field": text_field}


def _moved(c, col0, col1, r) -> bool:
    if c["flipped_rows"] == 0:
        return False
    a, b = col0(c["rule"])[r], col1(c["rule"])[r]
    if c["change"] == "added":
        return b != -1
    if c["change"] == "removed":
        return a != -1
    return a != b
