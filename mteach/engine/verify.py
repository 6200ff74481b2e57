"""Re-run the spec version a ledger records (from git, or a given file) and compare."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..compiler.checker import load_spec
from ..errors import DataError
from .apply import ROW_NUMBER, resolve_id_column
from .gitfacts import repo_root, resolve_commit, spec_at_revision
from .datasets import open_source, source_fingerprint
from .io import DEFAULT_BATCH_ROWS
from .ledger import Ledger, LedgerError, build_ledger, canonical_json, row_fields
from .votes import collect_votes


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
    batch = collect_votes(spec, source, id_column, batch_rows=batch_rows, threads=threads)
    ids, votes = batch.ids, batch.votes
    old = ledger.table
    gold = None
    if "gold" in old.column_names and old.num_rows == len(ids):
        gold_names = old.column("gold").combine_chunks()
        idx = pc.index_in(gold_names, value_set=pa.array(list(spec.labels), pa.string()))
        gold = pc.fill_null(idx, -1).to_numpy().astype(np.int64)
    seed = run.get("settings", {}).get("seed", 0)
    facts = {k: run[k] for k in ("data", "data_sha256", "spec_from_data", "id_column") if k in run}
    new = build_ledger(spec, ids, votes, gold=gold, seed=seed, run_facts=facts, git=False,
                       label_model_settings=recorded_label_model(run))
    result = Verification(False, len(ids), spec_ok, data_ok, notes=notes)
    if old.num_rows != len(ids) or not pc.all(pc.equal(pc.cast(old.column("id"), pa.string()),
                                                        pc.cast(new.table.column("id"), pa.string()))).as_py():
        result.notes.append(f"the rows differ: the ledger has {old.num_rows:,} rows, the data {len(ids):,} "
                            "(or their ids differ in order)")
        return result
    id_strings = pc.cast(old.column("id"), pa.string()).combine_chunks()
    # votes, rule by rule (by name: a rule missing on one side counts as abstaining there)
    old_votes = ledger.votes_matrix()
    old_names, new_names = ledger.rule_names, spec.rule_names
    all_names = list(dict.fromkeys(old_names + new_names))
    labels = list(spec.labels)
    if ledger.labels != labels:
        result.notes.append(f"the labels differ: ledger {ledger.labels}, spec {labels}")
    def column(mat, names, name):
        return mat[:, names.index(name)] if name in names else np.full(len(ids), -1, np.int8)
    for name in all_names:
        a, b = column(old_votes, old_names, name), column(votes, new_names, name)
        diff = np.flatnonzero(a != b)
        result.n_vote_differences += len(diff)
        for r in diff[: max(0, limit - len(result.vote_differences))]:
            result.vote_differences.append({
                "id": id_strings[int(r)].as_py(), "rule": name,
                "recorded": ledger.labels[a[r]] if a[r] >= 0 else "abstain",
                "now": labels[b[r]] if b[r] >= 0 else "abstain"})
    # labels and probabilities, on rows the rules decide (the end model is not re-run)
    by_rules = pc.equal(old.column("decided_by"), "rules").to_numpy(zero_copy_only=False)
    if (~by_rules & pc.equal(old.column("decided_by"), "end_model").to_numpy(zero_copy_only=False)).any():
        result.notes.append("rows decided by the end model are not re-checked (verify re-runs the rules "
                            "and the label model)")
    now_rules = pc.equal(new.table.column("decided_by"), "rules").to_numpy(zero_copy_only=False)
    old_lab = pc.fill_null(old.column("label"), "").to_numpy(zero_copy_only=False)
    new_lab = pc.fill_null(new.table.column("label"), "").to_numpy(zero_copy_only=False)
    old_p = pc.fill_null(old.column("probability"), -1.0).to_numpy(zero_copy_only=False)
    new_p = pc.fill_null(new.table.column("probability"), -1.0).to_numpy(zero_copy_only=False)
    new_lab = np.where(now_rules | by_rules, new_lab, old_lab)
    new_p = np.where(now_rules | by_rules, new_p, old_p)
    differs = (old_lab != new_lab) | (old_p != new_p)
    diff = np.flatnonzero(differs)
    result.n_label_differences = len(diff)
    for r in diff[:limit]:
        result.label_differences.append({"id": id_strings[int(r)].as_py(), "recorded": old_lab[r] or None,
                                         "now": new_lab[r] or None, "recorded_probability": _p(old_p[r]),
                                         "now_probability": _p(new_p[r])})
    old_c = old.column("contributions").combine_chunks().flatten().field("contribution")
    new_c = new.table.column("contributions").combine_chunks().flatten().field("contribution")
    contrib_same = len(old_c) == len(new_c) and pc.all(pc.equal(old_c, new_c)).as_py() in (True, None)
    if not contrib_same and not result.n_vote_differences:
        result.notes.append("the rules' log-odds contributions differ (the label model's fit changed)")
    if _model_differs(ledger.model, new.model):
        result.notes.append("the label model's parameters differ from the recorded ones")
    # the rows' text as the audit page shows it (a ledger with a fields column)
    fields_same = "fields" not in old.column_names or old.column("fields").combine_chunks().equals(
        row_fields(spec, batch.table))
    if not fields_same:
        result.notes.append("the rows' field values recorded in the ledger (the text the audit page shows) "
                            "differ from the data's")
    result.identical = (spec_ok and data_ok and result.n_vote_differences == 0 and
                        result.n_label_differences == 0 and contrib_same and ledger.labels == labels and
                        not _model_differs(ledger.model, new.model) and fields_same)
    return result


def _p(x):
    return None if x < 0 else float(x)


def _model_differs(a: dict, b: dict) -> bool:
    return any(canonical_json(a.get(k)) != canonical_json(b.get(k)) for k in ("baseline", "weights", "accuracy"))
