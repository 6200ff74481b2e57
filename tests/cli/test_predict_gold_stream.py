"""`predict` with gold labels streams (issue 11): predictions written batch by batch and the
evaluation and hint effects summed from each batch's counts equal those computed on every
row at once — with ids repeated, gold missing on some rows, and batches no rule covers."""
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from mteach.cli import main
from mteach.cli.common import Loaded
from mteach.cli.learn import evaluate, predict_streaming, predict_with_gold
from mteach.engine.datasets import open_source
from mteach.engine.gold import GoldRequest
from mteach.engine.train import _feature_table, hint_effects, load_model
from mteach.errors import DataError

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "specs" / "youtube_spam.mt"
TRAIN = ROOT / "data" / "youtube" / "train.csv"
TEST = ROOT / "data" / "youtube" / "test.csv"
COLUMN = GoldRequest(column="CLASS", mapping="1=SPAM,0=HAM")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("model")
    config = tmp / "mteach.toml"
    config.write_text("[features]\nchar_ngrams = false\n[end_model]\nepochs = 2\n")
    assert main(["train", str(SPEC), str(TRAIN), "-o", str(tmp / "m"), "--id", "COMMENT_ID", "--config",
                 str(config), "-q"]) == 0
    return tmp / "m"


def _reordered(model_dir, path, uncovered_first=True, uncovered_rows=None):
    """The test split with the rows no rule covers first (batches of up to 41 rows with no
    covered row) or last, keeping ``uncovered_rows`` of them (None: all), gold missing on every
    7th row, and ids repeated (rows 100-109 repeat the ids of rows 0-9)."""
    table = pacsv.read_csv(TEST)
    model = load_model(model_dir, schema=table.schema)
    covered = (model.votes(table) != -1).any(axis=1)
    uncovered = np.flatnonzero(~covered)[:uncovered_rows]
    assert len(uncovered) >= min(37, uncovered_rows or 37)
    parts = [uncovered, np.flatnonzero(covered)]
    table = table.take(pa.array(np.concatenate(parts if uncovered_first else parts[::-1])))
    gold = table.column("CLASS").to_pylist()
    gold = [None if i % 7 == 3 else g for i, g in enumerate(gold)]
    ids = table.column("COMMENT_ID").to_pylist()
    ids[100:110] = ids[0:10]
    table = table.set_column(table.column_names.index("CLASS"), "CLASS", pa.array(gold, pa.int64()))
    table = table.set_column(table.column_names.index("COMMENT_ID"), "COMMENT_ID", pa.array(ids))
    pacsv.write_csv(table, path)
    return path


@pytest.fixture(scope="module")
def awkward(model_dir, tmp_path_factory):
    return _reordered(model_dir, tmp_path_factory.mktemp("data") / "awkward.csv")


def _in_memory(model, path, gold_request):
    """The scores computed on every row at once (evaluate, hint_effects on the whole table)."""
    source = open_source(path)
    table = source.read_all()
    result = model.predict(table)
    ids = table.column("COMMENT_ID").combine_chunks()
    gold = gold_request.resolve(model.spec.labels, ids, table, path, "COMMENT_ID")
    effects = hint_effects(model, _feature_table(model.spec, table), result["covered"], gold)
    for e in effects:
        del e["flipped_rows"]
    return evaluate(result, model.votes(table), gold, list(model.spec.labels)), effects


def _assert_same_scores(streamed, reference):
    for method, scopes in reference.items():
        for scope, figures in scopes.items():
            got = streamed[method][scope]
            assert got["rows"] == figures["rows"], (method, scope)
            for key, value in figures.items():  # counts exactly; float sums to rounding
                assert got[key] == (value if value is None else pytest.approx(value, rel=1e-12, abs=1e-15)), \
                    (method, scope, key)


@pytest.mark.parametrize("batch_rows", [20, 37, 100_000])
def test_streamed_scores_and_predictions_equal_those_of_all_rows_at_once(model_dir, awkward, tmp_path, batch_rows):
    _same_as_in_memory(model_dir, awkward, tmp_path, batch_rows)


def test_with_fewer_than_ten_uncovered_rows_hints_are_measured_on_all_rows(model_dir, tmp_path):
    """7 rows no rule covers, last: hint satisfaction is on all rows, counted from the first batch."""
    data = _reordered(model_dir, tmp_path / "few.csv", uncovered_first=False, uncovered_rows=7)
    effects = _same_as_in_memory(model_dir, data, tmp_path, 50, rows=336)
    assert all(e["rows"] == 336 for e in effects)


def _same_as_in_memory(model_dir, awkward, tmp_path, batch_rows, rows=370):
    source = open_source(awkward)
    model = load_model(model_dir, schema=source.schema)
    reference, reference_effects = _in_memory(model, awkward, COLUMN)
    out = tmp_path / "pred.parquet"
    n, covered, evaluation, effects = predict_with_gold(model, Loaded(model.spec, source, "COMMENT_ID"), COLUMN,
                                                        out, batch_rows=batch_rows)
    assert n == rows and 0 < covered < rows
    assert reference["combined"]["all"]["rows"] == rows - len(range(3, rows, 7))  # gold missing on every 7th
    _assert_same_scores(evaluation, reference)
    assert len(effects) == len(reference_effects) == 3
    for got, want in zip(effects, reference_effects):
        assert {k: v for k, v in got.items() if k != "mean_change"} == \
            {k: v for k, v in want.items() if k != "mean_change"}
        assert got["mean_change"] == pytest.approx(want["mean_change"], rel=1e-9)
    # the predictions are those predict writes without gold labels, batch by batch
    plain = tmp_path / "plain.parquet"
    predict_streaming(model, Loaded(model.spec, source, "COMMENT_ID"), plain, quiet=True, batch_rows=batch_rows)
    assert pq.read_table(out).equals(pq.read_table(plain))
    if batch_rows < rows:
        assert pq.ParquetFile(out).metadata.row_group(0).num_rows == batch_rows  # written as they came
    return effects


def test_a_gold_file_matched_by_id_batch_by_batch(model_dir, awkward, tmp_path, run):
    """Gold from a file (some ids missing, one given twice: the last line wins) through the CLI:
    the same JSON as the figures computed on all rows."""
    table = pacsv.read_csv(awkward)
    ids, gold = table.column("COMMENT_ID").to_pylist(), table.column("CLASS").to_pylist()
    lines = [(i, "SPAM" if g == 1 else "HAM") for i, g in zip(ids, gold) if g is not None][::2]
    lines.append((lines[0][0], "HAM" if lines[0][1] == "SPAM" else "SPAM"))
    gold_file = tmp_path / "gold.csv"
    pacsv.write_csv(pa.table({"id": [i for i, _ in lines], "label": [lab for _, lab in lines]}), gold_file)
    model = load_model(model_dir, schema=open_source(awkward).schema)
    reference, effects = _in_memory(model, awkward, GoldRequest(file=str(gold_file)))
    code, out, err = run("predict", model_dir, awkward, "--id", "COMMENT_ID", "--gold", gold_file, "--format", "json")
    assert code == 0, err
    got = json.loads(out)
    _assert_same_scores({k: v for k, v in got.items() if k != "hints"}, reference)
    assert [h["flipped"] for h in got["hints"]] == [h["flipped"] for h in effects]
    assert [h["accuracy_without"] for h in got["hints"]] == [h["accuracy_without"] for h in effects]


def test_bad_gold_leaves_no_predictions_behind(model_dir, awkward, tmp_path, run):
    table = pacsv.read_csv(awkward)
    gold = table.column("CLASS").to_pylist()
    gold[300] = 7  # in a late batch: found after earlier batches' predictions were written
    bad = tmp_path / "bad.csv"
    pacsv.write_csv(table.set_column(table.column_names.index("CLASS"), "CLASS", pa.array(gold, pa.int64())), bad)
    out = tmp_path / "pred.parquet"
    code, _, err = run("predict", model_dir, bad, "--id", "COMMENT_ID", "-o", out,
                       "--gold-column", "CLASS", "--gold-map", "1=SPAM,0=HAM")
    assert code == 2 and "row 301 has label '7'" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.csv"]
    nobody = tmp_path / "nobody.csv"
    pacsv.write_csv(pa.table({"id": ["x", "y"], "label": ["SPAM", "HAM"]}), nobody)
    with pytest.raises(DataError, match="none of its ids"):
        source = open_source(awkward)
        model = load_model(model_dir, schema=source.schema)
        predict_with_gold(model, Loaded(model.spec, source, "COMMENT_ID"), GoldRequest(file=str(nobody)), out,
                          batch_rows=50)
    assert not out.exists()
