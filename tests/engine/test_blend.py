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
    beta, basis, scores = _choose_blend(lm, em, covered, y, 2)
    assert beta in BLEND_GRID and "2,000 gold rows covered" in basis and len(scores) == len(BLEND_GRID)
    # on the rows it was chosen on, by the criterion it was chosen by (mean of accuracy and F1 of
    # class 0), the blend is at least as good as either model alone
    def score(p):
        pred = p.argmax(1)
        return ((pred == y).mean() + f1_score(pred, y, 2, positive=0)) / 2
    assert score(_blend(lm, em, beta)) >= max(score(lm), score(em)) - 1e-9
    if lm_acc >= em_acc:
        assert beta == 0.0  # the rules alone: the end model is no better
    else:
        assert beta >= 2.0  # the end model, clearly better, decides all but the rules' surest rows


def test_uncovered_rows_keep_the_prior_when_the_end_model_is_worse_than_it():
    rng = np.random.default_rng(1)
    y = (rng.random(500) < 0.9).astype(int)  # rows no rule covers: 90% class 1
    prior = np.tile([0.2, 0.8], (500, 1))     # the label model there is its class prior
    em = noisy(y, 0.6, rng)
    uncovered = np.ones(500, dtype=bool)
    beta, basis, _ = _choose_blend(prior, em, uncovered, y, 2, end_model_alone=True)
    assert beta == 0.0 and "rows no rule covers" in basis
    good = noisy(y, 0.99, rng)
    assert _choose_blend(prior, good, uncovered, y, 2, end_model_alone=True)[0] != 0.0


def test_without_enough_gold_the_defaults_hold():
    lm = np.tile([0.6, 0.4], (10, 1))
    y = np.zeros(10, dtype=int)
    assert _choose_blend(lm, lm, np.ones(10, bool), y, 2)[0] == 0.25
    assert _choose_blend(lm, None, np.ones(10, bool), y, 2)[0] == 0.25
    assert _choose_blend(lm, lm, np.ones(10, bool), y, 2, end_model_alone=True)[0] is None


def test_a_gain_the_gold_rows_cannot_tell_from_noise_is_not_taken():
    # 60 gold rows where the end model is right on 2 more rows than the label model: the best
    # score on these rows, but a coin's worth of evidence -- the rules' answer stays
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 60)
    lm = np.where(np.arange(60)[:, None] < 6, np.eye(2)[1 - y], np.eye(2)[y]) * 0.6 + 0.2
    em = np.where(np.arange(60)[:, None] < 4, np.eye(2)[1 - y], np.eye(2)[y]) * 0.6 + 0.2
    rows = np.ones(60, dtype=bool)
    beta, basis, scores = _choose_blend(lm, em, rows, y, 2)
    assert max(scores.values()) > scores["0.0"]  # a blend scores higher on these rows...
    assert beta == 0.0 and "beats the rules' answer" in basis  # ...but not beyond doubt
    # the same evidence on 30 times as many rows is beyond doubt
    many = lambda a: np.tile(a, (30, 1)) if a.ndim == 2 else np.tile(a, 30)  # noqa: E731
    assert _choose_blend(many(lm), many(em), many(rows), many(y), 2)[0] > 0.0
    # and the choice is deterministic
    assert _choose_blend(lm, em, rows, y, 2) == (beta, basis, scores)


def test_the_uncovered_choice_is_scored_on_all_gold_rows_with_the_covered_ones_fixed():
    # covered rows: class 0 found by the rules; uncovered rows: 95% class 1, the prior says 1.
    # An end model that flags class 0 on uncovered rows with 40% precision buys F1 of class 0
    # on those rows alone (from 0) but loses F1 and accuracy on all rows: not taken.
    rng = np.random.default_rng(4)
    n_cov, n_unc = 300, 300
    y = np.r_[rng.integers(0, 2, n_cov), (rng.random(n_unc) < 0.95).astype(int)]
    covered = np.r_[np.ones(n_cov, bool), np.zeros(n_unc, bool)]
    lm = np.where(covered[:, None], np.eye(2)[y] * 0.8 + 0.1, [0.3, 0.7])
    em = np.tile([0.1, 0.9], (n_cov + n_unc, 1))
    flag = ~covered & (rng.random(n_cov + n_unc) < 0.1)
    flag |= ~covered & (y == 0) & (rng.random(n_cov + n_unc) < 0.6)
    em[flag] = [0.9, 0.1]
    on_uncovered = np.where(covered, -1, y)
    assert f1_score(em.argmax(1), on_uncovered, 2, positive=0) > f1_score(lm.argmax(1), on_uncovered, 2, positive=0)
    beta, basis, _ = _choose_blend(lm, em, ~covered, y, 2, end_model_alone=True, others=lm.argmax(1))
    assert beta == 0.0 and "scored on all 600 gold rows" in basis


def test_rows_the_class_prior_decides_are_recorded_as_the_rules_and_explained_exactly(repo, tmp_path):
    # beta 0 chosen on rows no rule covers: their label is the label model's class prior, so the
    # ledger says "rules" (not the end model) and explain's baseline alone gives the probability
    from scipy.special import softmax
    from mteach.compiler.checker import load_spec
    from mteach.engine import explain, ledger as led
    from mteach.engine.io import open_data
    from mteach.engine.label_model import LabelModel
    from mteach.engine.votes import collect_votes
    _, spec_path, data, _, _ = repo
    spec = load_spec(spec_path, open_data(data).schema)
    batch = collect_votes(spec, open_data(data), "id")
    ids, votes = batch.ids, batch.votes
    uncovered = np.flatnonzero(~(votes != -1).any(axis=1))
    lm = LabelModel(n_classes=2).fit(votes)
    prior = softmax(lm.baseline_)
    em = np.tile(prior[::-1], (len(ids), 1))  # an end model that disagrees with the prior
    ledger = led.build_ledger(spec, ids, votes, model_output=led.ModelOutput(
        em, lm, 0.0, None, np.broadcast_to(prior, em.shape), uncovered_by_rules=True))
    t = ledger.table
    assert set(np.array(t.column("decided_by").to_pylist())[uncovered]) == {"rules"}
    row = t.slice(int(uncovered[0]), 1).to_pylist()[0]
    assert row["label"] == spec.labels[int(prior.argmax())] and row["votes"] == []
    ledger.path = tmp_path / "p.parquet"
    led.write_ledger(ledger, ledger.path)
    e = explain.explain_row(led.read_ledger(ledger.path), row["id"])
    assert 1 / (1 + np.exp(-e["baseline_log_odds"])) == pytest.approx(row["probability"], abs=1e-12)
