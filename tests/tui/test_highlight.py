from hypothesis import given, settings, strategies as st

from mteach.grammar.highlight import KINDS, highlight

SPEC = '''labels SPAM, HAM
define link = /https?:/i
rule x : text has any("free") and len(text) > 3 => SPAM confidence 0.8  # note
'''


def kinds(text):
    return [(s.line, text.split("\n")[s.line][s.start:s.end], s.kind) for s in highlight(text)]


def test_tokens_are_classified_with_zero_based_positions():
    got = kinds(SPEC)
    assert (0, "labels", "statement") in got
    assert (0, "SPAM", "label") in got and (0, "HAM", "label") in got
    assert (1, "link", "definition") in got
    assert (1, "/https?:/i", "regex") in got
    assert (2, "any", "function") in got
    assert (2, '"free"', "string") in got
    assert (2, "and", "keyword") in got
    assert (2, "3", "number") in got
    assert (2, "=>", "operator") in got
    assert (2, "SPAM", "label") in got
    assert (2, "# note", "comment") in got
    first = highlight(SPEC)[0]
    assert (first.line, first.start, first.end) == (0, 0, 6)


def test_bad_characters_are_marked_and_lexing_resumes():
    text = "rule y : 'oops' @ text has \"free\" => SPAM"
    got = kinds(text)
    assert (0, "'", "error") in got and (0, "@", "error") in got
    assert (0, '"free"', "string") in got and (0, "SPAM", "label") in got
    # spans never overlap and stay inside their line
    spans = sorted((s.start, s.end) for s in highlight(text))
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))


def test_unterminated_string_and_regex():
    got = kinds('rule z : text ~ /abc\nrule w : text has "abc')
    assert (0, "/", "error") in got and (1, '"', "error") in got


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_never_raises_and_spans_are_valid(text):
    lines = text.split("\n")
    for s in highlight(text):
        assert s.kind in KINDS
        assert 0 <= s.line < len(lines)
        assert 0 <= s.start < s.end <= len(lines[s.line])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(['rule', 'x', ':', 'text', 'has', '"a', '"b"', '/r/', '/', '=>', 'SPAM', '(', ')',
                                 '#', '\n', ' ', '~', '!~', '\\', "'", '{', '}', '1.5', '\t', 'é', '\x00']), max_size=40))
def test_never_raises_on_spec_like_garbage(parts):
    text = "".join(parts)
    assert isinstance(highlight(text), list)


def test_non_text_input_is_highlighted_as_its_text():
    # the editor only ever passes text, but a highlighter must not take it down on
    # anything else: it highlights what str() of the value reads
    assert highlight(None) == highlight("None") == [(0, 0, 4, "name")]
    assert highlight(b"rule") == highlight("b'rule'")
    assert [s.kind for s in highlight(b"rule")] == ["name", "error", "statement", "error"]
