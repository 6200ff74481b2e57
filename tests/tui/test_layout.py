"""The studio at 80x24 and 120x40 (issue 15): the editor shows every rule's `=> LABEL`,
F10 zooms a pane to the whole screen, the footer always shows F1 and help documents
every key the footer shows. Pilot tests on the bundled example, read off the rendered
screen."""
import re
from pathlib import Path

import pytest
from rich.text import Text
from textual.widgets._footer import FooterKey

import mteach.examples
from mteach.tui.app import StudioApp
from mteach.tui.components.editor import SpecEditor
from mteach.tui.components.help import HELP
from mteach.tui.components.problems import ProblemsList
from mteach.tui.session import Session

SIZES = [(80, 24), (120, 40)]
YOUTUBE = Path(mteach.examples.__file__).parent / "youtube"


@pytest.fixture
def bundled(tmp_path, monkeypatch):
    """A studio on a copy of the bundled YouTube spec (long, aligned rule lines) and data."""
    import shutil
    shutil.copytree(YOUTUBE, tmp_path / "youtube")
    monkeypatch.chdir(tmp_path / "youtube")
    spec, data = Path("specs/youtube_spam.mt"), next(Path("data").rglob("train.csv"))

    def make(spec_text=None):
        if spec_text is not None:
            spec.write_text(spec_text, encoding="utf-8")
        session = Session.open(spec, data, id_column="COMMENT_ID", reviewer="tester")
        app = StudioApp(session, cursor_blink=False, contributions=False, suggestions=False, timing=False)
        app.animation_level = "none"
        return app
    return make


async def settle(app, pilot, wait=0.0):
    if wait:
        await pilot.pause(wait)
    await app.workers.wait_for_complete()
    await pilot.pause()


def rendered_lines(editor: SpecEditor) -> list:
    """What the editor draws, one string per screen row (gutter included)."""
    return [editor.render_line(y).text for y in range(editor.size.height)]


def spec_line_on_screen(editor: SpecEditor, line: int) -> str:
    """Spec line ``line`` (1-based) as drawn: its first screen row and its wrapped
    continuations (rows whose gutter is blank), joined."""
    rows = rendered_lines(editor)
    gutter = editor.gutter_width
    for y, row in enumerate(rows):
        if row[:gutter].strip() == str(line):
            parts = [row[gutter:]]
            for more in rows[y + 1:]:
                if more[:gutter].strip():
                    break
                parts.append(more[gutter:])
            return " ".join(p.strip() for p in parts)
    raise AssertionError(f"spec line {line} is not on screen: {rows}")


@pytest.mark.parametrize("size", SIZES)
async def test_the_editor_shows_every_rules_label_without_scrolling_sideways(bundled, size):
    app = bundled()
    async with app.run_test(size=size) as pilot:
        await settle(app, pilot)
        editor = app.query_one(SpecEditor)
        assert editor.max_scroll_x == 0  # nothing is off to the right
        for rule in app.session.last.spec.rules:
            line = rule.rule.span.line
            editor.cursor_location = (line - 1, 0)
            editor.scroll_cursor_visible(center=True)
            await pilot.pause()
            shown = spec_line_on_screen(editor, line)
            assert shown.startswith(f"rule {rule.name}") and f"=> {rule.rule.label}" in shown, (line, shown)
            assert editor.scroll_x == 0


async def test_a_diagnostic_on_a_wrapped_line_keeps_its_spec_line_and_column(bundled):
    bad = 'rule long_one : text has any("alpha", "beta", "gamma", "delta", "epsilon") and text hass "x" => SPAM'
    text = YOUTUBE.joinpath("specs/youtube_spam.mt").read_text(encoding="utf-8") + bad + "\n"
    app = bundled(text)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot, 0.6)
        line = text.splitlines().index(bad) + 1
        column = bad.index("hass") + 1
        assert column > 80  # the error sits on the wrapped part of the line
        problems = app.query_one(ProblemsList)
        assert problems.display
        assert problems.places[0] == (line, column)
        await pilot.press("f6", "enter")
        await pilot.pause()
        editor = app.query_one(SpecEditor)
        assert app.focused is editor and editor.cursor_location == (line - 1, column - 1)
        # the error is marked on the screen row that shows `hass`, on `hass` (the cursor
        # goes to the line's start, so that its own colour does not hide the mark's)
        editor.cursor_location = (line - 1, 0)
        await pilot.pause()
        marked = []
        for y in range(editor.size.height):
            strip = editor.render_line(y)
            marked += [seg.text for seg in strip if seg.style and seg.style.bgcolor
                       and seg.style.bgcolor.triplet and seg.style.bgcolor.triplet.hex == "#5f0000"]
        assert "hass" in "".join(marked), marked


PANE_KEYS = ["f2", "f3", "f4", "f5", "f7", "f8"]


@pytest.mark.parametrize("size", SIZES)
async def test_f10_zooms_every_pane_to_the_whole_screen(bundled, size):
    app = bundled()
    async with app.run_test(size=size) as pilot:
        await settle(app, pilot)
        width, height = size
        for key in PANE_KEYS:
            await pilot.press(key, "f10")
            await pilot.pause()
            zoomed = app.screen.maximized
            assert zoomed is not None and (zoomed is app.focused or zoomed in app.focused.ancestors), key
            # the whole screen between the title row and the footer row
            assert (zoomed.region.width, zoomed.region.height) == (width, height - 2), (key, zoomed.region)
            await pilot.press("f10")
            await pilot.pause()
            assert app.screen.maximized is None
        # an F-key while zoomed moves the zoom to its pane
        await pilot.press("f3", "f10", "f4")
        await pilot.pause()
        assert app.screen.maximized is app.query_one("#rows-pane")
        assert app.screen.maximized.region.width == width


def documented(key: str) -> bool:
    """Whether help names ``key`` (a binding's key, as Textual spells it)."""
    if key.isdigit():
        return "1..k" in HELP
    name = {"slash": "/", "question_mark": "?"}.get(key, key)
    if re.fullmatch(r"f\d+", name):
        name = name.upper()
    return re.search(rf"(^|[\s(]){re.escape(name)}[\s:,)]", Text.from_markup(HELP).plain) is not None


@pytest.mark.parametrize("size", SIZES)
async def test_the_footer_starts_with_help_and_help_documents_every_footer_key(bundled, size):
    app = bundled()
    async with app.run_test(size=size) as pilot:
        await settle(app, pilot)
        for key in PANE_KEYS:
            await pilot.press(key)
            await pilot.pause()
            shown = [k for k in app.screen.query(FooterKey) if k.region.width]
            assert shown[0].key == "f1" and shown[0].region.right <= size[0], key
            for k in app.screen.query(FooterKey):
                assert documented(k.key), (key, k.key, k.description)


def test_help_fits_80_columns():
    widest = max(len(line) for line in Text.from_markup(HELP).plain.splitlines())
    assert widest <= 76  # the help box's inside at 80 columns (border and padding)
