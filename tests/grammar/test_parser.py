"""The parser: every construct of the language becomes the right AST node, and a
syntax error becomes one diagnostic with a place, while the rest of the file is read."""
import pytest

from mteach.grammar import ast
from mteach.grammar.parser import parse


def one(text):
    spec, diags = parse(text, "s.mt")
    assert diags == [], [d.message for d in diags]
    assert len(spec.statements) == 1
    return spec.statements[0]


def pred(text):
    return one(f"rule r : {text} => A").predicate


def errors(text):
    spec, diags = parse(text, "s.mt")
    return diags


# -- statements ---------------------------------------------------------------------------
def test_concept_labels_field_use():
    c = one('concept spam "Comments that advertise"')
    assert (c.name, c.description) == ("spam", "Comments that advertise")
    assert one("concept spam").description == ""
    lab = one("labels SPAM, HAM, OTHER,")
    assert lab.names == ("SPAM", "HAM", "OTHER")
    assert [s.column for s in lab.spans] == [8, 14, 19]
    f = one('field text = "CONTENT"')
    assert (f.name, f.column) == ("text", "CONTENT")
    assert one('use "shared/pii.mt"').path == "shared/pii.mt"


def test_define_values():
    assert one("define url = /https?:\\/\\//i").value == ast.Regex("https?://", "i")
    assert one('define p = any("a", "b c")').value == ast.Phrases(("a", "b c"), "any")
    assert one('define p = all("a", "b")').value == ast.Phrases(("a", "b"), "all")
    assert one('define p = "one"').value == ast.Phrases(("one",), "any")
    assert one('define p = lexicon("lex/a.txt")').value == ast.Lexicon("lex/a.txt")
    assert one("define p = other").value == ast.Ref("other")  # an alias
    d = one('define p = text has "x" and len(text) > 3')
    assert isinstance(d.value, ast.And)


def test_rule_parts_description_and_text():
    text = ('# A link points away from the video.\n'
            '# (second line)\n'
            'rule link : text ~ /http/\n'
            '    unless text has "my site" => SPAM confidence 0.8\n')
    spec, diags = parse(text, "s.mt")
    assert diags == []
    (r,) = spec.statements
    assert r.name == "link" and r.label == "SPAM" and r.confidence == 0.8
    assert isinstance(r.predicate, ast.Match) and isinstance(r.unless, ast.Has)
    assert r.description == "A link points away from the video. (second line)"
    assert r.text == 'rule link : text ~ /http/ unless text has "my site" => SPAM confidence 0.8'
    assert (r.span.line, r.span.column) == (3, 1)
    assert (r.label_span.line, r.label_span.column) == (4, 34)


def test_comment_not_directly_above_is_not_a_description():
    spec, _ = parse("# far away\n\nrule r : t has \"x\" => A  # trailing\n", "s.mt")
    assert spec.statements[0].description == ""
    assert spec.statements[0].confidence is None and spec.statements[0].unless is None


def test_hints():
    h = one('hint more "subscribe" => SPAM')
    assert (h.kind, h.token, h.sign, h.label) == ("token", "subscribe", 1, "SPAM")
    h = one("hint less words(text) => HAM")
    assert (h.kind, h.sign) == ("measure", -1) and h.measure.func == "words"
    h = one('hint "nice song" -> "nice song, check my channel" => SPAM')
    assert (h.kind, h.text_a, h.text_b) == ("pair", "nice song", "nice song, check my channel")


def test_examples():
    e = one('example "Check out my channel" => SPAM')
    assert e.inputs == ((None, "Check out my channel"),) and e.label == "SPAM"
    e = one('example {text: "hi", n: 3, } => abstain')
    assert e.inputs == (("text", "hi"), ("n", 3.0)) and e.label is None
    e = one('example "say \\"hi\\"\\n" => A')
    assert e.inputs[0][1] == 'say "hi"\n'


# -- predicates ---------------------------------------------------------------------------
def test_predicate_forms():
    assert pred("t ~ /a/").negate is False
    assert pred("t !~ /a/ims").negate is True and pred("t !~ /a/ims").regex.flags == "ims"
    assert isinstance(pred('t has "x"').phrases, ast.Phrases)
    assert isinstance(pred("t has promo").phrases, ast.Ref)
    assert isinstance(pred('t has lexicon("a.txt")').phrases, ast.Lexicon)
    near = pred('t has "not" near any("good", "great") within 3 words')
    assert isinstance(near, ast.Near) and near.within == 3
    assert pred('t has "a" near "b" within 2').within == 2  # "words" is optional
    cmp = pred("count(t, praise) > count(t, complaint)")
    assert isinstance(cmp, ast.Compare) and cmp.op == ">" and cmp.left.func == "count"
    per = pred("count(t, /!/) per 100 words >= 3").left
    assert per.per_words == 100.0
    assert isinstance(pred("n between 1 and 2.5"), ast.Between)
    assert [v.value for v in pred('c in {"a", "b",}').values] == ["a", "b"]
    assert pred("c is missing").negate is False and pred("c is not missing").negate is True
    assert isinstance(pred("flag"), ast.Truth)
    w = pred('first(t, 300) has "x"').source
    assert isinstance(w, ast.Window) and (w.side, w.size) == ("first", 300)
    assert pred('last(t, 5) ~ /x/').source.side == "last"
    num = pred("number(t, /(\\d+)\\/10/) >= 7").left
    assert num.func == "number" and num.arg.pattern == "(\\d+)/10"
    for m in ("len", "words", "upper_ratio", "digit_ratio"):
        assert pred(f"{m}(t) > 0.5").left.func == m
    assert pred("n >= -1.5").right.value == -1.5


def test_precedence_and_or_not_parentheses():
    p = pred("a or b and not c")
    assert isinstance(p, ast.Or) and isinstance(p.items[1], ast.And)
    assert isinstance(p.items[1].items[1], ast.Not)
    p = pred("(a or b) and c")
    assert isinstance(p, ast.And) and isinstance(p.items[0], ast.Or)
    assert isinstance(pred("not not a").item, ast.Not)


def test_statements_may_wrap_over_lines():
    spec, diags = parse('rule r :\n  t has "a"\n  and t has "b"\n  => A\n', "s.mt")
    assert diags == [] and isinstance(spec.statements[0].predicate, ast.And)


def test_key_ignores_position():
    a = pred('t has "x"')
    b = one('rule q :\n\n     t has "x" => B').predicate
    assert a != b or a.span != b.span
    assert a.key() == b.key()


# -- errors -------------------------------------------------------------------------------
@pytest.mark.parametrize("text,line,col,words", [
    ("rule r : t has 'x' => A", 1, 16, "double quotes"),
    ("rule r : t ~ /abc => A", 1, 14, "unfinished regex"),
    ('rule r : t has "abc => A', 1, 16, "unfinished string"),
    ("rule r : t has => A", 1, 16, "unexpected"),
    ("rule r : t ~ /a/x => A", 1, 14, "unknown regex flag"),
    ('rule r : t HAS "x" => A', 1, 12, "lower case"),
    ('rule r : t hsa "x" => A', 1, 12, "did you mean has"),
    # keywords are whole words (issue 9, item 22): glued to a name is a syntax error
    ('rule r : t haspromo => A', 1, 12, "did you mean `has promo`?"),
    ('rule r : t ~ /x/ ornot t ~ /y/ => A', 1, 18, "did you mean `or not`?"),
    ('rule r : t has "a" andnot t has "b" => A', 1, 20, "did you mean `and not`?"),
    ('rule r : t hass "x" => A', 1, 12, "did you mean has?"),
    ('rule r : t has "a" near "b" within 3 wordsx => A', 1, 38, "unexpected 'wordsx'"),
    ('rule r : lenn(t) > 3 => A', 1, 10, "unknown function 'lenn' — did you mean len"),
    ('rule r : t ~ "x" => A', 1, 14, "between slashes"),
    ('rule r : t has /x/ => A', 1, 16, "not a regex"),
    ('rule r : t has "x" => A confidence 1.5', 1, 36, "between 0 and 1"),
    ('rule r : t has "x" => A confidence 0', 1, 36, "between 0 and 1"),
    ('rule r : "x" => A', 1, 10, "value, not a test"),
    ('rule r : len(t) => A', 1, 10, "value, not a test"),
    ('rule r : t has "a" near "b" within 0 words => A', 1, 36, "whole number"),
    ('rule r : words(t) per 10 words > 1 => A', 1, 10, "count(...) only"),
    ('rule r : count(t, "x") per 0 words > 1 => A', 1, 28, "N > 0"),
    ('rule r : first(t, 0) has "x" => A', 1, 10, "whole number"),
    ('rule r : first(t, 99999999999999999999) has "x" => A', 1, 19, "at most"),
    # numbers beyond a 64-bit float (issue 9, item 6): a diagnostic at the number, not OverflowError
    ('rule r : t has "a" near "b" within ' + "9" * 309 + ' words => A', 1, 36, "number too large (309 digits)"),
    ('rule r : t has "a" near "b" within 10000000000 words => A', 1, 36, "at most 1,000,000,000 words"),
    ('rule r : first(t, ' + "9" * 400 + ') has "x" => A', 1, 19, "number too large"),
    ('rule r : last(t, ' + "9" * 400 + ') has "x" => A', 1, 18, "number too large"),
    ('rule r : n > -' + "9" * 400 + ' => A', 1, 14, "fit a 64-bit float"),
    ('rule r : count(t, "x") per ' + "9" * 400 + ' words > 1 => A', 1, 28, "number too large"),
    ('rule r : t has "x" => A confidence ' + "9" * 400, 1, 36, "number too large"),
    ('example {n: ' + "9" * 400 + '} => A', 1, 13, "number too large"),
    ('rule r : len(t, t) > 1 => A', 1, 10, "takes 1 argument"),
    ('rule r : t has any() => A', 1, 16, "one or more quoted phrases"),
    ('rule r : t has any(x) => A', 1, 16, "one or more quoted phrases"),
    ('define d = 3', 1, 12, "a define names"),
    ('hint more "  " => A', 1, 11, "cannot be empty"),
    ('hint more t => A', 1, 11, "a hint moves along"),
    ("rule r : t has \"x\"", 1, 19, "ends too early"),
])
def test_syntax_errors_have_a_place_and_words(text, line, col, words):
    diags = errors(text)
    assert len(diags) == 1, [d.message for d in diags]
    d = diags[0]
    assert (d.span.line, d.span.column) == (line, col), d.format({"s.mt": text})
    assert words in d.message + " " + d.hint


def test_one_bad_statement_costs_one_diagnostic():
    text = ('concept c "x"\nlabels A, B\n'
            'rule bad1 : t has => A\n'
            'rule good : t has "x" => A\n'
            'rule bad2 : t ~ /x => B\n'
            'example "x" => A\n')
    spec, diags = parse(text, "s.mt")
    assert [d.span.line for d in diags] == [3, 5]
    assert [type(s).__name__ for s in spec.statements] == ["Concept", "Labels", "Rule", "Example"]


def test_error_at_end_of_file_points_at_a_real_line():
    text = 'concept c "x"\nrule r : t has "x" and\n\n\n'
    (d,) = errors(text)
    assert 1 <= d.span.line <= len(text.splitlines())
    assert d.span.line == 2


def test_names_that_look_like_code_are_just_names():
    """There is no construct that runs code: such names parse as plain names or fail as syntax."""
    p = pred("__import__")
    assert isinstance(p, ast.Truth) and p.ref.name == "__import__"
    (d,) = errors('rule r : __import__("os") > 1 => A')
    assert "unknown function '__import__'" in d.message
    (d,) = errors('rule r : eval("1") > 1 => A')
    assert "unknown function 'eval'" in d.message
    assert errors("rule r : t.__class__ => A")  # a syntax error, nothing more
    assert errors("rule r : `ls` => A")


def test_empty_and_comment_only_text():
    spec, diags = parse("", "s.mt")
    assert spec.statements == () and diags == []
    spec, diags = parse("# only\n# comments\n\n", "s.mt")
    assert spec.statements == () and diags == []


def test_crlf_line_endings():
    spec, diags = parse('concept c "x"\r\nlabels A, B\r\nrule r : t has "x" => A\r\n', "s.mt")
    assert diags == [] and spec.statements[2].span.line == 3


def test_statements_are_parsed_once_and_the_cache_keeps_descriptions_and_lines():
    from mteach.grammar import parser
    text = '# first\nrule a : t has "x" => A\nrule b : t hass "y" => A\n'
    spec1, diags1 = parse(text, "s.mt")
    before = parser._statement.cache_info()
    spec2, diags2 = parse(text, "s.mt")
    assert parser._statement.cache_info().hits - before.hits == 3  # the comment line, rule a, rule b
    assert (spec1, diags1, spec1.unparsed) == (spec2, diags2, spec2.unparsed)
    # the comment above a rule is part of what the cache is keyed on
    (rule,) = parse(text.replace("# first", "# second"), "s.mt")[0].statements
    assert rule.description == "second"
    # the same statement on another line gets its own line numbers
    moved, diags = parse("\n" + text, "s.mt")
    assert moved.statements[0].span.line == 3 and diags[0].span.line == 4
