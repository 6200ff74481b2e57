"""Hashed n-gram features: the same n-grams as a plain-Python reference, deterministic across
processes, stateless per batch (streaming), and models saved before hashing still predict."""
import json
import math
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import scipy.sparse as sp

from mteach.compiler.tokens import fold
from mteach.engine import features
from mteach.engine.features import Featurizer, ngram_bucket

TEXTS = ["Check out my channel!!! http://x.tk", "nice song, love it <3", None, "refund please refund",
         "", "   ", "ÉCOLE  Straße naïve a b", "I", "ab", "subscribe subscribe SUBSCRIBE now",
         "日本語のテキスト ok", "tab\tseparated\nlines  here"]
FIXTURE = Path(__file__).parent / "data" / "model_before_hashing"


def reference_ngrams(text, word_range, char_range) -> tuple:
    """Word and char_wb n-grams of one text, in plain Python (scikit-learn's char_wb rule)."""
    text = fold(text or "")
    words, run = [], ""
    for ch in text + " ":
        if ch.isalnum():
            run += ch
        elif run:
            words.append(run)
            run = ""
    w = [" ".join(words[i:i + n]) for n in range(word_range[0], word_range[1] + 1)
         for i in range(len(words) - n + 1)]
    c = []
    for word in text.split():
        padded = f" {word} "
        for n in range(char_range[0], char_range[1] + 1):
            if len(padded) <= n:
                if n == char_range[0] or len(padded) == n:
                    c.append(padded)
                break
            c.extend(padded[i:i + n] for i in range(len(padded) - n + 1))
    return w, c


def reference_matrix(f: Featurizer, texts) -> np.ndarray:
    """The featurizer's matrix computed from the reference n-grams: per occurrence idf / |row|."""
    dense = np.zeros((len(texts), f.n_features_))
    for r, text in enumerate(texts):
        grams = reference_ngrams(text, f.ngram_range, f.char_ngram_range)
        for b, kind in enumerate(("w", "c")):
            column = {int(k): i for i, k in enumerate(f.buckets_[b])}
            counts = Counter(column.get(ngram_bucket(g, f.hash_bits)) for g in grams[b])
            counts.pop(None, None)
            norm = math.sqrt(sum(c * f.idfs_[b][j] ** 2 for j, c in counts.items()))
            for j, c in counts.items():
                dense[r, f.block_offsets_[b] + j] = c * f.idfs_[b][j] / norm
    return dense


ASCII = [t for t in TEXTS if t is None or t.isascii()]  # the ASCII-only path (bytes are characters)


@pytest.mark.parametrize("texts", [TEXTS, ASCII], ids=["unicode", "ascii"])
@pytest.mark.parametrize("char_range", [(2, 4), (4, 6), (1, 3)])
def test_same_ngrams_as_a_plain_python_reference(char_range, texts):
    table = pa.table({"text": pa.array(texts, pa.string())})
    f = Featurizer(["text"], ngram_range=(1, 3), char_ngram_range=char_range).fit(table)
    expected = set()
    for text in texts:
        w, c = reference_ngrams(text, (1, 3), char_range)
        expected |= {f"text:w:{g}" for g in w} | {f"text:c:{g}" for g in c}
    assert set(f.feature_names_) == expected  # every n-gram, named after itself (no collision here)
    X = f.transform(table)
    X.sum_duplicates()
    np.testing.assert_allclose(X.toarray(), reference_matrix(f, texts), rtol=1e-6, atol=1e-7)
    assert "text:c: i " in f.feature_names_ or char_range[0] > 3  # a one-letter word, padded
    assert "text:w:subscribe subscribe subscribe" in f.feature_names_  # case-folded, as `has` folds


def test_vectorized_bucket_matches_the_python_definition():
    table = pa.table({"text": ["héllo wörld", "a"]})
    f = Featurizer(["text"], hash_bits=12).fit(table)
    for b, terms in enumerate(f.terms_):
        assert [ngram_bucket(t, 12) for t in terms] == f.buckets_[b].tolist()


def test_deterministic_across_processes():
    table = pa.table({"text": pa.array(TEXTS, pa.string())})
    here = Featurizer(["text"]).fit(table).to_dict()
    code = ("import json, sys, pyarrow as pa; from mteach.engine.features import Featurizer; "
            "t = pa.table({'text': pa.array(json.loads(sys.argv[1]), pa.string())}); "
            "print(json.dumps(Featurizer(['text']).fit(t).to_dict()))")
    env = {**os.environ, "PYTHONHASHSEED": "12345",
           "PYTHONPATH": str(Path(features.__file__).resolve().parents[2])}
    out = subprocess.run([sys.executable, "-c", code, json.dumps(TEXTS)], capture_output=True, text=True,
                         env=env, check=True).stdout
    assert json.loads(out) == json.loads(json.dumps(here))


def test_transform_streams(monkeypatch):
    rng = np.random.default_rng(0)
    words = ["free", "money", "song", "love", "check", "out", "my", "channel", "ça", "va", "🎵"]
    texts = [" ".join(rng.choice(words, size=rng.integers(0, 12))) for _ in range(300)]
    table = pa.table({"text": texts})
    f = Featurizer(["text"]).fit(table)
    whole = f.transform(table)
    halves = sp.vstack([f.transform(table.slice(0, 137)), f.transform(table.slice(137))])
    assert (whole != halves).nnz == 0
    monkeypatch.setattr(features, "_SUB_BATCH_BYTES", 64)  # many sub-batches inside one transform
    assert (f.transform(table) != whole).nnz == 0
    refit = Featurizer(["text"]).fit(table)  # fitting in sub-batches finds the same buckets and idf
    assert refit.to_dict() == f.to_dict()


def test_unseen_ngrams_are_dropped_and_names_stay_readable():
    f = Featurizer(["text"]).fit(pa.table({"text": ["free money now", "love this song"]}))
    X = f.transform(pa.table({"text": ["zzzz qqqq", "free song"]}))
    assert X[0].nnz == 0 and X[1].nnz > 0
    assert "text:w:free" in f.feature_names_ and "text:c: fr" in f.feature_names_
    with pytest.raises(ValueError, match="never occurs in the data"):
        f.phrase_vector("text", "zzzz")
    v = f.phrase_vector("text", "free")
    assert v[f.feature_names_.index("text:w:free")] > 0


def test_bad_hash_bits():
    with pytest.raises(ValueError, match="hash_bits must be an integer from 1 to 24"):
        Featurizer(["text"], hash_bits=40).fit(pa.table({"text": ["a"]}))


def test_vocabulary_format_still_loads():
    """A featurizer saved before hashing (format version 1) loads as the vocabulary featurizer."""
    table = pa.table({"text": ["free money", "love song"]})
    old = {"format": "mteach.featurizer", "version": 1,
           "params": {"text_fields": ["text"], "ngram_range": [1, 1], "char_ngrams": False,
                      "char_ngram_range": [2, 5], "min_df": 1, "max_features": None,
                      "sublinear_tf": False, "lowercase": True},
           "numeric_names": [], "blocks": [{"field": "text", "kind": "w", "terms": ["free", "love", "money", "song"],
                                            "idf": [1.5, 1.5, 1.5, 1.5]}],
           "numeric_mean": [], "numeric_std": []}
    f = Featurizer.from_dict(old)
    assert not f.hashed and f.feature_names_ == ["text:w:free", "text:w:love", "text:w:money", "text:w:song"]
    np.testing.assert_allclose(f.transform(table).toarray(), np.array([[1, 0, 1, 0], [0, 1, 0, 1]]) / math.sqrt(2),
                               rtol=1e-6)
    assert Featurizer.from_dict(json.loads(json.dumps(f.to_dict()))).to_dict() == f.to_dict()
    assert f.to_dict()["version"] == 1


def test_model_saved_before_hashing_predicts_the_same(tmp_path):
    """A whole model folder written by mteach before hashed features (vocabulary featurizer,
    end model with hints) loads and predicts what it predicted then."""
    from mteach.cli import main
    out = tmp_path / "pred.parquet"
    code = main(["predict", str(FIXTURE / "model"), str(FIXTURE / "new.parquet"), "-o", str(out),
                 "--id", "COMMENT_ID"])
    assert code == 0
    then, now = pq.read_table(FIXTURE / "pred.parquet"), pq.read_table(out)
    assert now.column("label").to_pylist() == then.column("label").to_pylist()
    np.testing.assert_allclose(now.column("p_SPAM").to_numpy(), then.column("p_SPAM").to_numpy(), atol=1e-6)
    assert json.loads((FIXTURE / "model" / "model.json").read_text())["featurizer"]["version"] == 1
