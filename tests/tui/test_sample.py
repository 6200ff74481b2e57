"""The studio on data past ``--max-rows``: a seeded sample that keeps every reviewed, queued
and gold row, ids that name the same rows as on the full data, read batch by batch."""
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from mteach.cli import main
from mteach.tui.session import Session, studio_rows


def _big_csv(folder, n=500):
    rows = [{"COMMENT_ID": f"r{i:04d}", "CONTENT": ("check http://spam.example" if i % 3 == 0 else
                                                   "love this song" if i % 3 == 1 else f"comment number {i} here"),
             "CLASS": i % 3 == 0} for i in range(n)]
    table = pa.Table.from_pylist(rows)
    pacsv.write_csv(table, folder / "big.csv")
    return table


def test_past_max_rows_a_seeded_sample_with_file_row_numbers(studio_files):
    full = _big_csv(studio_files)
    s = Session.open(studio_files / "mini.mt", studio_files / "big.csv", max_rows=40, reviewer="t", seed=3)
    assert s.table.num_rows == 40 and s.sample_of == 500
    rows = [int(i) for i in s.id_list]
    assert rows == sorted(rows) and len(set(rows)) == 40  # file order, no repeats
    # each id is the row's number in the whole file: its text is that row's text
    assert s.table.column("CONTENT").to_pylist() == [full.column("CONTENT")[r].as_py() for r in rows]
    again = Session.open(studio_files / "mini.mt", studio_files / "big.csv", max_rows=40, reviewer="t", seed=3)
    other = Session.open(studio_files / "mini.mt", studio_files / "big.csv", max_rows=40, reviewer="t", seed=4)
    assert again.id_list == s.id_list and other.id_list != s.id_list
    assert s.analyze(s.read_spec_text()).sample_of == 500


def test_reviewed_and_queued_rows_are_always_held(studio_files):
    _big_csv(studio_files)
    (studio_files / "mini.gold.csv").write_text("id,label,reviewer,time\nr0499,SPAM,t,x\nr0007,HAM,t,x\n")
    (studio_files / "queue.csv").write_text("id\nr0123\n")
    s = Session.open(studio_files / "mini.mt", studio_files / "big.csv", id_column="COMMENT_ID", max_rows=10,
                     reviewer="t", queue=studio_files / "queue.csv")
    assert {"r0499", "r0007", "r0123"} <= set(s.id_list)
    assert 10 < s.table.num_rows <= 13 and not s.review.problems.unknown_ids
    assert s.id_list[s._order[0]] == "r0123"  # the queue opens review on its row


def test_small_data_is_held_whole_and_no_cap_means_every_row(studio_files):
    _big_csv(studio_files, 50)
    whole = Session.open(studio_files / "mini.mt", studio_files / "big.csv", max_rows=50, reviewer="t")
    assert whole.table.num_rows == 50 and whole.sample_of is None
    uncapped = Session.open(studio_files / "mini.mt", studio_files / "big.csv", max_rows=0, reviewer="t")
    assert uncapped.table.num_rows == 50 and uncapped.id_list == [str(i) for i in range(50)]


def test_parquet_is_sampled_in_batches_like_csv(studio_files):
    table = _big_csv(studio_files)
    pq.write_table(table, studio_files / "big.parquet", row_group_size=64)
    from mteach.engine.datasets import open_source
    sampled, ids, total = studio_rows(open_source(studio_files / "big.parquet"), "COMMENT_ID", 25, 0)
    from_csv, csv_ids, _ = studio_rows(open_source(studio_files / "big.csv"), "COMMENT_ID", 25, 0)
    assert total == 500 and sampled.num_rows == 25
    assert ids.equals(csv_ids) and sampled.column("CONTENT").equals(from_csv.column("CONTENT"))


@pytest.mark.parametrize("value", ["-1", "many"])
def test_a_bad_max_rows_is_a_usage_error(studio_files, capsys, value):
    with pytest.raises(SystemExit) as stop:
        main(["tui", "mini.mt", "comments.csv", "--max-rows", value])
    assert stop.value.code == 2 and "not a number of rows" in capsys.readouterr().err


async def test_the_coverage_totals_say_it_is_a_sample(studio_files):
    from mteach.tui.app import StudioApp
    _big_csv(studio_files)
    app = StudioApp(Session.open(studio_files / "mini.mt", studio_files / "big.csv", max_rows=40, reviewer="t"),
                    cursor_blink=False, contributions=False, suggestions=False)
    app.animation_level = "none"
    async with app.run_test(size=(100, 30)) as pilot:
        for _ in range(50):
            await pilot.pause(0.05)
            if app.session.last is not None:
                break
        await pilot.pause(0.1)
        totals = str(app.query_one("#totals").render())
        assert "40 rows" in totals and "a sample of 500" in totals
