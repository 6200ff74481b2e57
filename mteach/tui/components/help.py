"""The help screen (`?` / F1) and the quit confirmation."""
from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

HELP = """\
[b]mteach studio[/b] — edit the spec, see what each rule does, label rows.

[b]Everywhere[/b]
  F1      this help (also ? outside the editor and the search box)
  ctrl+s  save the spec (atomic write)   ctrl+q  quit (asks if unsaved)
  F2 editor  F3 coverage  F4 rows  F5 review  F6 problems  F7 model
  F8 next    (the tab titles name their keys too)
  F10     zoom: the focused pane takes the whole screen; F10 again: back.
          An F-key while zoomed zooms the pane it goes to.
  tab / shift+tab  move between panes (in the editor, tab indents)
  ctrl+p  command palette (themes, keys, quit)
  The footer shows F1 and the focused pane's keys first; at 80 columns
  the rest are cut off there, and all of them are on this page.

[b]Editor[/b]  long lines wrap at the pane's edge (the gutter numbers spec
  lines; positions and errors are line:column of the spec). Coverage
  refreshes 0.4 s after you stop typing; errors are underlined and listed
  below the editor: F6, then enter on one, jumps there.

[b]Coverage[/b]  enter: the rows of that rule   e: go to its line
  s: sort by line / coverage / conflicts / accuracy
  cov coverage, ovl overlaps, cnf conflicts (share of all rows);
  with gold: acc accuracy, ok / bad correct / incorrect votes on gold rows

[b]Rows[/b]  a all   r next rule   c conflicted   u uncovered (by group)
  l next label   w wrong against gold   / search text (enter applies)
  enter on a row: its explanation (rules, file:line, source)

[b]Review[/b]  1..k label the row (written to <spec>.gold.csv at once)
  u undo the last label (a correction line is appended; the file is
  never rewritten)   s skip
  m sample: ranked (most worth labelling first) / uncovered /
  conflicted / random (seeded)

[b]Model[/b]  trains in the background once the checked spec is quiet for
  3 s (t: now; never with errors), with mteach.toml's settings: accuracy
  on gold rows (cross-fitted), least-sure rows, model-vs-rules
  disagreements, rows flipped since the last run, each hint's
  satisfaction now / before.
  enter on a row: its text and the words that pushed it to each label;
  select words in it (shift+arrows), then 1..k: hint more "..." => label
  e: edit a copy into its counterfactual (ctrl+l label, ctrl+o add hint)

[b]Next[/b]  suggestions, refreshed after each edit: rules to add, groups
  of uncovered rows, rules to fix, rows to review.
  i: insert the rule at the end of the spec (a comment says its
  evidence); on a fix with a new line, put it in its rule's place
  x: its example rows
"""


class HelpScreen(ModalScreen):
    BINDINGS = [Binding("escape,q,question_mark,f1", "dismiss", "Close")]
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll { width: 80; max-width: 100%; height: auto; max-height: 100%;
                                  border: thick $accent; background: $surface; padding: 0 1; }
    """

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Static(HELP)
            yield Static("[dim]escape to close[/dim]")


class ConfirmScreen(ModalScreen[str]):
    """Asks before quitting with unsaved edits: save / discard / cancel."""
    BINDINGS = [Binding("s", "choose('save')", "Save and quit"),
                Binding("d", "choose('discard')", "Quit without saving"),
                Binding("escape,c", "choose('cancel')", "Cancel")]
    DEFAULT_CSS = """
    ConfirmScreen { align: center middle; }
    ConfirmScreen > Vertical { width: 60; max-width: 100%; height: auto; border: thick $warning;
                               background: $surface; padding: 0 1; }
    ConfirmScreen Button { margin: 0 1; }
    """

    def __init__(self, message: str):
        super().__init__()
        self.message = message

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(self.message)
            yield Static("[b]s[/b] save and quit   [b]d[/b] quit without saving   [b]esc[/b] cancel")

    def action_choose(self, what: str) -> None:
        self.dismiss(what)
