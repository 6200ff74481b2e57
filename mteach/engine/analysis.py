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


def majority_vote(votes: np.ndarray, n_classes: int) -> np.ndarray:
    """Most-voted label per row; -1 where no rule votes or the top labels tie."""
    counts = np.stack([(votes == k).sum(axis=1) for k in range(n_classes)], axis=1)
    top = counts.max(axis=1)
    winners = (counts == top[:, None]).sum(axis=1)
    return np.where((top > 0) & (winners == 1), counts.argmax(axis=1), ABSTAIN)


def conflicted_rows(votes: np.ndarray) -> np.ndarray:
    """Per row: two or more rules vote, and not all for the same label."""
    voted = votes != ABSTAIN
    # initial=: a spec with no rules yet gives an (n × 0) matrix
    low = np.where(voted, votes, np.iinfo(np.int8).max).min(axis=1, initial=np.iinfo(np.int8).max)
    high = np.where(voted, votes, np.iinfo(np.int8).min).max(axis=1, initial=np.iinfo(np.int8).min)
    return (voted.sum(axis=1) > 1) & (low != high)


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
    n, m = votes.shape
    voted = votes != ABSTAIN
    n_voting = voted.sum(axis=1)
    conflicted = conflicted_rows(votes)
    denom = max(n, 1)
    cols = {
        "rule": rule_names,
        "label": rule_labels,
        "polarity": [[lab] for lab in rule_labels],
        "votes": voted.sum(axis=0).astype(np.int64),
        "coverage": voted.sum(axis=0) / denom,
        "overlaps": (voted & (n_voting > 1)[:, None]).sum(axis=0) / denom,
        "conflicts": (voted & conflicted[:, None]).sum(axis=0) / denom,
    }
    if gold is not None:
        known = gold != ABSTAIN
        hit = voted & known[:, None]
        correct = (hit & (votes == gold[:, None])).sum(axis=0)
        total = hit.sum(axis=0)
        gold_of_label = np.array([(gold == labels.index(lab)).sum() for lab in rule_labels])
        low, high = wilson_interval(correct, total)
        with np.errstate(invalid="ignore", divide="ignore"):
            cols.update({
                "correct": correct.astype(np.int64),
                "incorrect": (total - correct).astype(np.int64),
                "accuracy": np.where(total > 0, correct / np.maximum(total, 1), np.nan),
                "accuracy_low": low, "accuracy_high": high,
                "recall": np.where(gold_of_label > 0, correct / np.maximum(gold_of_label, 1), np.nan),
            })
    return pa.table(cols)


def summarize(votes: np.ndarray, labels: list, gold: Optional[np.ndarray] = None) -> Summary:
    n_voting = (votes != ABSTAIN).sum(axis=1)
    mv = majority_vote(votes, len(labels))
    conflicted = int(conflicted_rows(votes).sum())
    per_class, mv_correct, mv_decided, gold_rows = [], 0, 0, 0
    if gold is not None:
        known = gold != ABSTAIN
        gold_rows = int(known.sum())
        decided = known & (mv != ABSTAIN)
        mv_decided = int(decided.sum())
        mv_correct = int((mv[decided] == gold[decided]).sum())
        for k, lab in enumerate(labels):
            tp = int(((mv == k) & (gold == k) & known).sum())
            predicted = int(((mv == k) & known).sum())
            actual = int((gold == k).sum())
            per_class.append({"label": lab, "gold": actual, "predicted": predicted,
                              "precision": tp / predicted if predicted else float("nan"),
                              "recall": tp / actual if actual else float("nan")})
    return Summary(len(votes), int((n_voting > 0).sum()), int((n_voting > 1).sum()), conflicted,
                   gold_rows, mv_correct, mv_decided, per_class)
