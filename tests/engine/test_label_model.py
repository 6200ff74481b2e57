"""Tests for mteach.engine.label_model (fast, synthetic data, no Snorkel)."""
import numpy as np
import pytest
from scipy.special import softmax
from sklearn.base import clone

from mteach.engine.label_model import LabelModel, MajorityVote


def synth(n=4000, k=2, acc=(0.95, 0.9, 0.85, 0.75, 0.65, 0.6, 0.6), cov=0.5, balance=None, seed=0):
    """Conditionally independent rules with known accuracies; wrong votes uniform over other classes."""
    rng = np.random.default_rng(seed)
    acc = np.asarray(acc)
    m = len(acc)
    p = np.full(k, 1.0 / k) if balance is None else np.asarray(balance)
    y = rng.choice(k, size=n, p=p)
    votes = rng.random((n, m)) < cov
    correct = rng.random((n, m)) < acc
    wrong = (y[:, None] + rng.integers(1, k, size=(n, m))) % k
    L = np.where(correct, y[:, None], wrong)
    L = np.where(votes, L, -1)
    return L, y


def empirical_acc(L, y):
    v = L >= 0
    return np.array([(L[v[:, j], j] == y[v[:, j]]).mean() for j in range(L.shape[1])])


# ------------------------------------------------------------------ recovery & quality
def test_recovers_accuracies_binary():
    L, y = synth()
    lm = LabelModel().fit(L)
    err = np.abs(lm.accuracy_ - empirical_acc(L, y))
    assert err.max() < 0.05, (lm.accuracy_, empirical_acc(L, y))


def test_recovers_class_balance():
    L, y = synth(n=6000, balance=[0.7, 0.3], seed=3)
    lm = LabelModel().fit(L)
    # the EM estimate of the class balance finds the majority class (it is pulled toward
    # uniform by the shrunk prior, so it is not exact) ...
    assert 0.58 < lm.posterior_class_balance_[0] <= np.mean(y == 0) + 0.02
    # ... and the prior used in the posterior is that estimate shrunk halfway toward uniform
    np.testing.assert_allclose(lm.class_balance_, (lm.posterior_class_balance_ + 0.5) / 2, atol=1e-3)
    # the baseline (every rule abstains) is that prior plus each rule's abstain term
    cover = (L >= 0).mean(axis=0)
    abstain = np.log1p(-lm.class_coverage_) - np.log1p(-cover)[:, None]
    np.testing.assert_allclose(lm.baseline_, np.log(lm.class_balance_) + abstain.sum(axis=0))
    no_abstain = LabelModel(abstain_shrinkage=1.0).fit(L)
    np.testing.assert_allclose(no_abstain.baseline_, np.log(no_abstain.class_balance_))
    fixed = LabelModel(class_balance=[0.7, 0.3]).fit(L)
    np.testing.assert_allclose(fixed.class_balance_, [0.7, 0.3])


def test_beats_majority_vote_with_unequal_accuracies():
    L, y = synth(n=5000, acc=(0.95, 0.9, 0.62, 0.6, 0.6, 0.58), cov=0.6, seed=1)
    Ltr, Lte, yte = L[:4000], L[4000:], y[4000:]
    lm_acc = (LabelModel().fit(Ltr).predict(Lte) == yte).mean()
    mv_acc = (MajorityVote().fit(Ltr).predict(Lte) == yte).mean()
    assert lm_acc > mv_acc + 0.03, (lm_acc, mv_acc)


def test_multiclass_recovery_and_quality():
    L, y = synth(n=6000, k=5, acc=(0.9, 0.8, 0.7, 0.6, 0.5, 0.45, 0.4), cov=0.45, seed=2)
    lm = LabelModel(n_classes=5).fit(L)
    assert lm.weights_.shape == (7, 5, 5)
    assert lm.predict_proba(L).shape == (6000, 5)
    assert np.abs(lm.accuracy_ - empirical_acc(L, y)).max() < 0.06
    assert (lm.predict(L) == y).mean() > (MajorityVote(n_classes=5).fit(L).predict(L) == y).mean()


# ------------------------------------------------------------------ decomposition
@pytest.mark.parametrize("k", [2, 4])
def test_exact_decomposition(k):
    L, _ = synth(n=500, k=k, seed=4)
    lm = LabelModel(n_classes=k).fit(L)
    P = lm.predict_proba(L)
    for i in range(0, 500, 7):
        s = lm.baseline_.copy()
        for j in range(L.shape[1]):
            if L[i, j] >= 0:
                s += lm.weights_[j, L[i, j], :]
        np.testing.assert_allclose(P[i], softmax(s), rtol=1e-10, atol=1e-12)
    # an all-abstain row is exactly softmax(baseline_)
    np.testing.assert_allclose(lm.predict_proba(np.full((1, L.shape[1]), -1))[0], softmax(lm.baseline_))


def test_binary_contributions_are_log_odds_terms():
    L, _ = synth(n=800, seed=5)
    lm = LabelModel().fit(L)
    C = lm.contributions(L, target=1)
    P = lm.predict_proba(L)
    logodds = np.log(P[:, 1]) - np.log(P[:, 0])
    base = lm.baseline_[1] - lm.baseline_[0]
    np.testing.assert_allclose(base + C.sum(axis=1), logodds, rtol=1e-9, atol=1e-9)
    assert np.all(C[L == -1] == 0.0)


def test_contribution_signs():
    L, _ = synth(n=2000, k=3, seed=6)
    lm = LabelModel(n_classes=3).fit(L)
    C = lm.contributions(L)  # toward predicted class
    pred = lm.predict(L)
    agree = (L == pred[:, None])
    disagree = (L >= 0) & ~agree
    assert np.all(C[agree] > 0)
    assert np.all(C[disagree] < 0)
    assert np.all(C[L == -1] == 0)
    Ct = lm.contributions(L, target=np.zeros(len(L), dtype=int))
    assert np.all(Ct[L == 0] > 0)


# ------------------------------------------------------------------ determinism & gold & priors
def test_deterministic_bytes():
    L, _ = synth(n=3000, k=3, seed=7)
    a = LabelModel(n_classes=3, seed=11).fit(L)
    b = LabelModel(n_classes=3, seed=11).fit(L)
    assert a.predict_proba(L).tobytes() == b.predict_proba(L).tobytes()
    assert a.weights_.tobytes() == b.weights_.tobytes()
    # row order does not change the fit (patterns are counted, not iterated)
    perm = np.random.default_rng(0).permutation(len(L))
    c = LabelModel(n_classes=3, seed=11).fit(L[perm])
    np.testing.assert_allclose(c.weights_, a.weights_, rtol=1e-9, atol=1e-9)


def test_gold_rows_sharpen():
    L, y = synth(n=3000, acc=(0.8, 0.75, 0.7, 0.65, 0.6), cov=0.4, seed=8)
    gold = np.full(len(y), -1)
    gold[:600] = y[:600]
    unsup = LabelModel().fit(L)
    sup = LabelModel().fit(L, gold)
    true = empirical_acc(L, y)
    assert np.abs(sup.accuracy_ - true).mean() <= np.abs(unsup.accuracy_ - true).mean() + 1e-9
    # gold rows are clamped: their labels match gold when the model is asked about them
    conf_sup = sup.predict_proba(L[:600])[np.arange(600), y[:600]].mean()
    conf_unsup = unsup.predict_proba(L[:600])[np.arange(600), y[:600]].mean()
    assert conf_sup >= conf_unsup - 1e-9


def test_gold_alone_fixes_an_adversarial_rule():
    # rule 2 is mostly wrong; gold tells the model so
    L, y = synth(n=3000, acc=(0.85, 0.8, 0.2), cov=0.7, seed=9)
    gold = np.where(np.arange(len(y)) < 1000, y, -1)
    lm = LabelModel().fit(L, gold)
    assert lm.accuracy_[2] < 0.4


def test_accuracy_prior_pulls_estimates():
    L, _ = synth(n=200, acc=(0.9, 0.8, 0.7), cov=0.3, seed=10)
    free = LabelModel().fit(L)
    low = LabelModel(accuracy_prior=[np.nan, np.nan, 0.3], prior_strength=200).fit(L)
    high = LabelModel(accuracy_prior=[np.nan, np.nan, 0.99], prior_strength=200).fit(L)
    assert low.accuracy_[2] < free.accuracy_[2] < high.accuracy_[2]
    assert low.accuracy_[2] < 0.5


# ------------------------------------------------------------------ edge cases & validation
def test_rule_that_never_votes():
    L, _ = synth(n=500, seed=12)
    L[:, 3] = -1
    lm = LabelModel().fit(L)
    assert np.all(np.isfinite(lm.weights_)) and np.all(np.isfinite(lm.accuracy_))
    L2 = L.copy()
    L2[:5, 3] = 1  # votes at predict time: finite probabilities
    assert np.all(np.isfinite(lm.predict_proba(L2)))


def test_input_validation_messages():
    L, _ = synth(n=100, seed=13)
    with pytest.raises(ValueError, match="2-D"):
        LabelModel().fit(L[:, 0])
    with pytest.raises(ValueError, match="n_classes is 2"):
        LabelModel(n_classes=2).fit(np.where(L == 1, 2, L))
    with pytest.raises(ValueError, match="no rule votes"):
        LabelModel().fit(np.full((5, 3), -1))
    with pytest.raises(ValueError, match="-1 for abstain"):
        LabelModel().fit(np.where(L == 1, -3, L))
    with pytest.raises(ValueError, match="integer"):
        LabelModel().fit(L + 0.5)
    with pytest.raises(ValueError, match="one gold label per row"):
        LabelModel().fit(L, np.zeros(3, dtype=int))
    with pytest.raises(ValueError, match="one entry per rule"):
        LabelModel(accuracy_prior=[0.9]).fit(L)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        LabelModel(accuracy_prior=[1.5] + [np.nan] * (L.shape[1] - 1)).fit(L)
    with pytest.raises(ValueError, match="class_balance"):
        LabelModel(class_balance=[0.2, 0.2]).fit(L)
    with pytest.raises(ValueError, match="abstain_shrinkage"):
        LabelModel(abstain_shrinkage=1.5).fit(L)
    lm = LabelModel().fit(L)
    with pytest.raises(ValueError, match="fitted with 7"):
        lm.predict_proba(L[:, :3])
    with pytest.raises(ValueError, match="not fitted"):
        LabelModel().predict(L)


# ------------------------------------------------------------------ sklearn contract
def test_sklearn_contract():
    lm = LabelModel(n_classes=3, prior_strength=5.0, seed=4)
    params = lm.get_params()
    assert params["n_classes"] == 3 and params["prior_strength"] == 5.0 and params["seed"] == 4
    cl = clone(lm)
    assert cl.get_params() == params and cl is not lm
    L, _ = synth(n=300, k=3, seed=14)
    assert lm.fit(L) is lm
    learned = [a for a in vars(lm) if a not in params]
    assert learned and all(a.endswith("_") for a in learned)
    for attr in ("class_balance_", "accuracy_", "weights_", "baseline_", "n_classes_", "n_rules_"):
        assert hasattr(lm, attr)
    assert not hasattr(clone(lm), "weights_")


def test_majority_vote_baseline():
    L = np.array([[0, 0, 1], [1, -1, 1], [-1, -1, -1], [0, 1, -1]])
    mv = MajorityVote(n_classes=2).fit(L)
    np.testing.assert_array_equal(mv.predict(L), [0, 1, 0, 0])  # ties -> lowest class
    np.testing.assert_allclose(mv.predict_proba(L)[2], [0.5, 0.5])
    r1 = MajorityVote(tie_break="random", seed=1).fit(L).predict(L)
    r2 = MajorityVote(tie_break="random", seed=1).fit(L).predict(L)
    np.testing.assert_array_equal(r1, r2)
    np.testing.assert_array_equal(r1[:2], [0, 1])
    C = mv.contributions(L, target=0)
    np.testing.assert_allclose(C[0], [1, 1, -1])


# ------------------------------------------------------------------ engines, speed paths, small data
def test_binary_and_generic_engines_agree():
    L, y = synth(n=3000, acc=(0.9, 0.8, 0.7, 0.65, 0.6), cov=0.5, seed=15)
    gold = np.where(np.arange(len(y)) < 100, y, -1)
    fast = LabelModel().fit(L, gold)
    slow = LabelModel()
    slow._force_generic = True
    slow.fit(L, gold)
    np.testing.assert_allclose(fast.weights_, slow.weights_, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(fast.accuracy_, slow.accuracy_, rtol=1e-7)
    assert fast.n_iter_ == slow.n_iter_


def test_mostly_distinct_rows_skip_dedup_and_stay_deterministic(monkeypatch):
    rng = np.random.default_rng(16)
    n, m = 220_000, 40
    y = rng.integers(0, 2, n)
    acc = rng.uniform(0.6, 0.9, m)
    L = np.where(rng.random((n, m)) < acc, y[:, None], 1 - y[:, None]).astype(np.int8)
    L[rng.random((n, m)) < 0.6] = -1
    a = LabelModel().fit(L)
    assert a.n_patterns_ == n  # the sample showed distinct rows: no dedup
    b = LabelModel().fit(np.asfortranarray(L).astype(np.int64))
    assert a.weights_.tobytes() == b.weights_.tobytes()
    assert np.abs(a.accuracy_ - empirical_acc(L, y)).max() < 0.02
    # counted patterns and row-by-row EM give the same model
    small, _ = synth(n=5000, acc=(0.9, 0.8, 0.7), cov=0.4, seed=17)
    dedup = LabelModel().fit(small)
    assert dedup.n_patterns_ < 100
    import mteach.engine.label_model as lm_module
    monkeypatch.setattr(lm_module, "_DEDUP_SAMPLE", 10)  # a 10-row sample is all distinct: no dedup
    rows = LabelModel().fit(small)
    assert rows.n_patterns_ == 5000
    np.testing.assert_allclose(rows.weights_, dedup.weights_, rtol=1e-9, atol=1e-12)


def test_small_data_lone_vote_follows_the_prior():
    # 14 rows: four SPAM (0) rules, one HAM (1) rule with an expert prior of 0.8
    L = np.full((14, 5), -1)
    L[:8, 0] = 0
    L[2:9, 1] = 0
    L[5:10, 2] = 0
    L[[0, 3, 9], 3] = 0
    L[[1, 10, 11], 4] = 1  # the HAM rule: one conflict, two lone votes
    prior = [np.nan] * 4 + [0.8]
    lm = LabelModel(accuracy_prior=prior).fit(L)
    assert lm.accuracy_[4] > 0.6  # the prior dominates three votes
    lone = np.array([[-1, -1, -1, -1, 1]])
    assert lm.predict(lone)[0] == 1  # a lone vote of a rule with accuracy > 0.5 wins
    assert lm.predict_proba(lone)[0, 1] == pytest.approx(lm.accuracy_[4])
    # with a prior below 0.5 the lone vote loses, as its accuracy says
    low = LabelModel(accuracy_prior=[np.nan] * 4 + [0.3]).fit(L)
    assert low.accuracy_[4] < 0.5 and low.predict(lone)[0] == 0


# ------------------------------------------------------------------ abstentions as evidence
def spam_rules_abstain_on_ham(n=3000, seed=18):
    """Class 0 (SPAM) rules fire on SPAM only and cover it well; one weak class 1 rule.  Most
    rows where every rule abstains are HAM, although SPAM is the majority class."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.4).astype(int)  # 60% SPAM (0)
    L = np.full((n, 5), -1)
    for j, cov in enumerate((0.5, 0.45, 0.4, 0.35)):
        L[(y == 0) & (rng.random(n) < cov), j] = 0
    L[(rng.random(n) < 0.25), 4] = 1
    L[(y == 0) & (L[:, 4] == 1) & (rng.random(n) < 0.8), 4] = -1  # the HAM rule: mostly right
    return L, y


def test_abstentions_are_evidence():
    L, y = spam_rules_abstain_on_ham()
    lm = LabelModel().fit(L)
    none = np.full((1, 5), -1)
    uncovered = ~(L >= 0).any(axis=1)
    assert y[uncovered].mean() > 0.7  # really mostly HAM
    assert lm.predict(none)[0] == 1  # every SPAM rule abstained: HAM
    old = LabelModel(abstain_shrinkage=1.0).fit(L)
    assert old.predict(none)[0] == 0  # without abstention evidence: the class prior (SPAM)
    assert (lm.predict(L) == y).mean() > (old.predict(L) == y).mean()
    # class-conditional coverage: SPAM rules cover SPAM (shrunk halfway toward their coverage)
    assert np.all(lm.class_coverage_[:4, 0] > lm.class_coverage_[:4, 1])
    cover = (L >= 0).mean(axis=0)
    half = LabelModel(abstain_shrinkage=0.0).fit(L).class_coverage_
    np.testing.assert_allclose(lm.class_coverage_, (half + cover[:, None]) / 2, rtol=1e-6)
    # abstaining still adds nothing relative to the baseline; a lone SPAM vote still wins
    assert lm.predict(np.array([[0, -1, -1, -1, -1]]))[0] == 0
    np.testing.assert_allclose(lm.predict_proba(none)[0], softmax(lm.baseline_))


@pytest.mark.parametrize("k", [2, 3])
def test_abstain_engines_agree_and_unseen_votes_count_as_abstentions(k):
    L, _ = synth(n=2000, k=k, acc=(0.9, 0.8, 0.7, 0.65), cov=0.4, seed=19)
    L[L[:, 2] == 1, 2] = -1  # rule 2 never votes 1
    fast = LabelModel(n_classes=k).fit(L)
    slow = LabelModel(n_classes=k)
    slow._force_generic = True
    slow.fit(L)
    np.testing.assert_allclose(fast.class_coverage_, slow.class_coverage_, rtol=1e-7, atol=1e-12)
    np.testing.assert_allclose(fast.baseline_, slow.baseline_, rtol=1e-7, atol=1e-9)
    assert np.all(fast.weights_[2, 1] == 0.0)
    row = np.full((1, L.shape[1]), -1)
    row2 = row.copy()
    row2[0, 2] = 1
    np.testing.assert_array_equal(fast.predict_proba(row2), fast.predict_proba(row))


def test_vote_accuracy_estimates_the_share_of_right_votes_with_an_interval():
    L, y = synth(n=6000, acc=(0.95, 0.9, 0.85, 0.75, 0.65), cov=0.5, seed=8)
    lm = LabelModel().fit(L)
    true = empirical_acc(L, y)
    assert np.abs(lm.vote_accuracy_ - true).max() < 0.05, (lm.vote_accuracy_, true)
    low, high = lm.vote_accuracy_interval_.T
    assert np.all(low <= lm.vote_accuracy_) and np.all(lm.vote_accuracy_ <= high)
    # fewer votes, wider interval
    small = LabelModel().fit(L[:300])
    assert np.all(np.diff(small.vote_accuracy_interval_, axis=1) > np.diff(lm.vote_accuracy_interval_, axis=1))


def test_an_infinite_prior_strength_fixes_the_accuracy_at_the_prior():
    L, _ = synth(n=2000, acc=(0.95, 0.9, 0.6), seed=9)
    lm = LabelModel(accuracy_prior=[0.8, 0.8, np.nan], prior_strength=np.inf, abstain_shrinkage=1.0).fit(L)
    assert np.all(np.isfinite(lm.weights_))
    # both fixed rules carry the same weight (0.8), though their votes are right 95% and 90% of the time
    np.testing.assert_allclose(lm.weights_[0], lm.weights_[1], atol=1e-12)
    free = LabelModel(accuracy_prior=[0.8, 0.8, np.nan], prior_strength=0.0, abstain_shrinkage=1.0).fit(L)
    odds = free.weights_[:, 1, 1] - free.weights_[:, 1, 0]  # a vote for class 1: its log-odds
    assert abs(odds[0] - odds[1]) > 0.1  # learned from the votes, the two differ


def test_vote_entries_are_row_major_in_either_memory_order():
    """The engine's vote matrices are column-major; ``vote_entries`` reads them column by
    column and must still give np.nonzero's row-major (row, then rule) order."""
    from mteach.engine.label_model import vote_entries
    rng = np.random.default_rng(0)
    L = np.where(rng.random((300, 40)) < 0.1, rng.integers(0, 3, (300, 40)), -1).astype(np.int8)
    expected = np.nonzero(L >= 0)
    for layout in (np.ascontiguousarray(L), np.asfortranarray(L), np.asfortranarray(L[:, :1]),
                   np.asfortranarray(np.full((5, 0), -1, np.int8))):
        rows, cols = vote_entries(layout)
        want = np.nonzero(layout >= 0)
        assert np.array_equal(rows, want[0]) and np.array_equal(cols, want[1])
    assert len(expected[0]) > 500


def test_many_rarely_voting_rules_fit_on_the_vote_list_and_agree_with_the_blocks(monkeypatch):
    """Two classes and 300 rules that vote on ~1% of rows each: the cheaper vote-list engine
    fits them (not the blocks of 10 rules), and gives the blocks' model to 1e-7."""
    from mteach.engine import label_model
    rng = np.random.default_rng(5)
    n, m = 4000, 300
    y = rng.integers(0, 2, n)
    L = np.where(rng.random((n, m)) < 0.8, y[:, None], 1 - y[:, None]).astype(np.int8)
    L[rng.random((n, m)) < 0.99] = -1
    monkeypatch.setattr(label_model, "_BinaryBlocks", None)  # would fail if the blocks were used
    sparse = LabelModel().fit(L)
    monkeypatch.undo()
    monkeypatch.setattr(label_model, "_votes_are_sparse", lambda L: False)
    blocks = LabelModel().fit(L)
    np.testing.assert_allclose(sparse.weights_, blocks.weights_, rtol=1e-7, atol=1e-9)
    assert sparse.n_iter_ == blocks.n_iter_
    assert np.array_equal(sparse.predict(L), blocks.predict(L))
