"""Long fuzz campaign: mutated specs through `mteach check`'s path, and apply on a small table.

    python bench/fuzz_campaign.py [--cases 100000] [--seed 0] [--jobs 2] [--show 1]

Case i is a spec text made by ``tests/compiler/fuzz_inputs.random_spec`` from its own
seed (the bundled spec mutated, or a generated one with deep nesting, huge numbers,
many phrases, capture groups, mixed example types, Unicode case pairs and glued
keywords), so a case reproduces alone and the results do not depend on --jobs. Every
other case is checked with the data's schema (as `mteach check --data`), the others
without (as `mteach check`); then its examples run, and a spec checked with a schema
is applied to a six-row table. An ``MteachError`` is the expected outcome of bad input;
anything else is an uncaught exception, grouped by type and innermost mteach frame.
Prints cases, uncaught exceptions per root cause (with a reproducing spec) and the time
per spec (median, p99, max). Exit 1 when anything was uncaught.
"""
from __future__ import annotations

import argparse
import collections
import multiprocessing
import random
import sys
import time
import traceback
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "compiler")]

import numpy as np  # noqa: E402

from fuzz_inputs import SCHEMA, SPEC, TABLE, random_spec  # noqa: E402
from mteach.compiler.checker import load_spec  # noqa: E402
from mteach.engine.apply import apply_table  # noqa: E402
from mteach.engine.examples import run_examples  # noqa: E402
from mteach.errors import MteachError  # noqa: E402


def case_text(seed: int, i: int) -> str:
    return random_spec(random.Random(seed * 1_000_003 + i))


def run_case(text: str, with_schema: bool) -> None:
    schema = SCHEMA if with_schema else None
    try:
        spec = load_spec(SPEC, schema=schema, text=text)
    except MteachError:
        return
    run_examples(spec)
    if with_schema:
        apply_table(spec, TABLE)


def root_cause(err: BaseException) -> tuple:
    if isinstance(err, RecursionError):  # its frames are all alike; the deepest mteach one is noise
        return "RecursionError", "?"
    frames = [f for f in traceback.extract_tb(err.__traceback__) if "/mteach/" in f.filename]
    where = f"{Path(frames[-1].filename).name}:{frames[-1].lineno} {frames[-1].name}" if frames else "?"
    return type(err).__name__, where


def one(job: tuple) -> tuple:
    """(case, seconds, None or (cause, message))."""
    seed, i = job
    warnings.simplefilter("ignore")
    text = case_text(seed, i)
    t0 = time.perf_counter()
    try:
        run_case(text, with_schema=i % 2 == 1)
        failure = None
    except Exception as err:  # noqa: BLE001 - counting exactly these is the point
        failure = (root_cause(err), f"{type(err).__name__}: {err}"[:300])
    return i, time.perf_counter() - t0, failure


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", type=int, default=100_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--jobs", type=int, default=1, help="worker processes")
    p.add_argument("--show", type=int, default=1, help="reproducing specs printed per root cause")
    args = p.parse_args()
    times = np.zeros(args.cases)
    causes: dict = collections.defaultdict(list)
    start = time.perf_counter()
    jobs = ((args.seed, i) for i in range(args.cases))
    with multiprocessing.Pool(args.jobs) if args.jobs > 1 else _Serial() as pool:
        for done, (i, seconds, failure) in enumerate(pool.imap_unordered(one, jobs, chunksize=50), 1):
            times[i] = seconds
            if failure:
                if failure[0] not in causes:
                    print(f"  new: {failure[0]} (case {i}): {failure[1][:200]}", file=sys.stderr, flush=True)
                causes[failure[0]].append((i, failure[1]))
            if done % 5000 == 0:
                print(f"  {done:,} cases, {sum(map(len, causes.values())):,} uncaught, "
                      f"{time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    uncaught = sum(map(len, causes.values()))
    print(f"cases: {args.cases:,} (seed {args.seed}; {time.perf_counter() - start:.0f} s with {args.jobs} job(s))")
    print(f"uncaught exceptions: {uncaught:,} from {len(causes)} root cause(s)")
    for (kind, where), found in sorted(causes.items(), key=lambda kv: -len(kv[1])):
        print(f"  {len(found):6,}  {kind} at {where}: {found[0][1][:160]}")
        for i, _ in sorted(found)[:args.show]:
            print(f"        case {i}: " + repr(case_text(args.seed, i)[:600]))
    ms = times * 1000
    print(f"time per spec: median {np.median(ms):.1f} ms, p99 {np.percentile(ms, 99):.1f} ms, max {ms.max():.0f} ms "
          f"(check, examples, and apply on {TABLE.num_rows} rows when checked with the schema)")
    return 1 if uncaught else 0


class _Serial:
    """The Pool interface, in this process (so --jobs 1 can be profiled)."""
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def imap_unordered(self, fn, jobs, chunksize=1):
        return map(fn, jobs)


if __name__ == "__main__":
    sys.exit(main())
