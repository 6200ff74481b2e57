"""The spec editor: a TextArea highlighted from the Lark lexer's tokens, with diagnostics
underlined in place."""
from __future__ import annotations

from dataclasses import replace

from rich.style import Style
from textual.widgets import TextArea
from textual.widgets.text_area import TextAreaTheme

from ...grammar.highlight import highlight

SYNTAX = {
    "mt.statement": Style(color="#F92672", bold=True),
    "mt.keyword": Style(color="#F92672"),
    "mt.definition": Style(color="#A6E22E", bold=True),
    "mt.label": Style(color="#66D9EF", bold=True),
    "mt.function": Style(color="#A6E22E"),
    "mt.name": Style(color="#f8f8f2"),
    "mt.string": Style(color="#E6DB74"),
    "mt.regex": Style(color="#FD971F"),
    "mt.number": Style(color="#AE81FF"),
    "mt.comment": Style(color="#75715E", italic=True),
    "mt.operator": Style(color="#F92672"),
    "mt.punctuation": Style(color="#f8f8f2"),
    "mt.error": Style(color="#ff5f5f", underline=True),
    "mt.diag.error": Style(bgcolor="#5f0000", underline=True),
    "mt.diag.warning": Style(bgcolor="#5f5f00", underline=True),
}


def studio_theme() -> TextAreaTheme:
    base = TextAreaTheme.get_builtin_theme("monokai")
    return replace(base, name="mteach", syntax_styles=dict(SYNTAX))


def _byte_col(line: str, col: int) -> int:
    return len(line[:col].encode("utf-8"))


class SpecEditor(TextArea):
    """TextArea for .mt specs: our own highlighter (TextArea's is tree-sitter only).

    Soft-wrapped, so every rule's ``=> LABEL`` stays in view at any width; wrapping is
    only visual: the gutter numbers spec lines, and the cursor, the diagnostics and the
    problem list's jumps use (line, column) of the text itself."""

    DEFAULT_CSS = """
    SpecEditor { height: 1fr; }
    """

    def __init__(self, text: str = "", cursor_blink: bool = True, **kwargs):
        kwargs.setdefault("show_line_numbers", True)
        kwargs.setdefault("soft_wrap", True)
        kwargs.setdefault("tab_behavior", "indent")
        super().__init__(text, **kwargs)
        self.marks: list = []  # (line0, col0, end_line0, end_col0, severity)
        self.register_theme(studio_theme())
        self.theme = "mteach"
        self.cursor_blink = cursor_blink  # off in tests, so snapshots are deterministic

    def set_diagnostics(self, marks: list) -> None:
        self.marks = list(marks)
        self._build_highlight_map()
        self.refresh()

    def _build_highlight_map(self) -> None:
        """Fill TextArea's highlight map (byte columns per line) from our tokens and marks."""
        self._line_cache.clear()
        highlights = self._highlights
        highlights.clear()
        lines = self.document.lines
        for span in highlight(self.text):
            if span.line >= len(lines):
                continue
            text = lines[span.line]
            highlights[span.line].append((_byte_col(text, span.start), _byte_col(text, span.end), f"mt.{span.kind}"))
        for line0, col0, end_line0, end_col0, severity in getattr(self, "marks", ()):
            for row in range(max(line0, 0), min(max(end_line0, line0), len(lines) - 1) + 1):
                text = lines[row]
                if not text:
                    continue
                a = col0 if row == line0 else 0
                b = end_col0 if row == end_line0 and end_line0 >= line0 else len(text)
                a = min(max(a, 0), len(text) - 1)
                b = min(max(b, a + 1), len(text))
                highlights[row].append((_byte_col(text, a), _byte_col(text, b), f"mt.diag.{severity}"))
