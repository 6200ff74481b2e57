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


def test_top_attributions_are_each_rows_largest_positive_entries_in_order():
    """top_attributions (k rounds of a per-row maximum) gives what sorting every entry gives:
    per row, its k largest positive entries, largest first, of equal ones the first; no zero,
    negative or NaN entry; rows without entries give none."""
    from mteach.engine.end_model import top_attributions

    def by_sorting(A, k):
        rows = np.repeat(np.arange(A.shape[0]), np.diff(A.indptr))
        order = np.lexsort((-A.data, rows))  # by row, then largest first (stable: ties in order)
        rank = np.arange(A.nnz) - A.indptr[rows[order]]
        chosen = order[(rank < k) & (A.data[order] > 0)]
        return A.indices[chosen], A.data[chosen], np.bincount(rows[chosen], minlength=A.shape[0])

    rng = np.random.default_rng(0)
    for trial in range(200):
        lengths = rng.integers(0, 12, int(rng.integers(0, 25)))
        ptr = np.r_[0, np.cumsum(lengths)].astype(np.int64)
        data = np.round(rng.normal(size=int(ptr[-1])), int(rng.integers(0, 2)))  # ties and zeros
        if trial % 3 == 0 and len(data):
            data[rng.integers(0, len(data), 2)] = np.nan
        A = sp.csr_matrix((data, rng.integers(0, 9, len(data)), ptr), shape=(len(lengths), 9))
        for k in (1, 3, 20):
            got, want = top_attributions(A, k), by_sorting(A, k)
            assert all(np.array_equal(g, w, equal_nan=True) for g, w in zip(got, want)), (trial, k)


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


# ---- a linear model predicts without torch ---------------------------------------------------------
def test_saved_linear_model_loads_and_predicts_without_torch(tmp_path, toy):
    """predict and label --model on a linear end model do not import torch (1.5 s): the weights
    are read from the torch file by a restricted unpickler and the logits are X W^T + b. The
    probabilities are those of the model that was saved, bit for bit."""
    import os
    import subprocess
    import sys
    from pathlib import Path
    X, y, soft = toy
    m = EndModel(epochs=3, seed=0, device="cpu", solver="torch").fit(X, soft)  # trained by torch, as with hints
    m.save(tmp_path / "m")
    sp.save_npz(tmp_path / "X.npz", X)
    code = ("import sys, scipy.sparse as sp; from mteach.engine.end_model import EndModel\n"
            f"m = EndModel.load({str(tmp_path / 'm')!r}); p = m.predict_proba(sp.load_npz({str(tmp_path / 'X.npz')!r}))\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n"
            "print(p.tobytes().hex())")
    root = str(Path(__file__).resolve().parents[2])
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": root}).stdout.strip()
    assert out == m.predict_proba(X).tobytes().hex()
    # the torch layer's own product agrees (float32 sums, maybe in another order)
    import torch
    from mteach.engine.end_model import forward_sparse
    with torch.no_grad():
        logits = forward_sparse(m.net_, X, torch.device("cpu")).double().numpy()
    np.testing.assert_allclose(m.decision_function(X), logits, rtol=1e-6, atol=1e-6)


def test_loaded_linear_model_builds_its_torch_layer_when_asked(tmp_path, toy):
    X, y, soft = toy
    m = EndModel(epochs=3, seed=0, device="cpu").fit(X, soft)
    m.save(tmp_path / "m")
    back = EndModel.load(tmp_path / "m")
    assert "net_" not in vars(back) and back.n_features_in_ == X.shape[1]
    np.testing.assert_array_equal(back.predict_proba(X), m.predict_proba(X))
    assert np.array_equal(back.net_[0].weight.detach().numpy(), m.net_[0].weight.detach().numpy())
    np.testing.assert_array_equal(back.attributions(X[:5], [0] * 5).toarray(), m.attributions(X[:5], [0] * 5).toarray())
    back.save(tmp_path / "again")  # the same bytes: a loaded model saves what it read
    assert (tmp_path / "again" / "weights.pt").read_bytes() == (tmp_path / "m" / "weights.pt").read_bytes()
    mlp = EndModel(hidden=3, epochs=2, device="cpu").fit(X, soft)
    mlp.save(tmp_path / "mlp")
    assert "net_" in vars(EndModel.load(tmp_path / "mlp"))  # an MLP is torch's to run


def test_weights_that_are_not_a_plain_state_dict_run_no_code(tmp_path, toy):
    """The torch-free reader accepts only the names a plain state dict's pickle uses: any other
    global gives the file to torch's own weights_only loader, which refuses it too."""
    import hashlib
    import io
    import pickle
    import zipfile

    from mteach.engine.end_model import _numpy_state
    X, y, soft = toy
    folder = tmp_path / "m"
    EndModel(epochs=1, device="cpu").fit(X, soft).save(folder)
    good = (folder / "weights.pt").read_bytes()
    assert set(_numpy_state(good)) == {"0.weight", "0.bias"}

    class Boom:
        def __reduce__(self):
            return (print, ("this must never run",))
    buffer = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(good)) as src, zipfile.ZipFile(buffer, "w") as dst:
        for name in src.namelist():
            dst.writestr(name, pickle.dumps({"0.weight": Boom()}, protocol=2) if name.endswith("data.pkl")
                         else src.read(name))
    bad = buffer.getvalue()
    assert _numpy_state(bad) is None
    meta = json.loads((folder / "end_model.json").read_text())
    meta["weights_sha256"] = hashlib.sha256(bad).hexdigest()
    (folder / "end_model.json").write_text(json.dumps(meta))
    (folder / "weights.pt").write_bytes(bad)
    with pytest.raises(EndModelLoadError, match="could not be read as weights"):
        EndModel.load(folder)


@pytest.mark.parametrize("k", [2, 3])
def test_linear_attributions_without_torch_equal_torchs(toy, k):
    """label --model's top features of a linear model come without torch, and are torch's."""
    X, y, soft = toy
    labels = np.arange(X.shape[0]) % k if k > 2 else y
    m = EndModel(epochs=3, seed=0, device="cpu").fit(X, labels)
    classes = np.arange(X.shape[0]) % k
    fast = m.attributions(X, classes)
    linear = m.__dict__.pop("_linear")  # the torch path, as for an MLP
    try:
        slow = m.attributions(X, classes)
    finally:
        m._linear = linear
    np.testing.assert_array_equal(fast.indptr, slow.indptr)
    np.testing.assert_array_equal(fast.indices, slow.indices)
    if k == 2:  # the same float32 operations: bit for bit
        np.testing.assert_array_equal(fast.data, slow.data)
    np.testing.assert_allclose(fast.data, slow.data, rtol=1e-5, atol=1e-7)
