"""Label models: combine a vote matrix into probabilistic labels.

A vote matrix ``L`` has one row per example and one column per rule; entries are
class ids ``0..k-1`` or ``-1`` (the rule abstained).

:class:`LabelModel` is a Dawid--Skene style generative model fitted by EM without
gold labels.  Each vote ``v`` of rule ``j`` has a *precision*
``a[j, v] = P(y = v | L_j = v)``; wrong votes are spread over the other classes in
proportion to the class balance ``pi``, so a vote's likelihood ratio for class ``c``
is ``a / pi_v`` (``c == v``) or ``(1 - a) / (1 - pi_v)`` (otherwise) -- the same model
as per-class true/false-positive rates, parametrised so that the prior is in vote
units: each rule has a Beta prior on its precision of ``accuracy_prior[j]`` worth
``prior_strength`` pseudo-votes (0.7 worth 40 pseudo-votes when the expert gave none),
so with few votes the prior dominates.  Rules are treated as conditionally independent
given the class.

**Abstentions.**  Each rule also has a class-conditional coverage
``gamma[j, c] = P(rule j votes | y = c)`` (``class_coverage_``), estimated by one M-step on
the final EM posteriors (expected votes of rule j on class-c rows / expected class-c rows)
and shrunk halfway toward the rule's overall coverage ``cover[j]``
(``abstain_shrinkage=0.5``, as the class balance is shrunk halfway toward uniform; full
naive-Bayes abstention terms make correlated rules overconfident).  A rule that covers
SPAM well and never fires on HAM then makes "it abstained" evidence of HAM.  The vote
parameters are those of the EM without abstention terms (the E-step ignores abstentions, as
in Snorkel); ``abstain_shrinkage=1`` gives that model back exactly (abstentions carry no
evidence).

The class balance ``pi`` is estimated by EM (``posterior_class_balance_``); the prior
that the posterior uses (``class_balance_``) is that estimate shrunk halfway toward
uniform, unless ``class_balance`` is given.  ``accuracy_[j]`` is the posterior of the
rule's vote when it votes alone (every other rule abstains), vote-weighted over its votes,
so a lone vote of a rule with ``accuracy_ > 0.5`` wins.  ``vote_accuracy_[j]`` is the share
of rule j's votes the fitted posteriors call right (the model's estimate of what gold would
measure), with a 95% interval ``vote_accuracy_interval_[j]`` from a Beta on those expected
counts -- sampling error only; the model's own error is not in it (compare with gold).

The fitted model is exposed as

* ``abstain[j, c] = log(1 - gamma[j, c]) - log(1 - cover[j])`` (0 when ``abstain_shrinkage=1``),
* ``weights_[j, v, c]``: additive log-potential for class ``c`` when rule ``j`` votes ``v``,
  relative to rule ``j`` abstaining: ``log(a / pi_v)`` if ``c == v`` else
  ``log((1 - a) / (1 - pi_v))``, minus ``abstain[j, c]`` (0 for a vote the rule never cast
  in training: it counts as an abstention),
* ``baseline_[c] = log class_balance_[c] + sum_j abstain[j, c]``: the score of a row where
  every rule abstains,

and the *exact* identity used by :meth:`LabelModel.predict_proba` is::

    predict_proba(L)[i] == softmax(baseline_ + sum_{j : L[i, j] != -1} weights_[j, L[i, j], :])

so abstaining rules add nothing relative to the baseline.

**Calibration.**  :meth:`LabelModel.calibrate` fits a temperature ``T`` on gold rows
(:func:`mteach.engine.calibration.fit_temperature`) and divides ``weights_`` and
``baseline_`` by it (``temperature_`` records it).  Every term is divided by the same
``T``, so the identity above holds exactly for the calibrated model too: ``explain``'s
per-rule log-odds are the calibrated ones and still sum to the calibrated posterior, and
no prediction changes.

Fitting works on int8 votes, column by column.  Rows are deduplicated into counted
patterns (64-bit multiply-add row hash, equal hashes verified row by row) unless a
50,000-row sample shows that most rows are distinct.  Two classes: rules are grouped
in blocks of up to 10 whose base-3 vote code (uint16) indexes a per-block log-odds
table, so an EM step is one lookup and one weighted ``bincount`` per block.  More
classes: an EM step is a few ``bincount`` calls over the list of votes.  The
class-conditional coverage costs one more block histogram (two classes) or one sparse
product over the votes (more classes).  Everything is deterministic for a seed.
"""

from __future__ import annotations

import numbers
from typing import Optional, Protocol, runtime_checkable

import numpy as np
import scipy.sparse as sp
from scipy.special import expit, softmax
from scipy.stats import beta as beta_dist
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

__all__ = ["LabelModel", "MajorityVote", "LabelModelProtocol", "LABEL_MODELS", "label_model_kind", "fit_for_spec"]

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
    if np.issubdtype(arr.dtype, np.floating) or arr.dtype == np.uint64:
        arr = arr.astype(np.int64)
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
    """sklearn's NotFittedError (a ValueError) before ``fit``."""
    check_is_fitted(est, "n_rules_", msg=f"this {type(est).__name__} is not fitted yet; call fit(L) first")


def _as_sample_weight(sample_weight, n):
    """Per-row weights (None: every row counts once) as float64, or raise ValueError."""
    if sample_weight is None:
        return None
    w = np.asarray(sample_weight)
    if w.ndim != 1 or w.shape[0] != n:
        raise ValueError(f"sample_weight must be a 1-D array with one weight per row of L ({n}), got shape {w.shape}")
    if w.dtype == bool or not (np.issubdtype(w.dtype, np.integer) or np.issubdtype(w.dtype, np.floating)):
        raise ValueError(f"sample_weight must hold numbers (a count per row), got dtype {w.dtype}")
    w = w.astype(np.float64)
    if not np.all(np.isfinite(w)) or (w < 0).any() or not w.sum() > 0:
        raise ValueError("sample_weight must be finite, non-negative and not all zero")
    return w


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
_HASH_MULT = np.uint64(0x9E3779B97F4A7C15)
_DEDUP_SAMPLE = 50_000


def _compact(L, k):
    """Votes as the smallest signed int type, column-major (every step reads whole columns)."""
    dtype = np.int8 if k <= 127 else (np.int16 if k <= 32767 else np.int32)
    return np.asfortranarray(L, dtype=dtype)


def _row_hash(L, extra, seed):
    """A 64-bit multiply-add hash of each row (and of ``extra``), one pass per column."""
    rng = np.random.default_rng([seed, 0x6D7465616368])
    salt = rng.integers(1, 2**63, size=L.shape[1] + 1, dtype=np.uint64) | np.uint64(1)
    h = np.zeros(L.shape[0], dtype=np.uint64)
    cols = [L[:, j] for j in range(L.shape[1])] + ([] if extra is None else [extra])
    with np.errstate(over="ignore"):
        for j, col in enumerate(cols):
            h *= _HASH_MULT
            h += (col.astype(np.int64) + 2).astype(np.uint64) * salt[j]
    return h


def _patterns(L, gold, seed, weight=None):
    """Distinct rows of ``L`` (jointly with ``gold``) in order of first appearance.

    Returns (patterns, counts, gold of the patterns): ``counts`` sums ``weight`` (1 per row
    when None) over the rows of each pattern, so a matrix of patterns with their counts as
    ``weight`` gives back the same patterns and counts.  ``counts`` is ``weight`` as given
    when the rows are kept as they are because a sample showed that most of them are
    distinct (then deduplicating would cost more than it saves).  Equal hashes are verified
    row by row, so a hash collision can cost time but never correctness.
    """
    n = L.shape[0]
    if n > 4 * _DEDUP_SAMPLE:
        idx = np.linspace(0, n - 1, _DEDUP_SAMPLE).astype(np.int64)
        hs = _row_hash(L[idx], None if gold is None else gold[idx], seed)
        if np.unique(hs).shape[0] > 0.5 * _DEDUP_SAMPLE:
            return L, weight, gold
    h = _row_hash(L, gold, seed)
    order = np.argsort(h, kind="stable")
    hs = h[order]
    new = np.empty(n, dtype=bool)
    new[0] = True
    np.not_equal(hs[1:], hs[:-1], out=new[1:])
    same = ~new[1:]
    later, earlier = order[1:][same], order[:-1][same]  # rows that share a hash: compared, only they
    ok = np.array_equal(L[later], L[earlier])
    if ok and gold is not None:
        ok = np.array_equal(gold[later], gold[earlier])
    if not ok:  # pragma: no cover - only on a 64-bit hash collision
        M = L if gold is None else np.column_stack([L, gold])
        _, first, inverse = np.unique(M, axis=0, return_index=True, return_inverse=True)
        counts = np.bincount(inverse.ravel(), weights=weight, minlength=first.shape[0])
    else:
        starts = np.flatnonzero(new)
        first = order[starts]
        counts = (np.diff(np.append(starts, n)) if weight is None
                  else np.add.reduceat(weight[order], starts))
    by_first = np.argsort(first, kind="stable")
    first = first[by_first]
    Lu = np.asfortranarray(L[first])
    return Lu, counts[by_first].astype(np.float64), None if gold is None else gold[first]


def _votes_are_sparse(L) -> bool:
    """Whether the vote-list engine is much cheaper than the block engine on ``L``: its cost
    grows with the votes, the blocks' with rows x blocks of up to 10 rules. Many rules that
    each vote rarely (1,000 phrase rules: 7 votes a row, 100 blocks) take the vote list;
    the bundled spec (14 rules, 2 blocks, 1.3 votes a row) keeps the blocks. The engines
    agree to 1e-7."""
    n, m = L.shape
    return 4 * int(np.count_nonzero(L >= 0)) < n * -(-m // 10)


class _BinaryBlocks:
    """E/M-step engine for two classes: the log-odds of a row is a sum over blocks of up to
    10 rules of a lookup in a per-block table indexed by the block's base-3 vote code
    (uint16), and the M-step's per-rule sums are marginals of one weighted histogram per
    block.  Cost per EM step: one table lookup and one ``bincount`` per block."""

    def __init__(self, L, w):
        n, m = L.shape
        self.n_rows = n
        self.w = w
        self.n = float(n if w is None else w.sum())
        c = 1
        while c < 10 and 3 ** (c + 1) <= max(3, n // 16):
            c += 1
        self.blocks = [list(range(b, min(b + c, m))) for b in range(0, m, c)]
        self.codes = []
        for cols in self.blocks:
            code = np.zeros(n, dtype=np.uint16)
            for j in cols:
                code *= 3
                code += (L[:, j] + 1).astype(np.uint16)
            self.codes.append(code)
        self.m = m
        self.vote_counts = self._marginals(w)[:, 1:]

    def _marginals(self, weights):
        """(m, 3) weighted counts of abstain / vote 0 / vote 1 per rule."""
        out = np.zeros((self.m, 3))
        for cols, code in zip(self.blocks, self.codes):
            c = len(cols)
            hist = np.bincount(code, weights=weights, minlength=3 ** c).reshape((3,) * c)
            for t, j in enumerate(cols):
                out[j] = hist.sum(axis=tuple(a for a in range(c) if a != t))
        return out

    def _scores(self, dpad, const):
        s = np.full(self.n_rows, const)
        for cols, code in zip(self.blocks, self.codes):
            table = dpad[cols[0]]
            for j in cols[1:]:
                table = (table[:, None] + dpad[j][None, :]).ravel()
            s += np.take(table, code)
        return s

    def initial_posterior(self):
        ones = self._scores(np.array([[0.0, 0.0, 1.0]] * self.m), 0.0)
        zeros = self._scores(np.array([[0.0, 1.0, 0.0]] * self.m), 0.0)
        return (ones + 1e-3) / (ones + zeros + 2e-3)

    def clamp(self, q, rows, labels):
        q[rows] = labels

    def expected_counts(self, q):
        qw = q if self.w is None else q * self.w
        t1 = float(qw.sum())
        m1 = self._marginals(qw)
        corr = np.column_stack([self.vote_counts[:, 0] - m1[:, 1], m1[:, 2]])
        return np.array([self.n - t1, t1]), corr

    def class_votes(self, q):
        """(m, 2) posterior-weighted count of each rule's votes on rows of class 0 / class 1."""
        qw = q if self.w is None else q * self.w
        m1 = self._marginals(qw)
        v1 = m1[:, 1] + m1[:, 2]
        return np.column_stack([self.vote_counts.sum(axis=1) - v1, v1])

    def posterior(self, on, off, log_pb):
        dpad = np.zeros((self.m, 3))
        dpad[:, 1] = off[:, 0] - on[:, 0]
        dpad[:, 2] = on[:, 1] - off[:, 1]
        return expit(self._scores(dpad, log_pb[1] - log_pb[0]))

    def change(self, new, old):
        d = np.abs(new - old)
        return 2.0 * float(d.sum() if self.w is None else d @ self.w) / self.n


class _VoteList:
    """E/M-step engine for any number of classes, on the list of (row, rule, vote) triples:
    each step is a few ``bincount`` calls over the votes (cost grows with votes, not with
    votes x classes)."""

    def __init__(self, L, w, k):
        n, m = L.shape
        self.k = k
        self.n_rows = n
        self.w = np.ones(n) if w is None else w
        self.n = float(self.w.sum())
        rows, cols = vote_entries(L)
        v = L[rows, cols].astype(np.int64)
        self.rows = rows
        self.col = cols * k + v
        self.rk = rows * k + v
        self.m = m
        self.vote_counts = np.bincount(self.col, weights=self.w[rows], minlength=m * k).reshape(m, k)
        # rows come out in row order: a CSR (row x rule) indicator of the votes
        indptr = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows, minlength=n), out=indptr[1:])
        self.voted = sp.csr_matrix((np.ones(rows.shape[0]), cols, indptr), shape=(n, m))

    def initial_posterior(self):
        k = self.k
        votes = np.bincount(self.rk, minlength=self.n_rows * k).reshape(self.n_rows, k).astype(np.float64)
        tot = votes.sum(axis=1, keepdims=True)
        return np.where(tot > 0, (votes + 1e-3) / (tot + k * 1e-3), 1.0 / k)

    def clamp(self, Q, rows, labels):
        Q[rows] = 0.0
        Q[rows, labels] = 1.0

    def expected_counts(self, Q):
        Qw = Q * self.w[:, None]
        corr = np.bincount(self.col, weights=Qw.ravel()[self.rk], minlength=self.m * self.k)
        return Qw.sum(axis=0), corr.reshape(self.m, self.k)

    def class_votes(self, Q):
        """(m, k) posterior-weighted count of each rule's votes on rows of each class."""
        return np.asarray(self.voted.T @ (Q * self.w[:, None]))

    def posterior(self, on, off, log_pb):
        n, k = self.n_rows, self.k
        S = np.bincount(self.rows, weights=off.ravel()[self.col], minlength=n)[:, None] + log_pb
        S += np.bincount(self.rk, weights=(on - off).ravel()[self.col], minlength=n * k).reshape(n, k)
        return softmax(S, axis=1)

    def change(self, new, old):
        return float(self.w @ np.abs(new - old).sum(axis=1)) / self.n


def vote_entries(L) -> tuple:
    """(rows, cols) of the votes (entries >= 0) of ``L``, in row-major order (by row, then
    rule), found in ``L``'s own memory order: a column-major matrix (the engine's) is read
    column by column and its entries sorted, 15x faster than ``np.nonzero`` across its
    columns at 1,000 rules."""
    L = np.asarray(L)
    n, m = L.shape
    if m and L.flags.f_contiguous and not L.flags.c_contiguous:
        rows = [np.flatnonzero(L[:, j] >= 0) for j in range(m)]
        key = np.concatenate(rows) * m + np.repeat(np.arange(m), [len(r) for r in rows])
        key.sort()
        return key // m, key % m
    return np.nonzero(L >= 0)


def _vote_design(L, k):
    """Sparse one-hot design: row i has a 1 in column j*k + v when rule j voted v."""
    n, m = L.shape
    rows, cols = vote_entries(L)
    indices = cols * k + L[rows, cols]
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=n), out=indptr[1:])
    data = np.ones(indices.shape[0], dtype=np.float64)
    return sp.csr_matrix((data, indices, indptr), shape=(n, m * k))


def _decompose(L, weights, baseline):
    """baseline + sum over voting rules of weights[j, L[i, j], :], for every row."""
    m, k, _ = weights.shape
    X = _vote_design(L, k)
    return X @ weights.reshape(m * k, k) + baseline


# --------------------------------------------------------------------------- #
# the protocol every label model follows
# --------------------------------------------------------------------------- #
@runtime_checkable
class LabelModelProtocol(Protocol):
    """What mteach needs of a label model (docs/label_model.md says who uses what).

    Votes ``L`` are (rows x rules) class ids ``0..k-1``, ``-1`` = abstain.  A label model is
    *log-linear in the votes*: with ``weights_[j, v, c]`` the log-potential rule ``j`` voting
    ``v`` adds to class ``c`` and ``baseline_[c]`` the score of a row where every rule
    abstains, ``predict_proba(L)[i] == softmax(baseline_ + sum_{j: L[i, j] != -1}
    weights_[j, L[i, j], :])`` exactly.  The ledger stores ``baseline_`` and ``weights_`` and
    ``explain`` rebuilds every row's posterior and per-rule log-odds from them alone.
    ``vote_accuracy_`` / ``vote_accuracy_interval_`` / ``n_iter_`` / ``converged_`` are
    optional (the ledger records them when present).  Parameters are scikit-learn's
    (``get_params`` JSON-able values) and the fitted state is the attributes ending in ``_``
    (numbers, strings, lists, numpy arrays): ``save_model`` stores both, ``load_model``
    rebuilds the model from them, knowing its class by its ``LABEL_MODELS`` kind.
    """

    classes_: np.ndarray          # (k,) class ids 0..k-1
    n_classes_: int
    n_rules_: int
    n_features_in_: int           # = n_rules_ (scikit-learn's name)
    baseline_: np.ndarray         # (k,)
    weights_: np.ndarray          # (m, k, k)
    accuracy_: np.ndarray         # (m,) P(a rule's vote is right when it votes alone)
    class_balance_: np.ndarray    # (k,) the class prior the posterior uses
    temperature_: float           # 1.0 until calibrate

    def fit(self, L, y=None, sample_weight=None): ...
    def predict_proba(self, L) -> np.ndarray: ...
    def predict(self, L) -> np.ndarray: ...
    def contributions(self, L, target=None) -> np.ndarray: ...
    def calibrate(self, L, y): ...
    def get_params(self, deep: bool = True) -> dict: ...


class _LogLinear:
    """predict / calibrate / contributions of a model whose scores are
    ``baseline_ + sum of weights_`` over the votes (the protocol's identity)."""

    def decision_function(self, L):
        """Unnormalised log-scores ``baseline_ + sum of weights_`` (n, k)."""
        L = _check_predict_input(self, L)
        return np.asarray(_decompose(L, self.weights_, self.baseline_))

    def predict_proba(self, L):
        """Posterior class probabilities (n, k), float64: ``softmax(decision_function(L))``."""
        return softmax(self.decision_function(L), axis=1)

    def predict(self, L):
        """Most probable class; ties go to the lowest class id (``np.argmax``)."""
        return np.argmax(self.predict_proba(L), axis=1)

    def calibrate(self, L, y):
        """Temperature-scale the fitted model on the gold labels ``y`` (-1 = unknown) of the
        rows of ``L``: ``weights_`` and ``baseline_`` are divided by the fitted ``T``, so
        ``predict_proba`` becomes ``softmax(scores / T)``, the log-odds decomposition stays
        exact and no prediction changes.  ``temperature_`` is the product of every
        temperature applied.  Fewer than 20 gold rows: nothing changes."""
        from .calibration import fit_temperature
        L = _check_predict_input(self, L)
        t = fit_temperature(self.decision_function(L), _as_gold(y, L.shape[0]))
        self.weights_ = self.weights_ / t
        self.baseline_ = self.baseline_ / t
        self.temperature_ = float(getattr(self, "temperature_", 1.0)) * t
        return self

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


# --------------------------------------------------------------------------- #
# LabelModel
# --------------------------------------------------------------------------- #
class LabelModel(_LogLinear, BaseEstimator):
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
    class_balance_shrinkage : float in [0, 1]
        Weight of the uniform distribution in the class prior the posterior uses
        (``(1 - s) * pi + s / k``, ``pi`` the EM estimate); 0.5 by default.  Ignored when
        ``class_balance`` is given.
    abstain_shrinkage : float in [0, 1]
        Weight of the rule's overall coverage in its class-conditional coverage
        ``(1 - s) * P(votes | y = c) + s * P(votes)``; 0.5 by default.  1 = abstentions carry
        no evidence (the model before abstentions were modelled, like Snorkel's).
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
        class_balance_shrinkage=0.5,
        abstain_shrinkage=0.5,
        max_iter=100,
        tol=1e-5,
        seed=0,
    ):
        self.n_classes = n_classes
        self.accuracy_prior = accuracy_prior
        self.prior_strength = prior_strength
        self.class_balance = class_balance
        self.class_balance_shrinkage = class_balance_shrinkage
        self.abstain_shrinkage = abstain_shrinkage
        self.max_iter = max_iter
        self.tol = tol
        self.seed = seed

    # ------------------------------------------------------------------ params
    def _validate_params(self, m, k):
        if not isinstance(self.max_iter, numbers.Integral) or self.max_iter < 1:
            raise ValueError(f"max_iter must be a positive integer, got {self.max_iter!r}")
        if not isinstance(self.tol, numbers.Real) or not self.tol >= 0:
            raise ValueError(f"tol must be a non-negative number, got {self.tol!r}")
        rho = self.abstain_shrinkage
        if isinstance(rho, bool) or not isinstance(rho, numbers.Real) or not 0.0 <= rho <= 1.0:
            raise ValueError(f"abstain_shrinkage must be a number in [0, 1] (1 = abstentions carry no evidence), got {rho!r}")
        cbs = self.class_balance_shrinkage
        if isinstance(cbs, bool) or not isinstance(cbs, numbers.Real) or not 0.0 <= cbs <= 1.0:
            raise ValueError(f"class_balance_shrinkage must be a number in [0, 1] (1 = uniform prior), got {cbs!r}")
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
    def fit(self, L, y=None, sample_weight=None):
        """Fit on vote matrix ``L`` (n, m); ``y`` optional gold labels with -1 = unknown.

        ``sample_weight``: how many rows each row of ``L`` stands for.  Fitting on the distinct
        vote patterns with their counts as ``sample_weight`` gives the same model as fitting
        on the rows (the fit works on counted patterns anyway), so counts accumulated over
        batches or partitions can be fitted without the rows."""
        L = _as_vote_matrix(L)
        n, m = L.shape
        weight = _as_sample_weight(sample_weight, n)
        gold = None
        if y is not None:
            gold = _as_gold(y, n)
        if weight is not None and not weight.all():  # a row of weight 0 is not in the data
            keep = weight > 0
            L, weight, gold = L[keep], weight[keep], None if gold is None else gold[keep]
            n = L.shape[0]
        if gold is not None and not np.any(gold >= 0):
            gold = None
        k = _resolve_n_classes(self.n_classes, L, gold)
        _check_labels_in_range(L, k)
        if gold is not None and gold.max() >= k:
            i = int(np.argmax(gold))
            raise ValueError(f"y[{i}] = {gold[i]} but n_classes is {k}: gold labels must be 0..{k - 1} or -1")
        if L.max() < 0:
            raise ValueError("no rule votes on any row of L (every entry is -1); nothing to learn from")
        prior, balance = self._validate_params(m, k)
        L = _compact(L, k)

        Lu, w, gu = _patterns(L, gold, self.seed, weight)
        self.n_patterns_ = int(Lu.shape[0])
        if k == 2 and not self._force_generic and not _votes_are_sparse(Lu):
            stats = _BinaryBlocks(Lu, w)
        else:
            stats = _VoteList(Lu, w, k)
        state = self._em(stats, gu, m, k, prior, balance)
        self.n_classes_ = k
        self.n_rules_ = m
        self.n_features_in_ = m
        self.classes_ = np.arange(k)
        for key, val in state.items():
            setattr(self, key, val)
        return self

    _force_generic = False  # tests flip this to check that both E/M-step engines agree

    def _em(self, stats, gold, m, k, prior, balance):
        n = stats.n
        cjv = stats.vote_counts  # (m, k): how often rule j voted v (weighted)
        seen = cjv > 0
        votes_j = cjv.sum(axis=1)
        share = cjv / np.maximum(votes_j, _EPS)[:, None]
        has_prior = ~np.isnan(prior)
        a0 = np.clip(np.where(has_prior, prior, _DEFAULT_ACCURACY), 1e-3, 1 - 1e-3)
        s_a = np.where(has_prior, float(self.prior_strength), _DEFAULT_ACCURACY_STRENGTH)
        # Beta prior on each vote's precision P(y = v | L_j = v): s_a pseudo-votes per rule,
        # spread over the classes it votes like its votes are
        fixed = np.isinf(s_a)  # prior_strength=inf: the expert's accuracy is taken as given
        ps = np.where(fixed[:, None], 0.0, s_a[:, None] * share)
        pa = ps * a0[:, None]
        gold_rows = None if gold is None else np.flatnonzero(gold >= 0)
        Q = stats.initial_posterior()
        if gold_rows is not None:
            stats.clamp(Q, gold_rows, gold[gold_rows])
        converged = False
        n_iter = 0
        eye = np.eye(k, dtype=bool)
        for it in range(self.max_iter):
            n_iter = it + 1
            # ---------------- M-step
            T, corr = stats.expected_counts(Q)  # class totals (k,), expected correct votes (m, k)
            pi = (T + _BALANCE_PSEUDO) / (n + k * _BALANCE_PSEUDO)
            if balance is None:
                cbs = float(self.class_balance_shrinkage)
                pb = (1.0 - cbs) * pi + cbs / k
            else:
                pb = balance
            acc = np.clip((corr + pa) / np.maximum(cjv + ps, _EPS), 1e-6, 1 - 1e-6)
            acc[fixed] = a0[fixed, None]
            # P(y=c | L_j=v) = acc for c = v, (1-acc) pi_c / (1-pi_v) otherwise; its ratio to pi_c
            # is the likelihood ratio of the vote, so weights = log(that / pi_c)
            on = np.log(acc) - np.log(pi)[None, :]
            off = np.log1p(-acc) - np.log1p(-pi)[None, :]
            on[~seen] = 0.0
            off[~seen] = 0.0
            log_pb = np.log(pb)
            # ---------------- E-step
            Q_new = stats.posterior(on, off, log_pb)
            if gold_rows is not None:
                stats.clamp(Q_new, gold_rows, gold[gold_rows])
            delta = stats.change(Q_new, Q)
            Q = Q_new
            if delta < self.tol:
                converged = True
                break
        T, corr = stats.expected_counts(Q)
        # share of each rule's votes the model believes right, and a 95% Beta interval on those
        # expected counts (sampling error only: it cannot show the model's own error)
        right = corr.sum(axis=1)
        vote_accuracy = np.where(votes_j > 0, right / np.maximum(votes_j, _EPS), np.nan)
        interval = np.column_stack([beta_dist.ppf(q, right + 1.0, votes_j - right + 1.0) for q in (0.025, 0.975)])
        logw = np.where(eye[None, :, :], on[:, :, None], off[:, :, None])
        # ---------------- abstentions: class-conditional coverage, one M-step on the final
        # posteriors (the vote parameters above are those of the EM without abstentions)
        cover = votes_j / n
        rho = float(self.abstain_shrinkage)
        if rho < 1.0:
            gamma = stats.class_votes(Q) / np.maximum(T, _EPS)[None, :]  # P(rule j votes | y = c)
            gamma = (1.0 - rho) * np.clip(gamma, 0.0, 1.0) + rho * cover[:, None]
        else:
            gamma = np.broadcast_to(cover[:, None], (m, k)).copy()
        # abstain[j, c] = log P(j abstains | c) - log P(j abstains): 0 for a rule that never
        # votes or always votes, and for every class when rho = 1
        abstain = np.log(np.maximum(1.0 - gamma, _EPS)) - np.log(np.maximum(1.0 - cover, _EPS))[:, None]
        abstain[(votes_j <= 0) | (cover >= 1.0)] = 0.0
        # fold "every rule abstains" into the baseline; a vote's weight is then its log-likelihood
        # ratio relative to abstaining, and a vote never cast in training counts as an abstention
        logw = logw - abstain[:, None, :]
        logw[~seen] = 0.0
        baseline = log_pb + abstain.sum(axis=0)
        # accuracy_: the posterior of the rule's vote when it votes alone (vote-weighted over v)
        lone_scores = baseline[None, None, :] + logw  # (m, v, c)
        lone_scores -= lone_scores.max(axis=2, keepdims=True)
        lone_p = np.exp(lone_scores)
        lone = np.diagonal(lone_p, axis1=1, axis2=2) / lone_p.sum(axis=2)
        accuracy = np.where(votes_j > 0, (share * lone).sum(axis=1), a0)
        return {
            "weights_": np.ascontiguousarray(logw),
            "baseline_": np.ascontiguousarray(baseline, dtype=np.float64),
            "class_balance_": np.asarray(pb, dtype=np.float64).copy(),
            "class_coverage_": np.ascontiguousarray(gamma, dtype=np.float64),
            "posterior_class_balance_": T / n,
            "accuracy_": accuracy,
            "vote_accuracy_": vote_accuracy,
            "vote_accuracy_interval_": np.where(votes_j[:, None] > 0, interval, np.nan),
            "coverage_": votes_j / n,
            "temperature_": 1.0,
            "n_iter_": n_iter,
            "converged_": converged,
        }


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
    rows, cols = vote_entries(L)
    out = np.zeros((n, m), dtype=np.float64)
    out[rows, cols] = vote_contributions(weights, cols, L[rows, cols], t[rows])
    return out


def vote_contributions(weights, rules, votes, target) -> np.ndarray:
    """The contribution toward class ``target`` of rule ``rules`` voting ``votes`` (equal-length
    arrays, one entry a vote): ``weights[j, v, t] - mean_{c != t} weights[j, v, c]``. What
    ``contributions`` gives at the votes, without its (rows × rules) matrix."""
    k = weights.shape[2]
    chosen = weights[rules, votes, target]
    return chosen - (weights[rules, votes].sum(axis=1) - chosen) / (k - 1)


# --------------------------------------------------------------------------- #
# MajorityVote
# --------------------------------------------------------------------------- #
class MajorityVote(_LogLinear, BaseEstimator):
    """Unweighted majority vote: the baseline, and the second label model
    (``[label_model] kind = "majority_vote"``).

    Every vote adds the same log-score to its class: ``weights_[j, v] = eye(k)[v]`` and
    ``baseline_ = 0``, so ``predict_proba`` is ``softmax`` of the vote counts (uniform for
    rows where every rule abstained; a lone vote gives ``e / (e + k - 1)``, 0.73 for two
    classes) and the protocol's log-linear identity holds, so ``explain`` and the ledger
    work as with :class:`LabelModel`.  :meth:`calibrate` fits the one thing there is to fit,
    the log-odds a vote is worth (a temperature on gold).  ``accuracy_`` is the posterior of
    a lone vote; ``vote_accuracy_`` the expected share of each rule's votes that agree with
    the majority on the fitted rows.  ``y`` is not used by ``fit`` (majority vote learns
    nothing from gold; calibrate on it instead).

    ``predict`` breaks ties toward the lowest class id when ``tie_break="lowest"`` (default)
    or uniformly at random among tied classes with ``tie_break="random"`` (seeded by
    ``seed``; what WRENCH and Snorkel do).
    """

    def __init__(self, n_classes=None, tie_break="lowest", seed=0):
        self.n_classes = n_classes
        self.tie_break = tie_break
        self.seed = seed

    def fit(self, L, y=None, sample_weight=None):
        L = _as_vote_matrix(L)
        n, m = L.shape
        weight = _as_sample_weight(sample_weight, n)
        gold = None if y is None else _as_gold(y, n)
        k = _resolve_n_classes(self.n_classes, L, gold)
        _check_labels_in_range(L, k)
        if self.tie_break not in ("lowest", "random"):
            raise ValueError(f"tie_break must be 'lowest' or 'random', got {self.tie_break!r}")
        self.n_classes_ = k
        self.n_rules_ = m
        self.n_features_in_ = m
        self.classes_ = np.arange(k)
        self.weights_ = np.broadcast_to(np.eye(k), (m, k, k)).copy()
        self.baseline_ = np.zeros(k)
        self.class_balance_ = np.full(k, 1.0 / k)
        self.temperature_ = 1.0
        lone = softmax(np.eye(k), axis=1)[0, 0]
        self.accuracy_ = np.full(m, lone)
        # [j, v, c]: weighted sum of P(class c) over the rows where rule j voted v
        X = _vote_design(L, k)
        proba = self.predict_proba(L)
        per_vote = np.asarray(X.T @ (proba if weight is None else proba * weight[:, None])).reshape(m, k, k)
        votes_j = per_vote.sum(axis=(1, 2))
        right = np.trace(per_vote, axis1=1, axis2=2)
        self.vote_accuracy_ = np.where(votes_j > 0, right / np.maximum(votes_j, _EPS), np.nan)
        return self

    def vote_counts(self, L):
        """Votes per class (n, k)."""
        L = _check_predict_input(self, L)
        return np.asarray(_decompose(L, np.broadcast_to(np.eye(self.n_classes_), self.weights_.shape),
                                     np.zeros(self.n_classes_)))

    def predict(self, L, rng=None):
        """The class with the most votes; ``rng``: the generator of random tie-breaks (default:
        a fresh one seeded by ``seed``; pass one on from batch to batch to break ties as over
        all rows at once)."""
        counts = self.vote_counts(L)
        if self.tie_break == "lowest":
            return np.argmax(counts, axis=1)
        rng = np.random.default_rng(self.seed) if rng is None else rng
        top = counts == counts.max(axis=1, keepdims=True)
        noise = rng.random(counts.shape)
        return np.argmax(np.where(top, noise, -1.0), axis=1)


# The label models ``[label_model] kind`` can name; a new one implements LabelModelProtocol.
LABEL_MODELS = {"mteach": LabelModel, "majority_vote": MajorityVote}


def label_model_kind(model) -> str:
    """The ``LABEL_MODELS`` name of a fitted label model (what ``save_model`` records)."""
    for kind, cls in LABEL_MODELS.items():
        if type(model) is cls:
            return kind
    raise ValueError(f"{type(model).__name__} is not one of the label models {', '.join(LABEL_MODELS)}")


def fit_for_spec(spec, votes, gold=None, kind="mteach", **params):
    """A label model of ``kind`` (``LABEL_MODELS``) fitted on the votes of ``spec``'s rules;
    :class:`LabelModel` takes the rules' ``confidence`` values as accuracy priors.  Keyword
    ``params`` the kind has no use for are left out (``prior_strength`` means nothing to
    majority vote).  With ``gold`` (-1 = unknown) the model is also calibrated on the gold
    rows (``calibrate``, a temperature).  Raises ``DataError`` saying why when the votes
    cannot be fitted (e.g. no rule votes anywhere).  ``fit_counted`` does the same from
    counts accumulated batch by batch."""
    model = _spec_label_model(spec, kind, params)
    return _fitted(spec, model, votes, gold, None, None if gold is None else (votes, gold))

class VoteCounts:
    """Distinct vote rows and how often each occurs, accumulated batch by batch, so the label
    model fits on data of any length with memory bounded by the distinct patterns.

    ``add(votes, gold)`` per batch (in data order); rows with a gold label are also kept aside
    as they are (they are few; ``calibrate`` needs them row by row).  ``patterns()`` gives the
    distinct rows of (votes, gold) in order of first appearance with their counts: what
    ``LabelModel.fit`` computes from the whole matrix, so fitting on them (``fit_counted``)
    gives the same model as fitting on every row."""

    def __init__(self, n_rules: int):
        self.n_rules = n_rules
        self.rows = 0
        self._keys = np.zeros((0, n_rules + 1), dtype=np.int8)  # vote row + gold (-1 unknown)
        self._hashes = np.zeros(0, dtype=np.uint64)              # each key's _row_hash
        self._first = np.zeros(0, dtype=np.int64)                # row of first appearance
        self._counts = np.zeros(0, dtype=np.int64)
        self._gold_votes, self._gold = [], []
        self.has_gold = False

    def add(self, votes: np.ndarray, gold: Optional[np.ndarray] = None) -> None:
        votes = np.asarray(votes)
        n = votes.shape[0]
        g = np.full(n, -1, dtype=np.int8) if gold is None else np.asarray(gold).astype(np.int8)
        self.has_gold = self.has_gold or gold is not None
        if n == 0:
            return
        if gold is not None and (g >= 0).any():
            known = g >= 0
            self._gold_votes.append(np.asarray(votes[known], dtype=np.int8))
            self._gold.append(g[known].astype(np.int64))
        # The batch's distinct rows, by a hash read column by column (the engine's matrices are
        # column-major: a row-major copy of 1,000 rules' votes took 0.5 s a batch), each row
        # checked against its hash's first row; only those rows become keys.
        h = _row_hash(votes, g, 0)
        _, first, inverse, counts = np.unique(h, return_index=True, return_inverse=True, return_counts=True)
        inverse = inverse.ravel()
        same = first[inverse]
        if not (np.array_equal(g, g[same]) and all(np.array_equal(votes[:, j], votes[same, j])
                                                   for j in range(votes.shape[1]))):
            first, counts = np.arange(n), np.ones(n, dtype=np.int64)  # a collision: every row a key
        keys = np.empty((len(first), self.n_rules + 1), dtype=np.int8)
        keys[:, :-1] = votes[first]
        keys[:, -1] = g[first]
        self._merge(keys, h[first], first + self.rows, counts)
        self.rows += n

    def _merge(self, keys, hashes, first, counts) -> None:
        """Count ``keys`` (rows that come after those counted so far; ``hashes`` their
        ``_row_hash``). A key whose hash is a stored key's, and whose row is that key's, adds
        its count there; the others are appended: a lookup per key, not a sort of all the
        keys so far (with 1,000 rules most rows are distinct). Where a hash repeats (a
        collision, or the collision fallback's repeated rows) the keys are compared whole."""
        order = np.argsort(self._hashes, kind="stable")
        stored = self._hashes[order]
        at = np.minimum(np.searchsorted(stored, hashes), max(len(stored) - 1, 0))
        hit = stored[at] == hashes if len(stored) else np.zeros(len(hashes), dtype=bool)
        match = order[at[hit]]
        if (len(np.unique(hashes)) == len(hashes) and len(np.unique(stored)) == len(stored)
                and np.array_equal(self._keys[match], keys[hit])):
            self._counts[match] += counts[hit]
            self._first[match] = np.minimum(self._first[match], first[hit])
            new = ~hit
            self._keys = np.concatenate([self._keys, keys[new]])
            self._hashes = np.concatenate([self._hashes, hashes[new]])
            self._first = np.concatenate([self._first, first[new]])
            self._counts = np.concatenate([self._counts, counts[new]])
            return
        both = np.concatenate([self._keys, keys])
        uniq, index, inverse = _distinct_rows(both, inverse=True)
        firsts = np.full(uniq.shape[0], np.iinfo(np.int64).max, dtype=np.int64)
        np.minimum.at(firsts, inverse, np.concatenate([self._first, first]))
        self._keys, self._first = uniq, firsts
        self._hashes = np.concatenate([self._hashes, hashes])[index]
        self._counts = np.bincount(inverse, weights=np.concatenate([self._counts, counts]),
                                   minlength=uniq.shape[0]).astype(np.int64)

    def absorb(self, other: "VoteCounts") -> None:
        """Add the counts of the rows that follow these (another partition's, counted alone):
        the same counts as adding its batches here, in order."""
        self._merge(other._keys, other._hashes, other._first + self.rows, other._counts)
        self._gold_votes += other._gold_votes
        self._gold += other._gold
        self.has_gold = self.has_gold or other.has_gold
        self.rows += other.rows

    def patterns(self) -> tuple:
        """(votes (p × m int8), gold (p,) with -1 unknown, counts (p,) float64), p distinct rows
        in order of first appearance."""
        order = np.argsort(self._first, kind="stable")
        keys = self._keys[order]
        return (np.ascontiguousarray(keys[:, :-1], dtype=np.int8), keys[:, -1].astype(np.int64),
                self._counts[order].astype(np.float64))

    def gold_rows(self) -> tuple:
        """(votes, gold) of the rows with a gold label, in data order."""
        if not self._gold:
            return np.zeros((0, self.n_rules), dtype=np.int8), np.zeros(0, dtype=np.int64)
        return np.concatenate(self._gold_votes), np.concatenate(self._gold)


def _distinct_rows(keys: np.ndarray, inverse: bool = False) -> tuple:
    """The distinct rows of an int matrix (sorted), the index of each one's first occurrence,
    and its count (or, with ``inverse``, each row's distinct-row index)."""
    keys = np.ascontiguousarray(keys)
    rows = keys.view(np.dtype((np.void, keys.dtype.itemsize * keys.shape[1]))).ravel()
    _, first, inv, counts = np.unique(rows, return_index=True, return_inverse=True, return_counts=True)
    uniq = keys[first]
    return (uniq, first, inv.ravel()) if inverse else (uniq, first, counts)


def _spec_label_model(spec, kind, params):
    from ..errors import DataError
    if kind not in LABEL_MODELS:
        raise DataError(f"unknown label model kind {kind!r}; use one of {', '.join(LABEL_MODELS)}")
    cls = LABEL_MODELS[kind]
    known = cls().get_params()
    params = {name: value for name, value in params.items() if name in known}
    if "accuracy_prior" in known:
        params["accuracy_prior"] = np.array([np.nan if r.rule.confidence is None else float(r.rule.confidence)
                                             for r in spec.rules])
    return cls(n_classes=len(spec.labels), **params)


def _fitted(spec, model, votes, gold, sample_weight, calibrate_on):
    from ..errors import DataError
    if votes.size == 0 or (np.asarray(votes) == -1).all():
        raise DataError("no rule votes on any row of the data; there is nothing to learn from "
                        "(`mteach stats` shows each rule's coverage)")
    try:
        model.fit(votes, gold, sample_weight=sample_weight)
    except ValueError as err:
        raise DataError(f"the label model cannot be fitted: {err}") from None
    return model if calibrate_on is None else model.calibrate(*calibrate_on)


def fit_counted(spec, counts: VoteCounts, kind="mteach", **params):
    """``fit_for_spec`` on counts accumulated over batches (``VoteCounts``): the same model as
    fitting on all the rows at once, without holding them."""
    votes, gold, weight = counts.patterns()
    model = _spec_label_model(spec, kind, params)
    gold_votes, gold_labels = counts.gold_rows()
    return _fitted(spec, model, votes, gold if counts.has_gold else None, weight,
                   (gold_votes, gold_labels) if len(gold_labels) else None)
