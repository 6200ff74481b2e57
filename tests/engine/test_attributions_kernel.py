"""A linear end model's logits and top attributions from the text in one kernel pass
(``Featurizer.scores_and_top``) are those of the matrix path, bit for bit: ``dot`` + bias for
the logits, ``top_attributions(EndModel.attributions(transform(rows), argmax))`` for the top
features — with ties, rows with no entry, nulls, non-ASCII text, repeated n-grams, several
fields and numeric features, 2 to 7 classes."""
import numpy as np
import pyarrow as pa
import pytest

from mteach.engine import features
from mteach.engine.end_model import EndModel, top_attributions
from mteach.engine.features import Featurizer

from .test_features_kernel import random_texts


@pytest.fixture
def kernel():
    pytest.importorskip("numba")
    k = features.compiled_kernel()
    assert k is not None
    return k


def linear_model(W: np.ndarray, b: np.ndarray) -> EndModel:
    m = EndModel(hidden=0)
    m.n_features_in_, m.n_classes_ = W.shape
    m.classes_ = np.arange(W.shape[1])
    m._linear = (W, b)
    return m


def matrix_path(f: Featurizer, W, b, table, explain, k):
    """Today's road: the logits by ``dot``, the explained rows' matrix made, then attributions."""
    z = f.dot(table, W) + b
    rows = np.flatnonzero(explain)
    classes = EndModel.proba_from_logits(z.astype(np.float64))[rows].argmax(axis=1)
    X = f.transform(table.take(pa.array(rows, pa.int64())))
    return z, top_attributions(linear_model(W, b).attributions(X, classes), k)


def tables(seed: int, n: int):
    rng = np.random.default_rng(seed)
    return pa.table({"text": pa.array(random_texts(n, seed), pa.string()),
                     "title": pa.array(random_texts(n, seed + 100, ascii_only=True), pa.string()),
                     "x": rng.normal(size=n)})


@pytest.mark.parametrize("classes", [2, 3, 7])
@pytest.mark.parametrize("sublinear_tf", [False, True])
@pytest.mark.parametrize("weights", ["few values: ties", "normal"])
def test_scores_and_top_equal_the_matrix_path(kernel, classes, sublinear_tf, weights):
    rng = np.random.default_rng(classes)
    f = Featurizer(["text", "title"], numeric={"x": lambda t: t.column("x").to_numpy()}, hash_bits=14,
                   sublinear_tf=sublinear_tf).fit(tables(0, 300))
    table = tables(1, 500)  # n-grams not fitted too: rows with no entry at all
    W = (rng.choice([-1.0, -0.5, 0.0, 0.5, 1.0], size=(f.n_features_, classes)) if weights != "normal"
         else rng.normal(size=(f.n_features_, classes))).astype(np.float32)
    b = rng.normal(size=classes).astype(np.float32)
    tied = False
    for explain in (rng.random(500) < 0.4, np.ones(500, bool), np.zeros(500, bool)):
        for k in (1, 5):
            z, (cols, vals, counts) = f.scores_and_top(table, W, b, explain, k)
            z_ref, (cols_ref, vals_ref, counts_ref) = matrix_path(f, W, b, table, explain, k)
            assert z.dtype == z_ref.dtype == np.float32 and z.tobytes() == z_ref.tobytes()
            np.testing.assert_array_equal(counts, counts_ref)
            np.testing.assert_array_equal(cols, cols_ref)
            assert vals.dtype == np.float64 and vals.tobytes() == vals_ref.tobytes()
            assert counts.shape == (int(explain.sum()),)
            tied |= bool((np.diff(vals) == 0).any())
    assert tied or weights == "normal" or classes == 7  # the ties this test is about did happen (7 classes: rare)


def test_rows_where_nothing_pushes_toward_the_class_get_no_feature(kernel):
    f = Featurizer(["text"], char_ngrams=False, hash_bits=10).fit(pa.table({"text": ["free money", "nice song"]}))
    W = np.zeros((f.n_features_, 2), np.float32)
    b = np.array([0.0, 1.0], np.float32)
    table = pa.table({"text": pa.array(["free money", None, "", "nice song"], pa.string())})
    z, (cols, vals, counts) = f.scores_and_top(table, W, b, np.ones(4, bool), 5)
    assert z.tolist() == [[0.0, 1.0]] * 4
    assert counts.tolist() == [0, 0, 0, 0] and len(cols) == len(vals) == 0


def test_without_the_kernel_or_for_8_classes_it_declines(monkeypatch):
    f = Featurizer(["text"], hash_bits=10).fit(pa.table({"text": ["free money", "nice song"]}))
    table = pa.table({"text": ["free"]})
    assert f.scores_and_top(table, np.zeros((f.n_features_, 8), np.float32), np.zeros(8, np.float32),
                            np.ones(1, bool), 5) is None
    monkeypatch.setenv("MTEACH_NO_NUMBA", "1")
    assert f.scores_and_top(table, np.zeros((f.n_features_, 2), np.float32), np.zeros(2, np.float32),
                            np.ones(1, bool), 5) is None
