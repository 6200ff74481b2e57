"""`verify` streams (issue 11): the data re-applied batch by batch and compared with the
ledger read in step, a row group at a time; the label model refitted on vote-pattern counts.
The report equals the one from every row at once: same counts, notes and first differences."""
from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mteach.engine import ledger as led, verify
from mteach.engine.gold import GoldRequest


@pytest.fixture
def long_ledger(repo, tmp_path, kit, monkeypatch):
    """A ledger of 66 rows in row groups of 8: 9 rows no rule covers first, then the rows three
    times over (every id repeated), gold for some ids only; and the data it was made from."""
    root, spec_path, _, _, _ = repo
    rows = [(f"n{i}", "what a voice") for i in range(9)] + kit.ROWS * 3
    data = tmp_path / "long.csv"
    kit.write_csv(data, rows)
    gold = tmp_path / "gold.csv"
    gold.write_text("id,label\nr1,SPAM\nr2,HAM\nr7,SPAM\nn3,HAM\n", encoding="utf-8")
    monkeypatch.setattr(led, "LEDGER_ROW_GROUP", 8)
    out = tmp_path / "ledger.parquet"
    led.label_data(spec_path, data, out, "id", gold=GoldRequest(file=str(gold)), batch_rows=5)
    assert pq.ParquetFile(out).metadata.num_row_groups == 9
    return root, out, data, rows


def _both(out, data, root, limit, batch_rows):
    """(streamed: the ledger opened without its rows, read a batch at a time;
    in memory: the whole ledger read and every row compared in one batch)."""
    streamed = verify.verify_ledger(led.open_ledger(out), data, repo=root, limit=limit, batch_rows=batch_rows)
    whole = verify.verify_ledger(led.read_ledger(out), data, repo=root, limit=limit, batch_rows=1 << 20)
    return streamed.to_dict(), whole.to_dict()


@pytest.mark.parametrize("batch_rows", [3, 8, 50])
def test_a_ledger_verified_batch_by_batch_is_identical(long_ledger, batch_rows):
    root, out, data, _ = long_ledger
    streamed, whole = _both(out, data, root, 20, batch_rows)
    assert streamed == whole and streamed["identical"] and streamed["rows"] == 66


@pytest.mark.parametrize("batch_rows", [3, 7])
def test_differences_found_batch_by_batch_are_those_of_all_rows(long_ledger, tmp_path, kit, batch_rows):
    root, out, _, rows = long_ledger
    # rows change in several batches: votes of several rules differ, and labels
    changed = [(i, {"r6": "hello there", "r14": "song", "r2": "buy it http://x.example"}.get(i, t)) for i, t in rows]
    data = tmp_path / "changed.csv"
    kit.write_csv(data, changed)
    for limit in (4, 100):
        streamed, whole = _both(out, data, root, limit, batch_rows)
        assert streamed == whole
        assert streamed["n_vote_differences"] > 4 and streamed["n_label_differences"] > 0
        assert len(streamed["vote_differences"]) == min(limit, streamed["n_vote_differences"])
    # the first differences are listed rule by rule, each rule's in row order
    rules = [d["rule"] for d in whole["vote_differences"]]
    assert len(set(rules)) > 1 and rules == sorted(rules, key=led.read_ledger(out).rule_names.index)


def test_rows_that_do_not_line_up_are_said_as_before(long_ledger, tmp_path, kit):
    root, out, _, rows = long_ledger
    for name, changed in (("shorter", rows[:-3]), ("longer", rows + rows[:2]),
                          ("reordered", rows[:20] + rows[21:22] + rows[20:21] + rows[22:])):
        data = tmp_path / f"{name}.csv"
        kit.write_csv(data, changed)
        streamed, whole = _both(out, data, root, 20, 4)
        assert streamed == whole and not streamed["identical"]
        assert "the rows differ: the ledger has 66 rows" in streamed["notes"][-1], name


def test_a_tampered_ledger_is_refused_before_any_work(long_ledger, tmp_path):
    _, out, _, _ = long_ledger
    table = pq.read_table(out)
    labels = table.column("label").to_pylist()
    labels[40] = "HAM" if labels[40] == "SPAM" else "SPAM"
    forged = tmp_path / "forged.parquet"
    pq.write_table(table.set_column(table.column_names.index("label"), "label",
                                    pa.array(labels, pa.string())).replace_schema_metadata(
        table.schema.metadata), forged, row_group_size=8)
    with pytest.raises(led.LedgerError, match="modified after it was written"):
        led.open_ledger(forged, batch_rows=5)
    opened = led.open_ledger(out, batch_rows=5)  # the untouched one opens; its rows are read only when asked
    assert "table" not in opened.__dict__ and opened.table.equals(led.read_ledger(out).table)
