"""The blend of label model and end model: chosen on held-out predictions, never worse than the better one."""
import numpy as np
import pytest

from mteach.engine.calibration import f1_score
from mteach.engine.train import BLEND_GRID, _blend, _choose_blend


def noisy(y, acc, rng, k=2):
    """Probabilities whose argmax is right with rate ``acc`` (confidence 0.8)."""
    right = rng.random(y.shape[0]) < acc
    pred = np.where(right, y, (y + 1) % k)
    p = np.full((y.shape[0], k), 0.2 / (k - 1))
    p[np.arange(y.shape[0]), pred] = 0.8
    return p


@pytest.mark.parametrize("lm_acc, em_acc", [(0.95, 0.7), (0.7, 0.95), (0.85, 0.85)])
def test_the_chosen_blend_is_at_least_as_good_as_the_better_model(lm_acc, em_acc):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 2000)
    lm, em = noisy(y, lm_acc, rng), noisy(y, em_acc, rng)
    covered = np.ones(2000, dtype=bool)
    beta, basis = _choose_blend(lm, em, covered, y, 2)
    assert beta in BLEND_GRID and "2,000 gold rows covered" in basis
    # on the rows it was chosen on, by the criterion it was chosen by (mean of accuracy and F1 of
    # class 0), the blend is at least as good as either model alone
    def score(p):
        pred = p.argmax(1)
        return ((pred == y).mean() + f1_score(pred, y, 2, positive=0)) / 2
    assert score(_blend(lm, em, beta)) >= max(score(lm), score(em)) - 1e-9
    if lm_acc > em_acc:
        assert beta == 0.0  # the rules alone: ties go to the smaller beta


def test_uncovered_rows_keep_the_prior_when_the_end_model_is_worse_than_it():
    rng = np.random.default_rng(1)
    y = (rng.random(500) < 0.9).astype(int)  # rows no rule covers: 90% class 1
    prior = np.tile([0.2, 0.8], (500, 1))     # the label model there is its class prior
    em = noisy(y, 0.6, rng)
    uncovered = np.ones(500, dtype=bool)
    beta, basis = _choose_blend(prior, em, uncovered, y, 2, end_model_alone=True)
    assert beta == 0.0 and "rows no rule covers" in basis
    good = noisy(y, 0.99, rng)
    assert _choose_blend(prior, good, uncovered, y, 2, end_model_alone=True)[0] != 0.0


def test_without_enough_gold_the_defaults_hold():
    lm = np.tile([0.6, 0.4], (10, 1))
    y = np.zeros(10, dtype=int)
    assert _choose_blend(lm, lm, np.ones(10, bool), y, 2)[0] == 0.25
    assert _choose_blend(lm, None, np.ones(10, bool), y, 2)[0] == 0.25
    assert _choose_blend(lm, lm, np.ones(10, bool), y, 2, end_model_alone=True)[0] is None
