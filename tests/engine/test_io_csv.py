"""CSV reading: quoted cells holding newlines stay one cell at every read-block size."""
import csv
import io

import pytest

from mteach.engine import io as mio


def _write(path, rows):
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["id", "text"])
    w.writerows(rows)
    path.write_text(buf.getvalue(), encoding="utf-8")


@pytest.mark.parametrize("block", [64, 97, 256, 1000, 4096, 1 << 22])
def test_quoted_newlines_never_make_phantom_rows(tmp_path, monkeypatch, block):
    """Block sizes that end inside a quoted cell (a line of it looks like a row: `7,SPAM`)."""
    monkeypatch.setattr(mio, "BLOCK_BYTES", block)
    rows = [(i, f"first line {i}\n{i + 1},SPAM\n\nlast \"quoted\" line") for i in range(500)]
    path = tmp_path / "d.csv"
    _write(path, rows)
    source = mio.open_data(path)
    table = source.read_all()
    assert table.num_rows == 500
    assert table.column("id").to_pylist() == list(range(500))
    assert table.column("text").to_pylist() == [t for _, t in rows]
    # small batches too: the row count and order are the same whatever the slicing
    assert sum(b.num_rows for b in source.batches(batch_rows=7)) == 500


@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_a_cell_larger_than_the_read_block(tmp_path, monkeypatch, where):
    monkeypatch.setattr(mio, "BLOCK_BYTES", 128)
    big = "word\n" * 2000  # 10 kB, many blocks
    rows = [(i, f"row {i}") for i in range(50)]
    at = {"first": 0, "middle": 25, "last": 49}[where]
    rows[at] = (at, big)
    path = tmp_path / "d.csv"
    _write(path, rows)
    table = mio.open_data(path).read_all()
    assert table.num_rows == 50
    assert table.column("text").to_pylist()[at] == big
    assert table.column("id").to_pylist() == list(range(50))

