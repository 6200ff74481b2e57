"""drift's estimated accuracy (issue 14): the scorer's probabilities are calibrated by a
temperature on the reference's gold, never on the new data's labels."""
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.csv as pacsv

from mteach.engine.drift import drift
from mteach.engine.gold import GoldRequest

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "specs" / "youtube_spam.mt"
TRAIN = ROOT / "data" / "youtube" / "train.csv"
TEST = ROOT / "data" / "youtube" / "test.csv"
GOLD = GoldRequest(column="CLASS", mapping="1=SPAM,0=HAM")


def test_the_estimate_is_calibrated_on_the_reference_gold_and_blind_to_the_new_labels(tmp_path):
    report = drift(SPEC, TRAIN, TEST, id_column="COMMENT_ID", gold=GOLD)
    acc = report.estimated_accuracy
    cal = acc["calibration"]
    assert cal["gold_rows"] > 1000 and cal["temperature"] != 1.0
    # on the reference, where the temperature was fitted, estimate and measure agree
    assert abs(acc["reference_gap"]) < 0.01
    # the new file's labels, flipped: the measured accuracy collapses, the estimate does not move
    test = pacsv.read_csv(TEST)
    flipped = test.set_column(test.column_names.index("CLASS"), "CLASS", pc.subtract(1, test.column("CLASS")))
    pacsv.write_csv(flipped, tmp_path / "flipped.csv")
    lied = drift(SPEC, TRAIN, tmp_path / "flipped.csv", id_column="COMMENT_ID", gold=GOLD).estimated_accuracy
    assert lied["new"]["estimated"] == acc["new"]["estimated"] and lied["calibration"] == cal
    assert lied["new"]["measured"] < 0.1 < 0.9 < acc["new"]["measured"]
    # without gold on the reference nothing is calibrated, and the report says so
    train = pacsv.read_csv(TRAIN).drop_columns(["CLASS"])
    pacsv.write_csv(train, tmp_path / "train_no_gold.csv")
    blind = drift(SPEC, tmp_path / "train_no_gold.csv", TEST, id_column="COMMENT_ID", gold=GOLD).estimated_accuracy
    assert blind["calibration"] == {"gold_rows": 0, "temperature": 1.0}
    assert blind["new"]["estimated"] != acc["new"]["estimated"]
