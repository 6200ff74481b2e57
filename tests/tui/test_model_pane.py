"""The studio's Model pane: background training, hints added from a row, bad input."""
import csv
import shutil
import threading
from pathlib import Path

import pytest
from textual.worker import WorkerCancelled

import mteach.tui.app as app_module
from mteach.compiler.checker import load_spec
from mteach.tui.app import StudioApp
from mteach.tui.components import model as model_module
from mteach.tui.components.editor import SpecEditor
from mteach.tui.components.model import CounterfactualScreen, ModelPane, RowText
from mteach.tui.components.problems import ProblemsList

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def model_files(tmp_path, monkeypatch):
    """The mini spec and its 30 comments, each four times (120 rows, 32 covered by a rule):
    enough to train, and to cross-fit on two halves."""
    shutil.copy(FIXTURES / "mini.mt", tmp_path / "mini.mt")
    rows = list(csv.DictReader((FIXTURES / "comments.csv").open(encoding="utf-8")))
    with (tmp_path / "comments.csv").open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=["COMMENT_ID", "CONTENT", "CLASS"])
        w.writeheader()
        for copy in range(4):
            for row in rows:
                w.writerow({**row, "COMMENT_ID": f"{row['COMMENT_ID']}-{copy}"})
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(app_module, "TRAIN_QUIET_S", 0.1)
    return tmp_path


@pytest.fixture
def studio(model_files):
    from mteach.tui.session import Session

    def make(spec="mini.mt", timing=True):
        session = Session.open(model_files / spec, model_files / "comments.csv", id_column="COMMENT_ID",
                               gold_column="CLASS", gold_map="1=SPAM,0=HAM", reviewer="tester")
        app = StudioApp(session, cursor_blink=False, contributions=False, timing=timing)
        app.animation_level = "none"
        return app
    return make


async def settle(app, pilot, rounds=3):
    """Analysis, then the quiet timer, then training: wait for each in turn."""
    for _ in range(rounds):
        await pilot.pause(0.3)
        try:
            await app.workers.wait_for_complete()
        except WorkerCancelled:  # a newer version of the spec superseded a run
            pass
    await pilot.pause()


async def choose_row(app, pilot, row_id):
    pane = app.query_one(ModelPane)
    await pilot.press("f7")
    assert pane.view is not None, pane.state
    i = app.session.row_of[row_id]
    pane.choose(i)  # the row the test works on; enter on a table line does the same
    app.query_one(RowText).focus()
    await pilot.pause()
    return pane


def spec_text(app):
    return app.query_one(SpecEditor).text


async def test_the_model_trains_in_the_background_and_shows_its_decisions(studio):
    app = studio()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        pane = app.query_one(ModelPane)
        view = pane.view
        assert view is not None, pane.state
        assert view.accuracy is not None and "cross-fitted" in view.accuracy_note
        assert 0.5 <= view.accuracy <= 1.0
        # the table lists the least-sure rows and the disagreements, with ids
        rows = pane.query_one("#model-rows")
        whys = {str(rows.get_row_at(n)[0]) for n in range(rows.row_count)}
        assert "unsure" in whys
        await pilot.press("f7", "enter")
        await pilot.pause()
        i = pane.rows[0]
        assert app.query_one(RowText).text == app.session.text_of(i)
        why = str(pane.query_one("#model-why").render())
        assert "→ SPAM" in why and "→ HAM" in why


async def test_select_a_phrase_and_add_a_more_hint(studio):
    app = studio()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        await choose_row(app, pilot, "c12-0")       # "earn money from home, click here"
        for _ in range(3):
            await pilot.press("shift+right")
        assert app.query_one(RowText).selected_text == "ear"   # widened to the whole word
        await pilot.press("1")                       # 1 = SPAM
        line = 'hint more "earn" => SPAM  # from row c12-0'
        assert spec_text(app).rstrip().endswith(line)
        load_spec(app.session.spec_path, app.session.schema, text=spec_text(app))  # passes check
        await settle(app, pilot)
        assert app.errors == 0
        hints = app.query_one(ModelPane).view.hints
        assert [h["hint"] for h in hints] == [line.split("  #")[0]]
        assert hints[0]["satisfied"] >= 0.5 and hints[0]["before"] is not None
        assert "earn" in str(app.query_one("#model-hints").render())


async def test_edit_a_row_into_a_counterfactual(studio):
    app = studio()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        pane = await choose_row(app, pilot, "c02-0")  # "love this song"
        decided = pane.view.labels[pane.view.label[app.session.row_of["c02-0"]]]
        await pilot.press("e")
        assert isinstance(app.screen, CounterfactualScreen)
        await pilot.press("ctrl+o")                    # unchanged: refused, nothing added
        assert isinstance(app.screen, CounterfactualScreen)
        await pilot.press("end")
        for ch in " subscribe to my channel":
            await pilot.press("space" if ch == " " else ch)
        await pilot.press("ctrl+o")
        await pilot.pause()
        other = "HAM" if decided == "SPAM" else "SPAM"
        line = f'hint "love this song" -> "love this song subscribe to my channel" => {other}  # from row c02-0'
        assert spec_text(app).rstrip().endswith(line)
        load_spec(app.session.spec_path, app.session.schema, text=spec_text(app))
        await settle(app, pilot)
        assert app.errors == 0
        assert [h["hint"] for h in app.query_one(ModelPane).view.hints] == [line.split("  #")[0]]


@pytest.mark.parametrize("line, message", [
    ('hint more "zzqxv" => SPAM', "never occurs in the data"),
    ('hint "love this song" -> "love this song" => SPAM', "identical to its original"),
    ('hint more "song" => SPAMM', "SPAMM"),
])
async def test_bad_hints_are_diagnosed_and_nothing_trains(studio, line, message):
    app = studio()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        trained = app.query_one(ModelPane).view
        editor = app.query_one(SpecEditor)
        editor.insert("\n" + line + "\n", editor.document.end)
        await settle(app, pilot)
        assert app.errors >= 1
        problems = app.query_one(ProblemsList)
        shown = [str(problems.get_option_at_index(n).prompt) for n in range(problems.option_count)]
        hint_line_no = spec_text(app).splitlines().index(line) + 1
        assert any(p.startswith(f"{hint_line_no}:") and "error" in p and message in p for p in shown), shown
        assert app.query_one(ModelPane).view is trained      # no run on the broken spec
        await pilot.press("f7", "t")
        await settle(app, pilot, rounds=1)
        assert app.query_one(ModelPane).view is trained


async def test_a_failed_run_says_why_and_keeps_the_last_good_model(studio):
    app = studio()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        good = app.query_one(ModelPane).view
        assert good is not None
        # two rules that cover 8 of the 120 rows: too few to train on
        editor = app.query_one(SpecEditor)
        text = "\n".join(ln for ln in spec_text(app).splitlines() if not ln.startswith("rule "))
        editor.load_text(text + '\nrule earn : text has "earn" => SPAM\nrule sings : text has "sings" => HAM\n')
        await settle(app, pilot)
        pane = app.query_one(ModelPane)
        assert "training failed" in pane.state and "too few to train on" in pane.state
        assert pane.view is good
        assert "last good model" in str(pane.query_one("#model-status").render())


async def test_typing_is_never_blocked_by_a_training_run(studio, monkeypatch):
    started, release = threading.Event(), threading.Event()
    real = model_module.train_view

    def slow(*args, **kw):
        started.set()
        release.wait(30)
        return real(*args, **kw)
    monkeypatch.setattr(app_module, "train_view", slow)
    app = studio()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause(0.3)
        for _ in range(50):
            if started.is_set():
                break
            await pilot.pause(0.05)
        assert started.is_set()                        # a training run is in progress
        editor = app.query_one(SpecEditor)
        editor.focus()
        editor.cursor_location = editor.document.end
        for ch in "# typed":
            await pilot.press("space" if ch == " " else ch)
        assert spec_text(app).endswith("# typed")       # the keys landed while it trains
        assert not release.is_set()
        release.set()
        await settle(app, pilot)
        assert app.query_one(ModelPane).view is not None


@pytest.mark.parametrize("size", [(120, 40), (80, 24)], ids=["120x40", "80x24"])
def test_model_pane_snapshot(snap_compare, studio, size):
    async def run_before(pilot):
        await settle(pilot.app, pilot)
        await pilot.press("f7")
        await pilot.pause(0.2)
    assert snap_compare(studio(timing=False), terminal_size=size, run_before=run_before)


async def test_the_model_pane_is_usable_at_80x24(studio):
    """At 80x24 the pane shows its accuracy line, several table lines, and a chosen row's text."""
    app = studio()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        await pilot.press("f7")
        await pilot.pause()
        pane = app.query_one(ModelPane)
        table = pane.query_one("#model-rows")
        assert table.region.height - 1 >= min(5, table.row_count)  # header + at least 5 lines
        assert pane.query_one("#model-status").region.height >= 1
        await pilot.press("enter")
        await pilot.pause()
        text = app.query_one(RowText)
        assert text.region.height >= 1 and text.text == app.session.text_of(pane.rows[0])
        assert table.region.height - 1 >= min(3, table.row_count)  # still rows to move between
