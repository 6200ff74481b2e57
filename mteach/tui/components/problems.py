"""The problems list: each diagnostic as line:col, selecting one moves the editor's cursor."""
from __future__ import annotations

from rich.text import Text
from textual.message import Message
from textual.widgets import OptionList
from textual.widgets.option_list import Option


class ProblemsList(OptionList):
    DEFAULT_CSS = """
    ProblemsList { height: auto; max-height: 7; }
    """

    class Selected(Message):
        """The expert picked a diagnostic: go to (line, column), both 1-based."""
        def __init__(self, line: int, column: int) -> None:
            super().__init__()
            self.line = line
            self.column = column

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.places: list = []

    def show(self, diagnostics: list, file: str) -> None:
        """List the diagnostics (``mteach.errors.Diagnostic``) of the edited file first."""
        self.clear_options()
        self.places = []
        ordered = sorted(diagnostics, key=lambda d: (d.span is None or d.span.file != file,
                                                     d.span.line if d.span else 0, d.span.column if d.span else 0))
        options = []
        for d in ordered:
            sev_style = "bold red" if d.severity == "error" else "bold yellow"
            t = Text()
            if d.span is not None:
                where = f"{d.span.line}:{d.span.column}" if d.span.file == file else str(d.span)
                t.append(f"{where} ", style="bold")
            t.append(f"{d.severity}: ", style=sev_style)
            t.append(d.message)
            if d.hint:
                t.append(f"  ({d.hint})", style="dim")
            options.append(Option(t))
            self.places.append((d.span.line, d.span.column) if d.span is not None and d.span.file == file else None)
        if options:
            self.add_options(options)
        self.display = bool(options)
        self.border_title = f"problems ({len(options)})"

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        place = self.places[event.option_index] if event.option_index < len(self.places) else None
        if place is not None:
            self.post_message(self.Selected(*place))
