"""engine.votes: the one seam verbs get votes through, and its two engines agreeing."""
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from mteach.compiler.checker import load_spec
from mteach.compiler.evaluator import vote_matrix
from mteach.engine.incremental import IncrementalVotes
from mteach.engine.io import open_data
from mteach.engine.votes import LocalEngine, collect_votes, vote_batches
from mteach.errors import DataError

FIXTURES = Path(__file__).parents[1] / "tui" / "fixtures"


@pytest.fixture
def source():
    return open_data(FIXTURES / "comments.csv")


@pytest.fixture
def spec(source):
    return load_spec(FIXTURES / "mini.mt", source.schema)


def test_batches_carry_ids_votes_and_the_columns_asked_for(spec, source):
    table = source.read_all()
    seen = []
    batches = list(vote_batches(spec, source, "COMMENT_ID", columns=("CLASS",), batch_rows=7, progress=seen.append))
    assert [b.num_rows for b in batches] == seen and sum(seen) == table.num_rows and len(batches) > 1
    assert batches[0].table.column_names == ["CONTENT", "COMMENT_ID", "CLASS"]  # rules' columns, id, asked
    all_votes = np.concatenate([b.votes for b in batches])
    assert all_votes.dtype == np.int8 and np.array_equal(all_votes, vote_matrix(spec, table))
    assert pa.concat_arrays([b.ids for b in batches]).to_pylist() == table.column("COMMENT_ID").to_pylist()


def test_collect_votes_is_every_batch_in_order(spec, source):
    whole = collect_votes(spec, source, columns=("CLASS",), batch_rows=5, threads=3)
    assert whole.ids.to_pylist() == list(range(whole.num_rows))  # no id column: row numbers
    assert isinstance(whole.table, pa.Table) and whole.table.num_rows == whole.num_rows
    assert np.array_equal(whole.votes, vote_matrix(spec, source.read_all()))


def test_header_only_file_is_a_data_error(spec, tmp_path):
    empty = tmp_path / "empty.parquet"
    import pyarrow.parquet as pq
    pq.write_table(open_data(FIXTURES / "comments.csv").schema.empty_table(), empty)
    with pytest.raises(DataError, match="header but no rows"):
        collect_votes(spec, empty)


def test_the_studio_cache_is_an_engine_giving_the_same_batches(spec, source):
    local = collect_votes(spec, source, "COMMENT_ID", engine=LocalEngine(threads=2))
    cached = collect_votes(spec, source, "COMMENT_ID", engine=IncrementalVotes(source.read_all(), batch_rows=4))
    assert np.array_equal(local.votes, cached.votes)
    assert local.ids.to_pylist() == cached.ids.to_pylist()
    assert local.table.equals(cached.table)
