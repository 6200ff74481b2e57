"""What each rule does: coverage, overlaps, conflicts and, with gold labels, accuracy.

Definitions follow Snorkel's LFAnalysis, with every denominator = all rows:
- coverage: share of rows the rule votes on;
- overlaps: share of rows the rule votes on where another rule votes too;
- conflicts: share of rows the rule votes on where another rule votes a different label.
With gold (label index per row, -1 = unknown), on rows the rule votes on that have a
gold label: correct, incorrect, empirical accuracy (= precision of its label) with its 95%
Wilson interval (accuracy_low, accuracy_high), and recall (share of the gold rows of its
label that it catches).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Optional

import numpy as np
import pyarrow as pa

ABSTAIN = -1


def wilson_interval(correct, total, z: float = 1.96) -> tuple:
    """Wilson score interval (low, high) of an accuracy ``correct / total`` measured on labelled
    rows, 95% by default; NaN where total is 0. Unlike p ± z·se it stays inside [0, 1] and is
    honest for small n and accuracies near 1. Element-wise on arrays; floats for scalars."""
    correct = np.asarray(correct, dtype=np.float64)
    total = np.asarray(total, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = correct / total
        centre = (p + z * z / (2 * total)) / (1 + z * z / total)
        half = z * np.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    empty = total <= 0
    low = np.where(empty, np.nan, np.clip(centre - half, 0.0, 1.0))
    high = np.where(empty, np.nan, np.clip(centre + half, 0.0, 1.0))
    return (float(low), float(high)) if low.ndim == 0 else (low, high)


def votes_per_rule(votes: np.ndarray) -> np.ndarray:
    """(rules,) int64: the rows each rule votes on."""
    # column by column: the engine's matrices are column-major, and at 1,000 rules this is
    # 3x faster than one 2-D count
    return np.array([np.count_nonzero(votes[:, j] != ABSTAIN) for j in range(votes.shape[1])], dtype=np.int64)


def votes_per_label(votes: np.ndarray, n_labels: int) -> np.ndarray:
    """(labels × rows) int32: how many rules vote each label on each row."""
    out = np.zeros((n_labels, len(votes)), np.int32)
    for j in range(votes.shape[1]):  # column by column: 1.6x faster than 2-D sums at 1,000 rules
        col = votes[:, j]
        for k in range(n_labels):
            out[k] += col == k
    return out


def row_facts(per_label: np.ndarray) -> tuple:
    """Per row, from ``votes_per_label``: how many rules vote; conflicted (two or more rules
    vote, and not all for the same label); the majority vote (-1 where no rule votes or the
    top labels tie). A few passes over labels × rows instead of several over rows × rules."""
    n_voting = per_label.sum(axis=0)
    conflicted = (n_voting > 1) & ((per_label > 0).sum(axis=0) > 1)
    if len(per_label) == 0:
        return n_voting, conflicted, np.full(per_label.shape[1], ABSTAIN, dtype=np.int64)
    top = per_label.max(axis=0)
    single = (per_label == top).sum(axis=0) == 1
    verdict = np.where((top > 0) & single, per_label.argmax(axis=0), ABSTAIN).astype(np.int64)
    return n_voting, conflicted, verdict


def majority_vote(votes: np.ndarray, n_classes: int) -> np.ndarray:
    """Most-voted label per row; -1 where no rule votes or the top labels tie."""
    return row_facts(votes_per_label(votes, n_classes))[2]


def conflicted_rows(votes: np.ndarray) -> np.ndarray:
    """Per row: two or more rules vote, and not all for the same label."""
    labels = int(votes.max()) + 1 if votes.size else 0  # -1 (no vote anywhere): none
    return row_facts(votes_per_label(votes, labels))[1]


ROW_FILTERS = ("all", "uncovered", "conflicted", "rule", "label", "wrong")


def select_rows(votes: np.ndarray, mode: str = "all", rule: Optional[int] = None, label: Optional[int] = None,
                verdict: Optional[np.ndarray] = None, gold: Optional[np.ndarray] = None) -> np.ndarray:
    """Which rows a filter keeps (bool per row): all; uncovered (no rule votes); conflicted;
    rule (rule index ``rule`` votes); label (the ``verdict`` — the rules' majority vote — is
    ``label``); wrong (the verdict decides and disagrees with ``gold``)."""
    if mode == "uncovered":
        return ~(votes != ABSTAIN).any(axis=1)
    if mode == "conflicted":
        return conflicted_rows(votes)
    if mode == "rule":
        return votes[:, rule] != ABSTAIN
    if mode == "label":
        return verdict == label
    if mode == "wrong":
        return (verdict != ABSTAIN) & (gold != ABSTAIN) & (verdict != gold)
    return np.ones(len(votes), dtype=bool)


@dataclass
class Summary:
    """Totals for the whole spec."""
    rows: int
    covered: int
    overlapped: int
    conflicted: int
    gold_rows: int
    # majority vote against gold, on gold rows the rules decide
    mv_correct: int
    mv_decided: int
    per_class: list  # [{label, gold, predicted, precision, recall}]

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def rule_stats(votes: np.ndarray, rule_names: list, rule_labels: list, labels: list,
               gold: Optional[np.ndarray] = None) -> pa.Table:
    """Per-rule statistics as an Arrow table (one row per rule): votes, coverage, overlaps, conflicts
    and, with ``gold`` (label index per row, -1 unknown), correct / incorrect / accuracy / recall.

        votes = mteach.apply_table(spec, table)
        stats = mteach.rule_stats(votes, spec.rule_names, [r.rule.label for r in spec.rules], list(spec.labels))
    """
    return StatsCounts(votes.shape[1], labels, gold is not None).add(votes, gold).rules(rule_names, rule_labels)


def summarize(votes: np.ndarray, labels: list, gold: Optional[np.ndarray] = None) -> Summary:
    return StatsCounts(votes.shape[1], labels, gold is not None).add(votes, gold).summary()


class StatsCounts:
    """``rule_stats`` and ``summarize`` summed batch by batch: every figure is a count over
    rows, so ``stats`` on data of any length holds these counts, never all rows' votes.
    ``gold``: whether gold labels are given (a batch's ``None`` then means none known)."""

    def __init__(self, n_rules: int, labels: list, gold: bool = False):
        self.labels, self.gold = list(labels), gold
        self.columns = np.zeros((n_rules, 5), dtype=np.int64)  # _column_counts
        # rows, covered, overlapped, conflicted, gold rows, majority vote correct, decided
        self.totals = np.zeros(7, dtype=np.int64)
        self.per_class = np.zeros((len(self.labels), 3), dtype=np.int64)  # true positives, predicted, gold

    def add(self, votes: np.ndarray, gold: Optional[np.ndarray] = None) -> "StatsCounts":
        if self.gold and gold is None:
            gold = np.full(len(votes), ABSTAIN, dtype=np.int64)
        n_voting, conflicted, verdict = row_facts(votes_per_label(votes, len(self.labels)))
        self.columns += _column_counts(votes, n_voting > 1, conflicted, gold if self.gold else None)
        self.add_rows(n_voting, conflicted, verdict, gold if self.gold else None)
        return self

    def add_rows(self, n_voting: np.ndarray, conflicted: np.ndarray, mv: np.ndarray,
                 gold: Optional[np.ndarray]) -> None:
        """The summary's counts from per-row facts: rules voting, conflicted, majority vote."""
        self.totals[:4] += (len(n_voting), (n_voting > 0).sum(), (n_voting > 1).sum(), conflicted.sum())
        if gold is None:
            return
        known = gold != ABSTAIN
        decided = known & (mv != ABSTAIN)
        self.totals[4:] += (known.sum(), (mv[decided] == gold[decided]).sum(), decided.sum())
        for k in range(len(self.labels)):
            self.per_class[k] += (((mv == k) & (gold == k)).sum(), ((mv == k) & known).sum(), (gold == k).sum())

    def rules(self, rule_names: list, rule_labels: list) -> pa.Table:
        return _stats_table(self.columns, int(self.totals[0]), rule_names, rule_labels, self.labels,
                            self.per_class[:, 2] if self.gold else None)

    def summary(self) -> Summary:
        per_class = []
        for lab, (tp, predicted, actual) in zip(self.labels, self.per_class.tolist()) if self.gold else ():
            per_class.append({"label": lab, "gold": actual, "predicted": predicted,
                              "precision": tp / predicted if predicted else float("nan"),
                              "recall": tp / actual if actual else float("nan")})
        rows, covered, overlapped, conflicted, gold_rows, mv_correct, mv_decided = self.totals.tolist()
        return Summary(rows, covered, overlapped, conflicted, gold_rows, mv_correct, mv_decided, per_class)


def _column_counts(votes: np.ndarray, overlapped: np.ndarray, conflicted: np.ndarray,
                   gold: Optional[np.ndarray]) -> np.ndarray:
    """Per column (rule) of ``votes``: [votes, overlaps, conflicts, correct, gold rows voted on]
    as a (columns × 5) int64 array; the last two 0 without gold."""
    out = np.zeros((votes.shape[1], 5), dtype=np.int64)
    known = None if gold is None else gold != ABSTAIN
    for j in range(votes.shape[1]):  # column by column: 3.5-5x faster than 2-D counts at 1,000 rules
        col = votes[:, j]
        voted = col != ABSTAIN
        out[j, :3] = np.count_nonzero(voted), np.count_nonzero(voted & overlapped), np.count_nonzero(voted & conflicted)
        if gold is not None:
            hit = voted & known
            out[j, 3:] = np.count_nonzero(hit & (col == gold)), np.count_nonzero(hit)
    return out


def _stats_table(counts: np.ndarray, n: int, rule_names: list, rule_labels: list, labels: list,
                 gold_per_label: Optional[np.ndarray]) -> pa.Table:
    """``rule_stats``'s table from ``_column_counts`` and, with gold, the gold rows of each label."""
    denom = max(n, 1)
    counts = counts.reshape(-1, 5)
    cols = {
        "rule": rule_names,
        "label": rule_labels,
        "polarity": [[lab] for lab in rule_labels],
        "votes": counts[:, 0],
        "coverage": counts[:, 0] / denom,
        "overlaps": counts[:, 1] / denom,
        "conflicts": counts[:, 2] / denom,
    }
    if gold_per_label is not None:
        correct, total = counts[:, 3], counts[:, 4]
        gold_of_label = np.array([gold_per_label[labels.index(lab)] for lab in rule_labels], dtype=np.int64)
        low, high = wilson_interval(correct, total)
        with np.errstate(invalid="ignore", divide="ignore"):
            cols.update({
                "correct": correct,
                "incorrect": total - correct,
                "accuracy": np.where(total > 0, correct / np.maximum(total, 1), np.nan),
                "accuracy_low": low, "accuracy_high": high,
                "recall": np.where(gold_of_label > 0, correct / np.maximum(gold_of_label, 1), np.nan),
            })
    return pa.table(cols)


@dataclass
class Stats:
    """Everything the studio shows about a vote matrix: ``rule_stats``, ``summarize``,
    ``conflicted_rows`` and ``majority_vote``."""
    rules: pa.Table
    summary: Summary
    conflicted: np.ndarray
    verdict: np.ndarray


class IncrementalStats:
    """The statistics of successive vote matrices over the same rows, updated from the
    columns that changed (the studio: one rule edited, the others' columns the same).

    ``update(votes, keys, ...)``: ``keys`` names each column's content (equal keys, equal
    columns: ``IncrementalVotes.column_keys``). Per row it keeps the votes per label; a
    changed column moves those counts where it votes, and only the rows whose counts
    moved (``R``) are re-read for the other columns' overlaps and conflicts. So a one-rule
    edit costs O(rows) for that column and O(|R| × rules), not O(rows × rules). Results
    equal the full functions' (tests/engine/test_analysis.py)."""

    def __init__(self):
        self._state = None

    def update(self, votes: np.ndarray, keys: list, rule_names: list, rule_labels: list, labels: list,
               gold: Optional[np.ndarray] = None) -> Stats:
        n, m = votes.shape
        old = self._state
        same_basis = (old is not None and old["n"] == n and old["labels"] == list(labels)
                      and (old["gold"] is None) == (gold is None)
                      and (gold is None or np.array_equal(old["gold"], gold)))
        if same_basis:
            gone = _multiset_minus(old["keys"], keys)
            came = _multiset_minus(keys, old["keys"])
            if len(gone) + len(came) > max(1, m // 2):  # most columns changed: count afresh
                same_basis = False
        if not same_basis:
            state = self._fresh(votes, keys, labels, gold)
        else:
            state = self._moved(old, votes, keys, gone, came, gold)
        self._state = state
        totals = StatsCounts(m, labels, gold is not None)
        totals.columns[:] = np.array([state["columns"][k] for k in keys], dtype=np.int64).reshape(m, 5)
        totals.add_rows(state["n_voting"], state["conflicted"], state["verdict"], gold)
        return Stats(totals.rules(rule_names, rule_labels), totals.summary(), state["conflicted"], state["verdict"])

    def _fresh(self, votes, keys, labels, gold) -> dict:
        per_label = votes_per_label(votes, len(labels))
        n_voting, conflicted, verdict = row_facts(per_label)
        counts = _column_counts(votes, n_voting > 1, conflicted, gold)
        return {"n": len(votes), "labels": list(labels), "gold": None if gold is None else gold.copy(),
                "keys": list(keys), "votes": votes, "per_label": per_label, "n_voting": n_voting,
                "conflicted": conflicted, "verdict": verdict, "columns": dict(zip(keys, counts.tolist()))}

    def _moved(self, old, votes, keys, gone, came, gold) -> dict:
        per_label = old["per_label"].copy()
        old_column = {k: j for j, k in enumerate(old["keys"])}
        new_column = {k: j for j, k in enumerate(keys)}
        for key, sign, matrix, column in ([(k, -1, old["votes"], old_column[k]) for k in gone]
                                          + [(k, 1, votes, new_column[k]) for k in came]):
            col = matrix[:, column]
            for lab in range(len(per_label)):
                per_label[lab] += sign * (col == lab)
        rows = np.flatnonzero((per_label != old["per_label"]).any(axis=0))  # R: whose counts moved
        n_voting, conflicted, verdict = (a.copy() for a in (old["n_voting"], old["conflicted"], old["verdict"]))
        n_voting[rows], conflicted[rows], verdict[rows] = row_facts(per_label[:, rows])
        columns = {k: v for k, v in old["columns"].items() if k in new_column}
        # kept columns: their overlaps and conflicts change only on R
        kept = [new_column[k] for k in dict.fromkeys(keys) if k in columns and k not in came]
        if len(rows) and kept:
            voted = votes[np.ix_(rows, kept)] != ABSTAIN
            d_overlap = (n_voting[rows] > 1).astype(np.int64) - (old["n_voting"][rows] > 1)
            d_conflict = conflicted[rows].astype(np.int64) - old["conflicted"][rows]
            d_o, d_c = d_overlap @ voted, d_conflict @ voted
            for i, j in enumerate(kept):
                c = list(columns[keys[j]])
                c[1] += int(d_o[i])
                c[2] += int(d_c[i])
                columns[keys[j]] = c
        if came:
            at = [new_column[k] for k in came]
            fresh = _column_counts(votes[:, at], n_voting > 1, conflicted, gold)
            columns.update(zip(came, fresh.tolist()))
        return {**old, "keys": list(keys), "votes": votes, "per_label": per_label, "n_voting": n_voting,
                "conflicted": conflicted, "verdict": verdict, "columns": columns}


def _multiset_minus(a: list, b: list) -> list:
    """The items of ``a`` not matched by one in ``b``, repeats counted (two rules may share a key)."""
    return list((Counter(a) - Counter(b)).elements())
