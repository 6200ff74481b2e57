"""Snapshots of the studio's main screens (pytest-textual-snapshot; regenerate with
`pytest tests/tui/test_snapshots.py --snapshot-update` and review the SVGs)."""
import pytest

from mteach.tui.app import StudioApp


@pytest.fixture
def studio(make_session):
    def make(**kw):
        kw.setdefault("gold_column", "CLASS")
        kw.setdefault("gold_map", "1=SPAM,0=HAM")
        app = StudioApp(make_session(**kw), cursor_blink=False, contributions=False, timing=False)
        app.animation_level = "none"  # no tab-underline animation: deterministic frames
        return app
    return make


async def idle(pilot):
    """Let the worker finish, then the DataTables size their columns (done when idle)."""
    await pilot.app.workers.wait_for_complete()
    for _ in range(3):
        await pilot.pause(0.05)


def settled(*keys, wait=0.0):
    async def run_before(pilot):
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()
        for key in keys:
            await pilot.press(key)
        if wait:
            await pilot.pause(wait)
        await idle(pilot)
    return run_before


def test_main_screen(snap_compare, studio):
    assert snap_compare(studio(), terminal_size=(120, 40), run_before=settled())


def test_main_screen_at_80x24(snap_compare, studio):
    assert snap_compare(studio(), terminal_size=(80, 24), run_before=settled())


def test_diagnostic_in_place(snap_compare, studio):
    async def run_before(pilot):
        await pilot.app.workers.wait_for_complete()
        editor = pilot.app.query_one("#editor")
        editor.insert("rule bad : text hass \"x\" => SPAM\n", (9, 0))
        await pilot.pause(0.6)
        await idle(pilot)
    assert snap_compare(studio(), terminal_size=(120, 40), run_before=run_before)


def test_rows_of_a_rule_with_explanation(snap_compare, studio):
    assert snap_compare(studio(), terminal_size=(120, 40), run_before=settled("f3", "enter"))


def test_review(snap_compare, studio):
    assert snap_compare(studio(), terminal_size=(120, 40), run_before=settled("f5"))


def test_help(snap_compare, studio):
    assert snap_compare(studio(), terminal_size=(100, 30), run_before=settled("f1"))


def test_next_pane(snap_compare, studio):
    assert snap_compare(studio(), terminal_size=(120, 40), run_before=settled("f8"))


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
def test_zoomed_rows_pane(snap_compare, studio, size):
    """F10 on the rows pane: it is the whole screen between the title and the keys."""
    assert snap_compare(studio(), terminal_size=size, run_before=settled("f3", "enter", "f10"))


def test_zoomed_editor_at_80x24(snap_compare, studio):
    """F10 in the editor at 80x24: long spec lines wrap under their line number."""
    assert snap_compare(studio(), terminal_size=(80, 24), run_before=settled("f10"))
