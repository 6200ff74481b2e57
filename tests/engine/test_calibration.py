"""Calibration: ECE, temperature scaling, and the label model's calibrated decomposition."""
import numpy as np
import pytest
from scipy.special import softmax

from mteach.engine.calibration import ece, fit_temperature
from mteach.engine.label_model import LabelModel

from .test_label_model import synth


def test_ece_of_known_bins():
    # 4 rows at confidence .9 with 2 right (gap .4), 6 rows at confidence .6 all right (gap .4)
    proba = np.array([[0.9, 0.1]] * 4 + [[0.4, 0.6]] * 6)
    gold = np.array([0, 0, 1, 1] + [1] * 6)
    assert ece(proba, gold) == pytest.approx(0.4)
    # perfectly calibrated: confidence equals accuracy in each bin
    assert ece(np.array([[0.75, 0.25]] * 4), np.array([0, 0, 0, 1])) == pytest.approx(0.0)
    # rows without gold are ignored; none with gold -> nan
    assert ece(proba, np.where(np.arange(10) < 4, gold, -1)) == pytest.approx(0.4)
    assert np.isnan(ece(proba, np.full(10, -1)))


def test_temperature_recovers_a_known_scale():
    rng = np.random.default_rng(0)
    logits = rng.normal(scale=3.0, size=(5000, 3))
    true = softmax(logits, axis=1)
    gold = (rng.random(5000)[:, None] > np.cumsum(true, axis=1)).sum(axis=1)
    # the model reports logits twice too sharp: the fitted temperature undoes it
    t = fit_temperature(2.0 * logits, gold)
    assert t == pytest.approx(2.0, rel=0.1)
    assert ece(softmax(2.0 * logits / t, axis=1), gold) < ece(softmax(2.0 * logits, axis=1), gold)


def test_too_few_gold_rows_change_nothing():
    assert fit_temperature(np.zeros((30, 2)), np.r_[np.zeros(19), np.full(11, -1)].astype(int)) == 1.0


@pytest.mark.parametrize("k", [2, 4])
def correlated(n, k, seed):
    """Votes whose first rule is copied four times: the label model, which assumes the rules
    independent, counts that rule five times and is overconfident."""
    L, y = synth(n=n, k=k, acc=(0.8, 0.75, 0.7, 0.65), cov=0.6, seed=seed)
    return np.column_stack([L] + [L[:, :1]] * 4), y


@pytest.mark.parametrize("k", [2, 4])
def test_calibrated_label_model_keeps_the_exact_decomposition(k):
    L, y = correlated(3000, k, seed=5)
    lm = LabelModel(n_classes=k, prior_strength=10).fit(L)
    before = lm.predict_proba(L)
    scores = lm.decision_function(L)
    lm.calibrate(L, y)
    assert lm.temperature_ != pytest.approx(1.0, abs=0.02)
    P = lm.predict_proba(L)
    # predictions unchanged; probabilities are softmax(scores / T)
    np.testing.assert_array_equal(P.argmax(1), before.argmax(1))
    np.testing.assert_allclose(P, softmax(scores / lm.temperature_, axis=1), atol=1e-12)
    # baseline + the voting rules' weights is still exactly the calibrated log-score
    for i in range(0, 3000, 37):
        s = lm.baseline_.copy()
        for j in np.flatnonzero(L[i] >= 0):
            s = s + lm.weights_[j, L[i, j]]
        np.testing.assert_allclose(softmax(s), P[i], atol=1e-12)
    # for two classes the contributions are the log-odds terms and sum exactly
    if k == 2:
        t = P.argmax(1)
        c = lm.contributions(L, target=t)
        base = lm.baseline_[t] - lm.baseline_[1 - t]
        np.testing.assert_allclose(base + c.sum(1), np.log(P[np.arange(3000), t] / P[np.arange(3000), 1 - t]),
                                   atol=1e-9)


def test_calibration_on_gold_makes_held_out_probabilities_honest():
    # rules right 92% of the time, but the expert's confident-but-wrong prior (0.7, as strong
    # as it gets) holds every weight at log(.7/.3): the posteriors are uniformly underconfident
    L, y = synth(n=4000, acc=(0.92,) * 4, cov=0.6, seed=6)
    train, held = slice(0, 2000), slice(2000, 4000)
    lm = LabelModel(accuracy_prior=[0.7] * 4, prior_strength=np.inf, abstain_shrinkage=1.0).fit(L[train])
    raw = ece(lm.predict_proba(L[held]), y[held])
    lm.calibrate(L[train], y[train])
    assert lm.temperature_ < 0.8  # underconfident -> sharpened
    assert ece(lm.predict_proba(L[held]), y[held]) < min(raw / 2, 0.05), raw
