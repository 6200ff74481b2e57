"""Whole words in Arrow string arrays: the character classes, UTF-8 runs and the token index.

``has`` matches whole words, any case: Unicode letters and digits (RE2's ``[\\p{L}\\p{N}]``)
are word characters. This module holds that definition once: ``phrase_regex`` (the RE2
pattern of one phrase), the word/space tables over all code points, and :class:`TokenIndex`,
which splits lower-cased text into word tokens over its UTF-8 bytes with numpy and finds
every token that is one of a set of words in one hash pass. The evaluator
(``compiler/evaluator.py``) uses it for ``has``, ``near``, ``count`` and ``words``.
"""
from __future__ import annotations

import functools
import itertools
import re
import threading

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

WORD = r"[\p{L}\p{N}]"
NONWORD = r"[^\p{L}\p{N}]"
# The one case-folding rule of phrase matching, applied to the text and to the phrases
# alike: each character's simple Unicode lower case (Arrow's utf8_lower: "İ" -> "i",
# "Σ" -> "σ"), then the two letters whose lower case has two forms are unified:
# "ß" -> "ss" (so "STRASSE" is "straße") and the final sigma "ς" -> "σ".
_FOLDS = (("ß", "ss"), ("ς", "σ"))


def fold_case(arr: pa.Array) -> pa.Array:
    """A string array case-folded by the rule above."""
    folded = pc.utf8_lower(arr)
    for a, b in _FOLDS:
        folded = pc.replace_substring(folded, a, b)
    return folded


@functools.lru_cache(maxsize=1 << 16)
def fold(phrase: str) -> str:
    """One phrase case-folded by the same rule (Python's own lower() differs: it turns
    "İ" into "i" plus a combining dot, and "Σ" at a word's end into "ς")."""
    if phrase.isascii():
        return phrase.lower()  # the same, without an Arrow call
    return fold_case(pa.array([phrase], pa.string()))[0].as_py()

def is_word_char(ch: str) -> bool:
    return ch.isalnum()


def phrase_regex(phrase: str) -> str:
    """RE2 pattern for one phrase: whole words, whitespace-flexible (text is case-folded first)."""
    words = fold(phrase).split()
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
_RE2_SPACE_TABLE = np.zeros(256, dtype=bool)
_RE2_SPACE_TABLE[_RE2_SPACE_BYTES] = True


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


_POWERS: dict = {}


def powers(base: int, n: int) -> np.ndarray:
    """base^0 .. base^(n-1) mod 2^64 (uint64), for polynomial hashes of byte spans (the
    featurizer's n-grams, the ledger's ids): from a table grown as needed, read-only."""
    table = _POWERS.get(base)
    if table is None or len(table) < n:
        out = np.full(max(n, 1 << 16, 2 * len(table) if table is not None else 0), base, dtype=np.uint64)
        out[0] = 1
        table = np.cumprod(out, dtype=np.uint64)
        table.flags.writeable = False
        _POWERS[base] = table
    return table[:n]


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

    def word_ids(self, vocab: pa.Array, shape=None) -> np.ndarray:
        """Per token: its index in ``vocab`` (a string array of lower-cased words), or -1;
        one hash pass (``index_in``) over the tokens that could be a vocabulary word (right
        length and first byte: ``shape`` is ``word_shapes(vocab)``, when already known)."""
        ids = np.full(len(self.starts), -1, dtype=np.int32)
        if len(vocab) == 0 or len(self.starts) == 0:
            return ids
        first_bytes, lengths = shape or word_shapes(vocab.to_pylist())
        size = np.minimum(self.ends - self.starts, len(lengths) - 1)
        maybe = np.flatnonzero(lengths[size] & first_bytes[self.bytes[self.starts]])
        if len(maybe):
            bounds = np.empty(2 * len(maybe), dtype=np.int32)
            bounds[0::2] = self.starts[maybe] + self._base
            bounds[1::2] = self.ends[maybe] + self._base
            pieces = pa.StringArray.from_buffers(len(bounds) - 1, pa.py_buffer(bounds), self._data)
            ids[maybe] = pc.fill_null(pc.index_in(pieces, value_set=vocab), -1).to_numpy()[0::2]
        return ids

    def linked(self, tokens: np.ndarray, spaced: bool) -> np.ndarray:
        """For each token t (t + 1 a token): whether t + 1 follows it in the same row, and,
        with ``spaced``, only whitespace as RE2's \\s sees it separates them."""
        ok = self.row[tokens + 1] == self.row[tokens]
        if spaced and ok.any():
            ok[ok] = self._spaces_between(tokens[ok])
        return ok

    def sequence_starts(self, runs: list, spaced: bool = False) -> np.ndarray:
        """The tokens where ``runs`` start as consecutive tokens of one row; with ``spaced``,
        only where what separates them is whitespace as RE2's \\s sees it ([\\t\\n\\f\\r ])."""
        self.lookup(runs)
        at = self._where[runs[0]]
        for k, w in enumerate(runs[1:], 1):
            at = at[np.isin(at + k, self._where[w], assume_unique=True)]
            at = at[self.row[at + k] == self.row[at]]
            if spaced:
                at = at[self._spaces_between(at + k - 1)]
        return at

    def rows_with_sequence(self, runs: list, spaced: bool = False) -> np.ndarray:
        """Rows where ``runs`` occur as consecutive tokens (see ``sequence_starts``)."""
        out = np.zeros(self.n, dtype=bool)
        out[self.row[self.sequence_starts(runs, spaced)]] = True
        return out & self.valid

    def _spaces_between(self, tokens: np.ndarray) -> np.ndarray:
        """For each token t: whether every byte between it and token t + 1 is [\\t\\n\\f\\r ]."""
        lo, hi = self.ends[tokens], self.starts[tokens + 1]
        single = hi - lo == 1  # most gaps are one byte: a table lookup
        out = np.zeros(len(tokens), dtype=bool)
        out[single] = _RE2_SPACE_TABLE[self.bytes[lo[single]]]
        wide = np.flatnonzero(~single)
        lo, width = lo[wide], (hi[wide] - lo[wide]).astype(np.int64)
        first = np.cumsum(width) - width
        positions = np.repeat(lo - first, width) + np.arange(width.sum())
        counts = np.concatenate([[0], np.cumsum(~_RE2_SPACE_TABLE[self.bytes[positions]])])
        out[wide] = counts[first + width] == counts[first]
        return out


@functools.lru_cache(maxsize=1 << 17)
def word_runs(phrase: str):
    """(runs, exact) for a phrase: its maximal runs of word characters (lower-cased), and
    whether it is only words of word characters separated by whitespace (then runs that
    are consecutive tokens separated by whitespace are exactly the whole-word match).
    None when the token index cannot serve it: no word character, or a character that
    Python's ``isalnum`` (used by ``phrase_regex``) and RE2 classify differently."""
    text = fold(phrase)
    table = char_table("word")
    if any(bool(table[ord(ch)]) != is_word_char(ch) for ch in text):
        return None
    runs = ["".join(g) for is_word, g in itertools.groupby(text, is_word_char) if is_word]
    if not runs:
        return None
    return runs, runs == text.split()


def word_shapes(words) -> tuple:
    """(first bytes, lengths): boolean tables of the UTF-8 first bytes and byte lengths of ``words``."""
    encoded = [w.encode("utf-8") for w in words]
    first_bytes = np.zeros(256, dtype=bool)
    first_bytes[[e[0] for e in encoded]] = True
    lengths = np.zeros(max(map(len, encoded), default=0) + 2, dtype=bool)
    lengths[[len(e) for e in encoded]] = True
    return first_bytes, lengths


class PhraseSet:
    """Many phrases, each a sequence of words, matched together in one pass: a trie over
    word ids, walked one level per word for every candidate start at once (numpy), so the
    cost grows with the tokens and the matches, not with the number of phrases.

    ``match`` takes, per token, the id of the word it is (``vocab``'s index, -1 for none;
    several arrays when a token may read as more than one word) and a ``linked`` test
    (does token t + 1 continue a phrase from token t) and returns every (start token,
    phrase) pair. Phrases with no words never match."""

    def __init__(self, phrases):
        self.phrases = [tuple(p) for p in phrases]
        vocab = sorted({w for p in self.phrases for w in p})
        self.vocab = pa.array(vocab, pa.string())
        self.shape = word_shapes(vocab)
        word_id = {w: i for i, w in enumerate(vocab)}
        self.width = max(len(vocab), 1)
        states = {(): 0}
        levels: list = []     # per depth: [(parent * width + word, state), ...]
        finals: dict = {}     # state -> phrase index
        for i, phrase in enumerate(self.phrases):
            for k in range(len(phrase)):
                prefix = phrase[:k + 1]
                if prefix not in states:
                    states[prefix] = len(states)
                    if len(levels) <= k:
                        levels.append([])
                    levels[k].append((states[phrase[:k]] * self.width + word_id[phrase[k]], states[prefix]))
            if phrase:
                finals.setdefault(states[phrase], i)
        self.levels = []
        for level in levels:
            level.sort()
            self.levels.append((np.array([k for k, _ in level], np.int64), np.array([s for _, s in level], np.int64)))
        self.first = np.full(self.width, -1, dtype=np.int64)  # depth 0 as a table: word -> state
        if self.levels:
            self.first[self.levels[0][0]] = self.levels[0][1]
        self.final = np.full(len(states), -1, dtype=np.int64)
        for state, i in finals.items():
            self.final[state] = i
        # What can go on from a state, to prune the walk before the costlier tests: whether it
        # has a longer phrase, and per depth the words that can come next (one slot more,
        # False, which a word id of -1 reads).
        self.extends = np.zeros(len(states), dtype=bool)
        self.follows = [None]
        for keys, _ in self.levels:
            self.extends[keys // self.width] = True
        for keys, _ in self.levels[1:]:
            follows = np.zeros(self.width + 1, dtype=bool)
            follows[keys % self.width] = True
            self.follows.append(follows)
        # a phrase that repeats another (same words) matches where that one does
        self.same_as = np.array([finals[states[p]] if p else -1 for p in self.phrases], np.int64)

    def _step(self, depth: int, state: np.ndarray, word: np.ndarray) -> np.ndarray:
        if depth == 0:  # from the root: the word's own state
            return np.where(word >= 0, self.first[np.maximum(word, 0)], -1)
        keys, nxt = self.levels[depth]
        key = state * self.width + word
        at = np.minimum(np.searchsorted(keys, key), len(keys) - 1)
        return np.where((word >= 0) & (keys[at] == key), nxt[at], -1)

    def match(self, ids: list, linked) -> tuple:
        """(starts, phrase index) of every match; ``ids`` a list of per-token word-id arrays,
        ``linked(tokens)`` the boolean test that token t + 1 continues from token t."""
        n = len(ids[0])
        if not self.levels or n == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        starts = np.flatnonzero(np.logical_or.reduce([alt >= 0 for alt in ids]))  # tokens that read as a word
        pos, state = self._advance(0, starts, np.zeros(len(starts), np.int64), ids, starts)
        found_pos, found_phrase = [], []
        depth = 0
        while len(pos):
            final = self.final[state]
            hit = final >= 0
            found_pos.append(pos[hit])
            found_phrase.append(final[hit])
            depth += 1
            if depth >= len(self.levels):
                break
            last = pos + depth - 1
            ok = self.extends[state] & (last + 1 < n)
            pos, state, last = pos[ok], state[ok], last[ok]
            ok = np.logical_or.reduce([self.follows[depth][alt[last + 1]] for alt in ids])
            pos, state, last = pos[ok], state[ok], last[ok]
            ok = linked(last)
            pos, state = self._advance(depth, pos[ok], state[ok], ids, last[ok] + 1)
        if not found_pos:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        return np.concatenate(found_pos), np.concatenate(found_phrase)

    def _advance(self, depth, pos, state, ids, tokens) -> tuple:
        """The (start, state) pairs that read the word at ``tokens`` at ``depth`` (each
        alternative word id tried; at depth 0 every token given is a start from the root)."""
        outs_pos, outs_state, seen = [], [], []
        for alt in ids:
            word = alt[tokens]
            if any(np.array_equal(word, s) for s in seen):
                continue
            seen.append(word)
            nxt = self._step(depth, state, word)
            keep = nxt >= 0
            outs_pos.append(pos[keep])
            outs_state.append(nxt[keep])
        pos, state = np.concatenate(outs_pos), np.concatenate(outs_state)
        if len(seen) > 1:  # two readings of a token may reach the same state
            pairs = np.unique(np.stack([pos, state]), axis=1)
            pos, state = pairs[0], pairs[1]
        return pos, state


@functools.lru_cache(maxsize=64)
def phrase_set(phrases: tuple) -> PhraseSet:
    """The ``PhraseSet`` of a tuple of word tuples, built once per distinct tuple."""
    return PhraseSet(phrases)
