"""Gold labels: from an (id, label) file or a data column with a value→label mapping."""
import numpy as np
import pyarrow as pa
import pytest

from mteach.engine.gold import align_gold, gold_from_column, parse_mapping, read_gold_file
from mteach.errors import DataError

LABELS = ["SPAM", "HAM"]


def test_parse_mapping():
    assert parse_mapping("1=SPAM, 0=HAM,", LABELS) == {"1": "SPAM", "0": "HAM"}
    with pytest.raises(DataError, match="did you mean SPAM"):
        parse_mapping("1=SPMA", LABELS)
    with pytest.raises(DataError, match="is not VALUE=LABEL"):
        parse_mapping("1:SPAM", LABELS)
    with pytest.raises(DataError, match="empty"):
        parse_mapping(" , ", LABELS)


def test_gold_from_column_with_mapping_and_nulls():
    table = pa.table({"CLASS": pa.array([1, 0, None, 1], pa.int64())})
    gold = gold_from_column(table, "CLASS", {"1": "SPAM", "0": "HAM"}, LABELS, "d.csv")
    assert gold.tolist() == [0, 1, -1, 0]


def test_gold_from_column_label_names():
    table = pa.table({"y": ["HAM", "SPAM", None]})
    assert gold_from_column(table, "y", {"SPAM": "SPAM", "HAM": "HAM"}, LABELS, "d").tolist() == [1, 0, -1]


def test_gold_column_problems_name_the_place():
    table = pa.table({"CLASS": [1, 2]})
    with pytest.raises(DataError) as info:
        gold_from_column(table, "CLASS", {"1": "SPAM", "0": "HAM"}, LABELS, "d.csv")
    assert "d.csv, column CLASS: row 2 has label '2'" in str(info.value)
    with pytest.raises(DataError, match="no gold column 'CLAS' — did you mean CLASS"):
        gold_from_column(table, "CLAS", {"1": "SPAM"}, LABELS, "d.csv")


def test_gold_file_last_line_wins_and_aligns_by_id(tmp_path):
    path = tmp_path / "gold.csv"
    path.write_text("id,label,reviewer\na,SPAM,x\nb,HAM,x\na,HAM,y\nzz,SPAM,x\n")
    ids, labels = read_gold_file(path, LABELS)
    gold = align_gold(pa.array(["a", "b", "c"]), ids, labels)
    assert gold.tolist() == [1, 1, -1]


def test_gold_file_jsonl_and_int_ids(tmp_path):
    path = tmp_path / "gold.jsonl"
    path.write_text('{"id": 3, "label": "SPAM"}\n{"id": 1, "label": "HAM"}\n')
    ids, labels = read_gold_file(path, LABELS)
    assert align_gold(pa.array([1, 2, 3]), ids, labels).tolist() == [1, -1, 0]


def test_gold_file_problems(tmp_path):
    bad = tmp_path / "g.csv"
    bad.write_text("id,lbl\n1,SPAM\n")
    with pytest.raises(DataError, match="needs columns id and label"):
        read_gold_file(bad, LABELS)
    bad.write_text("id,label\n1,SPAM\n2,SPMA\n")
    with pytest.raises(DataError, match=r"row 2 has label 'SPMA', which is not a label of the spec — did you mean SPAM"):
        read_gold_file(bad, LABELS)
    with pytest.raises(DataError, match="no such data file"):
        read_gold_file(tmp_path / "none.csv", LABELS)
