"""Spec text → AST, with friendly syntax errors.

Each statement starts with a keyword at the start of a line, so the text is cut
into statements and each is parsed on its own: one typo costs one diagnostic and
the rest of the file is still read and checked.
"""
from __future__ import annotations

import re
from functools import lru_cache

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken, VisitError

from ..errors import Diagnostic, did_you_mean
from ..spans import Span
from . import ast

STATEMENT_KEYWORDS = ("concept", "labels", "field", "define", "rule", "hint", "example", "use")
_STATEMENT_START = re.compile(r"^\s*(" + "|".join(STATEMENT_KEYWORDS) + r")\b")

# Functions of the call syntax: name -> what it builds (checked in `_Builder.call`).
PHRASE_FUNCS = ("any", "all", "lexicon")
WINDOW_FUNCS = ("first", "last")
MEASURE_FUNCS = ("len", "words", "count", "number", "upper_ratio", "digit_ratio")
FUNCTIONS = PHRASE_FUNCS + WINDOW_FUNCS + MEASURE_FUNCS
MAX_WINDOW = 1_000_000_000  # first/last(F, n): larger n would overflow Arrow's slice offsets

_KEYWORDS = ("and", "or", "not", "has", "near", "within", "between", "in", "is", "missing",
             "unless", "confidence", "abstain", "more", "less", "per") + STATEMENT_KEYWORDS

# Token names as an expert would read them in "expected ..." messages.
_TOKEN_WORDS = {
    "NAME": "a name", "STRING": 'a quoted string ("...")', "NUMBER": "a number",
    "REGEX": "a regex (/.../)", "CMP": "a comparison (<, <=, >, >=, ==, !=)",
    "COLON": '":"', "MORETHAN": '">"', "EQUAL": '"="', "COMMA": '","', "LPAR": '"("', "RPAR": '")"',
    "LBRACE": '"{"', "RBRACE": '"}"', "TILDE": '"~"', "__ANON_0": '"=>"', "__ANON_1": '"->"',
    "__ANON_2": '"!~"', "ABSTAIN": '"abstain"', "$END": "the end of the statement",
}


@lru_cache(maxsize=1)
def _lark() -> Lark:
    return Lark.open("mteach.lark", rel_to=__file__, parser="lalr", propagate_positions=True,
                     maybe_placeholders=False)


class _BuildError(Exception):
    def __init__(self, diagnostic: Diagnostic):
        self.diagnostic = diagnostic


def _unquote(token: str) -> str:
    body = token[1:-1]
    return re.sub(r'\\(.)', lambda m: {"n": "\n", "t": "\t"}.get(m.group(1), m.group(1)), body)


@v_args(meta=True)
class _Builder(Transformer):
    def __init__(self, file: str, lines: list[str]):
        super().__init__()
        self.file = file
        self.lines = lines

    # -- helpers ---------------------------------------------------------------------
    def span(self, meta) -> Span:
        return Span(self.file, meta.line, meta.column, meta.end_line, meta.end_column)

    def tspan(self, tok: Token) -> Span:
        return Span(self.file, tok.line, tok.column, tok.end_line, tok.end_column)

    def fail(self, span, message, hint=""):
        raise _BuildError(Diagnostic(span, message, hint=hint))

    def source_text(self, meta) -> str:
        chunk = self.lines[meta.line - 1:meta.end_line]
        if not chunk:
            return ""
        chunk = list(chunk)
        chunk[-1] = chunk[-1][:meta.end_column - 1]
        chunk[0] = chunk[0][meta.column - 1:]
        return " ".join(s.strip() for s in chunk)

    def description(self, line: int) -> str:
        """The comment lines directly above ``line`` (1-based)."""
        out = []
        i = line - 2
        while i >= 0 and self.lines[i].lstrip().startswith("#"):
            out.append(self.lines[i].lstrip()[1:].strip())
            i -= 1
        return " ".join(reversed(out)).strip()

    def as_source(self, node, what="a text field"):
        if isinstance(node, (ast.Ref, ast.Window)):
            return node
        self.fail(node.span, f"expected {what} here (a field name, or first(...)/last(...))")

    def as_phrases(self, node):
        if isinstance(node, ast.String):
            return ast.Phrases((node.value,), "any", node.span)
        if isinstance(node, (ast.Phrases, ast.Lexicon, ast.Ref)):
            return node
        if isinstance(node, ast.Regex):
            self.fail(node.span, "`has` takes phrases, not a regex", hint="use `~` to match a regex")
        self.fail(node.span, 'expected a phrase ("..."), any(...), all(...), lexicon("...") or a define name')

    def as_regex(self, node):
        if isinstance(node, (ast.Regex, ast.Ref)):
            return node
        if isinstance(node, ast.String):
            self.fail(node.span, "`~` takes a regex written between slashes, like /colou?r/i",
                      hint="to match a phrase, use `has`")
        self.fail(node.span, "expected a regex (/.../) or the name of a regex define")

    def as_predicate(self, node):
        if isinstance(node, (ast.Regex, ast.Phrases, ast.Lexicon, ast.String, ast.Number,
                             ast.Measure, ast.Window)):
            self.fail(node.span, "this is a value, not a test",
                      hint='write a test such as `text has "free"`, `text ~ /re/` or `len(text) > 10`')
        return node

    # -- statements ------------------------------------------------------------------
    def start(self, meta, children):
        return list(children)

    def concept(self, meta, c):
        return ast.Concept(str(c[0]), _unquote(c[1]) if len(c) > 1 else "", self.span(meta))

    def labels(self, meta, c):
        return ast.Labels(tuple(str(t) for t in c), tuple(self.tspan(t) for t in c), self.span(meta))

    def field(self, meta, c):
        return ast.Field(str(c[0]), _unquote(c[1]), self.span(meta))

    def use(self, meta, c):
        return ast.Use(_unquote(c[0]), self.span(meta))

    def define(self, meta, c):
        name, value = c
        if isinstance(value, ast.Truth):  # `define a = b`: an alias of another define
            value = value.ref
        if isinstance(value, ast.String):
            value = ast.Phrases((value.value,), "any", value.span)
        if isinstance(value, (ast.Number, ast.Measure, ast.Window)):
            self.fail(value.span, "a define names a regex, a phrase list, a lexicon or a test",
                      hint='e.g. define promo = any("check out", "subscribe")')
        return ast.Define(str(name), value, self.span(meta))

    def rule(self, meta, c):
        name, pred, rest = c[0], self.as_predicate(c[1]), c[2:]
        unless = None
        if rest and isinstance(rest[0], tuple) and rest[0][0] == "unless":
            unless = self.as_predicate(rest[0][1])
            rest = rest[1:]
        label = rest[0]
        confidence = rest[1] if len(rest) > 1 else None
        return ast.Rule(str(name), pred, str(label), unless, confidence,
                        description=self.description(meta.line), text=self.source_text(meta),
                        label_span=self.tspan(label), span=self.span(meta))

    def unless(self, meta, c):
        return ("unless", c[0])

    def confidence(self, meta, c):
        value = float(c[0])
        if not 0.0 < value <= 1.0:
            self.fail(self.tspan(c[0]), f"confidence must be between 0 and 1 (got {c[0]})",
                      hint="it is your estimate of the rule's precision, e.g. confidence 0.8")
        return value

    def direction(self, meta, c):
        return str(c[0])

    def hint_direction(self, meta, c):
        direction, target, label = c
        sign = 1 if direction == "more" else -1
        common = dict(label=str(label), sign=sign, text=self.source_text(meta),
                      label_span=self.tspan(label), span=self.span(meta))
        if isinstance(target, ast.String):
            if not target.value.strip():
                self.fail(target.span, "a hint's phrase cannot be empty")
            return ast.Hint("token", token=target.value, **common)
        if isinstance(target, ast.Measure):
            return ast.Hint("measure", measure=target, **common)
        self.fail(target.span, 'a hint moves along a phrase ("...") or a measure such as words(text)')

    def hint_pair(self, meta, c):
        a, b, label = c
        return ast.Hint("pair", str(label), 1, text_a=_unquote(a), text_b=_unquote(b),
                        text=self.source_text(meta), label_span=self.tspan(label), span=self.span(meta))

    def example(self, meta, c):
        given, label = c
        if isinstance(given, Token):
            inputs = ((None, _unquote(given)),)
        else:
            inputs = given
        lab = None if label.type == "ABSTAIN" else str(label)
        return ast.Example(inputs, lab, label_span=self.tspan(label), span=self.span(meta))

    def record(self, meta, c):
        return tuple(c)

    def pair(self, meta, c):
        return (str(c[0]), c[1].value)

    # -- predicates ------------------------------------------------------------------
    def or_pred(self, meta, c):
        return ast.Or(tuple(self.as_predicate(x) for x in c), self.span(meta))

    def and_pred(self, meta, c):
        return ast.And(tuple(self.as_predicate(x) for x in c), self.span(meta))

    def not_(self, meta, c):
        return ast.Not(self.as_predicate(c[0]), self.span(meta))

    def match(self, meta, c):
        return ast.Match(self.as_source(c[0]), self.as_regex(c[1]), False, self.span(meta))

    def not_match(self, meta, c):
        return ast.Match(self.as_source(c[0]), self.as_regex(c[1]), True, self.span(meta))

    def has(self, meta, c):
        return ast.Has(self.as_source(c[0]), self.as_phrases(c[1]), self.span(meta))

    def near(self, meta, c):
        src, left, right, n = c[0], c[1], c[2], c[3]
        within = float(n)
        if within < 1 or within != int(within):
            self.fail(self.tspan(n), "`within` takes a whole number of words, 1 or more")
        return ast.Near(self.as_source(src), self.as_phrases(left), self.as_phrases(right),
                        int(within), self.span(meta))

    def compare(self, meta, c):
        left, op, right = c
        return ast.Compare(str(op), left, right, self.span(meta))

    def between(self, meta, c):
        return ast.Between(c[0], c[1], c[2], self.span(meta))

    def in_(self, meta, c):
        return ast.In(c[0], tuple(c[1:]), self.span(meta))

    def missing(self, meta, c):
        return ast.Missing(c[0], False, self.span(meta))

    def not_missing(self, meta, c):
        return ast.Missing(c[0], True, self.span(meta))

    def truth(self, meta, c):
        node = c[0]
        if isinstance(node, ast.Ref):
            return ast.Truth(node, self.span(meta))
        return node  # a value; `define` accepts it, a rule reports it (as_predicate)

    # -- operands --------------------------------------------------------------------
    def ref(self, meta, c):
        return ast.Ref(str(c[0]), self.span(meta))

    def number(self, meta, c):
        return ast.Number(float(c[0]), self.span(meta))

    def string(self, meta, c):
        return ast.String(_unquote(c[0]), self.span(meta))

    def regex(self, meta, c):
        text = str(c[0])
        end = text.rindex("/")
        pattern, flags = text[1:end], text[end + 1:]
        bad = sorted(set(flags) - set("ims"))
        if bad:
            self.fail(self.span(meta), f"unknown regex flag {''.join(bad)!r}",
                      hint="flags are i (ignore case), m (multi-line), s (dot matches newline)")
        return ast.Regex(pattern.replace("\\/", "/"), flags, self.span(meta))

    def per(self, meta, c):
        value = float(c[0])
        if value <= 0:
            self.fail(self.tspan(c[0]), "`per N words` needs N > 0")
        return ("per", value)

    def call(self, meta, c):
        name_tok, args = c[0], list(c[1:])
        name, span = str(name_tok), self.span(meta)
        per = None
        if args and isinstance(args[-1], tuple) and args[-1][0] == "per":
            per = args.pop()[1]
        if name not in FUNCTIONS:
            self.fail(self.tspan(name_tok), f"unknown function {name!r}{did_you_mean(name, FUNCTIONS)}",
                      hint="functions: " + ", ".join(FUNCTIONS))
        if per is not None and name != "count":
            self.fail(span, "`per N words` applies to count(...) only")

        def want(n, usage):
            if len(args) != n:
                self.fail(span, f"{name}(...) takes {n} argument{'s' if n > 1 else ''}: {usage}")

        if name in ("any", "all"):
            if not args or not all(isinstance(a, ast.String) for a in args):
                self.fail(span, f'{name}(...) takes one or more quoted phrases: {name}("a", "b")')
            return ast.Phrases(tuple(a.value for a in args), name, span)
        if name == "lexicon":
            want(1, 'lexicon("lexicons/terms.txt")')
            if not isinstance(args[0], ast.String):
                self.fail(span, 'lexicon(...) takes a quoted file path: lexicon("lexicons/terms.txt")')
            return ast.Lexicon(args[0].value, "any", span)
        if name in WINDOW_FUNCS:
            want(2, f"{name}(text, 300)")
            size = args[1]
            if not isinstance(size, ast.Number) or size.value < 1 or size.value != int(size.value):
                self.fail(span, f"{name}(...)'s second argument is a whole number of characters")
            if size.value > MAX_WINDOW:
                self.fail(size.span, f"{name}(...) takes at most {MAX_WINDOW:,} characters")
            return ast.Window(name, self.as_source(args[0]), int(size.value), span)
        if name in ("count", "number"):
            want(2, f"{name}(text, /re/)" if name == "number" else "count(text, /re/ or phrases)")
            src = self.as_source(args[0])
            arg = self.as_regex(args[1]) if name == "number" else args[1]
            if name == "count" and isinstance(arg, ast.String):
                arg = ast.Phrases((arg.value,), "any", arg.span)
            if name == "count" and not isinstance(arg, (ast.Regex, ast.Phrases, ast.Lexicon, ast.Ref)):
                self.fail(arg.span, "count(...) counts a regex or phrases: count(text, /!/) or count(text, praise)")
            return ast.Measure(name, src, arg, per, span)
        want(1, f"{name}(text)")
        return ast.Measure(name, self.as_source(args[0]), None, None, span)


def _chunks(text: str):
    """Split into statements: (first line number, text of the statement)."""
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if _STATEMENT_START.match(line)]
    if not starts or starts[0] != 0:
        starts = [0] + starts
    for a, b in zip(starts, starts[1:] + [len(lines)]):
        yield a + 1, "\n".join(lines[a:b])


def _syntax_diagnostic(err: UnexpectedInput, file: str, lines: list[str], first_line: int) -> Diagnostic:
    line, col = err.line, err.column
    if line is None or line < 1:  # lark reports -1 at the end of input
        line = first_line + len([l for l in lines[first_line - 1:] if l]) - 1
        line = max(1, min(line, len(lines)))
        col = len(lines[line - 1]) + 1 if lines else 1
    span = Span(file, line, col, line, col + 1)
    if isinstance(err, UnexpectedCharacters):
        char = lines[line - 1][col - 1:col] if line <= len(lines) else ""
        if char == "'":
            return Diagnostic(span, "strings use double quotes", hint='write "like this"')
        if char == "/":
            return Diagnostic(span, "unfinished regex: a regex is written /pattern/flags on one line")
        if char == '"':
            return Diagnostic(span, "unfinished string: a closing \" is missing on this line")
        return Diagnostic(span, f"unexpected character {char!r}")
    expected = sorted({_TOKEN_WORDS.get(t, f'"{t.lower()}"') for t in (err.expected or ())
                       if not t.startswith("__ANON") or t in _TOKEN_WORDS})
    if isinstance(err, UnexpectedToken):
        tok = err.token
        if tok.type == "$END":  # lark places it on the last token; point just after that token
            message = "the statement ends too early"
            if tok.end_line is not None and tok.end_column is not None:
                span = Span(file, tok.end_line, tok.end_column, tok.end_line, tok.end_column + 1)
        else:
            span = Span(file, tok.line, tok.column, tok.end_line, tok.end_column)
            message = f"unexpected {str(tok)!r}"
        if tok.type == "NAME" and str(tok).lower() in _KEYWORDS and str(tok) != str(tok).lower():
            return Diagnostic(span, message, hint=f"write {str(tok).lower()!r} in lower case")
        if tok.type == "NAME" and did_you_mean(str(tok), _KEYWORDS):
            return Diagnostic(span, message + did_you_mean(str(tok), _KEYWORDS))
    elif isinstance(err, UnexpectedEOF):
        message = "the statement ends too early"
    else:
        message = "syntax error"
    hint = ("expected " + ", ".join(expected[:6]) + (" or ..." if len(expected) > 6 else "")) if expected else ""
    return Diagnostic(span, message, hint=hint)


def parse(text: str, file: str = "<spec>") -> tuple[ast.SpecFile, list[Diagnostic]]:
    """Parse one spec file. Returns the statements that parsed and a diagnostic per bad one."""
    lines = text.splitlines()
    statements, diagnostics = [], []
    for first_line, chunk in _chunks(text):
        if not chunk.strip():
            continue
        padded = "\n" * (first_line - 1) + chunk
        try:
            tree = _lark().parse(padded)
            statements.extend(_Builder(file, lines).transform(tree))
        except UnexpectedInput as err:
            diagnostics.append(_syntax_diagnostic(err, file, lines, first_line))
        except VisitError as err:
            if isinstance(err.orig_exc, _BuildError):
                diagnostics.append(err.orig_exc.diagnostic)
            else:
                raise
    return ast.SpecFile(file, tuple(statements), text), diagnostics
