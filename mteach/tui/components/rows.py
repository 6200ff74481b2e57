"""The rows pane: browse rows through filters, each row with the rules that fired;
the highlighted row's explanation below."""
from __future__ import annotations

from rich.markup import escape
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.widgets import DataTable, Input, Static

MAX_SHOWN = 500


def clip(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters, ending in an ellipsis when cut, so two long ids
    that share a prefix never look the same."""
    return text if len(text) <= width else text[:width - 1] + "…"


def label_name(labels, k) -> str:
    return labels[k] if 0 <= k < len(labels) else "-"


def explain(session, a, i: int, contributions=None) -> Text:
    """The explanation of row ``i``: text, gold, verdict, and each rule that voted."""
    labels = list(a.spec.labels)
    gold = session.gold(labels)
    t = Text()
    t.append(f"row {session.id_list[i]}", style="bold")
    g = int(gold[i]) if gold is not None else -1
    t.append(f"   gold: {label_name(labels, g)}")
    v = int(a.verdict[i])
    t.append("   rules say: ")
    t.append(label_name(labels, v) if v >= 0 else ("conflict" if a.conflicted[i] else "nothing"),
             style="bold red" if a.conflicted[i] else "bold")
    t.append("\n" + session.text_of(i) + "\n", style="italic")
    voters = [j for j in range(a.votes.shape[1]) if a.votes[i, j] != -1]
    if not voters:
        t.append("no rule votes on this row\n", style="dim")
    for j in voters:
        rule = a.spec.rules[j]
        t.append(f"{labels[a.votes[i, j]]:>6} ", style="bold cyan")
        t.append(f"{rule.name} ", style="bold")
        t.append(f"{rule.rule.span.file}:{rule.rule.span.line}", style="dim")
        if contributions is not None and contributions.shape == a.votes.shape:
            t.append(f"  {contributions[i, j]:+.2f} log-odds", style="magenta")
        t.append(f"\n       {rule.rule.text}\n", style="dim")
    return t


class RowsTable(DataTable):
    pass


class RowsPane(Vertical):
    ALLOW_MAXIMIZE = True  # F10 zooms the whole pane, not just its focused table
    BINDINGS = [
        Binding("a", "filter('all')", "All"),
        Binding("r", "filter('rule')", "Next rule"),
        Binding("c", "filter('conflicted')", "Conflicted"),
        Binding("u", "filter('uncovered')", "Uncovered"),
        Binding("l", "filter('label')", "Next label"),
        Binding("w", "filter('wrong')", "Wrong vs gold"),
        Binding("slash", "search", "Search"),
    ]
    DEFAULT_CSS = """
    RowsPane { height: 1fr; }
    RowsPane #rows-filter { height: 1; padding: 0 1; }
    RowsPane #rows-search { height: 1; margin: 0 1; }
    RowsPane RowsTable { height: 1fr; min-height: 4; }
    RowsPane #rows-explain-box { height: 45%; min-height: 3; border-top: solid $accent; }
    """

    def __init__(self, session, **kwargs):
        super().__init__(**kwargs)
        self.session = session
        self.analysis = None
        self.contributions = None
        self.mode = "all"
        self.rule = 0
        self.label = 0
        self.search = ""
        self.shown: list = []
        self.picked: list = []  # rows shown by show_picked (a suggestion's examples)
        self.picked_title = ""

    def compose(self) -> ComposeResult:
        yield Static("", id="rows-filter")
        yield Input(placeholder="/ search the text, enter to apply", id="rows-search", compact=True)
        yield RowsTable(id="rows-table", cursor_type="row", zebra_stripes=True)
        with VerticalScroll(id="rows-explain-box"):
            yield Static("", id="rows-explain")

    # -- filters -------------------------------------------------------------------------
    def action_filter(self, mode: str) -> None:
        a = self.analysis
        if a is None:
            return
        if mode == "rule":
            m = a.votes.shape[1]
            if not m:
                return
            self.rule = (self.rule + 1) % m if self.mode == "rule" else min(self.rule, m - 1)
        if mode == "label":
            k = len(a.spec.labels)
            self.label = (self.label + 1) % k if self.mode == "label" else min(self.label, k - 1)
        self.mode = mode
        self.refresh_rows()

    def show_picked(self, rows: list, title: str) -> None:
        self.mode, self.picked, self.picked_title = "picked", list(rows), title
        self.refresh_rows()

    def show_rule(self, index: int) -> None:
        self.mode, self.rule = "rule", index
        self.refresh_rows()

    def action_search(self) -> None:
        self.query_one("#rows-search", Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.search = event.value.strip()
        self.refresh_rows()
        self.query_one(RowsTable).focus()

    def describe_filter(self) -> str:
        a = self.analysis
        if self.mode == "rule" and a is not None and self.rule < len(a.spec.rules):
            what = f"rows rule [b]{escape(a.spec.rules[self.rule].name)}[/b] votes on"
        elif self.mode == "label" and a is not None:
            what = f"rows the rules label [b]{escape(label_name(a.spec.labels, self.label))}[/b]"
        else:
            what = {"all": "all rows", "conflicted": "conflicted rows",
                    "uncovered": "uncovered rows (grouped, largest group first)" if self.session.guidance else
                    "uncovered rows",
                    "wrong": "rows the rules' majority vote gets wrong against gold",
                    "picked": escape(self.picked_title)}.get(self.mode, self.mode)
        if self.search:
            what += f' containing "{escape(self.search)}"'
        return what

    # -- showing -------------------------------------------------------------------------
    def show(self, a, contributions=None) -> None:
        self.analysis = a
        self.contributions = contributions
        if self.rule >= a.votes.shape[1]:
            self.rule = 0
        self.refresh_rows()

    def set_contributions(self, contributions) -> None:
        self.contributions = contributions
        self.explain_current()

    def refresh_rows(self) -> None:
        a = self.analysis
        if a is None:
            return
        s = self.session
        if self.mode == "picked":
            import numpy as np
            idx = np.array([i for i in self.picked if i < len(a.votes)], dtype=np.int64)
        else:
            idx = s.filter_rows(a, self.mode, rule=self.rule, label=self.label, search=self.search)
        table = self.query_one(RowsTable)
        cursor = table.cursor_row
        table.clear(columns=True)
        for c in ("id", "gold", "rules say", "fired", "text"):
            table.add_column(c, key=c)
        labels = list(a.spec.labels)
        gold = s.gold(labels)
        names = a.spec.rule_names
        self.shown = [int(i) for i in idx[:MAX_SHOWN]]
        for i in self.shown:
            fired = [names[j] for j in range(a.votes.shape[1]) if a.votes[i, j] != -1]
            v = int(a.verdict[i])
            say = Text("conflict", style="red") if a.conflicted[i] else Text(label_name(labels, v))
            text = s.text_of(i).replace("\n", " ")
            table.add_row(clip(str(s.id_list[i]), 12), label_name(labels, int(gold[i]) if gold is not None else -1),
                          say, clip(", ".join(fired), 30), clip(text, 80), key=str(i))
        more = f" (first {MAX_SHOWN})" if len(idx) > MAX_SHOWN else ""
        self.query_one("#rows-filter", Static).update(f"{len(idx):,} {self.describe_filter()}{more}")
        if table.row_count:
            table.move_cursor(row=min(max(cursor, 0), table.row_count - 1))
        self.explain_current()

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        self.explain_current()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.explain_current()

    def explain_current(self) -> None:
        table = self.query_one(RowsTable)
        box = self.query_one("#rows-explain", Static)
        if self.analysis is None or not self.shown or not (0 <= table.cursor_row < len(self.shown)):
            box.update("")
            return
        i = self.shown[table.cursor_row]
        box.update(explain(self.session, self.analysis, i, self.contributions))
