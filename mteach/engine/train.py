"""The learning road: votes → label model → end model, saved as a model folder.

``train`` applies the spec, fits the label model on the votes (the rules' ``confidence``
values are its priors; gold rows, when given, sharpen it and calibrate it), trains the end
model on the label model's soft labels of the covered rows plus one penalty per direction
hint, and — with gold rows — cross-fits the end model (out-of-fold predictions on the
covered gold rows) to calibrate it and to choose how much it may move the rules' verdict on
covered rows. It writes everything a later ``predict`` needs into one folder — no pickle:

    MODEL_DIR/model.json        settings, spec hash, labels, label model state, blend, features
    MODEL_DIR/spec/             a copy of every file the spec reads (spec, used specs, lexicons)
    MODEL_DIR/rules.parquet     the rules table
    MODEL_DIR/end_model/        weights (torch state dict, loaded with weights_only=True) + params
    MODEL_DIR/report.json       the training report
    MODEL_DIR/without_hint/N/   the end model trained without hint N (same rows, same seed),
                                so each hint's effect can be measured again on new data

``predict`` gives per row the label, class probabilities and who decided: "rules" where
any rule voted (label model posterior, blended with the end model), "end_model" where none did
— or "rules" there too when gold showed the class prior (the rules' silence) is not beaten there.
"""
from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from scipy.special import softmax

from .._version import __version__
from ..compiler.checker import load_spec
from ..compiler.evaluator import BatchEvaluator
from ..compiler.spec import Spec
from ..errors import DataError, MteachError
from ..grammar import ast
from ..settings import Settings
from .analysis import majority_vote
from .apply import apply_table, rules_table
from .calibration import ece, f1_score, fit_temperature, log_scores, tempered
from .end_model import EndModel, top_attributions
from .features import Featurizer
from .io import atomic_folder, check_output
from .hints import HintError, compile_hints, hint_effect
from .label_model import LABEL_MODELS, LabelModelProtocol, fit_for_spec, label_model_kind
from .ledger import label_model_params

MODEL_FORMAT = "mteach.model/1"
# beta: the end model's exponent in the covered-row product of experts (0 = the rules alone;
# 8 = the end model decides all but the rules' most confident rows)
BLEND_GRID = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
DEFAULT_BLEND = 0.25
CROSS_FIT_FOLDS = 3
# The end model takes rows from the rules only when the gold rows leave no doubt: each of
# the m choices tried against the rules' answer must win in 1 - (1 - BLEND_CONFIDENCE) / m of
# BOOTSTRAP_DRAWS resamples (Bonferroni: the chance that any of them wins by luck stays under 5%)
BLEND_CONFIDENCE = 0.95
BOOTSTRAP_DRAWS = 1000
MIN_GOLD_FOR_BLEND = 20
MIN_COVERED_ROWS = 10
TOP_FEATURES = 5  # features a ledger keeps per row the end model decides (end_model_features)


class ModelError(MteachError):
    """A model folder that cannot be used (missing, corrupt, or from another spec)."""


# -- features from the spec ---------------------------------------------------------------
def measure_name(node: ast.Measure) -> str:
    """A readable, stable name for a measure used as a feature, e.g. ``words(text)``."""
    def src(s):
        return s.name if isinstance(s, ast.Ref) else f"{s.side}({src(s.source)}, {s.size})"
    arg = ""
    if isinstance(node.arg, ast.Regex):
        arg = f", /{node.arg.pattern}/{node.arg.flags}"
    elif isinstance(node.arg, ast.Phrases):
        arg = ", " + node.arg.mode + "(" + ", ".join(f'"{p}"' for p in node.arg.phrases) + ")"
    per = f" per {node.per_words:g} words" if node.per_words else ""
    return f"{node.func}({src(node.source)}{arg}){per}"


def numeric_features(spec: Spec) -> dict:
    """Named numeric feature columns: every number field, and every measure a hint names."""
    out = {}
    for name, kind in spec.field_kinds.items():
        if kind == "number":
            column = spec.column(name)
            out[name] = lambda table, c=column: np.nan_to_num(
                table.column(c).to_numpy(zero_copy_only=False).astype(float), nan=0.0)
    for hint in spec.hints:
        if hint.kind == "measure":
            out[measure_name(hint.measure)] = lambda table, m=hint.measure: np.nan_to_num(
                BatchEvaluator(spec, table).measure(m), nan=0.0)
    return out


def _feature_table(spec: Spec, table: pa.Table) -> pa.Table:
    """Columns renamed to spec field names, as the featurizer sees them."""
    return pa.table({name: table.column(spec.column(name)) for name in spec.fields})


def _spec_on_fields(spec: Spec) -> Spec:
    """The same spec with each field bound to a column of its own name (for _feature_table)."""
    import copy
    clone = copy.copy(spec)
    clone.fields = {n: ast.Field(n, n, f.span) for n, f in spec.fields.items()}
    return clone


# -- the trained model ------------------------------------------------------------------------
@dataclass
class TrainedModel:
    spec: Spec
    label_model: LabelModelProtocol
    featurizer: Featurizer
    end_model: EndModel
    blend: float          # exponent of the end model in the covered-row product of experts
    settings: dict
    without_hint: tuple = ()   # per hint of the spec: the end model trained without it
    end_temperature: float = 1.0  # the end model's probabilities are softmax(log p / T)
    blend_uncovered: Optional[float] = None  # the same exponent on rows no rule covers; None = end model alone
    provenance: Optional[dict] = None  # set by load_model: the folder's sha256, training data, held-out figures

    def hints(self) -> list:
        """The spec's hints compiled against this model's featurizer."""
        return compile_hints(self.spec.hints, self.featurizer, list(self.spec.labels),
                             measure_name_fn=measure_name, margin=self.settings["hints"]["margin"])

    def votes(self, table: pa.Table) -> np.ndarray:
        return apply_table(self.spec, table)

    def end_model_proba(self, table: pa.Table) -> np.ndarray:
        """The end model's calibrated class probabilities (n × k)."""
        raw = end_model_raw_proba(self.featurizer, self.end_model, _feature_table(self.spec, table))
        return tempered(raw, self.end_temperature)

    def top_features(self, table: pa.Table, classes: np.ndarray, k: int = TOP_FEATURES) -> pa.Array:
        """Per row, the ``k`` features that pushed it most toward ``classes[i]`` (gradient × input
        of that class's margin, on the sparse features), as list<struct<feature, weight>>."""
        X = self.featurizer.transform(_feature_table(self.spec, table))
        return self._feature_lists(*top_attributions(self.end_model.attributions(X, classes), k))

    def end_model_output(self, table: pa.Table, explain: np.ndarray, k: int = TOP_FEATURES) -> tuple:
        """(``end_model_proba`` of every row, ``top_features`` toward the most probable class of
        the rows where ``explain`` is True, in row order): what a ledger takes from the end
        model. A linear model over hashed n-grams, with the compiled kernel, gets both from one
        pass over the text (``Featurizer.scores_and_top``: the rows' feature matrix is never
        made); otherwise they are computed apart."""
        fused = self._fused_output(_feature_table(self.spec, table), explain, k)
        if fused is not None:
            return fused
        em = self.end_model_proba(table)
        rows = np.flatnonzero(explain)
        return em, self.top_features(table.take(pa.array(rows)), em[rows].argmax(axis=1), k)

    def _fused_output(self, ftable: pa.Table, explain: np.ndarray, k: int) -> Optional[tuple]:
        """``end_model_output`` by ``Featurizer.scores_and_top``, chunk by chunk as
        ``end_model_raw_proba``; None where it cannot run."""
        linear = self.end_model.linear_weights()
        if linear is None:
            return None
        logits, tops = [np.zeros((0, self.end_model.n_classes_), np.float32)], []
        for start in range(0, ftable.num_rows, END_MODEL_CHUNK_ROWS):
            chunk = ftable.slice(start, END_MODEL_CHUNK_ROWS)
            got = self.featurizer.scores_and_top(chunk, *linear, explain[start:start + chunk.num_rows], k)
            if got is None:
                return None
            logits.append(got[0])
            tops.append(got[1])
        raw = self.end_model.proba_from_logits(np.concatenate(logits).astype(np.float64))
        features, weights, counts = (np.concatenate(p) for p in zip(*tops)) if tops else \
            (np.zeros(0, np.int32), np.zeros(0), np.zeros(0, np.int64))
        return tempered(raw, self.end_temperature), self._feature_lists(features, weights, counts)

    @functools.cached_property
    def _feature_names(self) -> pa.Array:
        return pa.array(self.featurizer.feature_names_, pa.string())

    def _feature_lists(self, features: np.ndarray, weights: np.ndarray, counts: np.ndarray) -> pa.Array:
        """``top_attributions``'s (columns, weights, counts per row) as list<struct<feature, weight>>."""
        values = pa.StructArray.from_arrays([self._feature_names.take(pa.array(features, pa.int64())),
                                             pa.array(weights, pa.float64())], names=["feature", "weight"])
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
        return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), values)

    def predict(self, table: pa.Table, votes: Optional[np.ndarray] = None) -> dict:
        """label (index), proba (n × k), decided_by ("rules" | "end_model"), lm_proba, em_proba."""
        votes = self.votes(table) if votes is None else votes
        covered = (votes != -1).any(axis=1)
        lm = self.label_model.predict_proba(votes)
        em = self.end_model_proba(table)
        proba = self.combine(lm, em, covered)
        by_rules = covered | self.uncovered_by_rules
        return {"label": proba.argmax(axis=1), "proba": proba, "covered": covered,
                "decided_by": np.where(by_rules, "rules", "end_model"), "lm_proba": lm, "em_proba": em}

    @property
    def uncovered_by_rules(self) -> bool:
        """True when rows no rule covers get the label model's class prior (beta 0 chosen on
        gold): the rules' silence decides them, and ``explain`` shows it as the baseline alone."""
        return self.blend_uncovered == 0.0

    def combine(self, lm: np.ndarray, em: np.ndarray, covered: np.ndarray) -> np.ndarray:
        """Covered rows: the label model blended with the end model; the others: the end model,
        or (``blend_uncovered``) the end model blended with the label model's class prior."""
        return np.where(covered[:, None], _blend(lm, em, self.blend), self.uncovered_proba(em))

    def uncovered_proba(self, em: np.ndarray) -> np.ndarray:
        """Probabilities of rows no rule covers, from the end model's (n × k)."""
        if self.blend_uncovered is None:
            return em
        prior = softmax(self.label_model.baseline_)  # the label model where every rule abstains
        return _blend(np.broadcast_to(prior, em.shape), em, self.blend_uncovered)


def _blend(lm: np.ndarray, em: np.ndarray, beta: float) -> np.ndarray:
    """Product of experts p ∝ p_lm · p_em^beta (beta = 0: the rules alone)."""
    logp = np.log(np.clip(lm, 1e-12, 1)) + beta * np.log(np.clip(em, 1e-12, 1))
    logp -= logp.max(axis=1, keepdims=True)
    p = np.exp(logp)
    return p / p.sum(axis=1, keepdims=True)


def _accuracy(pred, gold, mask=None) -> Optional[float]:
    known = gold != -1 if mask is None else (gold != -1) & mask
    return float((pred[known] == gold[known]).mean()) if known.any() else None


# -- training -----------------------------------------------------------------------------------
def _no_progress(description: str, total: int):
    return contextlib.nullcontext(lambda n: None)


def train(spec: Spec, table: pa.Table, settings: Settings, gold: Optional[np.ndarray] = None,
          log=lambda msg: None, votes: Optional[np.ndarray] = None, hint_effects: bool = True,
          progress=_no_progress, label_model: Optional[LabelModelProtocol] = None,
          sampled: Optional[dict] = None) -> tuple:
    """Fit both models on ``table``. Returns (TrainedModel, report dict).

    ``votes``: the rules' votes on ``table`` when the caller has them (``engine.votes``
    computed them while reading the data); otherwise they are computed here.
    ``hint_effects``: also train the end model once without each hint (the report's
    per-hint effect); the studio, which compares with its previous run, skips it.
    ``progress(description, total)``: a context manager yielding ``advance(n)``, for a
    progress bar over the end model's epochs (``cli.common.progress_bar``).
    ``label_model``: one already fitted (on all rows' vote counts, ``train_streamed``);
    ``sampled``: when ``table`` holds only the rows ``train_streamed`` gathered, what the
    report says of all rows (rows, covered, training_rows, gathered)."""
    k = len(spec.labels)
    if not spec.rules:
        raise DataError(f"{spec.path}: the spec has no rules to learn from")
    log(f"applying {len(spec.rules)} rules to {table.num_rows:,} rows")
    votes = apply_table(spec, table) if votes is None else votes
    covered = (votes != -1).any(axis=1)
    if not covered.any():
        raise DataError(f"no rule of {spec.path} fires on any of the {table.num_rows:,} rows; "
                        "nothing to learn from — check the fields and run `mteach stats`")
    voted_labels = set(np.unique(votes[votes != -1]).tolist())
    silent = [lab for i, lab in enumerate(spec.labels) if i not in voted_labels]
    if silent:
        raise DataError(f"no rule votes {', '.join(silent)} on this data, so the model cannot learn "
                        f"{'it' if len(silent) == 1 else 'them'}; add a rule for each label "
                        "(`mteach stats` shows each rule's coverage)")
    if covered.sum() < max(MIN_COVERED_ROWS, 2 * k):
        raise DataError(f"only {int(covered.sum())} rows are covered by a rule; too few to train on "
                        f"(at least {max(MIN_COVERED_ROWS, 2 * k)}): add rules or data")

    if label_model is None:
        log("fitting the label model")
        label_model = fit_for_spec(spec, votes, gold, **label_model_params(settings.label_model, settings.label_model.seed))
    soft = label_model.predict_proba(votes)

    gold_covered = None if gold is None else (gold != -1) & covered
    if sampled is None:
        rows, rows_note = training_rows(covered, gold_covered, settings.end_model.max_rows, settings.end_model.seed)
    else:  # the gathered rows: the chosen training rows, gold rows and a sample of the rows no rule covers
        rows, rows_note = np.flatnonzero(covered), sampled["training_rows"]
    log("building features")
    text_fields = spec.text_fields
    if not text_fields and not numeric_features(spec):
        raise DataError("the end model needs a text or number field in the spec")
    field_spec = _spec_on_fields(spec)
    featurizer = Featurizer(text_fields=text_fields, numeric=numeric_features(field_spec),
                            **settings.featurizer_params())
    ftable = _feature_table(spec, table)
    if rows.shape[0] < int(covered.sum()):
        # a capped run: the vocabulary comes from the training rows and as many rows no rule
        # covers (hint phrases may occur only there), not from the whole table
        fit_rows = np.union1d(rows, _sample(np.flatnonzero(~covered), rows.shape[0], settings.end_model.seed))
        featurizer.fit(ftable.take(pa.array(fit_rows)))
    else:
        featurizer.fit(ftable)
    X = featurizer.transform(ftable.take(pa.array(rows)))
    try:
        hints = compile_hints(spec.hints, featurizer, list(spec.labels), measure_name_fn=measure_name,
                              margin=settings.hints.margin)
    except HintError as err:
        raise DataError(str(err)) from None

    log(f"training the end model on {rows_note} with {len(hints)} hints")
    end_params = settings.end_model_params()
    runs = 1 + (len(hints) if hint_effects else 0)
    with progress("training the end model (epochs)", runs * int(settings.end_model.epochs)) as advance:
        end_model = EndModel(**end_params).fit(X, soft[rows], hints=hints, progress=advance)
        if hints and hint_effects:
            log(f"training it again without each hint, to measure each hint's effect ({len(hints)} runs)")
        # Same rows, same seed, all other hints kept: the only difference is the one hint.
        without = tuple(EndModel(**end_params).fit(X, soft[rows], hints=hints[:i] + hints[i + 1:], progress=advance)
                        for i in range(runs - 1))
    em_raw = end_model_raw_proba(featurizer, end_model, ftable)

    # Gold rows judge the end model only on predictions it made without training on them:
    # out-of-fold on covered rows, the final model on uncovered ones (it never saw them).
    # Every covered gold row is among the training rows (training_rows keeps them).
    em_heldout = None
    if gold_covered is not None and gold_covered.sum() >= MIN_GOLD_FOR_BLEND:
        log(f"cross-fitting the end model ({CROSS_FIT_FOLDS} folds) to calibrate it and choose the blend")
        em_heldout = em_raw.copy()
        em_heldout[gold_covered] = _out_of_fold(X, soft[rows], gold_covered[rows], hints, end_params,
                                                settings.end_model.seed)
    end_t = 1.0 if em_heldout is None else fit_temperature(log_scores(em_heldout), gold)
    em_all = tempered(em_raw, end_t)
    em_held = None if em_heldout is None else tempered(em_heldout, end_t)
    # covered rows first (uncovered ones at the rules' answer, the class prior), then the
    # uncovered rows with the covered ones at the blend just chosen
    blend, blend_basis, blend_scores = _choose_blend(soft, em_held, covered, gold, k)
    covered_labels = None if em_held is None else _blend(soft, em_held, blend).argmax(1)
    blend_uncovered, uncovered_basis, uncovered_scores = _choose_blend(
        soft, em_held, ~covered, gold, k, end_model_alone=True, others=covered_labels)
    model = TrainedModel(spec, label_model, featurizer, end_model, blend, settings.to_dict(), without,
                         end_temperature=end_t, blend_uncovered=blend_uncovered)

    report = _report(model, votes, soft, em_all, covered, gold, ftable, hints)
    report["blend"] = {"beta": blend, "chosen_on": blend_basis, "scores": blend_scores,
                       "beta_uncovered": blend_uncovered, "uncovered_chosen_on": uncovered_basis,
                       "uncovered_scores": uncovered_scores}
    report["calibration"] = _calibration_report(label_model, soft, em_heldout, end_t, gold)
    report["end_model"]["training_rows"] = {"rows": int(rows.shape[0]), "covered": int(covered.sum()),
                                            "chosen": rows_note}
    if sampled is not None:
        report.update(rows=sampled["rows"], covered=sampled["covered"])
        report["end_model"]["training_rows"]["covered"] = sampled["covered"]
        report["end_model"]["gathered"] = sampled["gathered"]
    if em_held is not None:
        known = gold != -1
        report["end_model"]["held_out"] = {
            "accuracy": _accuracy(em_held.argmax(1), gold), "f1": f1_score(em_held.argmax(1)[known], gold[known], k,
                                                                          positive=0),
            "rows": int(known.sum()),
            "on": f"gold rows, each predicted by an end model not trained on it ({CROSS_FIT_FOLDS}-fold "
                  "cross-fitting on covered rows; uncovered rows are never trained on); gold labels did "
                  "sharpen the label model whose soft labels it learned from"}
    return model, report


def train_streamed(spec: Spec, source, id_column: Optional[str], settings: Settings, gold_request=None, *,
                   engine=None, threads: int = 2, batch_rows: Optional[int] = None, read_progress=None,
                   log=lambda msg: None, hint_effects: bool = True, progress=_no_progress) -> tuple:
    """``train`` on a data source of any length, never holding all of it: a first pass counts
    the vote patterns (the label model fits on them, ``label_model.fit_counted``) and notes
    per row whether a rule covers it and its gold label (2 bytes a row); the training rows
    are chosen from those (``training_rows``: all covered rows, or ``[end_model] max_rows``
    of them); a second pass keeps only the training rows, every gold row (calibration and the
    blend are judged on them) and a seeded sample of the rows no rule covers, as many as the
    training rows (the featurizer's vocabulary and each hint's effect are measured on them).
    Those rows are taken where each partition is read (``dask_engine.for_each_partition``: on
    the Dask workers, so only they come back), chosen here from the first pass's notes, so
    every engine keeps the same rows for the same seed and data.
    Memory: those rows and a batch. ``read_progress(rows)``: called per batch of each pass."""
    from .gold import GoldRequest
    from .io import DEFAULT_BATCH_ROWS, large_where_needed
    from .label_model import VoteCounts, fit_counted
    from .ledger import batch_gold
    from .dask_engine import for_each_partition
    from .votes import LocalEngine
    gold_request = gold_request or GoldRequest()
    gold_request.check(source.schema, id_column, source.path)
    gold_of = batch_gold(gold_request, spec.labels, source.path, id_column)
    engine = engine or LocalEngine(threads)
    if not spec.rules:
        raise DataError(f"{spec.path}: the spec has no rules to learn from")

    batch_rows = batch_rows or DEFAULT_BATCH_ROWS

    def each_partition(fn, **shared):  # run where each partition is read (on Dask: the workers)
        return for_each_partition(engine, fn, spec, source, id_column, columns=gold_request.columns,
                                  batch_rows=batch_rows, progress=read_progress, **shared)
    log(f"applying {len(spec.rules)} rules (first pass: vote counts for the label model)")
    counts, covered, golds = VoteCounts(len(spec.rules)), [], []
    for part_counts, part_covered, part_gold in each_partition(_first_pass_part, gold_of=gold_of):
        counts.absorb(part_counts)
        covered.append(part_covered)
        golds.append(part_gold)
    if counts.rows == 0:
        raise DataError(f"{source.path}: the file has a header but no rows")
    covered, gold = np.concatenate(covered), np.concatenate(golds)
    gold_of.check(int((gold >= 0).sum()) if gold_request else None)
    if not covered.any():
        raise DataError(f"no rule of {spec.path} fires on any of the {counts.rows:,} rows; "
                        "nothing to learn from — check the fields and run `mteach stats`")
    log("fitting the label model on the counts of distinct vote rows")
    label_model = fit_counted(spec, counts, **label_model_params(settings.label_model, settings.label_model.seed))
    known = gold >= 0 if gold_request else None
    rows, note = training_rows(covered, None if known is None else known & covered, settings.end_model.max_rows,
                               settings.end_model.seed)
    sample = _sample(np.flatnonzero(~covered), rows.shape[0], settings.end_model.seed)
    keep = np.union1d(np.union1d(rows, sample), np.flatnonzero(known) if known is not None else [])
    keep = keep.astype(np.int64)
    if keep.shape[0] == counts.rows:
        gathered = f"all {counts.rows:,} rows"
    else:
        gathered = (f"{keep.shape[0]:,} of {counts.rows:,} rows: the {rows.shape[0]:,} training rows, "
                    f"{sample.shape[0]:,} of the {int((~covered).sum()):,} rows no rule covers (a random sample, "
                    f"seed {settings.end_model.seed}: the featurizer's vocabulary and the hints' effects)"
                    + (f" and the {int(known.sum()):,} gold rows" if known is not None else ""))
    log(f"gathering {gathered} (second pass)")
    tables, votes = [], []
    for table, kept_votes in each_partition(_kept_rows, keep=keep):
        if table.num_rows:
            tables.append(table)
            votes.append(kept_votes)
    table = large_where_needed(pa.concat_tables(tables))  # text past 2 GB: large_string, not ArrowCapacityError
    sampled = {"rows": int(counts.rows), "covered": int(covered.sum()), "training_rows": note, "gathered": gathered}
    return train(spec, table, settings, None if known is None else gold[keep].astype(np.int64), log=log,
                 votes=np.concatenate(votes), hint_effects=hint_effects, progress=progress, label_model=label_model,
                 sampled=sampled)


def _first_pass_part(spec: Spec, index: int, offset: int, batches, gold_of) -> tuple:
    """A partition's vote-pattern counts (``label_model.VoteCounts``) and, per row, whether a
    rule covers it and its gold label (int8, -1 unknown): 2 bytes a row go back, not the rows."""
    from .label_model import VoteCounts
    gold_of = gold_of.starting_at(offset)
    counts, covered, golds = VoteCounts(len(spec.rules)), [np.zeros(0, bool)], [np.zeros(0, np.int8)]
    for batch in batches:
        gold = gold_of(batch)
        counts.add(batch.votes, gold)
        covered.append((batch.votes != -1).any(axis=1))
        golds.append(np.full(batch.num_rows, -1, np.int8) if gold is None else gold.astype(np.int8))
    return counts, np.concatenate(covered), np.concatenate(golds)


def _kept_rows(spec: Spec, index: int, offset: int, batches, keep: np.ndarray) -> tuple:
    """A partition's rows among ``keep`` (sorted row numbers of the whole data): (their table,
    their votes); run where the partition is read."""
    tables, votes = [], []
    for batch in batches:
        lo, hi = np.searchsorted(keep, [offset, offset + batch.num_rows])
        local = keep[lo:hi] - offset
        offset += batch.num_rows
        table = batch.table if isinstance(batch.table, pa.Table) else pa.Table.from_batches([batch.table])
        tables.append(table.take(pa.array(local)))
        votes.append(batch.votes[local])
    return pa.concat_tables(tables), np.concatenate(votes)


def _sample(idx: np.ndarray, size: int, seed: int) -> np.ndarray:
    """``size`` of ``idx`` drawn at random without replacement (all when fewer), in order."""
    if idx.shape[0] <= size:
        return idx
    return np.sort(np.random.default_rng(seed).choice(idx, size, replace=False))


def training_rows(covered: np.ndarray, gold_covered: Optional[np.ndarray], max_rows: int, seed: int) -> tuple:
    """The rows the end model trains on and how they were chosen: every covered row, or with
    ``max_rows`` (> 0) at most that many — every covered gold row (cross-fitting scores them)
    and a seeded random sample of the other covered rows."""
    idx = np.flatnonzero(covered)
    if not max_rows or idx.shape[0] <= max_rows:
        return idx, f"all {idx.shape[0]:,} covered rows"
    gold_covered = gold_covered if gold_covered is not None else np.zeros_like(covered)
    keep = np.flatnonzero(gold_covered)
    rest = np.flatnonzero(covered & ~gold_covered)  # masks, not np.setdiff1d: 10 s on 8.5M rows
    rows = np.union1d(keep, _sample(rest, max(max_rows - keep.shape[0], 0), seed))
    gold_note = f", its {keep.shape[0]:,} gold rows kept" if keep.shape[0] else ""
    return rows, (f"{rows.shape[0]:,} of {idx.shape[0]:,} covered rows ([end_model] max_rows = {max_rows:,}: "
                  f"a random sample, seed {seed}{gold_note})")


END_MODEL_CHUNK_ROWS = 65_536


def end_model_raw_proba(featurizer: Featurizer, end_model: EndModel, ftable: pa.Table,
                        chunk_rows: int = END_MODEL_CHUNK_ROWS) -> np.ndarray:
    """The end model's uncalibrated probabilities on every row of ``ftable`` (feature
    fields), featurised chunk by chunk so only one chunk's features are held at a time; a
    linear model's scores straight from the text (``Featurizer.dot``: the same numbers,
    without making the feature matrix)."""
    linear = end_model.linear_weights()
    if linear is not None and linear[0].shape[0] != featurizer.n_features_:
        raise ValueError(f"the end model was fitted on {linear[0].shape[0]} features, "
                         f"the featurizer gives {featurizer.n_features_}")
    parts = [end_model.predict_proba(featurizer.transform(chunk)) if linear is None else
             end_model.proba_from_logits((featurizer.dot(chunk, linear[0]) + linear[1]).astype(np.float64))
             for chunk in (ftable.slice(start, chunk_rows) for start in range(0, ftable.num_rows, chunk_rows))]
    return np.concatenate(parts) if parts else np.zeros((0, end_model.n_classes_))


def _out_of_fold(X, soft, rows, hints, params, seed) -> np.ndarray:
    """End-model probabilities of the training ``rows`` (bool mask over the rows of ``X``),
    each from a model trained on the other folds (folds drawn at random over all of them)."""
    fold = np.random.default_rng(seed).permutation(X.shape[0]) % CROSS_FIT_FOLDS
    out = np.zeros((int(rows.sum()), soft.shape[1]))
    pos = np.cumsum(rows) - 1  # row -> its place in ``out``
    for f in range(CROSS_FIT_FOLDS):
        train_rows, held = np.flatnonzero(fold != f), np.flatnonzero(fold == f)
        held = held[rows[held]]
        if held.size:
            m = EndModel(**params).fit(X[train_rows], soft[train_rows], hints=hints)
            out[pos[held]] = m.predict_proba(X[held])
    return out


def _calibration_report(label_model, soft, em_heldout, end_t, gold) -> dict:
    """Temperatures and ECE on gold rows (the label model's on the rows it was fitted and
    calibrated on; the end model's on held-out predictions)."""
    has_gold = gold is not None and (gold != -1).sum() > 0
    out = {"label_model": {"temperature": float(getattr(label_model, "temperature_", 1.0)),
                           "ece": ece(soft, gold) if has_gold else None,
                           "fitted_on": "gold rows" if has_gold else "not calibrated (no gold labels)"},
           "end_model": {"temperature": end_t,
                         "ece": ece(tempered(em_heldout, end_t), gold) if em_heldout is not None else None,
                         "fitted_on": ("out-of-fold predictions on gold rows" if em_heldout is not None
                                       else f"not calibrated (fewer than {MIN_GOLD_FOR_BLEND} covered gold rows)")}}
    return out


def _protocol_score(pred, y, k) -> float:
    """The choice criterion: mean of accuracy and F1 (of the spec's first label for two labels,
    else macro) on the rows with gold."""
    known = y != -1
    return (float((pred[known] == y[known]).mean()) + f1_score(pred, y, k, positive=0)) / 2


def _bootstrap_wins(preds, base, y, k, draws=BOOTSTRAP_DRAWS, seed=0, chunk=2048) -> np.ndarray:
    """For each prediction in ``preds`` (c × n labels): the share of ``draws`` Poisson bootstrap
    resamples of the rows of ``y`` on which it scores (``_protocol_score``) above ``base``.
    Each resample's counts (correct, and per scored class true positives, predicted and gold
    counts) are weighted sums, so all draws are a few matrix products over row chunks."""
    classes = [0] if k == 2 else list(range(k))
    allp = np.vstack([base[None, :], preds])                            # (c + 1) × n
    ind = [(allp == y).astype(np.float64)]                              # correct
    for c in classes:
        ind += [((allp == c) & (y == c)), (allp == c), np.broadcast_to(y == c, allp.shape)]
    n, c, f = y.shape[0], allp.shape[0], len(ind)
    M = np.stack(ind, axis=-1).astype(np.float64).transpose(1, 0, 2).reshape(n, c * f)  # n × (c·f)
    rng = np.random.default_rng(seed)
    sums = np.zeros((draws, c * f))
    rows = np.zeros(draws)
    for start in range(0, n, chunk):
        w = rng.poisson(1.0, (draws, min(chunk, n - start))).astype(np.float64)
        sums += w @ M[start:start + chunk]
        rows += w.sum(axis=1)
    sums = sums.reshape(draws, c, f)
    acc = sums[..., 0] / np.maximum(rows, 1)[:, None]
    tp, pp, gp = sums[..., 1::3], sums[..., 2::3], sums[..., 3::3]
    f1 = np.where(pp + gp > 0, 2 * tp / np.maximum(pp + gp, 1e-12), 0.0).mean(axis=-1)
    score = (acc + f1) / 2
    return (score[:, 1:] > score[:, :1]).mean(axis=0)


def _choose_blend(lm, em_heldout, rows, gold, k, end_model_alone=False, others=None):
    """How far the end model may move the label model's verdict on ``rows`` (covered rows; with
    ``end_model_alone``, the uncovered ones, where the label model is its class prior).

    Needs held-out end-model predictions (``em_heldout``: out-of-fold on covered rows, the final
    model on uncovered ones, which it never trained on) on at least ``MIN_GOLD_FOR_BLEND`` gold
    rows among ``rows``. Each beta of ``BLEND_GRID`` (and, with ``end_model_alone``, the end
    model alone) labels ``rows``; ``others`` (labels, n) holds the combined prediction on the
    remaining rows (rows outside ``rows`` count as the label model's when None), so every
    choice is scored as the user will see it: on all gold rows, by the mean of accuracy and F1
    (``_protocol_score``). The rules' answer (beta 0: the label model alone) is the default;
    a choice that gives rows to the end model must beat it in at least ``BLEND_CONFIDENCE`` of
    bootstrap resamples of the gold rows — a gain the gold rows cannot tell from noise (a few
    rows, or a threshold fitted to these files) is not taken. Of those that do, the best
    scoring (ties → the smaller beta); with m choices tried, each must win in
    1 - (1 - ``BLEND_CONFIDENCE``) / m of the resamples (Bonferroni). Without enough gold: covered rows beta = 0.25 (the end
    model only settles rows where the rules are unsure), uncovered rows the end model alone
    (None). Returns (beta, what it was chosen on, {beta: score on the gold rows})."""
    fallback = (None, "default: the end model alone") if end_model_alone else (DEFAULT_BLEND, "default")
    if em_heldout is None:
        return fallback[0], fallback[1] + " (no gold labels)", {}
    in_scope = (gold != -1) & rows
    if in_scope.sum() < MIN_GOLD_FOR_BLEND:
        return fallback[0], fallback[1] + f" (fewer than {MIN_GOLD_FOR_BLEND} gold rows)", {}
    known = gold != -1
    base = np.where(rows, lm.argmax(1), lm.argmax(1) if others is None else others)[known]
    y, scope = gold[known], rows[known]
    grid = BLEND_GRID[1:] + ((None,) if end_model_alone else ())
    preds = np.stack([np.where(scope, (em_heldout if b is None else _blend(lm, em_heldout, b))[known].argmax(1), base)
                      for b in grid])
    scores = {0.0: round(_protocol_score(base, y, k), 9)}
    scores.update({b: round(_protocol_score(p, y, k), 9) for b, p in zip(grid, preds)})
    wins = _bootstrap_wins(preds, base, y, k)
    needed = 1 - (1 - BLEND_CONFIDENCE) / len(grid)
    clear = [b for b, w in zip(grid, wins) if w >= needed and scores[b] > scores[0.0]]
    best = max(clear, key=lambda b: (scores[b], -(np.inf if b is None else b))) if clear else 0.0
    where = "rows no rule covers" if end_model_alone else "rows covered by the rules"
    how = "the end model's predictions" if end_model_alone else "out-of-fold end-model predictions"
    why = (f"beats the rules' answer in {wins[grid.index(best)]:.1%} of bootstrap resamples" if clear
           else f"none of {len(grid)} choices beats the rules' answer in {needed:.1%} of bootstrap resamples "
                f"(best: {max(wins):.1%})")
    table = {("end model alone" if b is None else str(b)): v for b, v in scores.items()}
    return best, f"{int(in_scope.sum()):,} gold {where}, {how}, scored on all {int(known.sum()):,} gold rows; {why}", table


def _report(model, votes, soft, em, covered, gold, ftable, hints) -> dict:
    spec = model.spec
    k = len(spec.labels)
    report = {
        "rows": int(len(votes)), "covered": int(covered.sum()),
        "label_model": {"class_balance": dict(zip(spec.labels, np.round(model.label_model.class_balance_, 4).tolist())),
                        "rule_accuracy": dict(zip(spec.rule_names, np.round(model.label_model.accuracy_, 4).tolist()))},
        "end_model": {"history": model.end_model.history_},
        "hints": [],
    }
    if gold is not None and (gold != -1).any():
        mv = majority_vote(votes, k)
        combined = model.combine(soft, em, covered).argmax(axis=1)
        report["gold"] = {
            "rows": int((gold != -1).sum()),
            "note": "gold rows were also used to fit the label model, so these figures are optimistic",
            "majority_vote_on_covered": _accuracy(mv, gold, mv != -1),
            "label_model_on_covered": _accuracy(soft.argmax(1), gold, covered),
            "end_model_all_rows": _accuracy(em.argmax(1), gold),
            "combined_all_rows": _accuracy(combined, gold),
        }
    report["hints"] = hint_effects(model, ftable, covered, gold, hints)
    for row, h in zip(report["hints"], hints):
        del row["flipped_rows"]  # positions: for the studio, too long for a report
        penalties = [e.get("hints", {}).get(h.name) for e in model.end_model.history_]
        row["final_penalty"] = penalties[-1] if penalties else None
    return report


# Fewer rows than this that no rule covers: a hint's satisfaction is measured on all rows.
MIN_HINT_ROWS = 10


def hint_rows(ftable: pa.Table, covered: np.ndarray) -> pa.Table:
    """The rows a hint's satisfaction is measured on: those no rule covers, which the end
    model did not train on (all rows when fewer than ``MIN_HINT_ROWS``)."""
    return ftable.filter(pa.array(~covered)) if (~covered).sum() >= MIN_HINT_ROWS else ftable


def hint_effects(model: TrainedModel, ftable: pa.Table, covered: np.ndarray,
                 gold: Optional[np.ndarray] = None, hints: Optional[list] = None) -> list:
    """Each hint's effect: the end model trained with all hints against the one trained
    without this hint (same rows, same seed), on the rows of ``ftable`` (feature fields).

    satisfied / satisfied_without: share of the rows no rule covers (all rows when
    fewer than 10), which the end model did not train on, whose class-L probability
    moves the hinted way along the hint's direction; flipped: rows whose end-model
    label differs between the two models (``flipped_rows``: their positions);
    accuracy / accuracy_without: the end model's on the gold rows, when given.
    ``HintEffects`` gives the same batch by batch.
    """
    effects = HintEffects(model, hints, positions=True)
    effects.add(ftable, covered, gold)
    return effects.result()


class HintEffects:
    """``hint_effects`` accumulated over batches of rows (in data order), so ``predict`` with
    gold labels measures each hint on data of any length: per hint, the counts and sums of the
    probability changes on the rows no rule covers, the flipped rows and the gold rows each
    model gets right. Hints are measured on all the rows of a batch too only while fewer than
    ``MIN_HINT_ROWS`` uncovered rows have been seen, this batch's included (past that, the
    uncovered rows decide)."""

    def __init__(self, model: TrainedModel, hints: Optional[list] = None, positions: bool = False):
        self.model = model
        self.hints = model.hints() if hints is None else hints
        self.active = bool(self.hints) and len(model.without_hint) == len(self.hints)
        h = len(self.hints)
        # per scope, per hint: rows, rows moved the hinted way and the sum of the moves, for the
        # end model with the hint (columns 1, 2) and without it (3, 4)
        self.moves = {"uncovered": np.zeros((h, 5)), "all": np.zeros((h, 5))}
        self.uncovered = self.rows = self.gold_rows = self.right = 0
        self.flipped = np.zeros(h, dtype=np.int64)
        self.right_without = np.zeros(h, dtype=np.int64)
        self.positions = [[] for _ in range(h)] if positions else None

    def add(self, ftable: pa.Table, covered: np.ndarray, gold: Optional[np.ndarray] = None) -> None:
        if not self.active or ftable.num_rows == 0:
            return
        model, featurizer = self.model, self.model.featurizer
        uncovered = ~np.asarray(covered, dtype=bool)
        self.uncovered += int(uncovered.sum())
        on_all = self.uncovered < MIN_HINT_ROWS  # all rows may still be the ones measured
        held = ftable if on_all else ftable.filter(pa.array(uncovered))
        X = featurizer.transform(ftable)
        pred = model.end_model.predict(X)
        known = None if gold is None else np.asarray(gold) != -1
        if known is not None:
            self.gold_rows += int(known.sum())
            self.right += int((pred[known] == gold[known]).sum())
        for i, (hint, other) in enumerate(zip(self.hints, model.without_hint)):
            if held.num_rows:
                moves = [hint_effect(m, featurizer, held, hint).deltas for m in (model.end_model, other)]
                if on_all:
                    self._count("all", i, moves)
                    moves = [d[uncovered] for d in moves]
                self._count("uncovered", i, moves)
            pred_without = other.predict(X)
            flipped = np.flatnonzero(pred != pred_without)
            self.flipped[i] += len(flipped)
            if self.positions is not None:
                self.positions[i].extend((flipped + self.rows).tolist())
            if known is not None:
                self.right_without[i] += int((pred_without[known] == gold[known]).sum())
        self.rows += ftable.num_rows

    def merge(self, other: "HintEffects") -> None:
        """Add the counts of the rows that follow these (another partition's, measured apart: a
        scope's counts are used only when every batch counted it, see ``result``); the sums of
        the moves are added, so ``mean_change`` can differ from one pass's in the last digits."""
        for scope, moves in self.moves.items():
            moves += other.moves[scope]
        if self.positions is not None:
            for mine, theirs in zip(self.positions, other.positions):
                mine.extend(p + self.rows for p in theirs)
        self.flipped += other.flipped
        self.right_without += other.right_without
        self.uncovered += other.uncovered
        self.rows += other.rows
        self.gold_rows += other.gold_rows
        self.right += other.right

    def _count(self, scope: str, i: int, moves: list) -> None:
        row = self.moves[scope][i]
        row[0] += len(moves[0])
        for j, delta in enumerate(moves):
            row[1 + 2 * j] += int((delta > 0).sum())
            row[2 + 2 * j] += float(delta.sum())

    def result(self) -> list:
        """hint_effects' rows: per hint its name, label, satisfied (without), mean_change, rows,
        flipped (and flipped_rows when positions were kept), accuracy (without) with gold rows."""
        if not self.active:
            return []
        moves = self.moves["uncovered" if self.uncovered >= MIN_HINT_ROWS else "all"]
        out = []
        for i, hint in enumerate(self.hints):
            n, up, total, up_without, _ = moves[i]
            share = (lambda count: count / n if n else float("nan"))
            row = {"hint": hint.name, "label": hint.label, "satisfied": share(up),
                   "satisfied_without": share(up_without), "mean_change": share(total),
                   "rows": int(n), "flipped": int(self.flipped[i])}
            if self.positions is not None:
                row["flipped_rows"] = self.positions[i]
            if self.gold_rows:
                row["accuracy"] = self.right / self.gold_rows
                row["accuracy_without"] = int(self.right_without[i]) / self.gold_rows
            out.append(row)
        return out


# -- the model folder ---------------------------------------------------------------------------
def _state(estimator) -> dict:
    """Learned attributes (ending in ``_``) as JSON values."""
    out = {}
    for name, value in vars(estimator).items():
        if name.endswith("_") and not name.startswith("_"):
            if isinstance(value, np.ndarray):
                out[name] = {"array": value.tolist(), "dtype": str(value.dtype)}
            elif isinstance(value, (int, float, str, bool, list)) or value is None:
                out[name] = value
            elif isinstance(value, (np.integer, np.floating)):
                out[name] = value.item()
    return out


def _restore(estimator, state: dict):
    for name, value in state.items():
        if isinstance(value, dict) and "array" in value:
            value = np.array(value["array"], dtype=value["dtype"])
        setattr(estimator, name, value)
    return estimator


def _json_params(estimator) -> dict:
    params = estimator.get_params()
    return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in params.items()}


def save_model(model: TrainedModel, folder, report: dict, data=None) -> Path:
    """Write the model folder atomically (``engine.io.atomic_folder``). ``data``: the file (or
    Parquet dataset) it was trained on; its path and sha256 go into report.json (a ledger labelled with the model
    records them, for the audit page)."""
    from .datasets import open_source, source_fingerprint
    folder = Path(folder)
    if data is not None:  # a file, or a Parquet dataset's parts
        report = {**report, "data": {"path": Path(data).as_posix(), "sha256": source_fingerprint(open_source(data))}}
    check_output(folder, [model.spec.root / rel for rel in model.spec.files], kind="model")
    with atomic_folder(folder) as tmp:
        spec = model.spec
        for rel in spec.files:
            target = tmp / "spec" / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(spec.root / rel, target)
        model.end_model.save(tmp / "end_model")
        for i, other in enumerate(model.without_hint):
            other.save(tmp / "without_hint" / str(i))
        pq.write_table(rules_table(spec), tmp / "rules.parquet")
        lm_params = _json_params(model.label_model)
        meta = {
            "format": MODEL_FORMAT, "mteach_version": __version__,
            "spec": spec.path.resolve().relative_to(spec.root.resolve()).as_posix(),
            "spec_hash": spec.content_hash, "labels": list(spec.labels), "rules": spec.rule_names,
            "settings": model.settings, "blend": model.blend, "blend_uncovered": model.blend_uncovered,
            "end_model_temperature": model.end_temperature,
            "label_model": {"kind": label_model_kind(model.label_model), "params": lm_params,
                            "state": _state(model.label_model)},
            "featurizer": model.featurizer.to_dict(),
        }
        (tmp / "model.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
        (tmp / "report.json").write_text(json.dumps(report, indent=1, default=float), encoding="utf-8")
    return folder


MODEL_KEYS = ("spec", "spec_hash", "labels", "rules", "settings", "blend", "label_model", "featurizer")


def _inside_folder(folder: Path, rel, meta_path: Path) -> Path:
    """``folder / rel`` when it stays inside ``folder`` (links followed): a model folder's
    files are its own, whatever its model.json says."""
    if not isinstance(rel, str) or not rel:
        raise ModelError(f"{meta_path}: its spec entry {rel!r} is not a path; retrain the model")
    path = folder / rel
    if Path(rel).is_absolute() or not os.path.realpath(path).startswith(os.path.realpath(folder) + os.sep):
        raise ModelError(f"{meta_path}: its spec entry {rel!r} points outside {folder}; a model reads only "
                         "its own files — retrain the model, or do not trust this folder")
    return path


def load_model(folder, spec_path=None, schema: Optional[pa.Schema] = None) -> TrainedModel:
    """Load a model folder. With ``spec_path``, refuse a model trained on another spec version."""
    folder = Path(folder)
    meta_path = folder / "model.json"
    if not meta_path.is_file():
        raise ModelError(f"{folder}: not a model folder (no model.json); train one with `mteach train`")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (ValueError, OSError) as err:
        raise ModelError(f"{meta_path}: unreadable ({err}); retrain with `mteach train`") from None
    if not isinstance(meta, dict) or meta.get("format") != MODEL_FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else None
        raise ModelError(f"{folder}: model format {found!r} is not {MODEL_FORMAT!r}; retrain it")
    missing = [k for k in MODEL_KEYS if k not in meta]
    if missing:
        raise ModelError(f"{meta_path}: lacks {', '.join(missing)}; the model is damaged — retrain it with "
                         "`mteach train`")
    spec_copy = _inside_folder(folder / "spec", meta["spec"], meta_path)
    spec = load_spec(spec_copy, schema)
    if spec.content_hash != meta["spec_hash"]:
        raise ModelError(f"{folder}: the spec copy inside the model folder was changed after training "
                         f"(hash {spec.content_hash[:12]} ≠ recorded {meta['spec_hash'][:12]}); retrain the model")
    if spec_path is not None:
        given = load_spec(spec_path, schema)
        if given.content_hash != meta["spec_hash"]:
            raise ModelError(f"{folder} was trained on another version of the spec "
                             f"(model {meta['spec_hash'][:12]}, {spec_path} {given.content_hash[:12]}); "
                             "retrain with `mteach train`, or predict without --spec to use the model's own copy")
    try:
        lm_class = LABEL_MODELS[meta["label_model"].get("kind", "mteach")]
        label_model = _restore(lm_class(**meta["label_model"]["params"]), meta["label_model"]["state"])
        field_spec = _spec_on_fields(spec)
        featurizer = Featurizer.from_dict(meta["featurizer"], numeric=numeric_features(field_spec))
        end_model = EndModel.load(folder / "end_model")
        without = tuple(EndModel.load(folder / "without_hint" / str(i)) for i in range(len(spec.hints))
                        if (folder / "without_hint" / str(i)).is_dir())
    except (ValueError, KeyError, TypeError) as err:
        raise ModelError(f"{folder}: the model is damaged ({err}); retrain it with `mteach train`") from None
    return TrainedModel(spec, label_model, featurizer, end_model, float(meta["blend"]), meta["settings"], without,
                        end_temperature=float(meta.get("end_model_temperature", 1.0)),
                        blend_uncovered=meta.get("blend_uncovered"), provenance=model_provenance(folder))


def model_provenance(folder: Path) -> dict:
    """What a ledger records about the model that labelled it: the sha256 over the files that
    decide its predictions (model.json, the end model's weights and parameters), the data it
    was trained on and its held-out figures (from report.json, where present)."""
    import hashlib
    h = hashlib.sha256()
    for path in [folder / "model.json", *sorted((folder / "end_model").rglob("*"))]:
        if path.is_file():
            h.update(path.relative_to(folder).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    try:
        report = json.loads((folder / "report.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        report = {}
    return {"sha256": h.hexdigest(), "training_data": report.get("data"), "rows": report.get("rows"),
            "held_out": (report.get("end_model") or {}).get("held_out"),
            "calibration": (report.get("calibration") or {}).get("end_model")}

