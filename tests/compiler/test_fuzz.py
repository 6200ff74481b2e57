"""The parser and checker never crash on garbage: mutated specs give SpecError (with
diagnostics that point at a real line and column) or a Spec — no other exception; and a
spec that checks also applies. The inputs that found issue 9's crashes (deep nesting,
huge numbers, many phrases, capture groups, mixed example types, Unicode case pairs,
glued keywords) come from ``fuzz_inputs.py``, shared with ``bench/fuzz_campaign.py``
(the long campaign, outside the normal test run)."""
import random
import re
import sys
import warnings
from pathlib import Path

from hypothesis import HealthCheck, given, settings, strategies as st

import mteach

sys.path.insert(0, str(Path(__file__).parent))  # the tests run with --import-mode=importlib
from fuzz_inputs import (EXTRA, PREDICATE_MAKERS, SCHEMA, SOURCE, SPEC, TABLE, TOKENS, generated_spec, mixed_example,
                         mutate)
from mteach.errors import SpecError  # noqa: E402

edit = st.tuples(
    st.sampled_from(["insert", "delete", "replace", "char"]),
    st.floats(0, 1),
    st.sampled_from(TOKENS + EXTRA),
    st.characters(codec="utf-8", exclude_categories=["Cs"]) | st.characters(),  # some lone surrogates too
    st.integers(1, 12),
)


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


def check_and_apply(text, schema):
    """check_outcome, then what `mteach check` and `apply` do with a spec that checks."""
    check_outcome(text, schema)
    try:
        spec = mteach.load_spec(SPEC, schema=schema, text=text)
    except SpecError:
        return
    from mteach.engine.examples import run_examples
    run_examples(spec)
    if schema is not None:
        votes = mteach.apply_table(spec, TABLE)
        assert votes.shape == (TABLE.num_rows, len(spec.rules))


@settings(max_examples=120, derandomize=True, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**32 - 1), st.booleans())
def test_generated_specs_from_the_crash_classes(seed, with_schema):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        check_and_apply(generated_spec(random.Random(seed)), SCHEMA if with_schema else None)


@settings(max_examples=40, derandomize=True, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(PREDICATE_MAKERS), st.integers(0, 2**32 - 1), st.floats(0, 1))
def test_crash_classes_spliced_into_the_bundled_spec(maker, seed, where):
    made = maker(random.Random(seed))
    pred = made[0] if isinstance(made, tuple) else made
    text = mutate([("insert", where, f"\nrule fz : {pred} => SPAM\n", "", 1),
                   ("insert", 1 - where, mixed_example(random.Random(seed)), "", 1)])
    check_and_apply(text, SCHEMA)
