"""Peak memory of apply_file on a 1M-row and a 10M-row Parquet file: it should stay flat.

    python bench/apply_memory.py [--sizes 1000000 10000000] [--batch-rows N] [--keep]

Each size is applied in a fresh Python process (``apply_file`` with the example spec, 2
threads), which reports its peak resident set size (VmHWM; ``getrusage`` off Linux) and
its peak right after the imports, before any data is read. apply_file streams record batches,
so the peak should be bounded by the batch size, not by the file. The data files (the
YouTube comments replicated, written in chunks) go under bench/_data/; the largest is
deleted at the end unless --keep.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ID, SPEC, machine, replicated_parquet  # noqa: E402


def child(data: str, out: str, batch_rows: int | None) -> None:
    from _common import peak_rss_mib

    from mteach.engine.apply import apply_file
    before = peak_rss_mib()
    kwargs = {"batch_rows": batch_rows} if batch_rows else {}
    result = apply_file(SPEC, data, out, id_column=ID, threads=2, **kwargs)
    print(json.dumps({"rows": result.rows, "peak_mib": peak_rss_mib(), "after_imports_mib": before}))


def measure(data: Path, batch_rows: int | None) -> dict:
    with tempfile.TemporaryDirectory(prefix="mteach-mem-") as tmp:
        cmd = [sys.executable, __file__, "--child", str(data), str(Path(tmp) / "votes.parquet")]
        if batch_rows:
            cmd += ["--batch-rows", str(batch_rows)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"apply failed on {data}:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    ap.add_argument("--batch-rows", type=int, default=None, help="apply_file's batch size (default: its own)")
    ap.add_argument("--keep", action="store_true", help="keep the largest data file")
    ap.add_argument("--child", nargs=2, metavar=("DATA", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        child(*args.child, args.batch_rows)
        return 0

    print(f"machine: {machine()}")
    results = []
    for rows in args.sizes:
        data = replicated_parquet(rows)
        r = measure(data, args.batch_rows)
        results.append(r)
        print(f"{r['rows']:>12,} rows ({data.stat().st_size / 2**20:,.0f} MiB Parquet): peak RSS {r['peak_mib']:,.0f} MiB "
              f"(after imports {r['after_imports_mib']:,.0f} MiB)")
    if len(results) > 1:
        first, last = results[0], results[-1]
        print(f"peak RSS ratio {last['rows'] // first['rows']}× rows: {last['peak_mib'] / first['peak_mib']:.2f}×")
    if not args.keep and len(args.sizes) > 1:
        data.unlink()
        print(f"deleted {data} (use --keep to keep it)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
