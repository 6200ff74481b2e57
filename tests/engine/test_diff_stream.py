"""`diff` streams (issue 11): both revisions' votes batch by batch, label models fitted on
vote-pattern counts, a second pass for the flipped rows — the same report as on all rows at
once, with ids repeated and batches no rule covers."""
from __future__ import annotations

import numpy as np
import pytest

from mteach.compiler.checker import load_spec
from mteach.engine import diff
from mteach.engine.gitfacts import spec_at_revision
from mteach.engine.io import open_data
from mteach.engine.ledger import fit_label_model
from mteach.engine.votes import collect_votes
from mteach.errors import DataError


def _labels_in_memory(root, rev, data):
    """Label names per row the way diff labelled before it streamed: the label model fitted
    on every row's votes at once."""
    with spec_at_revision(root, "specs/spam.mt", rev) as path:
        spec = load_spec(path, open_data(data).schema)
        votes = collect_votes(spec, data, "id").votes
    covered = (votes != -1).any(axis=1)
    labels = np.where(covered, fit_label_model(spec, votes, None, 0).predict(votes), -1)
    return np.array(list(spec.labels) + [None], dtype=object)[labels]


@pytest.fixture
def long_data(repo, tmp_path, kit):
    """The rows three times over (every id repeated), after 9 rows no rule covers (a first
    batch of 4 with no covered row)."""
    rows = [(f"n{i}", "what a voice") for i in range(9)] + kit.ROWS * 3
    data = tmp_path / "long.csv"
    kit.write_csv(data, rows)
    return data


@pytest.mark.parametrize("batch_rows", [4, 7, 1000])
def test_streamed_diff_equals_the_diff_of_all_rows_at_once(repo, long_data, kit, batch_rows):
    root, spec_path, _, sha1, sha2 = repo
    whole = diff.diff_revisions(spec_path, sha1, sha2, long_data, "id", sample=100, batch_rows=1 << 20)
    streamed = diff.diff_revisions(spec_path, sha1, sha2, long_data, "id", sample=100, batch_rows=batch_rows)
    assert streamed == whole
    before, after = _labels_in_memory(root, sha1, long_data), _labels_in_memory(root, sha2, long_data)
    flips = np.flatnonzero(before != after)
    assert whole["rows"] == len(before) == 66 and whole["flipped"] == len(flips) > 0
    ids = [f"n{i}" for i in range(9)] + [i for i, _ in kit.ROWS] * 3
    assert [s["id"] for s in whole["sample"]] == [ids[r] for r in flips]
    assert [(s["from"], s["to"]) for s in whole["sample"]] == [(before[r], after[r]) for r in flips]
    # a short sample keeps the first flipped rows, the counts stay those of every row
    few = diff.diff_revisions(spec_path, sha1, sha2, long_data, "id", sample=3, batch_rows=batch_rows)
    assert few["sample"] == whole["sample"][:3] and few["by_rule_change"] == whole["by_rule_change"]


def test_diff_of_a_file_with_no_rows_is_a_clear_error(repo, tmp_path):
    root, spec_path, _, sha1, sha2 = repo
    empty = tmp_path / "empty.csv"
    empty.write_text("id,text\n", encoding="utf-8")
    with pytest.raises(DataError, match="header but no rows"):
        diff.diff_revisions(spec_path, sha1, sha2, empty, "id")


def test_the_vote_spool_gives_back_each_batch_as_it_was_written():
    from mteach.engine.votes import VoteSpool
    rng = np.random.default_rng(0)
    batches = [rng.integers(-1, 2, (n, 5)).astype(np.int8) for n in (7, 0, 3, 64)]
    spool = VoteSpool(5)
    for votes in batches:
        spool.add(votes)
    for _ in range(2):  # read twice: each reading starts at the first batch
        back = list(spool)
        assert len(back) == 4 and all(np.array_equal(a, b) for a, b in zip(back, batches))
    spool.close()
