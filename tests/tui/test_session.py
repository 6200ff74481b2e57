"""The studio's state without widgets: review log, sampling, gold merging."""
import numpy as np

from mteach.engine.gold import read_gold_file


def test_review_log_appends_without_rewriting_and_tolerates_bad_lines(make_session, studio_files):
    gold = studio_files / "mini.gold.csv"
    gold.write_text("id,label,reviewer,time\nc01,SPAM,a,t\nc02,MAYBE,a,t\nnope,HAM,a,t\nc03,HAM,a,t")  # no final newline
    s = make_session()
    assert s.review.entries == {"c01": "SPAM", "nope": "HAM", "c03": "HAM"}
    p = s.review.problems
    assert [x[2] for x in p.unknown_labels] == ["MAYBE"] and [x[1] for x in p.unknown_ids] == ["nope"]
    assert "MAYBE" in p.describe() and "nope" in p.describe()
    s.record(s.row_of["c03"], "SPAM")  # a correction: last line wins
    lines = gold.read_text().splitlines()
    assert lines[:5] == ["id,label,reviewer,time", "c01,SPAM,a,t", "c02,MAYBE,a,t", "nope,HAM,a,t", "c03,HAM,a,t"]
    assert lines[5].startswith("c03,SPAM,tester,")


def test_gold_file_readable_by_the_engine_last_line_wins(make_session, studio_files):
    s = make_session()
    s.record(0, "SPAM")
    s.record(1, "HAM")
    s.record(0, "HAM")
    ids, labels = read_gold_file(studio_files / "mini.gold.csv", ["SPAM", "HAM"])
    from mteach.engine.gold import align_gold
    g = align_gold(s.ids, ids, labels)
    assert g[0] == 1 and g[1] == 1 and (g[2:] == -1).all()


def test_sample_is_seeded_skips_reviewed_and_gold_overrides_column(make_session):
    s = make_session(gold_column="CLASS", gold_map="1=SPAM,0=HAM", seed=3)
    a = s.analyze(s.read_spec_text(), with_contributions=False)
    s.accept(a)
    uncovered = np.flatnonzero((a.votes == -1).all(axis=1))
    first = s.next_to_review(a, "uncovered")
    assert first in uncovered
    again = make_session(gold_column="CLASS", gold_map="1=SPAM,0=HAM", seed=3)
    assert again.next_to_review(a, "uncovered") == first  # same seed, same sample
    before = s.remaining(a, "uncovered")
    s.record(first, "SPAM")
    assert s.next_to_review(a, "uncovered") != first and s.remaining(a, "uncovered") == before - 1
    assert s.gold(a.spec.labels)[first] == 0  # the review overrides the CLASS column
    s.skip(s.next_to_review(a, "uncovered"))
    assert s.remaining(a, "uncovered") == before - 2


def test_an_existing_files_columns_are_kept(make_session, studio_files):
    gold = studio_files / "mini.gold.csv"
    gold.write_text("id,label\nc01,SPAM\n")
    s = make_session()
    s.record(s.row_of["c02"], "HAM")
    assert gold.read_text() == "id,label\nc01,SPAM\nc02,HAM\n"
    ids, labels = read_gold_file(gold, ["SPAM", "HAM"])
    assert ids.to_pylist() == ["c01", "c02"] and labels.tolist() == [0, 1]
