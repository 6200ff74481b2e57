"""The audit report: one self-contained HTML file (inline CSS, inline SVG, a small inline
script for the row browser, no network) written beside a copy of the ledger it describes.

Everything comes from the ledger (``ledger.read_ledger``): no re-run. The page is rendered
by ``templates/audit.html.j2`` with autoescaping, so no ledger field — a rule's line, a
row's text or id — can inject markup; the row browser's rows travel as JSON (``tojson``
escapes ``<``, ``>``, ``&`` and quotes) and the script writes them with ``textContent`` only.

The row browser embeds a stratified sample of at most ``max_rows`` rows (every label, every
rule, conflicts, end-model decisions, weak decisions, then a uniform fill), so a
1,000,000-row ledger still gives a page of a few MB; the page says how many rows it holds
and gives the ``mteach explain`` command for any other row.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .analysis import conflicted_rows, rule_stats, summarize
from .explain import blame_words, explain_at, strength_words, verdict_words
from .io import atomic_folder, atomic_path, write_text_atomic
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

WEAK = 0.6          # a decision with a probability under this is "weak"
MAX_ROWS = 2000     # rows embedded in the page's row browser by default
MAX_TEXT = 2000     # characters of a text field embedded per row


def fmt_number(x, digits: int = 3, missing: str = "-") -> str:
    """A number for people: ints with thousands separators, floats to ``digits`` places,
    ``missing`` for None and NaN (the CLI's tables and the HTML report alike)."""
    if x is None or (isinstance(x, float) and np.isnan(x)):
        return missing
    if isinstance(x, (int, np.integer)):
        return f"{int(x):,}"
    return f"{float(x):.{digits}f}"


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


def _label_index(column, labels: list) -> np.ndarray:
    """Label index per row of a string column (-1 where null or not a label)."""
    idx = pc.index_in(column, value_set=pa.array(labels, pa.string()))
    return pc.fill_null(idx, -1).to_numpy(zero_copy_only=False).astype(np.int64)


def sample_rows(votes: np.ndarray, label: np.ndarray, decided_by: np.ndarray, probability: np.ndarray,
                k: int, max_rows: int = MAX_ROWS, seed: int = 0, conflict: np.ndarray = None) -> np.ndarray:
    """Positions of at most ``max_rows`` rows for the row browser, sorted: a seeded sample of
    every stratum — each label, each rule's votes, conflicts, end-model decisions, weak
    decisions (probability under ``WEAK``), rows with no label — then a uniform fill.
    Each non-empty stratum gets at least one row (so a spec with more strata than
    ``max_rows`` gets one row per stratum)."""
    n = len(label)
    if n <= max_rows:
        return np.arange(n)
    priority = np.random.default_rng(seed).permutation(n)  # the same rows for the same ledger
    strata = [label == c for c in range(k)] + [votes[:, j] != -1 for j in range(votes.shape[1])]
    strata += [conflicted_rows(votes) if conflict is None else conflict, decided_by == "end_model", probability < WEAK, label < 0]
    budget = max(1, max_rows // (2 * len(strata)))  # half the page for the strata, half uniform
    chosen = np.zeros(n, dtype=bool)
    for mask in strata:
        rows = np.flatnonzero(mask)
        if len(rows) > budget:
            rows = rows[np.argpartition(priority[rows], budget)[:budget]]
        chosen[rows] = True
    left = max_rows - int(chosen.sum())
    if left > 0:
        rest = np.flatnonzero(~chosen)
        chosen[rest[np.argsort(priority[rest], kind="stable")[:left]]] = True
    return np.flatnonzero(chosen)


def _browser_row(ledger: Ledger, i: int, rule_pos: dict, conflict: bool) -> dict:
    """One row of the row browser: the explanation's facts in words first, then numbers."""
    e = explain_at(ledger, i)
    fields = ledger.table.column("fields")[i].as_py() if "fields" in ledger.table.column_names else {}
    shown = {}
    for name, value in (fields or {}).items():
        text = "" if value is None else str(value)
        shown[name] = text if len(text) <= MAX_TEXT else text[:MAX_TEXT] + " … (cut here; `mteach explain` has it all)"
    label = e["label"]
    votes = [{"rule": rule_pos.get(v["rule"]), "label": v["label"], "c": v["contribution"],
              "words": f"votes {v['label']}, " + strength_words(v["contribution"], label)} for v in e["votes"]]
    row = {"id": str(e["id"]), "label": label, "p": e["probability"], "by": e["decided_by"], "gold": e.get("gold"),
           "fields": shown, "verdict": verdict_words(e), "votes": votes, "conflict": bool(conflict),
           "weak": e["probability"] is not None and e["probability"] < WEAK}
    if "baseline_log_odds" in e and e["decided_by"] == "rules":
        row["baseline"] = {"c": e["baseline_log_odds"], "words": strength_words(e["baseline_log_odds"], label)}
    if e.get("end_model_contribution") is not None:
        row["em"] = {"c": e["end_model_contribution"], "words": strength_words(e["end_model_contribution"], label)}
    if e.get("end_model_features"):
        row["features"] = [{"feature": f["feature"], "c": f["weight"],
                            "words": strength_words(f["weight"], label)} for f in e["end_model_features"]]
    return row


def _end_model_part(ledger: Ledger, label: np.ndarray, decided_by: np.ndarray, probability: np.ndarray,
                    rows_shown: int = 50) -> dict:
    """The end model's part in the ledger: rows it decided, its weak decisions, its share of
    each label's log-odds on covered rows, and what the ledger records about the model."""
    t, labels = ledger.table, ledger.labels
    by_em = decided_by == "end_model"
    weak = by_em & (probability < WEAK)
    weak_pos = np.flatnonzero(weak)
    ids = t.column("id").take(pa.array(weak_pos[:rows_shown])).to_pylist()
    text_field = _first_text_field(ledger)
    texts = ([None] * len(ids) if text_field is None else
             pc.struct_field(t.column("fields").combine_chunks(), [text_field]).take(
                 pa.array(weak_pos[:rows_shown])).to_pylist())
    part = {"used": bool(ledger.run.get("settings", {}).get("end_model")), "decided": int(by_em.sum()),
            "weak": int(weak.sum()), "weak_rows": [{"id": str(i), "label": labels[label[p]] if label[p] >= 0 else None,
                                                    "p": float(probability[p]), "text": x}
                                                   for i, p, x in zip(ids, weak_pos, texts)],
            "model": ledger.run.get("model"), "blend": ledger.run.get("settings", {}).get("blend"), "shares": []}
    if "end_model_contribution" in t.column_names:
        # per covered row: |baseline| + Σ|rule contributions| + |end model| log-odds toward its label
        em = np.abs(pc.fill_null(t.column("end_model_contribution"), 0.0).to_numpy(zero_copy_only=False))
        contribs = t.column("contributions").combine_chunks()
        parents = pc.list_parent_indices(contribs).to_numpy()
        rules_abs = np.bincount(parents, weights=np.abs(contribs.flatten().field("contribution").to_numpy(
            zero_copy_only=False)), minlength=t.num_rows)
        baseline = np.asarray(ledger.model["baseline"], dtype=np.float64)
        k = len(labels)
        base_lo = np.array([baseline[c] - np.delete(baseline, c).mean() if k > 1 else 0.0 for c in range(k)])
        covered = (decided_by == "rules") & (label >= 0)
        for c, lab in enumerate(labels):
            rows = covered & (label == c)
            total = float(np.abs(base_lo[c]) * rows.sum() + rules_abs[rows].sum() + em[rows].sum())
            part["shares"].append({"label": lab, "rows": int(rows.sum()),
                                   "share": float(em[rows].sum()) / total if total > 0 else None})
    return part


def latest_blame(blames: list):
    """The most recent of some blames (a rule's defines'): uncommitted lines first, then the
    latest date; None when none is known."""
    import datetime as dt
    known = [b for b in blames if b]
    if any(b["commit"] == "uncommitted" for b in known):
        return next(b for b in known if b["commit"] == "uncommitted")
    return max(known, key=lambda b: dt.datetime.fromisoformat(b["date"]), default=None)


def _first_text_field(ledger: Ledger):
    if "fields" not in ledger.table.column_names:
        return None
    typ = ledger.table.schema.field("fields").type
    names = [typ.field(i).name for i in range(typ.num_fields) if pa.types.is_string(typ.field(i).type)]
    return names[0] if names else None


def report_context(ledger: Ledger, max_rows: int = MAX_ROWS, ledger_name: str = "ledger.parquet") -> dict:
    """Everything the audit template shows, computed from the ledger (vectorized over rows;
    per-row Python only for the at most ``max_rows`` rows embedded in the browser)."""
    # a ledger built in memory (``build_ledger`` without run facts) records no data file
    run, labels = {"data": None, "data_sha256": None, "id_column": None, **ledger.run}, ledger.labels
    t = ledger.table
    n = t.num_rows
    votes = ledger.votes_matrix()
    names = ledger.rule_names
    gold = _label_index(t.column("gold"), labels) if "gold" in t.column_names else None
    if gold is not None and not (gold >= 0).any():
        gold = None
    stats = rule_stats(votes, names, [r["label"] for r in ledger.rules], labels, gold).to_pylist()
    summary = summarize(votes, labels, gold)
    counts = label_counts(ledger)
    label = _label_index(t.column("label"), labels)
    decided_by = t.column("decided_by").to_numpy(zero_copy_only=False).astype(str)
    probability = pc.fill_null(t.column("probability"), np.nan).to_numpy(zero_copy_only=False)
    conflict = conflicted_rows(votes)

    rules = []
    for r, s in zip(ledger.rules, stats):
        defines = r.get("defines") or []
        rules.append({**r, "stats": s, "owner": blame_words(r.get("blame")),
                      "defines": [{**d, "owner": blame_words(d.get("blame"))} for d in defines],
                      "defines_latest": latest_blame([d.get("blame") for d in defines])})
    gold_part = None
    if gold is not None:
        known = gold >= 0
        decided_rows = known & (label >= 0)
        agree = int((label[decided_rows] == gold[decided_rows]).sum())
        gold_part = {"rows": int(known.sum()), "decided": int(decided_rows.sum()), "agree": agree,
                     "matrix": [[int(((gold == gi) & (label == pi)).sum()) for pi in range(len(labels))] +
                                [int(((gold == gi) & (label < 0)).sum())] for gi in range(len(labels))]}

    positions = sample_rows(votes, label, decided_by, probability, len(labels), max_rows, conflict=conflict)
    rule_pos = {name: j for j, name in enumerate(names)}
    browser = {"rows": [_browser_row(ledger, int(i), rule_pos, conflict[i]) for i in positions],
               "rules": [{"name": r["rule"], "label": r["label"], "where": f"{r['file']}:{r['line']}",
                          "source": r["source"], "description": r.get("description") or "",
                          "define_names": [d["define"] for d in r.get("defines") or []],
                          "defines": [f"{d['file']}:{d['line']}  {d['source']}" for d in r.get("defines") or []]}
                         for r in ledger.rules],
               "labels": labels, "weak": WEAK}
    decided = {k: int((decided_by == k).sum()) for k in ("rules", "end_model", "none")}
    model = ledger.model
    return {
        "run": run, "labels": labels, "n": n, "rules": rules, "summary": summary, "counts": counts,
        "decided": decided, "git": run.get("git") or {}, "gold": gold_part,
        "conflict_pairs": _conflict_pairs(votes, names)[:20],
        "baseline": list(zip(labels, model.get("baseline", []), model.get("class_balance") or [None] * len(labels))),
        "end_model": _end_model_part(ledger, label, decided_by, probability),
        "browser": browser, "embedded": len(positions), "ledger_name": ledger_name,
        "id_example": browser["rows"][0]["id"] if browser["rows"] else "ROW_ID",
        "label_bars": list(counts.items()),
        "decided_bars": list(decided.items()),
        "coverage_bars": [(s["rule"], s["coverage"]) for s in stats],
        "accuracy_bars": [(r["rule"], r.get("estimated_accuracy")) for r in ledger.rules],
        "gold_bars": [(s["rule"], s.get("accuracy")) for s in stats] if gold is not None else None,
        "temperature": model.get("temperature"), "weak": WEAK, "css": CSS,
    }


def render_report(ledger: Ledger, max_rows: int = MAX_ROWS) -> str:
    """The audit page as HTML, from ``templates/audit.html.j2`` (autoescaped)."""
    import base64
    import hashlib

    import jinja2
    import markupsafe  # jinja2's own dependency
    env = jinja2.Environment(loader=jinja2.PackageLoader("mteach.engine", "templates"),
                             autoescape=True, undefined=jinja2.StrictUndefined)
    # the row browser's script is static: the page's Content-Security-Policy allows it by hash
    script = env.get_template("audit_browser.js.j2").render()
    script_hash = "sha256-" + base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode()
    return env.get_template("audit.html.j2").render(**report_context(ledger, max_rows),
                                                    script=markupsafe.Markup(script), script_hash=script_hash)


def write_report(ledger: Ledger, folder, max_rows: int = MAX_ROWS) -> Path:
    """Write ``folder/index.html`` and ``folder/ledger.parquet`` (a byte copy of the ledger; of a
    partitioned ledger, ``folder/ledger/`` with its parts and manifest)."""
    folder = Path(folder)
    index = folder / "index.html"
    write_text_atomic(index, render_report(ledger, max_rows))
    if ledger.path is not None and Path(ledger.path).is_dir():  # a partitioned ledger: its parts and manifest
        target = folder / "ledger"
        if not target.exists() or not target.samefile(ledger.path):
            with atomic_folder(target) as tmp:
                for part in sorted(Path(ledger.path).glob("[!.]*")):
                    shutil.copyfile(part, tmp / part.name)
    elif ledger.path is not None:
        target = folder / "ledger.parquet"
        if not target.exists() or not target.samefile(ledger.path):
            with atomic_path(target) as tmp:
                shutil.copyfile(ledger.path, tmp)
    return index
