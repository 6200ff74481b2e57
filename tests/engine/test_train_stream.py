"""`train` never gathers the whole table (issue 11): the label model fits on vote counts of a
first pass, a second keeps only the training rows, the gold rows and a sample of the rows no
rule covers."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mteach.compiler.checker import load_spec
from mteach.engine import train as tr
from mteach.engine.datasets import open_source
from mteach.engine.gold import GoldRequest
from mteach.engine.votes import collect_votes
from mteach.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]
GOLD = GoldRequest(column="CLASS", mapping="1=SPAM,0=HAM")


@pytest.fixture
def youtube():
    source = open_source(ROOT / "data" / "youtube" / "train.csv")
    return load_spec(ROOT / "specs" / "youtube_spam.mt", source.schema), source


def _settings(tmp_path, extra=""):
    config = tmp_path / "mteach.toml"
    config.write_text("[features]\nchar_ngrams = false\n[end_model]\nepochs = 3\n" + extra)
    return load_settings(config)


def test_streamed_training_on_every_row_equals_training_on_the_table(youtube, tmp_path):
    spec, source = youtube
    settings = _settings(tmp_path)
    batch = collect_votes(spec, source, "COMMENT_ID", columns=GOLD.columns)
    gold = GOLD.resolve(spec.labels, batch.ids, batch.table, source.path, "COMMENT_ID")
    whole, report = tr.train(spec, batch.table, settings, gold, votes=batch.votes, hint_effects=False)
    streamed, sreport = tr.train_streamed(spec, source, "COMMENT_ID", settings, GOLD, batch_rows=300,
                                          hint_effects=False)
    assert np.array_equal(whole.label_model.weights_, streamed.label_model.weights_)
    assert whole.label_model.temperature_ == streamed.label_model.temperature_
    assert np.array_equal(whole.end_model_proba(batch.table), streamed.end_model_proba(batch.table))
    assert whole.end_model.history_ == streamed.end_model.history_
    assert (whole.blend, whole.blend_uncovered, whole.end_temperature) == (
        streamed.blend, streamed.blend_uncovered, streamed.end_temperature)
    assert sreport["end_model"]["gathered"] == "all 1,586 rows"
    assert {k: v for k, v in sreport.items() if k != "end_model"} == {k: v for k, v in report.items()
                                                                      if k != "end_model"}


def test_with_max_rows_only_the_chosen_rows_are_gathered(youtube, tmp_path, monkeypatch):
    spec, source = youtube
    seen = []
    real = tr.train
    monkeypatch.setattr(tr, "train", lambda spec, table, *a, **k: seen.append(table.num_rows) or real(spec, table, *a, **k))
    model, report = tr.train_streamed(spec, source, "COMMENT_ID", _settings(tmp_path, "max_rows = 200\n"),
                                      batch_rows=128, hint_effects=False)
    assert seen == [400]  # 200 training rows and 200 of the 245 rows no rule covers
    assert report["rows"] == 1586 and report["covered"] == 1341
    used = report["end_model"]["training_rows"]
    assert used["rows"] == 200 and "200 of 1,341 covered rows ([end_model] max_rows = 200" in used["chosen"]
    assert report["end_model"]["gathered"].startswith("400 of 1,586 rows: the 200 training rows, 200 of the 245")
    # gold rows are always kept: the blend and the calibration are judged on them
    seen.clear()
    tr.train_streamed(spec, source, "COMMENT_ID", _settings(tmp_path, "max_rows = 200\n"),
                      GoldRequest(column="CLASS", mapping="1=SPAM,0=HAM"), hint_effects=False)
    assert seen == [1586]


def test_text_past_the_string_limit_is_gathered_as_large_string(youtube, tmp_path, monkeypatch):
    """A 2 GB column cannot be built in a test: the limit is lowered to 1,000 bytes instead."""
    from mteach.engine import io
    spec, source = youtube
    monkeypatch.setattr(io, "STRING_LIMIT", 1000)
    seen = []
    real = tr.train
    monkeypatch.setattr(tr, "train", lambda spec, table, *a, **k: seen.append(table.schema) or real(spec, table, *a, **k))
    model, report = tr.train_streamed(spec, source, "COMMENT_ID", _settings(tmp_path), batch_rows=128,
                                      hint_effects=False)
    assert seen[0].field("CONTENT").type == "large_string"
    assert report["rows"] == 1586 and model.end_model_proba(source.read_all()).shape == (1586, 2)
