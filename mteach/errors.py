"""Diagnostics: every problem names a place (file, line, column) and says what to do.

One ``Diagnostic`` per problem; a ``SpecError`` carries all of them at once (the shape
an editor's problem list and the CLI both want). ``DataError`` is for data files and
other inputs that are not the spec: it names the file (and row or column) instead.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Iterable, Optional

from .spans import Span


@dataclass(frozen=True)
class Diagnostic:
    span: Optional[Span]
    message: str
    severity: str = "error"  # "error" | "warning"
    hint: str = ""

    def format(self, sources: dict | None = None) -> str:
        """``file:line:col: error: message`` plus the source line and a caret."""
        if self.span is None:
            head = f"{self.severity}: {self.message}"
        else:
            head = f"{self.span}: {self.severity}: {self.message}"
        lines = [head]
        text = (sources or {}).get(self.span.file) if self.span else None
        if text is not None and self.span.line >= 1:
            src_lines = text.splitlines()
            if self.span.line <= len(src_lines):
                src = src_lines[self.span.line - 1].expandtabs(1)
                width = 1
                if self.span.end_line == self.span.line and self.span.end_column > self.span.column:
                    width = self.span.end_column - self.span.column
                lines.append(f"  {src}")
                lines.append("  " + " " * (self.span.column - 1) + "^" + "~" * (width - 1))
        if self.hint:
            lines.append(f"  hint: {self.hint}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        d = {"severity": self.severity, "message": self.message, "hint": self.hint}
        if self.span:
            d.update(file=self.span.file, line=self.span.line, column=self.span.column,
                     end_line=self.span.end_line, end_column=self.span.end_column)
        return d


class MteachError(Exception):
    """Base of the errors a user is meant to read (the CLI prints them, no traceback)."""
    exit_code = 2


class SpecError(MteachError):
    """One or more problems in a spec; ``diagnostics`` lists them all."""
    exit_code = 1

    def __init__(self, diagnostics: Iterable[Diagnostic], sources: dict | None = None):
        self.diagnostics = list(diagnostics)
        self.sources = dict(sources or {})
        super().__init__(self.format())

    def format(self) -> str:
        return "\n".join(d.format(self.sources) for d in self.diagnostics)

    @property
    def errors(self) -> list:
        return [d for d in self.diagnostics if d.severity == "error"]


class DataError(MteachError):
    """A data file, gold file, or option that cannot be used; the message says where and why."""
    exit_code = 2


def closest_name(name: str, candidates: Iterable[str]) -> Optional[str]:
    """The candidate ``name`` was most likely meant to be (a near spelling, or the same
    name in another case), or None."""
    candidates = list(candidates)
    close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)
    if not close:
        lowered = {c.lower(): c for c in candidates}
        if name.lower() in lowered:
            close = [lowered[name.lower()]]
    return close[0] if close else None


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """`` — did you mean X?`` when a near name exists, else ``""``."""
    close = closest_name(name, candidates)
    return f" — did you mean {close}?" if close else ""
