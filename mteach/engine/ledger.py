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
                   with a model whose end model decides the     end model decided (empty elsewhere)
                   rows no rule covers)
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

import base64
import copy
import dataclasses
import hashlib
import io
import itertools
import json
import math
import os
import tempfile
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .._version import __version__
from ..compiler.checker import load_spec
from ..compiler.spec import Spec
from ..compiler.tokens import powers
from ..errors import DataError, MteachError
from ..grammar import ast
from .analysis import votes_per_rule
from .apply import ROW_NUMBER, resolve_id_column, rules_table
from .gitfacts import UNAVAILABLE, blame_lines, blame_spans, spec_git_facts
from .gold import GoldRequest, align_gold, gold_from_column, parse_mapping, read_gold_file
from .io import DEFAULT_BATCH_ROWS, DataSource, atomic_path, combined, parquet_batches
from .votes import vote_batches

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
    digest = RowsHash(table.schema, spool=io.BytesIO)
    digest.add(table)
    return digest.hexdigest()


class RowsHash:
    """``rows_sha256`` of a table given batch by batch: the hash reads each column whole
    (validity, then lengths, then values, node by node), so each part of each column is
    gathered in its own spool (``spool()``: a file-like object; temporary files when
    streaming) and fed to sha256 in that order at the end."""

    def __init__(self, schema: pa.Schema, spool=tempfile.TemporaryFile):
        self.names = schema.names
        self.columns = [_HashNode(f.type, spool) for f in schema]
        self.rows = 0

    def add(self, batch) -> None:
        self.rows += batch.num_rows
        for node, name in zip(self.columns, self.names):
            col = batch.column(name)
            for chunk in (col.chunks if isinstance(col, pa.ChunkedArray) else [col]):  # never combined
                node.add(chunk)

    def hexdigest(self) -> str:
        h = hashlib.sha256()
        h.update(str(self.rows).encode() + b"\0")
        for name, node in zip(self.names, self.columns):
            h.update(name.encode("utf-8") + b"\0")
            node.feed(h)
        return h.hexdigest()

    def close(self) -> None:
        for node in self.columns:
            node.close()


class _HashNode:
    """One array node of a column: its length, validity bits, lengths (lists, strings) and
    values (strings, fixed-width), and its children (list, struct, dictionary)."""

    def __init__(self, t: pa.DataType, spool):
        self.type, self.n, self.carry = t, 0, np.zeros(0, dtype=bool)
        self.is_list = pa.types.is_list(t) or pa.types.is_large_list(t)
        self.is_string = (pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_binary(t)
                          or pa.types.is_large_binary(t))
        self.kind = ("list" if self.is_list else
                     "struct<" + ",".join(t.field(i).name for i in range(t.num_fields)) + ">"
                     if pa.types.is_struct(t) else str(t))
        self.children = ([_HashNode(t.value_type, spool)] if self.is_list else
                         [_HashNode(t.field(i).type, spool) for i in range(t.num_fields)] if pa.types.is_struct(t)
                         else [_HashNode(t.value_type, spool)] if pa.types.is_dictionary(t) else [])
        self.valid, self.lengths, self.values = spool(), spool(), spool()

    def add(self, arr: pa.Array) -> None:
        t = self.type
        self.n += len(arr)
        valid = np.concatenate([self.carry, pc.is_valid(arr).to_numpy(zero_copy_only=False)])
        whole = len(valid) - len(valid) % 8  # bits packed across batches as over one array
        self.valid.write(np.packbits(valid[:whole]).tobytes())
        self.carry = valid[whole:]
        if self.is_list:
            lengths = pc.fill_null(pc.list_value_length(arr), 0).to_numpy(zero_copy_only=False).astype(np.int64)
            self.lengths.write(lengths.tobytes())
            self.children[0].add(arr.flatten())
        elif pa.types.is_struct(t):
            for i, child in enumerate(self.children):
                child.add(pc.struct_field(arr, [i]))
        elif self.is_string:
            filled = pc.fill_null(arr, "" if "string" in str(t) else b"").cast(pa.large_binary())
            filled = pa.concat_arrays([filled]) if filled.offset else filled
            offsets = np.frombuffer(filled.buffers()[1], dtype=np.int64)[: len(filled) + 1]
            self.lengths.write(np.diff(offsets).tobytes())
            if len(filled) and offsets[-1] > offsets[0]:
                self.values.write(memoryview(filled.buffers()[2])[offsets[0]:offsets[-1]])
        elif pa.types.is_dictionary(t):
            self.children[0].add(arr.dictionary_decode())
        else:
            values = pc.fill_null(arr, pa.scalar(0, t) if not pa.types.is_boolean(t) else False)
            self.values.write(values.to_numpy(zero_copy_only=False).tobytes())

    def feed(self, h) -> None:
        h.update(self.kind.encode() + b"\0" + str(self.n).encode() + b"\0")
        for spool in (self.valid, self.lengths, self.values):
            if spool is self.valid:
                spool.write(np.packbits(self.carry).tobytes())
                self.carry = np.zeros(0, dtype=bool)
            spool.seek(0)
            for block in iter(lambda: spool.read(1 << 20), b""):
                h.update(block)
        for child in self.children:
            child.feed(h)

    def close(self) -> None:
        for spool in (self.valid, self.lengths, self.values):
            spool.close()
        for child in self.children:
            child.close()


def _ledger_digest(rows_digest: str, run: str, rules: str, model: str) -> str:
    h = hashlib.sha256()
    for part in (rows_digest, run, rules, model):
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
    # a ledger label_data streamed to ``path``: its rows are read back when ``table`` is first used;
    # rows per label and its repeated ids (``repeated_ids``) were counted while writing
    counts: Optional[dict] = None
    repeated: Optional[tuple] = None
    streamed: bool = False

    def __getattr__(self, name):
        if name == "table" and self.__dict__.get("streamed"):
            self.table = read_ledger(self.path, check=False).table
            return self.table
        raise AttributeError(name)

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


def label_model_params(settings=None, seed: int = 0) -> dict:
    """``fit_for_spec``'s kind and parameters: ``[label_model]`` of mteach.toml
    (``settings.LabelModelSettings``; None: the label model's own defaults) and the seed."""
    if settings is None:
        return {"seed": seed}
    return {"kind": settings.kind, "prior_strength": settings.prior_strength, "max_iter": settings.max_iter,
            "seed": seed}


def fit_label_model(spec: Spec, votes: np.ndarray, gold: Optional[np.ndarray], seed: int, settings=None):
    """The label model of ``[label_model]`` (``settings``; None: defaults) fitted on all rows' votes."""
    from .label_model import fit_for_spec  # scikit-learn is slow to import; only verbs that fit pay for it
    return fit_for_spec(spec, votes, gold, **label_model_params(settings, seed))


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
    uncovered = ~(votes != -1).any(axis=1)
    if uncovered.any() and not model.uncovered_by_rules:
        em, features = model.end_model_output(table, uncovered)
    else:
        em, features = model.end_model_proba(table), None
    return ModelOutput(em, model.label_model, model.blend, features, model.uncovered_proba(em),
                       model.uncovered_by_rules)


def row_fields(spec: Spec, table: pa.Table) -> pa.StructArray:
    """The ``fields`` column: per row, the value of every spec field (by its spec name), text as
    string, numbers as float64, booleans as they are, anything else (dates...) as its text."""
    children, names = [], []
    for name, f in spec.fields.items():
        if f.column not in table.column_names:
            continue
        col = combined(table.column(f.column))  # large_string past 2 GB of text
        kind = spec.field_kinds.get(name)
        text = pa.large_string() if pa.types.is_large_string(col.type) else pa.string()
        target = pa.float64() if kind == "number" else pa.bool_() if kind == "boolean" else text
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
                 git: bool = True, fields: Optional[pa.StructArray] = None,
                 label_model_settings=None) -> Ledger:
    """Fit the label model on ``votes`` and build the ledger in memory (no per-row Python);
    ``label_data`` streams the same rows and facts to a file.

    ``gold``: label index per row (-1 unknown) — sharpens the label model and is kept in a
    ``gold`` column. ``model_output``: a trained model's say — its label model is used as
    trained, its end model decides the rows no rule voted on (``decided_by = "end_model"``,
    with their top features; without it they get "none"), and with ``blend`` > 0 joins the
    covered rows, its share of the log-odds kept per row in ``end_model_contribution`` so
    the decomposition stays exact. ``fields``: the rows' field values (``row_fields``), kept
    in a ``fields`` column for the audit page. ``label_model_settings``: ``[label_model]`` of
    mteach.toml (``settings.LabelModelSettings``; None: its defaults).
    """
    out = model_output
    votes = np.ascontiguousarray(votes, dtype=np.int8)
    if out is not None and out.label_model is not None:
        model = out.label_model
    else:
        model = fit_label_model(spec, votes, gold, seed, label_model_settings)
    table = ledger_rows(spec, model, ids, votes, gold=gold, model_output=out, fields=fields)
    facts = LedgerFacts()
    facts.add(votes, gold)
    blend = None if out is None else out.blend if out.proba is not None else 0.0
    run, rules, params = ledger_metadata(spec, model, facts, seed=seed, run_facts=run_facts, blend=blend, git=git)
    return Ledger(table, run, rules, params)


@dataclass
class LedgerFacts:
    """What the ledger's metadata counts over all rows (summed batch by batch when streaming)."""
    rows: int = 0
    covered: int = 0
    vote_counts: Optional[np.ndarray] = None   # per rule: rows it voted on
    gold_rows: Optional[int] = None            # rows with a gold label; None: no gold asked for

    def add(self, votes: np.ndarray, gold: Optional[np.ndarray]) -> None:
        self.rows += votes.shape[0]
        self.covered += int((votes != -1).any(axis=1).sum())
        counts = votes_per_rule(votes)
        self.vote_counts = counts if self.vote_counts is None else self.vote_counts + counts
        if gold is not None:
            self.gold_rows = (self.gold_rows or 0) + int((gold >= 0).sum())

    def merge(self, other: "LedgerFacts") -> None:
        """Add another part's facts (counted alone)."""
        self.rows += other.rows
        self.covered += other.covered
        if other.vote_counts is not None:
            self.vote_counts = other.vote_counts if self.vote_counts is None else self.vote_counts + other.vote_counts
        if other.gold_rows is not None:
            self.gold_rows = (self.gold_rows or 0) + other.gold_rows


def ledger_rows(spec: Spec, model, ids: pa.Array, votes: np.ndarray, *, gold: Optional[np.ndarray] = None,
                model_output: Optional[ModelOutput] = None, fields: Optional[pa.StructArray] = None) -> pa.Table:
    """The ledger's rows for ``votes`` under a fitted label model (a batch, or all rows): each
    row depends only on its own votes, end-model output and gold, so batches concatenate to
    the rows of the whole table. A model whose end model decides the rows no rule covers
    gives an ``end_model_features`` column, empty lists where it decided nothing: every batch
    has the same columns whatever its rows, so a stream is written as it comes."""
    out = model_output
    end_model_proba = out.proba if out is not None else None
    blend = out.blend if out is not None else 0.0
    from .label_model import vote_contributions, vote_entries  # loaded already: ``model`` is one
    votes = np.asarray(votes, dtype=np.int8)  # in its own memory order: ``vote_entries`` reads either
    n, m = votes.shape
    labels = list(spec.labels)
    k = len(labels)
    names = spec.rule_names
    proba = model.predict_proba(votes)
    em_term = None
    if end_model_proba is not None and blend > 0:
        log_em = blend * np.log(np.clip(end_model_proba, 1e-12, 1.0))
        logits = np.log(np.clip(proba, 1e-300, 1.0)) + log_em
        proba = np.exp(logits - logits.max(axis=1, keepdims=True))
        proba /= proba.sum(axis=1, keepdims=True)
    predicted = np.argmax(proba, axis=1)
    if end_model_proba is not None and blend > 0:
        # same convention as the rules' contributions: toward the label, minus the mean of the others
        chosen = log_em[np.arange(n), predicted]
        em_term = chosen - (log_em.sum(axis=1) - chosen) / max(k - 1, 1)
    rows, cols = vote_entries(votes)  # row-major: rules in spec order within a row
    per_row = np.bincount(rows, minlength=n)
    covered = per_row > 0
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(per_row, out=offsets[1:])
    rule_arr = pa.array(names, pa.string()).take(pa.array(cols))
    vote_labels = pa.array(labels, pa.string()).take(pa.array(votes[rows, cols].astype(np.int64)))
    votes_col = _list_column(offsets, {"rule": rule_arr, "label": vote_labels}, VOTE_TYPE)
    # each vote's contribution toward the row's label (``contributions`` at the votes only)
    contrib = vote_contributions(model.weights_, cols, votes[rows, cols], predicted[rows])
    contrib_col = _list_column(offsets, {"rule": rule_arr, "contribution": pa.array(contrib)}, CONTRIB_TYPE)

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
    if features_col is None and out is not None and not out.uncovered_by_rules:
        features_col = pa.array([[]] * n, FEATURE_TYPE)
    if features_col is not None:
        cols_out["end_model_features"] = features_col
    if fields is not None:
        cols_out["fields"] = fields
    if isinstance(cols_out["id"], pa.ChunkedArray):
        cols_out["id"] = cols_out["id"].combine_chunks()
    table = pa.table(cols_out)
    return table


def ledger_metadata(spec: Spec, model, facts: LedgerFacts, *, seed: int = 0, run_facts: Optional[dict] = None,
                    blend: Optional[float] = None, git: bool = True) -> tuple:
    """The ledger's metadata entries (run, rules, label model), from the counts of ``facts``;
    ``blend``: the end model's blend when a trained model's end model had its say, else None."""
    labels = list(spec.labels)
    names = spec.rule_names
    git_facts = spec_git_facts(spec) if git else {"state": UNAVAILABLE, "commit": None, "path_in_repo": None}
    run = {"format": LEDGER_FORMAT, "mteach_version": __version__, "spec": spec_relative(spec, spec.path),
           "spec_hash": spec.content_hash, "spec_files": list(spec.files), "concept": spec.concept.name,
           "labels": labels, "git": git_facts, "rows": facts.rows, "covered": facts.covered,
           "settings": {"seed": int(seed), "label_model": {"class": type(model).__name__,
                                                           "params": jsonable(model.get_params())},
                        "gold": None if facts.gold_rows is None else {"rows": facts.gold_rows},
                        "end_model": blend is not None, "blend": float(blend) if blend else 0.0},
           **(run_facts or {})}
    rt = rules_table(spec).to_pylist()
    spans = [(r.rule.span.line, max(r.rule.span.end_line, r.rule.span.line)) for r in spec.rules]
    blames = blame_lines(spec.path, spans) if git and spec.rules else [None] * len(spec.rules)
    uses = [defines_used(spec, r.rule) for r in spec.rules]
    define_spans = {name: (d.span.file, d.span.line, max(d.span.end_line, d.span.line))
                    for name, d in spec.defines.items() if any(name in u for u in uses)}
    define_blames = dict(zip(define_spans, blame_spans(list(define_spans.values())) if git
                             else [None] * len(define_spans)))
    vote_counts = facts.vote_counts if facts.vote_counts is not None else np.zeros(len(names), np.int64)
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
    return jsonable(run), jsonable(rt), jsonable(params)


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


def write_ledger(ledger: Ledger, output) -> Path:
    """Write ``ledger`` to Parquet through a temporary file; byte-identical for equal input."""
    run, rules, model = (canonical_json(x) for x in (ledger.run, ledger.rules, ledger.model))
    with atomic_path(output) as tmp:
        file = LedgerFile(tmp, ledger.table.schema)
        try:
            file.write(ledger.table)
            file.close(_ledger_meta(rows_sha256(ledger.table), run, rules, model))
        finally:
            file.abort()
    ledger.path = Path(output)
    return Path(output)


def _ledger_meta(rows_digest: str, run: str, rules: str, model: str) -> dict:
    """A ledger file's metadata: its run, rules and label model (canonical JSON) and its hash."""
    return {META_RUN: run, META_RULES: rules, META_MODEL: model,
            META_HASH: _ledger_digest(rows_digest, run, rules, model)}


# Rows per Parquet row group of a ledger: a batch's, so each batch is encoded as it comes (while
# the next is computed) and no more than one is held (a group of 1,048,576 rows, pyarrow's
# default, held a 1M-row ledger whole and encoded it at the end, on one core: 1.5 s of 8.4).
LEDGER_ROW_GROUP = DEFAULT_BATCH_ROWS


class LedgerFile:
    """A ledger's rows written to a Parquet file as they come, its metadata at ``close``. The
    metadata holds the rows' sha256, known only once every row is written; Parquet keeps
    metadata in the file's footer, so it is added there, with the Arrow schema as pyarrow's
    own writer stores it (``ARROW:schema``), and the rows are written once, never spooled.
    Whatever batches the rows come in, they are cut into row groups of ``LEDGER_ROW_GROUP``
    rows, so the same rows always give the same bytes."""

    def __init__(self, path, schema: pa.Schema):
        self.schema = schema.remove_metadata()
        self._writer = pq.ParquetWriter(path, self.schema, compression="zstd", write_statistics=False,
                                        store_schema=False)
        self._pending, self._pending_rows = [], 0

    def write(self, table: pa.Table) -> None:
        self._pending.append(table.replace_schema_metadata(None))
        self._pending_rows += table.num_rows
        while self._pending_rows >= LEDGER_ROW_GROUP:
            self._write_group(LEDGER_ROW_GROUP)

    def _write_group(self, rows: int) -> None:
        pending = pa.concat_tables(self._pending)
        # one chunk per column (a copy only where batches meet), so its pages are those of one array
        self._writer.write_table(pending.slice(0, rows).combine_chunks(), row_group_size=rows)
        rest = pending.slice(rows)
        self._pending, self._pending_rows = [rest] if rest.num_rows else [], self._pending_rows - rows

    def close(self, meta: dict) -> None:
        if self._pending_rows:
            self._write_group(self._pending_rows)
        arrow_schema = base64.b64encode(self.schema.with_metadata(meta).serialize().to_pybytes())
        self._writer.add_key_value_metadata({b"ARROW:schema": arrow_schema, **meta})
        self.abort()

    def abort(self) -> None:
        """Close the file as it is (a no-op once closed)."""
        if self._writer.is_open:
            self._writer.close()


def label_data(spec, data, output, id_column: Optional[str] = None, *, gold: Optional[GoldRequest] = None,
               seed: int = 0, batch_rows: int = DEFAULT_BATCH_ROWS, threads: int = 2, progress=None,
               model=None, engine=None, partitioned: bool = False, label_model_settings=None) -> Ledger:
    """Apply ``spec`` (a ``Spec`` or a path) to ``data`` (a ``DataSource`` or a path), fit the
    label model and write the ledger to ``output``, streaming: a first pass counts the
    distinct vote rows (``label_model.VoteCounts``) and fits the label model on them, a
    second builds each batch's ledger rows and writes them; memory is bounded by the batch
    (and a Parquet row group of ``LEDGER_ROW_GROUP`` rows), not the data. The file is the
    same, byte for byte, as ``build_ledger`` + ``write_ledger`` on all rows at once.

    ``gold``: where gold labels come from (``engine.gold.GoldRequest``).
    ``model``: a trained model (``mteach.engine.train.TrainedModel``) of the same spec: its
    label model is used as trained (one pass), its end model decides the rows no rule
    covers (with their top features) and joins covered rows with the model's blend. It may
    be a ``concurrent.futures.Future`` of one, still loading: the first batches' votes are
    computed meanwhile (``_while_loading``).
    ``engine``: who computes the votes (``engine.votes``); ``partitioned``: write the ledger
    as a folder with a part per partition, written where the partition is evaluated (on the
    Dask workers), and a manifest (``label_partitioned``). ``label_model_settings``:
    ``[label_model]`` of mteach.toml.
    ``progress(rows)`` is called for the rows of each batch of each pass (two without ``model``).
    The returned ledger reads its rows back from ``output`` only when ``table`` is used.
    """
    from .datasets import open_source, source_fingerprint
    source = data if isinstance(data, DataSource) else open_source(data)
    if not isinstance(spec, Spec):
        spec = load_spec(spec, source.schema)
    id_column = resolve_id_column(source, id_column)
    gold = gold or GoldRequest()
    gold.check(source.schema, id_column, source.path)
    facts = {"data": spec_relative(spec, source.path), "data_sha256": source_fingerprint(source),
             "spec_from_data": Path(os.path.relpath(os.path.realpath(spec.root),
                                                    os.path.realpath(source.path.parent))).as_posix(),
             "id_column": id_column or ROW_NUMBER}
    if partitioned:
        model = model.result() if isinstance(model, Future) else model
        return label_partitioned(spec, source, output, id_column, gold, seed, batch_rows, progress, model, engine,
                                 _with_model_facts(facts, model), label_model_settings)
    gold_of = batch_gold(gold, spec.labels, source.path, id_column)

    def passes():
        return vote_batches(spec, source, id_column, columns=gold.columns, batch_rows=batch_rows, threads=threads,
                            progress=progress, engine=engine)
    batches = passes()
    if model is None:
        from .label_model import VoteCounts  # scikit-learn is slow to import
        counts = VoteCounts(len(spec.rules))
        for batch in batches:
            counts.add(batch.votes, gold_of(batch))
        label_model = _fit_on_counts(spec, counts, source, gold_of, label_model_settings, seed)
        batches = passes()
    else:
        if isinstance(model, Future):
            batches, model = _while_loading(batches, model)
        label_model = model.label_model
    return _write_streamed(spec, label_model, batches, gold_of, output, model, seed, _with_model_facts(facts, model))


def _with_model_facts(facts: dict, model) -> dict:
    """The run facts with those of the trained model used, if any."""
    if model is None:
        return facts
    return {**facts, "model": {"spec_hash": model.spec.content_hash, "blend": model.blend,
                               "settings": model.settings, **(model.provenance or {})}}


# Batches whose votes are computed while a model loads: ~1.5 s of imports and reading (mostly
# one core) against ~0.2 CPU-s of votes a batch of 65,536 rows; they are held (~10 MB each).
MODEL_LOAD_LOOKAHEAD = 8


def _while_loading(batches, model: Future) -> tuple:
    """(batches, the model): batches are taken (their votes computed, on the cores the loading
    leaves free) until ``model`` is loaded or ``MODEL_LOAD_LOOKAHEAD`` of them are held; those
    come first in the batches returned."""
    batches, held = iter(batches), []
    for batch in batches:
        held.append(batch)
        if model.done() or len(held) >= MODEL_LOAD_LOOKAHEAD:
            break
    return itertools.chain(held, batches), model.result()


def _fit_on_counts(spec, counts, source, gold_of, label_model_settings, seed):
    """The label model fitted on the first pass's vote-pattern counts (``fit_counted``), once
    the data had rows and a gold file matched some."""
    from .label_model import fit_counted
    if counts.rows == 0:
        raise DataError(f"{source.path}: the file has a header but no rows")
    gold_of.check(counts.gold_rows()[1].shape[0] if counts.has_gold else None)
    return fit_counted(spec, counts, **label_model_params(label_model_settings, seed))


def _write_streamed(spec, label_model, batches, gold_of, output, model, seed, run_facts) -> Ledger:
    """The second pass: each batch's ledger rows written to ``output`` (``LedgerFile``, through a
    temporary file) and hashed; the metadata, which holds the hash, written last."""
    output = Path(output)
    counted, labels_seen = LedgerFacts(), {}
    digest, file, ids = None, None, RepeatedIds()
    try:
        with atomic_path(output) as tmp:
            try:
                for batch, out in _with_model_output(batches, model):
                    gold = gold_of(batch)
                    rows = ledger_rows(spec, label_model, batch.ids, batch.votes, gold=gold, model_output=out,
                                       fields=row_fields(spec, batch.table))
                    if file is None:
                        digest, file = RowsHash(rows.schema), LedgerFile(tmp, rows.schema)
                    file.write(rows)
                    digest.add(rows)
                    counted.add(batch.votes, gold)
                    ids.add(rows.column("id"))
                    for entry in pc.value_counts(rows.column("label")).to_pylist():
                        labels_seen[entry["values"]] = labels_seen.get(entry["values"], 0) + entry["counts"]
                if file is None:
                    raise DataError(f"{gold_of.path}: the file has a header but no rows")
                if model is not None:
                    gold_of.check(counted.gold_rows)
                run, rules, params = (canonical_json(x) for x in ledger_metadata(
                    spec, label_model, counted, seed=seed, run_facts=run_facts,
                    blend=None if model is None else model.blend))
                file.close(_ledger_meta(digest.hexdigest(), run, rules, params))
            finally:
                if file is not None:
                    file.abort()
        ledger = Ledger(None, json.loads(run), json.loads(rules), json.loads(params), output,
                        counts=labels_seen, repeated=ids.repeated(output), streamed=True)
        del ledger.table  # read back from ``output`` when asked for (Ledger.__getattr__)
        return ledger
    finally:
        if digest is not None:
            digest.close()
        ids.close()


def _with_model_output(batches, model):
    """(batch, ``model_output`` of it) for each batch, in order; with a model, each batch's
    output is computed on a thread of its own while the caller writes the batch before it
    (the end model's kernel releases the GIL), so the two overlap; one batch ahead at most."""
    if model is None:
        yield from ((batch, None) for batch in batches)
        return
    with ThreadPoolExecutor(max_workers=1) as pool:
        ahead = None
        for batch in batches:
            coming = (batch, pool.submit(model_output, model, batch.table, batch.votes))
            if ahead is not None:
                yield ahead[0], ahead[1].result()
            ahead = coming
        if ahead is not None:
            yield ahead[0], ahead[1].result()


def label_partitioned(spec, source, output, id_column, gold, seed, batch_rows, progress, model, engine, facts,
                      label_model_settings) -> Ledger:
    """A partitioned ledger: a folder with a part per partition, each written where the partition
    is evaluated (on the Dask workers: ``dask_engine.for_each_partition``), so no row comes back
    here. A first pass sums each partition's vote-pattern counts and the label model is fitted on
    them, as ``label`` does (with a trained ``model``: its label model, no first pass); a second
    writes each partition's ledger rows — the rows a local ``label`` writes — as a part; the
    manifest, written last, lists the parts with their sha256 and holds the ledger's metadata and
    hash (over each part's ``rows_sha256``). The parts go to a folder beside ``output`` that
    replaces it only once complete (``datasets.replacing_folder``)."""
    from .dask_engine import for_each_partition
    from .datasets import replacing_folder, write_manifest
    gold_of = batch_gold(gold, spec.labels, source.path, id_column)

    def each_partition(fn, **shared):
        return for_each_partition(engine, fn, spec, source, id_column, columns=gold.columns, batch_rows=batch_rows,
                                  progress=progress, **shared)
    if model is None:
        from .label_model import VoteCounts  # scikit-learn is slow to import
        counts = VoteCounts(len(spec.rules))
        for part in each_partition(_count_part, gold_of=gold_of):
            counts.absorb(part)
        label_model = _fit_on_counts(spec, counts, source, gold_of, label_model_settings, seed)
    else:
        label_model = model.label_model
    counted, labels_seen, ids = LedgerFacts(), {}, RepeatedIds()
    try:
        with replacing_folder(output) as folder:
            parts = []
            for part in each_partition(_ledger_part, folder=str(folder), label_model=label_model, model=model,
                                       gold_of=gold_of):
                parts.append(part)
                counted.merge(part.pop("facts"))
                for label, n in part.pop("labels").items():
                    labels_seen[label] = labels_seen.get(label, 0) + n
                ids.add_hashes(part.pop("id_hashes"))
            if counted.rows == 0:
                raise DataError(f"{source.path}: the file has a header but no rows")
            if model is not None:
                gold_of.check(counted.gold_rows)
            run, rules, params = (canonical_json(x) for x in ledger_metadata(
                spec, label_model, counted, seed=seed, run_facts=facts, blend=None if model is None else model.blend))
            digest = parts_rows_sha256([part.pop("rows_sha256") for part in parts])
            meta = {k.decode(): v for k, v in _ledger_meta(digest, run, rules, params).items()}
            write_manifest(folder, parts, {"ledger": meta})
            repeated = ids.repeated([Path(folder) / part["file"] for part in parts])
    finally:
        ids.close()
    ledger = Ledger(None, json.loads(run), json.loads(rules), json.loads(params), Path(output),
                    counts=labels_seen, repeated=repeated, streamed=True)
    del ledger.table  # read back from ``output`` when asked for (Ledger.__getattr__)
    return ledger


def _count_part(spec, index, offset, batches, gold_of):
    """On a worker: a partition's vote-pattern counts (``label_model.VoteCounts``)."""
    from .label_model import VoteCounts
    gold_of = gold_of.starting_at(offset)
    counts = VoteCounts(len(spec.rules))
    for batch in batches:
        counts.add(batch.votes, gold_of(batch))
    return counts


def _ledger_part(spec, index, offset, batches, folder, label_model, model, gold_of):
    """On a worker: a partition's ledger rows (``ledger_rows``, as ``label`` builds them batch by
    batch) written as part ``index`` of ``folder``; returns its manifest entry, with what the
    ledger's metadata counts (``facts``, rows per label), the 64-bit hashes of its ids
    (``RepeatedIds``) and its ``rows_sha256``."""
    from .datasets import write_part
    gold_of = gold_of.starting_at(offset)
    facts, labels, hashes, digest = LedgerFacts(), {}, [], None

    def rows():
        nonlocal digest
        for batch in batches:
            gold = gold_of(batch)
            out = model_output(model, batch.table, batch.votes) if model is not None else None
            table = ledger_rows(spec, label_model, batch.ids, batch.votes, gold=gold, model_output=out,
                                fields=row_fields(spec, batch.table))
            digest = digest or RowsHash(table.schema)
            digest.add(table)
            facts.add(batch.votes, gold)
            hashes.append(id_hashes(table.column("id").combine_chunks()))
            for entry in pc.value_counts(table.column("label")).to_pylist():
                labels[entry["values"]] = labels.get(entry["values"], 0) + entry["counts"]
            yield table
    try:
        entry = write_part(folder, index, rows())
        return {**entry, "facts": facts, "labels": labels, "id_hashes": np.concatenate(hashes),
                "rows_sha256": digest.hexdigest()}
    finally:
        if digest is not None:
            digest.close()


def parts_rows_sha256(digests: list) -> str:
    """The row digest of a partitioned ledger: sha256 over its parts' ``rows_sha256``, in order."""
    h = hashlib.sha256(f"mteach ledger parts:{len(digests)}\0".encode())
    for digest in digests:
        h.update(digest.encode() + b"\0")
    return h.hexdigest()


class batch_gold:
    """Each batch's gold label indices (-1 unknown; None when no gold was asked for), as
    ``GoldRequest.resolve`` gives them for all rows: a gold file is read once and matched by
    id batch by batch; a column's row numbers in errors count from the start of the data."""

    def __init__(self, gold: GoldRequest, labels, path, id_column):
        self.request, self.labels, self.path, self.id_column = gold, list(labels), path, id_column
        self.file = read_gold_file(gold.file, self.labels) if gold.file else None
        self.mapping = (parse_mapping(gold.mapping, self.labels) if gold.mapping else
                        {lab: lab for lab in self.labels}) if gold.column else None
        self.offset = 0

    def __call__(self, batch) -> Optional[np.ndarray]:
        offset, self.offset = self.offset, self.offset + batch.num_rows
        if self.file is not None:
            return align_gold(batch.ids, *self.file)
        if self.mapping is not None:
            return gold_from_column(batch.table, self.request.column, self.mapping, self.labels, str(self.path),
                                    first_row=offset)
        return None

    def starting_at(self, offset: int) -> "batch_gold":
        """A copy for the rows from ``offset`` on (a partition's, on a worker)."""
        other = copy.copy(self)
        other.offset = offset
        return other

    def check(self, known_rows: Optional[int]) -> None:
        """After all rows: a gold file none of whose ids is in the data is an error."""
        if self.file is not None and not known_rows:
            raise DataError(f"{self.request.file}: none of its ids is in {self.path} (column {self.id_column})")


class RepeatedIds:
    """Which ids repeat, found batch by batch: a 64-bit hash per row is spooled to one of
    ``BUCKETS`` temporary files by its top bits (8 bytes a row on disk), and each file is read
    back and sorted alone at the end, so memory holds 1/``BUCKETS`` of the hashes, not all;
    only the ids whose hash repeats are read back from the written ledger and counted
    exactly, so a hash collision costs a read, never a false warning."""

    BITS = 6
    BUCKETS = 1 << BITS

    def __init__(self):
        self.spools = [tempfile.TemporaryFile() for _ in range(self.BUCKETS)]

    def add(self, ids) -> None:
        self.add_hashes(id_hashes(ids.combine_chunks() if isinstance(ids, pa.ChunkedArray) else ids))

    def add_hashes(self, hashes: np.ndarray) -> None:
        """Add ids by their ``id_hashes`` (computed where the ids are)."""
        bucket = (hashes >> np.uint64(64 - self.BITS)).astype(np.intp)
        order = np.argsort(bucket, kind="stable")
        hashes = hashes[order]
        bounds = np.searchsorted(bucket[order], np.arange(self.BUCKETS + 1))
        for spool, start, end in zip(self.spools, bounds[:-1], bounds[1:]):
            if end > start:
                spool.write(hashes[start:end].tobytes())

    def repeated(self, ledger_files) -> Optional[tuple]:
        """(rows repeating an earlier row's id, ids repeated, the first such id, its rows) or None;
        ``ledger_files``: the written ledger, or its parts in order."""
        found = []
        for spool in self.spools:  # in order of the top bits: the suspects come out sorted
            spool.seek(0)
            hashes = np.fromfile(spool, dtype=np.uint64)
            hashes.sort()
            found.append(np.unique(hashes[1:][hashes[1:] == hashes[:-1]]))
        self.close()
        suspects = np.concatenate(found)
        if not len(suspects):
            return None
        kept = []
        for ledger_file in ledger_files if isinstance(ledger_files, list) else [ledger_files]:
            for batch in parquet_batches(ledger_file, ["id"]):
                ids = batch.column(0)
                kept.append(ids.filter(pa.array(np.isin(id_hashes(ids), suspects))))
        return repeated_ids(pa.concat_arrays(kept))

    def close(self) -> None:
        for spool in self.spools:
            spool.close()


def id_hashes(ids: pa.Array) -> np.ndarray:
    """A 64-bit hash of each id's text (integers: the value itself), vectorized."""
    if pa.types.is_integer(ids.type):
        return pc.fill_null(ids.cast(pa.int64()), 0).to_numpy(zero_copy_only=False).view(np.uint64)
    text = pc.fill_null(pc.cast(ids, pa.large_string()), "").cast(pa.large_binary())
    text = pa.concat_arrays([text]) if text.offset else text
    offsets = np.frombuffer(text.buffers()[1], dtype=np.int64)[: len(text) + 1]
    data = np.frombuffer(text.buffers()[2], dtype=np.uint8) if text.buffers()[2] is not None else np.zeros(0, np.uint8)
    if offsets[-1] - offsets[0] >= _KERNEL_ID_BYTES:
        from .features import compiled_kernel  # numba's import is worth it past this many bytes
        kernel = compiled_kernel()
        if kernel is not None:
            return kernel.id_hashes(data, offsets)
    data = data[offsets[0]:offsets[-1]].astype(np.uint64)
    starts, lengths = offsets[:-1] - offsets[0], np.diff(offsets)
    with np.errstate(over="ignore"):
        # sum of byte_i * P^i over the whole buffer, per id, then shifted to start at P^0
        prefix = np.concatenate([np.zeros(1, np.uint64), np.cumsum(data * powers(_P, len(data)), dtype=np.uint64)])
        sums = prefix[starts + lengths] - prefix[starts]
        h = sums * powers(_P_INVERSE, len(data) + 1)[starts] + lengths.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
        h ^= h >> np.uint64(33)  # a finaliser (murmur3's) spreads the bits
        h *= np.uint64(0xFF51AFD7ED558CCD)
        h ^= h >> np.uint64(33)
    return h


_P = np.uint64(0x100000001B3)                      # odd: invertible modulo 2^64
_P_INVERSE = np.uint64(pow(0x100000001B3, -1, 1 << 64))
_KERNEL_ID_BYTES = 1 << 20  # ids of more bytes than this hashed by the compiled kernel (the same numbers)


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
    rows_digest = None
    try:
        if path.is_dir():  # a partitioned ledger (label --engine dask): complete only with its manifest
            table, rows_digest = _read_partitioned(path, check)
        else:
            table = pq.read_table(path)
    except (OSError, pa.ArrowInvalid) as err:
        raise LedgerError(f"{path}: cannot read the ledger: {str(err).splitlines()[0]}") from None
    meta = table.schema.metadata or {}
    ledger = Ledger(table.replace_schema_metadata(None), *_ledger_facts(path, table.schema), path)
    if check:
        _check_digest(path, meta, rows_digest or rows_sha256(ledger.table))
    return ledger


def _ledger_facts(path: Path, schema: pa.Schema) -> tuple:
    """(run, rules, label model) from a ledger's schema metadata; LedgerError when they or a
    column are missing."""
    meta = schema.metadata or {}
    if META_RUN not in meta or META_RULES not in meta:
        raise LedgerError(f"{path}: not a label ledger written by `mteach label` (no run facts in its metadata)")
    try:
        run, rules, model = (json.loads(meta[key]) for key in (META_RUN, META_RULES, META_MODEL))
    except (KeyError, ValueError) as err:
        raise LedgerError(f"{path}: the ledger's metadata is damaged ({err})") from None
    problem = _shape_problem(schema.empty_table(), run, rules, model)
    if problem:
        raise LedgerError(f"{path}: the ledger is damaged or was not written by this version of mteach: {problem}; "
                          "re-run `mteach label`")
    return run, rules, model


def _check_digest(path: Path, meta: dict, rows_digest: str) -> None:
    """LedgerError when the sha256 recorded in ``meta`` is not that of the rows and metadata."""
    recorded = meta.get(META_HASH, b"").decode()
    actual = _ledger_digest(rows_digest, meta[META_RUN].decode(), meta[META_RULES].decode(),
                            meta[META_MODEL].decode())
    if recorded != actual:
        raise LedgerError(f"{path}: the ledger was modified after it was written: its content sha256 is "
                          f"{actual[:16]}…, the one recorded when it was written is "
                          f"{(recorded or 'missing')[:16]}…; do not trust its labels — re-run `mteach label`")


def open_ledger(path, check: bool = True, batch_rows: int = DEFAULT_BATCH_ROWS) -> Ledger:
    """A ledger file's facts without its rows (``read_ledger`` reads them all): the metadata
    from the file's footer, the rows left on disk (read back only if ``table`` is used); with
    ``check``, the sha256 recomputed a batch at a time (``RowsHash``), so memory is bounded by
    the batch. A partitioned ledger (a folder) is opened the same way, part by part
    (``_open_partitioned``)."""
    path = Path(path)
    if path.is_dir():
        return _open_partitioned(path, check, batch_rows)
    if not path.is_file():
        return read_ledger(path, check)
    try:
        schema = pq.read_schema(path)
    except (OSError, pa.ArrowInvalid) as err:
        raise LedgerError(f"{path}: cannot read the ledger: {str(err).splitlines()[0]}") from None
    facts = _ledger_facts(path, schema)
    if check:
        digest = RowsHash(schema.remove_metadata())
        try:
            for batch in parquet_batches(path, batch_rows=batch_rows):
                digest.add(batch)
            _check_digest(path, schema.metadata, digest.hexdigest())
        finally:
            digest.close()
    ledger = Ledger(None, *facts, path, streamed=True)
    del ledger.table  # read back from ``path`` when asked for (Ledger.__getattr__)
    return ledger


def _open_partitioned(path: Path, check: bool, batch_rows: int) -> Ledger:
    """``open_ledger`` of a partitioned ledger: its facts from the manifest; with ``check``, each
    part's file sha256 (a changed part is named) and its ``rows_sha256`` recomputed a batch at
    a time, so memory is bounded by the batch, not the ledger. One written before the manifest
    held the metadata is read whole (``read_ledger``)."""
    from .datasets import part_paths, read_manifest
    try:
        manifest = read_manifest(path)
        parts = part_paths(path, check) if isinstance(manifest.get("ledger"), dict) else None
    except DataError as err:
        raise LedgerError(str(err)) from None
    if parts is None:
        return read_ledger(path, check)
    meta = {k.encode(): str(v).encode() for k, v in manifest["ledger"].items() if k.startswith("mteach.")}
    kept = ledger_columns(path)
    facts = _ledger_facts(path, pa.schema([pq.read_schema(parts[0]).field(name) for name in kept], metadata=meta))
    if check:
        digests = []
        for part in parts:
            schema = pq.read_schema(part)
            digest = RowsHash(pa.schema([schema.field(name) for name in kept]))
            try:
                for batch in parquet_batches(part, kept, batch_rows):
                    digest.add(batch)
                digests.append(digest.hexdigest())
            finally:
                digest.close()
        _check_digest(path, meta, parts_rows_sha256(digests))
    ledger = Ledger(None, *facts, path, streamed=True)
    del ledger.table  # read back from ``path`` when asked for (Ledger.__getattr__)
    return ledger


def ledger_columns(path) -> list:
    """A ledger's column names, read from a file's footer or a partitioned ledger's first part
    (less those its manifest says to leave out: ``end_model_features`` in a ledger written
    before that column was kept in every ledger of a model)."""
    path = Path(path)
    if not path.is_dir():
        return pq.read_schema(path).names
    from .datasets import part_paths, read_manifest
    drop = (read_manifest(path).get("ledger") or {}).get("drop") or []
    return [name for name in pq.read_schema(part_paths(path, check=False)[0]).names if name not in drop]


def ledger_batches(path, columns=None, batch_rows: int = DEFAULT_BATCH_ROWS) -> Iterator[pa.RecordBatch]:
    """A ledger's rows (``columns`` of them) a batch at a time: a file's, or a partitioned
    ledger's parts in order (each part's last batch shorter)."""
    path = Path(path)
    if not path.is_dir():
        yield from parquet_batches(path, columns, batch_rows)
        return
    from .datasets import part_paths
    for part in part_paths(path, check=False):
        yield from parquet_batches(part, columns, batch_rows)


def _read_partitioned(path: Path, check: bool) -> tuple:
    """A partitioned ledger's rows with its metadata (kept in its manifest) and, with ``check``,
    the digest of its rows (``parts_rows_sha256``). One written before the manifest held the
    metadata carries it in each part and is hashed whole: (rows, None)."""
    from .datasets import read_manifest, read_parts
    try:
        manifest, tables = read_manifest(path), read_parts(path)
    except DataError as err:
        raise LedgerError(str(err)) from None
    meta = manifest.get("ledger")
    if not isinstance(meta, dict):
        return pa.concat_tables(tables), None
    drop = [c for c in meta.get("drop") or [] if c in tables[0].column_names]
    tables = [t.drop_columns(drop) for t in tables] if drop else tables
    digest = parts_rows_sha256([rows_sha256(t) for t in tables]) if check else None
    table = pa.concat_tables(tables).replace_schema_metadata(
        {k.encode(): str(v).encode() for k, v in meta.items() if k.startswith("mteach.")})
    return table, digest


def repeated_ids(ids: pa.Array) -> Optional[tuple]:
    """(rows repeating an earlier row's id, ids repeated, the first repeated id in data order,
    its rows) of an id column, or None when every id is unique."""
    ids = pc.cast(ids, pa.string())
    ids = ids.combine_chunks() if isinstance(ids, pa.ChunkedArray) else ids
    counts = pc.value_counts(ids.filter(pc.is_valid(ids)))  # in order of first appearance
    repeated = counts.filter(pc.greater(counts.field("counts"), 1))
    if len(repeated) == 0:
        return None
    extra = int(pc.sum(repeated.field("counts")).as_py()) - len(repeated)
    return extra, len(repeated), repeated[0]["values"].as_py(), repeated[0]["counts"].as_py()


def duplicate_ids_warning(ledger: Ledger) -> Optional[str]:
    """A one-line warning when the ledger's ids repeat (the data's id column is not unique):
    how many rows repeat an id, an example, and what ``explain`` does with it; else None."""
    found = ledger.repeated if ledger.streamed else repeated_ids(ledger.table.column("id"))
    if found is None:
        return None
    extra, n_ids, example, times = found
    return (f"warning: {ledger.path}: {extra:,} rows repeat an id of an earlier row ({n_ids:,} ids, e.g. "
            f"{example!r} on {times} rows); every row is labelled, but `mteach explain --id {example}` shows "
            f"only the first row with that id — give --id a column whose values are unique")


def label_counts(ledger: Ledger) -> dict:
    """Rows per label (spec order), then "no label" for rows nothing decided."""
    counts = ledger.counts if ledger.streamed else {
        v["values"]: v["counts"] for v in pc.value_counts(ledger.table.column("label")).to_pylist()}
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
