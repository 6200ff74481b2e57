"""Rule statistics, checked against values computed by hand on a tiny vote matrix.

Definitions (Snorkel's LFAnalysis, every denominator = all rows):
coverage = rows the rule votes on; overlaps = of those, rows where another rule votes
too; conflicts = rows where another rule votes a different label.
"""
import math

import numpy as np
import pyarrow as pa
import pytest

import mteach
from mteach.engine.analysis import majority_vote, rule_stats, summarize

# rules: r0 => A, r1 => B, r2 => A      labels: A = 0, B = 1
VOTES = np.array([
    [0, 1, -1],    # row 0: r0 and r1 disagree (overlap + conflict)
    [0, -1, 0],    # row 1: r0 and r2 agree (overlap, no conflict)
    [-1, -1, -1],  # row 2: uncovered
    [-1, 1, 0],    # row 3: r1 and r2 disagree
    [0, -1, -1],   # row 4: r0 alone
    [-1, -1, 0],   # row 5: r2 alone
], dtype=np.int8)
GOLD = np.array([0, 0, 1, 1, 1, -1])  # A A B B B unknown
NAMES, RULE_LABELS, LABELS = ["r0", "r1", "r2"], ["A", "B", "A"], ["A", "B"]


def test_coverage_overlaps_conflicts_by_hand():
    t = rule_stats(VOTES, NAMES, RULE_LABELS, LABELS)
    assert isinstance(t, pa.Table)
    assert t.column("rule").to_pylist() == NAMES
    assert t.column("polarity").to_pylist() == [["A"], ["B"], ["A"]]
    assert t.column("votes").to_pylist() == [3, 2, 3]
    assert t.column("coverage").to_pylist() == pytest.approx([3 / 6, 2 / 6, 3 / 6])
    assert t.column("overlaps").to_pylist() == pytest.approx([2 / 6, 2 / 6, 2 / 6])
    assert t.column("conflicts").to_pylist() == pytest.approx([1 / 6, 2 / 6, 1 / 6])
    assert "accuracy" not in t.column_names


def test_gold_columns_by_hand():
    t = rule_stats(VOTES, NAMES, RULE_LABELS, LABELS, GOLD)
    assert t.column("correct").to_pylist() == [2, 1, 1]
    assert t.column("incorrect").to_pylist() == [1, 1, 1]  # r2's vote on row 5 has no gold: not counted
    assert t.column("accuracy").to_pylist() == pytest.approx([2 / 3, 1 / 2, 1 / 2])
    # recall: share of the gold rows of the rule's label that it catches
    assert t.column("recall").to_pylist() == pytest.approx([2 / 2, 1 / 3, 1 / 2])


def test_accuracy_is_nan_without_gold_rows_voted():
    votes = np.array([[0], [-1]], dtype=np.int8)
    t = rule_stats(votes, ["r"], ["B"], LABELS, np.array([-1, 1]))
    assert math.isnan(t.column("accuracy")[0].as_py())
    assert t.column("recall").to_pylist() == [0.0]
    t = rule_stats(votes, ["r"], ["A"], LABELS, np.array([-1, 1]))
    assert math.isnan(t.column("recall")[0].as_py())  # no gold rows of label A


def test_majority_vote_ties_abstain():
    assert majority_vote(VOTES, 2).tolist() == [-1, 0, -1, -1, 0, 0]
    votes = np.array([[0, 1, 1], [2, 2, 1], [0, 1, 2]], dtype=np.int8)
    assert majority_vote(votes, 3).tolist() == [1, 2, -1]


def test_summary_by_hand():
    s = summarize(VOTES, LABELS, GOLD)
    assert (s.rows, s.covered, s.overlapped, s.conflicted) == (6, 5, 3, 2)
    assert (s.gold_rows, s.mv_decided, s.mv_correct) == (5, 2, 1)
    a, b = s.per_class
    assert a == {"label": "A", "gold": 2, "predicted": 2, "precision": 0.5, "recall": 0.5}
    assert (b["label"], b["gold"], b["predicted"], b["recall"]) == ("B", 3, 0, 0.0)
    assert math.isnan(b["precision"])
    assert summarize(VOTES, LABELS).per_class == []


def test_no_rules_and_no_rows():
    """A spec with no rules yet still gets stats (an n × 0 matrix); so does an empty one."""
    t = rule_stats(np.zeros((4, 0), np.int8), [], [], LABELS, np.array([0, 1, -1, 0]))
    assert t.num_rows == 0
    s = summarize(np.zeros((4, 0), np.int8), LABELS, np.array([0, 1, -1, 0]))
    assert (s.rows, s.covered, s.conflicted, s.mv_decided) == (4, 0, 0, 0)
    t = rule_stats(np.zeros((0, 2), np.int8), ["a", "b"], ["A", "B"], LABELS)
    assert t.column("coverage").to_pylist() == [0.0, 0.0]


def test_public_api_road(tmp_path):
    """load_spec → apply_table (numpy) → rule_stats (Arrow), as the package docstring shows."""
    table = pa.table({"CONTENT": ["buy now", "nice song", "buy this song", None], "CLASS": [1, 0, 1, 0]})
    spec_path = tmp_path / "s.mt"
    spec_path.write_text('concept spam\nlabels SPAM, HAM\nfield text = "CONTENT"\n'
                         'rule buy : text has "buy" => SPAM\nrule song : text has "song" => HAM\n')
    spec = mteach.load_spec(spec_path, schema=table.schema)
    votes = mteach.apply_table(spec, table)
    assert isinstance(votes, np.ndarray) and votes.shape == (4, 2)
    gold = np.array([0, 1, 0, 1])
    stats = mteach.rule_stats(votes, spec.rule_names, [r.rule.label for r in spec.rules], list(spec.labels), gold)
    assert isinstance(stats, pa.Table)
    assert stats.column("coverage").to_pylist() == pytest.approx([0.5, 0.5])
    assert stats.column("conflicts").to_pylist() == pytest.approx([0.25, 0.25])
    assert stats.column("accuracy").to_pylist() == pytest.approx([1.0, 0.5])


def test_gold_accuracy_comes_with_a_wilson_interval():
    from mteach.engine.analysis import wilson_interval
    low, high = wilson_interval(np.array([8, 0, 0]), np.array([10, 5, 0]))
    np.testing.assert_allclose([low[0], high[0]], [0.4902, 0.9433], atol=1e-4)
    assert low[1] == pytest.approx(0, abs=1e-12) and 0.4 < high[1] < 0.45  # no right votes of 5: still not "certainly 0"
    assert np.isnan(low[2]) and np.isnan(high[2])
    votes = np.array([[0], [0], [0], [-1], [-1]])
    t = rule_stats(votes, ["r"], ["A"], ["A", "B"], gold=np.array([0, 0, 1, 1, 0])).to_pylist()[0]
    assert t["accuracy"] == pytest.approx(2 / 3)  # of its 3 votes for A on gold rows, 2 are right
    assert t["accuracy_low"] < 2 / 3 < t["accuracy_high"]


def _equal_stats(got, votes, names, rule_labels, labels, gold):
    from mteach.engine.analysis import conflicted_rows
    want = rule_stats(votes, names, rule_labels, labels, gold)
    assert got.rules.schema == want.schema
    for name in want.column_names:
        a, b = got.rules.column(name).to_pylist(), want.column(name).to_pylist()
        assert [x if x == x else "nan" for x in a] == [x if x == x else "nan" for x in b], name  # nan == nan
    assert got.summary.to_dict().keys() == summarize(votes, labels, gold).to_dict().keys()
    assert repr(got.summary) == repr(summarize(votes, labels, gold))
    assert np.array_equal(got.conflicted, conflicted_rows(votes))
    assert np.array_equal(got.verdict, majority_vote(votes, len(labels)))


@pytest.mark.parametrize("seed", range(6))
def test_incremental_stats_equal_the_full_ones_through_a_run_of_edits(seed):
    """The studio's edits (a rule's column changed, a rule added, removed, moved, two rules
    with the same column, gold changed): each update equals rule_stats / summarize /
    conflicted_rows / majority_vote over the whole matrix."""
    from mteach.engine.analysis import IncrementalStats
    rng = np.random.default_rng(seed)
    n, labels = 500, ["A", "B", "C"][: 2 + seed % 2]

    def column():
        col = np.full(n, -1, np.int8)
        col[rng.random(n) < rng.uniform(0.02, 0.5)] = rng.integers(len(labels))
        return col, f"c{rng.integers(1 << 40)}"

    cols = [column() for _ in range(6)]
    gold = rng.integers(-1, len(labels), n)
    inc = IncrementalStats()
    for step in range(40):
        move = rng.integers(6)
        if move == 0 and len(cols) > 1:
            cols.pop(rng.integers(len(cols)))
        elif move == 1:
            cols.insert(rng.integers(len(cols) + 1), column())
        elif move == 2 and len(cols) > 1:
            i, j = rng.choice(len(cols), 2, replace=False)
            cols[i], cols[j] = cols[j], cols[i]
        elif move == 3:
            cols.append(cols[rng.integers(len(cols))])  # a second rule with the same column
        elif move == 4:
            gold = gold.copy()
            gold[rng.integers(n)] = rng.integers(-1, len(labels))
        else:  # the usual edit: one rule's column changes a little
            i = rng.integers(len(cols))
            col = cols[i][0].copy()
            col[rng.integers(n, size=5)] = rng.integers(-1, len(labels))
            cols[i] = (col, f"c{rng.integers(1 << 40)}")
        votes = np.asfortranarray(np.stack([c for c, _ in cols], axis=1))
        keys = [k for _, k in cols]
        names = [f"r{i}" for i in range(len(cols))]
        rule_labels = [labels[int(c[c >= 0][0])] if (c >= 0).any() else labels[0] for c, _ in cols]
        # a rule's votes are all its one label: give each column that label where it votes
        votes = np.where(votes >= 0, np.array([labels.index(r) for r in rule_labels], np.int8)[None, :], -1)
        votes = np.asfortranarray(votes.astype(np.int8))
        g = gold if step % 5 else None
        _equal_stats(inc.update(votes, keys, names, rule_labels, labels, g), votes, names, rule_labels, labels, g)


def test_stats_counted_batch_by_batch_equal_the_whole_matrix():
    """``stats`` streams: counts added batch by batch (a batch may have no gold known, given
    as None) give the same table and summary as the whole matrix at once."""
    from mteach.engine.analysis import StatsCounts
    rng = np.random.default_rng(5)
    n, labels = 700, ["A", "B", "C"]
    rule_labels = ["A", "B", "C", "A"]
    votes = np.full((n, 4), -1, np.int8)
    for j, lab in enumerate(rule_labels):
        votes[rng.random(n) < 0.3, j] = labels.index(lab)
    gold = rng.integers(-1, 3, n)
    gold[300:400] = -1  # a batch without any gold known
    names = ["r0", "r1", "r2", "r3"]
    for g in (None, gold):
        counts = StatsCounts(4, labels, g is not None)
        for start in range(0, n, 100):
            counts.add(votes[start:start + 100], None if g is None or start == 300 else g[start:start + 100])
        want = rule_stats(votes, names, rule_labels, labels, g)
        got = counts.rules(names, rule_labels)
        assert got.column_names == want.column_names
        for name in want.column_names:
            a, b = got.column(name).to_pylist(), want.column(name).to_pylist()
            assert [x if x == x else "nan" for x in a] == [x if x == x else "nan" for x in b], name
        assert repr(counts.summary()) == repr(summarize(votes, labels, g))
