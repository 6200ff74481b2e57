"""The checker: names, labels, types against the data schema, RE2 validity, duplicate
names, lexicon and `use` files (which cannot escape the spec's folder) — and every
problem reported at once, each with a place and, where a near name exists, a suggestion."""
import pyarrow as pa
import pytest

import mteach
from mteach.errors import SpecError

HEAD = 'concept c "x"\nlabels SPAM, HAM\nfield text = "CONTENT"\n'
SCHEMA = pa.schema([("CONTENT", pa.string()), ("CLASS", pa.int64()), ("OK", pa.bool_()),
                    ("WHEN", pa.timestamp("s")), ("CAT", pa.dictionary(pa.int32(), pa.string()))])


def diags(spec_file, text, schema=None, files=None):
    path = spec_file(text, files=files)
    with pytest.raises(SpecError) as info:
        mteach.load_spec(path, schema=schema)
    return info.value


def messages(err):
    return [d.message for d in err.errors]


def test_clean_spec_loads(spec_file):
    path = spec_file(HEAD + 'field n = "CLASS"\nrule a : text has "buy" => SPAM\nrule b : n > 1 => HAM confidence 0.9\n'
                            'hint more "buy" => SPAM\nexample "buy" => SPAM\n')
    spec = mteach.load_spec(path, schema=SCHEMA)
    assert spec.labels == ("SPAM", "HAM")
    assert spec.rule_names == ["a", "b"]
    assert [r.label_index for r in spec.rules] == [0, 1]
    assert spec.field_kinds == {"text": "text", "n": "number"}
    assert spec.rules[1].rule.confidence == 0.9
    assert len(spec.hints) == 1 and len(spec.examples) == 1
    assert spec.examples[0].inputs == (("text", "buy"),)  # a bare string goes to the first text field
    assert len(spec.content_hash) == 64


@pytest.mark.parametrize("body,line,col,message", [
    ('rule r : text has "x" => SPMA\n', 4, 26, "unknown label SPMA — did you mean SPAM?"),
    ('rule r : txt has "x" => SPAM\n', 4, 10, "unknown field txt — did you mean text?"),
    ('define promo = "x"\nrule r : text has prom => SPAM\n', 5, 19, "unknown define prom — did you mean promo?"),
    ('rule r : text has "x" and flag => SPAM\n', 4, 27, "unknown field or define flag"),
    ('define url = /a/\nrule r : text has url => SPAM\n', 5, 19, "url is a regex; `has` takes phrases"),
    ('define p = "a"\nrule r : text ~ p => SPAM\n', 5, 17, "p is a phrase list; a regex goes here"),
    ('define p = "a"\nrule r : p ~ /x/ => SPAM\n', 5, 10, "p is a define, not a field"),
    ('define p = "a"\nrule r : p => SPAM\n', 5, 10, "p is a phrase list, not a test"),
    ('rule r : text => SPAM\n', 4, 10, "text is a text field, not a yes/no test"),
    ('rule r : text ~ /(?=x)/ => SPAM\n', 4, 17, "invalid regex"),
    ('rule r : text ~ /a(?!b)/ => SPAM\n', 4, 17, "invalid regex"),
    ('rule r : text ~ /(a)\\1/ => SPAM\n', 4, 17, "invalid regex"),
    ('rule r : text ~ /[a/ => SPAM\n', 4, 17, "invalid regex"),
    ('define bad = /(?<=a)b/\n', 4, 14, "invalid regex"),
    ('rule r : count(text, /(?=a)/) > 1 => SPAM\n', 4, 22, "invalid regex"),
    ('rule r : text has "" => SPAM\n', 4, 19, "a phrase cannot be empty"),
    ('rule r : text has "x" => SPAM\nrule r : text has "y" => HAM\n', 5, 1, "rule r is defined twice"),
    ('define a = "x"\ndefine a = "y"\n', 5, 1, "a is defined twice"),
    ('define text = "x"\n', 4, 1, "text is already a field name"),
    ('field text = "OTHER"\n', 4, 1, "field text is defined twice"),
    ('define a = b\ndefine b = a\n', 5, 12, "defines refer to each other in a circle: a -> b -> a"),
    ('concept d "again"\n', 4, 1, "one concept per file"),
    ('labels X, Y\n', 4, 1, "labels are given once"),
    ('hint more "x" => SAPM\n', 4, 18, "unknown label SAPM — did you mean SPAM?"),
    ('example "x" => HAMM\n', 4, 16, "unknown label HAMM — did you mean HAM?"),
    ('example {txt: "x"} => HAM\n', 4, 1, "unknown field txt — did you mean text?"),
    ('rule r : text between 1 and 2 => HAM\n', 4, 10, "between compares numbers"),
    ('rule r : text > 3 => HAM\n', 4, 10, "a text field cannot be compared as a number"),
    ('rule r : len(text) < "3" => HAM\n', 4, 10, "`<` compares numbers"),
    ('rule r : len(text) == "3" => HAM\n', 4, 10, "compares a number with text"),
    ('rule r : text in {1, 2} => HAM\n', 4, 10, "text holds text values"),
    ('rule r : nope in {"a"} => HAM\n', 4, 10, "unknown field nope"),
    ('rule r : nope is missing => HAM\n', 4, 10, "unknown field nope"),
    ('rule r : words(nope) > 1 => HAM\n', 4, 16, "unknown field nope"),
])
def test_each_problem_has_place_and_words(spec_file, body, line, col, message):
    err = diags(spec_file, HEAD + body, SCHEMA)
    hit = [d for d in err.errors if message in d.message]
    assert hit, messages(err)
    assert (hit[0].span.line, hit[0].span.column) == (line, col), hit[0].format(err.sources)


@pytest.mark.parametrize("body,message", [
    ('field n = "CLASS"\nrule r : n has "x" => SPAM\n', "n is a number field; this needs text"),
    ('field n = "CLASS"\nrule r : n in {"a"} => SPAM\n', "n holds numbers; write the values without quotes"),
    ('field n = "CLASS"\nrule r : n == "a" => SPAM\n', "compares a number with text"),
    ('field ok = "OK"\nrule r : ok == 1 => SPAM\n', "ok is a yes/no field"),
    ('field ok = "OK"\nrule r : ok > 0 => SPAM\n', "ok is a yes/no field"),
    ('field ok = "OK"\nrule r : ok in {1} => SPAM\n', "ok is a yes/no field"),
    ('field ok = "OK"\nrule r : ok between 0 and 1 => SPAM\n', "ok is a yes/no field"),
    ('field ok = "OK"\nrule r : ok ~ /x/ => SPAM\n', "this needs text"),
    ('field w = "WHEN"\nrule r : w > 3 => SPAM\n', "only `is missing` can test it"),
    ('field w = "WHEN"\nrule r : w == "x" => SPAM\n', "only `is missing` can test it"),
    ('field w = "WHEN"\nrule r : w in {"x"} => SPAM\n', "only `is missing` can test it"),
    ('field w = "WHEN"\nrule r : w => SPAM\n', "not a yes/no test"),
    ('field n = "CLASS"\nrule r : n => SPAM\n', "n is a number field, not a yes/no test"),
    ('field n = "CLASS"\nexample {n: "three"} => SPAM\n', "holds numbers"),
    ('example {text: 3} => SPAM\n', "holds text"),
    ('field ok = "OK"\nexample {ok: "maybe"} => SPAM\n', "yes/no field"),
])
def test_types_against_the_data_schema(spec_file, body, message):
    err = diags(spec_file, HEAD + body, SCHEMA)
    assert any(message in m for m in messages(err)), messages(err)


def test_unknown_column_did_you_mean(spec_file):
    err = diags(spec_file, 'concept c "x"\nlabels A, B\nfield text = "CONTNET"\n', SCHEMA)
    (d,) = err.errors
    assert 'column "CONTNET" is not in the data — did you mean CONTENT?' in d.message
    assert (d.span.line, d.span.column) == (3, 1)
    assert "CONTENT" in d.hint


def test_dictionary_text_column_is_text(spec_file):
    path = spec_file(HEAD + 'field cat = "CAT"\nrule r : cat in {"a"} or cat has "b" => SPAM\n')
    assert mteach.load_spec(path, SCHEMA).field_kinds["cat"] == "text"


def test_every_problem_at_once(spec_file):
    text = (HEAD +
            'rule a : txt has "x" => SPAM\n'        # unknown field
            'rule b : text ~ /(?=x)/ => SPAM\n'     # lookahead
            'rule c : text has "x" => SPMA\n'       # unknown label
            'rule d : text has => SPAM\n'           # syntax error
            'rule e : text has lexicon("no.txt") => HAM\n'  # missing lexicon
            'rule a : text has "y" => HAM\n')       # duplicate
    err = diags(spec_file, text)
    lines = sorted(d.span.line for d in err.errors)
    assert lines == [4, 5, 6, 7, 8, 9], err.format()
    out = err.format()
    assert out.count("error:") == 6
    assert "spec.mt:5:17: error: invalid regex" in out


def test_format_shows_line_and_caret(spec_file):
    err = diags(spec_file, HEAD + 'rule r : text has "x" => SPMA\n')
    text = err.format()
    first, src, caret, hint = text.splitlines()[:4]
    assert first.endswith("spec.mt:4:26: error: unknown label SPMA — did you mean SPAM?")
    assert src == '  rule r : text has "x" => SPMA'
    assert caret == "  " + " " * 25 + "^~~~"
    assert hint == "  hint: labels: SPAM, HAM"


def test_missing_parts_of_a_spec(spec_file):
    err = diags(spec_file, 'field text = "CONTENT"\nrule r : text has "x" => A\n')
    assert {"the spec has no concept line", "the spec has no labels line"} <= set(messages(err))
    err = diags(spec_file, 'concept c\nlabels A\n')
    assert "a concept needs two or more labels" in messages(err)
    err = diags(spec_file, 'concept c\nlabels A, A, abstain\n')
    assert "label A is listed twice" in messages(err) and "abstain is implicit and is not a label" in messages(err)


def test_no_rules_is_a_warning_not_an_error(spec_file):
    spec = mteach.load_spec(spec_file('concept c\nlabels A, B\n'))
    assert spec.rules == [] and [w.message for w in spec.warnings] == ["the spec has no rules yet"]


# -- lexicons and use ------------------------------------------------------------------------
def test_lexicon_files(spec_file):
    path = spec_file(HEAD + 'define own = lexicon("lex/own.txt")\nrule r : text has own => SPAM\n',
                     files={"lex/own.txt": "# mine\nmy channel\n\nmy page\n"})
    spec = mteach.load_spec(path)
    assert spec.rules[0].predicate.phrases.phrases == ("my channel", "my page")
    assert "lex/own.txt" in spec.files


@pytest.mark.parametrize("files,message", [
    ({}, "lexicon file not found"),
    ({"lex/own.txt": "# only a comment\n\n"}, "has no phrases"),
    ({"lex/own.txt": b"caf\xe9\n"}, "cannot read lexicon"),
])
def test_lexicon_problems(spec_file, files, message):
    err = diags(spec_file, HEAD + 'rule r : text has lexicon("lex/own.txt") => SPAM\n', files=files)
    (d,) = err.errors
    assert message in d.message and (d.span.line, d.span.column) == (4, 19)


def test_lexicon_and_use_cannot_escape_the_spec_folder(spec_file, tmp_path):
    (tmp_path.parent / "outside.txt").write_text("secret\n")
    (tmp_path.parent / "outside.mt").write_text('define x = "secret"\n')
    text = (HEAD + 'use "../outside.mt"\nuse "/etc/passwd"\n'
            'rule r : text has lexicon("../outside.txt") => SPAM\n'
            'rule s : text has lexicon("/etc/hostname") => SPAM\n')
    err = diags(spec_file, text)
    out = messages(err)
    assert sum("is outside the spec's folder" in m for m in out) == 4, out


def test_use_brings_in_defines(spec_file):
    files = {"shared/pii.mt": 'use "more.mt"\ndefine email = /[a-z]+@[a-z]+/\n',
             "shared/more.mt": 'define phone = any("call me")\n'}
    path = spec_file(HEAD + 'use "shared/pii.mt"\nrule r : text ~ email or text has phone => SPAM\n', files=files)
    spec = mteach.load_spec(path)
    assert set(spec.defines) == {"email", "phone"}
    table = pa.table({"CONTENT": ["mail a@b", "call me", "hi"]})
    assert mteach.apply_table(spec, table)[:, 0].tolist() == [0, 0, -1]
    assert sorted(spec.files) == ["shared/more.mt", "shared/pii.mt", "spec.mt"]


def test_used_file_problems(spec_file):
    files = {"lib.mt": 'rule x : text has "a" => SPAM\ndefine d = /(?=a)/\n', "cycle.mt": 'use "cycle.mt"\n'}
    err = diags(spec_file, HEAD + 'use "lib.mt"\nuse "cycle.mt"\nuse "nope.mt"\n', files=files)
    out = err.format()
    assert "lib.mt:1:1: error: a used file holds only define and use lines" in out
    assert "lib.mt:2:12: error: invalid regex" in out
    assert "spec file not found" in out


def test_spec_that_is_not_utf8(spec_file):
    path = spec_file(b'concept c "caf\xe9"\nlabels A, B\n')
    with pytest.raises(SpecError) as info:
        mteach.load_spec(path)
    (d,) = info.value.diagnostics
    assert "is not UTF-8 text" in d.message and (d.span.line, d.span.column) == (1, 15)


def test_missing_spec_file(tmp_path):
    # a missing main file is a usage error (exit 2), not a problem inside a spec
    with pytest.raises(mteach.DataError, match="nope.mt: no such spec file"):
        mteach.load_spec(tmp_path / "nope.mt")


def test_text_overrides_the_file_but_paths_resolve_from_it(spec_file):
    path = spec_file("garbage garbage", files={"l.txt": "buy\n"})
    spec = mteach.load_spec(path, text=HEAD + 'rule r : text has lexicon("l.txt") => SPAM\n')
    assert spec.rule_names == ["r"]


def test_content_hash_covers_lexicons(spec_file, tmp_path):
    path = spec_file(HEAD + 'rule r : text has lexicon("l.txt") => SPAM\n', files={"l.txt": "buy\n"})
    h1 = mteach.load_spec(path).content_hash
    (tmp_path / "l.txt").write_text("sell\n")
    assert mteach.load_spec(path).content_hash != h1


def test_a_spec_cannot_run_code(spec_file, tmp_path):
    """No construct runs code: names that would in Python are unknown names here."""
    marker = tmp_path / "pwned"
    text = (HEAD + 'rule a : __import__ => SPAM\n'
            'rule b : text has __builtins__ => SPAM\n'
            f'rule c : text has lexicon("{marker}") => SPAM\n'
            'rule d : eval("open(1)") > 1 => SPAM\n')
    err = diags(spec_file, text)
    out = messages(err)
    assert any("unknown field or define __import__" in m for m in out)
    assert any("unknown define __builtins__" in m for m in out)
    assert any("unknown function 'eval'" in m for m in out)
    assert not marker.exists()


def test_library_file_of_defines_only(spec_file):
    spec = mteach.load_spec(spec_file('define a = "x"\n'))
    assert spec.rules == [] and "a" in spec.defines


def test_regex_interpolation_needs_a_phrase_list(spec_file):
    err = diags(spec_file, HEAD + 'define url = /http/\nrule r : text ~ /{url}x/ => SPAM\n')
    assert messages(err) == ["{url} in a regex needs a phrase list; url is not one"]
    path = spec_file(HEAD + 'define promo = any("x")\nrule r : text ~ /{promoo}/ => SPAM\n')
    spec = mteach.load_spec(path)
    assert [w.message for w in spec.warnings] == [
        "{promoo} in this regex is not a define, so it matches literally — did you mean promo?"]
