"""The studio app: composes the panes and routes their messages; slow work in workers."""
from __future__ import annotations

import re
from pathlib import Path

from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import Footer, Header, TabbedContent, TabPane, TextArea
from textual.worker import get_current_worker

from ..engine.io import write_text_atomic
from ..errors import MteachError, SpecError
from .components.coverage import CoveragePane
from .components.editor import SpecEditor
from .components.help import ConfirmScreen, HelpScreen
from .components.model import ModelPane, hint_problems, train_view
from .components.next import NextPane
from .components.problems import ProblemsList
from .components.review import ReviewPane
from .components.rows import RowsPane
from .session import Analysis, Session, label_model_contributions

DEBOUNCE_S = 0.4
TRAIN_QUIET_S = 3.0  # the Model pane retrains once the checked spec has been quiet this long


class EditorColumn(Vertical):
    """The editor with its problem list: F10 zooms them together."""
    ALLOW_MAXIMIZE = True


class StudioFooter(Footer):
    """The footer with F1 (help, which lists every key) first, then the focused pane's own
    keys, then the app's: at 80 columns the cut-off end is the part the tab titles and help
    repeat. The command palette's key is left to help too (no room for it)."""

    APP_ORDER = ("ctrl+s", "ctrl+q", "f10", "f2", "f3", "f4", "f5", "f6", "f7", "f8")

    def __init__(self) -> None:
        super().__init__(compact=True, show_command_palette=False)

    def compose(self) -> ComposeResult:
        active = self.screen.active_bindings
        keys = list(super().compose())

        def rank(widget) -> tuple:
            key = getattr(widget, "key", None)
            if key == "f1":
                return (0, 0)
            if key in active and active[key].node is not self.app:
                return (1, 0)  # the focused pane's own keys, in their order
            return (2, self.APP_ORDER.index(key) if key in self.APP_ORDER else len(self.APP_ORDER))
        yield from sorted(keys, key=rank)


class StudioApp(App):
    CSS_PATH = "app.tcss"
    TITLE = "mteach studio"
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (100, "-wide")]
    ALLOW_IN_MAXIMIZED_VIEW = "Header, Footer"  # a zoomed pane keeps the title ([modified]) and the keys
    BINDINGS = [
        Binding("ctrl+s", "save", "Save", priority=True),
        Binding("ctrl+q", "quit", "Quit", priority=True),
        Binding("f1", "help", "Help", priority=True),
        Binding("question_mark", "help", "Help", show=False),  # the editor types it: F1 there
        # Priority: the focused widget must not take these first (TextArea binds F6 to
        # "select line", and Enter then replaced the selected rule with a blank line).
        Binding("f2", "pane('editor')", "Editor", priority=True),
        Binding("f3", "pane('coverage')", "Coverage", priority=True),
        Binding("f4", "pane('rows')", "Rows", priority=True),
        Binding("f5", "pane('review')", "Review", priority=True),
        Binding("f6", "pane('problems')", "Problems", show=False, priority=True),
        Binding("f7", "pane('model')", "Model", priority=True),  # the editor's own f7 selects all
        Binding("f8", "pane('next')", "Next", priority=True),
        Binding("f10", "zoom", "Zoom", priority=True),
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
        self._train_timer = None
        self.trained_hash = None  # the spec version the Model pane last trained (or tried)
        self.file = None  # the spec's name as diagnostics write it

    # -- layout --------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="main"):
            with EditorColumn(id="left"):
                yield SpecEditor(self.saved_text, id="editor", cursor_blink=self.cursor_blink)
                yield ProblemsList(id="problems")
            with TabbedContent(id="tabs"):  # each title names its key: the footer has no room for all
                with TabPane("F3 Coverage", id="coverage"):
                    pane = CoveragePane(id="coverage-pane")
                    pane.show_timing = self.timing
                    yield pane
                with TabPane("F4 Rows", id="rows"):
                    yield RowsPane(self.session, id="rows-pane")
                with TabPane("F5 Review", id="review"):
                    yield ReviewPane(self.session, id="review-pane")
                with TabPane("F7 Model", id="model"):
                    yield ModelPane(self.session, id="model-pane")
                with TabPane("F8 Next", id="next"):
                    yield NextPane(id="next-pane")
        yield StudioFooter()

    def on_mount(self) -> None:
        self.sub_title = self.session.spec_path.name
        self.query_one(ProblemsList).display = False
        self.query_one(SpecEditor).focus()
        if self.session.queue_path is not None:
            self.action_pane("review")
        if self.session.sample_of:
            self.notify(f"{self.session.table.num_rows:,} of the {self.session.sample_of:,} rows: a random sample "
                        f"(seed {self.session.seed}) and every reviewed, queued or gold row; "
                        "--max-rows sets how many", title="sample", timeout=10)
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
        if self._train_timer is not None:
            self._train_timer.stop()
        self._timer = self.set_timer(DEBOUNCE_S, self.analyze)

    def analyze(self) -> None:
        self._timer = None
        editor = next(iter(self.query(SpecEditor)), None)
        if editor is None:  # the edit's timer fired while the app was closing
            return
        self.version += 1
        self.run_analysis(editor.text, self.version)

    @work(thread=True, exclusive=True, group="analysis")
    def run_analysis(self, text: str, version: int) -> None:
        worker = get_current_worker()
        try:
            a = self.session.analyze(text, with_contributions=False)
            a.warnings.extend(hint_problems(a.spec, self.session))
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
        self.errors = sum(1 for d in a.warnings if d.severity == "error")
        self.show_problems(a.warnings)
        self.query_one(CoveragePane).show(a)
        rows = self.query_one(RowsPane)
        rows.show(a, None)
        self.query_one(ReviewPane).show(a)
        if self.want_contributions:
            self.run_contributions(a)
        if self.errors == 0 and a.spec.content_hash != self.trained_hash:
            self._train_timer = self.set_timer(TRAIN_QUIET_S, self.train_model)
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
        if msg.replaces:
            # the rule as the editor has it now: from its `rule NAME :` line to the line of its `=>`
            lines = text.split("\n")
            head = re.compile(rf"\s*rule\s+{re.escape(msg.replaces)}\s*:")
            first = next((i for i, line in enumerate(lines) if head.match(line)), None)
            last = None if first is None else next((i for i in range(first, len(lines)) if "=>" in lines[i]), None)
            if last is None:
                self.notify(f"rule {msg.replaces} is no longer in the spec", severity="warning", timeout=4)
                return
            if first and lines[first - 1].lstrip().startswith(("# suggested:", "# fixed:")):
                first -= 1  # the evidence line written with it describes the old rule
            editor.replace(f"{msg.comment}\n{msg.line}", (first, 0), (last, len(lines[last])))
            self.notify(f"rewrote rule {msg.replaces}", timeout=3)
            return
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

    # -- the model ---------------------------------------------------------------------------
    @on(ModelPane.TrainRequested)
    def train_model(self) -> None:
        self._train_timer = None
        a = self.session.last
        if a is None or self.errors:
            self.notify("fix the spec's errors first: no training on a broken spec", severity="warning")
            return
        pane = next(iter(self.query(ModelPane)), None)
        if pane is None:  # the training timer fired while the app was closing: no pane to show it
            return
        self.trained_hash = a.spec.content_hash
        pane.training()
        self.run_training(a.spec, pane.view)

    @work(thread=True, exclusive=True, group="model")
    def run_training(self, spec, previous) -> None:
        try:
            view = train_view(self.session, spec, previous)
        except (MteachError, ValueError) as err:  # e.g. too few covered rows: the pane says why
            if not get_current_worker().is_cancelled:
                self.call_from_thread(self.to_model_pane, "failed", str(err))
            return
        except Exception as err:  # an engine bug must not close the editor with unsaved edits
            self.log.error("training failed", err)
            if not get_current_worker().is_cancelled:
                self.call_from_thread(self.to_model_pane, "failed", f"{type(err).__name__}: {err}")
            return
        if not get_current_worker().is_cancelled:
            self.call_from_thread(self.to_model_pane, "show", view)

    def to_model_pane(self, method: str, *args) -> None:
        """Hand a finished run to the Model pane, on the UI thread; not once the app is closing
        (a run that ends while the panes are taken down has nowhere to show)."""
        for pane in self.query(ModelPane):
            if pane.query("#model-status"):
                getattr(pane, method)(*args)

    @on(ModelPane.HintAdded)
    def hint_added(self, msg: ModelPane.HintAdded) -> None:
        editor = self.query_one(SpecEditor)
        end = editor.document.end
        prefix = "" if editor.text.endswith("\n") or not editor.text else "\n"
        editor.insert(prefix + msg.line + "\n", end)
        self.notify(f"added to the spec: {msg.line}", timeout=4)

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
        except (OSError, MteachError) as err:
            self.notify(f"could not write {self.session.review.path}: {err}", severity="error")
            return
        a = self.session.restat()
        if a is not None:
            self.query_one(CoveragePane).show(a, self.errors)
            self.query_one(RowsPane).show(a, a.contributions)
        self.query_one(ReviewPane).confirmed()

    @on(ReviewPane.UndoRequested)
    def undo_label(self) -> None:
        try:
            row = self.session.undo()
        except (OSError, MteachError) as err:
            self.notify(f"could not write {self.session.review.path}: {err}", severity="error")
            return
        if row is None:
            self.notify("no label of this session to undo", timeout=2)
            return
        a = self.session.restat()
        if a is not None:
            self.query_one(CoveragePane).show(a, self.errors)
            self.query_one(RowsPane).show(a, a.contributions)
        self.query_one(ReviewPane).undone(row)

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
        zoomed = self.screen.maximized is not None
        if zoomed:  # while zoomed, an F-key zooms the pane it goes to
            self.screen.minimize()
        if name == "editor":
            target = self.query_one(SpecEditor)
        elif name == "problems":
            target = self.query_one(ProblemsList)
            if target.display:
                if target.highlighted is None:  # so that enter picks one, as the help says
                    target.highlighted = 0
            else:
                self.notify("no problems in the spec", timeout=2)
                target = self.focused
        else:
            self.query_one(TabbedContent).active = name
            target = self.query_one({"coverage": "#coverage-table", "rows": "#rows-table",
                                     "review": "#review-pane", "model": "#model-rows",
                                     "next": "#next-table"}[name])
        if target is None:
            return
        target.focus()
        if zoomed:
            self.zoom(target)

    def action_zoom(self) -> None:
        """The focused pane takes the whole screen (the editor with its problems, a tab's
        whole pane); again: back."""
        if self.screen.maximized is not None:
            self.screen.minimize()
        elif self.focused is not None:
            self.zoom(self.focused)

    def zoom(self, widget) -> None:
        """Maximize the pane holding ``widget`` (Textual's own choice would be the whole
        tab set for a focusable pane such as Review)."""
        panes = (EditorColumn, CoveragePane, RowsPane, ReviewPane, ModelPane, NextPane)
        pane = next((w for w in (widget, *widget.ancestors) if isinstance(w, panes)), widget)
        self.screen.maximize(pane, container=False)


def run(session: Session) -> None:
    StudioApp(session).run()
