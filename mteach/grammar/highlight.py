"""Highlight spans for spec text, from the Lark lexer's own tokens.

``highlight(text)`` returns ``(line, start_col, end_col, kind)`` tuples, all 0-based,
columns in characters, end exclusive, one line per span. It never raises: text the
lexer cannot read is marked ``error`` one character at a time and lexing resumes
after it, so an editor can colour a half-typed rule while the expert writes it.

Every token of the language lives on one line (strings, regexes and comments cannot
span lines; newlines are whitespace), so each line is lexed on its own.
"""
from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple

from .parser import FUNCTIONS, STATEMENT_KEYWORDS

KINDS = ("keyword", "statement", "name", "definition", "label", "function", "string", "regex",
         "number", "comment", "operator", "punctuation", "error")

_OPERATORS = {"TILDE", "CMP", "EQUAL", "__ANON_0", "__ANON_1", "__ANON_2"}
_PUNCTUATION = {"COLON", "COMMA", "LPAR", "RPAR", "LBRACE", "RBRACE"}
_SIMPLE = {"STRING": "string", "REGEX": "regex", "NUMBER": "number", "COMMENT": "comment"}
_STATEMENTS = {k.upper() for k in STATEMENT_KEYWORDS}
_MAX_LINE = 20_000  # past this a line is shown plain: highlighting must stay instant


class Span(NamedTuple):
    line: int
    start: int
    end: int
    kind: str


@lru_cache(maxsize=1)
def _lex_fn():
    """A function text -> tokens (WS and COMMENT kept), built once."""
    from .parser import _lark
    lark = _lark()
    try:  # lark's public ``Lark.lex`` rebuilds its lexer on every call; build it once
        from lark.lexer import LexerThread
        lexer = lark._build_lexer(dont_ignore=True)
        return lambda text: LexerThread.from_text(lexer, text).lex(None)
    except Exception:  # pragma: no cover - another lark version
        return lambda text: lark.lex(text, dont_ignore=True)


@lru_cache(maxsize=8192)
def _lex_line(line: str) -> tuple:
    """(start, end, terminal type) for one line; unreadable characters become ERROR.
    Cached per line text: re-highlighting after a keystroke re-lexes only the edited line."""
    out, pos = [], 0
    lex = _lex_fn()
    while pos < len(line):
        chunk = line[pos:]
        try:
            for tok in lex(chunk):  # tokens come lazily, each complete, before any error
                start = pos + tok.column - 1
                out.append((start, start + len(tok), tok.type))
            break
        except Exception as err:  # lark's UnexpectedCharacters, or anything odd
            col = getattr(err, "column", None)
            bad = pos + col - 1 if isinstance(col, int) else -1
            if not pos <= bad < len(line) or (out and bad < out[-1][1]):
                out.append((pos, len(line), "ERROR"))
                break
            out.append((bad, bad + 1, "ERROR"))
            pos = bad + 1
    return tuple(out)


def highlight(text) -> list:
    """Highlight spans of ``text``: a list of ``Span(line, start, end, kind)``, 0-based."""
    try:
        return _highlight(str(text) if not isinstance(text, str) else text)
    except Exception:  # a highlighter must never take the editor down
        return []


def _highlight(text: str) -> list:
    spans = []
    prev = None  # previous significant token type, across lines
    for n, line in enumerate(text.split("\n")):
        if not line.strip():
            continue
        if len(line) > _MAX_LINE:
            continue
        toks = [t for t in _lex_line(line.rstrip("\r")) if t[2] != "WS"]
        for i, (start, end, typ) in enumerate(toks):
            nxt = toks[i + 1][2] if i + 1 < len(toks) else None
            if typ in _SIMPLE:
                kind = _SIMPLE[typ]
            elif typ == "ERROR":
                kind = "error"
            elif typ in _STATEMENTS:
                kind = "statement"
            elif typ == "NAME":
                name = line[start:end]
                if nxt == "LPAR" and name in FUNCTIONS:
                    kind = "function"
                elif prev in ("RULE", "DEFINE", "CONCEPT", "FIELD"):
                    kind = "definition"
                elif prev in ("__ANON_0", "LABELS") or (prev == "COMMA" and _in_labels(toks, i)):
                    kind = "label"
                else:
                    kind = "name"
            elif typ in _OPERATORS:
                kind = "operator"
            elif typ in _PUNCTUATION:
                kind = "punctuation"
            elif typ.isupper() and typ.isalpha():
                kind = "keyword"
            else:
                kind = "operator"
            spans.append(Span(n, start, end, kind))
            if typ != "COMMENT":
                prev = typ
    return spans


def _in_labels(toks, i) -> bool:
    """Is token ``i`` inside a ``labels A, B`` list on this line?"""
    for _, _, typ in reversed(toks[:i]):
        if typ == "LABELS":
            return True
        if typ not in ("NAME", "COMMA"):
            return False
    return False
