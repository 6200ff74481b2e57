"""Featurizer for the end model: TF-IDF n-grams of text fields plus standardized numeric features.

Two ways to find a text's n-grams (the ``hashed`` parameter):

* hashed (the default): word n-grams (runs of letters and digits, the words ``has``
  matches, from :mod:`mteach.compiler.tokens`) and ``char_wb`` character n-grams (each
  whitespace-separated word padded with a space each side) are computed with numpy over
  the case-folded UTF-8 bytes of the Arrow column, no Python per row: each n-gram's bytes
  get a deterministic 64-bit polynomial hash, kept to ``hash_bits`` bits (a bucket).
  ``fit`` keeps the buckets seen in the fitted rows (``min_df``, ``max_features``), with
  their idf and, as the bucket's name, the first n-gram seen in it (a bucket shared by
  two n-grams is named after one of them: at 2^20 buckets per block such a sharing is rare
  among the frequent n-grams that explanations show). ``transform`` is a table lookup per
  n-gram, so a batch's features depend on that batch alone and prediction streams. Each
  occurrence of an n-gram is one entry (a repeated n-gram is several entries of one
  column; products sum them, ``sum_duplicates`` merges them), so no batch is sorted.
  ``transform`` runs a compiled kernel (:mod:`mteach.engine.ngram_kernel`, numba: the
  n-grams of each row hashed, looked up and scaled in one pass, rows in parallel) when numba
  is installed (the ``train`` extra) and ``MTEACH_NO_NUMBA=1`` is not set; otherwise the
  numpy path. Both give the same matrix, bit for bit; ``fit`` uses the numpy path (it
  names the buckets).
* vocabulary (``hashed=False``, and every model saved before hashing, FORMAT_VERSION 1):
  scikit-learn ``CountVectorizer`` over Python strings, exact n-gram vocabulary; several
  times slower (bench/README.md).

Follows scikit-learn's estimator contract: ``__init__`` stores parameters, ``fit``
learns the vocabulary / idf / scaler statistics (attributes ending in ``_``) and
returns ``self``, ``transform`` gives a ``scipy.sparse.csr_matrix`` of float32.

Feature space layout (``feature_names_`` tells the name of every column)::

    [ field1 words | field1 chars | field2 words | ... | numeric features ]

Word features are named ``"<field>:w:<ngram>"``, character n-grams
``"<field>:c:<ngram>"`` and numeric features ``"num:<name>"``. Each text block is
L2-normalised per row on its own (hashed: over the occurrences, sqrt of the sum of their
idf^2), so a field's weight does not depend on how many n-grams another field has.

Nothing is pickled: ``to_dict()`` returns plain JSON-able data (vocabulary, idf,
scaler statistics, parameters); ``from_dict(d, numeric=...)`` rebuilds the fitted
featurizer, the numeric callables being supplied again by the caller.
"""
from __future__ import annotations

import os
from typing import Callable, Mapping, Optional, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp
from sklearn.base import BaseEstimator
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.preprocessing import normalize
from sklearn.utils.validation import check_is_fitted

from mteach.compiler.tokens import char_class, char_table, flag_runs, fold_case, powers, utf8_views

FORMAT_VERSION = 2          # hashed n-grams; version 1 (vocabulary) still loads
VOCABULARY_FORMAT_VERSION = 1
MAX_HASH_BITS = 24          # the bucket -> column table is 2^bits / 4 bytes per block
_SUB_BATCH_BYTES = 1 << 20  # n-grams are computed on about this many text bytes at a time

# One token pattern for words: runs of word characters, single letters included
# (sklearn's default drops one-character tokens, which loses "u", "i", digits...).
_TOKEN_PATTERN = r"(?u)\b\w+\b"


def lookup_tables(buckets: list, bits: int) -> np.ndarray:
    """Each block's bucket -> column table (blocks x 2^``bits``/64 x 2, uint64; ``buckets``:
    each block's fitted buckets, increasing, column i is bucket i): per 64 buckets, a bit
    per fitted one and how many fitted buckets come before them. 2^20 buckets take 256 KB
    (an int32 per bucket would take 4 MB, past the cache); ``bucket_columns`` and the
    compiled kernel's ``_column`` read it."""
    groups = max(1, (1 << bits) >> 6)
    tables = np.zeros((len(buckets), groups, 2), dtype=np.uint64)
    for t, b in zip(tables, buckets):
        b = np.asarray(b, dtype=np.int64)
        np.bitwise_or.at(t[:, 0], b >> 6, np.left_shift(np.uint64(1), (b & 63).astype(np.uint64)))
        t[1:, 1] = np.cumsum(np.bincount(b >> 6, minlength=groups))[:-1]
    return tables


def _popcount(x: np.ndarray) -> np.ndarray:
    if hasattr(np, "bitwise_count"):  # numpy 2
        return np.bitwise_count(x)
    return _BYTE_BITS[x.view(np.uint8).reshape(-1, 8)].sum(axis=1, dtype=np.int64)


_BYTE_BITS = np.array([bin(i).count("1") for i in range(256)], dtype=np.int64)


def bucket_columns(table: np.ndarray, buckets: np.ndarray) -> np.ndarray:
    """The columns of ``buckets`` in a block's table (``lookup_tables``), -1 for buckets not
    fitted (int64)."""
    buckets = np.asarray(buckets, dtype=np.int64)
    flat = table.reshape(-1)
    at = (buckets >> 6) << 1
    below = flat[at]
    below <<= (63 - (buckets & 63)).astype(np.uint64)  # its bit on top, those below it under
    cols = flat[at + 1].view(np.int64)
    cols += _popcount(below)
    cols -= 1
    cols[below < np.uint64(1 << 63)] = -1
    return cols


def _column_texts(table: pa.Table, field: str) -> list:
    _column_texts_check(table, field)
    return ["" if v is None else v for v in table.column(field).to_pylist()]


def _column_texts_check(table: pa.Table, field: str) -> None:
    if field not in table.column_names:
        raise ValueError(
            f"text field {field!r} is not a column of the data "
            f"(columns: {', '.join(table.column_names)})"
        )
    col = table.column(field)
    if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)
            or pa.types.is_null(col.type)):
        raise ValueError(f"text field {field!r} has type {col.type}, expected a string column")


def _column_array(table: pa.Table, field: str, lowercase: bool) -> pa.Array:
    """A text field as one ``string`` array, nulls as "", case-folded as ``has`` folds it."""
    _column_texts_check(table, field)
    col = table.column(field)
    if pa.types.is_null(col.type):
        return pa.array([""] * table.num_rows, pa.string())
    arr = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    arr = pc.fill_null(arr.cast(pa.string()), "")
    return fold_case(arr) if lowercase else arr


# ---- hashed n-grams over Arrow (no Python per row) ------------------------------------------
#
# An n-gram's hash is computed from the UTF-8 bytes of its text s: H(s) = sum_j s[j] * B^-j
# (mod 2^64; B is odd, so it has an inverse). One prefix sum over a batch's bytes gives the
# hash of any span in O(1) (numpy's uint64 arithmetic wraps mod 2^64), and the hash of a
# padded or space-joined n-gram follows from its parts. The bucket is the top ``bits`` bits
# of H * M (mod 2^64; Fibonacci hashing: on the YouTube n-grams as many distinct buckets
# as a random function would give). ``ngram_bucket`` is the plain-Python definition.
_B = 0x100000001B3  # FNV-1's 64-bit prime
_B_INV = pow(_B, -1, 1 << 64)
_U64 = np.uint64
_SPACE = _U64(32)
_MIX = _U64(0x9E3779B97F4A7C15)  # 2^64 / golden ratio, odd


def ngram_bucket(text: str, bits: int) -> int:
    """The bucket of one n-gram given as its exact text (pads and joining spaces included)."""
    h, m = 0, (1 << 64) - 1
    for j, byte in enumerate(text.encode("utf-8")):
        h = (h + byte * pow(_B_INV, j, 1 << 64)) & m
    return ((h * int(_MIX)) & m) >> (64 - bits)


class _Bytes:
    """Consecutive UTF-8 texts as one byte array, with the prefix sums that hash any span."""

    def __init__(self, b: np.ndarray, extra: int = 0):
        self.b = b
        n = len(b)
        self.inv = powers(_B_INV, n + 3)  # B^-j
        self.pow = powers(_B, n + 1)      # B^j
        self.prefix = np.empty(n + 1 + extra, dtype=_U64)  # ``extra`` copies of the total at the end
        self.prefix[0] = 0
        np.cumsum(b.astype(_U64) * self.inv[:n], out=self.prefix[1:n + 1])
        self.prefix[n + 1:] = self.prefix[n]

    def span_hash(self, s, e) -> np.ndarray:
        """H of the bytes [s, e) (each pair), as if they started a string."""
        return (self.prefix[e] - self.prefix[s]) * self.pow[s]

    def text(self, s: int, e: int) -> str:
        return self.b[s:e].tobytes().decode("utf-8", errors="replace")


def _bucket(h: np.ndarray, bits: int, mixed: bool = False) -> np.ndarray:
    """Buckets of the hashes ``h`` (overwritten; ``mixed``: already multiplied by M)."""
    if not mixed:
        h *= _MIX
    h >>= _U64(64 - bits)
    return h.view(np.int64)


_ASCII_CLASSES: dict = {}


def _classes(b: np.ndarray, name: str) -> np.ndarray:
    """``char_class(b, name)``, by a 128-entry table when every byte is ASCII."""
    if len(b) and int(b.max()) < 0x80:
        if name not in _ASCII_CLASSES:
            _ASCII_CLASSES[name] = char_table(name)[:0x80].copy()
        return _ASCII_CLASSES[name][b]
    return char_class(b, name)


def _row_pointers(per_unit: np.ndarray, unit_row: np.ndarray, n_rows: int) -> np.ndarray:
    """Where each row's n-grams start in the n-gram arrays (n_rows + 1 values), from the
    number of n-grams starting at each unit (token or character) and each unit's row."""
    ends = np.zeros(len(per_unit) + 1, dtype=np.int64)
    np.cumsum(per_unit, out=ends[1:])
    return ends[np.searchsorted(unit_row, np.arange(n_rows + 1))]


def _no_ngrams(offsets: np.ndarray) -> tuple:
    return np.zeros(len(offsets), dtype=np.int64), np.zeros(0, dtype=np.int64), None


def _word_ngrams(b: np.ndarray, offsets: np.ndarray, lo: int, hi: int, bits: int, names: bool) -> tuple:
    """(row pointers, buckets, name_of) of every word n-gram, n in [lo, hi]: n consecutive
    word tokens of one row joined by one space, in row order. ``name_of(i)`` (with
    ``names``) is the text of n-gram i."""
    starts, ends = flag_runs(_classes(b, "word"), offsets)
    if len(starts) == 0:
        return _no_ngrams(offsets)
    row = np.searchsorted(offsets, starts, side="right") - 1
    t = _Bytes(b)
    h1, l1 = t.span_hash(starts, ends), (ends - starts).astype(np.int64)
    T, width = len(starts), hi - lo + 1
    hashes = np.zeros((T, width), dtype=_U64)
    valid = np.zeros((T, width), dtype=bool)
    h, length, ok, at = h1, l1, np.ones(T, dtype=bool), np.arange(T)
    for n in range(1, hi + 1):
        if n > 1:  # H(a + " " + b) = H(a) + 32 B^-|a| + B^-(|a|+1) H(b)
            nxt = np.minimum(at + n - 1, max(T - 1, 0))
            ok = ok & (at + n - 1 < T) & (row[nxt] == row)
            h = h + _SPACE * t.inv[length] + t.inv[length + 1] * h1[nxt]
            length = np.minimum(length + 1 + l1[nxt], len(b))  # (clipped only where not ok)
        if n >= lo:
            hashes[:, n - lo], valid[:, n - lo] = h, ok
    keep = valid.ravel()
    ptr = _row_pointers(valid.sum(axis=1), row, len(offsets) - 1)
    buckets = _bucket(hashes.ravel()[keep], bits)
    if not names:
        return ptr, buckets, None
    flat = np.flatnonzero(keep)

    def name_of(i: int) -> str:
        first, n = divmod(int(flat[i]), width)
        return " ".join(t.text(int(starts[first + k]), int(ends[first + k])) for k in range(n + lo))
    return ptr, buckets, name_of


def _char_ngrams(b: np.ndarray, offsets: np.ndarray, lo: int, hi: int, bits: int, names: bool) -> tuple:
    """(row pointers, buckets, name_of) of every character n-gram, n in [lo, hi], as
    scikit-learn's ``char_wb`` makes them, in row order: each whitespace-separated word padded
    with one space on each side, the windows of n characters inside it, and a padded word
    shorter than ``lo`` once whole. The padded words are laid end to end in a new byte array."""
    ws, we = flag_runs(~_classes(b, "space"), offsets)
    if len(ws) == 0:
        return _no_ngrams(offsets)
    padded = (we - ws).astype(np.int64) + 2
    pstart = np.cumsum(padded) - padded
    src = np.arange(int(padded.sum())) + np.repeat(ws - pstart - 1, padded)
    p = b[np.clip(src, 0, max(len(b) - 1, 0))] if len(b) else np.zeros(len(src), np.uint8)
    p[pstart] = 32
    p[pstart + padded - 1] = 32
    t = _Bytes(p, extra=hi)
    ascii_only = not (p >= 0x80).any()
    if ascii_only:  # characters are bytes
        seg_start, seg_len = pstart, padded
    else:
        char_at = np.flatnonzero((p & 0xC0) != 0x80)
        seg_start = np.searchsorted(char_at, pstart)
        seg_len = np.diff(np.append(seg_start, len(char_at)))
        char_at = np.append(char_at, np.full(hi, len(p)))
    G, width = int(seg_len.sum()), hi - lo + 1
    room = (np.repeat(seg_start + seg_len, seg_len) - np.arange(G)).astype(np.int32)  # characters left in the word
    valid = room[:, None] >= np.arange(lo, hi + 1, dtype=np.int32)[None, :]  # (character, n): row order
    windows = np.lib.stride_tricks.sliding_window_view
    if ascii_only:  # prefix[g + n] for every (g, n), a view; times B^g M: hashed and mixed
        hashes = windows(t.prefix[lo:G + hi], width) - t.prefix[:G, None]
        hashes *= (t.pow[:G] * _MIX)[:, None]
    else:
        s = char_at[:G]
        hashes = t.prefix[windows(char_at[lo:G + hi], width)] - t.prefix[s][:, None]
        hashes *= (t.pow[s] * _MIX)[:, None]
    is_short = seg_len < lo
    if is_short.any():  # a padded word shorter than lo: once, whole
        short, e = seg_start[is_short], seg_start[is_short] + seg_len[is_short]
        valid[short, 0] = True
        hashes[short, 0] = _MIX * (t.span_hash(short, e) if ascii_only else
                                   t.span_hash(char_at[short], char_at[e]))
    keep = valid.ravel()
    # n-grams per padded word of c characters: sum over n of max(c - n + 1, 0), or 1 when c < lo
    per_word = np.maximum(seg_len[:, None] - np.arange(lo, hi + 1)[None, :] + 1, 0).sum(axis=1)
    per_word[is_short] = 1
    ptr = _row_pointers(per_word, np.searchsorted(offsets, ws, side="right") - 1, len(offsets) - 1)
    buckets = _bucket(hashes.ravel()[keep], bits, mixed=True)
    if not names:
        return ptr, buckets, None
    flat = np.flatnonzero(keep)

    def name_of(i: int) -> str:
        s, n = divmod(int(flat[i]), width)
        e = min(s + n + lo, int(s + room[s]))
        if not ascii_only:
            s, e = int(char_at[s]), int(char_at[e])
        return t.text(s, e)
    return ptr, buckets, name_of


def _ngrams(kind: str, arr: pa.Array, word_range, char_range, bits: int, names: bool = False) -> tuple:
    b, offsets, _ = utf8_views(arr)
    if kind == "w":
        return _word_ngrams(b, offsets, int(word_range[0]), int(word_range[1]), bits, names)
    return _char_ngrams(b, offsets, int(char_range[0]), int(char_range[1]), bits, names)


def _row_slices(arrays: list, n_rows: int) -> list:
    """(first row, end row) of consecutive slices of about ``_SUB_BATCH_BYTES`` text bytes
    over all ``arrays`` (n-gram arrays are several times the text, so they are built a
    slice at a time, while they fit in the caches)."""
    total = np.zeros(n_rows + 1, dtype=np.int64)
    for arr in arrays:
        offsets = np.frombuffer(arr.buffers()[1], np.int32, len(arr) + 1, arr.offset * 4)
        total += offsets - offsets[0]
    cuts = np.searchsorted(total, np.arange(_SUB_BATCH_BYTES, int(total[-1]), _SUB_BATCH_BYTES))
    bounds = np.unique(np.concatenate([[0], cuts, [n_rows]])).tolist()
    return list(zip(bounds[:-1], bounds[1:])) or [(0, 0)]


def _sub_batches(arr: pa.Array):
    """Slices of one array, as ``_row_slices`` cuts it."""
    for lo, hi in _row_slices([arr], len(arr)):
        yield lo, arr.slice(lo, hi - lo)


def _concat_rows(parts: list, width: int) -> sp.csr_matrix:
    """CSR matrices with the same columns, one under the other (their arrays concatenated)."""
    if len(parts) == 1:
        return parts[0]
    shift = np.cumsum([0] + [p.nnz for p in parts[:-1]])
    indptr = np.concatenate([parts[0].indptr[:1]] + [p.indptr[1:] + s for p, s in zip(parts, shift)])
    return sp.csr_matrix((np.concatenate([p.data for p in parts]), np.concatenate([p.indices for p in parts]),
                          indptr), shape=(len(indptr) - 1, width))


def _count_matrix(ptr: np.ndarray, cols: np.ndarray, width: int) -> sp.csr_matrix:
    """How often each column occurs in each row (``ptr``: where each row's entries start), as
    a canonical float64 CSR matrix (a sort per row)."""
    m = sp.csr_matrix((np.ones(len(cols)), cols, ptr), shape=(len(ptr) - 1, width))
    m.sum_duplicates()
    return m


def _log_counts(top: int) -> np.ndarray:
    """Sublinear tf's table for the kernel: 1 + log(count) at index count, for counts up to
    ``top`` (index 0 unused; -1: an empty table, sublinear tf off)."""
    if top < 0:
        return np.zeros(0)
    return np.concatenate([[0.0], 1.0 + np.log(np.arange(1, top + 1, dtype=np.float64))])


def _most_ngrams(lo: int, hi: int, byte_lengths: np.ndarray) -> int:
    """An upper bound on the n-grams of sizes ``lo``..``hi`` a row of these byte lengths can
    have (what ``_log_counts`` must cover when the counts are not known beforehand)."""
    return 3 * (hi - lo + 1) * (int(byte_lengths.max(initial=0)) + 3)


def _row_normalised(ptr: np.ndarray, values: np.ndarray) -> np.ndarray:
    """``values`` (float64) divided by their row's L2 norm, as float32. Each row's sum of
    squares is added up in entry order (``bincount``), as the compiled kernel adds it."""
    lengths = np.diff(ptr)
    rows = np.repeat(np.arange(len(lengths)), lengths)
    norm = np.sqrt(np.bincount(rows, weights=values * values, minlength=len(lengths)))
    return (values / np.repeat(np.where(norm > 0, norm, 1.0), lengths)).astype(np.float32)


_KERNEL = None


def compiled_kernel():
    """The compiled kernel (``mteach.engine.ngram_kernel``), or None when numba is not
    installed or ``MTEACH_NO_NUMBA=1`` asks for the numpy path (read at each call)."""
    global _KERNEL
    if os.environ.get("MTEACH_NO_NUMBA", "") not in ("", "0"):
        return None
    if _KERNEL is None:
        try:
            from mteach.engine import ngram_kernel
        except ImportError:
            ngram_kernel = False
        _KERNEL = ngram_kernel
    return _KERNEL or None


class Featurizer(BaseEstimator):
    """Text n-gram TF-IDF + standardized numeric features, from a ``pyarrow.Table``.

    A scikit-learn transformer: ``get_params``/``set_params``, ``sklearn.base.clone`` (an
    unfitted copy with the same parameters) and ``NotFittedError`` before ``fit``.  Its
    input is a table, not a matrix, so it has no ``n_features_in_``; ``n_features_`` is
    the width of the feature space it produces.

    Parameters
    ----------
    text_fields: column names of the text fields.
    numeric: ``{name: callable(table) -> 1-d array}``; each callable computes one
        numeric feature column from the table (a number field, a spec measure such
        as ``words(text)``). Missing values (NaN) become the training mean.
    ngram_range: word n-gram range, e.g. ``(1, 2)``.
    char_ngrams: add character n-grams (within word boundaries, ``char_wb``).
    char_ngram_range: their lengths.
    min_df: minimum number of rows an n-gram must occur in to enter the vocabulary.
    max_features: keep at most this many n-grams per block (most frequent first);
        ``None`` keeps all.
    sublinear_tf: use ``1 + log(tf)`` instead of raw counts.
    lowercase: lowercase text before tokenizing.
    hashed: hashed n-grams over the Arrow bytes (fast, streams) instead of
        scikit-learn's vocabulary over Python strings (see the module's docstring).
    hash_bits: with ``hashed``, each block hashes n-grams into 2^hash_bits buckets
        (at most ``MAX_HASH_BITS``); the columns are the buckets seen when fitting.
    """

    def __init__(
        self,
        text_fields: Sequence[str] = ("text",),
        numeric: Optional[Mapping[str, Callable[[pa.Table], np.ndarray]]] = None,
        ngram_range: tuple = (1, 2),
        char_ngrams: bool = True,
        char_ngram_range: tuple = (2, 4),
        min_df: int = 1,
        max_features: Optional[int] = None,
        sublinear_tf: bool = False,
        lowercase: bool = True,
        hashed: bool = True,
        hash_bits: int = 20,
    ):
        self.text_fields = text_fields
        self.numeric = numeric
        self.ngram_range = ngram_range
        self.char_ngrams = char_ngrams
        self.char_ngram_range = char_ngram_range
        self.min_df = min_df
        self.max_features = max_features
        self.sublinear_tf = sublinear_tf
        self.lowercase = lowercase
        self.hashed = hashed
        self.hash_bits = hash_bits

    def _numeric_names(self) -> list:
        return list((self.numeric or {}).keys())

    def _block_specs(self) -> list:
        """(field, kind) for every text block, in feature-space order."""
        specs = []
        for f in self.text_fields:
            specs.append((f, "w"))
            if self.char_ngrams:
                specs.append((f, "c"))
        return specs

    def _vectorizer(self, kind: str, vocabulary=None) -> CountVectorizer:
        if kind == "w":
            return CountVectorizer(
                lowercase=self.lowercase, token_pattern=_TOKEN_PATTERN,
                ngram_range=tuple(self.ngram_range), min_df=self.min_df,
                max_features=self.max_features, vocabulary=vocabulary, dtype=np.float64,
            )
        return CountVectorizer(
            lowercase=self.lowercase, analyzer="char_wb",
            ngram_range=tuple(self.char_ngram_range), min_df=self.min_df,
            max_features=self.max_features, vocabulary=vocabulary, dtype=np.float64,
        )

    # ---- fit / transform ---------------------------------------------------------------
    def fit(self, table: pa.Table, y=None) -> "Featurizer":
        if not self.text_fields and not self.numeric:
            raise ValueError("Featurizer needs at least one text field or numeric feature")
        if len(set(self.text_fields)) != len(list(self.text_fields)):
            raise ValueError(f"text_fields has duplicates: {list(self.text_fields)}")
        n = table.num_rows
        if n == 0:
            raise ValueError("cannot fit a featurizer on an empty table")
        if self.hashed:
            if not (isinstance(self.hash_bits, (int, np.integer)) and 1 <= self.hash_bits <= MAX_HASH_BITS):
                raise ValueError(f"hash_bits must be an integer from 1 to {MAX_HASH_BITS}, got {self.hash_bits!r}")
            self._fit_hashed(table)
        else:
            self._fit_vocabulary(table)
        self._fit_numeric(table)
        self._finish_fit()
        return self

    def _fit_vocabulary(self, table: pa.Table) -> None:
        n = table.num_rows
        self.vocabularies_, self.idfs_, self.buckets_ = [], [], None
        for field, kind in self._block_specs():
            texts = _column_texts(table, field)
            vec = self._vectorizer(kind)
            try:
                counts = vec.fit_transform(texts)
            except ValueError:  # empty vocabulary: every text empty / pruned
                self.vocabularies_.append({})
                self.idfs_.append(np.zeros(0))
                continue
            # Deterministic column order: sorted by n-gram (sklearn already sorts).
            vocab = {t: int(i) for t, i in vec.vocabulary_.items()}
            df = np.bincount(counts.indices, minlength=len(vocab)).astype(np.float64)
            idf = np.log((1.0 + n) / (1.0 + df)) + 1.0
            self.vocabularies_.append(vocab)
            self.idfs_.append(idf)

    def _fit_hashed(self, table: pa.Table) -> None:
        """Per block: the buckets of the fitted rows' n-grams kept (``min_df``,
        ``max_features``), their idf, and each one's name (its first n-gram)."""
        n, size = table.num_rows, 1 << int(self.hash_bits)
        self.vocabularies_, self.idfs_, self.buckets_, self.terms_ = None, [], [], []
        for field, kind in self._block_specs():
            df = np.zeros(size, dtype=np.int64)
            tf = np.zeros(size, dtype=np.int64)
            named = np.zeros(size, dtype=bool)
            first_names: dict = {}
            for _, part in _sub_batches(_column_array(table, field, self.lowercase)):
                ptr, buckets, name_of = _ngrams(kind, part, self.ngram_range, self.char_ngram_range,
                                                int(self.hash_bits), names=True)
                counts = _count_matrix(ptr, buckets, size)
                df += np.bincount(counts.indices, minlength=size)
                tf += np.bincount(counts.indices, weights=counts.data, minlength=size).astype(np.int64)
                new = np.flatnonzero(~named[buckets])
                if len(new):  # name each bucket after its first n-gram (Python per new bucket, fit only)
                    seen, first = np.unique(buckets[new], return_index=True)
                    named[seen] = True
                    first_names.update(zip(seen.tolist(), map(name_of, new[first].tolist())))
            keep = np.flatnonzero(df >= int(self.min_df))
            if self.max_features and len(keep) > int(self.max_features):
                keep = np.sort(keep[np.lexsort((keep, -tf[keep]))[:int(self.max_features)]])
            self.buckets_.append(keep)
            self.terms_.append([first_names[k] for k in keep.tolist()])
            self.idfs_.append(np.log((1.0 + n) / (1.0 + df[keep])) + 1.0)

    def _fit_numeric(self, table: pa.Table) -> None:
        n, names = table.num_rows, self._numeric_names()
        if names:
            raw = self._numeric_raw(table)
            mean = np.nanmean(raw, axis=0) if n else np.zeros(len(names))
            mean = np.where(np.isfinite(mean), mean, 0.0)
            filled = np.where(np.isnan(raw), mean, raw)
            std = filled.std(axis=0)
            std = np.where(std > 1e-12, std, 1.0)
            self.numeric_mean_ = mean
            self.numeric_std_ = std
        else:
            self.numeric_mean_ = np.zeros(0)
            self.numeric_std_ = np.ones(0)

    def _finish_fit(self) -> None:
        """Everything derived from the fitted state: names, offsets, the lookup tables."""
        if self.buckets_ is None:  # the vocabulary's terms in column order
            self.terms_ = []
            for vocab in self.vocabularies_:
                inv = [None] * len(vocab)
                for t, i in vocab.items():
                    inv[i] = t
                self.terms_.append(inv)
            self._vectorizers = [
                self._vectorizer(kind, vocabulary=vocab) if vocab else None
                for (field, kind), vocab in zip(self._block_specs(), self.vocabularies_)
            ]
        else:  # bucket -> column, a table per block
            self._columns = lookup_tables(self.buckets_, int(self.hash_bits))
        names, offsets = [], []
        pos = 0
        for (field, kind), terms in zip(self._block_specs(), self.terms_):
            offsets.append(pos)
            names.extend(f"{field}:{kind}:{t}" for t in terms)
            pos += len(terms)
        self.block_offsets_ = offsets
        self.numeric_offset_ = pos
        names.extend(f"num:{m}" for m in self._numeric_names())
        self.feature_names_ = names
        self.n_features_ = len(names)

    def _check_fitted(self) -> None:
        check_is_fitted(self, "feature_names_", msg="this Featurizer is not fitted yet: call fit(table) first")

    def _numeric_raw(self, table: pa.Table) -> np.ndarray:
        n = table.num_rows
        cols = []
        for name, fn in (self.numeric or {}).items():
            if fn is None:
                raise ValueError(f"numeric feature {name!r} has no callable; pass numeric= again after loading")
            try:
                v = np.asarray(fn(table), dtype=np.float64).reshape(-1)
            except (TypeError, ValueError) as e:
                raise ValueError(f"numeric feature {name!r} did not give numbers: {e}") from e
            if v.shape[0] != n:
                raise ValueError(f"numeric feature {name!r} gave {v.shape[0]} values for {n} rows")
            v = np.where(np.isfinite(v), v, np.nan)
            cols.append(v)
        return np.stack(cols, axis=1) if cols else np.zeros((n, 0))

    def _text_block(self, b: int, table: pa.Table) -> sp.csr_matrix:
        """Block ``b``'s TF-IDF rows (each normalised) for the rows of ``table``."""
        field, kind = self._block_specs()[b]
        if self.buckets_ is not None:
            return self._hashed_block(b, _column_array(table, field, self.lowercase))
        if self._vectorizers[b] is None:
            return sp.csr_matrix((table.num_rows, 0), dtype=np.float64)
        else:
            m = self._vectorizers[b].transform(_column_texts(table, field)).tocsr().astype(np.float64)
        if self.sublinear_tf and m.nnz:
            m.data = 1.0 + np.log(m.data)
        m = m @ sp.diags(self.idfs_[b])
        return normalize(m, norm="l2", axis=1, copy=False).tocsr()

    def _hashed_block(self, b: int, arr: pa.Array) -> sp.csr_matrix:
        """Block ``b``'s TF-IDF rows from hashed n-grams: a table lookup per n-gram (those of
        buckets not fitted are dropped), then each occurrence is one entry idf / |row|, so no
        batch is sorted: a repeated n-gram is several entries of one column (every product
        sums them; ``sum_duplicates`` merges them) and |row| = sqrt(sum of idf^2 over the
        occurrences). With ``sublinear_tf`` the counts are merged first (a sort)."""
        table, idf = self._columns[b], self.idfs_[b]
        width = len(idf)
        _, kind = self._block_specs()[b]
        ptr, buckets, _ = _ngrams(kind, arr, self.ngram_range, self.char_ngram_range, int(self.hash_bits))
        cols = bucket_columns(table, buckets).astype(np.int32)
        kept = np.zeros(len(cols) + 1, dtype=np.int64)
        np.cumsum(cols >= 0, out=kept[1:])
        ptr, cols = kept[ptr], cols[cols >= 0]
        if self.sublinear_tf:  # each row's distinct columns and their counts
            m = _count_matrix(ptr, cols, width)
            ptr, cols = m.indptr, m.indices
            values = _row_normalised(ptr, (1.0 + np.log(m.data)) * idf[cols])
        else:
            values = _row_normalised(ptr, idf[cols])
        return sp.csr_matrix((values, cols, ptr), shape=(len(arr), width))

    def _compiled_transform(self, kernel, arrays: dict, numeric, n_rows: int) -> sp.csr_matrix:
        """``transform`` of the hashed blocks by the compiled kernel (``ngram_kernel``): each
        block's n-grams counted per row, then every block of every row written in place into
        one CSR (no stacking), the gaps of n-grams not fitted closed at the end. The same
        matrix as the numpy path (``_hashed_block`` per block, stacked), bit for bit."""
        specs = self._block_specs()
        views = {}
        for field, arr in arrays.items():
            data, offsets, _ = utf8_views(arr)
            views[field] = (data, offsets.astype(np.int64))
        word_table, space_table = char_table("word"), char_table("space")
        ranges = self._ngram_ranges
        with kernel.lock:
            counts = [kernel.count(*views[f], kind, *ranges[kind], word_table, space_table) for f, kind in specs]
            if numeric is not None:
                counts.append(np.diff(numeric.indptr).astype(np.int64))
            per_block = np.stack(counts) if counts else np.zeros((0, n_rows), dtype=np.int64)
            ptr = np.zeros(n_rows + 1, dtype=np.int64)
            np.cumsum(per_block.sum(axis=0), out=ptr[1:])
            dest = np.ascontiguousarray(ptr[:-1] + np.cumsum(per_block, axis=0) - per_block)
            cols = np.empty(ptr[-1], dtype=np.int32)
            values = np.empty(ptr[-1], dtype=np.float32)
            sub_tf = _log_counts(int(per_block.max(initial=0)) if self.sublinear_tf else -1)
            kept = per_block.copy()
            for b, (field, kind) in enumerate(specs):
                kept[b] = kernel.fill(*views[field], kind, *ranges[kind], int(self.hash_bits), word_table, space_table,
                                      self._columns[b], self.idfs_[b], sub_tf, self.block_offsets_[b], dest[b],
                                      cols, values)
            if numeric is not None:
                kernel.copy_rows(numeric.indptr, numeric.indices, numeric.data, self.numeric_offset_, dest[-1], cols,
                                 values)
            if (kept != per_block).any():
                ptr = kernel.compact(dest, kept, cols, values)
                cols, values = cols[:ptr[-1]], values[:ptr[-1]]
        return sp.csr_matrix((values, cols, ptr), shape=(n_rows, self.n_features_))

    def _numeric_block(self, table: pa.Table):
        """The standardized numeric features as a float32 CSR block, or None."""
        if not self._numeric_names():
            return None
        raw = self._numeric_raw(table)
        filled = np.where(np.isnan(raw), self.numeric_mean_, raw)
        # float32 already: hstack casting float64 to float32 would merge the text blocks'
        # repeated entries (scipy's astype sums duplicates), and the kernel keeps them
        return sp.csr_matrix((filled - self.numeric_mean_) / self.numeric_std_).astype(np.float32)

    @property
    def _ngram_ranges(self) -> dict:
        return {"w": self.ngram_range, "c": self.char_ngram_range}

    def _text_arrays(self, table: pa.Table) -> dict:
        return {f: _column_array(table, f, self.lowercase) for f in dict.fromkeys(f for f, _ in self._block_specs())}

    def dot(self, table: pa.Table, dense: np.ndarray) -> np.ndarray:
        """``transform(table) @ dense`` (float32, rows × dense's columns; ``dense``: float32,
        one row per feature), for a linear model's scores. With the compiled kernel and hashed
        n-grams the matrix is never made: each n-gram's value is multiplied in where it is
        found, in the order the product adds the matrix's entries, so the result is the same."""
        self._check_fitted()
        if dense.shape[0] != self.n_features_:
            raise ValueError(f"dense has {dense.shape[0]} rows for {self.n_features_} features")
        dense = np.ascontiguousarray(dense, dtype=np.float32)
        kernel = compiled_kernel()
        if self.buckets_ is None or kernel is None:
            return self.transform(table) @ dense  # scipy adds each row's entries in order, in float32
        numeric, arrays = self._numeric_block(table), self._text_arrays(table)
        out = np.zeros((table.num_rows, dense.shape[1]), dtype=np.float32)
        ranges = self._ngram_ranges
        word_table, space_table = char_table("word"), char_table("space")
        with kernel.lock:
            for b, (field, kind) in enumerate(self._block_specs()):
                data, offsets, _ = utf8_views(arrays[field])
                sub_tf = _log_counts(_most_ngrams(*ranges[kind], np.diff(offsets)) if self.sublinear_tf else -1)
                kernel.score(data, offsets.astype(np.int64), kind, *ranges[kind], int(self.hash_bits), word_table,
                             space_table, self._columns[b], self.idfs_[b], sub_tf, self.block_offsets_[b], dense, out)
            if numeric is not None:
                kernel.sparse_dot(numeric, dense, out, self.numeric_offset_)
        return out

    def scores_and_top(self, table: pa.Table, dense: np.ndarray, bias: np.ndarray, explain: np.ndarray,
                       k: int) -> Optional[tuple]:
        """A linear model's logits on every row (``dot(table, dense) + bias``, float32: the same
        numbers) and, for the rows where ``explain`` is True, its top ``k`` attributions toward
        its largest logit: (columns, values, counts per explained row) as
        ``end_model.top_attributions(EndModel.attributions(X, classes), k)`` gives them on those
        rows' features X (``classes``: the argmax of the model's probabilities). One pass of the
        compiled kernel over the text: the rows' n-grams are found once and no matrix is made.
        None where that kernel cannot run (no numba, the vocabulary featurizer, ``dense`` of 8
        classes or more, whose numpy sums add in another order): use ``dot`` and ``transform``."""
        self._check_fitted()
        kernel = compiled_kernel()
        if self.buckets_ is None or kernel is None or not 2 <= dense.shape[1] < 8:
            return None
        if dense.shape[0] != self.n_features_:
            raise ValueError(f"dense has {dense.shape[0]} rows for {self.n_features_} features")
        dense = np.ascontiguousarray(dense, dtype=np.float32)
        n, specs = table.num_rows, self._block_specs()
        numeric, arrays = self._numeric_block(table), self._text_arrays(table)
        views = [utf8_views(arr)[:2] for arr in arrays.values()] or [(np.zeros(0, np.uint8), np.zeros(n + 1, np.int32))]
        starts = np.cumsum([0] + [len(data) for data, _ in views[:-1]])  # the fields' bytes end to end
        data = views[0][0] if len(views) == 1 else np.concatenate([data for data, _ in views])
        offsets = np.stack([o.astype(np.int64) + s for (_, o), s in zip(views, starts)])
        field = {f: i for i, f in enumerate(arrays)}
        ranges = self._ngram_ranges
        blocks = np.array([[field[f], kind == "c", *ranges[kind], self.block_offsets_[b]]
                           for b, (f, kind) in enumerate(specs)], dtype=np.int64).reshape(len(specs), 5)
        idf_at = np.cumsum([0] + [len(idf) for idf in self.idfs_]).astype(np.int64)
        idf = np.concatenate(self.idfs_) if self.idfs_ else np.zeros(0)
        sub_tf = np.zeros(0)
        if self.sublinear_tf:
            lo, hi = min(ranges[kind][0] for _, kind in specs), max(ranges[kind][1] for _, kind in specs)
            sub_tf = _log_counts(_most_ngrams(lo, hi, np.diff(offsets, axis=1)))
        slots = np.full(n, -1, dtype=np.int64)
        slots[explain] = np.arange(int(np.count_nonzero(explain)))
        out = np.zeros((n, dense.shape[1]), dtype=np.float32)
        bias = np.ascontiguousarray(bias, dtype=np.float32)
        top_cols, top_vals, top_n = kernel.score_top(
            data, offsets, blocks, int(self.hash_bits), char_table("word"), char_table("space"), self._columns,
            idf, idf_at, sub_tf, numeric, self.numeric_offset_, dense, bias, slots, int(k), out)
        kept = np.arange(int(k))[None, :] < top_n[:, None]
        return out + bias, (top_cols[kept], top_vals[kept], top_n)

    def transform(self, table: pa.Table) -> sp.csr_matrix:
        self._check_fitted()
        numeric = self._numeric_block(table)
        if self.buckets_ is not None:  # hashed: every block of a slice of rows at a time
            specs = self._block_specs()
            arrays = self._text_arrays(table)
            kernel = compiled_kernel()
            if kernel is not None:
                return self._compiled_transform(kernel, arrays, numeric, table.num_rows)
            parts = []
            for lo, hi in _row_slices(list(arrays.values()), table.num_rows):
                blocks = [self._hashed_block(b, arrays[f].slice(lo, hi - lo)) for b, (f, _) in enumerate(specs)]
                if numeric is not None:
                    blocks.append(numeric[lo:hi])
                parts.append(sp.hstack(blocks, format="csr", dtype=np.float32) if len(blocks) > 1 else
                             blocks[0].astype(np.float32))
            return _concat_rows(parts, self.n_features_)
        blocks = [self._text_block(b, table) for b in range(len(self._block_specs()))]
        if numeric is not None:
            blocks.append(numeric)
        if not blocks:
            return sp.csr_matrix((table.num_rows, 0), dtype=np.float32)
        return sp.hstack(blocks, format="csr", dtype=np.float32)

    def fit_transform(self, table: pa.Table, y=None) -> sp.csr_matrix:
        return self.fit(table).transform(table)

    # ---- directions for hints ------------------------------------------------------------
    def phrase_vector(self, field: str, text: str) -> np.ndarray:
        """The feature vector (dense, float64) of ``text`` alone in text field ``field``.

        Only that field's blocks are non-zero. Raises ``ValueError`` naming the
        phrase when none of its n-grams is in the vocabulary (it never occurs in
        the training data, so the model has no feature to move).
        """
        self._check_fitted()
        if field not in list(self.text_fields):
            raise ValueError(f"{field!r} is not a text field of this featurizer "
                             f"(text fields: {', '.join(self.text_fields)})")
        out = np.zeros(self.n_features_, dtype=np.float64)
        word_hit = False
        for b, (f, kind) in enumerate(self._block_specs()):
            if f != field:
                continue
            row = self._text_block(b, pa.table({field: pa.array([text], pa.string())}))
            row.sum_duplicates()
            if kind == "w" and row.nnz:
                word_hit = True
            off = self.block_offsets_[b]
            out[off + row.indices] = row.data
        # The phrase "occurs" when one of its word n-grams is known; character
        # n-grams alone (shared by many unrelated words) are not evidence of it.
        if not word_hit:
            raise ValueError(
                f"the phrase {text!r} never occurs in the data: none of its words is in the "
                f"vocabulary of field {field!r}, so a hint on it cannot move the model"
            )
        return out

    def numeric_direction(self, name: str) -> np.ndarray:
        """Unit vector (dense, float64) on numeric feature ``name``."""
        self._check_fitted()
        names = self._numeric_names()
        if name not in names:
            import difflib
            close = difflib.get_close_matches(name, names, n=1)
            extra = f"; did you mean {close[0]!r}?" if close else ""
            raise ValueError(
                f"{name!r} is not a numeric feature of this featurizer "
                f"(numeric features: {', '.join(names) or 'none'}){extra}"
            )
        out = np.zeros(self.n_features_, dtype=np.float64)
        out[self.numeric_offset_ + names.index(name)] = 1.0
        return out

    def numeric_index(self, name: str) -> int:
        """Column index of numeric feature ``name`` in the feature space."""
        return int(np.flatnonzero(self.numeric_direction(name))[0])

    # ---- persistence without pickle ----------------------------------------------------
    def to_dict(self) -> dict:
        """Plain JSON-able state: parameters, vocabularies, idf, scaler statistics."""
        self._check_fitted()
        blocks = []
        for b, ((field, kind), terms, idf) in enumerate(zip(self._block_specs(), self.terms_, self.idfs_)):
            blocks.append({"field": field, "kind": kind, "terms": list(terms),
                           "idf": [float(v) for v in idf]})
            if self.buckets_ is not None:
                blocks[-1]["buckets"] = [int(v) for v in self.buckets_[b]]
        params = self.get_params()
        params.pop("numeric")
        params["text_fields"] = list(params["text_fields"])
        params["ngram_range"] = list(params["ngram_range"])
        params["char_ngram_range"] = list(params["char_ngram_range"])
        if self.buckets_ is None:  # readable by the versions before hashing
            params.pop("hashed")
            params.pop("hash_bits")
        return {
            "format": "mteach.featurizer",
            "version": FORMAT_VERSION if self.buckets_ is not None else VOCABULARY_FORMAT_VERSION,
            "params": params,
            "numeric_names": self._numeric_names(),
            "blocks": blocks,
            "numeric_mean": [float(v) for v in self.numeric_mean_],
            "numeric_std": [float(v) for v in self.numeric_std_],
        }

    @classmethod
    def from_dict(cls, d: dict,
                  numeric: Optional[Mapping[str, Callable[[pa.Table], np.ndarray]]] = None
                  ) -> "Featurizer":
        """Rebuild a fitted featurizer from ``to_dict()`` output.

        ``numeric`` must give a callable for every numeric feature it was fitted with
        (callables are code and are never stored).
        """
        if not isinstance(d, dict) or d.get("format") != "mteach.featurizer":
            raise ValueError("not a saved mteach featurizer (missing format tag)")
        version = d.get("version")
        if version not in (FORMAT_VERSION, VOCABULARY_FORMAT_VERSION):
            raise ValueError(f"unsupported featurizer format version {d.get('version')!r}")
        names = list(d["numeric_names"])
        numeric = dict(numeric or {})
        missing = [m for m in names if m not in numeric]
        if missing:
            raise ValueError(f"numeric feature callables missing on load: {', '.join(missing)}")
        extra = [m for m in numeric if m not in names]
        if extra:
            raise ValueError(f"numeric callables given that the featurizer was not fitted with: "
                             f"{', '.join(extra)}")
        p = dict(d["params"])
        self = cls(
            text_fields=list(p["text_fields"]),
            numeric={m: numeric[m] for m in names} if names else None,
            ngram_range=tuple(p["ngram_range"]),
            char_ngrams=bool(p["char_ngrams"]),
            char_ngram_range=tuple(p["char_ngram_range"]),
            min_df=p["min_df"], max_features=p["max_features"],
            sublinear_tf=bool(p["sublinear_tf"]), lowercase=bool(p["lowercase"]),
            hashed=version == FORMAT_VERSION, hash_bits=int(p.get("hash_bits", 20)),
        )
        specs = self._block_specs()
        if [(b["field"], b["kind"]) for b in d["blocks"]] != specs:
            raise ValueError("saved featurizer blocks do not match its parameters")
        if version == FORMAT_VERSION:
            self.vocabularies_ = None
            self.terms_ = [list(b["terms"]) for b in d["blocks"]]
            self.buckets_ = [np.asarray(b["buckets"], dtype=np.int64) for b in d["blocks"]]
            for (field, kind), buckets in zip(specs, self.buckets_):  # what ``lookup_tables`` needs
                if buckets.ndim != 1 or (buckets[1:] <= buckets[:-1]).any() or \
                        (len(buckets) and not 0 <= buckets[0] <= buckets[-1] < 1 << self.hash_bits):
                    raise ValueError(f"saved featurizer block {field}:{kind}: its buckets are not increasing "
                                     f"numbers below 2^{self.hash_bits}")
        else:
            self.vocabularies_ = [{t: i for i, t in enumerate(b["terms"])} for b in d["blocks"]]
            self.buckets_ = None
        self.idfs_ = [np.asarray(b["idf"], dtype=np.float64) for b in d["blocks"]]
        self.numeric_mean_ = np.asarray(d["numeric_mean"], dtype=np.float64)
        self.numeric_std_ = np.asarray(d["numeric_std"], dtype=np.float64)
        self._finish_fit()
        return self
