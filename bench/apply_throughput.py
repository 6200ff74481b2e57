"""Apply throughput: mteach vs Snorkel 0.10's PandasLFApplier, measured in the same run.

    python bench/apply_throughput.py [--rows 1000000] [--snorkel-rows 50000] [--repeat 3]

1. Agreement: applies specs/youtube_spam.mt to data/youtube/train.csv (1,586 rows) with
   mteach and the same 14 rules as Snorkel labeling functions (bench/_snorkel_lfs.py,
   run in bench/.venv-snorkel); prints how many vote cells and rows agree.
2. Snorkel: ``PandasLFApplier.apply`` on the first --snorkel-rows rows of the replicated
   comments, given as a pandas DataFrame (reading the CSV is not timed). Snorkel is slow,
   so it gets a sample; the rate is rows per second.
3. mteach: ``apply_file`` on the whole --rows-row Parquet file, end to end: reading the
   file, evaluating the 14 rules on 2 threads and writing the vote file.

Each is timed --repeat times; medians are reported. The data (the train comments
replicated, shuffled per copy) is generated once under bench/_data/ (gitignored).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (BENCH, ID, SNORKEL_PY, SPEC, TRAIN, machine, median_time,  # noqa: E402
                     replicated_parquet, sample_csv)

from mteach.engine.apply import apply_file, read_votes  # noqa: E402


def run_snorkel(data: Path, out: Path, repeat: int) -> dict:
    if not SNORKEL_PY.exists():
        sys.exit(f"{SNORKEL_PY} not found: create it with `bash bench/setup_snorkel_env.sh`")
    proc = subprocess.run([str(SNORKEL_PY), str(BENCH / "_snorkel_lfs.py"), str(data), "--out", str(out),
                           "--repeat", str(repeat)], capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"the Snorkel run failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def agreement(tmp: Path) -> tuple:
    ours = tmp / "train_votes.parquet"
    apply_file(SPEC, TRAIN, ours, id_column=ID)
    _, votes, rules, _ = read_votes(ours)
    run_snorkel(TRAIN, tmp / "train_L.npy", 1)
    theirs = np.load(tmp / "train_L.npy")
    names = rules.column("rule").to_pylist()
    if theirs.shape != votes.shape:
        sys.exit(f"vote matrices differ in shape: mteach {votes.shape}, Snorkel {theirs.shape}")
    per_rule = {n: int((votes[:, j] != theirs[:, j]).sum()) for j, n in enumerate(names)}
    return votes.shape, float((votes == theirs).mean()), float((votes == theirs).all(axis=1).mean()), per_rule


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000, help="rows mteach applies to (default 1,000,000)")
    ap.add_argument("--snorkel-rows", type=int, default=50_000, help="rows Snorkel applies to (default 50,000)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-rows", type=int, default=None, help="apply_file's batch size (default: its own)")
    args = ap.parse_args(argv)

    print(f"machine: {machine()}; load average {os.getloadavg()[0]:.1f}")
    print(f"spec: {SPEC.relative_to(BENCH.parent)}")
    data = replicated_parquet(args.rows)
    sample = sample_csv(args.snorkel_rows)

    with tempfile.TemporaryDirectory(prefix="mteach-bench-") as tmp:
        tmp = Path(tmp)
        shape, cells, rows, per_rule = agreement(tmp)
        print(f"agreement on {TRAIN.relative_to(BENCH.parent)} ({shape[0]:,} rows × {shape[1]} rules): "
              f"{cells:.2%} of votes, {rows:.2%} of rows identical to Snorkel's")
        if any(per_rule.values()):
            print("  rules that disagree (rows):", {k: v for k, v in per_rule.items() if v})

        snorkel = run_snorkel(sample, tmp / "sample_L.npy", args.repeat)
        snorkel_rate = snorkel["rows"] / snorkel["median_seconds"]
        print(f"Snorkel {snorkel['snorkel']} PandasLFApplier, {snorkel['rows']:,} rows: "
              f"{snorkel_rate:,.0f} rows/s (median of {args.repeat}: "
              + ", ".join(f"{s:.2f}" for s in snorkel["seconds"]) + " s)")

        kwargs = {"threads": args.threads}
        if args.batch_rows:
            kwargs["batch_rows"] = args.batch_rows
        out = tmp / "votes.parquet"
        apply_file(SPEC, sample, out, id_column=ID, **kwargs)  # warm up (character tables, regex caches)
        seconds, times = median_time(lambda: apply_file(SPEC, data, out, id_column=ID, **kwargs), args.repeat)
        ours = args.rows / seconds
        print(f"mteach apply_file, {args.rows:,} rows, {args.threads} threads: {ours:,.0f} rows/s "
              f"(median of {args.repeat}: " + ", ".join(f"{t:.2f}" for t in times) + " s)")
        # Same sample as Snorkel, for a like-for-like look (small files are dominated by fixed costs).
        s_seconds, _ = median_time(lambda: apply_file(SPEC, sample, out, id_column=ID, **kwargs), args.repeat)
        print(f"mteach apply_file on Snorkel's {args.snorkel_rows:,}-row sample (CSV): "
              f"{args.snorkel_rows / s_seconds:,.0f} rows/s")
    print(f"ratio: mteach / Snorkel = {ours / snorkel_rate:,.0f}×")
    return 0


if __name__ == "__main__":
    sys.exit(main())
