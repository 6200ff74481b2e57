"""Where the expert's next minute is best spent: ranked suggestions, returned as data.

Four kinds (``Suggestion.kind``):

- ``rule``: a ready-to-paste spec line for one label: a phrase or word pair of a text
  field that ``has`` matches as whole words, a threshold on a number field, or the rest of the data
  (``THRESHOLD unless F has any(<the phrases of the other labels' rules>)``); with its
  estimated precision and interval, the rows it would newly cover, and its effect on
  coverage and conflicts;
- ``group``: a group of rows no rule covers (k-means on TF-IDF word features), with
  its size, distinctive words, example rows and likely label;
- ``fix``: a rule whose estimated precision is low, or a pair of rules that
  conflict often, with the rows where they go wrong; and a rule for the rest of the
  data rewritten (``spec_line``, ``replaces``) with the phrases of the other labels'
  rules written after it added to its ``unless``;
- ``review``: a row worth labelling next (the label model is unsure there, it and the
  end model disagree, or it stands for a large uncovered group).

Evidence, best first, and every suggestion says which it used (``precision_from``):
gold labels where rows have them; else the label model's verdict on the rows the rules
cover; with no rule voting for a label yet, only the data's own structure (groups,
distinctive words), and the precision is left unknown. A trained end model's verdict
on rows no rule covers is not evidence for rule precision (it learned from covered rows
only and leans to the label they hold most); groups and rows to review still use it.

Candidate generation is vectorized: the words of each text field are found once per
data set by the evaluator's own ``TokenIndex`` (so a phrase's rows here are the rows
``has`` matches), giving a sparse rows × n-grams matrix; every refresh is then a few
sparse products of that matrix with the evidence. Each proposed line is checked by
the real parser and checker before it is returned.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp
from scipy.special import betainc, betaincinv

from ..compiler.checker import load_spec
from ..compiler.evaluator import BatchEvaluator, vote_matrix
from ..compiler.spec import Spec
from ..compiler.tokens import TokenIndex, word_runs
from ..grammar import ast
from ..errors import DataError, SpecError
from .analysis import ABSTAIN, conflicted_rows

KINDS = ("rule", "group", "fix", "review")
MIN_DF = 3                # a phrase must occur in this many rows to be proposed
MIN_EVIDENCE = 3.0        # rows of evidence below which a precision is not estimated
INTERVAL = 0.95           # width of the precision intervals
SMOOTHING = 5.0           # pseudo-rows pulling P(phrase | label) toward the phrase's overall rate
KEEPABLE = 0.8            # a rule an expert keeps is right on at least this share of its rows
MAX_PHRASE_CHARS = 40
SAMPLE_FOR_GROUPS = 5_000
MARKER_RATIO = 8.0        # a group's marker phrase is this many times more common in it than elsewhere


@dataclass
class Suggestion:
    kind: str                                 # rule | group | fix | review
    score: float                              # higher first, comparable within a kind
    title: str                                # one line for people
    label: Optional[str] = None
    spec_line: Optional[str] = None           # rules: the line to paste
    estimated_precision: Optional[float] = None
    precision_interval: Optional[tuple] = None
    precision_from: str = ""                  # gold | label model | gold + label model | data structure
    evidence_rows: float = 0.0                # rows (or soft rows) behind the estimate
    new_rows: int = 0                         # rows no rule covers that it would cover
    rows: int = 0                             # rows it covers (rules, fixes) or holds (groups)
    coverage_after: Optional[float] = None    # share of rows covered if the rule is added
    conflicts: int = 0                        # rows where another rule votes another label
    example_ids: list = field(default_factory=list)
    example_rows: list = field(default_factory=list)  # row indices, for the studio
    words: list = field(default_factory=list)         # groups: distinctive words
    evidence: str = ""                        # what it came from, in words
    replaces: Optional[str] = None            # fixes with a spec_line: the rule it rewrites

    def to_dict(self) -> dict:
        d = {k: v for k, v in self.__dict__.items() if k != "example_rows"}
        d["precision_interval"] = list(self.precision_interval) if self.precision_interval else None
        return d


def precision_interval(hits, total, level: float = INTERVAL):
    """Jeffreys interval (Beta(hits + ½, misses + ½) posterior) for a precision; vectorized.
    Soft counts are allowed. As usual for Jeffreys, the bound is 0 (1) when nothing is a
    hit (a miss)."""
    hits, total = np.asarray(hits, float), np.asarray(total, float)
    misses = np.maximum(total - hits, 0)
    a, b = hits + 0.5, misses + 0.5
    tail = (1 - level) / 2
    lo = np.where(hits <= 0, 0.0, betaincinv(a, b, tail))
    hi = np.where(misses <= 0, 1.0, betaincinv(a, b, 1 - tail))
    return lo, hi


# -- what is computed once per data set ---------------------------------------------------------
@dataclass
class _TextField:
    index: TokenIndex
    phrases: list          # column j of ``matrix`` -> phrase text (one word or a word pair)
    slugs: list            # column j -> the phrase as a name part
    matrix: sp.csr_matrix  # rows × phrases, 1 where the row has the phrase
    tfidf: sp.csr_matrix   # rows × words, l2-normalized TF-IDF of the single words


class SuggestData:
    """The parts of the data that do not change while the spec does: per text column,
    the word index and a rows × n-grams matrix; per number column, its values.
    Build once per data set (the studio keeps one), then call ``suggest`` on every refresh."""

    def __init__(self, table: pa.Table, ids: Optional[pa.Array] = None, min_df: int = MIN_DF):
        self.table = table
        self.n = table.num_rows
        self.ids = ids
        self.min_df = min_df
        self._text: dict = {}
        self._numbers: dict = {}
        self._candidates: dict = {}  # fields -> _Candidates
        self._checked: dict = {}     # (fields, spec line) -> passes the checker

    def id_of(self, i: int) -> str:
        return str(self.ids[int(i)].as_py()) if self.ids is not None else str(int(i))

    def text(self, column: str) -> _TextField:
        if column not in self._text:
            self._text[column] = self._build_text(column)
        return self._text[column]

    def numbers(self, column: str) -> np.ndarray:
        if column not in self._numbers:
            col = self.table.column(column)
            self._numbers[column] = pc.cast(col, pa.float64()).to_numpy(zero_copy_only=False).astype(float)
        return self._numbers[column]

    def words(self, spec: Spec, field_name: str) -> np.ndarray:
        """``words(F)`` per row, computed by the evaluator itself (missing text: NaN)."""
        column = spec.column(field_name)
        if ("words", column) not in self._numbers:
            self._numbers[("words", column)] = BatchEvaluator(spec, self.table).words(ast.Ref(field_name))
        return self._numbers[("words", column)]

    def _build_text(self, column: str) -> _TextField:
        col = self.table.column(column)
        col = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
        if pa.types.is_large_string(col.type) or pa.types.is_dictionary(col.type):
            col = col.cast(pa.string())
        index = TokenIndex(pc.utf8_lower(col))
        n_tok = len(index.starts)
        # every token as a string over the text's own bytes, then one id per distinct word
        bounds = np.empty(2 * n_tok, dtype=np.int32)
        bounds[0::2] = index.starts + index._base
        bounds[1::2] = index.ends + index._base
        pieces = pa.StringArray.from_buffers(max(len(bounds) - 1, 0), pa.py_buffer(bounds), index._data)
        tokens = pieces.take(pa.array(np.arange(0, len(bounds), 2))) if n_tok else pa.array([], pa.string())
        encoded = pc.dictionary_encode(tokens)
        codes = encoded.indices.to_numpy().astype(np.int64)
        words = np.asarray(encoded.dictionary.to_pylist(), dtype=object)
        V = len(words)
        rows = index.row.astype(np.int64)
        uni = _binary(rows, codes, self.n, V)
        # word pairs: consecutive tokens of one row (whether only spaces separate them is
        # checked later, by the evaluator's own test, for the pairs that are proposed)
        same = rows[:-1] == rows[1:] if n_tok > 1 else np.zeros(0, bool)
        pair_keys = codes[:-1][same] * V + codes[1:][same]
        pair_rows = rows[:-1][same]
        keys, pair_codes = np.unique(pair_keys, return_inverse=True)
        pairs = _binary(pair_rows, pair_codes.reshape(-1), self.n, len(keys))
        df_uni = np.asarray(uni.sum(axis=0)).ravel()
        df_pair = np.asarray(pairs.sum(axis=0)).ravel()
        keep_uni = np.flatnonzero((df_uni >= self.min_df) & _proposable(words))
        keep_pair = np.flatnonzero(df_pair >= self.min_df)
        pair_text = [f"{words[k // V]} {words[k % V]}" for k in keys[keep_pair]]
        ok_pair = [j for j, p in enumerate(pair_text) if len(p) <= MAX_PHRASE_CHARS]
        phrases = list(words[keep_uni]) + [pair_text[j] for j in ok_pair]
        matrix = sp.hstack([uni[:, keep_uni], pairs[:, keep_pair[ok_pair]]], format="csr")
        idf = np.log((1.0 + self.n) / (1.0 + df_uni)) + 1.0
        tfidf = _l2_rows(uni @ sp.diags(idf))
        return _TextField(index, phrases, [_slug(p) for p in phrases], matrix, tfidf)


def _binary(rows, cols, n, m) -> sp.csr_matrix:
    mat = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(n, m))
    mat.sum_duplicates()
    mat.data[:] = 1.0
    return mat


def _l2_rows(mat: sp.csr_matrix) -> sp.csr_matrix:
    norms = np.sqrt(np.asarray(mat.multiply(mat).sum(axis=1)).ravel())
    return (sp.diags(1.0 / np.where(norms > 0, norms, 1.0)) @ mat).tocsr()


def _proposable(words: np.ndarray) -> np.ndarray:
    """Words a `has` rule can name exactly: the token index serves them whole (the
    evaluator's own test), and they are not too long to read."""
    return np.array([len(w) <= MAX_PHRASE_CHARS and word_runs(w) == ([w], True) for w in words], dtype=bool)


# -- the evidence: what we believe each row's label is -------------------------------------------
@dataclass
class _Evidence:
    q: np.ndarray            # rows × labels, a distribution per row (zeros where w == 0)
    w: np.ndarray            # rows: 1 where the row counts as evidence
    source: np.ndarray       # rows: 0 none, 1 gold, 2 label model, 3 end model
    balance: np.ndarray      # labels: the share of each label
    lm: Optional[np.ndarray]  # label model posterior (rows × labels), or None
    voted_labels: set        # labels some rule votes for


_SOURCE_NAMES = {1: "gold", 2: "label model", 3: "end model"}


def _evidence(spec: Spec, votes: np.ndarray, gold, end_proba, label_proba) -> _Evidence:
    n, k = votes.shape[0], len(spec.labels)
    voted_labels = set(np.unique(votes[votes != ABSTAIN]).tolist()) if votes.size else set()
    lm = label_proba
    if lm is None and voted_labels:
        from .label_model import fit_for_spec
        try:
            lm = fit_for_spec(spec, votes, gold).predict_proba(votes)
        except DataError:
            lm = None
    q = np.zeros((n, k))
    w = np.zeros(n)
    source = np.zeros(n, dtype=np.int8)
    covered = (votes != ABSTAIN).any(axis=1) if votes.size else np.zeros(n, bool)
    if lm is not None:
        # on rows no rule covers the label model only knows the class balance and which
        # rules abstained: it counts as evidence only for labels some rule votes for
        q[:] = lm
        w[:] = 1.0
        source[:] = 2
    # the class balance leaves out the end model's guesses on uncovered rows (see _RuleStats)
    balance_q, balance_w = q.copy(), w.copy()
    if end_proba is not None:
        em_rows = ~covered
        q[em_rows] = end_proba[em_rows]
        w[em_rows] = 1.0
        source[em_rows] = 3
    if gold is not None:
        known = gold != ABSTAIN
        q[known] = balance_q[known] = np.eye(k)[gold[known]]
        w[known] = balance_w[known] = 1.0
        source[known] = 1
    if balance_w.sum() > 0:
        balance = (balance_q * balance_w[:, None]).sum(axis=0) / balance_w.sum()
    elif w.sum() > 0:
        balance = (q * w[:, None]).sum(axis=0) / w.sum()
    else:
        balance = np.full(k, 1.0 / k)
    return _Evidence(q, w, source, balance, lm, voted_labels)


def _precision_source(ev: _Evidence, rows_mask_matrix, informative) -> list:
    """Per column of a rows × candidates 0/1 matrix: which evidence its estimate rests on."""
    names = []
    counts = np.stack([np.asarray(rows_mask_matrix.T @ ((ev.source == s) & informative).astype(float)).ravel()
                       for s in (1, 2, 3)], axis=1)
    for c in counts:
        parts = [_SOURCE_NAMES[s] for s, x in zip((1, 2, 3), c) if x > 0]
        names.append(" + ".join(parts) if parts else "data structure")
    return names


# -- the main entry point ------------------------------------------------------------------------
@dataclass
class Guidance:
    suggestions: list        # of Suggestion: rules, then groups, fixes, rows to review
    review_order: np.ndarray  # every row index, the most worth labelling first (gold rows last)
    groups: list             # of _Group, largest first


def suggest(spec: Spec, data: "SuggestData", votes: np.ndarray, gold: Optional[np.ndarray] = None,
            end_proba: Optional[np.ndarray] = None, label_proba: Optional[np.ndarray] = None,
            n: int = 20, kinds=KINDS, exclude=(), seed: int = 0, groups: int = 8) -> list:
    """Ranked suggestions for ``spec`` on ``data`` (its ``votes``: rows × rules, -1 = abstain).

    ``gold`` (label index per row, -1 unknown), ``end_proba`` (a trained end model's
    probabilities per row) and ``label_proba`` (a fitted label model's posterior; fitted
    here when left out) are optional evidence. ``exclude``: candidate rules not to propose
    again, written ``PREDICATE => LABEL`` (e.g. ``text has "win" => SPAM``), such as ones
    the expert rejected. At most ``n`` suggestions of each kind, best first within a kind;
    rules first, then groups, fixes and rows to review.
    """
    return guide(spec, data, votes, gold, end_proba, label_proba, n, kinds, exclude, seed, groups).suggestions


def guide(spec: Spec, data: "SuggestData", votes: np.ndarray, gold: Optional[np.ndarray] = None,
          end_proba: Optional[np.ndarray] = None, label_proba: Optional[np.ndarray] = None,
          n: int = 20, kinds=KINDS, exclude=(), seed: int = 0, groups: int = 8) -> Guidance:
    """``suggest``, plus the whole ranked order of rows to review (for a review session)."""
    votes = np.asarray(votes)
    if votes.ndim != 2 or votes.shape[0] != data.n:
        raise DataError(f"the vote matrix has {votes.shape[0] if votes.ndim else 0} rows; the data has {data.n}")
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise DataError(f"unknown kind of suggestion {unknown[0]!r} (kinds: {', '.join(KINDS)})")
    ev = _evidence(spec, votes, gold, end_proba, label_proba)
    covered = (votes != ABSTAIN).any(axis=1) if votes.size else np.zeros(data.n, bool)
    found = _groups(spec, data, covered, ev, seed, groups)
    out = []
    if "rule" in kinds:
        out += _rules(spec, data, votes, covered, ev, found, n, set(exclude))
    if "group" in kinds:
        out += [g.suggestion for g in found[:n]]
    if "fix" in kinds:
        out += _fixes(spec, data, votes, ev, end_proba, n)
    order, values, reasons = _review(votes, ev, covered, found, seed, end_proba)
    if "review" in kinds:
        out += [Suggestion("review", float(values[i]), f"row {data.id_of(i)}: {reasons[i]}",
                           example_ids=[data.id_of(i)], example_rows=[int(i)], evidence=reasons[i])
                for i in order[:n] if np.isfinite(values[i])]
    return Guidance(out, order, found)


# -- candidate rules ---------------------------------------------------------------------------
@dataclass
class _Candidates:
    """Columns of ``matrix`` (rows × candidates, 0/1) and how to write each as a predicate."""
    matrix: sp.csr_matrix
    predicates: list     # spec predicate text
    names: list          # a readable slug for the rule name
    fields: list         # the field each tests
    phrases: list        # (data column, phrase) for text candidates, None for thresholds


def _candidates(spec: Spec, data: SuggestData) -> _Candidates:
    """Every rule the family can write for the spec's fields (cached: it depends on the data
    and the fields only)."""
    key = tuple((name, spec.column(name), kind) for name, kind in spec.field_kinds.items())
    if key not in data._candidates:
        data._candidates[key] = _build_candidates(spec, data)
    return data._candidates[key]


def _build_candidates(spec: Spec, data: SuggestData) -> _Candidates:
    mats, preds, names, fields_, phrases = [], [], [], [], []

    def thresholds(x: np.ndarray, subject: str, slug: str, integer: bool) -> None:
        finite = x[np.isfinite(x)]
        if len(finite) < 2 * data.min_df:
            return
        cuts = np.quantile(finite, np.linspace(0.1, 0.9, 9))
        cols = []
        for t in sorted({float(round(t)) if integer else _round(t) for t in cuts}):
            text = _number_text(t)
            value = float(text)  # the threshold exactly as the spec line will read it
            with np.errstate(invalid="ignore"):
                for op, mask in ((">=", x >= value), ("<=", x <= value)):
                    cols.append(mask)
                    preds.append(f"{subject} {op} {text}")
                    names.append(f"{slug}_{'at_least' if op == '>=' else 'at_most'}_{_slug(text)}")
                    fields_.append(subject)
                    phrases.append(None)
        if cols:
            mats.append(sp.csr_matrix(np.stack(cols, axis=1).astype(np.float32)))

    for name, kind in spec.field_kinds.items():
        column = spec.column(name)
        if column not in data.table.column_names:
            continue
        if kind == "text":
            tf = data.text(column)
            mats.append(tf.matrix)
            preds += [f'{name} has "{p}"' for p in tf.phrases]
            names += tf.slugs
            fields_ += [name] * len(tf.phrases)
            phrases += [(column, p) for p in tf.phrases]
            thresholds(data.words(spec, name), f"words({name})", f"words_{_slug(name)}", integer=True)
        elif kind == "number":
            thresholds(data.numbers(column), name, _slug(name), integer=False)
    matrix = sp.hstack(mats, format="csr") if mats else sp.csr_matrix((data.n, 0), dtype=np.float32)
    return _Candidates(matrix, preds, names, fields_, phrases)


def _round(t: float) -> float:
    return float(f"{t:.3g}")


def _number_text(t: float) -> str:
    return np.format_float_positional(t, trim="-")


def _slug(text: str) -> str:
    s = re.sub(r"[^0-9a-zA-Z]+", "_", text.lower()).strip("_")
    return s or "phrase"


def _rules(spec, data, votes, covered, ev, groups_found, n, exclude) -> list:
    cand = _candidates(spec, data)
    X = cand.matrix
    if X.shape[1] == 0:
        return []
    labels = list(spec.labels)
    k = len(labels)
    # rows that only a rule for the rest votes on are still open to other rules: the rest is
    # a default, and a rule with evidence of its own should win there (see _remainders)
    # (rows × labels: where a rule for that label would add a vote that counts: no rule covers
    # the row, or only the rest rule of another label does)
    rest = np.array([bool(_REST_RULE.match(_rule_parts(r)[0])) for r in spec.rules], bool)
    firm = (votes[:, ~rest] != ABSTAIN).any(axis=1) if rest.any() else covered
    open_ = np.stack([~firm & ~(votes[:, rest] == c).any(axis=1) for c in range(k)], axis=1)
    st = _RuleStats(data, votes, firm, ev, k, open_)
    s = st.of(X)
    evidenced = (s.total[:, None] >= MIN_EVIDENCE) & (st.per_label > 0)[None, :]
    existing = _existing_keys(spec)

    # labels no rule votes for yet (and no gold): the data's structure proposes the phrases
    # that mark groups of uncovered rows (rows of the group that have it × log of how much
    # more common it is there), for each such label
    structure = []
    untaught = [c for c in range(k) if not evidenced[:, c].any()]
    if untaught:
        col_of = {p: j for j, p in enumerate(cand.phrases) if p is not None}
        for g in groups_found:
            for w_, weight in g.markers:
                j = col_of.get((g.column, w_))
                if j is not None and s.new[j].any():
                    structure.append((weight, j))
        structure.sort(key=lambda t: (-t[0], t[1]))

    # a phrase whose rows the taught labels' rules already cover is likely of those labels:
    # weigh it down for the untaught ones by that share
    taught_share = s.new.max(axis=1) / np.maximum(s.df, 1)
    order = []  # (score, candidate, label, stats): candidate is a column of X or a _Remainder
    for s_, j in structure:
        for c in untaught:
            order.append((float(s_ * taught_share[j]), j, c, None))
    order.sort(key=lambda t: -t[0])
    ranked = []
    flat = np.argsort(-s.score, axis=None, kind="stable")
    for pos in flat[: 50 * n]:
        j, c = divmod(int(pos), k)
        if not evidenced[j, c] or s.score[j, c] <= 0 or s.new[j, c] == 0:
            continue
        ranked.append((float(s.score[j, c]), j, c, (s, j)))
    has_rest = {labels.index(_rule_parts(r)[1]) for r, is_rest in zip(spec.rules, rest) if is_rest}
    ranked += _remainders(spec, data, cand, _RuleStats(data, votes, covered, ev, k) if rest.any() else st,
                          existing, exclude, has_rest)
    ranked.sort(key=lambda t: -t[0])
    order += ranked

    chosen, seen = [], set()
    for item in order:
        _, j, c, _ = item
        pred = _predicate(cand, j)
        key = (pred, labels[c])
        if key in seen or key in existing or f"{pred} => {labels[c]}" in exclude:
            continue
        seen.add(key)
        if isinstance(j, int) and cand.phrases[j] is None:  # one threshold per subject, direction, label
            subject, op = pred.rsplit(" ", 2)[:2]
            if (subject, op, c) in seen:
                continue
            seen.add((subject, op, c))
        if isinstance(j, _Remainder):  # one rule for the rest per label: the best
            if ("rest", c) in seen:
                continue
            seen.add(("rest", c))
        chosen.append(item)
        if len(chosen) >= 3 * n:
            break
    if not chosen:
        return []
    true_rows = _true_rows(data, cand, [j for _, j, _, _ in chosen])
    names = _rule_names(spec, [f"{labels[c].lower()}_{_name(cand, j)}" for _, j, c, _ in chosen])
    lines = [f"rule {nm} : {_predicate(cand, j)} => {labels[c]}" for nm, (_, j, c, _) in zip(names, chosen)]
    ok = _checked(spec, data, lines)
    out = []
    n_rows = max(data.n, 1)
    for (s_, j, c, where), line, good, fires in zip(chosen, lines, ok, true_rows):
        if not good:
            continue
        new_j = int((fires & ~covered).sum())
        if not (fires & open_[:, c]).any():
            continue
        examples = np.flatnonzero(fires & open_[:, c])[:3]
        pred = _predicate(cand, j)
        if where is not None:
            cs, i = where
            total, hits, p = float(cs.total[i]), float(cs.hits[i, c]), float(cs.prec[i, c])
            lo, hi = precision_interval(p * total, total)
            # Jeffreys' bounds on the rows seen: 1 when no evidence row has another label, 0 when none has it
            interval = (0.0 if hits <= 0 else float(lo), 1.0 if total - hits <= 0 else float(hi))
            src = _precision_source(ev, sp.csr_matrix(fires[:, None].astype(np.float32)), st.informative)[0]
            why = (f"{total:.0f} rows of evidence ({src}): precision {p:.2f} "
                   f"[{interval[0]:.2f}, {interval[1]:.2f}], {labels[c]} is {ev.balance[c]:.0%} of rows")
            conflicts = int(cs.conflicts[i, c])
        else:
            total, p, interval, src, conflicts = 0.0, None, None, "data structure", int(s.conflicts[j, c])
            why = (f"no rule votes {labels[c]} yet: {pred.split(' has ', 1)[-1]} "
                   f"marks a group of uncovered rows (precision unknown)")
        out.append(Suggestion(
            "rule", s_, f"{pred} => {labels[c]}", label=labels[c], spec_line=line,
            estimated_precision=p, precision_interval=interval, precision_from=src,
            evidence_rows=total, new_rows=new_j, rows=int(fires.sum()),
            coverage_after=float((covered | fires).sum() / n_rows), conflicts=conflicts,
            example_ids=[data.id_of(i) for i in examples], example_rows=[int(i) for i in examples], evidence=why))
        if len(out) >= n:
            break
    return out


@dataclass
class _ColumnStats:
    """Per column of a rows × candidates 0/1 matrix (and per label where 2-D)."""
    df: np.ndarray         # rows it fires on
    new: np.ndarray        # × labels: of them, rows where a rule for the label gains a row
    total: np.ndarray      # of them, evidence rows
    hits: np.ndarray       # × labels: evidence rows of each label
    prec: np.ndarray       # × labels: estimated precision
    keep: np.ndarray       # × labels: chance that the rule is one to keep
    conflicts: np.ndarray  # × labels: rows where another rule votes another label
    score: np.ndarray      # × labels: expected gain, the ranking


class _RuleStats:
    """How candidate rules are estimated and ranked; ``of(X)`` scores the columns of X."""

    def __init__(self, data, votes, covered, ev, k, open_=None):
        # Evidence rows: gold rows and rows the rules cover (the label model's label there).
        # P(phrase | label) from those rows, smoothed toward the phrase's overall rate, then Bayes
        # with the class balance: rules cover some labels more than others, and this undoes that.
        # The label model's verdict counts as a label (its posteriors are soft where rules disagree,
        # which would blur every estimate toward the class balance).
        self.n, self.ev, self.covered = data.n, ev, covered
        # rows × labels where a new rule for that label gains a row (default: the uncovered rows)
        self.open = open_ if open_ is not None else np.repeat((~covered)[:, None], k, axis=1)
        # Not the end model's verdict on uncovered rows: it learned from covered rows only, and
        # where rules cover one label more it calls most uncovered rows that label (YouTube,
        # after five rules: 87% SPAM on uncovered rows that are 90% HAM), which inflated the
        # precision of that label's candidates and sank the other's.
        self.informative = (ev.source == 1) | ((ev.source == 2) & covered)
        self.soft = np.eye(k)[ev.q.argmax(axis=1)] * self.informative[:, None]
        self.per_label = self.soft.sum(axis=0)
        self.other_votes = (np.stack([((votes != ABSTAIN) & (votes != c)).any(axis=1) for c in range(k)], axis=1)
                            if votes.shape[1] else np.zeros((data.n, k), bool)).astype(np.float32)
        # a label the rules cover less than its share of the data gains more from a new rule (and
        # the end model, trained on covered rows, learns the class balance from them)
        covered_share = self.per_label / max(self.per_label.sum(), 1e-9)
        self.need = np.clip(ev.balance / np.maximum(covered_share, 1e-9), 1 / 3, 3)
        # a rule to keep is right on at least KEEPABLE of its rows and halfway from chance to always right
        self.bar = np.maximum(KEEPABLE, (1 + ev.balance) / 2)

    def of(self, X) -> _ColumnStats:
        ev = self.ev
        hits = np.asarray(X.T @ self.soft)                                     # candidates × labels
        total = np.asarray(X.T @ self.informative.astype(np.float32)).ravel()
        df = np.asarray(X.sum(axis=0)).ravel()
        rate = df / max(self.n, 1)
        likelihood = (hits + SMOOTHING * rate[:, None]) / (self.per_label[None, :] + SMOOTHING)
        joint = likelihood * ev.balance[None, :]
        prec = joint / np.maximum(joint.sum(axis=1, keepdims=True), 1e-300)
        new = np.asarray(X.T @ self.open.astype(np.float32))                  # candidates × labels
        conflicts = np.asarray(X.T @ self.other_votes)
        totals = np.repeat(total[:, None], prec.shape[1], axis=1)
        # expected rows gained: new rows × the chance (Jeffreys posterior) that the rule is one to keep
        keep = 1 - betainc(prec * totals + 0.5, (1 - prec) * totals + 0.5, np.broadcast_to(self.bar, prec.shape))
        # a rule that mostly re-votes on covered rows counts them twice in the label model
        # (it treats rules as independent): prefer rules whose rows are mostly new
        fresh = np.sqrt(new / np.maximum(df, 1)[:, None])
        score = new * keep * self.need[None, :] * fresh
        return _ColumnStats(df, new, total, hits, prec, keep, conflicts, score)


@dataclass(frozen=True, eq=False)
class _Remainder:
    """A candidate ``BASE unless UNLESS``: a threshold column, on the rows no rule of another
    label tests positive for by its phrases (``excluded``: the rows UNLESS is true on)."""
    base: int
    unless: str
    excluded: np.ndarray


_PHRASE_RULE = re.compile(r'^(\w+) has (?:any\((.*)\)|("(?:[^"\\]|\\.)*"))$')
_REST_RULE = re.compile(r"^\S+ (?:<=|>=) \S+ unless ")  # as _remainders writes them
_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"')


def _rule_parts(rule) -> tuple:
    """(predicate text, label) of a spec rule, whitespace normalized."""
    pred, _, label = rule.rule.text.split(":", 1)[-1].rpartition("=>")
    return " ".join(pred.split()), (label.split() or [""])[0]


def _remainders(spec, data, cand, st: _RuleStats, existing, exclude, has_rest) -> list:
    """Rules for what the other labels' rules leave: ``T unless F has any(<the phrases of the
    rules voting other labels>) => L``, for each threshold T of the family. Once rules for
    one label cover most of its rows, the rest of the data is mostly the other label, and
    rules written from phrases alone rarely reach it (a plain reaction has no marker words).
    Scored like single phrases, on the rows the line fires on; at most one such rule per
    label in the spec (``has_rest``: the labels that have one). Returns (score, _Remainder,
    label, (stats, column)) entries."""
    labels = list(spec.labels)
    bases = [j for j, ph in enumerate(cand.phrases) if ph is None]
    if not bases or len(labels) < 2:
        return []
    head = _fields_head(spec)
    out = []
    base_rows = cand.matrix[:, bases].toarray() > 0
    for c, lab in enumerate(labels):
        if c in has_rest:
            continue
        others = _other_labels_phrases(spec, lab)
        if not others:
            continue
        unless = _unless_text(others)
        if any(e.endswith(f" unless {unless} => {lab}") for e in exclude):
            continue  # the expert rejected this label's rest (one threshold of it): not another
        try:
            check = load_spec(spec.path, data.table.schema, text=head + f"rule rest : {unless} => {lab}\n")
        except SpecError:
            continue
        excluded = vote_matrix(check, data.table)[:, 0] != ABSTAIN
        wanted = [_Remainder(j, unless, excluded) for j in bases]
        wanted = [r for r in wanted if (_predicate(cand, r), lab) not in existing
                  and f"{_predicate(cand, r)} => {lab}" not in exclude]
        if not wanted:
            continue
        rows = base_rows[:, [bases.index(r.base) for r in wanted]] & ~excluded[:, None]
        rs = st.of(sp.csr_matrix(rows.astype(np.float32)))
        out += [(float(rs.score[i, c]), r, c, (rs, i)) for i, r in enumerate(wanted)
                if rs.score[i, c] > 0 and rs.total[i] >= MIN_EVIDENCE]
    return out


def _fields_head(spec: Spec) -> str:
    """A spec of the labels and fields alone: a candidate line names nothing else."""
    return "concept c\nlabels " + ", ".join(spec.labels) + "\n" + "".join(
        f'field {n} = "{spec.column(n)}"\n' for n in spec.fields)


def _other_labels_phrases(spec: Spec, label: str) -> dict:
    """field -> the phrases (quoted, as written, first occurrence first) of the spec's rules
    that vote another label than ``label`` and test phrases only (``F has "x"`` or
    ``F has any(...)``)."""
    out: dict = {}
    for r in spec.rules:
        pred, other = _rule_parts(r)
        m = _PHRASE_RULE.match(pred)
        if m and other and other != label and m.group(1) in spec.fields:
            quoted = _QUOTED.findall(m.group(2)) if m.group(2) is not None else [m.group(3)]
            out.setdefault(m.group(1), {}).update(dict.fromkeys(quoted))
    return {f: list(qs) for f, qs in out.items()}


def _unless_text(phrases: dict) -> str:
    """``F has any("a", "b") or G has any(...)`` for field -> quoted phrases."""
    return " or ".join(f"{f} has any({', '.join(qs)})" for f, qs in phrases.items())


def _predicate(cand: _Candidates, j) -> str:
    """A candidate's predicate text; ``j`` a column or a _Remainder."""
    if isinstance(j, _Remainder):
        return f"{cand.predicates[j.base]} unless {j.unless}"
    return cand.predicates[j]


def _name(cand: _Candidates, j) -> str:
    if isinstance(j, _Remainder):
        return f"{cand.names[j.base]}_rest"
    return cand.names[j]


def _true_rows(data: SuggestData, cand: _Candidates, columns: list) -> list:
    """The rows each chosen candidate (a column or a _Remainder) fires on, by the evaluator's own
    whole-word test."""
    out = []
    for j in columns:
        if isinstance(j, _Remainder):
            out.append((cand.matrix[:, j.base].toarray().ravel() > 0) & ~j.excluded)
            continue
        if cand.phrases[j] is None:
            out.append(cand.matrix[:, j].toarray().ravel() > 0)
        else:
            column, phrase = cand.phrases[j]
            out.append(data.text(column).index.rows_with_sequence(phrase.split(), spaced=True))
    return out


def _existing_keys(spec: Spec) -> set:
    """(predicate text, label) of the spec's rules, as candidates are written."""
    return {_rule_parts(r) for r in spec.rules}


def _rule_names(spec: Spec, wanted: list) -> list:
    taken = set(spec.rule_names) | set(spec.defines) | set(spec.fields) | set(spec.labels)
    out = []
    for w in wanted:
        name = w if re.match(r"[A-Za-z_]", w) else "r_" + w
        base, i = name, 2
        while name in taken:
            name, i = f"{base}_{i}", i + 1
        taken.add(name)
        out.append(name)
    return out


def _checked(spec: Spec, data: SuggestData, lines: list) -> list:
    """Which of ``lines`` pass the real parser and checker. A candidate line names only a
    field, a label and literals, and its name is unique, so it is checked in a spec of the
    labels and fields alone (results are kept: a refresh re-checks only new lines)."""
    head = _fields_head(spec)
    todo = [l for l in dict.fromkeys(lines) if (head, l) not in data._checked]
    first = head.count("\n") + 1
    for _ in range(3):
        if not todo:
            break
        try:
            load_spec(spec.path, data.table.schema, text=head + "\n".join(todo) + "\n")
            data._checked.update(((head, l), True) for l in todo)
            todo = []
        except SpecError as err:
            bad = {d.span.line - first for d in err.errors if d.span is not None and d.span.line >= first}
            for b in sorted(bad):
                if 0 <= b < len(todo):
                    data._checked[(head, todo[b])] = False
            todo = [l for l in todo if (head, l) not in data._checked]
            if not bad:
                break
    data._checked.update(((head, l), False) for l in todo)  # still failing after three tries
    return [data._checked[(head, l)] for l in lines]


# -- groups of uncovered rows --------------------------------------------------------------------
@dataclass
class _Group:
    column: str
    size: int
    rows: np.ndarray          # row indices, nearest the centre first
    word_shares: list         # (phrase, share of the group's rows that have it), most distinctive first
    markers: list             # (phrase, weight): phrases MARKER_RATIO times more common here than elsewhere
    suggestion: Suggestion


def _groups(spec: Spec, data: SuggestData, covered: np.ndarray, ev: _Evidence, seed: int, k: int) -> list:
    """Groups of the rows no rule covers: k-means (seeded, one thread: the machine is shared) on
    the TF-IDF of the words of the first text field, fitted on a sample of at most 5,000 of
    those rows, then every uncovered row assigned to its nearest centre."""
    text = [n for n, kind in spec.field_kinds.items() if kind == "text" and spec.column(n) in data.table.column_names]
    uncovered = np.flatnonzero(~covered)
    if not text or len(uncovered) < 2 * data.min_df or k < 1:
        return []
    column = spec.column(text[0])
    tf = data.text(column)
    Xu = tf.tfidf[uncovered]
    n_groups = int(min(k, max(1, len(uncovered) // 50)))
    from sklearn.cluster import KMeans
    from threadpoolctl import threadpool_limits
    rng = np.random.default_rng(seed)
    sample = np.sort(rng.choice(len(uncovered), min(len(uncovered), SAMPLE_FOR_GROUPS), replace=False))
    with threadpool_limits(1):
        km = KMeans(n_clusters=n_groups, random_state=seed, n_init=2, max_iter=30).fit(Xu[sample])
        assigned = km.predict(Xu)
    closeness = np.asarray(Xu @ km.cluster_centers_.T)[np.arange(len(uncovered)), assigned]
    members = sp.csr_matrix((np.ones(len(uncovered)), (assigned, np.arange(len(uncovered)))),
                            shape=(n_groups, len(uncovered)))
    counts = np.asarray((members @ tf.matrix[uncovered]).todense())  # groups × phrases
    sizes = np.bincount(assigned, minlength=n_groups)
    labels = list(spec.labels)
    out = []
    for g in np.argsort(-sizes, kind="stable"):
        size = int(sizes[g])
        if size == 0:
            continue
        inside = counts[g] / size
        rest = (counts.sum(axis=0) - counts[g]) / max(len(uncovered) - size, 1)
        ratio = (inside + 1e-3) / (rest + 1e-3)
        keyness = np.where(counts[g] >= data.min_df, inside * np.log(ratio), -np.inf)
        top = [j for j in np.argsort(-keyness, kind="stable")[:6] if np.isfinite(keyness[j]) and keyness[j] > 0]
        words = [tf.phrases[j] for j in top]
        rows = uncovered[assigned == g]
        rows = rows[np.argsort(-closeness[assigned == g], kind="stable")]
        informed = rows[np.isin(ev.source[rows], (1, 3))]  # gold or end model: more than the class balance
        likely, likely_p = None, None
        if len(informed):
            mean = ev.q[informed].mean(axis=0)
            likely, likely_p = labels[int(mean.argmax())], float(mean.max())
        title = f"{size:,} uncovered rows about: {', '.join(words) or '(no distinctive words)'}"
        if likely:
            title += f" (likely {likely}, {likely_p:.0%})"
        why = ("k-means on TF-IDF words of the rows no rule covers; words ranked by how much more often "
               "they occur in this group than in the other uncovered rows")
        s = Suggestion("group", size / max(len(uncovered), 1), title, label=likely, estimated_precision=likely_p,
                       precision_from=("gold + end model" if likely else "data structure"), rows=size,
                       new_rows=size, example_ids=[data.id_of(i) for i in rows[:3]],
                       example_rows=[int(i) for i in rows[:3]], words=words, evidence=why)
        marks = [(tf.phrases[j], float(counts[g, j] * np.log(ratio[j]))) for j in top if ratio[j] >= MARKER_RATIO]
        out.append(_Group(column, size, rows, [(tf.phrases[j], float(inside[j])) for j in top], marks, s))
    return out


# -- rules to fix ----------------------------------------------------------------------------------
def _fixes(spec: Spec, data: SuggestData, votes: np.ndarray, ev: _Evidence, end_proba, n: int) -> list:
    """Rules whose estimated precision is below ``KEEPABLE``, and the pairs of rules that
    conflict most. The reference label of a row: gold; else the end model (when given) or the
    label model's posterior."""
    from .report import _conflict_pairs
    labels = list(spec.labels)
    ref = ev.q.copy()
    source = ev.source.copy()
    if end_proba is not None:
        replace = source == 2
        ref[replace] = end_proba[replace]
        source[replace] = 3
    # a model's verdict, not its probability: a rule voting alone gets about its prior from the
    # label model, which says nothing about whether it is wrong
    modelled = source >= 2
    ref[modelled] = np.eye(len(labels))[ref[modelled].argmax(axis=1)]
    out = []
    for j, rule in enumerate(spec.rules):
        rows = np.flatnonzero(votes[:, j] != ABSTAIN)
        gold_rows = rows[source[rows] == 1]
        use = gold_rows if len(gold_rows) >= MIN_EVIDENCE else rows[source[rows] > 0]
        if len(use) < MIN_EVIDENCE:
            continue
        c = rule.label_index
        hits = float(ref[use, c].sum())
        p = (hits + 0.5) / (len(use) + 1.0)
        if p >= KEEPABLE:
            continue
        lo, hi = precision_interval(hits, len(use))
        src = " + ".join(_SOURCE_NAMES[s] for s in sorted(set(source[use].tolist())))
        wrong = use[ref[use].argmax(axis=1) != c]
        wrong = wrong[np.argsort(ref[wrong, c], kind="stable")][:3]
        out.append(Suggestion(
            "fix", (1 - p) * len(rows), f"rule {rule.name} (line {rule.rule.span.line}) is right on only "
            f"about {p:.0%} of its rows", label=labels[c], estimated_precision=p,
            precision_interval=(float(lo), float(hi)), precision_from=src, evidence_rows=float(len(use)),
            rows=len(rows), example_ids=[data.id_of(i) for i in wrong], example_rows=[int(i) for i in wrong],
            evidence=f"its {labels[c]} votes against {src} on {len(use)} rows"))
    rewrites, stops = _rest_fixes(spec, data, votes, ev)
    out += rewrites
    names = spec.rule_names
    for a, b, count in _conflict_pairs(votes, names)[:3]:
        ja, jb = names.index(a), names.index(b)
        both = np.flatnonzero((votes[:, ja] != ABSTAIN) & (votes[:, jb] != ABSTAIN) & (votes[:, ja] != votes[:, jb]))
        if any(r in stops and stops[r][both].all() for r in (a, b)):
            continue  # a rewrite above ends this conflict: the same advice twice
        out.append(Suggestion(
            "fix", float(count), f"rules {a} and {b} disagree on {count:,} rows", rows=count, conflicts=count,
            example_ids=[data.id_of(i) for i in both[:3]], example_rows=[int(i) for i in both[:3]],
            evidence="both vote, for different labels: narrow one of them (e.g. with unless)"))
    out.sort(key=lambda s: -s.score)
    return out[:n]


_PHRASE_TERM = re.compile(r'(\w+) has (?:any\(((?:"(?:[^"\\]|\\.)*"(?:, )?)+)\)|("(?:[^"\\]|\\.)*"))')


def _unless_phrases(unless: str) -> Optional[dict]:
    """field -> quoted phrases of an ``unless`` made only of ``F has any(...)`` / ``F has "x"``
    terms joined by ``or`` (as ``_remainders`` writes it); None for any other form."""
    out: dict = {}
    pos = 0
    for m in _PHRASE_TERM.finditer(unless):
        if unless[pos:m.start()] != ("" if pos == 0 else " or "):
            return None
        quoted = _QUOTED.findall(m.group(2)) if m.group(2) is not None else [m.group(3)]
        out.setdefault(m.group(1), {}).update(dict.fromkeys(quoted))
        pos = m.end()
    return {f: list(qs) for f, qs in out.items()} if out and pos == len(unless) else None


def _rest_fixes(spec: Spec, data: SuggestData, votes: np.ndarray, ev: _Evidence) -> list:
    """A rule for the rest of the data (``T unless F has any(...)``) written before some of the
    other labels' phrase rules leaves their phrases out of its ``unless``, and so keeps voting
    its label on their rows (on SMS, a HAM rest rule accepted after one SPAM rule voted HAM on
    every spam message the later SPAM rules found). Per such rule: the same rule with those
    phrases added to its ``unless`` (``spec_line``, ``replaces``), scored by the rows where it
    would stop voting against another label's rule. Returns (suggestions, {rule name: the rows
    its rewrite stops voting on})."""
    k = len(spec.labels)
    covered = (votes != ABSTAIN).any(axis=1)
    st = _RuleStats(data, votes, covered, ev, k)
    head = _fields_head(spec)
    out, stops = [], {}
    for j, r in enumerate(spec.rules):
        pred, label = _rule_parts(r)
        if not _REST_RULE.match(pred):
            continue
        base, unless = pred.split(" unless ", 1)
        have = _unless_phrases(unless)
        if have is None:
            continue
        added = 0
        for f, qs in _other_labels_phrases(spec, label).items():
            known = have.setdefault(f, [])
            new = [q for q in qs if q not in known]
            known.extend(new)
            added += len(new)
        if not added:
            continue
        tail = r.rule.text.rpartition("=>")[2].strip()  # the label, and a confidence if it has one
        line = f"rule {r.name} : {base} unless {_unless_text(have)} => {tail}"
        try:
            fires = vote_matrix(load_spec(spec.path, data.table.schema, text=head + line + "\n"), data.table)[:, 0]
        except SpecError:
            continue
        fires = fires != ABSTAIN
        before = votes[:, j] != ABSTAIN
        dropped = before & ~fires
        c = r.label_index
        against = dropped & ((votes != ABSTAIN) & (votes != c)).any(axis=1)
        if not against.any():
            continue
        cs = st.of(sp.csr_matrix(np.stack([before, fires], axis=1).astype(np.float32)))
        (p_old, p_new), total = cs.prec[:, c], float(cs.total[1])
        lo, hi = precision_interval(p_new * total, total)
        src = _precision_source(ev, sp.csr_matrix(fires[:, None].astype(np.float32)), st.informative)[0]
        stops[r.name] = dropped
        examples = np.flatnonzero(against)[:3]
        out.append(Suggestion(
            "fix", float(against.sum()), f"rule {r.name} (line {r.rule.span.line}) votes {label} on {int(against.sum()):,} "
            f"rows other labels' rules cover: add their {added} phrases to its unless", label=label, spec_line=line,
            estimated_precision=float(p_new), precision_interval=(float(lo), float(hi)), precision_from=src,
            evidence_rows=total, rows=int(fires.sum()), conflicts=int(against.sum()),
            example_ids=[data.id_of(i) for i in examples], example_rows=[int(i) for i in examples],
            evidence=f"rules added since it was written vote another label there; estimated precision "
                     f"{p_old:.2f} -> {p_new:.2f} ({src}, {total:,.0f} rows)", replaces=r.name))
    return out, stops


# -- rows to review --------------------------------------------------------------------------------
def _review(votes, ev: _Evidence, covered, groups: list, seed: int, end_proba) -> tuple:
    """Every row's value for labelling next, and the rows in that order (a seeded shuffle
    breaks ties). Covered rows: how unsure the label model is, plus ½ where the end model
    disagrees with it; uncovered rows: ½ × the share of uncovered rows in their group (its
    rows nearest the centre first), plus ½ × how unsure the end model is. Rows with gold: last."""
    n = len(covered)
    values = np.zeros(n)
    reasons = np.full(n, "", dtype=object)
    if ev.lm is not None:
        unsure = 1 - ev.lm.max(axis=1)
        values[covered] = unsure[covered]
        reasons[covered] = "the label model is unsure here"
    if end_proba is not None and ev.lm is not None:
        disagree = covered & (end_proba.argmax(axis=1) != ev.lm.argmax(axis=1))
        values[disagree] += 0.5
        reasons[disagree] = "the label model and the end model disagree"
    n_uncovered = max(int((~covered).sum()), 1)
    for g in groups:
        share = g.size / n_uncovered
        # nearest the centre first: a small bonus that falls off with rank in the group
        bonus = 0.5 * share * (1 + 1 / (1 + np.arange(len(g.rows))))
        values[g.rows] = bonus
        reasons[g.rows] = f"stands for a group of {g.size:,} uncovered rows ({', '.join(w for w, _ in g.word_shares[:3])})"
    if end_proba is not None:
        unsure = 0.5 * (1 - end_proba.max(axis=1))
        values[~covered] += unsure[~covered]
    values[ev.source == 1] = -np.inf
    reasons[ev.source == 1] = "already has a gold label"
    tie = np.random.default_rng(seed).permutation(n)
    order = np.lexsort((tie, -values))
    return order, values, reasons
