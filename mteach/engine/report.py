"""The audit report: one self-contained HTML file (inline CSS, inline SVG, no scripts,
no network) written beside a copy of the ledger it describes.

Everything comes from the ledger (``ledger.read_ledger``): no re-run.
"""
from __future__ import annotations

import html
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .analysis import rule_stats, summarize
from .io import atomic_path, readable, write_text_atomic
from .ledger import Ledger, label_counts

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;margin:2rem auto;
max-width:1200px;padding:0 1rem;color:#1d2430;line-height:1.45}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #d0d5dd;
padding-bottom:.2rem}table{border-collapse:collapse;width:100%;font-size:.88rem;margin:.5rem 0}
th,td{border:1px solid #d0d5dd;padding:.3rem .45rem;text-align:left;vertical-align:top}
th{background:#f2f4f7}td.n{text-align:right;font-variant-numeric:tabular-nums}
code{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.85em;background:#f6f8fa;padding:0 .2em}
.facts td:first-child{width:14rem;color:#475467}.ok{color:#067647;font-weight:600}.warn{color:#b42318;font-weight:600}
.charts{display:flex;flex-wrap:wrap;gap:2rem}.muted{color:#667085}
"""


def _e(x) -> str:
    return html.escape("" if x is None else str(x))


def fmt_number(x, digits: int = 3, missing: str = "-") -> str:
    """A number for people: ints with thousands separators, floats to ``digits`` places,
    ``missing`` for None and NaN (the CLI's tables and the HTML report alike)."""
    if x is None or (isinstance(x, float) and np.isnan(x)):
        return missing
    if isinstance(x, (int, np.integer)):
        return f"{int(x):,}"
    return f"{float(x):.{digits}f}"


def _num(x, digits=3) -> str:
    return fmt_number(x, digits, missing="–")


def bar_chart(title: str, items: list, fmt=lambda v: f"{v:,}", max_value=None, color="#3b6fd8") -> str:
    """A horizontal bar chart as inline SVG: items are (name, value)."""
    width, label_w, row_h, value_w = 560, 150, 22, 70
    bar_w = width - label_w - value_w
    top = max([v for _, v in items if v is not None and not np.isnan(v)] + [0]) if max_value is None else max_value
    height = 28 + row_h * len(items)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
             f'aria-label="{_e(title)}" font-family="sans-serif" font-size="12">',
             f'<text x="0" y="16" font-weight="bold" font-size="13">{_e(title)}</text>']
    for i, (name, value) in enumerate(items):
        y = 26 + i * row_h
        v = 0.0 if value is None or np.isnan(value) else float(value)
        w = 0 if top <= 0 else bar_w * v / top
        parts.append(f'<text x="{label_w - 6}" y="{y + 14}" text-anchor="end">{_e(name)}</text>')
        parts.append(f'<rect x="{label_w}" y="{y + 3}" width="{w:.1f}" height="{row_h - 6}" fill="{color}">'
                     f'<title>{_e(name)}: {_e(fmt(value) if value is not None else "–")}</title></rect>')
        parts.append(f'<text x="{label_w + w + 4:.1f}" y="{y + 14}">'
                     f'{_e(fmt(value) if value is not None and not np.isnan(value) else "–")}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _estimate(value, interval, basis) -> str:
    """'0.950 [0.912–0.981]' and, smaller, what it rests on; '' without a value."""
    if value is None or value != value:
        return ""
    text = _num(value)
    if interval and None not in interval and all(x == x for x in interval):
        text += f" [{interval[0]:.3f}–{interval[1]:.3f}]"
    return f'{text}<br><span class="muted">{_e(basis)}</span>'


def _table(columns: list, rows: list, numeric=()) -> str:
    head = "".join(f"<th>{_e(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f'<td class="n">{cell}</td>' if columns[i] in numeric else f"<td>{cell}</td>"
                                    for i, cell in enumerate(r)) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render_report(ledger: Ledger) -> str:
    run, labels = ledger.run, ledger.labels
    t = ledger.table
    n = t.num_rows
    votes = ledger.votes_matrix()
    names = ledger.rule_names
    rule_labels = [r["label"] for r in ledger.rules]
    gold = None
    if "gold" in t.column_names:
        idx = pc.index_in(t.column("gold"), value_set=pa.array(labels, pa.string()))
        gold = pc.fill_null(idx, -1).to_numpy().astype(np.int64)
        if not (gold >= 0).any():
            gold = None
    stats = rule_stats(votes, names, rule_labels, labels, gold).to_pylist()
    summary = summarize(votes, labels, gold)
    git = run.get("git") or {}
    counts = label_counts(ledger)
    decided = {v["values"]: v["counts"] for v in pc.value_counts(t.column("decided_by")).to_pylist()}

    if git.get("state") == "clean":
        version = f'commit <code>{_e(git["commit"])}</code> (<code>{_e(git.get("path_in_repo"))}</code>), clean'
    elif git.get("state") == "dirty":
        version = '<span class="warn">uncommitted changes</span>: no commit recorded'
    else:
        version = '<span class="warn">unavailable</span>: the spec was not in a git repository'
    settings = run.get("settings", {})
    facts = [
        ("concept", _e(run.get("concept"))), ("labels", _e(", ".join(labels))),
        ("spec", f'<code>{_e(run.get("spec"))}</code>'),
        ("spec content hash", f'<code>{_e(run.get("spec_hash"))}</code>'),
        ("spec files", _e(", ".join(run.get("spec_files", [])))),
        ("spec version (git)", version),
        ("data", f'<code>{_e(run.get("data"))}</code>'),
        ("data sha256", f'<code>{_e(run.get("data_sha256"))}</code>'),
        ("id column", _e(run.get("id_column"))),
        ("label model", _e(f'{settings.get("label_model", {}).get("class")} (seed {settings.get("seed")})')),
        ("mteach version", _e(run.get("mteach_version"))),
        ("ledger integrity", '<span class="ok">the ledger\'s content matches the sha256 recorded in it</span>'),
    ]
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           f"<title>mteach audit — {_e(run.get('concept'))}</title>", f"<style>{CSS}</style></head><body>",
           f"<h1>Audit report: {_e(run.get('concept'))}</h1>",
           f'<p class="muted">How every label in the ledger was produced, from the ledger alone. '
           f'{n:,} rows, {len(names)} rules.</p>',
           "<h2>Spec version and run</h2>", '<table class="facts"><tbody>' +
           "".join(f"<tr><td>{k}</td><td>{v}</td></tr>" for k, v in facts) + "</tbody></table>"]

    # labels
    out.append("<h2>Label distribution</h2>")
    out.append('<div class="charts">' + bar_chart("rows per label", list(counts.items())) +
               bar_chart("what decided each row", [(k, int(decided.get(k, 0))) for k in ("rules", "end_model", "none")],
                         color="#7a5af8") + "</div>")
    out.append(_table(["label", "rows", "share"],
                      [[_e(k), _num(v), f"{v / max(n, 1):.1%}"] for k, v in counts.items()], numeric={"rows", "share"}))

    # rules
    out.append("<h2>Rules and their owners</h2>")
    cols = ["rule", "label", "where", "source", "description", "last changed by", "votes", "coverage",
            "conflicts", "estimated accuracy (label model)"] + (
        ["gold accuracy", "gold correct / incorrect"] if gold is not None else [])
    rows = []
    for r, s in zip(ledger.rules, stats):
        b = r.get("blame")
        if b and b.get("commit") == "uncommitted":
            owner = '<span class="warn">not committed yet</span>'
        elif b:
            owner = f'{_e(b["author"])} &lt;{_e(b["email"])}&gt;<br><code>{_e(b["commit"][:10])}</code> {_e(b["date"][:10])}'
        else:
            owner = '<span class="muted">unavailable (not in git)</span>'
        row = [f"<b>{_e(r['rule'])}</b>", _e(r["label"]), f"<code>{_e(r['file'])}:{r['line']}</code>",
               f"<code>{_e(r['source'])}</code>", _e(r.get("description")), owner, _num(int(s["votes"])),
               f"{s['coverage']:.1%}", f"{s['conflicts']:.1%}",
               _estimate(r.get("estimated_accuracy"), r.get("estimated_interval"), f"{int(s['votes']):,} votes")]
        if gold is not None:
            n_gold = int(s["correct"]) + int(s["incorrect"])
            row += [_estimate(s.get("accuracy"), [s.get("accuracy_low"), s.get("accuracy_high")], f"{n_gold:,} gold rows"),
                    f"{s['correct']:,} / {s['incorrect']:,}"]
        rows.append(row)
    out.append(_table(cols, rows, numeric={"votes", "coverage", "conflicts", "estimated accuracy (label model)",
                                           "gold accuracy"}))
    out.append("<p class=\"muted\">Estimated accuracy: the share of the rule's votes the label model believes "
               "right, with a 95% interval from the expected counts (sampling error only — the model's own error "
               "is not in it). Gold accuracy: the share of its votes on gold rows that are right, with a 95% "
               "Wilson interval.</p>")
    charts = [bar_chart("coverage per rule (share of rows)", [(s["rule"], s["coverage"]) for s in stats],
                        fmt=lambda v: f"{v:.1%}"),
              bar_chart("estimated accuracy per rule", [(r["rule"], r.get("estimated_accuracy")) for r in ledger.rules],
                        fmt=lambda v: f"{v:.3f}", max_value=1.0, color="#12b76a")]
    if gold is not None:
        charts.append(bar_chart("accuracy against gold per rule", [(s["rule"], s.get("accuracy")) for s in stats],
                                fmt=lambda v: f"{v:.3f}", max_value=1.0, color="#f79009"))
    out.append('<div class="charts">' + "".join(charts) + "</div>")

    # conflicts
    out.append("<h2>Coverage and conflicts</h2>")
    out.append(f"<p>{summary.covered:,} of {n:,} rows ({summary.covered / max(n, 1):.1%}) have at least one vote; "
               f"{summary.overlapped:,} have two or more; <b>{summary.conflicted:,}</b> "
               f"({summary.conflicted / max(n, 1):.1%}) have votes for different labels, which the label model "
               f"resolves by weighing each rule's estimated accuracy.</p>")
    conflict_pairs = _conflict_pairs(votes, names)
    if conflict_pairs:
        out.append(_table(["rule", "conflicts with", "rows"], [[_e(a), _e(b), _num(c)] for a, b, c in conflict_pairs[:20]],
                          numeric={"rows"}))

    # gold
    out.append("<h2>Agreement with gold labels</h2>")
    if gold is None:
        out.append('<p class="muted">The ledger holds no gold labels (label with --gold or --gold-column to '
                   "record them).</p>")
    else:
        given = pc.index_in(t.column("label"), value_set=pa.array(labels, pa.string()))
        given = pc.fill_null(given, -1).to_numpy().astype(np.int64)
        known = gold >= 0
        decided_rows = known & (given >= 0)
        agree = int((given[decided_rows] == gold[decided_rows]).sum())
        out.append(f"<p>{int(known.sum()):,} rows have a gold label; {int(decided_rows.sum()):,} of them are labelled, "
                   f"and the label agrees with gold on <b>{agree:,}</b> "
                   f"({agree / max(int(decided_rows.sum()), 1):.1%}). Gold labels were used to fit the label "
                   "model, so this is agreement, not held-out accuracy.</p>")
        conf = [[f"gold {_e(g)}"] + [_num(int(((gold == gi) & (given == pi)).sum())) for pi in range(len(labels))] +
                [_num(int(((gold == gi) & (given < 0)).sum()))] for gi, g in enumerate(labels)]
        out.append(_table(["", *[f"labelled {lab}" for lab in labels], "no label"], conf,
                          numeric={*[f"labelled {lab}" for lab in labels], "no label"}))

    # label model
    model = ledger.model
    out.append("<h2>Label model</h2>")
    out.append("<p>Every probability is softmax(class baseline + the weights of the rules that voted): the "
               "contributions in the ledger are exactly these terms. Parameters as recorded in the ledger:</p>")
    out.append(_table(["label", "baseline (log)", "class balance"],
                      [[_e(lab), _num(b), _num(cb)] for lab, b, cb in
                       zip(labels, model.get("baseline", []), model.get("class_balance") or [None] * len(labels))],
                      numeric={"baseline (log)", "class balance"}))
    out.append('<p class="muted">Generated by mteach from the ledger <code>ledger.parquet</code> beside this file; '
               "`mteach explain ledger.parquet --id ROW` explains any row, `mteach verify` re-runs it.</p>")
    out.append("</body></html>")
    return "\n".join(out)


def _conflict_pairs(votes: np.ndarray, names: list) -> list:
    """(rule a, rule b, rows where both vote and disagree), most first."""
    voted = votes != -1
    out = []
    for a in range(len(names)):
        both = voted[:, a:a + 1] & voted[:, a + 1:]
        disagree = both & (votes[:, a:a + 1] != votes[:, a + 1:])
        counts = disagree.sum(axis=0)
        for off in np.flatnonzero(counts):
            out.append((names[a], names[a + 1 + off], int(counts[off])))
    return sorted(out, key=lambda x: (-x[2], x[0], x[1]))


def write_report(ledger: Ledger, folder) -> Path:
    """Write ``folder/index.html`` and ``folder/ledger.parquet`` (a byte copy of the ledger)."""
    folder = Path(folder)
    index = folder / "index.html"
    write_text_atomic(index, render_report(ledger))
    readable(index)
    if ledger.path is not None:
        target = folder / "ledger.parquet"
        if not target.exists() or not target.samefile(ledger.path):
            with atomic_path(target) as tmp:
                shutil.copyfile(ledger.path, tmp)
                readable(tmp)
    return index
