"""The coverage pane: per-rule coverage, overlaps, conflicts and, with gold, accuracy; totals."""
from __future__ import annotations

import math

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import DataTable, Static


def pct(x) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{100 * x:.1f}%"


class CoverageTable(DataTable):
    BINDINGS = [
        Binding("enter", "show_rows", "Rows of rule"),
        Binding("e", "goto_rule", "Edit rule"),
        Binding("s", "sort", "Sort"),
    ]

    def action_sort(self) -> None:
        self.parent_pane().next_sort()

    def action_show_rows(self) -> None:
        self.parent_pane().choose(show=True)

    def action_goto_rule(self) -> None:
        self.parent_pane().choose(show=False)

    def parent_pane(self) -> "CoveragePane":
        return self.query_ancestor(CoveragePane)


class CoveragePane(Vertical):
    """Shows an ``Analysis``; posts ``RuleChosen`` when the expert picks a rule."""
    ALLOW_MAXIMIZE = True  # F10 zooms the whole pane, not just its focused table

    DEFAULT_CSS = """
    CoveragePane { height: 1fr; }
    CoveragePane CoverageTable { height: 1fr; }
    CoveragePane #totals { height: auto; padding: 0 1; }
    """

    class RuleChosen(Message):
        def __init__(self, index: int, show_rows: bool) -> None:
            super().__init__()
            self.index = index
            self.show_rows = show_rows

    def compose(self) -> ComposeResult:
        table = CoverageTable(id="coverage-table", cursor_type="row", zebra_stripes=True)
        yield table
        yield Static("no analysis yet", id="totals")

    show_timing = True  # off in snapshot tests: the figure varies from run to run
    SORTS = ("line", "coverage", "conflicts", "accuracy")
    sort = "line"
    order: list = []  # rule index of each table row
    last = None

    def next_sort(self) -> None:
        sorts = self.SORTS if self.last is None or "accuracy" in self.last.stats.column_names else self.SORTS[:3]
        self.sort = sorts[(sorts.index(self.sort) + 1) % len(sorts)] if self.sort in sorts else "line"
        if self.last is not None:
            self.show(self.last)
        self.app.notify(f"rules sorted by {self.sort}", timeout=2)

    def sorted_rules(self, a) -> list:
        """Rule indices in the chosen order: most coverage / conflicts first, least accurate first."""
        s = a.stats.to_pydict()
        n = len(a.spec.rules)
        key = {"coverage": lambda j: -s["coverage"][j], "conflicts": lambda j: -s["conflicts"][j],
               "accuracy": lambda j: (math.isnan(s["accuracy"][j]), s["accuracy"][j])}.get(self.sort)
        if key is None or (self.sort == "accuracy" and "accuracy" not in s):
            return list(range(n))
        return sorted(range(n), key=lambda j: (key(j), j))

    def show(self, a, stale_errors: int = 0) -> None:
        table = self.query_one(CoverageTable)
        row = table.cursor_row
        table.clear(columns=True)
        gold = "accuracy" in a.stats.column_names
        # short headers, so the table fits beside the editor at 100 columns (F1 explains them)
        cols = ["rule", "label", "cov", "ovl", "cnf"] + (["acc", "ok", "bad"] if gold else []) + ["line"]
        for c in cols:
            table.add_column(c, key=c)
        s = a.stats.to_pydict()
        self.last = a
        self.order = self.sorted_rules(a)
        for j in self.order:
            rule = a.spec.rules[j]
            cells = [Text(rule.name, style="bold"), rule.rule.label, pct(s["coverage"][j]), pct(s["overlaps"][j]),
                     Text(pct(s["conflicts"][j]), style="red" if s["conflicts"][j] else "")]
            if gold:
                acc = s["accuracy"][j]
                style = "" if acc is None or math.isnan(acc) else ("green" if acc >= 0.9 else "yellow" if acc >= 0.7 else "red")
                cells += [Text(pct(acc), style=style), str(s["correct"][j]), str(s["incorrect"][j])]
            cells.append(str(rule.rule.span.line))
            table.add_row(*cells, key=rule.name)
        if table.row_count:
            table.move_cursor(row=min(max(row, 0), table.row_count - 1))
        self.query_one("#totals", Static).update(self.totals(a, stale_errors, self.show_timing))

    @staticmethod
    def totals(a, stale_errors: int = 0, timing: bool = True) -> Text:
        sm = a.summary
        n = max(sm.rows, 1)
        t = Text()
        t.append(f"{sm.rows:,} rows  ", style="bold")
        if a.sample_of:
            t.append(f"(a sample of {a.sample_of:,}: --max-rows)  ", style="yellow")
        t.append(f"covered {sm.covered:,} ({sm.covered / n:.1%})  ")
        t.append(f"conflicted {sm.conflicted:,}  ", style="red" if sm.conflicted else "")
        t.append(f"uncovered {sm.rows - sm.covered:,}")
        if sm.gold_rows:
            acc = sm.mv_correct / sm.mv_decided if sm.mv_decided else float("nan")
            t.append(f"\ngold {sm.gold_rows:,}: majority vote decides {sm.mv_decided:,}, accuracy {pct(acc)}")
        if timing:
            t.append(f"\nrefreshed in {a.seconds * 1000:.0f} ms, {len(a.evaluated)} rule(s) re-applied", style="dim")
        if stale_errors:
            t.append(f"\nthe spec has {stale_errors} error(s): showing the last good version", style="bold red")
        return t

    def choose(self, show: bool) -> None:
        table = self.query_one(CoverageTable)
        if table.row_count:
            self.post_message(self.RuleChosen(self.order[table.cursor_row] if self.order else table.cursor_row, show))
