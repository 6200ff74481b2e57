"""The studio app: composes the panes and routes their messages; slow work in workers."""
from __future__ import annotations

from pathlib import Path

from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import Footer, Header, TabbedContent, TabPane, TextArea
from textual.worker import get_current_worker

from ..engine.io import write_text_atomic
from ..errors import SpecError
from .components.coverage import CoveragePane
from .components.editor import SpecEditor
from .components.help import ConfirmScreen, HelpScreen
from .components.next import NextPane
from .components.problems import ProblemsList
from .components.review import ReviewPane
from .components.rows import RowsPane
from .session import Analysis, Session, label_model_contributions

DEBOUNCE_S = 0.4


class StudioApp(App):
    CSS_PATH = "app.tcss"
    TITLE = "mteach studio"
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (100, "-wide")]
    BINDINGS = [
        Binding("ctrl+s", "save", "Save", priority=True),
        Binding("ctrl+q", "quit", "Quit", priority=True),
        Binding("f1", "help", "Help", priority=True),
        Binding("question_mark", "help", "Help", show=False),
        Binding("f2", "pane('editor')", "Editor"),
        Binding("f3", "pane('coverage')", "Coverage"),
        Binding("f4", "pane('rows')", "Rows"),
        Binding("f5", "pane('review')", "Review"),
        Binding("f6", "pane('problems')", "Problems", show=False),
        Binding("f8", "pane('next')", "Next"),
        Binding("f10", "zoom", "Zoom"),
    ]

    class AnalysisReady(Message):
        def __init__(self, version: int, analysis: Analysis) -> None:
            super().__init__()
            self.version = version
            self.analysis = analysis

    class SpecInvalid(Message):
        def __init__(self, version: int, diagnostics: list) -> None:
            super().__init__()
            self.version = version
            self.diagnostics = diagnostics

    def __init__(self, session: Session, cursor_blink: bool = True, contributions: bool = True,
                 timing: bool = True, suggestions: bool = True):
        super().__init__()
        self.want_suggestions = suggestions  # the Next pane's background refresh
        self.timing = timing
        self.session = session
        self.cursor_blink = cursor_blink
        self.want_contributions = contributions
        self.saved_text = session.read_spec_text()
        self.version = 0
        self.errors = 0
        self._timer = None
        self.file = None  # the spec's name as diagnostics write it

    # -- layout --------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="main"):
            with Vertical(id="left"):
                yield SpecEditor(self.saved_text, id="editor", cursor_blink=self.cursor_blink)
                yield ProblemsList(id="problems")
            with TabbedContent(id="tabs"):
                with TabPane("Coverage", id="coverage"):
                    pane = CoveragePane(id="coverage-pane")
                    pane.show_timing = self.timing
                    yield pane
                with TabPane("Rows", id="rows"):
                    yield RowsPane(self.session, id="rows-pane")
                with TabPane("Review", id="review"):
                    yield ReviewPane(self.session, id="review-pane")
                with TabPane("Next", id="next"):
                    yield NextPane(id="next-pane")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.sub_title = self.session.spec_path.name
        self.query_one(ProblemsList).display = False
        self.query_one(SpecEditor).focus()
        problems = self.session.review.problems
        if problems:
            self.notify(f"{self.session.review.path.name}: {problems.describe()}", title="gold file",
                        severity="warning", timeout=15)
        self.analyze()

    # -- editing -------------------------------------------------------------------------
    @property
    def dirty(self) -> bool:
        return self.query_one(SpecEditor).text != self.saved_text

    @on(TextArea.Changed, "#editor")
    def edited(self) -> None:
        self.sub_title = self.session.spec_path.name + (" [modified]" if self.dirty else "")
        if self._timer is not None:
            self._timer.stop()
        self._timer = self.set_timer(DEBOUNCE_S, self.analyze)

    def analyze(self) -> None:
        self._timer = None
        self.version += 1
        self.run_analysis(self.query_one(SpecEditor).text, self.version)

    @work(thread=True, exclusive=True, group="analysis")
    def run_analysis(self, text: str, version: int) -> None:
        worker = get_current_worker()
        try:
            a = self.session.analyze(text, with_contributions=False)
        except SpecError as err:
            if not worker.is_cancelled:
                self.post_message(self.SpecInvalid(version, list(err.diagnostics)))
            return
        except Exception as err:  # an engine bug must not close the editor with unsaved edits
            self.log.error("analysis failed", err)
            if not worker.is_cancelled:
                self.call_from_thread(self.notify, f"analysis failed: {type(err).__name__}: {err}",
                                      title="mteach", severity="error", timeout=10)
            return
        if not worker.is_cancelled:
            self.post_message(self.AnalysisReady(version, a))

    def on_studio_app_analysis_ready(self, msg: AnalysisReady) -> None:
        if msg.version != self.version:
            return
        a = msg.analysis
        self.session.accept(a)
        self.errors = 0
        self.show_problems(a.warnings)
        self.query_one(CoveragePane).show(a)
        rows = self.query_one(RowsPane)
        rows.show(a, None)
        self.query_one(ReviewPane).show(a)
        if self.want_contributions:
            self.run_contributions(a)
        if self.want_suggestions:
            self.run_guidance(a)

    def on_studio_app_spec_invalid(self, msg: SpecInvalid) -> None:
        if msg.version != self.version:
            return
        self.errors = sum(1 for d in msg.diagnostics if d.severity == "error")
        self.show_problems(msg.diagnostics)
        if self.session.last is not None:  # keep the last good state, say it is stale
            self.query_one("#totals").update(CoveragePane.totals(self.session.last, self.errors, self.timing))

    def show_problems(self, diagnostics: list) -> None:
        file = self._file_name()
        self.query_one(ProblemsList).show(diagnostics, file)
        marks = [(d.span.line - 1, d.span.column - 1, d.span.end_line - 1, d.span.end_column - 1, d.severity)
                 for d in diagnostics if d.span is not None and d.span.file == file]
        self.query_one(SpecEditor).set_diagnostics(marks)

    def _file_name(self) -> str:
        from ..compiler.checker import _display
        return _display(self.session.spec_path)

    @work(thread=True, exclusive=True, group="label-model")
    def run_contributions(self, a: Analysis) -> None:
        contributions = label_model_contributions(a.spec, a.votes)
        if contributions is not None and not get_current_worker().is_cancelled:
            self.call_from_thread(self._set_contributions, a, contributions)

    def _set_contributions(self, a: Analysis, contributions) -> None:
        if self.session.last is a:
            a.contributions = contributions
            self.query_one(RowsPane).set_contributions(contributions)

    @work(thread=True, exclusive=True, group="guidance")
    def run_guidance(self, a: Analysis) -> None:
        try:
            g = self.session.guide(a)
        except Exception as err:  # suggestions are a help: never take the editor down
            self.log.error("suggestions failed", err)
            return
        if not get_current_worker().is_cancelled:
            self.call_from_thread(self._set_guidance, a, g)

    def _set_guidance(self, a: Analysis, g) -> None:
        if self.session.last is not a:
            return
        first = self.session.guidance is None
        self.session.guidance = g
        covered = int((a.votes != -1).any(axis=1).sum()) if a.votes.size else 0
        gold = self.session.gold(a.spec.labels)
        evidence = ("evidence: " + ", ".join(filter(None, [
            f"gold on {int((gold != -1).sum()):,} rows" if gold is not None else "",
            f"the label model on {covered:,} covered rows" if covered else ""]))
            if covered or gold is not None else
            "no rule votes yet and no gold: suggestions come from the data's own structure")
        self.query_one(NextPane).show(g.suggestions, evidence)
        review = self.query_one(ReviewPane)
        if first and review.mode == "ranked":
            review.advance()  # the ranked order has arrived: start from its top (later ones
            # take effect at the next row, so the row being read does not change under the expert)

    @on(NextPane.InsertRule)
    def insert_rule(self, msg: NextPane.InsertRule) -> None:
        editor = self.query_one(SpecEditor)
        text = editor.text
        addition = ("" if text.endswith("\n") or not text else "\n") + f"{msg.comment}\n{msg.line}\n"
        end = editor.document.end
        editor.insert(addition, end)
        self.notify(f"inserted: {msg.line}", timeout=3)

    @on(NextPane.ShowRows)
    def show_rows(self, msg: NextPane.ShowRows) -> None:
        self.query_one(RowsPane).show_picked(msg.rows, msg.title)
        self.action_pane("rows")

    @on(ProblemsList.Selected)
    def goto_problem(self, msg: ProblemsList.Selected) -> None:
        self.goto(msg.line, msg.column)

    def goto(self, line: int, column: int = 1) -> None:
        editor = self.query_one(SpecEditor)
        editor.cursor_location = (max(line - 1, 0), max(column - 1, 0))
        editor.scroll_cursor_visible(center=True)
        editor.focus()

    # -- coverage, rows, review ------------------------------------------------------------
    @on(CoveragePane.RuleChosen)
    def rule_chosen(self, msg: CoveragePane.RuleChosen) -> None:
        a = self.session.last
        if a is None or msg.index >= len(a.spec.rules):
            return
        if msg.show_rows:
            self.query_one(RowsPane).show_rule(msg.index)
            self.action_pane("rows")
        else:
            self.goto(a.spec.rules[msg.index].rule.span.line, a.spec.rules[msg.index].rule.span.column)

    @on(ReviewPane.Labelled)
    def labelled(self, msg: ReviewPane.Labelled) -> None:
        try:
            self.session.record(msg.row, msg.label)
        except OSError as err:
            self.notify(f"could not write {self.session.review.path}: {err}", severity="error")
            return
        a = self.session.restat()
        if a is not None:
            self.query_one(CoveragePane).show(a, self.errors)
            self.query_one(RowsPane).show(a, a.contributions)
        self.query_one(ReviewPane).confirmed()

    # -- actions ---------------------------------------------------------------------------
    def action_save(self) -> None:
        text = self.query_one(SpecEditor).text
        try:
            write_text_atomic(self.session.spec_path, text)
        except Exception as err:
            self.notify(f"could not save {self.session.spec_path}: {err}", severity="error")
            return
        self.saved_text = text
        self.sub_title = self.session.spec_path.name
        self.notify(f"saved {self.session.spec_path.name}", timeout=2)

    async def action_quit(self) -> None:
        if not self.dirty:
            self.exit()
            return

        def answer(choice: str | None) -> None:
            if choice == "save":
                self.action_save()
                self.exit()
            elif choice == "discard":
                self.exit()

        self.push_screen(ConfirmScreen(f"{self.session.spec_path.name} has unsaved edits."), answer)

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def action_pane(self, name: str) -> None:
        if name == "editor":
            self.query_one(SpecEditor).focus()
            return
        if name == "problems":
            problems = self.query_one(ProblemsList)
            if problems.display:
                problems.focus()
            return
        self.query_one(TabbedContent).active = name
        target = {"coverage": "#coverage-table", "rows": "#rows-table", "review": "#review-pane",
                  "next": "#next-table"}[name]
        self.query_one(target).focus()

    def action_zoom(self) -> None:
        if self.screen.maximized is not None:
            self.screen.minimize()
        elif self.focused is not None:
            self.screen.maximize(self.focused)


def run(session: Session) -> None:
    StudioApp(session).run()
