"""`stats` and `rows` read the data batch by batch with gold labels too: cut into batches of
7 rows, they print what one batch of every row prints (gold from a column and from a file)."""
import functools
import json
from pathlib import Path

import pyarrow.csv as pacsv
import pytest

import mteach.cli.core as core
from mteach.cli import main
from mteach.engine.votes import vote_batches

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "specs" / "youtube_spam.mt"
TRAIN = ROOT / "data" / "youtube" / "train.csv"


@pytest.fixture
def gold_file(tmp_path):
    table = pacsv.read_csv(TRAIN).select(["COMMENT_ID", "CLASS"]).slice(0, 300)
    rows = [{"id": i, "label": "SPAM" if c else "HAM"} for i, c in zip(*(table.column(n).to_pylist()
                                                                          for n in ("COMMENT_ID", "CLASS")))]
    path = tmp_path / "gold.csv"
    path.write_text("id,label\n" + "".join(f"{r['id']},{r['label']}\n" for r in rows))
    return path


def _json(capsys, *args):
    assert main(list(map(str, args)) + ["--format", "json", "-q"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("verb", [["stats"], ["rows", "--wrong", "--limit", "5"], ["rows", "--wrong", "--limit", "0"]])
def test_small_batches_give_the_same_output(capsys, monkeypatch, gold_file, verb):
    for gold in (["--gold-column", "CLASS", "--gold-map", "1=SPAM,0=HAM"],
                 ["--gold", gold_file, "--id", "COMMENT_ID"]):
        whole = _json(capsys, *verb, SPEC, TRAIN, *gold)
        with monkeypatch.context() as m:
            m.setattr(core, "vote_batches", functools.partial(vote_batches, batch_rows=7))
            assert _json(capsys, *verb, SPEC, TRAIN, *gold) == whole
    if verb[0] == "rows":  # the wrong rows really are the rows whose verdict is not their gold label
        assert whole["shown"] and all(r["verdict"] != r["gold"] and r["gold"] != "-" for r in whole["shown"])
