"""Drift: is a deployed spec still doing on new data what it did on the data it was built on?

``drift(spec, reference, new)`` streams each file once, in Arrow batches, and keeps only
bounded summaries (memory does not grow with the rows):

* per rule: rows voted (coverage); rows no rule covers; rows where rules conflict;
* labels: the label model's labels on covered rows (and the trained model's on all rows
  with ``model=``), and the sums behind the estimated accuracy;
* per number field and per text field's length in words: a seeded uniform reservoir sample
  of ``sample_rows`` values for the Kolmogorov–Smirnov test. A reservoir, not binned CDFs:
  it needs no bin edges chosen before the data is seen, KS on it is the exact two-sample
  test on a random subsample (so its p-value is valid, computed on the sample sizes), and
  the sample's CDF is within 1.36/sqrt(R) of the full data's at 95% (DKW; R = 20,000: 0.01);
* per text field: token counts, pruned to the ``vocab_size`` most frequent (counts of
  pruned-and-returning tokens are lower bounds), for the share of new tokens the reference
  never had and the new frequent terms;
* a few example rows per rule (the first seen), and for the spot check one reservoir per
  stratum (every rule, uncovered, uncertain, conflicted, all rows), keyed by the same
  seeded uniform number per row.

Tests: rule coverage, uncovered and conflicted shares by the two-proportion chi-square
test (Fisher's exact test when an expected count is below 5) with Cohen's h as the effect;
label distributions by chi-square with the Jensen–Shannon divergence; numbers and text
lengths by KS. Every p-value of a run is adjusted together by Holm's step-down method, so
the chance that a run with no drift flags anything is at most ``alpha`` whatever the
dependence between tests; a finding is flagged when its adjusted p is below ``alpha`` *and*
its effect passes the ``[drift]`` threshold.

The estimated accuracy on unlabelled rows is CBPE's: the mean of the top class
probability, with a normal interval for the sum of those Bernoulli outcomes. It is only as
good as the probabilities' calibration.
"""
from __future__ import annotations

import collections
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from scipy import stats as sstats
from scipy.spatial.distance import jensenshannon

from ..compiler.checker import load_spec
from ..compiler.spec import Spec, field_kind
from ..errors import DataError
from ..settings import DriftSettings, Settings
from .analysis import conflicted_rows, wilson_interval
from .apply import checked_for, resolve_id_column
from .gold import GoldRequest, align_gold, gold_from_column, parse_mapping, read_gold_file
from .io import DEFAULT_BATCH_ROWS, DataSource, open_data
from .votes import vote_batches

CALIBRATION_NOTE = ("estimated from the model's own probabilities without labels (as NannyML's CBPE does): "
                    "it is only as good as their calibration, and a new tactic the model is confidently wrong "
                    "about lowers the true accuracy without lowering the estimate; the spot check measures it")
EXAMPLES_PER_RULE = 3
TOKEN_PATTERN = r"[^\p{L}\p{N}']+"   # tokens: runs of letters, digits and apostrophes
NEW_TERMS = 10
FIXED = float(1 << 40)


# -- bounded summaries --------------------------------------------------------------------------
class Reservoir:
    """The ``size`` items with the smallest keys offered so far. With keys drawn uniformly from
    a seeded generator (one per row, in file order) this is a uniform sample without
    replacement that does not depend on the batch size."""

    def __init__(self, size: int):
        self.size = size
        self.keys = np.empty(0)
        self.items = np.empty(0)

    def offer(self, keys: np.ndarray, items: np.ndarray) -> None:
        if len(self.keys) >= self.size:
            keep = keys < self.keys.max()
            keys, items = keys[keep], items[keep]
        if not len(keys):
            return
        keys = np.concatenate([self.keys, keys])
        items = np.concatenate([self.items.astype(items.dtype, copy=False), items])
        if len(keys) > self.size:
            chosen = np.argpartition(keys, self.size - 1)[:self.size]
            keys, items = keys[chosen], items[chosen]
        self.keys, self.items = keys, items

    def ordered(self) -> np.ndarray:
        """The items, smallest key first."""
        return self.items[np.argsort(self.keys, kind="stable")]


class TokenCounts:
    """Token → count for one text field, pruned to the ``limit`` most frequent (Arrow group-by)."""

    def __init__(self, limit: int):
        self.limit = limit
        self.table = pa.table({"token": pa.array([], pa.string()), "count": pa.array([], pa.int64())})
        self.total = 0

    def add(self, tokens: pa.Array) -> None:
        self.total += len(tokens)
        counts = pc.value_counts(tokens)
        batch = pa.table({"token": counts.field("values"), "count": counts.field("counts").cast(pa.int64())})
        merged = pa.concat_tables([self.table, batch]).group_by("token").aggregate([("count", "sum")])
        self.table = merged.rename_columns(["token", "count"])
        if self.table.num_rows > 2 * self.limit:
            self.prune()

    def prune(self) -> None:
        self.table = self.table.sort_by([("count", "descending"), ("token", "ascending")]).slice(0, self.limit)

    def as_dict(self) -> dict:
        return dict(zip(self.table.column("token").to_pylist(), self.table.column("count").to_pylist()))


def tokens_of(text) -> pa.Array:
    """Lower-cased word tokens of a text column (nulls give none), two characters or more."""
    words = pc.list_flatten(pc.split_pattern_regex(pc.utf8_lower(text), TOKEN_PATTERN))
    return pc.filter(words, pc.greater_equal(pc.utf8_length(words), 2))


def words_per_row(text) -> np.ndarray:
    """Words (runs of non-whitespace, as ``words()`` counts them) per non-null row."""
    counts = pc.list_value_length(pc.utf8_split_whitespace(pc.drop_null(text)))
    return counts.to_numpy(zero_copy_only=False).astype(np.float64)


# -- one side (reference or new) ---------------------------------------------------------------
@dataclass
class Profile:
    """What one file's scan keeps: counts, samples and sums, bounded whatever its length."""
    rules: list
    labels: list
    number_fields: dict        # field name -> column
    text_fields: dict
    settings: DriftSettings
    rows: int = 0
    rule_votes: np.ndarray = None
    uncovered: int = 0
    conflicted: int = 0
    lm_labels: np.ndarray = None        # label model's label per covered row, counted
    model_labels: Optional[np.ndarray] = None
    scored: int = 0                     # rows the estimated accuracy is over
    confidence_sum: int = 0             # sum of p, and of p (1 - p), in units of 2**-40: integer
    confidence_var: int = 0             # sums are exact, so batching cannot change the result
    uncertain: int = 0
    gold_rows: int = 0
    gold_correct: int = 0
    numbers: dict = field(default_factory=dict)   # field -> Reservoir of values
    missing: dict = field(default_factory=dict)   # field -> null count
    lengths: dict = field(default_factory=dict)   # text field -> Reservoir of words per row
    tokens: dict = field(default_factory=dict)    # text field -> TokenCounts
    unseen: dict = field(default_factory=dict)    # text field -> tokens not in the reference vocabulary
    examples: list = None                         # per rule: [(id, text)]

    def __post_init__(self):
        m, k = len(self.rules), len(self.labels)
        self.rule_votes = np.zeros(m, np.int64)
        self.lm_labels = np.zeros(k, np.int64)
        self.examples = [[] for _ in range(m)]
        size = self.settings.sample_rows
        for name in self.number_fields:
            self.numbers[name], self.missing[name] = Reservoir(size), 0
        for name in self.text_fields:
            self.lengths[name], self.tokens[name] = Reservoir(size), TokenCounts(self.settings.vocab_size)
            self.unseen[name] = 0

    def add_votes(self, ids: pa.Array, votes: np.ndarray, table, keys: np.ndarray, reference_vocab=None):
        n = len(votes)
        voted = votes != -1
        self.rule_votes += voted.sum(axis=0)
        self.uncovered += int((~voted.any(axis=1)).sum())
        self.conflicted += int(conflicted_rows(votes).sum())
        self._examples(ids, voted, table)
        for name, column in self.number_fields.items():
            values = table.column(column)
            present = pc.is_valid(values).to_numpy(zero_copy_only=False)
            self.missing[name] += int(n - present.sum())
            floats = pc.drop_null(values).to_numpy(zero_copy_only=False).astype(np.float64)
            self.numbers[name].offer(keys[present], floats)
        for name, column in self.text_fields.items():
            text = table.column(column)
            present = pc.is_valid(text).to_numpy(zero_copy_only=False)
            self.lengths[name].offer(keys[present], words_per_row(text))
            tokens = tokens_of(text)
            self.tokens[name].add(tokens)
            if reference_vocab is not None:
                known = pc.is_in(tokens, value_set=reference_vocab[name])
                self.unseen[name] += int(len(tokens) - pc.sum(known).as_py()) if len(tokens) else 0
        self.rows += n

    def _examples(self, ids, voted, table):
        first_text = next(iter(self.text_fields.values()), None)
        for j, found in enumerate(self.examples):
            if len(found) >= EXAMPLES_PER_RULE or not voted[:, j].any():
                continue
            rows = np.flatnonzero(voted[:, j])[:EXAMPLES_PER_RULE - len(found)]
            texts = (table.column(first_text).take(pa.array(rows)).to_pylist() if first_text
                     else [None] * len(rows))
            found.extend({"id": str(ids[int(i)].as_py()), "text": t} for i, t in zip(rows, texts))

    def add_predictions(self, lm_proba: np.ndarray, covered: np.ndarray, model_proba: Optional[np.ndarray],
                        gold: Optional[np.ndarray]) -> np.ndarray:
        """Count labels and the estimated-accuracy sums; returns each row's top probability
        (of the deployed labeller: the model when given, else the label model; NaN where
        the label model alone leaves a row uncovered)."""
        k = len(self.labels)
        self.lm_labels += np.bincount(lm_proba[covered].argmax(axis=1), minlength=k)
        if model_proba is not None:
            if self.model_labels is None:
                self.model_labels = np.zeros(k, np.int64)
            self.model_labels += np.bincount(model_proba.argmax(axis=1), minlength=k)
            proba, scored = model_proba, np.ones(len(covered), bool)
        else:
            proba, scored = lm_proba, covered
        top = proba.max(axis=1)
        p = top[scored]
        self.scored += int(scored.sum())
        self.confidence_sum += int(np.round(p * FIXED).astype(np.int64).sum())
        self.confidence_var += int(np.round(p * (1 - p) * FIXED).astype(np.int64).sum())
        self.uncertain += int((p < self.settings.uncertain).sum())
        if gold is not None:
            known = scored & (gold != -1)
            self.gold_rows += int(known.sum())
            self.gold_correct += int((proba[known].argmax(axis=1) == gold[known]).sum())
        return np.where(scored, top, np.nan)


# -- streaming ---------------------------------------------------------------------------------
# -- the report --------------------------------------------------------------------------------
@dataclass
class DriftReport:
    """Everything ``mteach drift`` prints, as data (``to_dict`` is the JSON)."""
    spec: str
    spec_hash: str
    reference: dict
    new: dict
    flagged: bool
    findings: list
    rules: list
    labels: dict
    fields: list
    estimated_accuracy: dict
    spot_check: dict
    settings: dict
    queue: list            # the spot-check rows, in review order

    def to_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "queue"}


def holm(p_values) -> np.ndarray:
    """Holm–Bonferroni step-down adjusted p-values (controls the family-wise error rate)."""
    p = np.asarray(p_values, dtype=float)
    n = len(p)
    if not n:
        return p
    order = np.argsort(p, kind="stable")
    scaled = np.minimum(1.0, (n - np.arange(n)) * p[order])
    out = np.empty(n)
    out[order] = np.maximum.accumulate(scaled)
    return out


def two_proportions(a: int, n1: int, b: int, n2: int) -> float:
    """p-value of 'the share a/n1 equals b/n2' (chi-square; Fisher's exact test for small counts)."""
    if a + b == 0 or a + b == n1 + n2:
        return 1.0
    table = np.array([[a, n1 - a], [b, n2 - b]])
    expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0, keepdims=True) / table.sum()
    if expected.min() < 5:
        return float(sstats.fisher_exact(table)[1])
    return float(sstats.chi2_contingency(table, correction=False)[1])


def cohens_h(p1: float, p2: float) -> float:
    """Effect size of a change of proportion, p1 → p2 (0.2 small, 0.5 medium, 0.8 large)."""
    return float(2 * math.asin(math.sqrt(p2)) - 2 * math.asin(math.sqrt(p1)))


def _label_shift(ref_counts, new_counts, labels) -> dict:
    ref, new = np.asarray(ref_counts, float), np.asarray(new_counts, float)
    out = {"reference": _shares(ref, labels), "new": _shares(new, labels), "js_divergence": None, "p_value": 1.0}
    if ref.sum() and new.sum():
        out["js_divergence"] = float(jensenshannon(ref / ref.sum(), new / new.sum(), base=2) ** 2)
        used = (ref + new) > 0
        if used.sum() >= 2:
            out["p_value"] = float(sstats.chi2_contingency(np.stack([ref[used], new[used]]), correction=False)[1])
    return out


def _shares(counts, labels) -> dict:
    total = counts.sum()
    return {lab: (float(c / total) if total else None) for lab, c in zip(labels, counts)}


def _share_shift(name, a, n1, b, n2) -> dict:
    p1, p2 = a / n1, b / n2
    return {"what": name, "reference": p1, "new": p2, "reference_rows": int(a), "new_rows": int(b),
            "p_value": two_proportions(a, n1, b, n2), "effect": cohens_h(p1, p2)}


def _summary(values: np.ndarray) -> dict:
    if not len(values):
        return {"mean": None, "median": None, "p05": None, "p95": None}
    q = np.quantile(values, [0.05, 0.5, 0.95])
    return {"mean": float(values.mean()), "median": float(q[1]), "p05": float(q[0]), "p95": float(q[2])}


def _ks(name, kind, ref: Reservoir, new: Reservoir) -> dict:
    out = {"field": name, "kind": kind, "test": "ks", "statistic": None, "p_value": 1.0,
           "sample_rows": [int(len(ref.items)), int(len(new.items))],
           "reference": _summary(ref.items), "new": _summary(new.items)}
    if len(ref.items) and len(new.items):
        res = sstats.ks_2samp(ref.items, new.items)
        out["statistic"], out["p_value"] = float(res.statistic), float(res.pvalue)
    return out


def _new_terms(ref: TokenCounts, new: TokenCounts, k: int = NEW_TERMS) -> list:
    """New tokens at least 5 times as frequent (per token) as in the reference, most frequent first."""
    ref_counts = ref.as_dict()
    out = []
    for token, count in zip(new.table.column("token").to_pylist(), new.table.column("count").to_pylist()):
        before = ref_counts.get(token, 0)
        rate_new = count / max(new.total, 1)
        rate_ref = (before + 0.5) / max(ref.total, 1)
        if count >= 5 and rate_new >= 5 * rate_ref:
            out.append({"term": token, "new_count": int(count), "reference_count": int(before),
                        "ratio": rate_new / rate_ref})
    out.sort(key=lambda t: (-t["new_count"], t["term"]))
    return out[:k]


# -- the analysis ------------------------------------------------------------------------------
def _check_schemas(spec: Spec, reference: DataSource, new: DataSource, columns: list) -> None:
    """Every column the spec (and the id / gold options) reads has the same kind in both files."""
    problems = []
    field_of = {f.column: name for name, f in spec.fields.items()}
    for column in columns:
        what = f"column {column!r}" + (f" (field {field_of[column]})" if column in field_of else "")
        if column not in reference.schema.names:
            problems.append(f"{what}: missing in the reference {reference.path}")
            continue
        if column not in new.schema.names:
            problems.append(f"{what}: in the reference, missing in the new data {new.path}")
            continue
        a, b = field_kind(reference.schema.field(column).type), field_kind(new.schema.field(column).type)
        if a != b and None not in (a, b):
            problems.append(f"{what}: {a} ({reference.schema.field(column).type}) in the reference, "
                            f"{b} ({new.schema.field(column).type}) in the new data")
    if problems:
        raise DataError("the reference and the new data do not have the same fields; nothing was compared:\n  "
                        + "\n  ".join(problems))


def _gold_reader(gold: GoldRequest, source: DataSource, labels: list, id_column: Optional[str]):
    """A function (ids, batch) -> label index per row (-1 unknown) for one file, or None when
    it has no gold: the gold column where the file has it, or the gold file matched by id."""
    if gold.column:
        if gold.column not in source.schema.names:
            return None
        mapping = parse_mapping(gold.mapping, labels) if gold.mapping else {lab: lab for lab in labels}
        return lambda ids, batch: gold_from_column(pa.table({gold.column: batch.column(gold.column)}),
                                                   gold.column, mapping, labels, str(source.path))
    if gold.file:
        gold_ids, gold_labels = read_gold_file(gold.file, labels)
        return lambda ids, batch: align_gold(ids, gold_ids, gold_labels)
    return None


def drift(spec, reference, new, *, model=None, id_column: Optional[str] = None, gold: Optional[GoldRequest] = None,
          settings: Optional[Settings] = None, batch_rows: int = DEFAULT_BATCH_ROWS, threads: int = 2,
          progress: Optional[Callable[[int], None]] = None) -> DriftReport:
    """Compare ``new`` data with the ``reference`` the spec was built on (each streamed once).
    Gold labels (``gold``), where a file has them, give the measured accuracy beside the estimate.

    ``spec`` is a path or a loaded ``Spec``; ``model`` a model folder (refused unless it was
    trained on this spec version) or a loaded ``TrainedModel``. Raises ``DataError`` for
    schemas that differ (every difference listed) or an empty file, before any work.
    """
    from .calibration import MIN_GOLD_ROWS, fit_temperature, log_scores, tempered
    from .label_model import fit_for_spec
    settings = settings or Settings()
    ds = settings.drift
    gold = gold or GoldRequest()
    ref_source, new_source = open_data(reference), open_data(new)
    if new_source.num_rows == 0:
        raise DataError(f"{new_source.path}: the new data has no rows; there is nothing to compare")
    if ref_source.num_rows == 0:
        raise DataError(f"{ref_source.path}: the reference has no rows")
    if not isinstance(spec, Spec):
        spec = load_spec(spec, ref_source.schema)
    trained = None
    if model is not None:
        from .train import TrainedModel, load_model
        trained = model if isinstance(model, TrainedModel) else load_model(model, spec.path, ref_source.schema)
    id_column = resolve_id_column(ref_source, id_column)
    if gold:  # usage errors; the gold column need only be in one of the files
        has = [s for s in (ref_source, new_source) if gold.column in s.schema.names] or [ref_source]
        gold.check(has[0].schema, id_column, has[0].path)
    extra = [id_column] if id_column else []
    if gold.column and gold.column in ref_source.schema.names and gold.column in new_source.schema.names:
        extra.append(gold.column)
    _check_schemas(spec, ref_source, new_source, list(dict.fromkeys([f.column for f in spec.fields.values()] + extra)))
    spec = checked_for(spec, ref_source.schema)
    resolve_id_column(new_source, id_column)
    labels = list(spec.labels)
    numbers = {n: spec.column(n) for n, k in spec.field_kinds.items() if k == "number"}
    texts = {n: spec.column(n) for n, k in spec.field_kinds.items() if k == "text"}
    gold_columns = [gold.column] if gold.column else []

    def profile():
        return Profile(spec.rule_names, labels, numbers, texts, ds)

    def scan(source, side: Profile, seed: int, on_batch, reference_vocab=None):
        rng = np.random.default_rng(seed)
        gold_of = _gold_reader(gold, source, labels, id_column)
        cols = [c for c in extra + gold_columns if c in source.schema.names]
        for vb in vote_batches(spec, source, id_column, columns=cols, batch_rows=batch_rows, threads=threads):
            ids, votes, batch = vb.ids, vb.votes, vb.table
            keys = rng.random(len(votes))
            side.add_votes(ids, votes, batch, keys, reference_vocab)
            on_batch(ids, votes, batch, keys, gold_of(ids, batch) if gold_of else None)
            if progress:
                progress(len(votes))
        if side.rows == 0:
            raise DataError(f"{source.path}: the file has a header but no rows")

    # reference: votes kept (int8, rows x rules) to fit the label model when no model is given
    ref = profile()
    kept_votes, kept_gold, kept_model = [], [], []

    def on_reference(ids, votes, batch, keys, gold_rows):
        kept_votes.append(votes)
        kept_gold.append(gold_rows)
        if trained is not None:
            kept_model.append(trained.predict(pa.Table.from_batches([batch]), votes)["proba"])
    scan(ref_source, ref, ds.seed, on_reference)
    ref_votes = np.concatenate(kept_votes)
    if trained is not None:
        label_model = trained.label_model
    else:
        lm = settings.label_model
        label_model = fit_for_spec(spec, ref_votes, kind=lm.kind, prior_strength=lm.prior_strength,
                                   max_iter=lm.max_iter, seed=lm.seed)
    ref_gold = None if any(g is None for g in kept_gold) else np.concatenate(kept_gold)
    ref_covered = (ref_votes != -1).any(axis=1)
    ref_model = np.concatenate(kept_model) if kept_model else None
    # CBPE reads the scorer's probabilities as P(right): calibrate them by a temperature on the
    # reference's gold (never on the new data's), on the rows the scorer labels
    calibration = {"gold_rows": 0, "temperature": 1.0}
    if ref_gold is not None:
        if trained is not None:
            calibration["gold_rows"] = int((ref_gold != -1).sum())
            calibration["temperature"] = fit_temperature(log_scores(ref_model), ref_gold)
            ref_model = tempered(ref_model, calibration["temperature"])
        else:  # the label model fitted above, on covered rows
            covered_gold = np.where(ref_covered, ref_gold, -1)
            calibration["gold_rows"] = int((covered_gold != -1).sum())
            calibration["temperature"] = label_model.calibrate(ref_votes, covered_gold).temperature_
        if calibration["gold_rows"] < MIN_GOLD_ROWS:
            calibration["gold_rows"] = 0
    ref.add_predictions(label_model.predict_proba(ref_votes), ref_covered, ref_model, ref_gold)
    del kept_votes, ref_votes, ref_model
    for t in ref.tokens.values():
        t.prune()

    # new: everything in the stream, plus the spot-check candidates
    new_side = profile()
    spot = SpotCandidates(len(spec.rule_names), ds.spot_check, labels, spec.rule_names,
                          next(iter(texts.values()), None))

    def on_new(ids, votes, batch, keys, gold_rows):
        covered = (votes != -1).any(axis=1)
        model_proba = (tempered(trained.predict(pa.Table.from_batches([batch]), votes)["proba"],
                                 calibration["temperature"]) if trained is not None else None)
        lm_proba = label_model.predict_proba(votes)
        top = new_side.add_predictions(lm_proba, covered, model_proba, gold_rows)
        deployed = model_proba if model_proba is not None else lm_proba
        spot.offer(ids, votes, batch, keys, deployed.argmax(axis=1), top, covered, ds.uncertain,
                   offset=new_side.rows - len(votes))
    scan(new_source, new_side, ds.seed + 1, on_new, {name: t.table.column("token") for name, t in ref.tokens.items()})
    for t in new_side.tokens.values():
        t.prune()
    return _compare(spec, ref, new_side, spot, ref_source.path, new_source.path, settings,
                    "model" if trained is not None else "label model", calibration)


class SpotCandidates:
    """Per stratum (each rule, uncovered, uncertain, conflicted, all rows) the rows with the
    smallest seeded keys, and what a reviewer needs of each (id, text, verdict, rules)."""

    def __init__(self, n_rules: int, size: int, labels: list, rule_names: list, text_column: Optional[str]):
        self.size, self.labels, self.rule_names, self.text_column = size, labels, rule_names, text_column
        self.strata = {name: Reservoir(size) for name in
                       [("rule", j) for j in range(n_rules)] + ["uncovered", "uncertain", "conflicted", "all"]}
        self.rows = {}

    def offer(self, ids, votes, batch, keys, verdict, top, covered, uncertain, offset):
        if self.size == 0:
            return
        masks = {("rule", j): votes[:, j] != -1 for j in range(votes.shape[1])}
        masks.update({"uncovered": ~covered, "uncertain": top < uncertain, "conflicted": conflicted_rows(votes),
                      "all": np.ones(len(votes), bool)})
        index = np.arange(offset, offset + len(votes))
        for name, mask in masks.items():
            self.strata[name].offer(keys[mask], index[mask])
        kept = set()
        for r in self.strata.values():
            kept.update(r.items.tolist())
        fresh = sorted(i for i in kept if i >= offset and i not in self.rows)
        if fresh:
            local = np.array(fresh) - offset
            texts = (batch.column(self.text_column).take(pa.array(local)).to_pylist() if self.text_column
                     else [None] * len(local))
            for i, t in zip(local, texts):
                fired = [self.rule_names[j] for j in np.flatnonzero(votes[i] != -1)]
                self.rows[int(i + offset)] = {
                    "id": str(ids[int(i)].as_py()), "verdict": self.labels[verdict[i]] if not np.isnan(top[i]) else "-",
                    "confidence": None if np.isnan(top[i]) else round(float(top[i]), 4),
                    "rules": " ".join(fired), "text": t}
        if len(self.rows) > 4 * len(kept):
            self.rows = {i: r for i, r in self.rows.items() if i in kept}

    def queue(self, flagged_rules: list, uniform_share: float) -> list:
        """The review queue: a uniform part first (its measured accuracy is unbiased), then
        round-robin over the drifted rules' rows, uncovered rows and uncertain rows."""
        chosen, out = set(), []

        def take(row, part):
            chosen.add(row)
            out.append({**self.rows[row], "part": part})
        n_uniform = int(round(self.size * uniform_share))
        for row in self.strata["all"].ordered()[:n_uniform]:
            take(int(row), "uniform")
        targets = [(f"rule {self.rule_names[j]}", self.strata[("rule", j)]) for j in flagged_rules]
        targets += [("uncovered", self.strata["uncovered"]), ("uncertain", self.strata["uncertain"])]
        queues = [(part, [int(r) for r in res.ordered()]) for part, res in targets]
        while len(out) < self.size and any(rows for _, rows in queues):
            for part, rows in queues:
                while rows and rows[0] in chosen:
                    rows.pop(0)
                if rows and len(out) < self.size:
                    take(rows.pop(0), part)
        for row in self.strata["all"].ordered():   # too few targeted rows: fill uniformly
            if len(out) >= self.size:
                break
            if int(row) not in chosen:
                take(int(row), "uniform (fill)")
        return out


def _compare(spec, ref: Profile, new: Profile, spot: SpotCandidates, ref_path, new_path, settings, scorer,
             calibration: dict) -> DriftReport:
    ds = settings.drift
    labels = spec.labels
    tests = []   # (dict, effect passes its threshold) whose p_value is adjusted together

    rules = []
    for j, r in enumerate(spec.rules):
        entry = _share_shift(r.name, int(ref.rule_votes[j]), ref.rows, int(new.rule_votes[j]), new.rows)
        entry = {"rule": r.name, "label": r.rule.label, "where": f"{r.rule.span.file}:{r.rule.span.line}",
                 "reference_coverage": entry["reference"], "new_coverage": entry["new"],
                 "reference_votes": entry["reference_rows"], "new_votes": entry["new_rows"],
                 "p_value": entry["p_value"], "effect": entry["effect"],
                 "ratio": (entry["new"] / entry["reference"]) if entry["reference"] else None,
                 "direction": "fires more" if entry["new"] > entry["reference"] else
                              ("stopped firing" if entry["new_rows"] == 0 and entry["reference_rows"] else "fires less"),
                 "examples": {"reference": ref.examples[j], "new": new.examples[j]}}
        rules.append(entry)
        tests.append((entry, abs(entry["effect"]) >= ds.min_effect))

    shares = [_share_shift("uncovered", ref.uncovered, ref.rows, new.uncovered, new.rows),
              _share_shift("conflicted", ref.conflicted, ref.rows, new.conflicted, new.rows)]
    for s in shares:
        tests.append((s, abs(s["effect"]) >= ds.min_effect))
    label_shifts = {"label_model": _label_shift(ref.lm_labels, new.lm_labels, labels)}
    label_shifts["label_model"]["rows"] = "covered rows"
    if ref.model_labels is not None:
        label_shifts["model"] = _label_shift(ref.model_labels, new.model_labels, labels)
        label_shifts["model"]["rows"] = "all rows"
    for shift in label_shifts.values():
        tests.append((shift, (shift["js_divergence"] or 0) >= ds.min_js))

    fields = []
    for name in ref.number_fields:
        f = _ks(name, "number", ref.numbers[name], new.numbers[name])
        f["missing"] = {"reference": ref.missing[name] / ref.rows, "new": new.missing[name] / new.rows}
        fields.append(f)
    for name in ref.text_fields:
        f = _ks(name, "text length (words)", ref.lengths[name], new.lengths[name])
        total = new.tokens[name].total
        f["unseen_token_share"] = new.unseen[name] / total if total else None
        f["reference_vocabulary"] = int(ref.tokens[name].table.num_rows)
        f["new_terms"] = _new_terms(ref.tokens[name], new.tokens[name])
        fields.append(f)
    for f in fields:
        tests.append((f, (f["statistic"] or 0) >= ds.min_ks))

    for (entry, big_enough), adjusted in zip(tests, holm([t["p_value"] for t, _ in tests])):
        entry["p_adjusted"] = float(adjusted)
        entry["flagged"] = bool(adjusted < ds.alpha and big_enough)

    rules.sort(key=lambda e: (not e["flagged"], -abs(e["effect"]), e["p_value"], e["rule"]))
    fields.sort(key=lambda e: (not e["flagged"], -(e["statistic"] or 0), e["field"]))

    accuracy = {"scorer": scorer, "rows": "all rows" if scorer == "model" else "rows the rules cover",
                "reference": _accuracy(ref), "new": _accuracy(new), "note": CALIBRATION_NOTE,
                "calibration": calibration}
    ref_acc = accuracy["reference"]
    # how far off the estimate was where the truth is known: the calibration, measured
    accuracy["reference_gap"] = (None if ref_acc["measured"] is None or ref_acc["estimated"] is None
                                 else ref_acc["estimated"] - ref_acc["measured"])
    drop = (accuracy["reference"]["estimated"] or 0) - (accuracy["new"]["estimated"] or 0)
    accuracy["drop"] = drop
    accuracy["flagged"] = bool(drop > ds.max_accuracy_drop)

    findings = []
    for e in rules:
        if e["flagged"]:
            findings.append(f"rule {e['rule']} ({e['where']}) {e['direction']}: coverage "
                            f"{e['reference_coverage']:.1%} → {e['new_coverage']:.1%} (h = {e['effect']:+.2f}, "
                            f"adjusted p = {e['p_adjusted']:.2g})")
    for s in shares:
        if s["flagged"]:
            findings.append(f"{s['what']} rows: {s['reference']:.1%} → {s['new']:.1%} (h = {s['effect']:+.2f}, "
                            f"adjusted p = {s['p_adjusted']:.2g})")
    for name, shift in label_shifts.items():
        if shift["flagged"]:
            findings.append(f"labels of the {name.replace('_', ' ')} shifted: " + ", ".join(
                f"{lab} {shift['reference'][lab]:.1%} → {shift['new'][lab]:.1%}" for lab in labels)
                + f" (JS divergence {shift['js_divergence']:.3f}, adjusted p = {shift['p_adjusted']:.2g})")
    for f in fields:
        if f["flagged"]:
            findings.append(f"field {f['field']}: {f['kind']} distribution moved (KS D = {f['statistic']:.2f}, "
                            f"median {f['reference']['median']:g} → {f['new']['median']:g}, "
                            f"adjusted p = {f['p_adjusted']:.2g})")
    if accuracy["flagged"]:
        findings.append(f"estimated accuracy fell {accuracy['reference']['estimated']:.1%} → "
                        f"{accuracy['new']['estimated']:.1%} (more than {ds.max_accuracy_drop:.0%})")

    flagged_rules = [spec.rule_names.index(e["rule"]) for e in rules if e["flagged"] and e["new_votes"]]
    queue = spot.queue(flagged_rules, ds.spot_check_uniform)
    parts = collections.Counter(q["part"] for q in queue)
    spot_check = {"rows": len(queue), "parts": dict(parts), "queue": None, "seed": ds.seed,
                  "note": "label the queue in `mteach tui SPEC NEW --queue FILE`; the uniform rows give an unbiased "
                          "accuracy measure, the others over-represent drifted, uncovered and uncertain rows"}
    return DriftReport(str(spec.path), spec.content_hash, {"path": str(ref_path), "rows": ref.rows},
                       {"path": str(new_path), "rows": new.rows}, bool(findings), findings, rules,
                       {**label_shifts, "uncovered": shares[0], "conflicted": shares[1]}, fields, accuracy,
                       spot_check, {k: getattr(ds, k) for k in ds.__dataclass_fields__}, queue)


def _accuracy(side: Profile) -> dict:
    n = side.scored
    out = {"estimated": None, "low": None, "high": None, "scored_rows": n,
           "uncertain_rows": side.uncertain, "measured": None, "measured_rows": side.gold_rows,
           "measured_low": None, "measured_high": None}
    if n:
        est = side.confidence_sum / FIXED / n
        half = 1.96 * math.sqrt(side.confidence_var / FIXED) / n
        out.update(estimated=est, low=max(0.0, est - half), high=min(1.0, est + half))
    if side.gold_rows:
        low, high = wilson_interval(side.gold_correct, side.gold_rows)
        out.update(measured=side.gold_correct / side.gold_rows, measured_low=low, measured_high=high)
    return out


# -- writing ---------------------------------------------------------------------------------
QUEUE_FILE, REPORT_FILE, JSON_FILE = "queue.csv", "index.html", "drift.json"
QUEUE_COLUMNS = ["id", "part", "verdict", "confidence", "rules", "text"]


def render_drift_report(report: DriftReport, id_column: Optional[str] = None) -> str:
    """The HTML report (offline: inline CSS and SVG, no scripts), from the Jinja2 template."""
    import jinja2
    from .report import CSS
    env = jinja2.Environment(loader=jinja2.PackageLoader("mteach.engine", "templates"),
                             autoescape=True, undefined=jinja2.StrictUndefined)
    r = report.to_dict()
    rule_items = [(e["rule"], e["reference_coverage"], e["new_coverage"]) for e in r["rules"]]
    shares = [r["labels"]["uncovered"], r["labels"]["conflicted"]]
    label_shifts = [(name.replace("_", " "), {**shift, "bars": [(lab, shift["reference"][lab], shift["new"][lab])
                                                                  for lab in shift["reference"]]})
                    for name, shift in r["labels"].items() if name in ("label_model", "model")]
    return env.get_template("drift.html.j2").render(
        r=r, css=CSS, queue=report.queue, queue_name=QUEUE_FILE,
        id_option=f" --id {id_column}" if id_column else "",
        rule_items=rule_items, rule_top=max([max(a, b) for _, a, b in rule_items] + [0.01]),
        share_items=[(s["what"], s["reference"], s["new"]) for s in shares],
        share_top=max([max(s["reference"], s["new"]) for s in shares] + [0.01]), label_shifts=label_shifts)


def write_drift_report(report: DriftReport, folder, id_column: Optional[str] = None) -> dict:
    """Write ``folder``/index.html, queue.csv (the spot check, in review order) and drift.json;
    returns their paths by name. Each file is written atomically."""
    import json
    import pyarrow.csv as pacsv
    from .io import atomic_path, write_text_atomic
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise DataError(f"{folder} exists and is not a folder; choose another -o")
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"queue": folder / QUEUE_FILE, "report": folder / REPORT_FILE, "json": folder / JSON_FILE}
    report.spot_check["queue"] = str(paths["queue"])
    table = pa.table({c: pa.array([q[c] for q in report.queue],
                                   pa.float64() if c == "confidence" else pa.string()) for c in QUEUE_COLUMNS})
    with atomic_path(paths["queue"]) as tmp:
        pacsv.write_csv(table, tmp)
    write_text_atomic(paths["json"], json.dumps(report.to_dict(), indent=2, default=float) + "\n")
    write_text_atomic(paths["report"], render_drift_report(report, id_column))
    return paths


__all__ = ["drift", "write_drift_report", "render_drift_report", "DriftReport", "holm", "wilson_interval", "cohens_h", "two_proportions",
           "Reservoir", "CALIBRATION_NOTE"]
