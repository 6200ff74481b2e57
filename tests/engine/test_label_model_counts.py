"""The label model fitted on vote-pattern counts accumulated batch by batch (issue 11):
the same model as the fit on every row at once."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mteach.compiler.checker import load_spec
from mteach.engine.datasets import open_source
from mteach.engine.gold import GoldRequest
from mteach.engine.label_model import VoteCounts, fit_counted, fit_for_spec
from mteach.engine.votes import collect_votes

ROOT = Path(__file__).resolve().parents[2]
GOLD = GoldRequest(column="CLASS", mapping="1=SPAM,0=HAM")


@pytest.fixture(scope="module")
def youtube():
    source = open_source(ROOT / "data" / "youtube" / "train.csv")
    spec = load_spec(ROOT / "specs" / "youtube_spam.mt", source.schema)
    batch = collect_votes(spec, source, "COMMENT_ID", columns=GOLD.columns)
    gold = GOLD.resolve(spec.labels, batch.ids, batch.table, source.path, "COMMENT_ID")
    return spec, source, batch, gold


@pytest.mark.parametrize("kind", ["mteach", "majority_vote"])
@pytest.mark.parametrize("which_gold", ["none", "all", "every seventh"])
def test_the_label_model_fitted_on_counts_over_batches_equals_the_full_fit(youtube, kind, which_gold):
    spec, _, batch, gold = youtube
    gold = {"none": None, "all": gold, "every seventh": np.where(np.arange(len(gold)) % 7 == 0, gold, -1)}[which_gold]
    full = fit_for_spec(spec, batch.votes, gold, kind=kind, max_iter=300)
    counts = VoteCounts(len(spec.rules))
    for start in range(0, len(batch.votes), 97):  # batches that split patterns and gold rows
        counts.add(batch.votes[start:start + 97], None if gold is None else gold[start:start + 97])
    counted = fit_counted(spec, counts, kind=kind, max_iter=300)
    assert counts.rows == len(batch.votes) and counts.patterns()[0].shape[0] < len(batch.votes) / 4
    assert np.array_equal(full.predict_proba(batch.votes), counted.predict_proba(batch.votes))
    assert np.array_equal(full.contributions(batch.votes), counted.contributions(batch.votes))
    assert full.temperature_ == counted.temperature_
    if which_gold != "none" and kind == "mteach":
        assert full.temperature_ != 1.0  # the gold rows kept aside did calibrate it


def test_counting_a_pattern_keeps_its_first_appearance_across_batches():
    counts = VoteCounts(2)
    counts.add(np.array([[1, -1], [0, 0]], np.int8))
    counts.add(np.array([[-1, -1], [0, 0], [1, -1]], np.int8))
    votes, gold, weight = counts.patterns()
    assert votes.tolist() == [[1, -1], [0, 0], [-1, -1]] and weight.tolist() == [2, 2, 1]
    assert gold.tolist() == [-1, -1, -1]


def test_rows_whose_hashes_collide_are_still_counted_apart(youtube, monkeypatch):
    """A batch's distinct rows are found by a 64-bit row hash, checked row by row: rows that
    share a hash but differ (forced here: every row hashes to 0) are counted apart."""
    from mteach.engine import label_model
    spec, _, batch, gold = youtube
    expected = VoteCounts(len(spec.rules))
    expected.add(batch.votes, gold)
    monkeypatch.setattr(label_model, "_row_hash", lambda L, extra, seed: np.zeros(len(L), np.uint64))
    collided = VoteCounts(len(spec.rules))
    collided.add(batch.votes, gold)
    for got, want in zip(collided.patterns(), expected.patterns()):
        assert np.array_equal(got, want)
    assert len(expected.patterns()[2]) > 10


@pytest.mark.parametrize("hashing", ["real", "constant"])
def test_counts_added_batch_by_batch_or_absorbed_from_parts_are_the_same(youtube, monkeypatch, hashing):
    """Batches, and parts counted alone then absorbed in order (the Dask engine), give the
    counts of one pass. "constant": every row hashes to 0 and each batch is one row, so a new
    row's hash always matches a stored row's and only comparing the rows tells them apart."""
    from mteach.engine import label_model
    spec, _, batch, gold = youtube
    size = 150 if hashing == "real" else 1
    votes, gold = (batch.votes, gold) if hashing == "real" else (batch.votes[:300], gold[:300])
    whole = VoteCounts(len(spec.rules))
    whole.add(votes, gold)
    if hashing == "constant":
        monkeypatch.setattr(label_model, "_row_hash", lambda L, extra, seed: np.zeros(len(L), np.uint64))
    batched, absorbed = VoteCounts(len(spec.rules)), VoteCounts(len(spec.rules))
    for start in range(0, len(votes), size):
        part = VoteCounts(len(spec.rules))
        part.add(votes[start:start + size], gold[start:start + size])
        batched.add(votes[start:start + size], gold[start:start + size])
        absorbed.absorb(part)
    assert len(whole.patterns()[2]) > 20
    for counts in (batched, absorbed):
        assert counts.rows == whole.rows
        for got, want in zip(counts.patterns(), whole.patterns()):
            assert np.array_equal(got, want)
