"""Direction hints: compile errors, the penalty, and proof of the effect.

The data teach the OPPOSITE of each hint ("refund" mostly in class-0 rows, many
"!" in class-0 rows); the hint must still win on held-out rows, while the same
seed without the hint, or with a random direction of the same size, does not.
"""
import numpy as np
import pyarrow as pa
import pytest
import torch

from mteach.engine.end_model import EndModel
from mteach.engine.features import Featurizer
from mteach.engine.hints import (HintConstraint, HintError, class_margin, compile_hints,
                                 hint_effect, hint_penalty, random_control)
from mteach.grammar.ast import Hint, Measure, Ref
from mteach.spans import Span

POS = ["great", "love", "thanks", "perfect", "happy", "works", "fast", "nice"]
NEG = ["broken", "late", "angry", "awful", "slow", "bad", "never", "worst"]
FILL = ["the", "item", "order", "it", "was", "my", "we", "this", "and", "so"]
LABELS = ["NEG", "POS"]


def make(n, seed):
    r = np.random.default_rng(seed)
    texts, y = [], r.integers(0, 2, n)
    for c in y:
        words = list(r.choice(FILL, 4)) + list(r.choice(POS if c else NEG, 3))
        if r.random() < (0.8 if c == 0 else 0.05):
            words.append("refund")
        words += ["!"] * int(r.integers(2, 5) if c == 0 else r.integers(0, 2))
        r.shuffle(words)
        texts.append(" ".join(words))
    return pa.table({"text": texts}), y


def excl(t):
    return np.array([s.count("!") for s in t.column("text").to_pylist()], dtype=float)


def measure_name(m):
    return f"{m.func}({m.source.name})"


@pytest.fixture(scope="module")
def data():
    train, y = make(300, 0)
    test, y_test = make(150, 1)
    f = Featurizer(["text"], numeric={"excl(text)": excl}).fit(train)
    soft = np.eye(2)[y] * 0.8 + 0.1
    return f, f.transform(train), soft, test, f.transform(test), y_test


TOKEN = Hint(kind="token", label="POS", token="refund", text='hint more "refund" => POS')
MEASURE = Hint(kind="measure", label="POS", measure=Measure("excl", Ref("text")),
               text="hint more excl(text) => POS")
PAIR = Hint(kind="pair", label="POS", text_a="great item", text_b="great item refund",
            text='hint "great item" -> "great item refund" => POS')


@pytest.mark.parametrize("hint", [TOKEN, MEASURE, PAIR], ids=["token", "measure", "pair"])
def test_hint_overrides_what_the_data_teach(data, hint):
    f, X, soft, test, X_test, y_test = data
    (h,) = compile_hints([hint], f, LABELS, measure_name)
    kw = dict(seed=0, epochs=15, device="cpu")
    with_h = EndModel(**kw).fit(X, soft, hints=[h])
    without = EndModel(**kw).fit(X, soft)
    control = EndModel(**kw).fit(X, soft, hints=[random_control(h, seed=0)])
    e_with = hint_effect(with_h, f, test, h)
    e_without = hint_effect(without, f, test, h)
    e_control = hint_effect(control, f, test, h)
    assert e_with.share >= 0.9 and e_with.mean_delta > 0
    assert e_without.share < 0.5 and e_without.mean_delta < 0
    assert e_control.share < 0.5 and e_control.mean_delta < 0
    # accuracy kept
    assert (with_h.predict(X_test) == y_test).mean() >= 0.95
    # the per-epoch history records this hint's penalty, and it went down
    pens = [ep["hints"][h.name] for ep in with_h.history_]
    assert pens[-1] < pens[0]
    if hint.kind == "pair":
        assert e_with.pair_gap > 0 > e_without.pair_gap


def test_less_flips_the_direction(data):
    f = data[0]
    more = compile_hints([TOKEN], f, LABELS)[0]
    less = compile_hints([Hint(kind="token", label="POS", token="refund", sign=-1)], f, LABELS)[0]
    assert less.sign == -1 and more.sign == 1
    np.testing.assert_allclose(less.unit_direction, -more.unit_direction)
    m = compile_hints([MEASURE], f, LABELS, measure_name)[0]
    assert m.measure == "excl(text)" and m.direction[f.numeric_index("excl(text)")] == 1.0


def test_unknown_label_is_a_clear_error(data):
    f = data[0]
    bad = Hint(kind="token", label="POSITIVE", token="refund",
               span=Span("spec.mt", 7, 1, 7, 30))
    with pytest.raises(HintError, match=r"spec.mt:7:1.*unknown label 'POSITIVE'.*did you mean 'POS'"):
        compile_hints([bad], f, LABELS)


def test_token_never_seen_is_a_clear_error(data):
    f = data[0]
    with pytest.raises(HintError, match="'chargeback' never occurs in the data"):
        compile_hints([Hint(kind="token", label="POS", token="chargeback")], f, LABELS)


def test_unknown_measure_is_a_clear_error(data):
    f = data[0]
    h = Hint(kind="measure", label="POS", measure=Measure("words", Ref("text")))
    with pytest.raises(HintError, match=r"'words\(text\)' is not a numeric feature"):
        compile_hints([h], f, LABELS, measure_name)


def test_pair_with_identical_texts_is_rejected(data):
    f = data[0]
    with pytest.raises(HintError, match="direction is zero"):
        compile_hints([Hint(kind="pair", label="POS", text_a="great", text_b="great")], f, LABELS)


def test_penalty_is_smooth_hinge_on_the_directional_derivative():
    # A linear model with known weights: f_1 - f_0 slope along d is exact.
    lin = torch.nn.Linear(3, 2, bias=False)
    with torch.no_grad():
        lin.weight[:] = torch.tensor([[0.0, 0.0, 0.0], [2.0, -1.0, 0.0]])
    x = torch.randn(5, 3)
    h = HintConstraint(name="h", label_index=1, direction=np.array([1.0, 0.0, 0.0]))
    a, m = 5.0, 1.0
    pen = hint_penalty(lin, x, h, margin=m, sharpness=a)
    slope = 2.0  # <grad f_1, e_0> = w_1 - w_0 on feature 0
    expected = torch.nn.functional.softplus(torch.tensor(a * (m - slope))) / a
    assert torch.allclose(pen, expected, atol=1e-6)
    # Violated direction (feature 1 lowers class 1): penalty keeps a gradient
    h2 = HintConstraint(name="h2", label_index=1, direction=np.array([0.0, 3.0, 0.0]))
    pen2 = hint_penalty(lin, x, h2, margin=m, sharpness=a)
    (g,) = torch.autograd.grad(pen2, lin.weight)
    assert pen2.item() > 1.9 and g[1, 1] < 0  # gradient descent raises w_1[1]


def test_class_margin_three_classes():
    z = torch.tensor([[1.0, 2.0, 3.0]])
    assert torch.allclose(class_margin(z, 0), z[:, 0] - torch.logsumexp(z[:, 1:], 1))
