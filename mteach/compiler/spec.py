"""The compiled spec: what the checker hands to the evaluator, the engine and the studio.

``Spec`` is a checked spec with its defines and lexicons inlined (see ``checker.py``);
``CompiledRule`` one rule ready to evaluate. ``field_kind`` is how a data column's Arrow
type maps to the kinds the language checks against; ``regex_pattern`` how a regex node
becomes the RE2 pattern every kernel runs.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from ..grammar import ast


@dataclass
class CompiledRule:
    """A rule ready to evaluate: ``predicate`` is resolved; ``rule`` is the AST as written."""
    index: int
    rule: ast.Rule
    label_index: int
    predicate: object

    @property
    def name(self) -> str:
        return self.rule.name


@dataclass
class Spec:
    path: Path
    root: Path
    concept: ast.Concept
    labels: tuple
    fields: dict            # spec name -> ast.Field
    field_kinds: dict       # spec name -> "text" | "number" | "boolean" | "other" | None (no schema)
    defines: dict           # name -> ast.Define
    rules: list             # of CompiledRule
    hints: list             # of ast.Hint (measures resolved)
    examples: list          # of ast.Example (inputs bound to field names)
    sources: dict           # displayed file name -> text (for diagnostics)
    content_hash: str       # sha256 over every file the spec reads
    files: list             # displayed names of every file read (spec, used specs, lexicons)
    warnings: list = field(default_factory=list)

    @property
    def rule_names(self) -> list:
        return [r.name for r in self.rules]

    @property
    def text_fields(self) -> list:
        return [n for n, k in self.field_kinds.items() if k in ("text", None)]

    def column(self, name: str) -> str:
        return self.fields[name].column


def field_kind(dtype: pa.DataType) -> str:
    if pa.types.is_dictionary(dtype):
        dtype = dtype.value_type
    if pa.types.is_string(dtype) or pa.types.is_large_string(dtype) or getattr(pa.types, "is_string_view", lambda t: False)(dtype):
        return "text"
    if pa.types.is_integer(dtype) or pa.types.is_floating(dtype) or pa.types.is_decimal(dtype):
        return "number"
    if pa.types.is_boolean(dtype):
        return "boolean"
    if pa.types.is_null(dtype):
        return None
    return "other"


def regex_pattern(regex: ast.Regex) -> str:
    flags = "".join(f for f in "ims" if f in regex.flags)
    return f"(?{flags}){regex.pattern}" if flags else regex.pattern
