"""Featurizer for the end model: TF-IDF n-grams of text fields plus standardized numeric features.

Follows scikit-learn's estimator contract: ``__init__`` stores parameters, ``fit``
learns the vocabulary / idf / scaler statistics (attributes ending in ``_``) and
returns ``self``, ``transform`` gives a ``scipy.sparse.csr_matrix`` of float32.

Feature space layout (``feature_names_`` tells the name of every column)::

    [ field1 words | field1 chars | field2 words | ... | numeric features ]

Word features are named ``"<field>:w:<ngram>"``, character n-grams
``"<field>:c:<ngram>"`` and numeric features ``"num:<name>"``. Each text block is
L2-normalised per row on its own, so a field's weight does not depend on how many
n-grams another field has.

Nothing is pickled: ``to_dict()`` returns plain JSON-able data (vocabulary, idf,
scaler statistics, parameters); ``from_dict(d, numeric=...)`` rebuilds the fitted
featurizer, the numeric callables being supplied again by the caller.
"""
from __future__ import annotations

from typing import Callable, Mapping, Optional, Sequence

import numpy as np
import pyarrow as pa
import scipy.sparse as sp
from sklearn.base import BaseEstimator
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.preprocessing import normalize
from sklearn.utils.validation import check_is_fitted

FORMAT_VERSION = 1

# One token pattern for words: runs of word characters, single letters included
# (sklearn's default drops one-character tokens, which loses "u", "i", digits...).
_TOKEN_PATTERN = r"(?u)\b\w+\b"


def _column_texts(table: pa.Table, field: str) -> list:
    if field not in table.column_names:
        raise ValueError(
            f"text field {field!r} is not a column of the data "
            f"(columns: {', '.join(table.column_names)})"
        )
    col = table.column(field)
    if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)
            or pa.types.is_null(col.type)):
        raise ValueError(f"text field {field!r} has type {col.type}, expected a string column")
    return ["" if v is None else v for v in col.to_pylist()]


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
    """

    def __init__(
        self,
        text_fields: Sequence[str] = ("text",),
        numeric: Optional[Mapping[str, Callable[[pa.Table], np.ndarray]]] = None,
        ngram_range: tuple = (1, 2),
        char_ngrams: bool = True,
        char_ngram_range: tuple = (2, 5),
        min_df: int = 1,
        max_features: Optional[int] = None,
        sublinear_tf: bool = False,
        lowercase: bool = True,
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
        self.vocabularies_ = []
        self.idfs_ = []
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
        names = self._numeric_names()
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
        self._finish_fit()
        return self

    def _finish_fit(self) -> None:
        names, offsets = [], []
        pos = 0
        for (field, kind), vocab in zip(self._block_specs(), self.vocabularies_):
            offsets.append(pos)
            inv = [None] * len(vocab)
            for t, i in vocab.items():
                inv[i] = t
            names.extend(f"{field}:{kind}:{t}" for t in inv)
            pos += len(vocab)
        self.block_offsets_ = offsets
        self.numeric_offset_ = pos
        names.extend(f"num:{m}" for m in self._numeric_names())
        self.feature_names_ = names
        self.n_features_ = len(names)
        self._vectorizers = [
            self._vectorizer(kind, vocabulary=vocab) if vocab else None
            for (field, kind), vocab in zip(self._block_specs(), self.vocabularies_)
        ]

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

    def _text_block(self, b: int, texts: list) -> sp.csr_matrix:
        vec = self._vectorizers[b]
        if vec is None:
            return sp.csr_matrix((len(texts), 0), dtype=np.float64)
        m = vec.transform(texts).tocsr().astype(np.float64)
        if self.sublinear_tf and m.nnz:
            m.data = 1.0 + np.log(m.data)
        m = m @ sp.diags(self.idfs_[b])
        return normalize(m, norm="l2", axis=1, copy=False).tocsr()

    def transform(self, table: pa.Table) -> sp.csr_matrix:
        self._check_fitted()
        blocks = []
        for b, (field, kind) in enumerate(self._block_specs()):
            blocks.append(self._text_block(b, _column_texts(table, field)))
        if self._numeric_names():
            raw = self._numeric_raw(table)
            filled = np.where(np.isnan(raw), self.numeric_mean_, raw)
            z = (filled - self.numeric_mean_) / self.numeric_std_
            blocks.append(sp.csr_matrix(z))
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
            row = self._text_block(b, [text])
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
        for (field, kind), vocab, idf in zip(self._block_specs(), self.vocabularies_, self.idfs_):
            inv = [None] * len(vocab)
            for t, i in vocab.items():
                inv[i] = t
            blocks.append({"field": field, "kind": kind, "terms": inv,
                           "idf": [float(v) for v in idf]})
        params = self.get_params()
        params.pop("numeric")
        params["text_fields"] = list(params["text_fields"])
        params["ngram_range"] = list(params["ngram_range"])
        params["char_ngram_range"] = list(params["char_ngram_range"])
        return {
            "format": "mteach.featurizer",
            "version": FORMAT_VERSION,
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
        if d.get("version") != FORMAT_VERSION:
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
        )
        specs = self._block_specs()
        if [(b["field"], b["kind"]) for b in d["blocks"]] != specs:
            raise ValueError("saved featurizer blocks do not match its parameters")
        self.vocabularies_ = [{t: i for i, t in enumerate(b["terms"])} for b in d["blocks"]]
        self.idfs_ = [np.asarray(b["idf"], dtype=np.float64) for b in d["blocks"]]
        self.numeric_mean_ = np.asarray(d["numeric_mean"], dtype=np.float64)
        self.numeric_std_ = np.asarray(d["numeric_std"], dtype=np.float64)
        self._finish_fit()
        return self
