import json

import numpy as np
import pyarrow as pa
import pytest
import scipy.sparse as sp
from sklearn.exceptions import NotFittedError

from mteach.engine.features import Featurizer


def words(t):
    return np.array([len((s or "").split()) for s in t.column("body").to_pylist()], dtype=float)


def stars(t):
    return np.asarray(t.column("stars").to_numpy(zero_copy_only=False), dtype=float)


@pytest.fixture
def table():
    return pa.table({
        "body": ["Check out my channel", "nice song, love it", None, "refund please refund"],
        "title": ["spam", "music", "empty", "shop"],
        "stars": [1.0, 5.0, None, 2.0],
    })


def test_fit_transform_shapes_and_types(table):
    f = Featurizer(["body", "title"], numeric={"words(body)": words, "stars": stars})
    assert f.fit(table) is f
    X = f.transform(table)
    assert sp.isspmatrix_csr(X) and X.dtype == np.float32
    assert X.shape == (4, len(f.feature_names_)) == (4, f.n_features_)
    assert f.feature_names_[-2:] == ["num:words(body)", "num:stars"]
    assert "body:w:check out" in f.feature_names_ and "title:w:spam" in f.feature_names_
    assert any(n.startswith("body:c:") for n in f.feature_names_)
    # numeric standardized: mean 0, std 1 on the fitted data; the missing star -> mean -> 0
    num = X[:, -2:].toarray()
    np.testing.assert_allclose(num.mean(axis=0), 0, atol=1e-6)
    assert num[2, 1] == 0.0
    # each text block of a non-empty row has unit L2 norm
    j = f.feature_names_.index("body:w:refund")
    assert X[3, j] > X[3, f.feature_names_.index("body:w:please")]  # tf 2 beats tf 1


def test_word_only_and_params(table):
    f = Featurizer(["body"], char_ngrams=False, ngram_range=(1, 1)).fit(table)
    assert all(":w:" in n and " " not in n.split(":w:")[1] for n in f.feature_names_)
    vocab = Featurizer(["body"], char_ngrams=False, ngram_range=(1, 1), hashed=False).fit(table)
    assert vocab.feature_names_ == sorted(vocab.feature_names_)  # the vocabulary's columns: sorted
    assert sorted(f.feature_names_) == vocab.feature_names_      # hashed: the same words, bucket order
    two = Featurizer(["body"], char_ngrams=False, ngram_range=(1, 2)).fit(table)
    assert "body:w:check out" in two.feature_names_


def test_min_df_prunes(table):
    g = Featurizer(["title", "body"], char_ngrams=False, min_df=2).fit(
        pa.table({"title": ["a b", "a c", "a d"], "body": ["x", "x", "y"]}))
    assert g.feature_names_ == ["title:w:a", "body:w:x"]


def test_round_trip_without_pickle(table):
    f = Featurizer(["body", "title"], numeric={"words(body)": words}).fit(table)
    d = json.loads(json.dumps(f.to_dict()))  # JSON-able
    g = Featurizer.from_dict(d, numeric={"words(body)": words})
    assert g.feature_names_ == f.feature_names_
    new = pa.table({"body": ["love this song refund"], "title": ["music"], "stars": [3.0]})
    assert (abs(g.transform(new) - f.transform(new))).max() == 0
    with pytest.raises(ValueError, match="callables missing on load: words"):
        Featurizer.from_dict(d)
    with pytest.raises(ValueError, match="not a saved mteach featurizer"):
        Featurizer.from_dict({"x": 1})


def test_phrase_vector_and_unknown_phrase(table):
    f = Featurizer(["body", "title"]).fit(table)
    v = f.phrase_vector("body", "refund")
    assert v[f.feature_names_.index("body:w:refund")] > 0
    assert not any(v[i] for i, n in enumerate(f.feature_names_) if n.startswith("title:"))
    with pytest.raises(ValueError, match="'chargeback' never occurs in the data"):
        f.phrase_vector("body", "chargeback")
    with pytest.raises(ValueError, match="not a text field"):
        f.phrase_vector("nope", "refund")


def test_numeric_direction(table):
    f = Featurizer(["body"], numeric={"words(body)": words}).fit(table)
    d = f.numeric_direction("words(body)")
    assert d.sum() == 1.0 and d[-1] == 1.0
    with pytest.raises(ValueError, match="did you mean 'words\\(body\\)'"):
        f.numeric_direction("word(body)")


def test_errors(table):
    with pytest.raises(ValueError, match="'nope' is not a column"):
        Featurizer(["nope"]).fit(table)
    with pytest.raises(ValueError, match="type double, expected a string"):
        Featurizer(["stars"]).fit(table)
    with pytest.raises(NotFittedError, match="not fitted"):
        Featurizer(["body"]).transform(table)
    with pytest.raises(ValueError, match="gave 1 values for 4 rows"):
        Featurizer(["body"], numeric={"bad": lambda t: np.zeros(1)}).fit(table)


def test_deterministic(table):
    a = Featurizer(["body"]).fit(table).to_dict()
    b = Featurizer(["body"]).fit(table).to_dict()
    assert a == b
