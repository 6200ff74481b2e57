"""Evaluate a checked spec's rules column-wise over Arrow data.

Every predicate is computed with Arrow compute kernels (RE2 regex, substring search,
lengths, comparisons) over a whole batch; no Python runs per row. Within a batch
each distinct sub-expression (by ``node.key()``) is computed once, so ten rules that
test the same lower-cased text or the same phrase share that work.

Semantics (also in the README's language reference):
- a test on a missing (null) value is false; ``not`` inverts that.
- ``has`` matches whole words, any case (text and phrases case-folded by one rule,
  ``tokens.fold_case``): Unicode letters and digits are word
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

import functools
import re
import weakref
from dataclasses import fields

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..grammar import ast
from ..grammar.visitor import NodeVisitor
from .spec import Spec, number_pattern, regex_pattern
from .tokens import (NONWORD, TokenIndex, char_class, flag_runs, fold, fold_case, is_word_char, np_bool,
                     phrase_regex, phrase_set, runs_per_row, utf8_views, word_runs, word_shapes)

ABSTAIN = -1


def _np_float(arr) -> np.ndarray:
    if isinstance(arr, np.ndarray):
        return arr
    return pc.cast(arr, pa.float64()).to_numpy(zero_copy_only=False, writable=True)  # nulls -> nan


_phrase_cache: dict = {}  # id(spec) -> (weak reference to the spec, its _spec_phrases)


def _spec_phrases(spec: Spec) -> dict:
    """source key -> the phrases the spec's rules look for in that text (computed once per spec)."""
    cached = _phrase_cache.get(id(spec))
    if cached is not None and cached[0]() is spec:
        return cached[1]
    found = _walk_phrases(spec)
    for key in [k for k, (ref, _) in _phrase_cache.items() if ref() is None]:
        _phrase_cache.pop(key, None)
    _phrase_cache[id(spec)] = (weakref.ref(spec), found)
    return found


def _token_phrases(spec: Spec, source_key, exact: bool) -> tuple:
    """The spec's phrases on one text that the token index serves, ``exact`` or not, sorted."""
    found = _spec_phrases(spec)
    key = ("token phrases", source_key, exact)
    if key not in found:
        found[key] = tuple(sorted(p for p in found.get(source_key, ())
                                  if (runs := word_runs(p)) is not None and runs[1] == exact))
    return found[key]


class _PhrasePlan:
    """What a batch needs to match a tuple of phrases, built once per tuple: their
    ``PhraseSet`` and, per phrase list asked about, its phrase ids."""

    @staticmethod
    @functools.lru_cache(maxsize=32)
    def of(phrases: tuple) -> "_PhrasePlan":
        return _PhrasePlan(phrases)

    def __init__(self, phrases: tuple):
        self.position = {p: i for i, p in enumerate(phrases)}
        self.pset = phrase_set(tuple(tuple(word_runs(p)[0]) for p in phrases))
        self._ids: dict = {}
        self._lists: dict = {}
        self._from: dict = {}

    # The caches below are shared by the threads evaluating batches: read once with get, so
    # that another thread's clear() between a test and a read cannot lose an entry.
    def ids(self, phrases: tuple) -> np.ndarray:
        ids = self._ids.get(phrases)
        if ids is None:
            if len(self._ids) > 4096:
                self._ids.clear()
            ids = self._ids[phrases] = np.unique(self.pset.same_as[[self.position[p] for p in phrases]])
        return ids

    def ids_from(self, words: tuple, ids: np.ndarray) -> np.ndarray:
        """Per token, its word's index in this plan's vocabulary, from its index in ``words``
        (a sorted superset; -1, none, stays -1)."""
        table = self._from.get(words)
        if table is None:
            vocab = self.pset.vocab.to_pylist()
            position = {w: i for i, w in enumerate(vocab)}
            if len(self._from) > 8:
                self._from.clear()
            table = self._from[words] = (None if list(words) == vocab else
                                         np.array([position.get(w, -1) for w in words] + [-1], np.int32))
        return ids if table is None else table[ids]  # -1 reads the last slot

    def lists_of(self, lists: tuple) -> tuple:
        """For several phrase lists, which lists hold each phrase id: (bounds, list index),
        the lists of phrase id i being ``list_index[bounds[i]:bounds[i + 1]]``."""
        found = self._lists.get(lists)
        if found is None:
            if len(self._lists) > 64:
                self._lists.clear()
            ids = [self.ids(phrases) for phrases in lists]
            phrase = np.concatenate(ids + [np.zeros(0, np.int64)])
            owner = np.repeat(np.arange(len(lists)), [len(i) for i in ids])
            order = np.argsort(phrase, kind="stable")
            found = self._lists[lists] = (np.searchsorted(phrase[order], np.arange(len(self.position) + 1)),
                                          owner[order])
        return found


@functools.lru_cache(maxsize=4096)
def _exact_phrases(phrases: tuple) -> tuple:
    """Those of ``phrases`` that the token index matches exactly (plain words, whitespace between)."""
    return tuple(p for p in phrases if (runs := word_runs(p)) is not None and runs[1])


class PhraseMatches:
    """Where the token-index phrases of one text occur in a batch: every (start token,
    phrase) pair, found for all the spec's phrases on that text in one ``PhraseSet`` pass."""

    def __init__(self, phrases: tuple, index: TokenIndex, spaced: bool, known: tuple):
        """``known``: (words, ids), each token's index in ``words`` (``BatchEvaluator.word_ids``)."""
        self.plan = _PhrasePlan.of(phrases)
        self.row = index.row
        self.starts, self.which = self.plan.pset.match([self.plan.ids_from(*known)],
                                                       lambda t: index.linked(t, spaced))
        self.count = len(phrases)
        self._by_phrase = None  # (starts sorted by phrase, bounds), made when first needed
        self.parts = (self,)  # see PhraseMatchesUnion

    def ids(self, phrases: tuple) -> np.ndarray:
        """The distinct phrase ids of ``phrases`` (phrases with the same words share one)."""
        return self.plan.ids(phrases)

    def starts_of(self, phrases) -> np.ndarray:
        """The start tokens of any of ``phrases`` (a token may appear more than once)."""
        ids = self.ids(phrases)
        if len(ids) > 32:
            wanted = np.zeros(self.count, dtype=bool)
            wanted[ids] = True
            return self.starts[wanted[self.which]]
        if self._by_phrase is None:
            order = np.argsort(self.which, kind="stable")
            self._by_phrase = self.starts[order], np.searchsorted(self.which[order], np.arange(self.count + 1))
        starts, bounds = self._by_phrase
        return np.concatenate([starts[bounds[i]:bounds[i + 1]] for i in ids] + [np.zeros(0, np.int64)])

    def rows_of_lists(self, lists: tuple) -> tuple:
        """(row, list) pairs, a row holding any phrase of the list (repeats possible): where
        each of many phrase lists matches, from this one pass, in a few vector steps."""
        bounds, owner = self.plan.lists_of(lists)
        first, many = bounds[self.which], np.diff(bounds)[self.which]
        rows = self.row[self.starts]
        pairs = np.arange(many.sum()) - np.repeat(np.cumsum(many) - many, many)  # rank within its match
        return np.repeat(rows, many), owner[np.repeat(first, many) + pairs]

    def rows_with_all(self, phrases, n: int) -> np.ndarray:
        """Rows where every one of ``phrases`` occurs."""
        ids = self.ids(phrases)
        wanted = np.zeros(self.count, dtype=bool)
        wanted[ids] = True
        sel = wanted[self.which]
        pairs = np.unique(self.row[self.starts[sel]].astype(np.int64) * self.count + self.which[sel])
        return np.bincount(pairs // self.count, minlength=n) == len(ids)


class PhraseMatchesUnion:
    """``PhraseMatches`` of several phrase tuples read as one. The studio's evaluator
    outlives one version of the spec: when an edit adds a phrase, only the new phrases
    get a pass over the token index (``BatchEvaluator.phrase_matches``), not all of them."""

    MAX_PARTS = 8  # then one fresh pass over all the phrases

    def __init__(self, parts: tuple):
        self.parts = parts

    def _split(self, phrases) -> list:
        """(part, its share of ``phrases``): each phrase read from the first part that has it."""
        shares = [[] for _ in self.parts]
        for p in phrases:
            k = next(k for k, part in enumerate(self.parts) if p in part.plan.position)
            shares[k].append(p)
        return [(part, tuple(share)) for part, share in zip(self.parts, shares) if share]

    def starts_of(self, phrases) -> np.ndarray:
        return np.concatenate([part.starts_of(share) for part, share in self._split(phrases)]
                              + [np.zeros(0, np.int64)])

    def rows_with_all(self, phrases, n: int) -> np.ndarray:
        return np.logical_and.reduce([part.rows_with_all(share, n) for part, share in self._split(phrases)])


def _token_words(spec: Spec, source_key) -> tuple:
    """The words of all the spec's token-index phrases on one text, exact or not, sorted."""
    found = _spec_phrases(spec)
    key = ("token words", source_key)
    if key not in found:
        found[key] = tuple(sorted({w for exact in (True, False) for p in _token_phrases(spec, source_key, exact)
                                   for w in word_runs(p)[0]}))
    return found[key]


def _walk_phrases(spec: Spec) -> dict:
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


class BatchEvaluator(NodeVisitor):
    """Evaluates nodes of one spec over one batch, memoizing by node key."""
    # Resolved rules hold no statements, and the checker has inlined every define and
    # lexicon; regexes, phrase lists and first/last(...) are read by the node that holds
    # them (``text``, ``phrases``, ``measure``), never evaluated on their own.
    not_applicable = frozenset({"Concept", "Labels", "Field", "Define", "Rule", "Hint", "Example", "Use",
                                "SpecFile", "Lexicon", "Regex", "Phrases", "Window"})

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
            if pa.types.is_large_string(col.type) or pa.types.is_string_view(col.type) or pa.types.is_null(col.type):
                col = col.cast(pa.string())  # the kernels and the token index read 32-bit offsets
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
        """The text case-folded as phrases are (``tokens.fold_case``)."""
        return self._cached(("lower", src.key()), lambda: fold_case(self.text(src)))

    def _sparse_regex(self, arr: pa.Array, candidates: np.ndarray, pattern: str) -> np.ndarray:
        """Regex-test only the candidate rows (found by a cheap substring scan)."""
        idx = np.flatnonzero(candidates)
        out = np.zeros(self.n, dtype=bool)
        if len(idx) == 0:
            return out
        if len(idx) > self.n // 2:
            return np_bool(pc.match_substring_regex(arr, pattern))
        sub = pc.take(arr, pa.array(idx))
        out[idx] = np_bool(pc.match_substring_regex(sub, pattern))
        return out

    def tokens(self, src) -> TokenIndex:
        """The token index of the lower-cased text."""
        return self._cached(("tokens", src.key()), lambda: TokenIndex(self.lower(src)))

    def word_ids(self, src) -> tuple:
        """(words, ids): the words of the spec's token-index phrases on this text and, per
        token, its index in them (-1: none). Looked up once for both phrase passes."""
        words = _token_words(self.spec, src.key())
        key = ("word ids", src.key())
        if key not in self.memo or self.memo[key][0] != words:  # one at a time: the latest spec's
            vocab = pa.array(words, pa.string())
            self.memo[key] = words, self.tokens(src).word_ids(vocab, word_shapes(words) if words else None)
        return self.memo[key]

    def phrase_matches(self, src, exact: bool) -> PhraseMatches:
        """Where the spec's phrases on this text that the token index serves occur: the
        ``exact`` ones (plain words separated by whitespace: a match is the whole-word
        match) or the others (their word runs, consecutive: candidates RE2 verifies)."""
        phrases = _token_phrases(self.spec, src.key(), exact)
        latest = ("latest phrase matches", src.key(), exact)

        def build():
            last = self.memo.get(latest)  # this evaluator's earlier pass, for an earlier spec (the studio's)
            if last is None:
                return PhraseMatches(phrases, self.tokens(src), exact, self.word_ids(src))
            new = tuple(p for p in phrases if not any(p in part.plan.position for part in last.parts))
            if not new:
                return last
            if len(last.parts) >= PhraseMatchesUnion.MAX_PARTS:
                return PhraseMatches(phrases, self.tokens(src), exact, self.word_ids(src))
            return PhraseMatchesUnion(last.parts + (PhraseMatches(new, self.tokens(src), exact, self.word_ids(src)),))
        # keyed by the phrases too: an evaluator may outlive one version of the spec (the studio's)
        matches = self.memo[latest] = self._cached(("phrase matches", src.key(), exact, phrases), build)
        return matches

    def token_rows(self, src, starts: np.ndarray) -> np.ndarray:
        """Rows holding any of the ``starts`` tokens (null text never matches)."""
        index = self.tokens(src)
        out = np.zeros(self.n, dtype=bool)
        out[index.row[starts]] = True
        return out & index.valid

    def phrase(self, src, phrase: str) -> np.ndarray:
        """Rows where ``phrase`` occurs as whole words."""
        def compute():
            lowered = self.lower(src)
            runs = word_runs(phrase)
            if runs is not None:
                exact = runs[1]
                candidates = self.token_rows(src, self.phrase_matches(src, exact).starts_of((phrase,)))
                return candidates if exact else self._sparse_regex(lowered, candidates, phrase_regex(phrase))
            words = fold(phrase).split()
            longest = max(words, key=len)
            candidates = np_bool(pc.match_substring(lowered, longest))
            if len(words) == 1 and not is_word_char(longest[0]) and not is_word_char(longest[-1]):
                return candidates  # no word edges to check
            return self._sparse_regex(lowered, candidates, phrase_regex(phrase))
        return self._cached(("phrase", src.key(), fold(phrase)), compute)

    def phrases(self, src, node: ast.Phrases) -> np.ndarray:
        """Rows with any (or all) of the phrases. The exact token-index phrases are read
        together from ``phrase_matches`` (a list of 50,000 costs one pass, not 50,000
        masks); the others one by one."""
        exact = _exact_phrases(node.phrases)
        masks = self.inexact_phrase_masks(src, node.phrases, exact)
        if exact:
            matches = self.phrase_matches(src, True)
            if node.mode == "all":
                masks.append(matches.rows_with_all(exact, self.n) & self.tokens(src).valid)
            else:
                masks.append(self.token_rows(src, matches.starts_of(exact)))
        if node.mode == "all":
            return np.logical_and.reduce(masks)
        return np.logical_or.reduce(masks)

    def inexact_phrase_masks(self, src, phrases: tuple, exact: tuple) -> list:
        """A mask for each of ``phrases`` that is not in ``exact`` (``_exact_phrases(phrases)``)."""
        if len(exact) == len(phrases):
            return []
        served = set(exact)
        return [self.phrase(src, p) for p in phrases if p not in served]

    # -- measures --------------------------------------------------------------------
    def _count_regex(self, arr, pattern) -> np.ndarray:
        return _np_float(pc.count_substring_regex(arr, pattern))

    def words(self, src) -> np.ndarray:
        """Runs of non-whitespace characters per row (whitespace as Arrow's utf8 kernels
        define it), counted over the UTF-8 bytes."""
        def compute():
            arr = self.text(src)
            b, offsets, _ = utf8_views(arr)
            space = char_class(b, "space")
            starts, _ = flag_runs(~space, offsets)
            counts = runs_per_row(starts, offsets).astype(np.float64)
            counts[~np_bool(pc.is_valid(arr))] = np.nan
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
        """Occurrences of the phrases: each word where one of them starts counts once.
        Phrases of plain words are counted through the token index (no regex, so a list
        of thousands works); the others (punctuation inside or at an edge) with their
        own regex on the rows that hold them, separators doubled first so that adjacent
        matches ("t&c t&c") do not share the boundary character (but not the phrase's own
        punctuation: "t&c" must still read "t&c")."""
        lowered = self.lower(src)
        counts = np.where(np_bool(pc.is_null(lowered)), np.nan, 0.0)
        exact = _exact_phrases(node.phrases)
        served = set(exact)
        for p in node.phrases:
            if p in served:
                continue
            rows = np.flatnonzero(self.phrase(src, p))
            if len(rows):
                own = "".join(sorted({re.escape(ch) for ch in fold(p) if not is_word_char(ch) and not ch.isspace()}))
                separator = f"([^\\p{{L}}\\p{{N}}{own}])"
                doubled = pc.replace_substring_regex(pc.take(lowered, pa.array(rows)), separator, r"\1\1")
                counts[rows] += _np_float(pc.count_substring_regex(doubled, phrase_regex(p)))
        if exact:
            starts = np.unique(self.phrase_matches(src, True).starts_of(exact))
            counts += np.bincount(self.tokens(src).row[starts], minlength=self.n)
        return counts

    def number(self, src, regex: ast.Regex) -> np.ndarray:
        pattern = number_pattern(regex)
        arr = self.text(src)
        extracted = pc.struct_field(pc.extract_regex(arr, pattern), [0])
        valid = pc.match_substring_regex(extracted, r"^\s*[-+]?(\d+([.,]\d*)?|[.,]\d+)\s*$")
        cleaned = pc.replace_substring(pc.utf8_trim_whitespace(extracted), ",", ".")
        cleaned = pc.if_else(pc.fill_null(valid, False), cleaned, pa.scalar(None, pa.string()))
        return _np_float(pc.cast(cleaned, pa.float64()))

    # -- values and predicates (visit_<Node>: see grammar/visitor.py) ------------------
    def value(self, node):
        return self.visit(node)

    def visit_Number(self, node):
        return node.value

    visit_String = visit_Number

    def visit_Measure(self, node):
        return self.measure(node)

    def visit_Ref(self, node):
        col = self.column(node.name)
        if self.spec.field_kinds.get(node.name) == "number" or pa.types.is_integer(col.type) \
                or pa.types.is_floating(col.type) or pa.types.is_decimal(col.type):
            return self._cached(("float", node.name), lambda: _np_float(col))
        return col

    def compare(self, op, left, right) -> np.ndarray:
        if isinstance(left, pa.Array) or isinstance(right, pa.Array) or isinstance(left, str) or isinstance(right, str):
            fn = {"==": pc.equal, "!=": pc.not_equal}[op]
            return np_bool(fn(left, right))
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
        result = self.visit(node)
        self.memo[key] = result
        return result

    def visit_And(self, node) -> np.ndarray:
        return np.logical_and.reduce([self.predicate(i) for i in node.items])

    def visit_Or(self, node) -> np.ndarray:
        return np.logical_or.reduce([self.predicate(i) for i in node.items])

    def visit_Not(self, node) -> np.ndarray:
        return ~self.predicate(node.item)

    def visit_Match(self, node) -> np.ndarray:
        hit = np_bool(pc.match_substring_regex(self.text(node.source), regex_pattern(node.regex)))
        if node.negate:
            return ~hit & ~np_bool(pc.is_null(self.text(node.source)))
        return hit

    def visit_Has(self, node) -> np.ndarray:
        return self.phrases(node.source, node.phrases)

    def visit_Compare(self, node) -> np.ndarray:
        return self.compare(node.op, self.value(node.left), self.value(node.right))

    def visit_Between(self, node) -> np.ndarray:
        v, lo, hi = (self.value(x) for x in (node.value, node.low, node.high))
        with np.errstate(invalid="ignore"):
            return np.asarray((v >= lo) & (v <= hi), dtype=bool)

    def visit_In(self, node) -> np.ndarray:
        col = self.column(node.source.name)
        values = [v.value for v in node.values]
        if pa.types.is_integer(col.type) or pa.types.is_floating(col.type) or pa.types.is_decimal(col.type):
            return np.isin(_np_float(col), np.array(values, dtype=float))
        return np_bool(pc.is_in(col, value_set=pa.array([str(v) for v in values], pa.string())))

    def visit_Missing(self, node) -> np.ndarray:
        missing = np_bool(pc.is_null(self.column(node.source.name)))
        return ~missing if node.negate else missing

    def visit_Truth(self, node) -> np.ndarray:
        col = self.column(node.ref.name)
        return np_bool(col if pa.types.is_boolean(col.type) else pc.cast(col, pa.bool_()))

    def visit_Near(self, node: ast.Near) -> np.ndarray:
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
        bare = pc.replace_substring_regex(tokens, f"^{NONWORD}+|{NONWORD}+$", "")
        parent = pc.list_parent_indices(lists).to_numpy()

        def starts(node_phrases: ast.Phrases) -> np.ndarray:
            """Tokens where a phrase starts: its words are the next tokens of the row, each
            token read as written or without its edge punctuation (all phrases in one pass)."""
            words = tuple(tuple(fold(p).split()) for p in node_phrases.phrases)
            if not all(words):  # a phrase of no words starts everywhere
                return np.arange(len(tokens))
            pset = phrase_set(words)
            ids = [pc.fill_null(pc.index_in(t, value_set=pset.vocab), -1).to_numpy().astype(np.int64)
                   for t in (tokens, bare)]
            found, _ = pset.match(ids, lambda t: parent[t + 1] == parent[t])
            return np.unique(found)

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


def _has_any(rule):
    """(source, phrases) of a rule that is only ``F has any(...)``, else None."""
    p = rule.predicate
    if isinstance(p, ast.Has) and isinstance(p.phrases, ast.Phrases) and p.phrases.mode == "any":
        return p.source, p.phrases.phrases
    return None


def rule_masks(spec: Spec, batch, rules=None) -> list:
    """One boolean array per rule: where it fires."""
    ev = BatchEvaluator(spec, batch)
    return [ev.predicate(r.predicate) for r in (rules if rules is not None else spec.rules)]


def vote_matrix(spec: Spec, batch, rules=None) -> np.ndarray:
    """(rows × rules) int8 votes: the rule's label index where it fires, -1 elsewhere."""
    rules = rules if rules is not None else spec.rules
    n = batch.num_rows
    out = np.full((n, len(rules)), ABSTAIN, dtype=np.int8, order="F")
    ev = BatchEvaluator(spec, batch)
    # ``has any(...)`` rules, by text: where their exact phrases (plain words) occur is set for
    # all of them together from the text's one phrase pass (a thousand such rules cost that
    # pass and a few vector steps, not a thousand masks); their other phrases, and the other
    # rules, one mask at a time.
    by_text: dict = {}
    for j, rule in enumerate(rules):
        has = _has_any(rule)
        if has is None:
            np.copyto(out[:, j], rule.label_index, where=ev.predicate(rule.predicate))
            continue
        src, phrases = has
        exact = _exact_phrases(phrases)
        if exact:
            by_text.setdefault(src.key(), (src, []))[1].append((j, exact))
        others = ev.inexact_phrase_masks(src, phrases, exact)
        if others:
            np.copyto(out[:, j], rule.label_index, where=np.logical_or.reduce(others))
    flat = out.T.reshape(-1)  # a view: out is column-major
    for src, members in by_text.values():
        rows, k = ev.phrase_matches(src, True).rows_of_lists(tuple(phrases for _, phrases in members))
        column = np.array([j for j, _ in members], np.int64)
        label = np.array([rules[j].label_index for j, _ in members], np.int8)
        flat[column[k] * n + rows] = label[k]
    return out


def columns_needed(spec: Spec) -> list:
    """The data columns the spec reads (its fields' columns)."""
    return list(dict.fromkeys(f.column for f in spec.fields.values()))
