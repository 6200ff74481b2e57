"""Evaluation semantics of every predicate and measure, on small hand-made tables.

Each case: a predicate, the rows, and which rows it must hold on. The README's
"Pinned semantics" are the contract; a test here fails when one of them breaks.
"""
import numpy as np
import pyarrow as pa
import pytest

import mteach

N = None  # a missing value


def _t(*values):
    return pa.table({"t": pa.array(list(values), pa.string())})


# (predicate, rows of column t, expected truth per row)
TEXT_CASES = [
    # -- regex: RE2 search, flags i m s, null is false, !~ is false on null too
    ('t ~ /abc/', ["xabcx", "ABC", N], [1, 0, 0]),
    ('t ~ /abc/i', ["xabcx", "ABC", N], [1, 1, 0]),
    ('t !~ /abc/', ["xabcx", "ABC", N, ""], [0, 1, 0, 1]),
    ('t !~ /abc/i', ["xabcx", "ABC", "zzz"], [0, 0, 1]),
    ('t ~ /^b/', ["a\nb", "b", "ab"], [0, 1, 0]),
    ('t ~ /^b/m', ["a\nb", "b", "ab"], [1, 1, 0]),
    ('t ~ /a.b/', ["a\nb", "axb", "ab"], [0, 1, 0]),
    ('t ~ /a.b/s', ["a\nb", "axb", "ab"], [1, 1, 0]),
    ('t ~ /A.B/ims', ["x\na\nb"], [1]),
    ('t ~ /a\\/b/', ["a/b", "ab"], [1, 0]),  # an escaped slash inside the regex
    ('t ~ /\\bcat\\b/', ["a cat", "concat"], [1, 0]),
    ('t ~ /\\p{Lu}{3}/', ["ÄÖÜ", "abc"], [1, 0]),
    # -- has: whole words, any case, Unicode letters and digits are word characters
    ('t has "cat"', ["cat", "concat", "Cat!", "a cat b", "cats", "cat_x", N], [1, 0, 1, 1, 0, 1, 0]),
    ('t has "T&C"', ["read the T&C now", "t&c", "tc", "XT&CX", "T&C"], [1, 1, 0, 0, 1]),
    ('t has "18+"', ["18+ only", "118+", "18", "age 18+"], [1, 0, 0, 1]),
    ('t has "10/10"', ["10/10", "110/10", "10/100", "rated 10/10!"], [1, 0, 0, 1]),
    ('t has "ü"', ["ü", "über", "grün ü", "Ü"], [1, 0, 1, 1]),
    ('t has "über"', ["Über alles", "xüber", "überx", "ÜBER"], [1, 0, 0, 1]),
    ('t has "9"', ["9 lives", "99", "a9", "(9)"], [1, 0, 0, 1]),
    ('t has "check out"', ["check   out", "check\tout", "checkout", "check-out", "Check Out!"], [1, 1, 0, 0, 1]),
    ('t has "a.b"', ["a.b", "axb"], [1, 0]),  # phrases are literal, not regexes
    ('t has any("a", "b")', ["a b", "a", "b", "c"], [1, 1, 1, 0]),
    ('t has all("a", "b")', ["a b", "a", "b", "b a"], [1, 0, 0, 1]),
    ('not t has "x"', ["x", "y", N], [0, 1, 1]),  # `not` inverts the false of a null
    # -- near: phrases start at most N words apart, either order
    ('t has "not" near any("good", "great") within 3 words',
     ["not very good", "not a b c good", "good not", "good a b c d not", "notgood", "not bad", N],
     [1, 0, 1, 0, 0, 0, 0]),
    ('t has "not" near "very good" within 2 words', ["not very good", "very good not", "not a b very good"], [1, 1, 0]),
    ('t has "x" near "z" within 1', ["x y z", "x z"], [0, 1]),
    ('t has "x" near "z" within 2', ["x y z", "x, z!"], [1, 1]),
    ('t has "a" near "b" within 1', ["a x\nb", "a b"], [0, 1]),
    ('t has "über" near "gut" within 1', ["über gut", "über x gut"], [1, 0]),
    # -- windows
    ('first(t, 3) has "abc"', ["abc def", "def abc", N], [1, 0, 0]),
    ('last(t, 3) has "abc"', ["abc def", "def abc", N], [0, 1, 0]),
    ('last(t, 3) ~ /abc/', ["abc def", "def abc", "ab"], [0, 1, 0]),
    ('first(last(t, 5), 2) ~ /^de$/', ["abcdefgh", "abc"], [1, 0]),
    ('len(first(t, 2)) == 2', ["abc", "a", ""], [1, 0, 0]),
    # -- measures
    ('len(t) > 3', ["abcd", "abc", N, "äöüß"], [1, 0, 0, 1]),  # code points, not bytes
    ('len(t) == 0', ["", N], [1, 0]),
    ('words(t) == 2', ["a b", " a  b ", "a\u00a0b", "a\u3000b", "a\nb", "", N], [1, 1, 1, 1, 1, 0, 0]),
    ('words(t) == 0', ["", "   ", N], [1, 1, 0]),
    ('words(t) == 1', ["T&C", "don't", "a-b"], [1, 1, 1]),
    ('upper_ratio(t) > 0.5', ["ABc", "abC", "123", "", N, "ÄÖü"], [1, 0, 0, 0, 0, 1]),
    ('upper_ratio(t) == 0', ["123", "", N, "abc"], [1, 1, 0, 1]),
    ('upper_ratio(t) == 1', ["A1!", "AB CD", "Ab"], [1, 1, 0]),  # digits and spaces are not letters
    ('digit_ratio(t) == 0.5', ["a1", "a 1", "ab12", "", N], [1, 1, 1, 0, 0]),  # spaces do not count
    ('digit_ratio(t) == 0', ["", "abc", N], [1, 1, 0]),
    ('count(t, /a/) >= 2', ["aa", "a", "a a", N], [1, 0, 1, 0]),
    ('count(t, /aa/) == 1', ["aaa"], [1]),  # non-overlapping
    ('count(t, "spam") == 2', ["spam spam", "spam", "spamspam spam", "spam, SPAM", N], [1, 0, 0, 1, 0]),
    ('count(t, any("a", "b")) == 3', ["a b a", "a b", "ab ab ab"], [1, 0, 0]),
    ('count(t, "x") per 10 words >= 5', ["x x y z", "x y", "x", "", N, "x y z w"], [1, 1, 1, 0, 0, 0]),
    ('count(t, "x") per 10 words == 0', ["", "y"], [1, 1]),  # empty text is rate 0
    ('count(t, /a/) > count(t, /b/)', ["aab", "abb", "ab", N], [1, 0, 0, 0]),
    ('number(t, /(\\d+)\\/10/) >= 7', ["rated 8/10", "6/10", "10/10", "no", N, "7.5/10"], [1, 0, 1, 0, 0, 0]),
    ('number(t, /\\d+/) > 5', ["abc 10", "3", "x"], [1, 0, 0]),  # no group: the whole match
    ('number(t, /\\d+,\\d+/) == 3.5', ["score 3,5", "3"], [1, 0]),  # decimal comma
    ('number(t, /-?\\d+/) < 0', ["-4 degrees", "4"], [1, 0]),
    ('number(t, /(?:rated )(\\d)/) == 8', ["rated 8", "8"], [1, 0]),  # non-capturing groups are skipped
    ('number(t, /[(](\\d)/) == 7', ["(7", "7"], [1, 0]),  # a ( inside a class is not a group
    ('number(t, /(?i)RATED (\\d)/) == 8', ["rated 8"], [1]),
    ('number(t, /(\\w+)/) == 1', ["abc"], [0]),  # not a number: missing, so false
    ('not number(t, /(\\d+)/) > 0', ["abc", "5"], [1, 0]),
    ('len(t) between 2 and 3', ["a", "ab", "abc", "abcd", N], [0, 1, 1, 0, 0]),
    ('words(t) between 1 and 1', ["a", "a b"], [1, 0]),
    # -- text fields as categories: exact and case-sensitive
    ('t == "x"', ["x", "X", N], [1, 0, 0]),
    ('t != "x"', ["x", "X", N], [0, 1, 0]),
    ('t in {"a", "b"}', ["a", "b", "A", N], [1, 1, 0, 0]),
    ('t is missing', ["", N], [0, 1]),
    ('t is not missing', ["", N], [1, 0]),
]


@pytest.mark.parametrize("pred,rows,expected", TEXT_CASES, ids=[c[0] for c in TEXT_CASES])
def test_text_predicates(fires, pred, rows, expected):
    assert fires(pred, _t(*rows)) == [bool(e) for e in expected]


@pytest.fixture
def mixed():
    return pa.table({
        "n": pa.array([1, 5, None, 10], pa.int64()),
        "f": pa.array([0.5, 5.0, None, float("nan")], pa.float64()),
        "c": pa.array(["x", "y", None, "z"]),
        "d": pa.array(["x", "y", None, "z"]).dictionary_encode(),
        "b": pa.array([True, False, None, True]),
        "t": pa.array(["a b", "b", None, "a"]),
    })


MIXED_CASES = [
    ('n > 4', [0, 1, 0, 1]),
    ('n >= 5', [0, 1, 0, 1]),
    ('n < 5', [1, 0, 0, 0]),
    ('n <= 5', [1, 1, 0, 0]),
    ('n == 5', [0, 1, 0, 0]),
    ('5 < n', [0, 0, 0, 1]),
    ('n between 5 and 10', [0, 1, 0, 1]),
    ('n between 6 and 4', [0, 0, 0, 0]),
    ('n in {1, 10}', [1, 0, 0, 1]),
    ('n is missing', [0, 0, 1, 0]),
    ('n is not missing', [1, 1, 0, 1]),
    ('not n > 4', [1, 0, 1, 0]),
    ('f > 1', [0, 1, 0, 0]),
    ('f == f', [1, 1, 0, 0]),
    ('n > f', [1, 0, 0, 0]),  # two number fields
    ('words(t) < n', [0, 1, 0, 1]),  # a measure against a field
    ('c == "x"', [1, 0, 0, 0]),
    ('c != "x"', [0, 1, 0, 1]),
    ('c in {"x", "z"}', [1, 0, 0, 1]),
    ('d == "y"', [0, 1, 0, 0]),  # dictionary-encoded text
    ('d in {"x", "z"}', [1, 0, 0, 1]),
    ('d has "z"', [0, 0, 0, 1]),
    ('b', [1, 0, 0, 1]),
    ('not b', [0, 1, 1, 0]),
    ('b and c == "x"', [1, 0, 0, 0]),
    ('b or c == "y"', [1, 1, 0, 1]),
    ('n > 4 or c == "x"', [1, 1, 0, 1]),
    ('(n > 4 or c == "x") and b', [1, 0, 0, 1]),
    ('n > 4 or c == "x" and b', [1, 1, 0, 1]),  # and binds tighter than or
    ('not (n > 4 or c == "x")', [0, 0, 1, 0]),
    ('not not b', [1, 0, 0, 1]),
]


@pytest.mark.parametrize("pred,expected", MIXED_CASES, ids=[c[0] for c in MIXED_CASES])
def test_number_category_boolean_predicates(fires, mixed, pred, expected):
    assert fires(pred, mixed) == [bool(e) for e in expected]


@pytest.mark.parametrize("pred,expected", [('n != 5', [1, 0, 0, 1]), ('len(t) != 1', [1, 0, 0, 0])])
def test_not_equal_on_numbers(fires, mixed, pred, expected):
    assert fires(pred, mixed) == [bool(e) for e in expected]


def test_define_kinds_regex_phrases_predicate_alias(fires):
    defines = (
        'define url = /https?:\\/\\//i\n'
        'define promo = any("check out", "subscribe")\n'
        'define one = "free"\n'
        'define shouty = upper_ratio(t) > 0.5\n'
        'define link = url\n'                     # alias of a regex
        'define spammy = shouty or t has promo\n'  # a predicate using defines
        'define spammy2 = spammy\n'                # alias of a predicate
    )
    table = _t("HTTP://x", "please Subscribe", "FREE STUFF", "calm words", None)
    assert fires("t ~ link", table, defines) == [True, False, False, False, False]
    assert fires("t has promo", table, defines) == [False, True, False, False, False]
    assert fires("t has one", table, defines) == [False, False, True, False, False]
    assert fires("spammy2", table, defines) == [True, True, True, False, False]
    assert fires("count(t, promo) == 1", table, defines) == [False, True, False, False, False]
    scored = _t("rated 8/10", "rated 3/10")
    assert fires("number(t, score) >= 7", scored, 'define score = /(\\d+)\\/10/\n') == [True, False]


def test_lexicon_file(fires):
    lex = "# a comment line\nmy channel\n\n  my page  \nmy channel\n"
    table = _t("see my channel", "my  PAGE!", "my", "channels")
    files = {"lexicons/own.txt": lex}
    assert fires('t has lexicon("lexicons/own.txt")', table, files=files) == [True, True, False, False]
    assert fires("t has own", table, 'define own = lexicon("lexicons/own.txt")\n', files) == [True, True, False, False]
    assert fires("count(t, own) == 1", table, 'define own = lexicon("lexicons/own.txt")\n', files) == [True, True, False, False]


def test_unless_is_and_not(fires):
    table = _t("free money", "free", "money", None)
    assert fires('t has "free" unless t has "money"', table) == [False, True, False, False]
    assert fires('t has "free" or t has "money" unless t has "money"', table) == [False, True, False, False]


def test_missing_semantics_every_atomic_test_is_false_on_null(fires):
    """A test on a null is false, whatever the test; `is missing` is the only way to see nulls."""
    table = pa.table({"t": pa.array([None], pa.string()), "n": pa.array([None], pa.float64())})
    for pred in ['t ~ /.*/', 't !~ /x/', 't has "x"', 'len(t) >= 0', 'words(t) == 0', 'upper_ratio(t) == 0',
                 'digit_ratio(t) == 0', 'count(t, /x/) == 0', 'count(t, "x") per 10 words == 0',
                 't == "x"', 't != "x"', 't in {"x"}', 'n >= 0', 'n <= 0', 'n between -1 and 1',
                 'n in {0}', 'first(t, 3) ~ /.*/', 'number(t, /\\d/) > 0', 'len(t) < 1000']:
        assert fires(pred, table) == [False], pred
    assert fires("t is missing and n is missing", table) == [True]


def test_votes_are_label_indices_and_minus_one(tmp_path):
    table = _t("buy now", "hello", "buy hello")
    text = ('concept c "x"\nlabels A, B, C\nfield t = "t"\n'
            'rule r1 : t has "buy" => C\nrule r2 : t has "hello" => B\nrule r3 : t has "zzz" => A\n')
    spec = mteach.load_spec(tmp_path / "s.mt", schema=table.schema, text=text)
    votes = mteach.apply_table(spec, table)
    assert votes.dtype == np.int8
    assert votes.tolist() == [[2, -1, -1], [-1, 1, -1], [2, 1, -1]]


def test_large_string_and_record_batch_inputs(tmp_path):
    table = pa.table({"t": pa.array(["buy", None, "x"], pa.large_string())})
    text = 'concept c "x"\nlabels A, B\nfield t = "t"\nrule r : t has "buy" => A\n'
    spec = mteach.load_spec(tmp_path / "s.mt", schema=table.schema, text=text)
    assert mteach.apply_table(spec, table)[:, 0].tolist() == [0, -1, -1]
    assert mteach.apply_table(spec, table.to_batches()[0])[:, 0].tolist() == [0, -1, -1]


def test_shared_subexpressions_give_same_answers_as_separate_rules(tmp_path):
    """Two rules with the same test (memoized once) vote identically to that test alone."""
    table = _t("free money now", "no", None, "FREE")
    body = 'concept c "x"\nlabels A, B\nfield t = "t"\n'
    both = mteach.load_spec(tmp_path / "s.mt", schema=table.schema,
                            text=body + 'rule r1 : t has "free" => A\nrule r2 : t has "free" and len(t) > 3 => B\n')
    votes = mteach.apply_table(both, table)
    assert votes.tolist() == [[0, 1], [-1, -1], [-1, -1], [0, 1]]


def test_near_phrase_with_underscore(fires):
    assert fires('t has "foo_bar" near "x" within 3 words', _t("foo_bar x")) == [True]


def test_near_counts_a_phrase_with_punctuation_as_one_word(fires):
    assert fires('t has "T&C" near "apply" within 1 words', _t("T&C apply here")) == [True]


def test_a_phrase_list_inside_a_regex(fires):
    defines = 'define promo = any("check out", "T&C", "a.b")\ndefine url = /http/\n'
    table = _t("Check   out today", "check out tomorrow", "the t&c now", "axb now", "a.b now", "{promo} now", None)
    # {promo} stands for any of its phrases, escaped (a.b is literal), spaces matching any whitespace
    assert fires("t ~ /{promo}\\s+(now|today)/i", table, defines) == [True, False, True, False, True, False, False]
    # \{ keeps a literal brace
    assert fires("t ~ /\\{promo\\}/", table, defines) == [False, False, False, False, False, True, False]
