"""Suggestions: every proposed line passes the checker and covers exactly the rows it claims;
precision comes from the evidence it names; nothing the spec has or the expert rejected
comes back; the empty spec and data without text still get suggestions."""
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

import mteach
from mteach.engine.gold import gold_from_column
from mteach.engine.suggest import SuggestData, guide, precision_interval, suggest
from mteach.errors import DataError

REPO = Path(__file__).resolve().parents[2]
HEADER = 'concept spam "spam"\nlabels SPAM, HAM\nfield text = "CONTENT"\n'


@pytest.fixture(scope="module")
def youtube():
    table = pacsv.read_csv(REPO / "data/youtube/train.csv")
    gold = gold_from_column(table, "CLASS", {"1": "SPAM", "0": "HAM"}, ["SPAM", "HAM"], "train")
    return table, gold, SuggestData(table, table.column("COMMENT_ID"))


def spec_of(tmp_path, table, rules=""):
    return mteach.load_spec(tmp_path / "s.mt", table.schema, text=HEADER + rules)


def test_each_rule_passes_check_and_covers_exactly_what_it_claims(tmp_path, youtube):
    table, gold, data = youtube
    spec = spec_of(tmp_path, table, 'rule link : text ~ /http/ => SPAM\nrule song : text has "song" => HAM\n')
    votes = mteach.apply_table(spec, table)
    covered = (votes != -1).any(axis=1)
    rules = suggest(spec, data, votes, n=8, kinds=("rule",))
    assert len(rules) == 8
    for s in rules:
        grown = mteach.load_spec(tmp_path / "s.mt", table.schema,
                                 text=HEADER + 'rule link : text ~ /http/ => SPAM\n'
                                      'rule song : text has "song" => HAM\n' + s.spec_line + "\n")
        fires = mteach.apply_table(grown, table)[:, -1] != -1
        assert s.rows == fires.sum() and s.new_rows == (fires & ~covered).sum() > 0
        assert s.coverage_after == pytest.approx((covered | fires).mean())
        assert s.precision_from == "label model" and 0 <= s.precision_interval[0] <= s.estimated_precision
        assert s.estimated_precision <= s.precision_interval[1] <= 1
        assert set(s.example_ids) <= set(np.asarray(data.ids)[fires & ~covered].tolist())
    names = [s.spec_line.split()[1] for s in rules]
    assert len(set(names)) == len(names) and not set(names) & {"link", "song"}


def test_precision_from_gold_brackets_the_rule_true_precision(tmp_path, youtube):
    table, gold, data = youtube
    spec = spec_of(tmp_path, table, 'rule link : text ~ /http/ => SPAM\nrule song : text has "song" => HAM\n')
    votes = mteach.apply_table(spec, table)
    rules = suggest(spec, data, votes, gold=gold, n=5, kinds=("rule",))
    for s in rules:
        assert s.precision_from == "gold"
        grown = mteach.load_spec(tmp_path / "s.mt", table.schema, text=HEADER + s.spec_line + "\n")
        fires = mteach.apply_table(grown, table)[:, 0] != -1
        true = (gold[fires] == ["SPAM", "HAM"].index(s.label)).mean()
        lo, hi = s.precision_interval
        assert lo <= true <= hi and abs(s.estimated_precision - true) < 0.05


def test_never_proposes_a_rule_the_spec_has_or_the_expert_rejected(tmp_path, youtube):
    table, gold, data = youtube
    spec = spec_of(tmp_path, table, 'rule link : text ~ /http/ => SPAM\nrule song : text has "song" => HAM\n')
    votes = mteach.apply_table(spec, table)
    first = suggest(spec, data, votes, n=5, kinds=("rule",))
    rejected = {s.title for s in first[:3]}
    again = suggest(spec, data, votes, n=5, kinds=("rule",), exclude=rejected)
    assert not rejected & {s.title for s in again}
    assert again[0].title == first[3].title
    # a phrase rule the spec already has is not proposed again, even where it would add rows
    has = spec_of(tmp_path, table, 'rule mine : text has "subscribe" => SPAM\n')
    sub = [s for s in suggest(has, data, np.full((table.num_rows, 1), -1, np.int8), gold=gold, n=50,
                              kinds=("rule",)) if s.title == 'text has "subscribe" => SPAM']
    assert sub == []


def test_the_empty_spec_gets_suggestions_from_the_data_structure(tmp_path, youtube):
    table, _, data = youtube
    spec = spec_of(tmp_path, table)
    votes = np.full((table.num_rows, 0), -1, np.int8)
    found = suggest(spec, data, votes, n=4)
    rules = [s for s in found if s.kind == "rule"]
    groups = [s for s in found if s.kind == "group"]
    assert rules and groups
    assert all(s.precision_from == "data structure" and s.estimated_precision is None for s in rules)
    assert {s.label for s in rules} == {"SPAM", "HAM"}
    assert sum(g.rows for g in groups) <= table.num_rows and all(len(g.example_ids) == 3 for g in groups)
    assert any("subscribe" in g.words or "channel" in g.words or "com" in g.words for g in groups)
    # deterministic for a seed
    assert [s.to_dict() for s in suggest(spec, data, votes, n=4)] == [s.to_dict() for s in found]


def test_data_without_text_gets_number_thresholds_that_pass_check(tmp_path):
    rng = np.random.default_rng(0)
    price = rng.uniform(0, 100, 400).round(2)
    table = pa.table({"price": price, "kind": pa.array(["a"] * 400)})
    text = 'concept c "c"\nlabels HIGH, LOW\nfield price = "price"\nrule cheap : price < 10 => LOW\n'
    spec = mteach.load_spec(tmp_path / "p.mt", table.schema, text=text)
    gold = np.where(price > 50, 0, 1)
    votes = mteach.apply_table(spec, table)
    rules = suggest(spec, SuggestData(table), votes, gold=gold, n=5, kinds=("rule",))
    assert rules and all(" has " not in s.spec_line for s in rules)
    assert rules[0].label == "HIGH" and ">=" in rules[0].spec_line
    for s in rules:
        grown = mteach.load_spec(tmp_path / "p.mt", table.schema, text=text + s.spec_line + "\n")
        assert (mteach.apply_table(grown, table)[:, -1] != -1).sum() == s.rows


def test_phrases_are_whole_words_the_evaluator_matches(tmp_path):
    texts = ["win 18+ prize now", "T&C apply win", "über cool win", "concat win", "win big"] * 4 + ["cat"] * 10
    table = pa.table({"CONTENT": texts})
    spec = mteach.load_spec(tmp_path / "s.mt", table.schema, text=HEADER)
    gold = np.array([0] * 20 + [1] * 10)
    rules = suggest(spec, SuggestData(table), np.full((30, 0), -1, np.int8), gold=gold, n=40, kinds=("rule",))
    phrases = {s.spec_line.split('"')[1] for s in rules if '"' in s.spec_line}
    assert "win" in phrases and "über" in phrases
    assert not any(set(p) & set("+&") for p in phrases)  # what `has` treats differently: not proposed
    win = next(s for s in rules if s.title == 'text has "win" => SPAM')
    assert win.rows == 20 and win.precision_interval[1] == 1  # "concat" and "cat" rows are not "win"'s


def test_fixes_name_a_bad_rule_with_the_rows_where_it_is_wrong(tmp_path, youtube):
    table, gold, data = youtube
    spec = spec_of(tmp_path, table, 'rule good : text ~ /http/ => SPAM\nrule bad : text has "song" => SPAM\n')
    votes = mteach.apply_table(spec, table)
    fixes = suggest(spec, data, votes, gold=gold, kinds=("fix",))
    bad = [s for s in fixes if "rule bad " in s.title]
    assert bad and not [s for s in fixes if "rule good " in s.title]
    assert bad[0].precision_from == "gold" and bad[0].estimated_precision < 0.3
    rows = [data.ids.to_pylist().index(i) for i in bad[0].example_ids]
    assert all(gold[r] == 1 and votes[r, 1] == 0 for r in rows)


def test_review_puts_unsure_rows_first_and_rows_with_gold_last(tmp_path, youtube):
    table, gold, data = youtube
    spec = spec_of(tmp_path, table, 'rule link : text ~ /http/ => SPAM\nrule song : text has "song" => HAM\n')
    votes = mteach.apply_table(spec, table)
    some_gold = np.where(np.arange(len(gold)) % 2 == 0, gold, -1)
    g = guide(spec, data, votes, gold=some_gold, n=10)
    assert sorted(g.review_order.tolist()) == list(range(table.num_rows))
    assert (some_gold[g.review_order[:table.num_rows // 2]] == -1).all()
    conflict = np.flatnonzero((votes[:, 0] == 0) & (votes[:, 1] == 1) & (some_gold == -1))
    assert len(conflict) and set(conflict) <= set(g.review_order[:2 * len(conflict)])  # rules tie: unsure
    reviews = [s for s in g.suggestions if s.kind == "review"]
    assert len(reviews) == 10 and all(some_gold[s.example_rows[0]] == -1 for s in reviews)


def test_bad_input(tmp_path, youtube):
    table, _, data = youtube
    spec = spec_of(tmp_path, table)
    with pytest.raises(DataError, match="vote matrix has 3 rows; the data has 1586"):
        suggest(spec, data, np.full((3, 0), -1, np.int8))
    with pytest.raises(DataError, match="unknown kind of suggestion 'rules'"):
        suggest(spec, data, np.full((table.num_rows, 0), -1, np.int8), kinds=("rules",))


def test_precision_interval_is_jeffreys():
    from scipy.stats import beta
    lo, hi = precision_interval(np.array([8.0, 0.0]), np.array([10.0, 0.0]))
    assert lo[0] == pytest.approx(beta.ppf(0.025, 8.5, 2.5)) and hi[0] == pytest.approx(beta.ppf(0.975, 8.5, 2.5))
    assert lo[1] == 0 and hi[1] == 1  # no evidence: anything goes


def test_one_threshold_per_subject_direction_and_label(tmp_path, youtube):
    table, gold, data = youtube
    spec = spec_of(tmp_path, table, 'rule link : text ~ /http/ => SPAM\n')
    rules = suggest(spec, data, mteach.apply_table(spec, table), gold=gold, n=40, kinds=("rule",))
    thresholds = [(s.spec_line.split(" : ")[1].rsplit(" ", 3)[0], s.label) for s in rules if "words(" in s.spec_line]
    assert thresholds and len(set(thresholds)) == len(thresholds)


def test_without_gold_a_rule_voting_alone_is_not_a_fix(tmp_path, youtube):
    table, _, data = youtube
    spec = spec_of(tmp_path, table, 'rule link : text ~ /http/ => SPAM\nrule song : text has "song" => HAM\n')
    votes = mteach.apply_table(spec, table)
    fixes = [s for s in suggest(spec, data, votes, kinds=("fix",)) if s.title.startswith("rule ")]
    # wherever the two rules do not meet, the label model follows the one that votes
    assert fixes == []


def test_an_end_models_guess_on_uncovered_rows_does_not_sway_rule_estimates(tmp_path, youtube):
    # an end model learns from covered rows only; where the rules cover mostly one label it
    # calls the uncovered rows that label too. Its verdict there must not count as evidence.
    table, gold, data = youtube
    spec = spec_of(tmp_path, table, 'rule link : text ~ /http/ => SPAM\nrule song : text has "song" => HAM\n')
    votes = mteach.apply_table(spec, table)
    biased = np.tile([1.0, 0.0], (len(gold), 1))  # SPAM everywhere
    plain = suggest(spec, data, votes, n=5, kinds=("rule",))
    swayed = suggest(spec, data, votes, end_proba=biased, n=5, kinds=("rule",))
    assert plain and [s.spec_line for s in swayed] == [s.spec_line for s in plain]
    assert [s.estimated_precision for s in swayed] == [s.estimated_precision for s in plain]
    assert all(s.precision_from == "label model" for s in swayed)


def test_a_rule_for_what_the_other_labels_rules_leave(tmp_path, youtube):
    # once SPAM's rules test phrases, the rest of the data is mostly HAM: suggest offers
    # "THRESHOLD unless text has any(<SPAM's phrases>) => HAM", exact about its rows and right
    table, gold, data = youtube
    rules = ('rule a : text has any("check out", "subscribe") => SPAM\n'
             'rule b : text has "com" => SPAM confidence 0.8\nrule c : text has "i love" => HAM\n')
    spec = spec_of(tmp_path, table, rules)
    votes = mteach.apply_table(spec, table)
    covered = (votes != -1).any(axis=1)
    found = [s for s in suggest(spec, data, votes, gold=gold, n=20, kinds=("rule",))
             if ' unless text has any("check out", "subscribe", "com") => HAM' in s.spec_line]
    assert len(found) == 1  # one per label: the best threshold
    s = found[0]
    grown = mteach.load_spec(tmp_path / "s.mt", table.schema, text=HEADER + rules + s.spec_line + "\n")
    fires = mteach.apply_table(grown, table)[:, -1] != -1
    assert s.rows == fires.sum() and s.new_rows == (fires & ~covered).sum() > 100
    true = (gold[fires] == 1).mean()
    assert true >= 0.8 and s.precision_interval[0] <= true <= s.precision_interval[1]
    # rejected once, the rest of that label is not offered again with another threshold
    again = suggest(spec, data, votes, gold=gold, n=20, kinds=("rule",), exclude={s.title})
    assert not [x for x in again if " unless " in x.spec_line and x.label == "HAM"]


def test_a_rest_rule_written_early_gets_a_fix_with_the_phrases_added_since(tmp_path, youtube):
    # the rest rule knew only "check"; later SPAM rules found "subscribe" and "channel", where
    # it still votes HAM: the fix rewrites it with them in its unless, in its own name
    table, gold, data = youtube
    rules = ('rule a : text has "check" => SPAM\n'
             'rule rest : words(text) <= 36 unless text has any("check") => HAM confidence 0.9\n'
             'rule b : text has any("subscribe", "channel") => SPAM\nrule c : text has "song" => HAM\n')
    spec = spec_of(tmp_path, table, rules)
    votes = mteach.apply_table(spec, table)
    found = suggest(spec, data, votes, gold=gold, n=10, kinds=("fix",))
    fixes = [s for s in found if s.replaces]
    assert len(fixes) == 1
    s = fixes[0]
    # the conflict of rest and b is this same advice: not listed again as a pair
    assert not [x for x in found if x.title.startswith("rules rest and b disagree")]
    assert [x for x in found if x.title.startswith("rules a and c disagree")]
    assert s.replaces == "rest" and s.spec_line == ('rule rest : words(text) <= 36 unless text has any("check", '
                                                    '"subscribe", "channel") => HAM confidence 0.9')
    fixed = mteach.load_spec(tmp_path / "s.mt", table.schema, text=HEADER + rules.replace(
        'rule rest : words(text) <= 36 unless text has any("check") => HAM confidence 0.9', s.spec_line))
    after = mteach.apply_table(fixed, table)
    was, now = votes[:, 1] != -1, after[:, 1] != -1
    assert s.rows == now.sum() and (now <= was).all()
    # it stops voting HAM exactly where rule b votes SPAM, and is right more often on gold
    assert s.conflicts == (was & (votes[:, 2] != -1)).sum() > 0 and not (now & (votes[:, 2] != -1)).any()
    assert (gold[now] == 1).mean() > (gold[was] == 1).mean()
    assert s.precision_from == "gold" and s.precision_interval[0] <= (gold[now] == 1).mean() <= 1
    assert set(s.example_ids) <= set(np.asarray(data.ids)[was & ~now].tolist())
    # once fixed, nothing more to fix; an unless the expert wrote otherwise is not rewritten
    assert not [x for x in suggest(fixed, data, after, gold=gold, kinds=("fix",)) if x.replaces]
    own = spec_of(tmp_path, table, 'rule a : text has "check" => SPAM\n'
                                   'rule rest : words(text) <= 36 unless text ~ /http/ => HAM\n')
    assert not [x for x in suggest(own, data, mteach.apply_table(own, table), kinds=("fix",)) if x.replaces]
