"""The Model pane: the trained model's decisions, and direction hints added from a row.

Training runs in the app's background worker (:func:`train_view`, no widget code),
on the spec's current version with the settings of ``mteach.toml`` (the working
folder's, else the defaults). The pane shows:

- accuracy against gold, cross-fitted (two seeded folds: each half is labelled by
  the model trained on the other half, so no gold row grades a model that saw it);
- the rows the model is least sure of and the rows where model and rules disagree,
  with the words that pushed each way;
- each hint's satisfaction now and in the previous run, and the rows whose
  decision flipped since the previous run.

From a row's text: select a phrase and press 1..k for ``hint more "phrase" => L``;
press ``e`` to edit a copy into its counterfactual, ``hint "orig" -> "edited" => L``.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import DataTable, Static, TextArea

from ...errors import DataError, Diagnostic
from .rows import label_name

SHOWN_ROWS = 6          # least-sure rows and disagreements shown, each
CROSS_FOLDS = 2
MIN_GOLD_ROWS = 10


# ---- training (no widgets) --------------------------------------------------------------------
@dataclass
class ModelView:
    """What one background training produced, ready to show."""
    model: object                  # engine.train.TrainedModel
    spec_hash: str
    labels: list
    label: np.ndarray              # combined decision per row
    confidence: np.ndarray         # its probability
    rules: np.ndarray              # the label model's decision on covered rows, -1 elsewhere
    end_model: np.ndarray          # the end model's decision per row
    least_sure: list
    disagree: list
    accuracy: Optional[float]
    accuracy_note: str
    hints: list                    # dicts: hint, label, satisfied, before
    flipped: np.ndarray            # rows whose decision changed since the previous run
    seconds: float
    previous: bool = False         # there was a previous run to compare with
    satisfaction: dict = field(default_factory=dict)  # hint text -> share, for the next run


def studio_settings():
    """``./mteach.toml`` when present (as the CLI reads it), else the defaults."""
    from ...settings import load_settings
    return load_settings("mteach.toml" if Path("mteach.toml").is_file() else None)


def _cross_fitted_accuracy(spec, table, gold, settings) -> tuple:
    """Accuracy of the combined decision on gold rows, each row labelled by a model that
    did not train on it (the rows split in two by a seeded permutation)."""
    from ...engine.train import train
    known = np.flatnonzero(gold != -1)
    if len(known) < MIN_GOLD_ROWS:
        return None, (f"{len(known)} gold rows: label at least {MIN_GOLD_ROWS} in Review (F5) "
                      "to see the model's accuracy")
    order = np.random.default_rng(settings.end_model.seed).permutation(table.num_rows)
    folds = np.array_split(order, CROSS_FOLDS)
    right = total = 0
    for f, held in enumerate(folds):
        rest = np.sort(np.concatenate([folds[g] for g in range(CROSS_FOLDS) if g != f]))
        held = np.sort(held)
        try:
            model, _ = train(spec, table.take(pa.array(rest)), settings, gold[rest], hint_effects=False)
        except DataError as err:
            return None, f"no cross-fitted accuracy: half of the rows is too little to train on ({err})"

        pred = model.predict(table.take(pa.array(held)))["label"]
        g = gold[held]
        right += int((pred[g != -1] == g[g != -1]).sum())
        total += int((g != -1).sum())
    return right / total, f"{total} gold rows, cross-fitted ({CROSS_FOLDS} folds)"


def train_view(session, spec, previous: Optional[ModelView] = None) -> ModelView:
    """Train on the session's data (the spec checked against it); raises ``MteachError``
    (a clear reason) when it cannot, e.g. too few covered rows."""
    from ...engine.hints import hint_effect
    from ...engine.train import _feature_table, hint_rows, train
    from ...settings import SettingsError
    t0 = time.perf_counter()
    try:
        settings = studio_settings()
    except SettingsError as err:
        raise DataError(str(err)) from None
    labels = list(spec.labels)
    table = session.table
    gold = session.gold(labels)
    model, _ = train(spec, table, settings, gold, hint_effects=False)
    out = model.predict(table)
    label, proba = out["label"], out["proba"]
    confidence = proba.max(axis=1)
    rules = np.where(out["covered"], out["lm_proba"].argmax(axis=1), -1)
    em = out["em_proba"].argmax(axis=1)
    least_sure = np.argsort(confidence, kind="stable")[:SHOWN_ROWS].tolist()
    disagree_rows = np.flatnonzero((rules != -1) & (em != rules))
    em_conf = out["em_proba"].max(axis=1)
    disagree = disagree_rows[np.argsort(-em_conf[disagree_rows], kind="stable")][:SHOWN_ROWS].tolist()
    if gold is not None:
        accuracy, note = _cross_fitted_accuracy(spec, table, gold, settings)
    else:
        accuracy, note = None, "no gold labels: label rows in Review (F5) to see the model's accuracy"

    ftable = _feature_table(spec, table)
    covered = out["covered"]
    held = hint_rows(ftable, covered)
    hints, satisfaction = [], {}
    for h in model.hints():
        share = hint_effect(model.end_model, model.featurizer, held, h).share
        satisfaction[h.name] = share
        before = previous.satisfaction.get(h.name) if previous is not None else None
        if before is None and previous is not None:
            before = _satisfaction_before(previous, spec, h.name, held, labels)
        hints.append({"hint": h.name, "label": h.label, "satisfied": share, "before": before})
    flipped = (np.flatnonzero(label != previous.label) if previous is not None
               and len(previous.label) == len(label) else np.zeros(0, dtype=np.int64))
    return ModelView(model, spec.content_hash, labels, label, confidence, rules, em, least_sure, disagree,
                     accuracy, note, hints, flipped, time.perf_counter() - t0,
                     previous=previous is not None, satisfaction=satisfaction)


def _satisfaction_before(previous: ModelView, spec, name: str, held: pa.Table, labels) -> Optional[float]:
    """How the previous model already stood on a hint added since."""
    from ...engine.hints import HintError, _hint_name, compile_hints, hint_effect
    from ...engine.train import measure_name
    node = next((h for h in spec.hints if _hint_name(h) == name), None)
    try:
        (old,) = compile_hints([node], previous.model.featurizer, labels, measure_name_fn=measure_name)
        return hint_effect(previous.model.end_model, previous.model.featurizer, held, old).share
    except (HintError, ValueError, TypeError):
        return None  # e.g. a measure the previous model had no feature for


def pushes(view: ModelView, session, i: int, k: int = 3) -> list:
    """Per label: the words (or measures) that pushed row ``i`` toward it most."""
    model = view.model
    row = session.table.take(pa.array([i]))
    out = []
    for c in range(len(view.labels)):
        feats = model.top_features(row, np.array([c]), k=12)[0].as_py()
        words = []
        for f in feats:
            name = f["feature"]
            _, kind, term = name.split(":", 2) if name.count(":") >= 2 else ("", "num", name[4:])
            if kind in ("w", "num") and term not in words:
                words.append(term)
        out.append((view.labels[c], words[:k]))
    return out


# ---- checks of hints against the data ---------------------------------------------------------
def hint_problems(spec, session) -> list:
    """Errors the checker cannot see without the data: a phrase that never occurs in the
    data, a counterfactual identical to its original."""
    from ...compiler.tokens import phrase_regex
    diags = []
    texts = None
    for h in spec.hints:
        span = getattr(h, "span", None)
        if h.kind == "pair" and h.text_a.strip() == h.text_b.strip():
            diags.append(Diagnostic(span, "this counterfactual is identical to its original, so it "
                                    "points nowhere", hint="edit the second text: what would make it "
                                    f"{h.label}?"))
        elif h.kind == "token":
            if texts is None:
                cols = [spec.column(n) for n, kind in spec.field_kinds.items() if kind == "text"]
                texts = [session.table.column(c) for c in cols if c in session.table.column_names]
            pattern = "(?i)" + phrase_regex(h.token)
            if not any(pc.any(pc.match_substring_regex(t, pattern)).as_py() for t in texts):
                diags.append(Diagnostic(span, f"the phrase {h.token!r} never occurs in the data, so a "
                                        "hint on it cannot move the model",
                                        hint="pick a phrase from a row (Model pane: select it, press 1..k)"))
    return diags


def quote(text: str) -> str:
    """A spec string literal."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ") + '"'


def hint_line(label: str, row_id: str, phrase: Optional[str] = None,
              original: Optional[str] = None, edited: Optional[str] = None) -> str:
    """``hint more "phrase" => L`` or ``hint "orig" -> "edited" => L``, with the row it came from."""
    if phrase is not None:
        body = f"hint more {quote(phrase)} => {label}"
    else:
        body = f"hint {quote(original)} -> {quote(edited)} => {label}"
    return f"{body}  # from row {row_id}"


# ---- the pane ----------------------------------------------------------------------------------
class RowText(TextArea):
    """The chosen row's text, read-only: select a phrase in it."""

    def selected_words(self) -> str:
        """The selection widened to whole words ("ubscri" → "subscribe"), spaces collapsed."""
        lines = self.text.split("\n")

        def offset(loc) -> int:
            row, col = loc
            return sum(len(line) + 1 for line in lines[:row]) + col
        start, end = sorted((offset(self.selection.start), offset(self.selection.end)))
        text = self.text
        if start == end:
            return ""
        while start > 0 and (text[start - 1].isalnum() or text[start - 1] in "'_") and text[start].strip():
            start -= 1
        while end < len(text) and (text[end].isalnum() or text[end] in "'_") and text[end - 1].strip():
            end += 1
        return " ".join(text[start:end].split())


class CounterfactualScreen(ModalScreen):
    """Edit a copy of a row's text into its counterfactual; ctrl+o adds the hint."""
    BINDINGS = [Binding("ctrl+o", "confirm", "Add hint", priority=True),
                Binding("ctrl+l", "next_label", "Label", priority=True),
                Binding("escape", "dismiss(None)", "Cancel")]
    DEFAULT_CSS = """
    CounterfactualScreen { align: center middle; }
    CounterfactualScreen > Vertical { width: 76; max-width: 100%; height: auto; max-height: 100%;
                                      border: thick $accent; background: $surface; padding: 0 1; }
    CounterfactualScreen TextArea { height: 6; }
    """

    def __init__(self, text: str, labels: list, label: int):
        super().__init__()
        self.original = text
        self.labels = labels
        self.label = label

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static("Edit the row into what would make it another label:")
            yield TextArea(self.original, id="counterfactual", soft_wrap=True)
            yield Static("", id="counterfactual-label")

    def on_mount(self) -> None:
        self._show_label()
        self.query_one("#counterfactual").focus()

    def _show_label(self) -> None:
        self.query_one("#counterfactual-label", Static).update(
            f"it becomes [b]{self.labels[self.label]}[/b] (ctrl+l: other label)   "
            "[b]ctrl+o[/b] add the hint   [b]esc[/b] cancel")

    def action_next_label(self) -> None:
        self.label = (self.label + 1) % len(self.labels)
        self._show_label()

    def action_confirm(self) -> None:
        edited = self.query_one("#counterfactual", TextArea).text
        if edited.strip() == self.original.strip():
            self.app.notify("the edited text is identical to the row: change it first", severity="warning")
            return
        self.dismiss((edited, self.labels[self.label]))


class ModelPane(Vertical, can_focus=True):
    ALLOW_MAXIMIZE = True  # F10 zooms the whole pane, not just its focused table
    BINDINGS = [Binding("t", "train", "Train now"),
                Binding("e", "counterfactual", "Counterfactual")]
    DEFAULT_CSS = """
    ModelPane { height: 1fr; padding: 0 1; }
    ModelPane #model-status { height: auto; }
    ModelPane #model-rows { height: 1fr; min-height: 4; overflow-x: hidden; }  /* the text is cut: all of it shows below */
    /* shown once a row is chosen; a side bar, not a box, so 80x24 keeps table rows */
    ModelPane #model-row-text { height: 3; display: none; border: none; border-left: wide $border-blurred; }
    ModelPane #model-row-text:focus { border: none; border-left: wide $border; }
    ModelPane #model-row-text.-chosen { display: block; }
    ModelPane #model-why { height: auto; max-height: 2; }
    ModelPane #model-hints { height: auto; max-height: 6; }
    """

    class TrainRequested(Message):
        """The expert asked for a training run now."""

    class HintAdded(Message):
        """A hint line to insert into the spec."""
        def __init__(self, line: str) -> None:
            super().__init__()
            self.line = line

    def __init__(self, session, **kwargs):
        super().__init__(**kwargs)
        self.session = session
        self.view: Optional[ModelView] = None
        self.rows: list = []          # row index per table line
        self.current: Optional[int] = None
        self.state = "not trained yet: the spec trains after a few quiet seconds, or press t"

    def compose(self) -> ComposeResult:
        yield Static(self.state, id="model-status")
        yield DataTable(id="model-rows", cursor_type="row", zebra_stripes=True)
        yield RowText("", id="model-row-text", read_only=True, soft_wrap=True)
        yield Static("", id="model-why")
        yield Static("", id="model-hints")

    def on_mount(self) -> None:
        self.query_one("#model-rows", DataTable).add_columns("why", "id", "model", "rules", "text")

    # -- what the app tells the pane -----------------------------------------------------------
    def training(self) -> None:
        self._status("training in the background…")

    def failed(self, reason: str) -> None:
        kept = " — showing the last good model" if self.view is not None else ""
        self._status(f"[b red]training failed[/b red]: {reason}{kept}")

    def _status(self, message: str) -> None:
        self.state = message
        self.query_one("#model-status", Static).update(self._summary() + message)

    def _summary(self) -> str:
        v = self.view
        if v is None:
            return ""
        acc = f"accuracy [b]{v.accuracy:.1%}[/b] on {v.accuracy_note}" if v.accuracy is not None else v.accuracy_note
        flips = (f"; {len(v.flipped)} row(s) flipped since the last run" if v.previous else "")
        return f"{acc}{flips}\n"

    def show(self, view: ModelView) -> None:
        self.view = view
        took = f"trained in {view.seconds:.0f}s · " if getattr(self.app, "timing", True) else "trained · "
        self._status(took + "enter row · select + 1..k: hint · e: counterfactual")
        table = self.query_one("#model-rows", DataTable)
        table.clear()
        self.rows = []
        s = self.session
        entries = [("flipped", i) for i in view.flipped[:SHOWN_ROWS]]
        entries += [("unsure", i) for i in view.least_sure] + [("disagree", i) for i in view.disagree]
        for why, i in entries:
            i = int(i)
            rules = label_name(view.labels, int(view.rules[i])) if view.rules[i] != -1 else "-"
            text = s.text_of(i).replace("\n", " ")
            table.add_row(why, s.id_list[i][:14], f"{view.labels[view.label[i]]} {view.confidence[i]:.2f}",
                          rules, text[:60])
            self.rows.append(i)
        self.query_one("#model-hints", Static).update(self._hints_text(view))
        if self.current is not None:
            self.choose(self.current)

    @staticmethod
    def _hints_text(view: ModelView) -> Text:
        if not view.hints:
            return Text("no hints yet", style="dim")
        out = Text("hint satisfaction (rows no rule covers moving the hinted way), now / before\n", style="dim")
        for h in view.hints:
            before = "new" if h["before"] is None else f"{h['before']:.0%}"
            out.append(f"{h['satisfied']:>4.0%} / {before:>4}  {h['hint']}\n")
        return out

    # -- rows -----------------------------------------------------------------------------------
    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if 0 <= event.cursor_row < len(self.rows):
            self.choose(self.rows[event.cursor_row])
            self.query_one(RowText).focus()

    def choose(self, i: int) -> None:
        self.current = i
        self.query_one(RowText).load_text(self.session.text_of(i))
        self.query_one(RowText).add_class("-chosen")
        why = Text(f"row {self.session.id_list[i]}: ")
        if self.view is not None:
            for lab, words in pushes(self.view, self.session, i):
                why.append(f"→ {lab}: ", style="bold")
                why.append((", ".join(words) or "—") + "   ")
        self.query_one("#model-why", Static).update(why)
        labels = self.view.labels if self.view is not None else []
        for n, lab in enumerate(labels[:9], start=1):
            self._bindings.bind(str(n), f"more({n - 1})", f"more → {lab}")
        self.refresh_bindings()

    def action_train(self) -> None:
        self.post_message(self.TrainRequested())

    def action_more(self, label: int) -> None:
        phrase = self.query_one(RowText).selected_words()
        if self.current is None or self.view is None:
            return
        if not phrase:
            self.app.notify("select a word or phrase of the row first (shift+arrows or the mouse)",
                            severity="warning")
            return
        self.post_message(self.HintAdded(hint_line(self.view.labels[label], self.session.id_list[self.current],
                                                   phrase=phrase)))

    def action_counterfactual(self) -> None:
        if self.current is None or self.view is None:
            self.app.notify("choose a row first (enter)", severity="warning")
            return
        i = self.current
        text = self.session.text_of(i)
        other = (int(self.view.label[i]) + 1) % len(self.view.labels)

        def done(result) -> None:
            if result:
                edited, lab = result
                self.post_message(self.HintAdded(hint_line(lab, self.session.id_list[i], original=text,
                                                           edited=edited)))
        self.app.push_screen(CounterfactualScreen(text, self.view.labels, other), done)
