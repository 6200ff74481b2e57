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
any rule voted (label model posterior, blended with the end model), "end_model" where none did.
"""
from __future__ import annotations

import json
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
from .calibration import ece, f1_score, fit_temperature, log_scores
from .end_model import EndModel
from .features import Featurizer
from .io import atomic_folder
from .hints import HintError, compile_hints, hint_effect
from .label_model import LabelModel, fit_for_spec

MODEL_FORMAT = "mteach.model/1"
# beta: the end model's exponent in the covered-row product of experts (0 = the rules alone;
# 8 = the end model decides all but the rules' most confident rows)
BLEND_GRID = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
DEFAULT_BLEND = 0.25
CROSS_FIT_FOLDS = 3
MIN_GOLD_FOR_BLEND = 20
MIN_COVERED_ROWS = 10


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
    label_model: LabelModel
    featurizer: Featurizer
    end_model: EndModel
    blend: float          # exponent of the end model in the covered-row product of experts
    settings: dict
    without_hint: tuple = ()   # per hint of the spec: the end model trained without it
    end_temperature: float = 1.0  # the end model's probabilities are softmax(log p / T)
    blend_uncovered: Optional[float] = None  # the same exponent on rows no rule covers; None = end model alone

    def hints(self) -> list:
        """The spec's hints compiled against this model's featurizer."""
        return compile_hints(self.spec.hints, self.featurizer, list(self.spec.labels),
                             measure_name_fn=measure_name, margin=self.settings["hints"]["margin"])

    def votes(self, table: pa.Table) -> np.ndarray:
        return apply_table(self.spec, table)

    def end_model_proba(self, table: pa.Table) -> np.ndarray:
        """The end model's calibrated class probabilities (n × k)."""
        raw = self.end_model.predict_proba(self.featurizer.transform(_feature_table(self.spec, table)))
        return _tempered(raw, self.end_temperature)

    def top_features(self, table: pa.Table, classes: np.ndarray, k: int = 5, batch_rows: int = 64) -> pa.Array:
        """Per row, the ``k`` features that pushed it most toward ``classes[i]`` (gradient × input
        of that class's margin), as list<struct<feature, weight>>; computed in batches."""
        import torch
        X = self.featurizer.transform(_feature_table(self.spec, table))
        names = np.asarray(self.featurizer.feature_names_, dtype=object)
        net, device = self.end_model.net_, self.end_model.device_
        offsets, feats, weights = [0], [], []
        for start in range(0, X.shape[0], batch_rows):
            xb = torch.as_tensor(X[start:start + batch_rows].toarray(), device=device).requires_grad_(True)
            cb = torch.as_tensor(classes[start:start + batch_rows], device=device, dtype=torch.long)
            logits = net(xb)
            chosen = logits.gather(1, cb[:, None])[:, 0]
            others = logits.masked_fill(torch.nn.functional.one_hot(cb, logits.shape[1]).bool(), float("-inf"))
            (grad,) = torch.autograd.grad((chosen - torch.logsumexp(others, dim=1)).sum(), xb)
            contrib = (grad * xb).detach()
            top_w, top_j = torch.topk(contrib, min(k, contrib.shape[1]), dim=1)
            top_w, top_j = top_w.cpu().numpy(), top_j.cpu().numpy()
            keep = top_w > 0
            feats.append(names[top_j[keep]])
            weights.append(top_w[keep].astype(np.float64))
            offsets.extend((offsets[-1] + np.cumsum(keep.sum(axis=1))).tolist())
        values = pa.StructArray.from_arrays(
            [pa.array(np.concatenate(feats) if feats else [], pa.string()),
             pa.array(np.concatenate(weights) if weights else [], pa.float64())], names=["feature", "weight"])
        return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), values)

    def predict(self, table: pa.Table, votes: Optional[np.ndarray] = None) -> dict:
        """label (index), proba (n × k), decided_by ("rules" | "end_model"), lm_proba, em_proba."""
        votes = self.votes(table) if votes is None else votes
        covered = (votes != -1).any(axis=1)
        lm = self.label_model.predict_proba(votes)
        em = self.end_model_proba(table)
        proba = self.combine(lm, em, covered)
        return {"label": proba.argmax(axis=1), "proba": proba, "covered": covered,
                "decided_by": np.where(covered, "rules", "end_model"), "lm_proba": lm, "em_proba": em}

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


def _tempered(proba: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(log proba / T): the probabilities at temperature T (T = 1: unchanged)."""
    if temperature == 1.0:
        return proba
    return softmax(log_scores(proba) / temperature, axis=1)


def _accuracy(pred, gold, mask=None) -> Optional[float]:
    known = gold != -1 if mask is None else (gold != -1) & mask
    return float((pred[known] == gold[known]).mean()) if known.any() else None


# -- training -----------------------------------------------------------------------------------
def train(spec: Spec, table: pa.Table, settings: Settings, gold: Optional[np.ndarray] = None,
          log=lambda msg: None, votes: Optional[np.ndarray] = None, hint_effects: bool = True) -> tuple:
    """Fit both models on ``table``. Returns (TrainedModel, report dict).

    ``votes``: the rules' votes on ``table`` when the caller has them (``engine.votes``
    computed them while reading the data); otherwise they are computed here.
    ``hint_effects``: also train the end model once without each hint (the report's
    per-hint effect); the studio, which compares with its previous run, skips it."""
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

    log("fitting the label model")
    lm_settings = settings.label_model
    label_model = fit_for_spec(spec, votes, gold, prior_strength=lm_settings.prior_strength,
                               max_iter=lm_settings.max_iter, seed=lm_settings.seed)
    soft = label_model.predict_proba(votes)

    log("building features")
    text_fields = spec.text_fields
    if not text_fields and not numeric_features(spec):
        raise DataError("the end model needs a text or number field in the spec")
    field_spec = _spec_on_fields(spec)
    featurizer = Featurizer(text_fields=text_fields, numeric=numeric_features(field_spec),
                            **settings.featurizer_params())
    ftable = _feature_table(spec, table)
    X = featurizer.fit_transform(ftable)
    try:
        hints = compile_hints(spec.hints, featurizer, list(spec.labels), measure_name_fn=measure_name,
                              margin=settings.hints.margin)
    except HintError as err:
        raise DataError(str(err)) from None

    log(f"training the end model on {int(covered.sum()):,} covered rows with {len(hints)} hints")
    end_params = settings.end_model_params()
    end_model = EndModel(**end_params).fit(X[covered], soft[covered], hints=hints)
    if hints and hint_effects:
        log(f"training it again without each hint, to measure each hint's effect ({len(hints)} runs)")
    # Same rows, same seed, all other hints kept: the only difference is the one hint.
    without = tuple(EndModel(**end_params).fit(X[covered], soft[covered], hints=hints[:i] + hints[i + 1:])
                    for i in range(len(hints) if hint_effects else 0))
    em_raw = end_model.predict_proba(X)

    # Gold rows judge the end model only on predictions it made without training on them:
    # out-of-fold on covered rows, the final model on uncovered ones (it never saw them).
    em_heldout = None
    gold_covered = None if gold is None else (gold != -1) & covered
    if gold_covered is not None and gold_covered.sum() >= MIN_GOLD_FOR_BLEND:
        log(f"cross-fitting the end model ({CROSS_FIT_FOLDS} folds) to calibrate it and choose the blend")
        em_heldout = em_raw.copy()
        em_heldout[gold_covered] = _out_of_fold(X, soft, covered, gold_covered, hints, end_params,
                                                settings.end_model.seed)
    end_t = 1.0 if em_heldout is None else fit_temperature(log_scores(em_heldout), gold)
    em_all = _tempered(em_raw, end_t)
    em_held = None if em_heldout is None else _tempered(em_heldout, end_t)
    blend, blend_basis = _choose_blend(soft, em_held, covered, gold, k)
    blend_uncovered, uncovered_basis = _choose_blend(soft, em_held, ~covered, gold, k, end_model_alone=True)
    model = TrainedModel(spec, label_model, featurizer, end_model, blend, settings.to_dict(), without,
                         end_temperature=end_t, blend_uncovered=blend_uncovered)

    report = _report(model, votes, soft, em_all, covered, gold, ftable, hints)
    report["blend"] = {"beta": blend, "chosen_on": blend_basis,
                       "beta_uncovered": blend_uncovered, "uncovered_chosen_on": uncovered_basis}
    report["calibration"] = _calibration_report(label_model, soft, em_heldout, end_t, gold)
    return model, report


def _out_of_fold(X, soft, covered, rows, hints, params, seed) -> np.ndarray:
    """End-model probabilities of the covered ``rows`` (bool mask), each from a model trained on
    the covered rows of the other folds (folds drawn at random over the covered rows)."""
    idx = np.flatnonzero(covered)
    fold = np.random.default_rng(seed).permutation(idx.shape[0]) % CROSS_FIT_FOLDS
    out = np.zeros((int(rows.sum()), soft.shape[1]))
    pos = np.cumsum(rows) - 1  # row -> its place in ``out``
    for f in range(CROSS_FIT_FOLDS):
        train_rows, held = idx[fold != f], idx[fold == f]
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
                         "ece": ece(_tempered(em_heldout, end_t), gold) if em_heldout is not None else None,
                         "fitted_on": ("out-of-fold predictions on gold rows" if em_heldout is not None
                                       else f"not calibrated (fewer than {MIN_GOLD_FOR_BLEND} covered gold rows)")}}
    return out


def _choose_blend(lm, em_heldout, rows, gold, k, end_model_alone=False):
    """How far the end model may move the label model's verdict on ``rows`` (covered rows; with
    ``end_model_alone``, the uncovered ones, where the label model is its class prior).

    With held-out end-model predictions (``em_heldout``: out-of-fold on covered rows, the final
    model on uncovered ones, which it never trained on) on at least ``MIN_GOLD_FOR_BLEND`` gold
    rows among ``rows``, pick the beta of ``BLEND_GRID`` whose blended labels score best there
    on the mean of accuracy and F1 (of the spec's first label for two labels, else macro;
    ties → the smaller beta: trust the rules). Beta 0 (the label model alone) is on the grid
    and beta 8 all but hands the rows to the end model, so the choice is at least as good as
    the better of the two on those rows. Otherwise: covered rows beta = 0.25 (the end model
    only settles rows where the rules are unsure), uncovered rows the end model alone (None).
    Returns (beta, what it was chosen on)."""
    fallback = (None, "default: the end model alone") if end_model_alone else (DEFAULT_BLEND, "default")
    if em_heldout is None:
        return fallback[0], fallback[1] + " (no gold labels)"
    rows = (gold != -1) & rows
    if rows.sum() < MIN_GOLD_FOR_BLEND:
        return fallback[0], fallback[1] + f" (fewer than {MIN_GOLD_FOR_BLEND} gold rows)"
    y = gold[rows]

    def score(beta):
        pred = (em_heldout[rows] if beta is None else _blend(lm[rows], em_heldout[rows], beta)).argmax(1)
        return (round((float((pred == y).mean()) + f1_score(pred, y, k, positive=0)) / 2, 9),
                -(np.inf if beta is None else beta))

    grid = BLEND_GRID + ((None,) if end_model_alone else ())
    best = max(grid, key=score)
    where = "rows no rule covers" if end_model_alone else "rows covered by the rules"
    how = "the end model's predictions" if end_model_alone else "out-of-fold end-model predictions"
    return best, f"{int(rows.sum()):,} gold {where}, {how}"


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


def hint_rows(ftable: pa.Table, covered: np.ndarray) -> pa.Table:
    """The rows a hint's satisfaction is measured on: those no rule covers, which the end
    model did not train on (all rows when fewer than 10)."""
    return ftable.filter(pa.array(~covered)) if (~covered).sum() >= 10 else ftable


def hint_effects(model: TrainedModel, ftable: pa.Table, covered: np.ndarray,
                 gold: Optional[np.ndarray] = None, hints: Optional[list] = None) -> list:
    """Each hint's effect: the end model trained with all hints against the one trained
    without this hint (same rows, same seed), on the rows of ``ftable`` (feature fields).

    satisfied / satisfied_without: share of the rows no rule covers (all rows when
    fewer than 10), which the end model did not train on, whose class-L probability
    moves the hinted way along the hint's direction; flipped: rows whose end-model
    label differs between the two models (``flipped_rows``: their positions);
    accuracy / accuracy_without: the end model's on the gold rows, when given.
    """
    hints = model.hints() if hints is None else hints
    if not hints or len(model.without_hint) != len(hints):
        return []
    held = hint_rows(ftable, covered)
    X = model.featurizer.transform(ftable)
    pred = model.end_model.predict(X)
    has_gold = gold is not None and (gold != -1).any()
    out = []
    for h, other in zip(hints, model.without_hint):
        eff = hint_effect(model.end_model, model.featurizer, held, h)
        eff_without = hint_effect(other, model.featurizer, held, h)
        pred_without = other.predict(X)
        flipped = np.flatnonzero(pred != pred_without)
        row = {"hint": h.name, "label": h.label, "satisfied": eff.share,
               "satisfied_without": eff_without.share, "mean_change": eff.mean_delta,
               "rows": int(held.num_rows), "flipped": int(len(flipped)), "flipped_rows": flipped.tolist()}
        if has_gold:
            row["accuracy"] = _accuracy(pred, gold)
            row["accuracy_without"] = _accuracy(pred_without, gold)
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


def save_model(model: TrainedModel, folder, report: dict) -> Path:
    """Write the model folder atomically (``engine.io.atomic_folder``)."""
    folder = Path(folder)
    if folder.exists() and not (folder / "model.json").exists() and any(folder.iterdir()):
        raise DataError(f"{folder} exists and is not a model folder; choose another -o")
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
            "label_model": {"params": lm_params, "state": _state(model.label_model)},
            "featurizer": model.featurizer.to_dict(),
        }
        (tmp / "model.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
        (tmp / "report.json").write_text(json.dumps(report, indent=1, default=float), encoding="utf-8")
    return folder


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
    if meta.get("format") != MODEL_FORMAT:
        raise ModelError(f"{folder}: model format {meta.get('format')!r} is not {MODEL_FORMAT!r}; retrain it")
    spec = load_spec(folder / "spec" / meta["spec"], schema)
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
        label_model = _restore(LabelModel(**meta["label_model"]["params"]), meta["label_model"]["state"])
        field_spec = _spec_on_fields(spec)
        featurizer = Featurizer.from_dict(meta["featurizer"], numeric=numeric_features(field_spec))
        end_model = EndModel.load(folder / "end_model")
        without = tuple(EndModel.load(folder / "without_hint" / str(i)) for i in range(len(spec.hints))
                        if (folder / "without_hint" / str(i)).is_dir())
    except (ValueError, KeyError, TypeError) as err:
        raise ModelError(f"{folder}: the model is damaged ({err}); retrain it with `mteach train`") from None
    return TrainedModel(spec, label_model, featurizer, end_model, float(meta["blend"]), meta["settings"], without,
                        end_temperature=float(meta.get("end_model_temperature", 1.0)),
                        blend_uncovered=meta.get("blend_uncovered"))

