"""How fast the studio refreshes after an edit: full apply vs a one-rule edit.

Replicates the YouTube comments to 100,000 rows (default), then times
1. a full apply: every rule of specs/youtube_spam.mt evaluated (what a refresh would
   cost without the cache), and
2. the studio's refresh after editing one rule (a phrase added to the first rule with
   an inline any(...)): check the edited text, re-apply only the changed rule
   (engine.incremental), update the rule stats and totals from the changed column
   (engine.analysis.IncrementalStats), and, for comparison, the same refresh with the
   statistics computed over the whole vote matrix.
Prints both figures (median of --repeat runs) and their ratio.

    python bench/tui_refresh.py [--rows 100000] [--repeat 5]
"""
from __future__ import annotations

import argparse
import re
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mteach.compiler.checker import load_spec  # noqa: E402
from mteach.compiler.evaluator import vote_matrix  # noqa: E402
from mteach.engine.analysis import (IncrementalStats, conflicted_rows, majority_vote, rule_stats,  # noqa: E402
                                    summarize)
from mteach.engine.incremental import IncrementalVotes  # noqa: E402
from mteach.engine.io import open_data  # noqa: E402

SPEC = ROOT / "specs" / "youtube_spam.mt"
DATA = ROOT / "data" / "youtube" / "train.csv"


def replicate(table: pa.Table, rows: int) -> pa.Table:
    reps = -(-rows // table.num_rows)
    return pa.concat_tables([table] * reps).slice(0, rows).combine_chunks()


def refresh(engine: IncrementalVotes, text: str, schema, gold, parts=None, stats=None) -> tuple:
    """What the studio does after an edit: check, re-apply what changed, the statistics
    (``stats``: the studio's IncrementalStats; None: computed over the whole matrix)."""
    t0 = time.perf_counter()
    spec = load_spec(SPEC, schema, text=text)
    t1 = time.perf_counter()
    votes = engine.votes(spec)
    t2 = time.perf_counter()
    labels, rule_labels = list(spec.labels), [r.rule.label for r in spec.rules]
    if stats is not None:
        stats.update(votes, engine.column_keys(spec), spec.rule_names, rule_labels, labels, gold)
    else:
        rule_stats(votes, spec.rule_names, rule_labels, labels, gold)
        summarize(votes, labels, gold)
        conflicted_rows(votes)
        majority_vote(votes, len(labels))
    if parts is not None:
        parts.append((t1 - t0, t2 - t1, time.perf_counter() - t2))
    return spec, votes


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args(argv)

    source = open_data(DATA)
    table = replicate(source.read_all(), args.rows)
    gold = np.where(np.asarray(table.column("CLASS").to_numpy()) == 1, 0, 1)
    text = SPEC.read_text(encoding="utf-8")
    spec = load_spec(SPEC, source.schema, text=text)
    vote_matrix(spec, table.slice(0, 1000))  # warm up kernels and regex caches

    full = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        engine = IncrementalVotes(table)
        refresh(engine, text, source.schema, gold)
        full.append(time.perf_counter() - t0)

    # the edit: add a phrase to the first rule with an inline any(...) (its own phrases,
    # shared with no other rule), a new phrase each time so the cache cannot answer it
    lines = text.split("\n")
    at = next(i for i, line in enumerate(lines) if re.match(r"\s*rule\s+\w+\s*:.*\bany\(", line))
    edited_rule = re.match(r"\s*rule\s+(\w+)", lines[at]).group(1)

    def edit(k):
        out = list(lines)
        out[at] = out[at].replace("any(", f'any("zzbench{k}", ', 1)
        return "\n".join(out)

    def edits(stats) -> tuple:
        engine = IncrementalVotes(table)
        refresh(engine, text, source.schema, gold, stats=stats)
        one, evaluated, parts = [], [], []
        for k in range(args.repeat):
            edited = edit(k)
            t0 = time.perf_counter()
            refresh(engine, edited, source.schema, gold, parts, stats=stats)
            one.append(time.perf_counter() - t0)
            evaluated.append(tuple(engine.last_evaluated))
        assert all(e == (edited_rule,) for e in evaluated), evaluated
        return statistics.median(one), [statistics.median(p[i] for p in parts) * 1000 for i in range(3)]

    whole, (_, _, whole_stats) = edits(None)
    o, (check, apply, stats) = edits(IncrementalStats())
    f = statistics.median(full)
    print(f"rows: {table.num_rows:,}  rules: {len(spec.rules)}  repeats: {args.repeat}")
    print(f"full apply + stats (all {len(spec.rules)} rules): {f * 1000:8.1f} ms")
    print(f"one-rule edit refresh (rule {edited_rule} re-applied, stats updated): {o * 1000:8.1f} ms")
    print(f"  of which: check the spec {check:.1f} ms, re-apply {apply:.1f} ms, stats {stats:.1f} ms "
          f"(over the whole matrix instead: {whole_stats:.1f} ms, a refresh of {whole * 1000:.1f} ms)")
    print(f"ratio full / one-rule edit: {f / o:.1f}x; stats whole / incremental: {whole_stats / stats:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
