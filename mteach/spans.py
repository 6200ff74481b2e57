"""Where something was written in a spec: the bottom of the package, imported by every layer.

It lives here, not in ``grammar.ast``, so that ``errors`` (diagnostics name a span) needs
nothing above it.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Span:
    """1-based line and column of the first character; the end is exclusive."""
    file: str
    line: int
    column: int
    end_line: int
    end_column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"
