"""Label models: combine a vote matrix into probabilistic labels.

A vote matrix ``L`` has one row per example and one column per rule; entries are
class ids ``0..k-1`` or ``-1`` (the rule abstained).

:class:`LabelModel` is a Dawid--Skene style generative model fitted by EM without
gold labels.  For each rule ``j`` and each class ``v`` it votes for, it estimates a
true-positive rate ``tpr[j, v] = P(L_j = v | y = v)`` and a false-positive rate
``fpr[j, v] = P(L_j = v | y != v)`` (wrong votes are symmetric over the other
classes).  Because these are per-class rates, unipolar rules (rules that only ever
vote one class, the common case) are identifiable.  Each rule gets a prior of
``accuracy_prior[j]`` (or 0.7 when the expert gave none) worth ``prior_strength``
(40 for the default) pseudo-votes.  Rules are treated as conditionally independent
given the class, and, as in Snorkel, **abstentions carry no evidence** in the
posterior: with many correlated rules, summing per-rule "did not fire" terms over
all abstaining rules makes the model overconfident and hurt accuracy on every WRENCH
set we tried.

The class balance is estimated by EM (``posterior_class_balance_``); the prior that
the posterior uses (``class_balance_``) is that estimate shrunk halfway toward
uniform, unless ``class_balance`` is given.

The fitted model is exposed as

* ``weights_[j, v, c]``: additive log-potential for class ``c`` when rule ``j``
  votes ``v``: ``log tpr[j, v]`` if ``c == v`` else ``log fpr[j, v]`` (0 for a vote
  the rule never cast in training, so it contributes nothing),
* ``baseline_[c] = log class_balance_[c]``,

and the *exact* identity used by :meth:`LabelModel.predict_proba` is::

    predict_proba(L)[i] == softmax(baseline_ + sum_{j : L[i, j] != -1} weights_[j, L[i, j], :])

The fit works on the distinct vote patterns (rows are hashed to one 64-bit key,
with a second independent hash to rule out collisions), weighted by their counts,
so its cost grows with the number of distinct patterns, not rows.  Each EM step
is two sparse matrix products.  Everything is deterministic.
"""

from __future__ import annotations

import numbers

import numpy as np
import scipy.sparse as sp
from scipy.special import logsumexp, softmax
from sklearn.base import BaseEstimator

__all__ = ["LabelModel", "MajorityVote"]

_ABSTAIN = -1
_EPS = 1e-12
_RATE_SMOOTHING = 1.0
_BALANCE_PSEUDO = 1.0
# Rules without an expert prior get this weak prior on their accuracy.
_DEFAULT_ACCURACY = 0.7
_DEFAULT_ACCURACY_STRENGTH = 40.0


# --------------------------------------------------------------------------- #
# validation helpers
# --------------------------------------------------------------------------- #
def _as_vote_matrix(L, name="L"):
    """Return ``L`` as a C-contiguous int64 2-D array, or raise ValueError."""
    if sp.issparse(L):
        raise ValueError(f"{name} must be a dense array of votes (use -1 for abstain), got a sparse matrix")
    arr = np.asarray(L)
    if arr.ndim != 2:
        raise ValueError(
            f"{name} must be a 2-D vote matrix (rows x rules), got an array with {arr.ndim} dimension(s)"
            f" and shape {arr.shape}"
        )
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{name} must have at least one row and one rule, got shape {arr.shape}")
    if arr.dtype == bool or not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise ValueError(f"{name} must hold integer class ids (-1 = abstain), got dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.floating):
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{name} contains NaN or infinite values; use -1 for abstain")
        if not np.all(arr == np.round(arr)):
            raise ValueError(f"{name} must hold integer class ids (-1 = abstain), found non-integer values")
    arr = np.ascontiguousarray(arr, dtype=np.int64)
    lo = arr.min()
    if lo < _ABSTAIN:
        i, j = np.argwhere(arr == lo)[0]
        raise ValueError(
            f"{name}[{i}, {j}] = {lo}: votes must be class ids 0..k-1 or -1 for abstain"
        )
    return arr


def _check_labels_in_range(arr, k, name="L"):
    hi = arr.max()
    if hi >= k:
        i, j = np.argwhere(arr == hi)[0]
        raise ValueError(
            f"{name}[{i}, {j}] = {hi} but n_classes is {k}: votes must be class ids 0..{k - 1} or -1 for abstain"
        )


def _as_gold(y, n):
    arr = np.asarray(y)
    if arr.ndim != 1 or arr.shape[0] != n:
        raise ValueError(f"y must be a 1-D array with one gold label per row of L ({n}), got shape {arr.shape}")
    if np.issubdtype(arr.dtype, np.floating):
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise ValueError("y must hold integer class ids (-1 = unknown)")
    elif not np.issubdtype(arr.dtype, np.integer) or arr.dtype == bool:
        raise ValueError(f"y must hold integer class ids (-1 = unknown), got dtype {arr.dtype}")
    arr = arr.astype(np.int64)
    if arr.size and arr.min() < -1:
        raise ValueError(f"y contains {arr.min()}: gold labels must be class ids 0..k-1 or -1 for unknown")
    return arr


def _resolve_n_classes(n_classes, L, y=None):
    observed = int(L.max()) + 1
    if y is not None and y.size:
        observed = max(observed, int(y.max()) + 1)
    if n_classes is None:
        return max(observed, 2)
    if not isinstance(n_classes, numbers.Integral) or isinstance(n_classes, bool) or n_classes < 2:
        raise ValueError(f"n_classes must be an integer >= 2 (or None to infer it), got {n_classes!r}")
    return int(n_classes)


def _check_fitted(est):
    if not hasattr(est, "n_rules_"):
        raise ValueError(f"this {type(est).__name__} is not fitted yet; call fit(L) first")


def _check_predict_input(est, L):
    _check_fitted(est)
    L = _as_vote_matrix(L)
    if L.shape[1] != est.n_rules_:
        raise ValueError(f"L has {L.shape[1]} rules (columns) but the model was fitted with {est.n_rules_}")
    _check_labels_in_range(L, est.n_classes_)
    return L


# --------------------------------------------------------------------------- #
# vote patterns
# --------------------------------------------------------------------------- #
_HASH_MULT_1 = np.uint64(0x9E3779B97F4A7C15)
_HASH_MULT_2 = np.uint64(0xC2B2AE3D27D4EB4F)


def _row_keys(L, extra, seed):
    """Two independent 64-bit polynomial hashes of each row (and of ``extra``)."""
    rng = np.random.default_rng([seed, 0x6D7465616368])
    salt = rng.integers(1, 2**63, size=(2, L.shape[1] + 1), dtype=np.uint64)
    n = L.shape[0]
    h1 = np.zeros(n, dtype=np.uint64)
    h2 = np.zeros(n, dtype=np.uint64)
    with np.errstate(over="ignore"):
        cols = list(range(L.shape[1]))
        for j in cols:
            v = (L[:, j] + 2).astype(np.uint64)
            h1 *= _HASH_MULT_1
            h1 += v * salt[0, j]
            h2 *= _HASH_MULT_2
            h2 ^= v * salt[1, j]
        if extra is not None:
            v = (extra + 2).astype(np.uint64)
            h1 *= _HASH_MULT_1
            h1 += v * salt[0, -1]
            h2 *= _HASH_MULT_2
            h2 ^= v * salt[1, -1]
    return h1, h2


def _unique_patterns(L, gold=None, seed=0):
    """Distinct rows of ``L`` (jointly with ``gold``): (first index, inverse, counts)."""
    n = L.shape[0]
    h1, h2 = _row_keys(L, gold, seed)
    order = np.argsort(h1, kind="stable")
    s1 = h1[order]
    s2 = h2[order]
    new = np.empty(n, dtype=bool)
    new[0] = True
    np.not_equal(s1[1:], s1[:-1], out=new[1:])
    # rows with equal h1 must also share h2; otherwise h1 collided
    if not np.array_equal(s2[1:][~new[1:]], s2[:-1][~new[1:]]):
        return _unique_patterns_slow(L, gold)
    group = np.cumsum(new) - 1
    starts = np.flatnonzero(new)
    first = order[starts]
    counts = np.diff(np.append(starts, n))
    inverse = np.empty(n, dtype=np.int64)
    inverse[order] = group
    return first, inverse, counts


def _unique_patterns_slow(L, gold):  # pragma: no cover - only on a 64-bit hash collision
    M = L if gold is None else np.column_stack([L, gold])
    _, first, inverse, counts = np.unique(M, axis=0, return_index=True, return_inverse=True, return_counts=True)
    return first, inverse.ravel(), counts


def _vote_design(L, k):
    """Sparse one-hot design: row i has a 1 in column j*k + v when rule j voted v."""
    n, m = L.shape
    voted = L >= 0
    rows, cols = np.nonzero(voted)
    indices = cols * k + L[rows, cols]
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(voted.sum(axis=1), out=indptr[1:])
    data = np.ones(indices.shape[0], dtype=np.float64)
    return sp.csr_matrix((data, indices, indptr), shape=(n, m * k))


def _decompose(L, weights, baseline):
    """baseline + sum over voting rules of weights[j, L[i, j], :], for every row."""
    m, k, _ = weights.shape
    X = _vote_design(L, k)
    return X @ weights.reshape(m * k, k) + baseline


# --------------------------------------------------------------------------- #
# LabelModel
# --------------------------------------------------------------------------- #
class LabelModel(BaseEstimator):
    """Dawid--Skene label model with shrinkage, fitted by EM on distinct vote patterns.

    Parameters
    ----------
    n_classes : int or None
        Number of classes ``k``.  ``None`` infers ``max(label) + 1`` (at least 2).
    accuracy_prior : array-like of shape (n_rules,) or None
        Expert's prior accuracy for each rule (``NaN`` = no prior).  Acts as
        ``prior_strength`` pseudo-votes of that accuracy.  Rules without a prior get
        a prior of 0.7 worth 40 pseudo-votes.
    prior_strength : float
        Pseudo-vote count behind each entry of ``accuracy_prior``.
    class_balance : array-like of shape (k,) or None
        Fixed class prior.  ``None`` estimates it by EM and uses the estimate shrunk
        halfway toward uniform.
    max_iter : int
        Maximum number of EM iterations.
    tol : float
        Stop when the mean absolute change of the row posteriors (L1 per row)
        falls below ``tol``.
    seed : int
        Seeds the row-hash salts.  Outputs are byte-identical for a given seed (and,
        barring a 128-bit hash collision, do not depend on it at all).
    """

    def __init__(
        self,
        n_classes=None,
        accuracy_prior=None,
        prior_strength=10.0,
        class_balance=None,
        max_iter=100,
        tol=1e-5,
        seed=0,
    ):
        self.n_classes = n_classes
        self.accuracy_prior = accuracy_prior
        self.prior_strength = prior_strength
        self.class_balance = class_balance
        self.max_iter = max_iter
        self.tol = tol
        self.seed = seed

    # ------------------------------------------------------------------ params
    def _validate_params(self, m, k):
        if not isinstance(self.max_iter, numbers.Integral) or self.max_iter < 1:
            raise ValueError(f"max_iter must be a positive integer, got {self.max_iter!r}")
        if not isinstance(self.tol, numbers.Real) or not self.tol >= 0:
            raise ValueError(f"tol must be a non-negative number, got {self.tol!r}")
        for name in ("prior_strength",):
            val = getattr(self, name)
            if not isinstance(val, numbers.Real) or not val >= 0:
                raise ValueError(f"{name} must be a non-negative number (inf allowed), got {val!r}")
        if self.accuracy_prior is None:
            prior = np.full(m, np.nan)
        else:
            prior = np.asarray(self.accuracy_prior, dtype=np.float64)
            if prior.shape != (m,):
                raise ValueError(
                    f"accuracy_prior must have one entry per rule ({m}), got shape {prior.shape}"
                )
            bad = ~np.isnan(prior) & ((prior < 0) | (prior > 1))
            if bad.any():
                j = int(np.flatnonzero(bad)[0])
                raise ValueError(
                    f"accuracy_prior[{j}] = {prior[j]}: accuracies must lie in [0, 1] (NaN = no prior)"
                )
        if self.class_balance is None:
            balance = None
        else:
            balance = np.asarray(self.class_balance, dtype=np.float64)
            if balance.shape != (k,):
                raise ValueError(f"class_balance must have one entry per class ({k}), got shape {balance.shape}")
            if not np.all(np.isfinite(balance)) or np.any(balance <= 0):
                raise ValueError("class_balance entries must be positive finite numbers")
            if abs(balance.sum() - 1.0) > 1e-6:
                raise ValueError(f"class_balance must sum to 1, got {balance.sum():.6g}")
            balance = balance / balance.sum()
        return prior, balance

    # --------------------------------------------------------------------- fit
    def fit(self, L, y=None):
        """Fit on vote matrix ``L`` (n, m); ``y`` optional gold labels with -1 = unknown."""
        L = _as_vote_matrix(L)
        n, m = L.shape
        gold = None
        if y is not None:
            gold = _as_gold(y, n)
            if not np.any(gold >= 0):
                gold = None
        k = _resolve_n_classes(self.n_classes, L, gold)
        _check_labels_in_range(L, k)
        if gold is not None and gold.max() >= k:
            i = int(np.argmax(gold))
            raise ValueError(f"y[{i}] = {gold[i]} but n_classes is {k}: gold labels must be 0..{k - 1} or -1")
        if L.max() < 0:
            raise ValueError("no rule votes on any row of L (every entry is -1); nothing to learn from")
        prior, balance = self._validate_params(m, k)

        first, _, counts = _unique_patterns(L, gold, self.seed)
        Lu = L[first]
        gu = None if gold is None else gold[first]
        X = _vote_design(Lu, k)
        Xt = X.T.tocsr()
        w = counts.astype(np.float64)

        state = self._em(X, Xt, w, gu, m, k, prior, balance)
        self.n_classes_ = k
        self.n_rules_ = m
        self.n_patterns_ = int(first.shape[0])
        for key, val in state.items():
            setattr(self, key, val)
        return self

    def _em(self, X, Xt, w, gold, m, k, prior, balance):
        n = float(w.sum())
        # one-hot "vote for class c" map: (m*k, k)
        vote_to_class = np.tile(np.eye(k), (m, 1))
        # --- initial posterior: soft majority vote
        votes = X @ vote_to_class
        tot = votes.sum(axis=1, keepdims=True)
        Q = np.where(tot > 0, (votes + 1e-3) / (tot + k * 1e-3), 1.0 / k)
        gold_rows = None
        if gold is not None:
            gold_rows = np.flatnonzero(gold >= 0)
            Q[gold_rows] = 0.0
            Q[gold_rows, gold[gold_rows]] = 1.0

        has_prior = ~np.isnan(prior)
        a0 = np.clip(np.where(has_prior, prior, _DEFAULT_ACCURACY), 1e-3, 1 - 1e-3)
        s_a = np.where(has_prior, float(self.prior_strength), _DEFAULT_ACCURACY_STRENGTH)
        votes_jv = (Xt @ w).reshape(m, k)  # how often rule j voted v
        seen = votes_jv > 0
        votes_j = votes_jv.sum(axis=1)
        share = votes_jv / np.maximum(votes_j, _EPS)[:, None]  # r[j, v]
        q = votes_jv / n  # overall rate of rule j voting v
        eye = np.eye(k)
        # prior pseudo-votes: s_a * a0 correct and s_a * (1 - a0) wrong, spread like the rule's votes
        pseudo = s_a[:, None, None] * share[:, :, None] * (
            a0[:, None, None] * eye + (1 - a0)[:, None, None] * (1 - eye) / (k - 1)
        )
        alpha = _RATE_SMOOTHING
        if balance is not None:
            log_pi = np.log(balance)

        converged = False
        n_iter = 0
        for it in range(self.max_iter):
            n_iter = it + 1
            # ---------------- M-step
            Qw = Q * w[:, None]
            T = Qw.sum(axis=0)  # expected rows per class
            if balance is None:
                pi = (T + _BALANCE_PSEUDO * n / k) / (n + _BALANCE_PSEUDO * n)
                log_pi = np.log(pi)
            N = np.asarray(Xt @ Qw).reshape(m, k, k) + pseudo  # N[j, v, c]
            diag = np.einsum("jvv->jv", N)
            off = N.sum(axis=2) - diag
            tpr = np.clip((diag + alpha * q) / (T[None, :] + alpha), 1e-9, 1 - 1e-9)
            fpr = np.clip((off + alpha * q) / ((n - T)[None, :] + alpha), 1e-9, 1 - 1e-9)
            logw = np.where(eye[None, :, :] > 0, np.log(tpr)[:, :, None], np.log(fpr)[:, :, None])
            logw[~seen] = 0.0
            # ---------------- E-step
            S = X @ logw.reshape(m * k, k) + log_pi
            Q_new = softmax(S, axis=1)
            if gold_rows is not None:
                Q_new[gold_rows] = 0.0
                Q_new[gold_rows, gold[gold_rows]] = 1.0
            delta = float(w @ np.abs(Q_new - Q).sum(axis=1)) / n
            Q = Q_new
            if delta < self.tol:
                converged = True
                break

        pi_used = np.exp(log_pi)
        T = (Q * w[:, None]).sum(axis=0)
        # accuracy_: P(vote is right | rule votes) = sum_v pi_v tpr_jv / sum_v (pi_v tpr_jv + (1 - pi_v) fpr_jv)
        num = (pi_used[None, :] * tpr * seen).sum(axis=1)
        den = num + ((1 - pi_used)[None, :] * fpr * seen).sum(axis=1)
        accuracy = np.where(votes_j > 0, num / np.maximum(den, _EPS), a0)
        return {
            "weights_": np.ascontiguousarray(logw),
            "baseline_": np.ascontiguousarray(log_pi, dtype=np.float64),
            "class_balance_": pi_used,
            "posterior_class_balance_": T / n,
            "accuracy_": accuracy,
            "coverage_": votes_j / n,
            "n_iter_": n_iter,
            "converged_": converged,
        }

    # ----------------------------------------------------------------- predict
    def decision_function(self, L):
        """Unnormalised log-scores ``baseline_ + sum of weights_`` (n, k)."""
        L = _check_predict_input(self, L)
        return np.asarray(_decompose(L, self.weights_, self.baseline_))

    def predict_proba(self, L):
        """Posterior class probabilities (n, k), float64."""
        return softmax(self.decision_function(L), axis=1)

    def predict(self, L):
        """Most probable class; ties go to the lowest class id (``np.argmax``)."""
        return np.argmax(self.predict_proba(L), axis=1)

    def contributions(self, L, target=None):
        """Log-odds contribution (n, m) of each voting rule toward ``target``.

        For rule ``j`` voting ``v`` the contribution toward class ``t`` is
        ``weights_[j, v, t] - mean_{c != t} weights_[j, v, c]``; for two classes this is
        exactly the rule's additive term in the log-odds of ``t``.  Abstaining rules
        contribute 0.  ``target`` is an int (same for every row), an array (n,), or
        ``None`` for each row's predicted class.
        """
        L = _check_predict_input(self, L)
        return _contributions(L, self.weights_, target, self.predict(L) if target is None else None)


def _contributions(L, weights, target, predicted):
    n, m = L.shape
    k = weights.shape[2]
    if target is None:
        t = predicted
    else:
        t = np.asarray(target)
        if t.ndim == 0:
            t = np.full(n, int(t))
        if t.shape != (n,) or not np.issubdtype(t.dtype, np.integer):
            raise ValueError(f"target must be an int or an integer array with one entry per row ({n})")
        if t.min() < 0 or t.max() >= k:
            raise ValueError(f"target must be a class id in 0..{k - 1}")
    # contrast[j, v, t] = w[j, v, t] - mean_{c != t} w[j, v, c]
    total = weights.sum(axis=2, keepdims=True)
    contrast = weights - (total - weights) / (k - 1)
    voted = L >= 0
    jj = np.broadcast_to(np.arange(m), (n, m))
    vv = np.where(voted, L, 0)
    out = contrast[jj, vv, t[:, None]]
    out[~voted] = 0.0
    return out


# --------------------------------------------------------------------------- #
# MajorityVote
# --------------------------------------------------------------------------- #
class MajorityVote(BaseEstimator):
    """Unweighted majority vote, the baseline.

    ``predict_proba`` gives the fraction of non-abstaining votes per class (uniform for
    rows where every rule abstained).  ``predict`` breaks ties toward the lowest class id
    when ``tie_break="lowest"`` (default) or uniformly at random among tied classes with
    ``tie_break="random"`` (seeded by ``seed``; what WRENCH and Snorkel do).
    """

    def __init__(self, n_classes=None, tie_break="lowest", seed=0):
        self.n_classes = n_classes
        self.tie_break = tie_break
        self.seed = seed

    def fit(self, L, y=None):
        L = _as_vote_matrix(L)
        gold = None if y is None else _as_gold(y, L.shape[0])
        k = _resolve_n_classes(self.n_classes, L, gold)
        _check_labels_in_range(L, k)
        if self.tie_break not in ("lowest", "random"):
            raise ValueError(f"tie_break must be 'lowest' or 'random', got {self.tie_break!r}")
        m = L.shape[1]
        self.n_classes_ = k
        self.n_rules_ = m
        self.weights_ = np.broadcast_to(np.eye(k), (m, k, k)).copy()
        self.baseline_ = np.zeros(k)
        self.class_balance_ = np.full(k, 1.0 / k)
        return self

    def vote_counts(self, L):
        L = _check_predict_input(self, L)
        return np.asarray(_decompose(L, self.weights_, self.baseline_))

    def predict_proba(self, L):
        counts = self.vote_counts(L)
        tot = counts.sum(axis=1, keepdims=True)
        return np.where(tot > 0, counts / np.maximum(tot, 1), 1.0 / self.n_classes_)

    def predict(self, L):
        counts = self.vote_counts(L)
        if self.tie_break == "lowest":
            return np.argmax(counts, axis=1)
        rng = np.random.default_rng(self.seed)
        top = counts == counts.max(axis=1, keepdims=True)
        noise = rng.random(counts.shape)
        return np.argmax(np.where(top, noise, -1.0), axis=1)

    def contributions(self, L, target=None):
        """+1 for a vote for ``target``, -1/(k-1) for a vote against it, 0 for abstain."""
        L = _check_predict_input(self, L)
        return _contributions(L, self.weights_, target, np.argmax(self.vote_counts(L), axis=1) if target is None else None)
