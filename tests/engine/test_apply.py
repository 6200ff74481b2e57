"""apply: the vote matrix for Parquet, CSV and JSONL; the rules table in the output's
metadata; bounded batches; identical results for any batch size and thread count;
never a half-written output."""
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import mteach
from mteach.engine.votes import vote_batches
from mteach.engine.io import open_data
from mteach.errors import DataError, SpecError

SPEC = ('concept spam "spam"\nlabels SPAM, HAM\nfield text = "body"\nfield n = "n"\n'
        '# Buying words.\nrule buy : text has any("buy", "free") => SPAM confidence 0.8\n'
        'rule song : text has "song" unless text has "buy" => HAM\n'
        'rule big : n > 100 => SPAM\n'
        'rule shout : upper_ratio(text) > 0.5 and words(text) >= 2 => SPAM\n')

WORDS = ["buy", "free", "song", "hello", "BUY", "NOW", "nice", "the", "über", "18+"]


def make_table(rows=1000, seed=0):
    rng = np.random.default_rng(seed)
    body = [" ".join(rng.choice(WORDS, size=rng.integers(0, 6))) if i % 17 else None for i in range(rows)]
    return pa.table({"id": pa.array([f"r{i}" for i in range(rows)]), "body": pa.array(body, pa.string()),
                     "n": pa.array([int(x) if i % 13 else None for i, x in enumerate(rng.integers(0, 200, rows))],
                                   pa.int64())})


@pytest.fixture
def spec_path(tmp_path):
    p = tmp_path / "spec.mt"
    p.write_text(SPEC)
    return p


def write_all(table, folder):
    pq.write_table(table, folder / "d.parquet")
    import pyarrow.csv as pacsv
    pacsv.write_csv(table, folder / "d.csv")
    with open(folder / "d.jsonl", "w") as f:
        for row in table.to_pylist():
            f.write(json.dumps(row) + "\n")
    return [folder / "d.parquet", folder / "d.csv", folder / "d.jsonl"]


def test_same_votes_for_parquet_csv_jsonl_and_in_memory(spec_path, tmp_path):
    table = make_table(300)
    expected = mteach.apply_table(mteach.load_spec(spec_path, table.schema), table)
    assert (expected != -1).any(axis=0).all()  # every rule fires somewhere
    for data in write_all(table, tmp_path):
        out = tmp_path / f"votes_{data.suffix[1:]}.parquet"
        result = mteach.apply_file(spec_path, data, out, id_column="id")
        ids, votes, rules, run = mteach.read_votes(out)
        assert result.rows == 300 and ids.to_pylist() == table.column("id").to_pylist()
        np.testing.assert_array_equal(votes, expected, err_msg=str(data))
        assert result.coverage.tolist() == (expected != -1).sum(axis=0).tolist()


def test_output_file_holds_rules_table_and_run(spec_path, tmp_path):
    table = make_table(50)
    pq.write_table(table, tmp_path / "d.parquet")
    out = tmp_path / "v.parquet"
    mteach.apply_file(spec_path, tmp_path / "d.parquet", out)
    written = pq.read_table(out)
    assert written.column_names == ["row", "buy", "song", "big", "shout"]
    assert [f.type for f in written.schema][1:] == [pa.int8()] * 4
    assert written.column("row").to_pylist() == list(range(50))  # no --id: row numbers
    ids, votes, rules, run = mteach.read_votes(out)
    assert votes.dtype == np.int8 and set(np.unique(votes)) <= {-1, 0, 1}
    r = rules.to_pylist()
    assert [x["rule"] for x in r] == ["buy", "song", "big", "shout"]
    assert r[0]["label"] == "SPAM" and r[0]["line"] == 6 and r[0]["column"] == 1
    assert r[0]["description"] == "Buying words." and r[0]["confidence"] == 0.8
    assert r[0]["source"] == 'rule buy : text has any("buy", "free") => SPAM confidence 0.8'
    assert r[0]["file"].endswith("spec.mt")
    assert run["labels"] == ["SPAM", "HAM"] and len(run["spec_hash"]) == 64 and run["id_column"] == "row"


@pytest.mark.parametrize("batch_rows,threads", [(1, 1), (7, 3), (64, 2), (1000, 4), (100_000, 1)])
def test_identical_for_any_batch_size_and_threads(spec_path, tmp_path, batch_rows, threads):
    table = make_table(200, seed=3)
    paths = write_all(table, tmp_path)
    expected = mteach.apply_table(mteach.load_spec(spec_path, table.schema), table)
    for data in paths[:2] if batch_rows > 1 else paths[:1]:
        out = tmp_path / "v.parquet"
        mteach.apply_file(spec_path, data, out, "id", batch_rows=batch_rows, threads=threads)
        ids, votes, _, _ = mteach.read_votes(out)
        np.testing.assert_array_equal(votes, expected)
        assert ids.to_pylist() == table.column("id").to_pylist()


def test_batches_are_bounded_and_streamed(spec_path, tmp_path, monkeypatch):
    """Batches never exceed --batch-rows, and at most threads + 1 are held at once."""
    table = make_table(500)
    pq.write_table(table, tmp_path / "d.parquet", row_group_size=50)
    for data in write_all(table, tmp_path)[:2]:
        source = open_data(data)
        sizes = [b.num_rows for b in source.batches(batch_rows=32)]
        assert max(sizes) <= 32 and sum(sizes) == 500
    source = open_data(tmp_path / "d.parquet")
    spec = mteach.load_spec(spec_path, source.schema)
    pulled = []
    real = source.batches

    def counting(*a, **k):
        for b in real(*a, **k):
            pulled.append(b.num_rows)
            yield b
    monkeypatch.setattr(source, "batches", counting)
    threads = 2
    stream = vote_batches(spec, source, None, batch_rows=10, threads=threads)
    next(stream)
    assert len(pulled) <= threads + 1
    held = []
    for _ in stream:
        held.append(len(pulled))
    assert len(pulled) == 50


def test_nulls_in_text_abstain_not_crash(spec_path, tmp_path):
    data = tmp_path / "d.csv"
    data.write_text('id,body,n\n1,,5\n2,buy it,\n3,"",\n')
    out = tmp_path / "v.parquet"
    mteach.apply_file(spec_path, data, out, "id")
    _, votes, _, _ = mteach.read_votes(out)
    assert votes.tolist() == [[-1, -1, -1, -1], [0, -1, -1, -1], [-1, -1, -1, -1]]


def test_failure_leaves_no_output_and_keeps_a_previous_one(spec_path, tmp_path):
    table = make_table(200)
    ids = table.column("id").to_pylist()
    ids[150] = None  # a null id in a late batch: the error comes after batches were written
    bad = table.set_column(0, "id", pa.array(ids))
    pq.write_table(bad, tmp_path / "bad.parquet")
    out = tmp_path / "v.parquet"
    with pytest.raises(DataError, match="row 151 has no value in the id column 'id'"):
        mteach.apply_file(spec_path, tmp_path / "bad.parquet", out, "id", batch_rows=10)
    assert not out.exists()
    pq.write_table(table, tmp_path / "good.parquet")
    mteach.apply_file(spec_path, tmp_path / "good.parquet", out, "id")
    before = out.read_bytes()
    with pytest.raises(DataError):
        mteach.apply_file(spec_path, tmp_path / "bad.parquet", out, "id", batch_rows=10)
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.parquet", "good.parquet", "spec.mt", "v.parquet"]


def test_header_only_and_missing_id_column(spec_path, tmp_path):
    (tmp_path / "h.csv").write_text("id,body,n\n")
    with pytest.raises(DataError, match="header but no rows"):
        mteach.apply_file(spec_path, tmp_path / "h.csv", tmp_path / "v.parquet")
    assert not (tmp_path / "v.parquet").exists()
    (tmp_path / "d.csv").write_text("id,body,n\n1,a,2\n")
    with pytest.raises(DataError, match="no id column 'ID' — did you mean id"):
        mteach.apply_file(spec_path, tmp_path / "d.csv", tmp_path / "v.parquet", id_column="ID")


def test_spec_loaded_without_schema_is_checked_against_the_data(spec_path, tmp_path):
    """A type mismatch or a missing column is a SpecError naming the spec line, not a crash."""
    spec = mteach.load_spec(spec_path)  # no schema: types unknown
    wrong = pa.table({"body": pa.array([1, 2]), "n": pa.array([1, 2])})
    with pytest.raises(SpecError, match="body.* is not|text is a number field"):
        mteach.apply_table(spec, wrong)
    with pytest.raises(SpecError, match='column "n" is not in the data'):
        mteach.apply_table(spec, pa.table({"body": ["a"]}))
    ok = pa.table({"body": ["buy"], "n": pa.array([1], pa.int64())})
    assert mteach.apply_table(spec, ok).tolist() == [[0, -1, -1, -1]]
    pq.write_table(wrong, tmp_path / "w.parquet")
    with pytest.raises(SpecError):
        mteach.apply_file(spec, tmp_path / "w.parquet", tmp_path / "v.parquet")
    assert not (tmp_path / "v.parquet").exists()


def test_rules_table_api(spec_path):
    t = mteach.rules_table(mteach.load_spec(spec_path))
    assert t.column_names == ["rule", "label", "file", "line", "column", "source", "description", "confidence"]
    assert t.column("confidence").to_pylist() == [0.8, None, None, None]


def test_read_votes_rejects_other_files(tmp_path):
    pq.write_table(pa.table({"a": [1]}), tmp_path / "x.parquet")
    with pytest.raises(DataError, match="not a vote file"):
        mteach.read_votes(tmp_path / "x.parquet")
    (tmp_path / "y.parquet").write_text("nope")
    with pytest.raises(DataError, match="cannot read the vote file"):
        mteach.read_votes(tmp_path / "y.parquet")
