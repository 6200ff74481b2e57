"""Run a spec's ``example`` lines against its rules: the spec's own tests.

All examples go through the same vectorized evaluator as real data, in one table.
Verdict: the majority vote of the rules that fire (a tie fails the example); an
``=> abstain`` example passes only when no rule fires.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa

from ..compiler.evaluator import vote_matrix
from ..compiler.spec import Spec
from ..errors import Diagnostic
from .analysis import majority_vote


def examples_table(spec: Spec) -> pa.Table:
    """One row per example; fields an example does not give are missing (null)."""
    columns = {}
    for name, f in spec.fields.items():
        values = [dict(e.inputs).get(name) for e in spec.examples]
        kind = spec.field_kinds.get(name)
        if kind == "number" or (kind is None and any(isinstance(v, float) for v in values)):
            arr = pa.array([float(v) if isinstance(v, (int, float)) else None for v in values], pa.float64())
        elif kind == "boolean":
            arr = pa.array([None if v is None else v in ("true", 1.0) for v in values], pa.bool_())
        else:
            arr = pa.array([None if v is None else str(v) for v in values], pa.string())
        columns[f.column] = arr
    return pa.table(columns) if columns else pa.table({"_": pa.nulls(len(spec.examples))})


def run_examples(spec: Spec) -> tuple:
    """(number passed, diagnostics for the failures)."""
    if not spec.examples:
        return 0, []
    votes = vote_matrix(spec, examples_table(spec))
    verdict = majority_vote(votes, len(spec.labels))
    failures, passed = [], 0
    for i, example in enumerate(spec.examples):
        fired = [(spec.rules[j].name, spec.labels[votes[i, j]]) for j in np.flatnonzero(votes[i] != -1)]
        said = ", ".join(f"{name} => {label}" for name, label in fired)
        if example.label is None:
            ok = not fired
            message = f"expected no rule to fire, but {said}"
        else:
            ok = verdict[i] != -1 and spec.labels[verdict[i]] == example.label
            if not fired:
                message = f"expected {example.label}, but no rule fires"
            elif verdict[i] == -1:
                message = f"expected {example.label}, but the rules tie ({said})"
            else:
                message = f"expected {example.label}, but the rules say {spec.labels[verdict[i]]} ({said})"
        if ok:
            passed += 1
        else:
            failures.append(Diagnostic(example.span, "example fails: " + message))
    return passed, failures
