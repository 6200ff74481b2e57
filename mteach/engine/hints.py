"""Direction hints → loss constraints on the end model, and a measure of their effect.

A hint (LANGUAGE.md, "Direction hints") says which way the decision must move:
along a direction d in feature space, the score of class L must rise. Each hint
compiles to one :class:`HintConstraint`; :func:`hint_penalty` is the one place the
loss term is defined; :func:`hint_effect` measures, on held-out rows, whether the
trained model obeys it.

The penalty for a hint on a batch x_1..x_B (f_L = logit of L minus logsumexp of the
other logits, d̂ = sign·d/|d|, margin m, sharpness a)::

    mean_i softplus(a·(m − <∇ₓ f_L(x_i), d̂>)) / a
    + for a pair (A → B):  softplus(a·(m − (f_L(x_B) − f_L(x_A)))) / a

It is smooth and keeps pushing while violated (unlike a saturating tanh); sharp (a = 50)
and with a small default margin (0.1), it all but stops once the hint holds, so it
says which way and leaves how much to the data: pushing further traded fit for it and
cost accuracy on real data (bench/hints_effect.py). A text direction lives on the word
n-grams only (see :func:`_words_only`). The slope is a forward-mode directional
derivative, so it works for any network whose first layer is linear, not only the
linear model (where it reduces to the sign of a coefficient combination).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import numpy as np
import pyarrow as pa

from ..grammar.visitor import NodeVisitor

KINDS = ("token", "measure", "pair")
# Sharp enough that the penalty all but stops once a hint holds by its margin: a softer
# one (5) kept pushing every hinted direction past it and traded fit for it (bench/hints_effect.py).
DEFAULT_SHARPNESS = 50.0
DEFAULT_MARGIN = 0.1


class HintError(ValueError):
    """A hint that cannot be compiled (unknown label, token never seen, ...)."""


@dataclass(eq=False)
class HintConstraint:
    """One compiled hint.

    ``direction`` is the raw direction d (dense, length = number of features):
    the phrase's feature vector, the unit vector of a numeric feature, or
    features(B) − features(A). The effective direction is ``sign · d / |d|``
    (:attr:`unit_direction`). ``margin=None`` takes the end model's
    ``hint_margin``; the loss weight is ``weight × hint_strength``.
    """
    name: str
    label_index: int
    direction: np.ndarray
    kind: str = "token"
    sign: int = 1
    margin: Optional[float] = None
    weight: float = 1.0
    label: str = ""
    x_a: Optional[np.ndarray] = None
    x_b: Optional[np.ndarray] = None
    token: Optional[str] = None          # kind "token": the phrase
    field: Optional[str] = None          # kind "token"/"pair": the text field
    measure: Optional[str] = None        # kind "measure": numeric feature name
    span: object = None                  # the spec's Span, for reports

    def __post_init__(self):
        if self.kind not in KINDS:
            raise HintError(f"hint {self.name!r}: kind must be one of {KINDS}, not {self.kind!r}")
        if self.sign not in (1, -1):
            raise HintError(f"hint {self.name!r}: sign must be +1 or -1, not {self.sign!r}")
        d = np.asarray(self.direction, dtype=np.float64).reshape(-1)
        if not np.all(np.isfinite(d)) or np.linalg.norm(d) == 0:
            raise HintError(f"hint {self.name!r}: its direction is zero, so it cannot constrain "
                            "the model (e.g. both texts of a pair have the same features)")
        self.direction = d
        if self.kind == "pair":
            if self.x_a is None or self.x_b is None:
                raise HintError(f"hint {self.name!r}: a pair hint needs x_a and x_b")
            self.x_a = np.asarray(self.x_a, dtype=np.float64).reshape(-1)
            self.x_b = np.asarray(self.x_b, dtype=np.float64).reshape(-1)

    @property
    def unit_direction(self) -> np.ndarray:
        return self.sign * self.direction / np.linalg.norm(self.direction)

    def __repr__(self) -> str:
        return (f"HintConstraint({self.name!r}, kind={self.kind!r}, label={self.label or self.label_index!r}, "
                f"sign={self.sign:+d}, margin={self.margin}, weight={self.weight})")


# ---- compile ------------------------------------------------------------------------------
def _hint_name(h) -> str:
    if getattr(h, "text", ""):
        return h.text
    word = "more" if h.sign > 0 else "less"
    if h.kind == "token":
        return f'hint {word} "{h.token}" => {h.label}'
    if h.kind == "measure":
        return f"hint {word} {getattr(h.measure, 'func', '?')}(...) => {h.label}"
    return f'hint "{h.text_a}" -> "{h.text_b}" => {h.label}'


def _where(h) -> str:
    span = getattr(h, "span", None)
    return f"{span}: " if span is not None else ""


def compile_hints(
    hints: Sequence,
    featurizer,
    label_names: Sequence[str],
    measure_name_fn: Optional[Callable[[object], str]] = None,
    margin: Optional[float] = None,
    weight: float = 1.0,
    text_field: Optional[str] = None,
) -> list:
    """Compile ``mteach.grammar.ast.Hint`` nodes into :class:`HintConstraint` objects.

    - token: d = ``featurizer.phrase_vector(text_field, token)``
    - measure: d = ``featurizer.numeric_direction(measure_name_fn(hint.measure))``
    - pair: d = features(B) − features(A), the texts going in ``text_field``
    - "less" (sign −1) flips the direction.

    ``text_field`` defaults to the featurizer's first text field. Raises
    :class:`HintError` (a ``ValueError``) naming the hint and its spec position for a
    label not in ``label_names``, a token that never occurs in the data, or a measure
    the featurizer has no feature for.
    """
    field_ = text_field or (list(featurizer.text_fields)[0] if featurizer.text_fields else None)
    compiler = _HintCompiler(featurizer, list(label_names), measure_name_fn, margin, weight, field_)
    return [compiler.visit(h) for h in hints]


class _HintCompiler(NodeVisitor):
    """A hint statement -> its :class:`HintConstraint`."""
    # Only hint statements shape the end model; every other node belongs to a rule,
    # a define, an example or the spec's header, and never reaches compile_hints.
    not_applicable = frozenset({
        "Concept", "Labels", "Field", "Define", "Rule", "Example", "Use", "SpecFile",
        "Regex", "Phrases", "Lexicon", "Ref", "Window", "Measure", "Number", "String",
        "Match", "Has", "Near", "Compare", "Between", "In", "Missing", "Truth", "And", "Or", "Not"})

    def __init__(self, featurizer, labels, measure_name_fn, margin, weight, field_):
        self.featurizer, self.labels, self.measure_name_fn = featurizer, labels, measure_name_fn
        self.margin, self.weight, self.field = margin, weight, field_

    def visit_Hint(self, h) -> HintConstraint:
        featurizer, labels, measure_name_fn, field_ = self.featurizer, self.labels, self.measure_name_fn, self.field
        name = _hint_name(h)
        where = _where(h)
        if h.label not in labels:
            import difflib
            close = difflib.get_close_matches(h.label, labels, n=1, cutoff=0.5)
            extra = f"; did you mean {close[0]!r}?" if close else ""
            raise HintError(f"{where}{name}: unknown label {h.label!r} "
                            f"(labels: {', '.join(labels)}){extra}")
        li = labels.index(h.label)
        sign = -1 if h.sign < 0 else 1
        common = dict(name=name, label_index=li, label=h.label, kind=h.kind, sign=sign,
                      margin=self.margin, weight=self.weight, span=getattr(h, "span", None))
        if h.kind in ("token", "pair") and field_ is None:
            raise HintError(f"{where}{name}: the featurizer has no text field for this hint")
        try:
            if h.kind == "token":
                d = _words_only(featurizer, field_, featurizer.phrase_vector(field_, h.token))
                return HintConstraint(direction=d, token=h.token, field=field_, **common)
            if h.kind == "measure":
                if measure_name_fn is None:
                    raise HintError(f"{where}{name}: measure hints need measure_name_fn")
                mname = measure_name_fn(h.measure)
                d = featurizer.numeric_direction(mname)
                return HintConstraint(direction=d, measure=mname, **common)
            if h.kind == "pair":
                # both texts in word space too: the gap f_L(B) - f_L(A) on the full rows
                # moved their shared character n-grams and cost 1 point on SMS
                xa = _words_only(featurizer, field_, _text_row(featurizer, field_, h.text_a))
                xb = _words_only(featurizer, field_, _text_row(featurizer, field_, h.text_b))
                common["sign"] = 1
                return HintConstraint(direction=xb - xa, x_a=xa, x_b=xb, field=field_, **common)
            raise HintError(f"{where}{name}: unknown hint kind {h.kind!r}")
        except HintError:
            raise
        except ValueError as e:
            raise HintError(f"{where}{name}: {e}") from e


def _words_only(featurizer, field: str, d: np.ndarray) -> np.ndarray:
    """``d`` on the word n-grams of ``field`` only.

    A phrase's character n-grams are shared with unrelated words (" ur" of "urgent" is
    also SMS-speak for "your"), so a hint pushing along them moves those words too:
    on the SMS bench `more "urgent" => SPAM` alone cost 1.2 points of accuracy.
    """
    keep = np.zeros_like(d, dtype=bool)
    bounds = list(featurizer.block_offsets_) + [featurizer.numeric_offset_]
    for b, (f, kind) in enumerate(featurizer._block_specs()):
        if f == field and kind == "w":
            keep[bounds[b]:bounds[b + 1]] = True
    return np.where(keep, d, 0.0)


def _text_row(featurizer, field: str, text: str) -> np.ndarray:
    """Feature row of a text in ``field`` alone (other features zero, i.e. the mean for
    standardized numeric features). Unknown words simply contribute nothing."""
    try:
        return featurizer.phrase_vector(field, text)
    except ValueError:
        return np.zeros(featurizer.n_features_, dtype=np.float64)


# ---- the penalty (the one place it is defined) --------------------------------------------
def class_margin(logits, label_index: int):
    """f_L: class L's logit minus logsumexp of the other classes' logits (per row)."""
    import torch
    k = logits.shape[1]
    others = [j for j in range(k) if j != label_index]
    return logits[:, label_index] - torch.logsumexp(logits[:, others], dim=1)


def first_layer(net):
    """(first linear layer, the rest of the network) of a model built as Linear → ..."""
    import torch.nn as nn
    if isinstance(net, nn.Linear):
        return net, nn.Identity()
    if isinstance(net, nn.Sequential) and isinstance(net[0], nn.Linear):
        return net[0], net[1:]
    raise TypeError("hints need a network whose first layer is linear")


def hint_penalty(net, xb, constraint: HintConstraint, margin: float,
                 sharpness: float = DEFAULT_SHARPNESS, d_unit=None, pair_rows=None, z=None):
    """Penalty of one hint on a dense batch ``xb`` (torch tensor, rows × features).

    The slope <∇ₓ f_L(x), d̂> is a directional derivative. The first layer is linear,
    so its output moves by W·d̂ for every row; that tangent is carried through the
    rest of the network in forward mode (exact, and far cheaper than an input
    gradient over thousands of features). ``z`` = first layer's output on ``xb`` when
    the caller has it already. ``d_unit`` (tensor, sign applied) and ``pair_rows``
    (tensor 2 × features: x_A, x_B) may be passed pre-built on the right device.
    Returns a scalar tensor that is differentiable in the model's parameters.
    """
    import torch
    import torch.nn.functional as F

    m = constraint.margin if constraint.margin is not None else margin
    if d_unit is None:
        d_unit = torch.as_tensor(constraint.unit_direction, dtype=xb.dtype, device=xb.device)
    first, rest = first_layer(net)
    if z is None:
        z = first(xb)
    tangent = (first.weight @ d_unit).expand_as(z)
    _, slope = torch.func.jvp(lambda h: class_margin(rest(h), constraint.label_index), (z,), (tangent,))
    def shortfall(v):
        return F.softplus(sharpness * (m - v)) / sharpness
    pen = shortfall(slope).mean()
    if constraint.kind == "pair":
        if pair_rows is None:
            pair_rows = torch.as_tensor(np.stack([constraint.x_a, constraint.x_b]),
                                        dtype=xb.dtype, device=xb.device)
        fp = class_margin(net(pair_rows), constraint.label_index)
        pen = pen + shortfall(fp[1] - fp[0])
    return pen


# ---- measuring the effect -------------------------------------------------------------------
@dataclass
class HintEffect:
    """How a trained model obeys a hint on held-out rows.

    share: fraction of rows whose class-L probability moves the hinted way
    (rises for "more", falls for "less") when moving along d.
    mean_delta: mean signed change of that probability (positive = obeys).
    pair_gap: for a pair, p_L(B) − p_L(A) on the pair itself.
    """
    name: str
    share: float
    mean_delta: float
    n: int
    pair_gap: Optional[float] = None
    deltas: np.ndarray = field(default=None, repr=False)


def hint_effect(model, featurizer, table: pa.Table, hint: HintConstraint,
                step: float = 1.0) -> HintEffect:
    """Share of rows of ``table`` whose class-L probability moves the hinted way.

    - token: the row's text with the token appended (numeric features recomputed);
    - measure: the numeric feature nudged by ``step`` standard deviations (up for
      "more", down for "less");
    - pair: the row moved by d = features(B) − features(A).
    """
    import scipy.sparse as sp

    X = featurizer.transform(table)
    p0 = model.predict_proba(X)[:, hint.label_index]
    pair_gap = None
    if hint.kind == "token":
        fld = hint.field or list(featurizer.text_fields)[0]
        col = table.column(fld).to_pylist()
        moved = [((v or "") + " " + hint.token).strip() for v in col]
        idx = table.column_names.index(fld)
        t2 = table.set_column(idx, fld, pa.array(moved, type=pa.string()))
        X1 = featurizer.transform(t2)
        direction_sign = hint.sign
    elif hint.kind == "measure":
        j = featurizer.numeric_index(hint.measure)
        X1 = X.tolil(copy=True)
        X1[:, j] = X[:, j].toarray() + hint.sign * step
        X1 = X1.tocsr()
        direction_sign = 1
    else:
        # each row moved by d, kept sparse (a dense copy is rows x every hashed bucket)
        d = sp.csr_matrix(step * hint.direction[None, :].astype(np.float32))
        X1 = (X + sp.csr_matrix(np.ones((X.shape[0], 1), np.float32)) @ d).tocsr()
        X1.sort_indices()  # in column order, as the dense road gave them: the same sums to the bit
        pa_ = model.predict_proba(sp.csr_matrix(np.stack([hint.x_a, hint.x_b]).astype(np.float32)))
        pair_gap = float(pa_[1, hint.label_index] - pa_[0, hint.label_index])
        direction_sign = 1
    p1 = model.predict_proba(X1)[:, hint.label_index]
    delta = direction_sign * (p1 - p0)
    return HintEffect(name=hint.name, share=float(np.mean(delta > 0)) if len(delta) else float("nan"),
                      mean_delta=float(np.mean(delta)) if len(delta) else float("nan"),
                      n=int(len(delta)), pair_gap=pair_gap, deltas=delta)


def random_control(hint: HintConstraint, seed: int = 0) -> HintConstraint:
    """A control hint: same kind, label, norm and support size, random direction.

    For a token hint the random direction lives on as many randomly chosen features
    as the phrase has; it is what the bench and tests train with to show that the
    effect comes from what the hint says, not from adding a penalty at all.
    """
    rng = np.random.default_rng(seed)
    d = np.zeros_like(hint.direction)
    support = max(1, int(np.count_nonzero(hint.direction)))
    idx = rng.choice(d.shape[0], size=min(support, d.shape[0]), replace=False)
    d[idx] = rng.normal(size=idx.shape[0])
    d *= np.linalg.norm(hint.direction) / np.linalg.norm(d)
    return HintConstraint(name=f"random control for {hint.name}", label_index=hint.label_index,
                          direction=d, kind="measure" if hint.kind == "measure" else "token",
                          sign=1, margin=hint.margin, weight=hint.weight, label=hint.label,
                          token=hint.token, field=hint.field, measure=hint.measure)
