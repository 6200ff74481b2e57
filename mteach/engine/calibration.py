"""Calibration: how far to trust a probability, and how to make it trustworthy.

* :func:`ece` — expected calibration error of the top label: rows are put in 10 equal-width
  bins by their highest probability; the error is the row-weighted mean gap between each
  bin's mean confidence and its accuracy.
* :func:`fit_temperature` — temperature scaling: the ``T > 0`` that minimises the negative
  log-likelihood of gold labels under ``softmax(scores / T)``.  One number per model, so
  every prediction is unchanged; ``T > 1`` softens an overconfident model, ``T < 1``
  sharpens an underconfident one.

A temperature keeps additive explanations exact: when ``scores = base + sum_j w_j``, then
``scores / T = base / T + sum_j w_j / T`` — every term is divided by the same ``T``, so the
calibrated log-odds are still the exact sum of the (scaled) per-rule terms.

Why not more (class offsets, a separate scale for the prior, isotonic maps)?  On the WRENCH
valid splits they lowered test ECE on some sets but changed predictions (TREC accuracy
.652 -> .48 with class offsets fitted on valid) or broke the additive decomposition; see
docs/evaluation.md.
"""
from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, softmax

__all__ = ["ece", "f1_score", "fit_temperature", "log_scores", "MIN_GOLD_ROWS"]

# Fewer gold rows than this: the temperature is left at 1 (the fit would be noise).
MIN_GOLD_ROWS = 20
_LOG_T_BOUNDS = (np.log(0.05), np.log(20.0))


def ece(proba: np.ndarray, gold: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error (top label, ``bins`` equal-width bins) on rows with gold != -1.
    NaN when no row has gold."""
    proba = np.asarray(proba, dtype=np.float64)
    gold = np.asarray(gold)
    known = gold != -1
    if not known.any():
        return float("nan")
    p, y = proba[known], gold[known]
    conf = p.max(axis=1)
    correct = (p.argmax(axis=1) == y).astype(np.float64)
    which = np.minimum((conf * bins).astype(np.int64), bins - 1)
    count = np.bincount(which, minlength=bins)
    gap = np.bincount(which, weights=conf - correct, minlength=bins)
    return float(np.abs(gap).sum() / count.sum())


def f1_score(pred: np.ndarray, gold: np.ndarray, k: int, positive: int = 1) -> float:
    """The evaluation protocol's metric (docs/evaluation.md), on rows with gold != -1: F1 of
    class ``positive`` for two classes (WRENCH: class 1), macro-F1 over the ``k`` classes
    otherwise. NaN without gold."""
    known = np.asarray(gold) != -1
    if not known.any():
        return float("nan")
    pred, gold = np.asarray(pred)[known], np.asarray(gold)[known]
    return f1_from_counts(np.bincount(gold[pred == gold], minlength=k)[:k], np.bincount(pred, minlength=k)[:k],
                          np.bincount(gold, minlength=k)[:k], positive)


def f1_from_counts(true_positive, predicted, gold, positive: int = 1) -> float:
    """``f1_score`` from per-class counts (rows right, predicted and gold of each class), so
    rows can be counted batch by batch (``cli.learn.Evaluation``)."""
    k = len(true_positive)
    f1 = []
    for c in ([positive] if k == 2 else range(k)):
        denom = float(predicted[c] + gold[c])
        f1.append(2 * float(true_positive[c]) / denom if denom else 0.0)
    return float(np.mean(f1))


def tempered(proba: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(log proba / T): the probabilities at temperature T (T = 1: unchanged)."""
    if temperature == 1.0:
        return proba
    return softmax(log_scores(proba) / temperature, axis=1)


def log_scores(proba: np.ndarray) -> np.ndarray:
    """Log-probabilities (clipped away from 0): scores whose softmax is ``proba``."""
    return np.log(np.clip(np.asarray(proba, dtype=np.float64), 1e-12, 1.0))


def fit_temperature(scores: np.ndarray, gold: np.ndarray) -> float:
    """The temperature ``T`` in ``[0.05, 20]`` minimising the gold labels' negative
    log-likelihood under ``softmax(scores / T)``.  Rows with gold -1 are ignored; with fewer
    than ``MIN_GOLD_ROWS`` gold rows ``T = 1`` (no change)."""
    scores = np.asarray(scores, dtype=np.float64)
    gold = np.asarray(gold)
    known = gold != -1
    if known.sum() < MIN_GOLD_ROWS:
        return 1.0
    s, y = scores[known], gold[known].astype(np.int64)
    s = s - s.max(axis=1, keepdims=True)
    rows = np.arange(s.shape[0])

    def nll(log_t):
        return -float(log_softmax(s / np.exp(log_t), axis=1)[rows, y].mean())

    res = minimize_scalar(nll, bounds=_LOG_T_BOUNDS, method="bounded", options={"xatol": 1e-4})
    return float(np.exp(res.x))
