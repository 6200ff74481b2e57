"""diff: rules changed between two revisions, by content, and the rows that flip."""
from __future__ import annotations



from mteach.engine import diff


def test_diff_by_content_and_flips_by_rule_change(repo):
    root, spec_path, data, sha1, sha2 = repo
    d = diff.diff_revisions(spec_path, sha1, sha2, data, "id")
    assert [r["rule"] for r in d["added"]] == ["short"]
    assert [r["rule"] for r in d["removed"]] == ["own_stuff"]
    assert [c["rule"] for c in d["changed"]] == ["buy"]  # `song` moved two lines: not changed
    by = {c["rule"]: c for c in d["by_rule_change"]}
    # buy now also catches "cheap" (r7, r12); short votes on r5 r8 r10 r14 r15 r16 r17; own_stuff voted on r3, r9
    assert by["buy"]["rows_voting_differently"] == 2 and by["own_stuff"]["rows_voting_differently"] == 2
    assert by["short"]["rows_voting_differently"] == 7
    d = diff.diff_revisions(spec_path, sha1, sha2, data, "id", sample=100)
    flipped = {s["id"]: s for s in d["sample"]}
    assert len(flipped) == d["flipped"] == sum(d["transitions"].values())
    # rows that gain or lose coverage flip for structural reasons, whatever the label model says
    assert flipped["r7"]["from"] is None and flipped["r7"]["to"] == "SPAM" and flipped["r7"]["rules"] == ["buy"]
    assert flipped["r3"]["to"] is None and flipped["r3"]["rules"] == ["own_stuff"]
    assert flipped["r5"]["from"] is None and flipped["r5"]["rules"] == ["short"] and flipped["r5"]["text"] == "hello"
    assert "r13" not in flipped  # no rule votes on it in either version
    # every flip is attributed: to a rule change that votes differently on it, or to re-weighting
    per_rule = sum(c["flipped_rows"] for c in d["by_rule_change"])
    reweighted = [s for s in d["sample"] if s["rules"] == ["(label model re-weighting)"]]
    assert d["label_model_reweighting"] == len(reweighted)
    assert per_rule + len(reweighted) >= d["flipped"]
    same = diff.diff_revisions(spec_path, sha2, "HEAD", data, "id")
    assert same["flipped"] == 0 and not (same["added"] or same["removed"] or same["changed"])
