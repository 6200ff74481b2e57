"""Review mode: step through a seeded sample, one key per label; each label is written
to the gold file at once."""
from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import Static

from ..session import SAMPLE_MODES
from .rows import label_name


class ReviewPane(Vertical, can_focus=True):
    ALLOW_MAXIMIZE = True  # F10 zooms the whole pane, not just its focused table
    BINDINGS = [
        Binding("s", "skip", "Skip"),
        Binding("m", "mode", "Sample mode"),
        Binding("u", "undo", "Undo label"),
    ]
    DEFAULT_CSS = """
    ReviewPane { height: 1fr; padding: 0 1; }
    ReviewPane:focus { background: $boost; }
    ReviewPane #review-head { height: auto; }
    ReviewPane #review-box { height: 1fr; border: round $accent; }
    ReviewPane #review-verdict { height: auto; }
    ReviewPane #review-keys { height: auto; color: $text-muted; }
    """

    class Labelled(Message):
        """The expert confirmed ``label`` for row ``row`` (index into the data)."""
        def __init__(self, row: int, label: str) -> None:
            super().__init__()
            self.row = row
            self.label = label

    class UndoRequested(Message):
        """The expert wants the last label of this session taken back."""

    def __init__(self, session, **kwargs):
        super().__init__(**kwargs)
        self.session = session
        self.analysis = None
        self.mode = SAMPLE_MODES[0]
        self.current = None
        self.done_here = 0
        self.labels: list = []

    def compose(self) -> ComposeResult:
        yield Static("", id="review-head")
        with VerticalScroll(id="review-box"):
            yield Static("", id="review-text")
        yield Static("", id="review-verdict")
        yield Static("", id="review-keys")

    def show(self, a) -> None:
        self.analysis = a
        labels = list(a.spec.labels)
        if labels != self.labels:
            self.labels = labels
            for n, lab in enumerate(labels[:9], start=1):
                self._bindings.bind(str(n), f"label({n - 1})", lab)
            self.refresh_bindings()
        if self.current is None or self.session.id_list[self.current] in self.session.review.entries:
            self.advance()
        else:
            self.render_current()

    def advance(self) -> None:
        if self.analysis is None:
            return
        self.current = self.session.next_to_review(self.analysis, self.mode)
        self.render_current()

    def render_current(self) -> None:
        a, s = self.analysis, self.session
        if a is None:
            return
        left = s.remaining(a, self.mode)
        head = Text()
        if s.queue_path is not None:
            head.append(f"queue: {s.queue_path.name}", style="bold")
        else:
            head.append(f"sample: {self.mode}" + (" (most worth labelling first)" if self.mode == "ranked" else ""),
                        style="bold")
            head.append(f" (seed {s.seed})")
        head.append(f"   {self.done_here} labelled now, {len(s.review.entries)} in "
                    f"{s.review.path.name}, {left:,} left")
        self.query_one("#review-head", Static).update(head)
        keys = "   ".join(f"[b]{n}[/b] {lab}" for n, lab in enumerate(self.labels[:9], start=1))
        self.query_one("#review-keys", Static).update(f"{keys}   [b]u[/b] undo   [b]s[/b] skip   [b]m[/b] sample mode")
        if self.current is None:
            self.query_one("#review-text", Static).update(Text(f"nothing left to review in the {self.mode} sample "
                                                               "(m: another sample)", style="dim"))
            self.query_one("#review-verdict", Static).update("")
            return
        i = self.current
        t = Text(f"{s.id_list[i]}\n", style="dim")
        t.append(s.text_of(i))
        self.query_one("#review-text", Static).update(t)
        labels = self.labels
        voters = [(a.spec.rules[j].name, labels[a.votes[i, j]]) for j in range(a.votes.shape[1]) if a.votes[i, j] != -1]
        v = Text("rules say: ")
        v_label = int(a.verdict[i])
        if a.conflicted[i]:
            v.append("conflict", style="bold red")
        else:
            v.append(label_name(labels, v_label) if v_label >= 0 else "nothing", style="bold")
        if voters:
            v.append("  (" + ", ".join(f"{n}→{lab}" for n, lab in voters) + ")", style="dim")
        self.query_one("#review-verdict", Static).update(v)

    def action_label(self, k: int) -> None:
        if self.current is None or k >= len(self.labels):
            return
        row = self.current
        self.post_message(self.Labelled(row, self.labels[k]))

    def confirmed(self) -> None:
        """The app wrote the label: count it and move on."""
        self.done_here += 1
        self.advance()

    def action_undo(self) -> None:
        self.post_message(self.UndoRequested())

    def undone(self, row: int) -> None:
        """The app took back the label of ``row``: show that row again to label it anew."""
        self.done_here = max(self.done_here - 1, 0)
        self.current = row
        self.render_current()

    def action_skip(self) -> None:
        if self.current is not None:
            self.session.skip(self.current)
        self.advance()

    def action_mode(self) -> None:
        self.mode = SAMPLE_MODES[(SAMPLE_MODES.index(self.mode) + 1) % len(SAMPLE_MODES)]
        self.advance()
