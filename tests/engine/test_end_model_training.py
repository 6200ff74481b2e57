"""The torch training path against plain dense torch: its sparse first layer, its batches and its
fused optimizer must train the weights a textbook loop would (dense batches through nn.Linear,
the for-loop Adam, the same permutations, batch sizes and learning-rate schedule)."""
import numpy as np
import pytest
import scipy.sparse as sp
import torch

from mteach.engine.end_model import (EndModel, _build_net, _duplicates_summed, _EpochBatches, _feature_major,
                                     _train_embed)


def _with_repeats_and_empty_rows(seed: int) -> sp.csr_matrix:
    """A CSR of 9 rows × 40 features: some features listed twice in a row, rows 2 and 6 empty."""
    r = np.random.default_rng(seed)
    rows, cols = [], []
    for i in range(9):
        if i in (2, 6):
            continue
        c = r.integers(0, 40, r.integers(1, 12))
        rows += [i] * (len(c) + 1)
        cols += list(c) + [c[0]]  # the first feature of the row again
    vals = r.normal(size=len(cols)).astype(np.float32)
    X = sp.csr_matrix((vals, cols, np.searchsorted(rows, np.arange(10))), shape=(9, 40))
    assert not X.has_canonical_format
    return X


@pytest.mark.parametrize("backward", ["scipy (CPU)", "index_add (other devices)"])
@pytest.mark.parametrize("units", [2, 3, 7])
def test_sparse_first_layer_equals_a_dense_linear_layer_forward_and_backward(units, backward):
    X = _with_repeats_and_empty_rows(units)
    net = _build_net(40, units, 0)
    first = net[0]
    dense = torch.from_numpy(X.toarray())
    g = torch.randn(9, units, generator=torch.Generator().manual_seed(1))

    (first(dense) * g).sum().backward()
    want_w, want_b = first.weight.grad.clone(), first.bias.grad.clone()
    want_z = first(dense).detach()
    first.zero_grad()

    batches = _EpochBatches(X, torch.zeros(9, units), torch.ones(9), 9, torch.device("cpu"))
    (batch, _, _), = list(batches.epoch(np.arange(9)))
    if backward != "scipy (CPU)":  # each entry's row in the batch, as batches on a GPU carry
        batch = (*batch[:3], torch.from_numpy(np.repeat(np.arange(9), np.diff(X.indptr))))
    _feature_major(first, True)
    z = _train_embed(first, batch)
    (z * g).sum().backward()
    assert first.weight.grad.stride() == first.weight.stride() == (1, units)  # kept in the weight's layout
    torch.testing.assert_close(z.detach(), want_z, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(first.weight.grad, want_w, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(first.bias.grad, want_b, rtol=1e-5, atol=1e-6)
    assert first.weight.grad[:, X.sum(axis=0).A1 == 0].abs().max() == 0  # features no row has: no gradient


def test_batches_are_the_permutations_rows_in_order():
    X = _with_repeats_and_empty_rows(0)
    perm = np.array([8, 2, 0, 5, 6, 1, 3, 7, 4])
    Y = torch.arange(9, dtype=torch.float32)[:, None].repeat(1, 2)
    got = list(_EpochBatches(X, Y, torch.arange(9.0), 4, torch.device("cpu")).epoch(perm))
    assert [len(yb) for _, yb, _ in got] == [4, 4, 1]
    for k, ((indices, offsets, values, csr), yb, wb) in enumerate(got):
        assert indices.dtype == offsets.dtype == torch.int64  # torch's index kernels are slow on int32
        part = perm[4 * k:4 * k + 4]
        assert wb.tolist() == part.tolist() and yb[:, 0].tolist() == part.tolist()
        rebuilt = sp.csr_matrix((values.numpy(), indices.numpy(), np.append(offsets.numpy(), len(values))),
                                shape=(len(part), 40))
        assert (rebuilt != X[part]).nnz == 0 and (csr != X[part]).nnz == 0


@pytest.mark.parametrize("sort", [True, False])
def test_duplicates_summed_is_the_summed_matrix(sort):
    X = _with_repeats_and_empty_rows(3)
    S = _duplicates_summed(X, sort)
    assert S.nnz == np.count_nonzero(X.toarray()) < X.nnz and S.dtype == np.float32
    assert S.has_canonical_format or not sort
    assert all(len(set(r.indices)) == r.nnz for r in S)  # one entry per feature in each row
    np.testing.assert_allclose(S.toarray(), X.toarray(), rtol=1e-6)  # toarray sums X's repeats
    assert not X.has_canonical_format  # the caller's matrix is left as it was


def _textbook_training(X, soft, *, hidden, epochs, lr, weight_decay, bs, seed):
    """The torch path written plainly: dense batches, nn.Linear, the default (for-loop) Adam."""
    n, dim = X.shape
    k = soft.shape[1]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = _build_net(dim, k, hidden)
    gen = torch.Generator().manual_seed(seed)
    decay = [p for name, p in net.named_parameters() if name.endswith("weight")]
    no_decay = [p for name, p in net.named_parameters() if not name.endswith("weight")]
    opt = torch.optim.Adam([{"params": decay, "weight_decay": weight_decay},
                            {"params": no_decay, "weight_decay": 0.0}], lr=lr, foreach=False)
    total = -(-n // bs) * epochs
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1.0 + np.cos(np.pi * min(s, total) / total)))
    Xd, Y = torch.from_numpy(X.toarray()), torch.as_tensor(soft, dtype=torch.float32)
    for _ in range(epochs):
        perm = torch.randperm(n, generator=gen)
        for start in range(0, n, bs):
            rows = perm[start:start + bs]
            logp = torch.log_softmax(net(Xd[rows]), dim=1)
            loss = -(Y[rows] * logp).sum(dim=1).sum() / len(rows)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    return net


@pytest.mark.parametrize("hidden", [0, 5])
def test_torch_path_trains_the_weights_of_a_textbook_dense_loop(hidden):
    r = np.random.default_rng(2)
    n, dim = 150, 60
    X = sp.random(n, dim, density=0.1, format="csr", random_state=3, dtype=np.float32)
    y = (X @ r.normal(size=dim) > 0).astype(int)
    soft = np.eye(2)[y] * 0.8 + 0.1
    kw = dict(hidden=hidden, epochs=4, lr=0.05, weight_decay=1e-3, seed=3)
    m = EndModel(**kw, batch_size=32, device="cpu", solver="torch", max_row_visits=0).fit(X, soft)
    ref = _textbook_training(X, soft, bs=32, **kw)
    for (name, got), want in zip(m.net_.state_dict().items(), ref.state_dict().values()):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5, msg=name)
