"""Drive the real studio headless: edit, diagnostics, review, save, quit."""
import csv

import numpy as np

from mteach.engine.gold import read_gold_file
from mteach.tui.app import StudioApp
from mteach.tui.components.coverage import CoverageTable
from mteach.tui.components.editor import SpecEditor
from mteach.tui.components.problems import ProblemsList
from mteach.tui.components.review import ReviewPane
from mteach.tui.components.rows import RowsPane


async def settle(app, pilot, wait=0.0):
    if wait:
        await pilot.pause(wait)
    await app.workers.wait_for_complete()
    await pilot.pause()


def table_rules(app):
    t = app.query_one(CoverageTable)
    return {str(t.get_row_at(i)[0]): [str(c) for c in t.get_row_at(i)] for i in range(t.row_count)}


async def type_at_end(app, pilot, text):
    editor = app.query_one(SpecEditor)
    editor.focus()
    editor.cursor_location = editor.document.end
    for ch in text:
        await pilot.press("enter" if ch == "\n" else ch)


async def test_typing_a_rule_updates_the_coverage_table(app_of):
    app = app_of(gold_column="CLASS", gold_map="1=SPAM,0=HAM")
    posted = []
    async with app.run_test(size=(120, 40), message_hook=posted.append) as pilot:
        await settle(app, pilot)
        assert set(table_rules(app)) == {"link", "subscribe", "short", "praise"}
        totals_before = str(app.query_one("#totals").render())
        posted.clear()
        await type_at_end(app, pilot, '\nrule money : text has "free" => SPAM')
        # debounced: nothing is re-applied while typing
        assert not any(isinstance(m, StudioApp.AnalysisReady) for m in posted)
        await settle(app, pilot, 0.6)
        ready = [m for m in posted if isinstance(m, StudioApp.AnalysisReady)]
        assert len(ready) == 1 and ready[0].analysis.evaluated == ["money"]
        rules = table_rules(app)
        # "free" occurs in rows c06, c14, c22: 3/30 = 10%; all SPAM in gold
        assert rules["money"][:3] == ["money", "SPAM", "10.0%"]
        assert rules["money"][5:8] == ["100.0%", "3", "0"]
        assert str(app.query_one("#totals").render()) != totals_before
        assert "[modified]" in app.sub_title


async def test_a_typo_shows_a_diagnostic_at_its_line_and_keeps_the_last_good_state(app_of):
    app = app_of()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        editor = app.query_one(SpecEditor)
        line = editor.text.splitlines().index("# Short reactions.")  # 0-based; the rule is on the next line
        editor.cursor_location = (line + 1, 0)
        editor.focus()
        # `short` -> `short` with a misspelled keyword: unless -> unles
        editor.replace("unles", (line + 1, editor.document.lines[line + 1].index("unless")),
                       (line + 1, editor.document.lines[line + 1].index("unless") + 6))
        await settle(app, pilot, 0.6)
        problems = app.query_one(ProblemsList)
        assert problems.display and problems.option_count >= 1
        assert problems.places[0][0] == line + 2  # 1-based line of the broken rule
        assert str(problems.get_option_at_index(0).prompt).startswith(f"{line + 2}:")
        # marked in the editor, and the coverage pane keeps the last good rules
        assert any(m[0] == line + 1 for m in editor.marks)
        assert set(table_rules(app)) == {"link", "subscribe", "short", "praise"}
        assert "error" in str(app.query_one("#totals").render())
        # selecting the problem moves the cursor there
        editor.cursor_location = (0, 0)
        problems.focus()
        problems.highlighted = 0
        await pilot.press("enter")
        await pilot.pause()
        assert editor.cursor_location[0] == line + 1 and app.focused is editor


async def test_review_three_rows_survives_a_kill_and_resumes(app_of, studio_files, make_session):
    gold_file = studio_files / "mini.gold.csv"
    app = app_of()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        await pilot.press("f5")
        review = app.query_one(ReviewPane)
        assert app.focused is review
        first = []
        for key in ("1", "2", "1"):
            first.append(app.session.id_list[review.current])
            await pilot.press(key)
            await pilot.pause()
        # on disk now, before the app ends (as if it were killed here)
        rows = list(csv.reader(gold_file.open()))
        assert rows[0] == ["id", "label", "reviewer", "time"]
        assert [r[:3] for r in rows[1:]] == [[first[0], "SPAM", "tester"], [first[1], "HAM", "tester"],
                                             [first[2], "SPAM", "tester"]]
        # reviewed labels count as gold at once: the accuracy columns appear
        assert "acc" in [str(c.label) for c in app.query_one(CoverageTable).columns.values()]
        next_id = app.session.id_list[review.current]
    ids, labels = read_gold_file(gold_file, ["SPAM", "HAM"])
    assert ids.to_pylist() == first and labels.tolist() == [0, 1, 0]
    # reopen: the sample resumes after the reviewed rows
    app2 = StudioApp(make_session(), cursor_blink=False, contributions=False, suggestions=False)
    async with app2.run_test(size=(120, 40)) as pilot:
        await settle(app2, pilot)
        review = app2.query_one(ReviewPane)
        assert app2.session.id_list[review.current] == next_id
        assert set(app2.session.review.entries) == set(first)


async def test_bad_gold_lines_are_reported_and_kept(app_of, studio_files):
    gold_file = studio_files / "mini.gold.csv"
    original = "id,label,reviewer,time\nc01,SPAM,a,t\nc02,MAYBE,a,t\nzzz,HAM,a,t\n"
    gold_file.write_text(original)
    app = app_of()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        notes = [n.message for n in app._notifications]
        assert any("MAYBE" in m and "zzz" in m for m in notes)
        await pilot.press("f5", "2")
        await pilot.pause()
    text = gold_file.read_text()
    assert text.startswith(original) and text.count("\n") == 5


async def test_rows_filters_and_explanation(app_of):
    app = app_of(gold_column="CLASS", gold_map="1=SPAM,0=HAM")
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        await pilot.press("f3", "down", "enter")  # rows of the second rule (subscribe)
        await pilot.pause()
        rows = app.query_one(RowsPane)
        assert app.query_one("#tabs").active == "rows"
        a = app.session.last
        assert rows.mode == "rule" and rows.shown == list(np.flatnonzero(a.votes[:, 1] != -1))
        explanation = str(app.query_one("#rows-explain").render())
        assert "subscribe" in explanation and "mini.mt:12" in explanation
        await pilot.press("u")
        await pilot.pause()
        assert rows.shown == list(np.flatnonzero((a.votes == -1).all(axis=1)))
        await pilot.press("c")
        await pilot.pause()
        assert rows.shown == list(np.flatnonzero(a.conflicted))
        await pilot.press("a", "slash", *"song", "enter")
        await pilot.pause()
        assert rows.shown and all("song" in app.session.text_of(i).lower() for i in rows.shown)


async def test_save_is_atomic_and_quit_asks_about_unsaved_edits(app_of, studio_files):
    app = app_of()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        await type_at_end(app, pilot, "# more")
        await pilot.press("ctrl+q")
        await pilot.pause()
        assert app.screen.__class__.__name__ == "ConfirmScreen"
        await pilot.press("escape")
        await pilot.pause()
        assert app.is_running
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert (studio_files / "mini.mt").read_text().endswith("# more")
        assert not list(studio_files.glob(".mini.mt.*.tmp"))
        await pilot.press("ctrl+q")
        await pilot.pause()
    assert app.return_code == 0


async def test_help_opens_with_question_mark_outside_the_editor(app_of):
    app = app_of()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        await pilot.press("f3", "question_mark")
        await pilot.pause()
        assert app.screen.__class__.__name__ == "HelpScreen"
        await pilot.press("escape")
        await pilot.pause()
        assert app.screen.__class__.__name__ != "HelpScreen"


async def test_unparsable_spec_still_opens(make_session, studio_files):
    (studio_files / "mini.mt").write_text("concept x\nlabels A, B\nrule : : =>\n")
    app = StudioApp(make_session(), cursor_blink=False, contributions=False, suggestions=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        assert app.query_one(ProblemsList).option_count >= 1
        assert app.session.last is None


async def test_a_new_spec_file_opens_empty_and_save_creates_it(studio_files):
    from mteach.tui.session import Session
    session = Session.open(studio_files / "new.mt", studio_files / "comments.csv", "COMMENT_ID", reviewer="t")
    app = StudioApp(session, cursor_blink=False, contributions=False, suggestions=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        assert app.query_one(SpecEditor).text == "" and table_rules(app) == {}
        await type_at_end(app, pilot, 'concept c\nlabels A, B\nfield text = "CONTENT"\nrule r : text has "song" => B\n')
        await settle(app, pilot, 0.6)
        assert set(table_rules(app)) == {"r"} and not app.query_one(ProblemsList).display
        await pilot.press("ctrl+s")
        await pilot.pause()
    assert (studio_files / "new.mt").read_text().startswith("concept c\nlabels A, B\n")


def test_long_cells_in_the_rows_table_end_in_an_ellipsis():
    from mteach.tui.components.rows import clip
    assert clip("c01", 12) == "c01"
    assert clip("z13lgffb5w3ddx1ul22qy1wxspy5cpkz504", 12) == "z13lgffb5w3…"
    assert len(clip("x" * 100, 80)) == 80
