"""`[label_model] kind` picks the label model (issue 15): the second one, majority vote,
trains, saves, loads, labels and explains through the same protocol as the default."""
import json
from pathlib import Path

import numpy as np
import pyarrow.csv as csv
import pyarrow.parquet as pq
import pytest

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "specs" / "youtube_spam.mt"
TRAIN = ROOT / "data" / "youtube" / "train.csv"
TEST = ROOT / "data" / "youtube" / "test.csv"
MAJORITY = '[features]\nchar_ngrams = false\n[end_model]\nepochs = 4\n\n[label_model]\nkind = "majority_vote"\n'


def test_a_model_trained_with_majority_vote_labels_and_explains(tmp_path, run):
    from mteach.engine.label_model import MajorityVote
    from mteach.engine.train import load_model
    config = tmp_path / "mteach.toml"
    config.write_text(MAJORITY)
    folder = tmp_path / "m"
    code, _, err = run("train", SPEC, TRAIN, "-o", folder, "--id", "COMMENT_ID", "--config", config, "-q")
    assert code == 0, err
    assert json.loads((folder / "model.json").read_text())["label_model"]["kind"] == "majority_vote"
    model = load_model(folder)
    assert type(model.label_model) is MajorityVote
    ledger = tmp_path / "ledger.parquet"
    code, _, err = run("label", SPEC, TEST, "-o", ledger, "--id", "COMMENT_ID", "--model", folder, "-q")
    assert code == 0, err
    t = pq.read_table(ledger)
    decided = t.column("decided_by").to_pylist()
    # the row with the most votes: every vote is worth the same log-odds toward its label
    votes = model.votes(csv.read_csv(TEST))
    row = int(np.argmax((votes != -1).sum(1)))
    assert decided[row] == "rules" and (votes[row] != -1).sum() >= 2
    e = json.loads(run("explain", ledger, "--id", t.column("id")[row].as_py(), "--format", "json")[1])
    worth = {round(v["contribution"] * (1 if v["label"] == e["votes"][0]["label"] else -1), 9) for v in e["votes"]}
    assert len(e["votes"]) == (votes[row] != -1).sum() and len(worth) == 1 and worth.pop() != 0
    total = e["baseline_log_odds"] + sum(v["contribution"] for v in e["votes"]) + (e.get("end_model_contribution") or 0)
    assert 1 / (1 + np.exp(-total)) == pytest.approx(e["probability"], abs=1e-9)


@pytest.mark.parametrize("setting, message", [
    ('kind = "snorkel"', "mteach.toml:3: label_model.kind = 'snorkel' is out of range: it must be one of mteach, majority_vote"),
    ("kind = 3", "mteach.toml:3: label_model.kind must be a string"),
])
def test_a_bad_label_model_kind_names_the_file_and_line(tmp_path, run, setting, message):
    config = tmp_path / "mteach.toml"
    config.write_text(f"[label_model]\nseed = 1\n{setting}\n")
    code, _, err = run("train", SPEC, TRAIN, "-o", tmp_path / "m", "--config", config, "-q")
    assert code == 2 and message in err, err
    assert not (tmp_path / "m").exists()
