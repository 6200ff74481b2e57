"""The compiled featurizing kernel (numba) gives the numpy path's matrix bit for bit, on every
kind of text, with any number of threads; without numba (or with MTEACH_NO_NUMBA=1) the numpy
path is used and is right."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import scipy.sparse as sp

from mteach.engine import features
from mteach.engine.features import Featurizer

ROOT = str(Path(features.__file__).resolve().parents[2])
# word characters, punctuation, whitespace of several kinds, 2-, 3- and 4-byte characters,
# letters whose case folding changes their length
PIECES = ["free", "money", "song", "a", "I", "42", "!!!", "http://x.tk/", "ÉCOLE", "Straße", "naïve", "ΣΊΣΥΦΟΣ",
          "日本語", "テキスト", "🎵", "👍🏽", "a\u0301", "İstanbul", " ", "  ", "\t", "\n", "\u00a0", "\u3000", "-", ",",
          "x" * 300]


def random_texts(n: int, seed: int, ascii_only: bool = False) -> list:
    rng = np.random.default_rng(seed)
    pieces = [p for p in PIECES if p.isascii()] if ascii_only else PIECES
    texts = []
    for _ in range(n):
        kind = rng.random()
        if kind < 0.05:
            texts.append(None)
        elif kind < 0.1:
            texts.append("")
        elif kind < 0.15:
            texts.append(" \t\n " * int(rng.integers(1, 4)))  # whitespace only
        else:
            words = rng.choice(pieces, size=int(rng.integers(1, 30)))
            seps = rng.choice(["", " ", " ", ", "], size=len(words))
            texts.append("".join(w + s for w, s in zip(words, seps)))
    return texts


def numpy_path(f: Featurizer, table: pa.Table, monkeypatch) -> sp.csr_matrix:
    with monkeypatch.context() as m:
        m.setenv("MTEACH_NO_NUMBA", "1")
        assert features.compiled_kernel() is None
        return f.transform(table)


def assert_same_csr(a: sp.csr_matrix, b: sp.csr_matrix):
    """The same matrix, stored the same way: entries, their order and their bits."""
    assert a.shape == b.shape
    np.testing.assert_array_equal(a.indptr, b.indptr)
    np.testing.assert_array_equal(a.indices, b.indices)
    assert a.data.dtype == b.data.dtype == np.float32
    assert a.data.tobytes() == b.data.tobytes()


@pytest.fixture
def kernel():
    pytest.importorskip("numba")
    k = features.compiled_kernel()
    assert k is not None, "numba is installed, so the kernel must be used"
    return k


@pytest.mark.parametrize("ascii_only", [False, True], ids=["unicode", "ascii"])
@pytest.mark.parametrize("sublinear_tf", [False, True])
@pytest.mark.parametrize("ngrams", [((1, 2), (2, 4)), ((1, 3), (1, 3)), ((2, 2), (4, 6))], ids=str)
def test_kernel_gives_the_numpy_paths_matrix(kernel, monkeypatch, ascii_only, sublinear_tf, ngrams):
    word_range, char_range = ngrams
    fitted = pa.table({"text": pa.array(random_texts(300, 0, ascii_only), pa.string())})
    f = Featurizer(["text"], ngram_range=word_range, char_ngram_range=char_range, sublinear_tf=sublinear_tf,
                   hash_bits=16).fit(fitted)
    calls = []
    fill = kernel.fill
    monkeypatch.setattr(kernel, "fill", lambda *a, **k: calls.append(1) or fill(*a, **k))
    for table in (fitted, pa.table({"text": pa.array(random_texts(400, 1, ascii_only), pa.string())})):
        got = f.transform(table)  # the second table has n-grams not fitted: rows with gaps closed
        assert calls, "the kernel was not used"
        assert_same_csr(got, numpy_path(f, table, monkeypatch))
        assert got.nnz > 10 * table.num_rows


def test_kernel_on_arrow_layouts_several_fields_and_numeric_features(kernel, monkeypatch):
    texts = random_texts(200, 2)
    titles = random_texts(200, 3)
    table = pa.table({"text": pa.array(texts, pa.large_string()), "title": pa.array(titles, pa.string()),
                      "n": np.arange(200.0) % 7})
    numeric = {"n": lambda t: np.asarray(t.column("n"), dtype=float)}
    for lowercase in (True, False):  # without folding, the Arrow slice keeps its offset
        f = Featurizer(["text", "title"], numeric=numeric, lowercase=lowercase).fit(table)
        for part in (table, table.slice(37, 101), table.slice(199), table.slice(0, 0)):
            assert_same_csr(f.transform(part), numpy_path(f, part, monkeypatch))
    chunked = pa.Table.from_batches(table.to_batches(max_chunksize=64))
    assert_same_csr(f.transform(chunked), f.transform(table))


def test_very_long_rows_and_tokens(kernel, monkeypatch):
    long_token = "ab" * 40_000
    texts = [long_token, "word " * 20_000, "ü" * 5_000 + " x", "short"]
    table = pa.table({"text": texts})
    f = Featurizer(["text"]).fit(table)
    assert_same_csr(f.transform(table), numpy_path(f, table, monkeypatch))


def bucket_sets(bits: int) -> list:
    """Fitted buckets of every shape: none, all, the first and last, a few, half, and runs
    across the 64-bucket groups' edges."""
    size = 1 << bits
    rng = np.random.default_rng(bits)
    edges = np.array([b for b in (1, 62, 63, 64, 65, 127, 128, 129) if b < size], dtype=np.int64)
    return [np.zeros(0, np.int64), np.arange(size), np.unique([0, size - 1]), edges,
            np.flatnonzero(rng.random(size) < 0.03), np.flatnonzero(rng.random(size) < 0.5)]


@pytest.mark.parametrize("bits", [1, 5, 6, 7, 16])
def test_lookup_table_gives_every_buckets_column(kernel, monkeypatch, bits):
    """The compact bucket -> column table gives every bucket, fitted or not, the column a
    plain 2^bits table would (-1: not fitted): numpy's lookup (with and without numpy 2's
    popcount) and the kernel's, whose hash keeps its bucket in the top bits."""
    size, shift = 1 << bits, np.uint64(64 - bits)
    every = np.arange(size)
    sets = bucket_sets(bits)
    tables = features.lookup_tables(sets, bits)
    assert tables.shape == (len(sets), max(1, size // 64), 2) and tables.nbytes == len(sets) * max(16, size // 4)
    low = np.random.default_rng(0).integers(0, 1 << 63, size=size, dtype=np.uint64) >> np.uint64(bits - 1)
    hashes = (every.astype(np.uint64) << shift) | low  # the bits under the bucket's must not matter
    for table, buckets in zip(tables, sets):
        plain = np.full(size, -1)
        plain[buckets] = np.arange(len(buckets))
        np.testing.assert_array_equal(features.bucket_columns(table, every), plain)
        assert [kernel._column(table, h, shift) for h in hashes] == plain.tolist()
    with monkeypatch.context() as m:
        m.delattr(np, "bitwise_count", raising=False)
        for table, buckets in zip(tables, sets):
            got = features.bucket_columns(table, every)
            assert (got[buckets] == np.arange(len(buckets))).all() and (np.delete(got, buckets) == -1).all()


def test_a_saved_featurizer_with_buckets_out_of_order_is_refused():
    f = Featurizer(["text"], hash_bits=8).fit(pa.table({"text": ["free money now", "love this song"]}))
    for bad in ([5, 3], [1, 1], [-1, 2], [2, 256]):
        d = f.to_dict()
        d["blocks"][0]["buckets"] = bad
        with pytest.raises(ValueError, match=r"block text:w: its buckets are not increasing numbers below 2\^8"):
            Featurizer.from_dict(d)


def test_same_matrix_with_any_number_of_threads(kernel):
    import numba
    table = pa.table({"text": pa.array(random_texts(3000, 4), pa.string())})
    f = Featurizer(["text"], hash_bits=14).fit(table.slice(0, 500))  # many n-grams not fitted
    before = numba.get_num_threads()
    try:
        results = []
        for threads in sorted({1, min(2, numba.config.NUMBA_NUM_THREADS), numba.config.NUMBA_NUM_THREADS}):
            numba.set_num_threads(threads)
            results.append(f.transform(table))
    finally:
        numba.set_num_threads(before)
    for other in results[1:]:
        assert_same_csr(other, results[0])
    assert_same_csr(f.transform(table), results[0])  # and run after run


def test_fallback_without_numba_is_used_and_right(monkeypatch):
    """Without numba (the core install) the featurizer still works: the numpy path, which the
    plain-Python reference of test_features_hashed checks; MTEACH_NO_NUMBA=1 chooses it too."""
    code = ("import sys; sys.modules['numba'] = None\n"  # import numba fails, as when it is not installed
            "import numpy as np, pyarrow as pa\n"
            "from mteach.engine import features\n"
            "t = pa.table({'text': ['free money now', 'love this song', None, '']})\n"
            "X = features.Featurizer(['text']).fit(t).transform(t)\n"
            "X.sum_duplicates()\n"
            "assert features.compiled_kernel() is None and 'mteach.engine.ngram_kernel' not in sys.modules\n"
            "print(X.shape[0], X.nnz, round(float(X.multiply(X).sum()), 4))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": ROOT}).stdout.split()
    assert out[0] == "4" and int(out[1]) > 20 and out[2] == "4.0"  # 2 non-empty rows x 2 blocks of unit norm
    monkeypatch.setenv("MTEACH_NO_NUMBA", "1")
    assert features.compiled_kernel() is None
    monkeypatch.setenv("MTEACH_NO_NUMBA", "0")
    assert (features.compiled_kernel() is None) == (pytest.importorskip("numba") is None)


def test_sparse_dot_is_scipys_product(kernel):
    X = sp.random(3000, 700, density=0.05, format="csr", random_state=0, dtype=np.float32)
    W = np.random.default_rng(0).standard_normal((700, 3)).astype(np.float32)
    assert kernel.sparse_dot(X, W).tobytes() == (X @ W).tobytes()
    assert kernel.sparse_dot(X[:0], W).shape == (0, 3)


def test_threads_may_featurize_and_score_at_once(kernel):
    """The studio trains on a thread while the app runs: kernels called from several threads
    at once take turns (numba's workqueue layer would abort the process), with the same
    results. In a child process, so a regression fails this test instead of killing pytest."""
    code = """if True:
        import numpy as np, pyarrow as pa, scipy.sparse as sp
        from concurrent.futures import ThreadPoolExecutor
        from mteach.engine import ngram_kernel
        from mteach.engine.features import Featurizer
        rng = np.random.default_rng(0)
        words = np.array(["free", "money", "song", "love", "ça", "va", "🎵", "now"])
        t = pa.table({"text": [" ".join(rng.choice(words, 20)) for _ in range(3000)]})
        f = Featurizer(["text"]).fit(t)
        W = rng.standard_normal((f.n_features_, 2)).astype(np.float32)
        def work(i):
            X = f.transform(t)
            return X.data.sum(), ngram_kernel.sparse_dot(X, W).sum()
        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(work, range(16)))
        assert len(set(results)) == 1, results
        print("ok")
    """
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": ROOT})
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


@pytest.mark.parametrize("sublinear_tf", [False, True])
def test_scores_without_the_matrix_are_the_products_with_it(kernel, monkeypatch, sublinear_tf):
    """A linear model's scores straight from the text (Featurizer.dot) are transform(X) @ W to
    the bit, through the kernel and through the numpy path."""
    table = pa.table({"text": pa.array(random_texts(400, 5), pa.string()),
                      "title": pa.array(random_texts(400, 6), pa.large_string()), "n": np.arange(400.0) % 5})
    f = Featurizer(["text", "title"], numeric={"n": lambda t: np.asarray(t.column("n"), dtype=float)},
                   sublinear_tf=sublinear_tf).fit(table.slice(0, 150))  # later rows have n-grams not fitted
    W = np.random.default_rng(0).standard_normal((f.n_features_, 3)).astype(np.float32)
    product = f.transform(table) @ W
    assert f.dot(table, W).tobytes() == product.tobytes()
    with monkeypatch.context() as m:
        m.setenv("MTEACH_NO_NUMBA", "1")
        assert f.dot(table, W).tobytes() == product.tobytes()
    assert f.dot(table.slice(0, 0), W).shape == (0, 3)
    with pytest.raises(ValueError, match="rows for"):
        f.dot(table, W[:-1])


def test_predict_path_scores_a_linear_model_as_its_predict_proba():
    """predict's end-model probabilities (scores from the text) are predict_proba of the
    features, chunk by chunk, for a linear model; an MLP goes through the matrix."""
    from mteach.engine.end_model import EndModel
    from mteach.engine.train import end_model_raw_proba
    table = pa.table({"text": pa.array(random_texts(500, 7), pa.string())})
    f = Featurizer(["text"]).fit(table)
    X = f.transform(table)
    y = np.arange(500) % 2
    for model in (EndModel(epochs=2, device="cpu").fit(X, y), EndModel(hidden=3, epochs=2, device="cpu").fit(X, y)):
        got = end_model_raw_proba(f, model, table, chunk_rows=128)
        assert got.tobytes() == model.predict_proba(X).tobytes()
