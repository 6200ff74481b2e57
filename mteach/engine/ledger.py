"""The label ledger: building it, its canonical hash, reading and writing it.

The **ledger** is a Parquet file with one row per data row:

=================  ===========================================  ==========================================
column             type                                         meaning
=================  ===========================================  ==========================================
``id``             the data's id type (or int64 row numbers)    the row
``label``          string (null when nothing decided)           the label given
``probability``    float64 (null when nothing decided)          posterior probability of ``label``
``decided_by``     string                                       "rules", "end_model" or "none"
``votes``          list<struct<rule: string, label: string>>    every rule that voted, in spec order
``contributions``  list<struct<rule: string, contribution: f64>>  each voting rule's additive log-odds
                                                                toward ``label`` (aligned with ``votes``)
``gold``           string (only when gold labels were given)    the gold label, null where unknown
``end_model_features``  list<struct<feature, weight>> (only      the end model's top features, where the
                   when the end model gave them)                end model decided
``fields``         struct, one child per spec field (text as    the row's values of the fields the spec
                   string, numbers float64, others as string)   reads, so the audit page can show the row
=================  ===========================================  ==========================================

Its schema metadata holds JSON (keys sorted, no wall-clock time anywhere, so the same
spec version, data and seed give a byte-identical file):

- ``mteach.run``: mteach version, spec path, spec content hash, git facts (commit and
  state: clean / dirty / unavailable), data path and sha256 fingerprint, id column,
  settings (seed, label model class and parameters, gold source). Paths (the spec, the
  data, each rule's file) are relative to the spec's folder (``spec_relative``), and
  ``spec_from_data`` is the spec's folder relative to the data's (how ``verify`` finds the
  repository): the same spec and data give the same bytes from any working folder;
- ``mteach.rules``: the rules table (``apply.rules_table``) plus, per rule, its content
  key, the commit / author / date that last changed its lines (``git blame``), the
  defines its test reads (``defines``: name, file, lines, source and their own blame),
  its vote count and the label model's estimated accuracy;
- ``mteach.label_model``: ``baseline_``, ``weights_``, ``accuracy_``, ``class_balance_``,
  ``temperature_`` (not 1 when calibrated on gold rows), so ``explain`` needs no re-run;
- ``mteach.ledger_sha256``: sha256 over the row content and the three entries above;
  ``read_ledger`` recomputes it and reports tampering.

The git facts come from ``engine.gitfacts``; explaining a row is ``engine.explain``,
re-running a ledger ``engine.verify``, comparing two spec revisions ``engine.diff``.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .._version import __version__
from ..compiler.checker import load_spec
from ..compiler.spec import Spec
from ..errors import DataError, MteachError
from ..grammar import ast
from .apply import ROW_NUMBER, resolve_id_column, rules_table
from .gitfacts import UNAVAILABLE, blame_lines, blame_spans, spec_git_facts
from .gold import GoldRequest
from .io import DEFAULT_BATCH_ROWS, DataSource, atomic_path
from .votes import collect_votes

LEDGER_FORMAT = "mteach-ledger/1"
META_RUN, META_RULES, META_MODEL, META_HASH = (b"mteach.run", b"mteach.rules", b"mteach.label_model",
                                               b"mteach.ledger_sha256")

VOTE_TYPE = pa.list_(pa.field("element", pa.struct([("rule", pa.string()), ("label", pa.string())])))
CONTRIB_TYPE = pa.list_(pa.field("element", pa.struct([("rule", pa.string()), ("contribution", pa.float64())])))
FEATURE_TYPE = pa.list_(pa.field("element", pa.struct([("feature", pa.string()), ("weight", pa.float64())])))


class LedgerError(MteachError):
    """A ledger that cannot be trusted or used: tampered, from another spec, unreadable."""
    exit_code = 2


def rule_content_key(rule) -> str:
    """A short hash of what a rule does: its resolved predicate and its label (not its
    name, line or comment), so a rule that only moved is recognised as the same rule."""
    text = repr((rule.predicate.key() if rule.predicate is not None else None, rule.rule.label))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def canonical_json(obj) -> str:
    return json.dumps(jsonable(obj), sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def jsonable(o):
    if isinstance(o, dict):
        return {str(k): jsonable(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [jsonable(v) for v in o]
    if isinstance(o, np.ndarray):
        return jsonable(o.tolist())
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, (float, np.floating)):
        return None if not math.isfinite(float(o)) else float(o)
    if isinstance(o, Path):
        return o.as_posix()
    return o


def rows_sha256(table: pa.Table) -> str:
    """sha256 of the ledger's row content, canonical: independent of chunking, buffer layout
    and the Parquet round trip (each column: name, type, validity, lengths and values)."""
    h = hashlib.sha256()
    h.update(str(table.num_rows).encode() + b"\0")
    for name in table.column_names:
        h.update(name.encode("utf-8") + b"\0")
        _hash_array(h, table.column(name).combine_chunks())
    return h.hexdigest()


def _hash_array(h, arr: pa.Array):
    t = arr.type
    kind = ("list" if pa.types.is_list(t) or pa.types.is_large_list(t) else
            "struct<" + ",".join(t.field(i).name for i in range(t.num_fields)) + ">" if pa.types.is_struct(t)
            else str(t))
    h.update(kind.encode() + b"\0" + str(len(arr)).encode() + b"\0")
    valid = pc.is_valid(arr).to_numpy(zero_copy_only=False)
    h.update(np.packbits(valid).tobytes())
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        lengths = pc.fill_null(pc.list_value_length(arr), 0).to_numpy(zero_copy_only=False).astype(np.int64)
        h.update(lengths.tobytes())
        _hash_array(h, arr.flatten())
    elif pa.types.is_struct(t):
        for i in range(t.num_fields):
            _hash_array(h, pc.struct_field(arr, [i]))
    elif pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_binary(t) or pa.types.is_large_binary(t):
        filled = pc.fill_null(arr, "" if "string" in str(t) else b"").cast(pa.large_binary())
        filled = pa.concat_arrays([filled]) if filled.offset else filled
        offsets = np.frombuffer(filled.buffers()[1], dtype=np.int64)[: len(filled) + 1]
        h.update(np.diff(offsets).tobytes())
        h.update(filled.buffers()[2].to_pybytes()[offsets[0]:offsets[-1]] if len(filled) else b"")
    elif pa.types.is_dictionary(t):
        _hash_array(h, arr.dictionary_decode())
    else:
        values = pc.fill_null(arr, pa.scalar(0, t) if not pa.types.is_boolean(t) else False)
        h.update(values.to_numpy(zero_copy_only=False).tobytes())


def ledger_sha256(table: pa.Table, run: str, rules: str, model: str) -> str:
    h = hashlib.sha256()
    for part in (rows_sha256(table), run, rules, model):
        h.update(part.encode("utf-8") + b"\0")
    return h.hexdigest()


@dataclass
class Ledger:
    """A ledger in memory: the row table and the facts from its metadata."""
    table: pa.Table
    run: dict
    rules: list            # of dicts (one per rule, spec order)
    model: dict            # baseline, weights, accuracy, class_balance, ...
    path: Optional[Path] = None

    @property
    def labels(self) -> list:
        return list(self.run["labels"])

    @property
    def rule_names(self) -> list:
        return [r["rule"] for r in self.rules]

    def votes_matrix(self) -> np.ndarray:
        """(n × m) int8 vote matrix rebuilt from the ``votes`` column (-1 = abstain)."""
        n, m = self.table.num_rows, len(self.rules)
        col = self.table.column("votes").combine_chunks()
        parents = pc.list_parent_indices(col).to_numpy()
        flat = col.flatten()
        rule_idx = pc.index_in(flat.field("rule"), value_set=pa.array(self.rule_names, pa.string()))
        lab_idx = pc.index_in(flat.field("label"), value_set=pa.array(self.labels, pa.string()))
        if rule_idx.null_count or lab_idx.null_count:
            raise LedgerError(f"{self.path}: the votes column names a rule or label the ledger's rules table lacks")
        out = np.full((n, m), -1, dtype=np.int8)
        out[parents, rule_idx.to_numpy()] = lab_idx.to_numpy().astype(np.int8)
        return out


def fit_label_model(spec: Spec, votes: np.ndarray, gold: Optional[np.ndarray], seed: int):
    from .label_model import fit_for_spec  # scikit-learn is slow to import; only verbs that fit pay for it
    return fit_for_spec(spec, votes, gold, seed=seed)


def _list_column(offsets: np.ndarray, children: dict, typ: pa.DataType) -> pa.Array:
    struct = pa.StructArray.from_arrays(list(children.values()), names=list(children))
    return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), struct).cast(typ)


@dataclass
class ModelOutput:
    """What a trained model (``engine.train.TrainedModel``) adds to a ledger."""
    proba: np.ndarray                 # the end model's class probabilities, every row (n × k)
    label_model: object = None        # a fitted label model used as is (None: fit one on the votes)
    blend: float = 0.0                # beta > 0: covered rows get p ∝ p_label_model · p_end_model^beta
    features: Optional[pa.Array] = None  # list<struct<feature, weight>> per row no rule covers, in row order
    uncovered_proba: Optional[np.ndarray] = None  # for rows no rule covers (n × k); None: ``proba``
    uncovered_by_rules: bool = False  # rows no rule covers get the class prior: decided_by "rules"


def model_output(model, table: pa.Table, votes: np.ndarray) -> ModelOutput:
    """A trained model's say on ``table``: its end model's probabilities on every row, the top
    features of the rows no rule covers, its label model and blend."""
    em = model.end_model_proba(table)
    uncovered = np.flatnonzero(~(votes != -1).any(axis=1))
    features = (model.top_features(table.take(pa.array(uncovered)), em[uncovered].argmax(axis=1))
                if len(uncovered) and not model.uncovered_by_rules else None)
    return ModelOutput(em, model.label_model, model.blend, features, model.uncovered_proba(em),
                       model.uncovered_by_rules)


def row_fields(spec: Spec, table: pa.Table) -> pa.StructArray:
    """The ``fields`` column: per row, the value of every spec field (by its spec name), text as
    string, numbers as float64, booleans as they are, anything else (dates...) as its text."""
    children, names = [], []
    for name, f in spec.fields.items():
        if f.column not in table.column_names:
            continue
        col = table.column(f.column)
        col = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
        kind = spec.field_kinds.get(name)
        target = pa.float64() if kind == "number" else pa.bool_() if kind == "boolean" else pa.string()
        if pa.types.is_dictionary(col.type):
            col = col.dictionary_decode()
        try:
            col = pc.cast(col, target)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            col = pa.array([None] * len(col), target)  # a type with no text form: shown as missing
        children.append(col)
        names.append(name)
    if not names:
        return None
    return pa.StructArray.from_arrays(children, names=names)


def spec_relative(spec: Spec, path) -> str:
    """``path`` (as typed, or as diagnostics show it) relative to the spec's root, so a ledger
    holds the same bytes whatever the working folder and however the paths were typed, and
    no absolute path of this machine."""
    return Path(os.path.relpath(os.path.realpath(path), os.path.realpath(spec.root))).as_posix()


def build_ledger(spec: Spec, ids: pa.Array, votes: np.ndarray, *, gold: Optional[np.ndarray] = None,
                 seed: int = 0, run_facts: Optional[dict] = None, model_output: Optional[ModelOutput] = None,
                 git: bool = True, fields: Optional[pa.StructArray] = None) -> Ledger:
    """Fit the label model on ``votes`` and build the ledger (no per-row Python).

    ``gold``: label index per row (-1 unknown) — sharpens the label model and is kept in a
    ``gold`` column. ``model_output``: a trained model's say — its label model is used as
    trained, its end model decides the rows no rule voted on (``decided_by = "end_model"``,
    with their top features; without it they get "none"), and with ``blend`` > 0 joins the
    covered rows, its share of the log-odds kept per row in ``end_model_contribution`` so
    the decomposition stays exact. ``fields``: the rows' field values (``row_fields``), kept
    in a ``fields`` column for the audit page.
    """
    out = model_output
    label_model = out.label_model if out is not None else None
    end_model_proba = out.proba if out is not None else None
    blend = out.blend if out is not None else 0.0
    votes = np.ascontiguousarray(votes, dtype=np.int8)
    n, m = votes.shape
    labels = list(spec.labels)
    k = len(labels)
    names = spec.rule_names
    model = label_model if label_model is not None else fit_label_model(spec, votes, gold, seed)
    proba = model.predict_proba(votes)
    em_term = None
    if end_model_proba is not None and blend > 0:
        log_em = blend * np.log(np.clip(end_model_proba, 1e-12, 1.0))
        logits = np.log(np.clip(proba, 1e-300, 1.0)) + log_em
        proba = np.exp(logits - logits.max(axis=1, keepdims=True))
        proba /= proba.sum(axis=1, keepdims=True)
    predicted = np.argmax(proba, axis=1)
    contrib = model.contributions(votes, target=predicted)
    if end_model_proba is not None and blend > 0:
        # same convention as the rules' contributions: toward the label, minus the mean of the others
        chosen = log_em[np.arange(n), predicted]
        em_term = chosen - (log_em.sum(axis=1) - chosen) / max(k - 1, 1)

    voted = votes != -1
    covered = voted.any(axis=1)
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(voted.sum(axis=1), out=offsets[1:])
    rows, cols = np.nonzero(voted)  # row-major: rules in spec order within a row
    rule_arr = pa.array(names, pa.string()).take(pa.array(cols))
    vote_labels = pa.array(labels, pa.string()).take(pa.array(votes[rows, cols].astype(np.int64)))
    votes_col = _list_column(offsets, {"rule": rule_arr, "label": vote_labels}, VOTE_TYPE)
    contrib_col = _list_column(offsets, {"rule": rule_arr, "contribution": pa.array(contrib[rows, cols])},
                               CONTRIB_TYPE)

    label_idx = np.where(covered, predicted, -1)
    prob = np.where(covered, proba[np.arange(n), predicted], np.nan)
    decided = np.where(covered, 0, 2)  # 0 rules, 1 end_model, 2 none
    features_col = None
    if out is not None and (~covered).any():
        uncovered = np.flatnonzero(~covered)
        p = np.asarray(out.proba if out.uncovered_proba is None else out.uncovered_proba, dtype=np.float64)
        if p.shape != (n, k):
            raise DataError(f"the end model gave probabilities of shape {p.shape}; expected {(n, k)}")
        p = p[uncovered]
        best = np.argmax(p, axis=1)
        label_idx[uncovered] = best
        prob[uncovered] = p[np.arange(len(uncovered)), best]
        decided[uncovered] = 0 if out.uncovered_by_rules else 1
        if out.features is not None:
            feats = out.features if isinstance(out.features, pa.Array) else pa.array(out.features, FEATURE_TYPE)
            # rows the end model did not decide get an empty list
            pos = np.full(n, -1, dtype=np.int64)
            pos[uncovered] = np.arange(len(uncovered))
            empty = pa.array([[]], FEATURE_TYPE)
            both = pa.concat_arrays([feats.cast(FEATURE_TYPE), empty])
            features_col = both.take(pa.array(np.where(pos >= 0, pos, len(uncovered))))

    label_names = pa.array(labels + [None], pa.string())
    cols_out = {
        "id": ids if isinstance(ids, pa.Array) else pa.array(ids),
        "label": label_names.take(pa.array(np.where(label_idx >= 0, label_idx, k))),
        "probability": pa.array(prob, pa.float64(), mask=np.isnan(prob)),
        "decided_by": pa.array(["rules", "end_model", "none"], pa.string()).take(pa.array(decided)),
        "votes": votes_col,
        "contributions": contrib_col,
    }
    if em_term is not None:
        cols_out["end_model_contribution"] = pa.array(np.where(covered, em_term, np.nan), pa.float64(),
                                                      mask=~covered)
    if gold is not None:
        cols_out["gold"] = label_names.take(pa.array(np.where(gold >= 0, gold, k)))
    if features_col is not None:
        cols_out["end_model_features"] = features_col
    if fields is not None:
        cols_out["fields"] = fields
    if isinstance(cols_out["id"], pa.ChunkedArray):
        cols_out["id"] = cols_out["id"].combine_chunks()
    table = pa.table(cols_out)

    git_facts = spec_git_facts(spec) if git else {"state": UNAVAILABLE, "commit": None, "path_in_repo": None}
    run = {"format": LEDGER_FORMAT, "mteach_version": __version__, "spec": spec_relative(spec, spec.path),
           "spec_hash": spec.content_hash, "spec_files": list(spec.files), "concept": spec.concept.name,
           "labels": labels, "git": git_facts, "rows": n, "covered": int(covered.sum()),
           "settings": {"seed": int(seed), "label_model": {"class": type(model).__name__,
                                                           "params": jsonable(model.get_params())},
                        "gold": None if gold is None else {"rows": int((gold >= 0).sum())},
                        "end_model": out is not None, "blend": float(blend) if em_term is not None else 0.0},
           **(run_facts or {})}

    rt = rules_table(spec).to_pylist()
    spans = [(r.rule.span.line, max(r.rule.span.end_line, r.rule.span.line)) for r in spec.rules]
    blames = blame_lines(spec.path, spans) if git and spec.rules else [None] * len(spec.rules)
    uses = [defines_used(spec, r.rule) for r in spec.rules]
    define_spans = {name: (d.span.file, d.span.line, max(d.span.end_line, d.span.line))
                    for name, d in spec.defines.items() if any(name in u for u in uses)}
    define_blames = dict(zip(define_spans, blame_spans(list(define_spans.values())) if git
                             else [None] * len(define_spans)))
    vote_counts = voted.sum(axis=0)
    # the share of each rule's votes the label model believes right, with its 95% interval
    est_accuracy = getattr(model, "vote_accuracy_", model.accuracy_)
    est_interval = getattr(model, "vote_accuracy_interval_", None)
    for i, (row, r) in enumerate(zip(rt, spec.rules)):
        row.update({"index": i, "file": spec_relative(spec, row["file"]), "end_line": spans[i][1],
                    "content_key": rule_content_key(r),
                    "votes": int(vote_counts[i]), "estimated_accuracy": float(est_accuracy[i]),
                    "estimated_interval": None if est_interval is None else [float(x) for x in est_interval[i]],
                    "blame": blames[i],
                    "defines": [{"define": d, "file": spec_relative(spec, define_spans[d][0]), "line": define_spans[d][1],
                                 "end_line": define_spans[d][2], "source": _source_lines(spec, *define_spans[d]),
                                 "blame": define_blames[d]} for d in uses[i]]})
    params = {"class": type(model).__name__, "labels": labels, "rules": names,
              "baseline": model.baseline_, "weights": model.weights_, "accuracy": model.accuracy_,
              "class_balance": getattr(model, "class_balance_", None),
              "temperature": getattr(model, "temperature_", None),  # != 1: calibrated on gold rows
              "n_iter": getattr(model, "n_iter_", None), "converged": getattr(model, "converged_", None)}
    return Ledger(table, jsonable(run), jsonable(rt), jsonable(params))


def defines_used(spec: Spec, rule) -> list:
    """The defines a rule's test reads, directly or through other defines, in order of first use."""
    found: list = []

    def walk(node):
        if isinstance(node, tuple):
            for item in node:
                walk(item)
        elif isinstance(node, ast.Ref):
            if node.name in spec.defines and node.name not in found:
                found.append(node.name)
                walk(spec.defines[node.name].value)
        elif isinstance(node, ast.Node):
            for f in dataclasses.fields(node):
                walk(getattr(node, f.name))

    walk(rule.predicate)
    walk(rule.unless)
    return found


def _source_lines(spec: Spec, file: str, first: int, last: int) -> str:
    lines = spec.sources.get(file, "").splitlines()
    return "\n".join(lines[first - 1:last])


def write_ledger(ledger: Ledger, output, part_rows: Optional[list] = None) -> Path:
    """Write ``ledger`` to Parquet through a temporary file; byte-identical for equal input.
    With ``part_rows``, a partitioned ledger: a folder of parts of those sizes, manifest last."""
    run, rules, model = (canonical_json(x) for x in (ledger.run, ledger.rules, ledger.model))
    digest = ledger_sha256(ledger.table, run, rules, model)
    table = ledger.table.replace_schema_metadata({META_RUN: run, META_RULES: rules, META_MODEL: model,
                                                  META_HASH: digest})
    if part_rows is not None:
        from .datasets import write_dataset
        write_dataset(output, table, part_rows)
        ledger.path = Path(output)
        return Path(output)
    with atomic_path(output) as tmp:
        pq.write_table(table, tmp, compression="zstd", write_statistics=False)
    ledger.path = Path(output)
    return Path(output)


def label_data(spec, data, output, id_column: Optional[str] = None, *, gold: Optional[GoldRequest] = None,
               seed: int = 0, batch_rows: int = DEFAULT_BATCH_ROWS, threads: int = 2, progress=None,
               model=None, engine=None, partitioned: bool = False) -> Ledger:
    """Apply ``spec`` (a ``Spec`` or a path) to ``data`` (a ``DataSource`` or a path), fit the
    label model and write the ledger to ``output``; the data is read once.

    ``gold``: where gold labels come from (``engine.gold.GoldRequest``).
    ``model``: a trained model (``mteach.engine.train.TrainedModel``) of the same spec: its
    label model is used as trained, its end model decides the rows no rule covers (with
    their top features) and joins covered rows with the model's blend.
    ``engine``: who computes the votes (``engine.votes``); ``partitioned``: write the ledger
    as a folder with a part per batch the engine yielded and a manifest (``engine.datasets``).
    """
    from .datasets import open_source, source_fingerprint
    source = data if isinstance(data, DataSource) else open_source(data)
    if not isinstance(spec, Spec):
        spec = load_spec(spec, source.schema)
    id_column = resolve_id_column(source, id_column)
    gold = gold or GoldRequest()
    gold.check(source.schema, id_column, source.path)
    part_rows = []

    def counted(rows):
        part_rows.append(rows)
        if progress:
            progress(rows)
    batch = collect_votes(spec, source, id_column, columns=gold.columns, batch_rows=batch_rows, threads=threads,
                          progress=counted, engine=engine)
    gold_index = gold.resolve(spec.labels, batch.ids, batch.table, source.path, id_column)
    facts = {"data": spec_relative(spec, source.path), "data_sha256": source_fingerprint(source),
             "spec_from_data": Path(os.path.relpath(os.path.realpath(spec.root),
                                                    os.path.realpath(source.path.parent))).as_posix(),
             "id_column": id_column or ROW_NUMBER}
    output_of_model = None
    if model is not None:
        output_of_model = model_output(model, batch.table, batch.votes)
        facts["model"] = {"spec_hash": model.spec.content_hash, "blend": model.blend, "settings": model.settings,
                          **(model.provenance or {})}
    ledger = build_ledger(spec, batch.ids, batch.votes, gold=gold_index, seed=seed, run_facts=facts,
                          model_output=output_of_model, fields=row_fields(spec, batch.table))
    write_ledger(ledger, output, part_rows if partitioned else None)
    return ledger


# What explain, verify, diff and the audit read without checking: a ledger lacking one is refused.
REQUIRED = {"columns": ("id", "label", "probability", "decided_by", "votes", "contributions"),
            "run": ("labels", "spec_hash", "rows", "git"), "rule": ("rule", "label", "file", "line"),
            "label_model": ("baseline", "weights", "accuracy")}


def _shape_problem(table: pa.Table, run, rules, model) -> Optional[str]:
    """What is missing from a ledger's columns and metadata, or None."""
    missing = [c for c in REQUIRED["columns"] if c not in table.column_names]
    if missing:
        return f"no column {', '.join(missing)}"
    for key, value, kind in (("mteach.run", run, dict), ("mteach.rules", rules, list),
                             ("mteach.label_model", model, dict)):
        if not isinstance(value, kind):
            return f"its {key} metadata is not a JSON {'object' if kind is dict else 'list'}"
    for key, value in (("mteach.run", run), ("mteach.label_model", model)):
        lacks = [k for k in REQUIRED["run" if key == "mteach.run" else "label_model"] if k not in value]
        if lacks:
            return f"its {key} metadata lacks {', '.join(lacks)}"
    if not isinstance(run["labels"], list) or not isinstance(run["git"], dict):
        return "its mteach.run metadata has labels or git of the wrong type"
    for i, rule in enumerate(rules):
        lacks = [k for k in REQUIRED["rule"] if not isinstance(rule, dict) or k not in rule]
        if lacks:
            return f"rule {i + 1} of its mteach.rules metadata lacks {', '.join(lacks)}"
    return None


def read_ledger(path, check: bool = True) -> Ledger:
    """Read a ledger; with ``check``, recompute its sha256 and raise LedgerError on a mismatch."""
    path = Path(path)
    if not path.exists():
        raise LedgerError(f"{path}: no such ledger file (write one with `mteach label SPEC DATA -o {path.name}`)")
    try:
        if path.is_dir():  # a partitioned ledger (label --engine dask): complete only with its manifest
            from .datasets import read_dataset
            try:
                table = read_dataset(path)
            except DataError as err:
                raise LedgerError(str(err)) from None
        else:
            table = pq.read_table(path)
    except (OSError, pa.ArrowInvalid) as err:
        raise LedgerError(f"{path}: cannot read the ledger: {str(err).splitlines()[0]}") from None
    meta = table.schema.metadata or {}
    if META_RUN not in meta or META_RULES not in meta:
        raise LedgerError(f"{path}: not a label ledger written by `mteach label` (no run facts in its metadata)")
    try:
        run, rules, model = (json.loads(meta[key]) for key in (META_RUN, META_RULES, META_MODEL))
    except (KeyError, ValueError) as err:
        raise LedgerError(f"{path}: the ledger's metadata is damaged ({err})") from None
    problem = _shape_problem(table, run, rules, model)
    if problem:
        raise LedgerError(f"{path}: the ledger is damaged or was not written by this version of mteach: {problem}; "
                          "re-run `mteach label`")
    ledger = Ledger(table.replace_schema_metadata(None), run, rules, model, path)
    if check:
        recorded = meta.get(META_HASH, b"").decode()
        actual = ledger_sha256(ledger.table, meta[META_RUN].decode(), meta[META_RULES].decode(),
                               meta[META_MODEL].decode())
        if recorded != actual:
            raise LedgerError(f"{path}: the ledger was modified after it was written: its content sha256 is "
                              f"{actual[:16]}…, the one recorded when it was written is "
                              f"{(recorded or 'missing')[:16]}…; do not trust its labels — re-run `mteach label`")
    return ledger


def duplicate_ids_warning(ledger: Ledger) -> Optional[str]:
    """A one-line warning when the ledger's ids repeat (the data's id column is not unique):
    how many rows repeat an id, an example, and what ``explain`` does with it; else None."""
    ids = pc.cast(ledger.table.column("id"), pa.string()).combine_chunks()
    counts = pc.value_counts(ids.filter(pc.is_valid(ids)))  # in order of first appearance
    repeated = counts.filter(pc.greater(counts.field("counts"), 1))
    if len(repeated) == 0:
        return None
    extra = int(pc.sum(repeated.field("counts")).as_py()) - len(repeated)
    example, times = repeated[0]["values"].as_py(), repeated[0]["counts"].as_py()
    return (f"warning: {ledger.path}: {extra:,} rows repeat an id of an earlier row ({len(repeated):,} ids, e.g. "
            f"{example!r} on {times} rows); every row is labelled, but `mteach explain --id {example}` shows "
            f"only the first row with that id — give --id a column whose values are unique")


def label_counts(ledger: Ledger) -> dict:
    """Rows per label (spec order), then "no label" for rows nothing decided."""
    counts = {v["values"]: v["counts"] for v in pc.value_counts(ledger.table.column("label")).to_pylist()}
    out = {lab: int(counts.get(lab, 0)) for lab in ledger.labels}
    if counts.get(None):
        out["no label"] = int(counts[None])
    return out


def check_spec_matches(ledger: Ledger, spec: Spec):
    """Raise LedgerError when ``spec`` is not the version the ledger was made from."""
    if spec.content_hash != ledger.run["spec_hash"]:
        git = ledger.run.get("git") or {}
        where = f" (commit {git['commit'][:10]})" if git.get("commit") else ""
        raise LedgerError(f"{ledger.path} was made from another version of the spec: its spec hash is "
                          f"{ledger.run['spec_hash'][:16]}…{where}, {spec.path} now hashes to "
                          f"{spec.content_hash[:16]}…; re-run `mteach label`, or check out that version")
