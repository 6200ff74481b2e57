import json

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from mteach.engine.end_model import EndModel, EndModelLoadError


@pytest.fixture(scope="module")
def toy():
    r = np.random.default_rng(0)
    n, d = 240, 30
    X = sp.random(n, d, density=0.2, format="csr", random_state=1, dtype=np.float32)
    w = np.zeros(d)
    w[:5] = 4.0
    w[5:10] = -4.0
    y = (X @ w > 0).astype(int)
    soft = np.eye(2)[y] * 0.9 + 0.05
    return X, y, soft


def test_sklearn_contract(toy):
    m = EndModel(hidden=0, epochs=3, seed=3)
    assert m.get_params()["seed"] == 3
    assert not any(k.endswith("_") for k in vars(m))
    c = clone(m)
    assert c.get_params() == m.get_params()
    X, y, soft = toy
    assert m.fit(X, soft) is m
    assert {"history_", "n_features_in_", "classes_"} <= set(vars(m))


@pytest.mark.parametrize("hidden,solver", [(0, "torch"), (8, "auto")])
def test_learns_soft_labels(toy, hidden, solver):
    X, y, soft = toy
    epochs = []
    m = EndModel(hidden=hidden, epochs=40, lr=0.05, seed=0, device="cpu", solver=solver).fit(
        X, soft, progress=epochs.append)
    assert (m.predict(X) == y).mean() > 0.9
    p = m.predict_proba(X)
    assert p.shape == (X.shape[0], 2) and np.allclose(p.sum(1), 1)
    h = m.history_
    assert len(h) == 40 and h[-1]["ce"] < h[0]["ce"] and set(h[0]) == {"epoch", "loss", "ce", "hints"}
    assert epochs == [1] * 40  # the progress bar advances once per epoch


def test_linear_fast_path_reaches_the_loss_torch_minimises(toy):
    """The scikit-learn path (linear, no hints) minimises the same regularised soft-label loss
    as torch's Adam: its loss is no higher, and the two models agree on the labels."""
    X, y, soft = toy
    fast = EndModel(weight_decay=1e-2, device="cpu").fit(X, soft)
    slow = EndModel(weight_decay=1e-2, epochs=200, lr=0.05, device="cpu", solver="torch").fit(X, soft)
    assert fast.history_[0]["solver"] == "scikit-learn lbfgs"
    W = slow.net_[0].weight.detach().numpy().astype(np.float64)
    logp = np.log(slow.predict_proba(X))
    torch_loss = float(-(soft / soft.sum(1, keepdims=True) * logp).sum(1).mean()) + 1e-2 / 2 * float((W ** 2).sum())
    assert fast.history_[0]["loss"] <= torch_loss + 1e-3
    assert (fast.predict(X) == slow.predict(X)).mean() > 0.97
    assert np.abs(fast.predict_proba(X) - slow.predict_proba(X)).max() < 0.05


@pytest.mark.parametrize("solver", ["auto", "torch"])
def test_wide_sparse_input_is_never_densified(solver):
    """Four million features × 400 rows would be 6.4 GB dense; sparse it trains in moments."""
    r = np.random.default_rng(0)
    n, d = 400, 4_000_000
    y = r.integers(0, 2, n)
    cols = np.where(y[:, None] == 1, r.integers(0, 10, (n, 3)), r.integers(10, 20, (n, 3))) * 199_999
    X = sp.csr_matrix((np.ones(n * 3, np.float32), (np.repeat(np.arange(n), 3), cols.ravel())), shape=(n, d))
    m = EndModel(epochs=3, device="cpu", solver=solver).fit(X, y)
    assert (m.predict(X) == y).mean() == 1.0


def test_hard_labels_dense_input_and_sample_weight(toy):
    X, y, soft = toy
    m = EndModel(epochs=20, lr=0.05, device="cpu").fit(X.toarray(), y, sample_weight=np.ones(len(y)))
    assert (m.predict(X) == y).mean() > 0.85
    # zero weight on all class-1 rows: the model never learns class 1
    w = (y == 0).astype(float)
    m2 = EndModel(epochs=20, lr=0.05, device="cpu").fit(X, soft, sample_weight=w)
    assert (m2.predict(X) == 0).mean() > 0.95


def test_deterministic_for_a_seed(toy):
    X, y, soft = toy
    a = EndModel(hidden=4, epochs=5, seed=7, device="cpu").fit(X, soft).predict_proba(X)
    b = EndModel(hidden=4, epochs=5, seed=7, device="cpu").fit(X, soft).predict_proba(X)
    c = EndModel(hidden=4, epochs=5, seed=8, device="cpu").fit(X, soft).predict_proba(X)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_input_errors(toy):
    X, y, soft = toy
    with pytest.raises(ValueError, match="soft labels have 3 rows but X has 240"):
        EndModel().fit(X, soft[:3])
    with pytest.raises(ValueError, match="all-zero soft labels"):
        EndModel().fit(X, np.zeros_like(soft))
    with pytest.raises(ValueError, match="epochs=0 is invalid"):
        EndModel(epochs=0).fit(X, soft)
    m = EndModel(epochs=1).fit(X, soft)
    with pytest.raises(ValueError, match="X has 5 features"):
        m.predict(np.zeros((2, 5)))
    with pytest.raises(NotFittedError, match="not fitted"):
        EndModel().predict(X)


def test_top_features_explain_the_prediction(toy):
    X, y, soft = toy
    m = EndModel(epochs=40, lr=0.05, device="cpu").fit(X, soft)

    class F:
        feature_names_ = [f"f{i}" for i in range(X.shape[1])]

    row = next(i for i in range(X.shape[0]) if y[i] == 1 and X[i, :5].nnz >= 2)
    top = m.top_features(X[row], F(), k=3)
    assert 1 <= len(top) <= 3 and all(c > 0 for _, c in top)
    assert [c for _, c in top] == sorted((c for _, c in top), reverse=True)
    assert top[0][0] in {f"f{i}" for i in range(5)}  # a class-1 feature leads
    assert all(X[row, int(name[1:])] > 0 for name, _ in top)  # only features the row has


def test_save_load_round_trip(tmp_path, toy):
    X, y, soft = toy
    m = EndModel(hidden=4, epochs=3, seed=1, device="cpu").fit(X, soft)
    m.save(tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "end_model.json").read_text())
    assert meta["params"]["hidden"] == 4 and meta["n_features"] == X.shape[1]
    back = EndModel.load(tmp_path / "m")
    assert np.array_equal(back.predict_proba(X), m.predict_proba(X))
    assert back.get_params() == m.get_params()
    assert not list((tmp_path / "m").glob("*.tmp"))


def test_corrupt_or_truncated_weights_give_clear_errors(tmp_path, toy):
    X, y, soft = toy
    folder = tmp_path / "m"
    EndModel(epochs=1, device="cpu").fit(X, soft).save(folder)
    w = folder / "weights.pt"
    good = w.read_bytes()
    w.write_bytes(good[: len(good) // 2])
    with pytest.raises(EndModelLoadError, match="corrupt or truncated"):
        EndModel.load(folder)
    # a bad file whose hash was "updated" still fails cleanly inside torch.load
    meta = json.loads((folder / "end_model.json").read_text())
    import hashlib
    meta["weights_sha256"] = hashlib.sha256(good[:100]).hexdigest()
    (folder / "end_model.json").write_text(json.dumps(meta))
    w.write_bytes(good[:100])
    with pytest.raises(EndModelLoadError, match="could not be read as weights"):
        EndModel.load(folder)
    (folder / "end_model.json").write_text("{not json")
    with pytest.raises(EndModelLoadError, match="not a valid end-model description"):
        EndModel.load(folder)
    w.unlink()
    with pytest.raises(EndModelLoadError, match="weights.pt is missing"):
        EndModel.load(folder)
    assert issubclass(EndModelLoadError, ValueError)


def test_attributions_equal_the_dense_input_gradient_and_rank_per_row(toy):
    """The sparse attributions of an MLP are exactly gradient × input of the chosen class's
    margin computed densely, and top_attributions keeps each row's k largest positive ones."""
    import torch
    from mteach.engine.end_model import top_attributions
    from mteach.engine.hints import class_margin
    X, y, soft = toy
    m = EndModel(hidden=6, epochs=5, device="cpu").fit(X, soft)
    classes = (np.arange(X.shape[0]) % 2)
    A = m.attributions(X, classes)
    assert (A.indptr == X.indptr).all() and (A.indices == X.indices).all()
    for i in (0, 7, 100):
        xt = torch.as_tensor(X[i].toarray()).requires_grad_(True)
        (g,) = torch.autograd.grad(class_margin(m.net_(xt), int(classes[i])).sum(), xt)
        dense = (g * xt).detach().numpy()[0]
        assert np.allclose(A[i].toarray()[0], dense, atol=1e-5)
    features, weights, counts = top_attributions(A, 2)
    assert counts.max() <= 2 and counts.sum() == len(features) == len(weights)
    first = A[0].toarray()[0]
    best = np.argsort(-first)[:counts[0]]
    assert list(features[:counts[0]]) == list(best) and (weights > 0).all()


def test_torch_path_is_deterministic_and_budgets_row_visits(toy):
    """Contiguous batches of a once-per-epoch permutation: the same seed gives the same model;
    max_row_visits shrinks the epochs on large data, and the progress still adds up to epochs."""
    X, y, soft = toy
    kw = dict(hidden=0, epochs=6, lr=0.05, seed=4, device="cpu", solver="torch", batch_size=16)
    a = EndModel(**kw).fit(X, soft)
    b = EndModel(**kw).fit(X, soft)
    assert np.array_equal(a.decision_function(X), b.decision_function(X))
    assert (a.predict(X) == y).mean() > 0.85
    other = EndModel(**{**kw, "seed": 5}).fit(X, soft)
    assert not np.array_equal(a.decision_function(X), other.decision_function(X))
    steps = []
    c = EndModel(**kw, max_row_visits=3 * X.shape[0] - 1).fit(X, soft, progress=steps.append)
    assert len(c.history_) == 3 and sum(steps) == 6


def test_torch_path_sums_duplicate_entries(toy):
    """A CSR with a feature listed twice in a row trains like the summed matrix."""
    X, y, soft = toy
    half = X.copy()
    half.data = half.data / 2
    doubled = sp.csr_matrix((np.repeat(half.data, 2), np.repeat(half.indices, 2), X.indptr * 2), shape=X.shape)
    assert not doubled.has_canonical_format
    kw = dict(hidden=0, epochs=4, seed=1, device="cpu", solver="torch")
    np.testing.assert_allclose(EndModel(**kw).fit(doubled, soft).decision_function(X),
                               EndModel(**kw).fit(X, soft).decision_function(X), rtol=1e-5, atol=1e-5)
