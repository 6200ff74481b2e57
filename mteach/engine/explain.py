"""Why a row has its label, in words, from the ledger alone (no re-run)."""
from __future__ import annotations

import difflib
import math

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .ledger import Ledger, LedgerError


def find_row(ledger: Ledger, row_id: str) -> int:
    """Position of the row whose id (as text) is ``row_id``; LedgerError with near ids if absent."""
    ids = pc.cast(ledger.table.column("id"), pa.string()).combine_chunks()
    hit = pc.index(ids, pa.scalar(str(row_id), pa.string())).as_py()
    if hit is not None and hit >= 0:
        return hit
    near = nearest_ids(ids, str(row_id))
    hint = f" — did you mean {' or '.join(near)}?" if near else ""
    raise LedgerError(f"row id {row_id!r} is not in {ledger.path} ({ledger.table.num_rows:,} rows, "
                      f"id column {ledger.run.get('id_column')!r}){hint}")


def nearest_ids(ids: pa.Array, wanted: str, n: int = 3) -> list:
    pool = ids
    for width in (4, 2, 1):
        if len(wanted) >= width:
            mask = pc.starts_with(ids, wanted[:width])
            if pc.any(mask).as_py():
                pool = ids.filter(mask)
                break
    pool = pool.slice(0, 20_000).to_pylist()
    return difflib.get_close_matches(wanted, [p for p in pool if p is not None], n=n, cutoff=0.5)


def explain_row(ledger: Ledger, row_id: str) -> dict:
    """Why row ``row_id`` has its label, from the ledger alone."""
    return explain_at(ledger, find_row(ledger, row_id))


def explain_at(ledger: Ledger, i: int) -> dict:
    """Why the row at position ``i`` of the ledger has its label (``explain_row`` by position)."""
    row = ledger.table.slice(i, 1).to_pylist()[0]
    labels = ledger.labels
    rules = {r["rule"]: r for r in ledger.rules}
    baseline = np.asarray(ledger.model["baseline"], dtype=np.float64)
    weights = np.asarray(ledger.model["weights"], dtype=np.float64)
    label = row["label"]
    k = len(labels)
    contribs = {c["rule"]: c["contribution"] for c in row["contributions"] or []}
    out = {"id": row["id"], "label": label, "probability": row["probability"], "decided_by": row["decided_by"],
           "gold": row.get("gold"), "spec": ledger.run.get("spec"), "spec_hash": ledger.run.get("spec_hash"),
           "git": ledger.run.get("git"), "ledger": str(ledger.path), "votes": []}
    target = labels.index(label) if label in labels else None
    if target is not None:
        others = [c for c in range(k) if c != target]
        out["baseline_log_odds"] = float(baseline[target] - baseline[others].mean())
    out["baseline"] = {lab: float(b) for lab, b in zip(labels, baseline)}
    score = baseline.copy()
    for v in row["votes"] or []:
        info = rules.get(v["rule"], {})
        j = info.get("index")
        if j is not None:
            score = score + weights[j, labels.index(v["label"])]
        out["votes"].append({
            "rule": v["rule"], "label": v["label"], "contribution": contribs.get(v["rule"]),
            "file": info.get("file"), "line": info.get("line"), "source": info.get("source"),
            "description": info.get("description"), "estimated_accuracy": info.get("estimated_accuracy"),
            "confidence": info.get("confidence"), "blame": info.get("blame"), "defines": info.get("defines") or []})
    if row["decided_by"] == "rules":
        p = np.exp(score - score.max())
        out["posterior"] = {lab: float(x) for lab, x in zip(labels, p / p.sum())}
        if row.get("end_model_contribution") is not None:
            out["end_model_contribution"] = row["end_model_contribution"]
            out["blend"] = ledger.run.get("settings", {}).get("blend")
    if row["decided_by"] == "end_model":
        out["end_model_features"] = row.get("end_model_features")
    return out


def verdict_words(e: dict) -> str:
    """The row's label, probability and what decided it, in one sentence."""
    if e["decided_by"] == "none":
        return f"row {e['id']}: no label — no rule voted on it and no end model labelled it."
    return (f"row {e['id']}: {e['label']} with probability {e['probability']:.4f}, "
            f"decided by {'the rules' if e['decided_by'] == 'rules' else 'the end model'}.")


def strength_words(log_odds: float, label: str) -> str:
    """A log-odds term in words: how hard, and which way, it pushes toward ``label``."""
    size = abs(log_odds)
    how = "strongly" if size >= 2 else "clearly" if size >= 0.5 else "slightly" if size >= 0.05 else "barely"
    return f"{how} {'toward' if log_odds >= 0 else 'against'} {label}"


def blame_words(b) -> str:
    """Who last changed a rule's or a define's lines, from its git blame."""
    if b and b.get("commit") == "uncommitted":
        return "last changed: not committed yet"
    if b:
        return f"last changed in commit {b['commit'][:10]} by {b['author']} <{b['email']}> on {b['date'][:10]}"
    return "last changed: unavailable (blame needs the spec in git)"


def format_explanation(e: dict) -> str:
    """The explanation in words, for an expert and an auditor."""
    lines = [verdict_words(e)]
    git = e.get("git") or {}
    if git.get("state") == "clean":
        version = f"commit {git['commit'][:10]} ({git.get('path_in_repo')})"
    elif git.get("state") == "dirty":
        version = "uncommitted changes (no commit recorded)"
    else:
        version = "git unavailable (the spec was not in a git repository)"
    lines.append(f"spec: {e['spec']}, version {e['spec_hash'][:12]}, {version}")
    if e.get("gold") is not None and e.get("label") is None:
        lines.append(f"gold label: {e['gold']} (the row has no label to compare)")
    elif e.get("gold") is not None:
        agree = "agrees" if e["gold"] == e["label"] else "DISAGREES"
        lines.append(f"gold label: {e['gold']} ({agree} with the given label)")
    if e["decided_by"] == "rules":
        lines.append("")
        lab = e["label"]
        lines.append(f"start: the class baseline gives {lab} {e['baseline_log_odds']:+.3f} log-odds "
                     f"(the class balance and what every rule's silence says; a rule that votes replaces its silence with its vote)")
        lines.append(f"then each rule that voted adds its log-odds toward {lab}:")
        for v in e["votes"]:
            acc = v["estimated_accuracy"]
            acc_text = f"estimated accuracy {acc:.2f}" if acc is not None else "accuracy unknown"
            c = v["contribution"]
            lines.append(f"  {c:+.3f}  rule {v['rule']} votes {v['label']}, {strength_words(c, lab)}  "
                         f"({v['file']}:{v['line']}, {acc_text})")
            if v.get("description"):
                for d in v["description"].splitlines():
                    lines.append(f"          # {d}")
            lines.append(f"          {v['source']}")
            lines.append(f"          {blame_words(v.get('blame'))}")
            for d in v.get("defines") or []:
                lines.append(f"          uses define {d['define']} ({d['file']}:{d['line']}), "
                             f"{blame_words(d.get('blame'))}")
        total = e["baseline_log_odds"] + sum(v["contribution"] for v in e["votes"])
        if e.get("end_model_contribution") is not None:
            lines.append(f"  {e['end_model_contribution']:+.3f}  the end model's view of the text, "
                         f"{strength_words(e['end_model_contribution'], lab)} "
                         f"(blended in with weight {e.get('blend')})")
            total += e["end_model_contribution"]
        lines.append(f"total: {total:+.3f} log-odds toward {lab}"
                     + (f" = probability {1 / (1 + math.exp(-total)):.4f}" if len(e["baseline"]) == 2 else
                        f"; label model posterior {', '.join(f'{k} {p:.3f}' for k, p in e['posterior'].items())}"))
    elif e["decided_by"] == "end_model":
        lines.append("")
        lines.append("no rule voted on this row; it was decided by the end model (trained on the rules' labels).")
        feats = e.get("end_model_features")
        if feats:
            lines.append("the end model's top features for it:")
            for f in feats:
                lines.append(f"  {f['weight']:+.3f}  {f['feature']}")
        else:
            lines.append("the ledger records no end-model features for this row.")
    return "\n".join(lines)
