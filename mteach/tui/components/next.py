"""The Next pane: where to teach next — the suggestions of ``engine.suggest``, refreshed in
the background after each edit. ``i`` inserts a suggested rule at the end of the spec (with
a comment line saying what evidence it came from), or puts a fix's rewrite of a rule in
that rule's place; ``x`` shows a suggestion's example rows."""
from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import DataTable, Static

KIND_WORDS = {"rule": "add rule", "group": "group", "fix": "fix", "review": "review"}


def comment_for(s) -> str:
    """The comment line written above an inserted rule: the evidence it came from."""
    if s.replaces:
        return f"# fixed: {s.evidence}"
    if s.estimated_precision is None:
        return f"# suggested: {s.evidence}; +{s.new_rows:,} new rows"
    lo, hi = s.precision_interval
    return (f"# suggested: precision {s.estimated_precision:.2f} [{lo:.2f}, {hi:.2f}] from {s.precision_from} "
            f"on {s.evidence_rows:,.0f} rows; +{s.new_rows:,} new rows, {s.conflicts:,} conflicting")


class NextTable(DataTable):
    BINDINGS = [
        Binding("i", "insert", "Insert rule"),
        Binding("x", "examples", "Example rows"),
    ]

    def action_insert(self) -> None:
        self.query_ancestor(NextPane).insert_current()

    def action_examples(self) -> None:
        self.query_ancestor(NextPane).examples_current()


class NextPane(Vertical):
    ALLOW_MAXIMIZE = True  # F10 zooms the whole pane, not just its focused table
    DEFAULT_CSS = """
    NextPane { height: 1fr; }
    NextPane #next-head { height: auto; padding: 0 1; }
    NextPane NextTable { height: 1fr; min-height: 4; }
    NextPane #next-detail-box { height: 40%; min-height: 3; border-top: solid $accent; }
    """

    class InsertRule(Message):
        """Insert ``line`` under ``comment`` at the end of the spec, or in place of the rule
        named ``replaces``."""
        def __init__(self, comment: str, line: str, replaces: str = None) -> None:
            super().__init__()
            self.comment = comment
            self.line = line
            self.replaces = replaces

    class ShowRows(Message):
        def __init__(self, rows: list, title: str) -> None:
            super().__init__()
            self.rows = rows
            self.title = title

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.items: list = []

    def compose(self) -> ComposeResult:
        yield Static("suggestions appear after the first analysis", id="next-head")
        yield NextTable(id="next-table", cursor_type="row", zebra_stripes=True)
        with VerticalScroll(id="next-detail-box"):
            yield Static("", id="next-detail")

    def show(self, suggestions: list, evidence: str) -> None:
        self.items = list(suggestions)
        table = self.query_one(NextTable)
        cursor = table.cursor_row
        table.clear(columns=True)
        for c in ("what", "label", "prec", "rows", "suggestion"):
            table.add_column(c, key=c)
        for n, s in enumerate(self.items):
            prec = "-" if s.estimated_precision is None else f"{s.estimated_precision:.2f}"
            rows = f"+{s.new_rows:,}" if s.kind == "rule" else (f"{s.rows:,}" if s.rows else "")
            what = s.title if s.replaces else s.spec_line or s.title  # a fix's line is long: say what it does
            table.add_row(KIND_WORDS[s.kind], s.label or "", prec, rows, what[:90], key=str(n))
        self.query_one("#next-head", Static).update(Text(evidence, style="dim"))
        if table.row_count:
            table.move_cursor(row=min(max(cursor, 0), table.row_count - 1))
        self.detail()

    def current(self):
        table = self.query_one(NextTable)
        if not self.items or not (0 <= table.cursor_row < len(self.items)):
            return None
        return self.items[table.cursor_row]

    def detail(self) -> None:
        s = self.current()
        box = self.query_one("#next-detail", Static)
        if s is None:
            box.update("")
            return
        t = Text()
        if s.replaces:
            t.append(s.title + "\n")
        t.append((s.spec_line or s.title) + "\n", style="bold")
        if s.kind == "rule":
            t.append(comment_for(s)[2:] + "\n")
            t.append("i: insert at the end of the spec   x: its example rows\n", style="dim")
        else:
            t.append(s.evidence + "\n")
            if s.replaces:
                t.append(f"i: put it in place of rule {s.replaces}   ", style="dim")
            if s.words:
                t.append("words: " + ", ".join(s.words) + "\n")
            t.append("x: the example rows\n", style="dim")
        if s.example_ids:
            t.append("examples: " + ", ".join(s.example_ids), style="dim")
        box.update(t)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        self.detail()

    def insert_current(self) -> None:
        s = self.current()
        if s is not None and s.spec_line:
            self.post_message(self.InsertRule(comment_for(s), s.spec_line, s.replaces))

    def examples_current(self) -> None:
        s = self.current()
        if s is not None and s.example_rows:
            self.post_message(self.ShowRows(list(s.example_rows), f"examples of: {s.spec_line or s.title}"))
