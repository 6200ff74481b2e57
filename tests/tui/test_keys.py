"""Every key the help screen documents does what it says, from every pane (issue 9,
items 25 and 26): pilot tests on the real studio."""
import csv

import pytest

from mteach.engine.gold import read_gold_file
from mteach.tui.app import StudioApp
from mteach.tui.components.coverage import CoverageTable
from mteach.tui.components.editor import SpecEditor
from mteach.tui.components.help import HELP
from mteach.tui.components.problems import ProblemsList
from mteach.tui.components.review import ReviewPane
from mteach.tui.components.rows import RowsTable


async def settle(app, pilot, wait=0.0):
    if wait:
        await pilot.pause(wait)
    await app.workers.wait_for_complete()
    await pilot.pause()


PANES = {"f2": SpecEditor, "f3": CoverageTable, "f4": RowsTable, "f5": ReviewPane, "f6": ProblemsList}


def test_the_help_names_every_pane_key():
    assert "F1" in HELP and "F10" in HELP and "u undo the last label" in HELP
    for key in PANES:
        assert key.upper() in HELP


@pytest.mark.parametrize("start", list(PANES))
async def test_pane_keys_help_and_zoom_work_from_every_pane(app_of, start):
    app = app_of()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        editor = app.query_one(SpecEditor)
        editor.insert("rule bad : text has => SPAM\n", (editor.document.end[0], 0))  # shows the problems list
        await settle(app, pilot, 0.6)
        text = editor.text
        await pilot.press(start)
        await pilot.pause()
        assert isinstance(app.focused, PANES[start])
        for key, pane in PANES.items():
            await pilot.press(key)
            await pilot.pause()
            assert isinstance(app.focused, pane), (start, key, app.focused)
            await pilot.press(start)
            await pilot.pause()
            assert isinstance(app.focused, PANES[start]), (start, key, app.focused)
        await pilot.press("f1")
        await pilot.pause()
        assert app.screen.__class__.__name__ == "HelpScreen"
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.focused, PANES[start])
        await pilot.press("f10")
        await pilot.pause()
        zoomed = app.screen.maximized  # the focused pane (or the tabs holding it)
        assert zoomed is not None and (zoomed is app.focused or zoomed in app.focused.ancestors)
        await pilot.press("f10")
        await pilot.pause()
        assert app.screen.maximized is None
        assert editor.text == text  # no key above edited the spec


async def test_f6_then_enter_in_the_editor_jumps_to_the_problem_and_loses_nothing(app_of):
    app = app_of()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        editor = app.query_one(SpecEditor)
        editor.insert("rule bad : text has => SPAM\n", (editor.document.end[0], 0))
        await settle(app, pilot, 0.6)
        text = editor.text
        editor.focus()
        editor.cursor_location = (9, 3)  # inside `rule link`
        await pilot.press("f6")
        await pilot.pause()
        assert isinstance(app.focused, ProblemsList) and editor.selected_text == ""
        await pilot.press("enter")
        await pilot.pause()
        assert editor.text == text
        assert app.focused is editor and editor.cursor_location[0] == text.splitlines().index(
            "rule bad : text has => SPAM")


async def test_f6_without_problems_says_so(app_of):
    app = app_of()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        text = app.query_one(SpecEditor).text
        await pilot.press("f6", "enter")
        await pilot.pause()
        assert isinstance(app.focused, SpecEditor) and app.query_one(SpecEditor).text != text  # enter typed a newline
        assert any("no problems" in n.message for n in app._notifications)


async def test_undo_takes_back_the_last_label_with_a_correction_line(app_of, studio_files, make_session):
    gold_file = studio_files / "mini.gold.csv"
    app = app_of()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        await pilot.press("f5")
        review = app.query_one(ReviewPane)
        first, second = app.session.id_list[review.current], None
        await pilot.press("1")
        await pilot.pause()
        second = app.session.id_list[review.current]
        await pilot.press("2")  # mis-keyed: HAM
        await pilot.pause()
        await pilot.press("u")
        await pilot.pause()
        assert app.session.id_list[review.current] == second  # shown again
        assert second not in app.session.review.entries and first in app.session.review.entries
        await pilot.press("1")  # labelled anew
        await pilot.pause()
        for _ in range(3):  # undo the relabel, then the first label; nothing is left after that
            await pilot.press("u")
            await pilot.pause()
        assert app.session.review.entries == {}
        assert any("no label of this session to undo" in n.message for n in app._notifications)
    rows = list(csv.reader(gold_file.open()))
    assert [r[:2] for r in rows[1:]] == [[first, "SPAM"], [second, "HAM"], [second, ""], [second, "SPAM"],
                                         [second, ""], [first, ""]]  # append-only: the history stays
    ids, labels = read_gold_file(gold_file, ["SPAM", "HAM"])  # commands read it: last line wins, empty = none
    from mteach.engine.gold import align_gold
    import pyarrow as pa
    assert align_gold(pa.array([first, second]), ids, labels).tolist() == [-1, -1]
    # reopened, the file's taken-back labels stay taken back
    app2 = StudioApp(make_session(), cursor_blink=False, contributions=False)
    async with app2.run_test(size=(120, 40)) as pilot:
        await settle(app2, pilot)
        assert app2.session.review.entries == {} and not app2.session.review.problems
