from pathlib import Path

import numpy as np
import pytest

from mteach.compiler import evaluator
from mteach.compiler.checker import load_spec
from mteach.engine import incremental
from mteach.engine.incremental import IncrementalVotes, predicate_hash
from mteach.engine.io import open_data

FIXTURES = Path(__file__).parents[1] / "tui" / "fixtures"


@pytest.fixture
def data():
    source = open_data(FIXTURES / "comments.csv")
    return source.schema, source.read_all()


def spec_of(text, schema):
    return load_spec(FIXTURES / "mini.mt", schema, text=text)


@pytest.fixture
def counting(monkeypatch):
    """Count rule evaluations (the incremental engine's one call per batch and rule list)."""
    seen = []
    real = incremental.rule_masks_with

    def counted(evaluator, rules):
        seen.extend(r.name for r in rules)
        return real(evaluator, rules)
    monkeypatch.setattr(incremental, "rule_masks_with", counted)
    return seen


def test_same_votes_as_a_full_apply(data):
    schema, table = data
    spec = spec_of((FIXTURES / "mini.mt").read_text(), schema)
    inc = IncrementalVotes(table, batch_rows=7)  # several batches
    assert np.array_equal(inc.votes(spec), evaluator.vote_matrix(spec, table))


def test_one_rule_edit_reevaluates_only_that_rule(data, counting):
    schema, table = data
    text = (FIXTURES / "mini.mt").read_text()
    inc = IncrementalVotes(table)
    inc.votes(spec_of(text, schema))
    assert sorted(counting) == ["link", "praise", "short", "subscribe"]  # one batch: once each
    counting.clear()
    edited = text.replace('any("subscribe", "sub")', 'any("subscribe", "sub", "channel")')
    spec = spec_of(edited, schema)
    votes = inc.votes(spec)
    assert counting == ["subscribe"] and inc.last_evaluated == ["subscribe"]
    assert np.array_equal(votes, evaluator.vote_matrix(spec, table))
    assert inc.evaluations == 5


def test_rename_move_relabel_and_comments_cost_nothing(data, counting):
    schema, table = data
    text = (FIXTURES / "mini.mt").read_text()
    inc = IncrementalVotes(table)
    inc.votes(spec_of(text, schema))
    counting.clear()
    edited = ("# a new comment\n\n" + text.replace("rule link ", "rule has_link ")
              .replace("=> HAM\n# Praise", "=> SPAM\n# Praise"))
    spec = spec_of(edited, schema)
    votes = inc.votes(spec)
    assert counting == []
    assert np.array_equal(votes, evaluator.vote_matrix(spec, table))  # label change applied without re-evaluating


def test_undo_hits_the_cache_and_a_define_edit_invalidates_its_users(data, counting):
    schema, table = data
    text = (FIXTURES / "mini.mt").read_text()
    inc = IncrementalVotes(table)
    inc.votes(spec_of(text, schema))
    inc.votes(spec_of(text.replace('"sub")', '"subs")'), schema))
    counting.clear()
    inc.votes(spec_of(text, schema))  # back to the original
    assert counting == []
    inc.votes(spec_of(text.replace(r"\.com\b", r"\.org\b"), schema))
    assert sorted(counting) == ["link", "short"]  # both read the `link` define


def test_predicate_hash_is_position_free(data):
    schema, _ = data
    a = spec_of('concept c\nlabels A, B\nfield text = "CONTENT"\nrule r : text has "x" => A\n', schema)
    b = spec_of('concept c\nlabels A, B\n\n\nfield text = "CONTENT"\n# c\nrule q   :   text has "x"   => B\n', schema)
    assert predicate_hash(a.rules[0]) == predicate_hash(b.rules[0])
    c = spec_of('concept c\nlabels A, B\nfield text = "CONTENT"\nrule r : text has "y" => A\n', schema)
    assert predicate_hash(a.rules[0]) != predicate_hash(c.rules[0])


def test_sub_expression_memo_survives_an_edit_but_not_a_field_change(data):
    schema, table = data
    text = (FIXTURES / "mini.mt").read_text()
    inc = IncrementalVotes(table)
    inc.votes(spec_of(text, schema))
    ev = inc._evaluators[0]
    tokens = ev.memo[("tokens", ("Ref", "text"))]  # the text's token index, built once
    spec = spec_of(text.replace('"sub")', '"sub", "channel")'), schema)
    assert np.array_equal(inc.votes(spec), evaluator.vote_matrix(spec, table))
    assert inc._evaluators[0] is ev and ev.memo[("tokens", ("Ref", "text"))] is tokens
    # the new phrase is found in a pass over that index, of that phrase alone
    latest = ev.memo[("latest phrase matches", ("Ref", "text"), True)]
    assert set(latest.parts[-1].plan.position) == {"channel"}
    other = spec_of(text.replace('field text = "CONTENT"', 'field text = "CONTENT"\nfield who = "COMMENT_ID"'), schema)
    inc.votes(other)  # a different field mapping: fresh memos
    assert inc._evaluators[0] is not ev


def test_a_run_of_phrase_edits_matches_only_new_phrases_and_keeps_votes_exact(data):
    """Adding, removing, re-adding phrases (one edit after another, past the union's part
    limit): every refresh equals a full apply."""
    schema, table = data
    text = (FIXTURES / "mini.mt").read_text()
    inc = IncrementalVotes(table, batch_rows=7)
    inc.votes(spec_of(text, schema))
    extra = ["channel", "my channel", "check", "video", "love", "please sub", "views", "song", "out", "new",
             "free", "my"]
    for k in range(len(extra) + 3):
        added = ", ".join(f'"{w}"' for w in extra[max(0, k - 4):k])  # a sliding window: some in, some out
        edited = text.replace('"sub")', f'"sub"{", " + added if added else ""})')
        spec = spec_of(edited.replace('any("love", "great")', 'all("love", "great")') if k % 3 else edited, schema)
        assert np.array_equal(inc.votes(spec), evaluator.vote_matrix(spec, table)), edited
    parts = [ev.memo[("latest phrase matches", ("Ref", "text"), True)].parts for ev in inc._evaluators.values()]
    assert all(1 <= len(p) <= evaluator.PhraseMatchesUnion.MAX_PARTS for p in parts)
