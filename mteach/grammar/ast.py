"""The spec's abstract syntax tree: plain frozen dataclasses, each carrying its span.

Nodes hold no behaviour; the checker, the evaluator and the hint compiler walk them,
dispatching on the node's class with ``grammar.visitor.NodeVisitor``. Two nodes that
differ only in where they were written compare unequal (spans are fields), so use
``node.key()`` for a position-free identity (used to share sub-expressions and to
cache rule columns by content).
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Optional, Union

from ..spans import Span


@dataclass(frozen=True)
class Node:
    def key(self) -> tuple:
        """Position-free structural identity of this node."""
        parts = [type(self).__name__]
        for f in fields(self):
            if f.name in ("span", "description", "text"):
                continue
            parts.append(_key(getattr(self, f.name)))
        return tuple(parts)


def _key(value):
    if isinstance(value, Node):
        return value.key()
    if isinstance(value, tuple):
        return tuple(_key(v) for v in value)
    return value


# ---- values that a define can name -------------------------------------------------
@dataclass(frozen=True)
class Regex(Node):
    pattern: str
    flags: str  # subset of "ims"
    span: Span = field(compare=False, default=None)


@dataclass(frozen=True)
class Phrases(Node):
    """A phrase list. mode "any": one of them; "all": every one of them."""
    phrases: tuple
    mode: str
    span: Span = field(compare=False, default=None)


@dataclass(frozen=True)
class Lexicon(Node):
    path: str  # relative to the spec's folder; resolved by the checker
    mode: str = "any"
    span: Span = field(compare=False, default=None)


@dataclass(frozen=True)
class Ref(Node):
    """A name: a field, or a define (regex, phrase list, lexicon or predicate)."""
    name: str
    span: Span = field(compare=False, default=None)


# ---- text sources and values ----------------------------------------------------------
@dataclass(frozen=True)
class Window(Node):
    """first(F, n) / last(F, n): the first or last n characters of a text."""
    side: str  # "first" | "last"
    source: "Source"
    size: int
    span: Span = field(compare=False, default=None)


Source = Union[Ref, Window]


@dataclass(frozen=True)
class Measure(Node):
    """len, words, count, upper_ratio, digit_ratio, number — a number computed from text.

    ``arg`` is the regex/phrase argument of count and number; ``per_words`` turns
    count into a rate (``count(F, x) per 100 words``).
    """
    func: str
    source: Source
    arg: Optional[Node] = None
    per_words: Optional[float] = None
    span: Span = field(compare=False, default=None)


@dataclass(frozen=True)
class Number(Node):
    value: float
    span: Span = field(compare=False, default=None)


@dataclass(frozen=True)
class String(Node):
    value: str
    span: Span = field(compare=False, default=None)


Value = Union[Ref, Measure, Number, String]


# ---- predicates ---------------------------------------------------------------------
@dataclass(frozen=True)
class Match(Node):
    """F ~ /re/ (negate=False) or F !~ /re/ (negate=True)."""
    source: Source
    regex: Union[Regex, Ref]
    negate: bool = False
    span: Span = field(compare=False, default=None)


@dataclass(frozen=True)
class Has(Node):
    """F has "phrase" / any(...) / all(...) / lexicon(...) / NAME — whole-word, any case."""
    source: Source
    phrases: Union[Phrases, Lexicon, Ref]
    span: Span = field(compare=False, default=None)


@dataclass(frozen=True)
class Near(Node):
    """F has A near B within N words."""
    source: Source
    left: Union[Phrases, Lexicon, Ref]
    right: Union[Phrases, Lexicon, Ref]
    within: int
    span: Span = field(compare=False, default=None)


@dataclass(frozen=True)
class Compare(Node):
    op: str  # < <= > >= == !=
    left: Value
    right: Value
    span: Span = field(compare=False, default=None)


@dataclass(frozen=True)
class Between(Node):
    value: Value
    low: Value
    high: Value
    span: Span = field(compare=False, default=None)


@dataclass(frozen=True)
class In(Node):
    source: Ref
    values: tuple  # of String / Number
    span: Span = field(compare=False, default=None)


@dataclass(frozen=True)
class Missing(Node):
    source: Ref
    negate: bool = False  # "is not missing"
    span: Span = field(compare=False, default=None)


@dataclass(frozen=True)
class Truth(Node):
    """A bare name used as a predicate: a boolean field or a predicate define."""
    ref: Ref
    span: Span = field(compare=False, default=None)


@dataclass(frozen=True)
class And(Node):
    items: tuple
    span: Span = field(compare=False, default=None)


@dataclass(frozen=True)
class Or(Node):
    items: tuple
    span: Span = field(compare=False, default=None)


@dataclass(frozen=True)
class Not(Node):
    item: "Predicate"
    span: Span = field(compare=False, default=None)


Predicate = Union[Match, Has, Near, Compare, Between, In, Missing, Truth, And, Or, Not]


# ---- statements ---------------------------------------------------------------------
@dataclass(frozen=True)
class Concept(Node):
    name: str
    description: str = ""
    span: Span = field(compare=False, default=None)


@dataclass(frozen=True)
class Labels(Node):
    names: tuple
    spans: tuple = field(compare=False, default=())
    span: Span = field(compare=False, default=None)


@dataclass(frozen=True)
class Field(Node):
    name: str
    column: str
    span: Span = field(compare=False, default=None)


@dataclass(frozen=True)
class Define(Node):
    name: str
    value: Node  # Regex | Phrases | Lexicon | Predicate
    span: Span = field(compare=False, default=None)


@dataclass(frozen=True)
class Rule(Node):
    """rule NAME : PRED [unless PRED] => LABEL [confidence P].

    ``text`` is the rule's source text as written; ``description`` the comment
    lines directly above it.
    """
    name: str
    predicate: Predicate
    label: str
    unless: Optional[Predicate] = None
    confidence: Optional[float] = None
    description: str = ""
    text: str = ""
    label_span: Span = field(compare=False, default=None)
    span: Span = field(compare=False, default=None)


@dataclass(frozen=True)
class Hint(Node):
    """A direction hint; it shapes the end model's loss and never labels rows.

    kind "token":   hint more|less "phrase" => L   (``token`` set)
    kind "measure": hint more|less MEASURE(F) => L (``measure`` set)
    kind "pair":    hint "A" -> "B" => L           (``text_a``, ``text_b`` set; sign +1)
    sign is +1 for "more", -1 for "less".
    """
    kind: str
    label: str
    sign: int = 1
    token: Optional[str] = None
    measure: Optional[Measure] = None
    text_a: Optional[str] = None
    text_b: Optional[str] = None
    text: str = ""
    label_span: Span = field(compare=False, default=None)
    span: Span = field(compare=False, default=None)


@dataclass(frozen=True)
class Example(Node):
    """example INPUT => LABEL | abstain. ``inputs`` maps spec field names to values;
    a bare string is bound to the first text field by the checker (field None)."""
    inputs: tuple  # of (field name or None, value)
    label: Optional[str]  # None = abstain
    label_span: Span = field(compare=False, default=None)
    span: Span = field(compare=False, default=None)


@dataclass(frozen=True)
class Use(Node):
    path: str
    span: Span = field(compare=False, default=None)


Statement = Union[Concept, Labels, Field, Define, Rule, Hint, Example, Use]


@dataclass(frozen=True)
class SpecFile(Node):
    """One parsed file, before ``use`` is resolved."""
    path: str
    statements: tuple
    source: str = field(compare=False, default="")
