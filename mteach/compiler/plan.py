"""Evaluate a checked spec's rules column-wise over Arrow data.

Every predicate is computed with Arrow compute kernels (RE2 regex, substring search,
lengths, comparisons) over a whole batch; no Python runs per row. Within a batch
each distinct sub-expression (by ``node.key()``) is computed once, so ten rules that
test the same lower-cased text or the same phrase share that work.

Semantics (also in the README's language reference):
- a test on a missing (null) value is false; ``not`` inverts that.
- ``has`` matches whole words, any case: Unicode letters and digits are word
  characters; other characters are not, so "T&C", "18+" and "10/10" match as written
  and "cat" does not match inside "concat". Spaces inside a phrase match any run of
  whitespace.
- ``words(F)``: runs of non-whitespace characters (Unicode whitespace).
- ``upper_ratio(F)``: uppercase letters / letters (0 when there are no letters).
- ``digit_ratio(F)``: digits / non-whitespace characters (0 on empty text).
- ``near ... within N``: the two phrases start at most N words apart, words counted as
  ``words()`` does; punctuation at a word's edges is ignored ("apply," is "apply").
"""
from __future__ import annotations

import itertools
import re
import threading
from dataclasses import fields
from typing import Optional

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..grammar import ast
from .checker import Spec, regex_pattern

_WORD = r"[\p{L}\p{N}]"
_NONWORD = r"[^\p{L}\p{N}]"
ABSTAIN = -1


def _is_word_char(ch: str) -> bool:
    return ch.isalnum()


def phrase_regex(phrase: str) -> str:
    """RE2 pattern for one phrase: whole words, whitespace-flexible (text is lower-cased first)."""
    words = phrase.lower().split()
    body = r"\s+".join(re.escape(w) for w in words)
    left = f"(?:^|{_NONWORD})" if _is_word_char(words[0][0]) else ""
    right = f"(?:$|{_NONWORD})" if _is_word_char(words[-1][-1]) else ""
    return left + body + right


def _np_bool(arr) -> np.ndarray:
    if isinstance(arr, np.ndarray):
        return arr
    return pc.fill_null(arr, False).to_numpy(zero_copy_only=False, writable=True)


def _np_float(arr) -> np.ndarray:
    if isinstance(arr, np.ndarray):
        return arr
    return pc.cast(arr, pa.float64()).to_numpy(zero_copy_only=False, writable=True)  # nulls -> nan


# -- whole-word phrase matching through a token index ------------------------------------
#
# Testing each phrase with its own scan costs one pass over the text per phrase. Instead,
# the lower-cased text is split once into word tokens (maximal runs of \p{L}\p{N}
# characters) with numpy over the UTF-8 bytes, and one hash lookup (``index_in``) finds
# every token that is a word of any phrase in the spec. A phrase's word runs must then
# be consecutive tokens of one row. For a phrase that is a single run of word characters
# that is exactly the whole-word test; for the others (several words, inner or edge
# punctuation) it is a superset of the matches, and RE2 verifies the candidate rows.
# The character classes come from RE2 (\p{L}\p{N}) and from Arrow (whitespace) themselves,
# so the results are the same as the kernels' results row for row.

_MAX_CODE_POINT = 0x110000
_tables: dict = {}
_tables_lock = threading.Lock()
_RE2_SPACE_BYTES = np.frombuffer(b"\t\n\f\r ", np.uint8)  # RE2's \s


def _char_table(name: str) -> np.ndarray:
    """Boolean table over all code points: "word" is RE2's [\\p{L}\\p{N}], "space" is
    Arrow's utf8 whitespace. Built once, by the kernels themselves."""
    with _tables_lock:
        if not _tables:
            _build_char_tables()
    return _tables[name]


def _build_char_tables() -> None:
    cps = np.concatenate([np.arange(0xD800), np.arange(0xE000, _MAX_CODE_POINT)]).astype(np.uint32)
    data = cps.astype("<u4").tobytes().decode("utf-32-le").encode("utf-8")
    lengths = 1 + (cps >= 0x80) + (cps >= 0x800) + (cps >= 0x10000)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    chars = pa.StringArray.from_buffers(len(cps), pa.py_buffer(offsets), pa.py_buffer(data))
    for key, hits in (("word", pc.match_substring_regex(chars, rf"^{_WORD}$")),
                      ("space", pc.utf8_is_space(chars))):
        table = np.zeros(_MAX_CODE_POINT, dtype=bool)
        table[cps] = _np_bool(hits)
        _tables[key] = table


def _utf8(arr: pa.Array) -> tuple:
    """(bytes, offsets, base): numpy views of a string array's UTF-8 bytes and its
    offsets rebased to them; ``base`` is where the bytes start in the data buffer."""
    offsets = np.frombuffer(arr.buffers()[1], np.int32, len(arr) + 1, arr.offset * 4)
    start, end = int(offsets[0]), int(offsets[-1])
    b = np.frombuffer(arr.buffers()[2], np.uint8, end - start, start) if end > start else np.zeros(0, np.uint8)
    return b, offsets - start, start


def _char_class(b: np.ndarray, name: str) -> np.ndarray:
    """Per byte: whether the character it belongs to is in the named class."""
    table = _char_table(name)
    # ASCII bytes: one range test per run of class members (a few vector passes).
    mask = np.zeros(len(b), dtype=bool)
    members = np.flatnonzero(table[:0x80])
    for run in np.split(members, np.flatnonzero(np.diff(members) > 1) + 1):
        if len(run):
            mask |= np.subtract(b, np.uint8(run[0])) <= np.uint8(run[-1] - run[0])
    # Multi-byte characters: decode the code point at each lead byte, mark all its bytes.
    lead = np.flatnonzero(b >= 0xC0)
    if len(lead):
        b0 = b[lead].astype(np.int32)
        size = 2 + (b0 >= 0xE0) + (b0 >= 0xF0)
        c1, c2, c3 = (b[np.minimum(lead + k, len(b) - 1)].astype(np.int32) & 0x3F for k in (1, 2, 3))
        cp = np.where(size == 2, ((b0 & 0x1F) << 6) | c1,
                      np.where(size == 3, ((b0 & 0x0F) << 12) | (c1 << 6) | c2,
                               ((b0 & 0x07) << 18) | (c1 << 12) | (c2 << 6) | c3))
        hit = table[cp]
        lead, size = lead[hit], size[hit]
        for k in range(4):
            mask[lead[size > k] + k] = True
    return mask


def _runs(flags: np.ndarray, offsets: np.ndarray) -> tuple:
    """(starts, ends) of the maximal runs of True in ``flags`` that do not cross a row boundary."""
    n = len(flags)
    prev = np.empty_like(flags)  # the flag before each byte, False at the start of a row
    prev[:1] = False
    prev[1:] = flags[:-1]
    row_starts = offsets[:-1]
    prev[row_starts[row_starts < n]] = False
    nxt = np.empty_like(flags)  # the flag after each byte, False at the end of a row
    nxt[-1:] = False
    nxt[:-1] = flags[1:]
    row_ends = offsets[1:] - 1
    nxt[row_ends[row_ends >= 0]] = False
    starts = np.flatnonzero(flags & ~prev)
    ends = np.flatnonzero(flags & ~nxt) + 1
    return starts.astype(np.int32), ends.astype(np.int32)


def _runs_per_row(starts: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    return np.diff(np.searchsorted(starts, offsets))


class TokenIndex:
    """The word tokens of one lower-cased string array, and where given words occur."""

    def __init__(self, lowered: pa.Array):
        b, offsets, base = _utf8(lowered)
        self.bytes = b
        self.starts, self.ends = _runs(_char_class(b, "word"), offsets)
        self.row = np.repeat(np.arange(len(lowered), dtype=np.int32), _runs_per_row(self.starts, offsets))
        self.valid = _np_bool(pc.is_valid(lowered))
        self.n = len(lowered)
        self._data = lowered.buffers()[2]
        self._base = base
        self._where: dict = {}

    def lookup(self, words) -> None:
        """Find the tokens equal to each of ``words`` in one hash pass (``index_in``) over
        the tokens that could be one of them (right length and first byte)."""
        words = sorted({w for w in words if w not in self._where})
        if not words:
            return
        encoded = [w.encode("utf-8") for w in words]
        first_bytes = np.zeros(256, dtype=bool)
        first_bytes[[e[0] for e in encoded]] = True
        lengths = np.zeros(max(map(len, encoded)) + 2, dtype=bool)
        lengths[[len(e) for e in encoded]] = True
        size = np.minimum(self.ends - self.starts, len(lengths) - 1)
        maybe = np.flatnonzero(lengths[size] & first_bytes[self.bytes[self.starts]])
        if len(maybe) == 0:
            self._where.update((w, np.zeros(0, np.int64)) for w in words)
            return
        # Those tokens and the gaps between them as one string array over the text's own
        # bytes (no copy): element 2k is token maybe[k].
        bounds = np.empty(2 * len(maybe), dtype=np.int32)
        bounds[0::2] = self.starts[maybe] + self._base
        bounds[1::2] = self.ends[maybe] + self._base
        pieces = pa.StringArray.from_buffers(len(bounds) - 1, pa.py_buffer(bounds), self._data)
        ids = pc.fill_null(pc.index_in(pieces, value_set=pa.array(words, pa.string())), -1).to_numpy()[0::2]
        hits = np.flatnonzero(ids >= 0)
        hits = hits[np.argsort(ids[hits], kind="stable")]
        bounds = np.searchsorted(ids[hits], np.arange(len(words) + 1))
        for i, w in enumerate(words):
            self._where[w] = maybe[hits[bounds[i]:bounds[i + 1]]]

    def rows_with_sequence(self, runs: list, spaced: bool = False) -> np.ndarray:
        """Rows where ``runs`` occur as consecutive tokens; with ``spaced``, only rows where
        what separates them is whitespace as RE2's \\s sees it ([\\t\\n\\f\\r ])."""
        self.lookup(runs)
        at = self._where[runs[0]]
        for k, w in enumerate(runs[1:], 1):
            at = at[np.isin(at + k, self._where[w], assume_unique=True)]
            at = at[self.row[at + k] == self.row[at]]
            if spaced:
                at = at[self._spaces_between(at + k - 1)]
        out = np.zeros(self.n, dtype=bool)
        out[self.row[at]] = True
        return out & self.valid

    def _spaces_between(self, tokens: np.ndarray) -> np.ndarray:
        """For each token t: whether every byte between it and token t + 1 is [\\t\\n\\f\\r ]."""
        lo, hi = self.ends[tokens], self.starts[tokens + 1]
        width = (hi - lo).astype(np.int64)
        first = np.cumsum(width) - width
        positions = np.repeat(lo - first, width) + np.arange(width.sum())
        other = ~np.isin(self.bytes[positions], _RE2_SPACE_BYTES)
        counts = np.concatenate([[0], np.cumsum(other)])
        return counts[first + width] == counts[first]


def _word_runs(phrase: str):
    """(runs, exact) for a phrase: its maximal runs of word characters (lower-cased), and
    whether it is only words of word characters separated by whitespace (then runs that
    are consecutive tokens separated by whitespace are exactly the whole-word match).
    None when the token index cannot serve it: no word character, or a character that
    Python's ``isalnum`` (used by ``phrase_regex``) and RE2 classify differently."""
    text = phrase.lower()
    table = _char_table("word")
    if any(bool(table[ord(ch)]) != _is_word_char(ch) for ch in text):
        return None
    runs = ["".join(g) for is_word, g in itertools.groupby(text, _is_word_char) if is_word]
    if not runs:
        return None
    return runs, runs == text.split()


def _spec_phrases(spec: Spec) -> dict:
    """source key -> the phrases the spec's rules look for in that text."""
    found: dict = {}

    def walk(value, source=None):
        if isinstance(value, tuple):
            for item in value:
                walk(item, source)
        elif isinstance(value, ast.Phrases):
            if source is not None:
                found.setdefault(source.key(), set()).update(value.phrases)
        elif isinstance(value, ast.Node):
            for f in fields(value):
                walk(getattr(value, f.name), getattr(value, "source", None))

    for rule in spec.rules:
        walk(rule.predicate)
    return found


class BatchEvaluator:
    """Evaluates nodes of one spec over one batch, memoizing by node key."""

    def __init__(self, spec: Spec, batch: pa.RecordBatch | pa.Table):
        self.spec = spec
        self.batch = batch
        self.n = batch.num_rows
        self.memo: dict = {}

    def _cached(self, key, compute):
        if key not in self.memo:
            self.memo[key] = compute()
        return self.memo[key]

    # -- columns and text ------------------------------------------------------------
    def column(self, name: str) -> pa.Array:
        def get():
            col = self.batch.column(self.spec.column(name))
            if isinstance(col, pa.ChunkedArray):
                col = col.combine_chunks()
            if pa.types.is_dictionary(col.type):
                col = col.dictionary_decode()
            if pa.types.is_large_string(col.type) or pa.types.is_null(col.type):
                col = col.cast(pa.string())
            return col
        return self._cached(("column", name), get)

    def text(self, src) -> pa.Array:
        if isinstance(src, ast.Window):
            inner = self.text(src.source)
            if src.side == "first":
                return self._cached(src.key(), lambda: pc.utf8_slice_codeunits(inner, 0, src.size))
            return self._cached(src.key(), lambda: pc.utf8_slice_codeunits(inner, -src.size))
        return self.column(src.name)

    def lower(self, src) -> pa.Array:
        return self._cached(("lower", src.key()), lambda: pc.utf8_lower(self.text(src)))

    def _sparse_regex(self, arr: pa.Array, candidates: np.ndarray, pattern: str) -> np.ndarray:
        """Regex-test only the candidate rows (found by a cheap substring scan)."""
        idx = np.flatnonzero(candidates)
        out = np.zeros(self.n, dtype=bool)
        if len(idx) == 0:
            return out
        if len(idx) > self.n // 2:
            return _np_bool(pc.match_substring_regex(arr, pattern))
        sub = pc.take(arr, pa.array(idx))
        out[idx] = _np_bool(pc.match_substring_regex(sub, pattern))
        return out

    def tokens(self, src) -> TokenIndex:
        """The token index of the lower-cased text, with every phrase word of the spec
        on this text looked up in one pass."""
        def build():
            index = TokenIndex(self.lower(src))
            words = []
            for phrase in _spec_phrases(self.spec).get(src.key(), ()):
                runs = _word_runs(phrase)
                if runs is not None:
                    words.extend(runs[0])
            index.lookup(words)
            return index
        return self._cached(("tokens", src.key()), build)

    def phrase(self, src, phrase: str) -> np.ndarray:
        """Rows where ``phrase`` occurs as whole words."""
        def compute():
            lowered = self.lower(src)
            runs = _word_runs(phrase)
            if runs is not None:
                runs, exact = runs
                candidates = self.tokens(src).rows_with_sequence(runs, spaced=exact)
                return candidates if exact else self._sparse_regex(lowered, candidates, phrase_regex(phrase))
            words = phrase.lower().split()
            longest = max(words, key=len)
            candidates = _np_bool(pc.match_substring(lowered, longest))
            if len(words) == 1 and not _is_word_char(longest[0]) and not _is_word_char(longest[-1]):
                return candidates  # no word edges to check
            return self._sparse_regex(lowered, candidates, phrase_regex(phrase))
        return self._cached(("phrase", src.key(), phrase.lower()), compute)

    def phrases(self, src, node: ast.Phrases) -> np.ndarray:
        masks = [self.phrase(src, p) for p in node.phrases]
        if node.mode == "all":
            return np.logical_and.reduce(masks)
        return np.logical_or.reduce(masks)

    # -- measures --------------------------------------------------------------------
    def _count_regex(self, arr, pattern) -> np.ndarray:
        return _np_float(pc.count_substring_regex(arr, pattern))

    def words(self, src) -> np.ndarray:
        """Runs of non-whitespace characters per row (whitespace as Arrow's utf8 kernels
        define it), counted over the UTF-8 bytes."""
        def compute():
            arr = self.text(src)
            b, offsets, _ = _utf8(arr)
            space = _char_class(b, "space")
            starts, _ = _runs(~space, offsets)
            counts = _runs_per_row(starts, offsets).astype(np.float64)
            counts[~_np_bool(pc.is_valid(arr))] = np.nan
            return counts
        return self._cached(("words", src.key()), compute)

    def measure(self, node: ast.Measure) -> np.ndarray:
        def compute():
            src = node.source
            if node.func == "len":
                return _np_float(pc.utf8_length(self.text(src)))
            if node.func == "words":
                return self.words(src)
            if node.func == "upper_ratio":
                arr = self.text(src)
                return _ratio(self._count_regex(arr, r"\p{Lu}"), self._count_regex(arr, r"\p{L}"))
            if node.func == "digit_ratio":
                arr = self.text(src)
                return _ratio(self._count_regex(arr, r"\p{Nd}"), self._count_regex(arr, r"[^\s\p{Z}]"))
            if node.func == "count":
                if isinstance(node.arg, ast.Regex):
                    counts = self._count_regex(self.text(src), regex_pattern(node.arg))
                else:
                    counts = self.count_phrases(src, node.arg)
                if node.per_words is not None:
                    counts = _ratio(counts * node.per_words, self.words(src))
                return counts
            if node.func == "number":
                return self.number(src, node.arg)
            raise AssertionError(node.func)
        return self._cached(node.key(), compute)

    def count_phrases(self, src, node: ast.Phrases) -> np.ndarray:
        """Occurrences of any of the phrases. Separators are doubled first so that
        adjacent matches ("spam spam") do not share the boundary character."""
        lowered = self.lower(src)
        any_mask = np.logical_or.reduce([self.phrase(src, p) for p in node.phrases])
        counts = np.where(_np_bool(pc.is_null(lowered)), np.nan, 0.0)
        idx = np.flatnonzero(any_mask)
        if len(idx):
            sub = pc.take(lowered, pa.array(idx))
            doubled = pc.replace_substring_regex(sub, f"({_NONWORD})", r"\1\1")
            pattern = "|".join(f"(?:{phrase_regex(p)})" for p in node.phrases)
            counts[idx] = _np_float(pc.count_substring_regex(doubled, pattern))
        return counts

    def number(self, src, regex: ast.Regex) -> np.ndarray:
        pattern = regex_pattern(_name_first_group(regex))
        arr = self.text(src)
        extracted = pc.struct_field(pc.extract_regex(arr, pattern), [0])
        valid = pc.match_substring_regex(extracted, r"^\s*[-+]?(\d+([.,]\d*)?|[.,]\d+)\s*$")
        cleaned = pc.replace_substring(pc.utf8_trim_whitespace(extracted), ",", ".")
        cleaned = pc.if_else(pc.fill_null(valid, False), cleaned, pa.scalar(None, pa.string()))
        return _np_float(pc.cast(cleaned, pa.float64()))

    # -- values and predicates --------------------------------------------------------
    def value(self, node):
        if isinstance(node, ast.Number):
            return node.value
        if isinstance(node, ast.String):
            return node.value
        if isinstance(node, ast.Measure):
            return self.measure(node)
        col = self.column(node.name)
        if self.spec.field_kinds.get(node.name) == "number" or pa.types.is_integer(col.type) \
                or pa.types.is_floating(col.type) or pa.types.is_decimal(col.type):
            return self._cached(("float", node.name), lambda: _np_float(col))
        return col

    def compare(self, op, left, right) -> np.ndarray:
        if isinstance(left, pa.Array) or isinstance(right, pa.Array) or isinstance(left, str) or isinstance(right, str):
            fn = {"==": pc.equal, "!=": pc.not_equal}[op]
            return _np_bool(fn(left, right))
        with np.errstate(invalid="ignore"):
            result = {"<": np.less, "<=": np.less_equal, ">": np.greater, ">=": np.greater_equal,
                      "==": np.equal, "!=": np.not_equal}[op](left, right)
        if op == "!=":  # nan != x is True in numpy; a missing value makes the test false
            result = result & ~np.isnan(np.asarray(left, dtype=float)) & ~np.isnan(np.asarray(right, dtype=float))
        return np.broadcast_to(result, (self.n,)).copy() if np.ndim(result) == 0 else result

    def predicate(self, node) -> np.ndarray:
        key = node.key()
        if key in self.memo:
            return self.memo[key]
        result = self._predicate(node)
        self.memo[key] = result
        return result

    def _predicate(self, node) -> np.ndarray:
        if isinstance(node, ast.And):
            return np.logical_and.reduce([self.predicate(i) for i in node.items])
        if isinstance(node, ast.Or):
            return np.logical_or.reduce([self.predicate(i) for i in node.items])
        if isinstance(node, ast.Not):
            return ~self.predicate(node.item)
        if isinstance(node, ast.Match):
            hit = _np_bool(pc.match_substring_regex(self.text(node.source), regex_pattern(node.regex)))
            if node.negate:
                return ~hit & ~_np_bool(pc.is_null(self.text(node.source)))
            return hit
        if isinstance(node, ast.Has):
            return self.phrases(node.source, node.phrases)
        if isinstance(node, ast.Near):
            return self.near(node)
        if isinstance(node, ast.Compare):
            return self.compare(node.op, self.value(node.left), self.value(node.right))
        if isinstance(node, ast.Between):
            v, lo, hi = (self.value(x) for x in (node.value, node.low, node.high))
            with np.errstate(invalid="ignore"):
                return np.asarray((v >= lo) & (v <= hi), dtype=bool)
        if isinstance(node, ast.In):
            col = self.column(node.source.name)
            values = [v.value for v in node.values]
            if pa.types.is_integer(col.type) or pa.types.is_floating(col.type) or pa.types.is_decimal(col.type):
                return np.isin(_np_float(col), np.array(values, dtype=float))
            return _np_bool(pc.is_in(col, value_set=pa.array([str(v) for v in values], pa.string())))
        if isinstance(node, ast.Missing):
            missing = _np_bool(pc.is_null(self.column(node.source.name)))
            return ~missing if node.negate else missing
        if isinstance(node, ast.Truth):
            col = self.column(node.ref.name)
            return _np_bool(col if pa.types.is_boolean(col.type) else pc.cast(col, pa.bool_()))
        raise AssertionError(f"cannot evaluate {type(node).__name__}")

    def near(self, node: ast.Near) -> np.ndarray:
        """Rows where a left phrase and a right phrase start at most ``within`` words apart."""
        candidates = self.phrases(node.source, node.left) & self.phrases(node.source, node.right)
        out = np.zeros(self.n, dtype=bool)
        rows = np.flatnonzero(candidates)
        if len(rows) == 0:
            return out
        sub = pc.take(self.lower(node.source), pa.array(rows))
        # Words as words() counts them (whitespace-separated); a word also matches with
        # punctuation at its edges ("apply," is "apply"), while "t&c" or "10/10" stay one word.
        lists = pc.utf8_split_whitespace(pc.utf8_trim_whitespace(sub))
        tokens = pc.list_flatten(lists)
        bare = pc.replace_substring_regex(tokens, f"^{_NONWORD}+|{_NONWORD}+$", "")
        parent = pc.list_parent_indices(lists).to_numpy()

        def starts(node_phrases: ast.Phrases) -> np.ndarray:
            hits = np.zeros(len(tokens), dtype=bool)
            for phrase in node_phrases.phrases:
                words = phrase.lower().split()
                ok = np.ones(len(tokens), dtype=bool)
                for k, w in enumerate(words):
                    eq = _np_bool(pc.equal(tokens, w)) | _np_bool(pc.equal(bare, w))
                    shifted = np.zeros(len(tokens), dtype=bool)
                    if k < len(tokens):
                        shifted[:len(tokens) - k] = eq[k:]
                        same_row = np.zeros(len(tokens), dtype=bool)
                        same_row[:len(tokens) - k] = parent[k:] == parent[:len(tokens) - k]
                        shifted &= same_row
                    ok &= shifted
                hits |= ok
            return np.flatnonzero(hits)

        a, b = starts(node.left), starts(node.right)
        if len(a) == 0 or len(b) == 0:
            return out
        j = np.searchsorted(b, a)
        found = np.zeros(len(a), dtype=bool)
        for nb in (np.clip(j, 0, len(b) - 1), np.clip(j - 1, 0, len(b) - 1)):
            found |= (parent[b[nb]] == parent[a]) & (np.abs(b[nb] - a) <= node.within)
        out[rows[np.unique(parent[a[found]])]] = True
        return out


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den; 0 where den is 0 (no letters, no words), missing where den is missing."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / den, np.where(np.isnan(den), np.nan, 0.0))


def _name_first_group(regex: ast.Regex) -> ast.Regex:
    """number(F, /re/) reads the first capture group, or the whole match if there is none.
    Arrow's extract_regex needs a named group, so name it."""
    p, i, depth_class = regex.pattern, 0, False
    while i < len(p):
        ch = p[i]
        if ch == "\\":
            i += 2
            continue
        if ch == "[":
            depth_class = True
        elif ch == "]":
            depth_class = False
        elif ch == "(" and not depth_class and not p.startswith("(?", i):
            return ast.Regex(p[:i] + "(?P<value>" + p[i + 1:], regex.flags, regex.span)
        i += 1
    return ast.Regex(f"(?P<value>{p})", regex.flags, regex.span)


def rule_masks(spec: Spec, batch, rules=None) -> list:
    """One boolean array per rule: where it fires."""
    ev = BatchEvaluator(spec, batch)
    return [ev.predicate(r.predicate) for r in (rules if rules is not None else spec.rules)]


def vote_matrix(spec: Spec, batch, rules=None) -> np.ndarray:
    """(rows × rules) int8 votes: the rule's label index where it fires, -1 elsewhere."""
    rules = rules if rules is not None else spec.rules
    out = np.full((batch.num_rows, len(rules)), ABSTAIN, dtype=np.int8, order="F")
    for j, (rule, mask) in enumerate(zip(rules, rule_masks(spec, batch, rules))):
        out[mask, j] = rule.label_index
    return out


def columns_needed(spec: Spec) -> list:
    """The data columns the spec reads (its fields' columns)."""
    return list(dict.fromkeys(f.column for f in spec.fields.values()))
