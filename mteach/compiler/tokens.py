"""Whole words in Arrow string arrays: the character classes, UTF-8 runs and the token index.

``has`` matches whole words, any case: Unicode letters and digits (RE2's ``[\\p{L}\\p{N}]``)
are word characters. This module holds that definition once: ``phrase_regex`` (the RE2
pattern of one phrase), the word/space tables over all code points, and :class:`TokenIndex`,
which splits lower-cased text into word tokens over its UTF-8 bytes with numpy and finds
every token that is one of a set of words in one hash pass. The evaluator
(``compiler/evaluator.py``) uses it for ``has``, ``near``, ``count`` and ``words``.
"""
from __future__ import annotations

import itertools
import re
import threading

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

WORD = r"[\p{L}\p{N}]"
NONWORD = r"[^\p{L}\p{N}]"

def is_word_char(ch: str) -> bool:
    return ch.isalnum()


def phrase_regex(phrase: str) -> str:
    """RE2 pattern for one phrase: whole words, whitespace-flexible (text is lower-cased first)."""
    words = phrase.lower().split()
    body = r"\s+".join(re.escape(w) for w in words)
    left = f"(?:^|{NONWORD})" if is_word_char(words[0][0]) else ""
    right = f"(?:$|{NONWORD})" if is_word_char(words[-1][-1]) else ""
    return left + body + right


def np_bool(arr) -> np.ndarray:
    if isinstance(arr, np.ndarray):
        return arr
    return pc.fill_null(arr, False).to_numpy(zero_copy_only=False, writable=True)


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


def char_table(name: str) -> np.ndarray:
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
    for key, hits in (("word", pc.match_substring_regex(chars, rf"^{WORD}$")),
                      ("space", pc.utf8_is_space(chars))):
        table = np.zeros(_MAX_CODE_POINT, dtype=bool)
        table[cps] = np_bool(hits)
        _tables[key] = table


def utf8_views(arr: pa.Array) -> tuple:
    """(bytes, offsets, base): numpy views of a string array's UTF-8 bytes and its
    offsets rebased to them; ``base`` is where the bytes start in the data buffer."""
    offsets = np.frombuffer(arr.buffers()[1], np.int32, len(arr) + 1, arr.offset * 4)
    start, end = int(offsets[0]), int(offsets[-1])
    b = np.frombuffer(arr.buffers()[2], np.uint8, end - start, start) if end > start else np.zeros(0, np.uint8)
    return b, offsets - start, start


def char_class(b: np.ndarray, name: str) -> np.ndarray:
    """Per byte: whether the character it belongs to is in the named class."""
    table = char_table(name)
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


def flag_runs(flags: np.ndarray, offsets: np.ndarray) -> tuple:
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


def runs_per_row(starts: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    return np.diff(np.searchsorted(starts, offsets))


class TokenIndex:
    """The word tokens of one lower-cased string array, and where given words occur."""

    def __init__(self, lowered: pa.Array):
        b, offsets, base = utf8_views(lowered)
        self.bytes = b
        self.starts, self.ends = flag_runs(char_class(b, "word"), offsets)
        self.row = np.repeat(np.arange(len(lowered), dtype=np.int32), runs_per_row(self.starts, offsets))
        self.valid = np_bool(pc.is_valid(lowered))
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


def word_runs(phrase: str):
    """(runs, exact) for a phrase: its maximal runs of word characters (lower-cased), and
    whether it is only words of word characters separated by whitespace (then runs that
    are consecutive tokens separated by whitespace are exactly the whole-word match).
    None when the token index cannot serve it: no word character, or a character that
    Python's ``isalnum`` (used by ``phrase_regex``) and RE2 classify differently."""
    text = phrase.lower()
    table = char_table("word")
    if any(bool(table[ord(ch)]) != is_word_char(ch) for ch in text):
        return None
    runs = ["".join(g) for is_word, g in itertools.groupby(text, is_word_char) if is_word]
    if not runs:
        return None
    return runs, runs == text.split()
