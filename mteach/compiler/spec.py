"""The compiled spec: what the checker hands to the evaluator, the engine and the studio.

``Spec`` is a checked spec with its defines and lexicons inlined (see ``checker.py``);
``CompiledRule`` one rule ready to evaluate. ``field_kind`` is how a data column's Arrow
type maps to the kinds the language checks against; ``regex_pattern`` how a regex node
becomes the RE2 pattern every kernel runs, and ``number_pattern`` the one ``number(F, /re/)``
extracts with.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from ..grammar import ast


# Votes are int8 everywhere (vote_matrix, vote files, the label model, the ledger): a
# label index must fit, with -1 for abstain. 127 classes is far beyond what rules written
# by hand can tell apart, and int8 keeps a million rows × 100 rules at 100 MB.
MAX_LABELS = 127


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
                            # ("other": dates and the like, only `is missing` tests them)
    defines: dict           # name -> ast.Define
    rules: list             # of CompiledRule
    hints: list             # of ast.Hint (measures resolved)
    examples: list          # of ast.Example (inputs bound to field names)
    sources: dict           # displayed file name -> text (for diagnostics)
    content_hash: str       # sha256 over every file the spec reads
    files: list             # displayed names of every file read (spec, used specs, lexicons)
    warnings: list = field(default_factory=list)
    used_as: dict = field(default_factory=dict)  # field -> kind its rules use it as, where field_kinds is None

    @property
    def rule_names(self) -> list:
        return [r.name for r in self.rules]

    @property
    def text_fields(self) -> list:
        """The fields that hold text, in spec order: the one answer for the end model's
        features, the text shown beside a row, and a bare example string's field.

        An untyped field (kind None: the spec was checked without data, or its column holds
        only nulls) counts as text: text is the language's default (its rules' phrase and
        regex tests are checked as text), and nothing about it says otherwise.
        """
        return [n for n, k in self.field_kinds.items() if k in ("text", None)]

    def column(self, name: str) -> str:
        return self.fields[name].column


def field_kind(dtype: pa.DataType) -> str:
    if pa.types.is_dictionary(dtype):
        dtype = dtype.value_type
    if pa.types.is_string(dtype) or pa.types.is_large_string(dtype) or pa.types.is_string_view(dtype):
        return "text"
    if pa.types.is_integer(dtype) or pa.types.is_floating(dtype) or pa.types.is_decimal(dtype):
        return "number"
    if pa.types.is_boolean(dtype):
        return "boolean"
    if pa.types.is_null(dtype):
        return None
    if pa.types.is_nested(dtype) or pa.types.is_binary(dtype) or pa.types.is_large_binary(dtype):
        return "unsupported"
    return "other"


def regex_pattern(regex: ast.Regex) -> str:
    flags = "".join(f for f in "ims" if f in regex.flags)
    return f"(?{flags}){regex.pattern}" if flags else regex.pattern


def number_pattern(regex: ast.Regex) -> str:
    """The RE2 pattern of ``number(F, /re/)``: it reads the first capture group, or the
    whole match if there is none. Arrow's extract_regex wants named groups only, so the
    first capture group is named ``value`` and every other one becomes non-capturing
    (RE2 has no backreferences, so nothing else can refer to them)."""
    p, out, i, first = regex.pattern, [], 0, True
    in_class = False
    while i < len(p):
        ch = p[i]
        if ch == "\\":
            out.append(p[i:i + 2])
            i += 2
            continue
        if in_class:
            if p.startswith("[:", i) and ":]" in p[i + 2:]:  # [[:alpha:]]
                j = p.index(":]", i + 2) + 2
                out.append(p[i:j])
                i = j
                continue
            in_class = ch != "]"
        elif ch == "[":
            in_class = True
            j = i + 1 + p.startswith("^", i + 1)
            if p.startswith("]", j):  # a "]" first in a class is a literal
                j += 1
            out.append(p[i:j])
            i = j
            continue
        elif ch == "(":
            name_end = p.index(">", i) + 1 if p.startswith(("(?P<", "(?<"), i) and ">" in p[i:] else None
            if name_end is not None or not p.startswith("(?", i):
                out.append("(?P<value>" if first else "(?:")
                first = False
                i = name_end if name_end is not None else i + 1
                continue
        out.append(ch)
        i += 1
    body = "".join(out)
    return regex_pattern(ast.Regex(body if not first else f"(?P<value>{body})", regex.flags, regex.span))
