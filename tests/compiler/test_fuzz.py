"""The parser and checker never crash on garbage: mutated specs give SpecError (with
diagnostics that point at a real line and column) or a Spec — no other exception."""
import re
from pathlib import Path

import pyarrow as pa
from hypothesis import HealthCheck, given, settings, strategies as st

import mteach
from mteach.errors import SpecError

SPEC = Path(__file__).resolve().parents[2] / "specs" / "youtube_spam.mt"
SOURCE = SPEC.read_text(encoding="utf-8")
TOKENS = re.findall(r'"[^"\n]*"|/(?:\\.|[^/\\\n])+/[a-z]*|\w+|=>|!~|->|\S|\n', SOURCE)
EXTRA = ["rule", "define", "example", "use", "hint", "field", "labels", "concept", "=>", "~", "!~", "has", "near",
         "within", "per", "words", "between", "and", "or", "not", "unless", "confidence", "in", "{", "}", "(", ")",
         "is", "missing", "abstain", '"', "'", "/", "\\", ":", ",", "#", "\n", "\r\n", "\t", "0", "-1", "1.5",
         "99999999999999999999", "count(", "number(", "first(", "last(", "lexicon(", 'lexicon("../x.txt")',
         '"../../etc/passwd"', "/(?=a)/", "/a/z", "__import__", "CLASS", "B", "D", "\u2028", "\x00", "\ufeff",
         "\u0085", "é", "ß", "\U0001F600"]
SCHEMA = pa.schema([("CONTENT", pa.string()), ("CLASS", pa.int64()), ("B", pa.bool_()), ("D", pa.timestamp("s"))])

edit = st.tuples(
    st.sampled_from(["insert", "delete", "replace", "char"]),
    st.floats(0, 1),
    st.sampled_from(TOKENS + EXTRA),
    st.characters(codec="utf-8", exclude_categories=["Cs"]) | st.characters(),  # some lone surrogates too
    st.integers(1, 12),
)


def mutate(edits) -> str:
    """Token-level edits (insert/delete/replace a token) and character-level ones."""
    toks = list(TOKENS)
    text_edits = []
    for kind, where, token, char, size in edits:
        if kind == "char":
            text_edits.append((where, char, size))
            continue
        i = int(where * len(toks))
        if kind == "insert":
            toks.insert(i, token)
        elif kind == "delete":
            del toks[i:i + size]
        else:
            toks[i:i + 1] = [token]
    text = " ".join(toks).replace(" \n ", "\n")
    for where, char, size in text_edits:
        i = int(where * len(text))
        text = text[:i] + char + text[i + (size % 3):]
    return text


def check_outcome(text, schema):
    try:
        mteach.load_spec(SPEC, schema=schema, text=text)
    except SpecError as err:
        assert err.diagnostics
        lines = re.split("\r\n|[\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]", text)
        for d in err.diagnostics:
            if d.span is None:
                continue
            assert isinstance(d.span.line, int) and isinstance(d.span.column, int)
            if d.span.file.endswith("youtube_spam.mt"):
                assert 1 <= d.span.line <= len(lines), d
                assert 1 <= d.span.column <= len(lines[d.span.line - 1]) + 2, d
            else:  # a lexicon or a used file
                assert d.span.line >= 1 and d.span.column >= 1
        assert "Traceback" not in err.format()


@settings(max_examples=200, derandomize=True, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(edit, min_size=1, max_size=4), st.booleans())
def test_mutated_spec_gives_spec_error_or_spec(edits, with_schema):
    check_outcome(mutate(edits), SCHEMA if with_schema else None)


@settings(max_examples=60, derandomize=True, deadline=None, database=None)
@given(st.text(max_size=200))
def test_random_unicode_gives_spec_error_or_spec(text):
    check_outcome(text, None)


def test_lone_surrogate_in_an_editor_buffer_is_a_diagnostic():
    text = SOURCE.replace("concept spam", "concept sp\ud800am")
    try:
        mteach.load_spec(SPEC, text=text)
    except SpecError as err:
        (d,) = err.diagnostics
        assert (d.span.line, d.span.column) == (3, 11)
        assert "not valid Unicode" in d.message
    else:
        raise AssertionError("expected a SpecError")
