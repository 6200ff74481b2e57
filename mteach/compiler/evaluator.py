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

from dataclasses import fields

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..grammar import ast
from ..grammar.visitor import NodeVisitor
from .spec import Spec, regex_pattern
from .tokens import (NONWORD, TokenIndex, char_class, flag_runs, is_word_char, np_bool, phrase_regex,
                     runs_per_row, utf8_views, word_runs)

ABSTAIN = -1


def _np_float(arr) -> np.ndarray:
    if isinstance(arr, np.ndarray):
        return arr
    return pc.cast(arr, pa.float64()).to_numpy(zero_copy_only=False, writable=True)  # nulls -> nan


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
            return np_bool(pc.match_substring_regex(arr, pattern))
        sub = pc.take(arr, pa.array(idx))
        out[idx] = np_bool(pc.match_substring_regex(sub, pattern))
        return out

    def tokens(self, src) -> TokenIndex:
        """The token index of the lower-cased text, with every phrase word of the spec
        on this text looked up in one pass."""
        def build():
            index = TokenIndex(self.lower(src))
            words = []
            for phrase in _spec_phrases(self.spec).get(src.key(), ()):
                runs = word_runs(phrase)
                if runs is not None:
                    words.extend(runs[0])
            index.lookup(words)
            return index
        return self._cached(("tokens", src.key()), build)

    def phrase(self, src, phrase: str) -> np.ndarray:
        """Rows where ``phrase`` occurs as whole words."""
        def compute():
            lowered = self.lower(src)
            runs = word_runs(phrase)
            if runs is not None:
                runs, exact = runs
                candidates = self.tokens(src).rows_with_sequence(runs, spaced=exact)
                return candidates if exact else self._sparse_regex(lowered, candidates, phrase_regex(phrase))
            words = phrase.lower().split()
            longest = max(words, key=len)
            candidates = np_bool(pc.match_substring(lowered, longest))
            if len(words) == 1 and not is_word_char(longest[0]) and not is_word_char(longest[-1]):
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
        """Occurrences of any of the phrases. Separators are doubled first so that
        adjacent matches ("spam spam") do not share the boundary character."""
        lowered = self.lower(src)
        any_mask = np.logical_or.reduce([self.phrase(src, p) for p in node.phrases])
        counts = np.where(np_bool(pc.is_null(lowered)), np.nan, 0.0)
        idx = np.flatnonzero(any_mask)
        if len(idx):
            sub = pc.take(lowered, pa.array(idx))
            doubled = pc.replace_substring_regex(sub, f"({NONWORD})", r"\1\1")
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
            hits = np.zeros(len(tokens), dtype=bool)
            for phrase in node_phrases.phrases:
                words = phrase.lower().split()
                ok = np.ones(len(tokens), dtype=bool)
                for k, w in enumerate(words):
                    eq = np_bool(pc.equal(tokens, w)) | np_bool(pc.equal(bare, w))
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
