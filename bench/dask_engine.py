"""The Dask engine against the local one: the same outputs, throughput, peak memory.

    python bench/dask_engine.py [--rows 2000000] [--workers 2]

Applies specs/youtube_spam.mt (14 rules) to --rows replicated YouTube comments (a
Parquet file of 131,072-row row groups, cached under bench/_data/) twice:
1. local: ``mteach apply`` in a fresh process (2 threads), one vote file; its peak RSS
   is that process's.
2. dask: ``apply_file`` on a ``DaskEngine`` over a LocalCluster of --workers worker
   processes (1 thread each), a partitioned output (a part per partition and the
   manifest); peak RSS per worker process and of the client (this process).
Peaks are each process's VmHWM (its own high-water mark).
Prints rows/s of each, their ratio, the peaks, and the sha256 of each output sorted
by id (equal means identical votes).
"""
from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ID, ROOT, SPEC, machine, peak_rss_mib, replicated_parquet  # noqa: E402

sys.path.insert(0, str(ROOT))
from mteach.engine.apply import apply_file  # noqa: E402
from mteach.engine.dask_engine import DaskEngine  # noqa: E402
from mteach.engine.datasets import read_dataset  # noqa: E402


def sorted_hash(table: pa.Table) -> str:
    """sha256 of the table's columns (id and votes) after sorting by id."""
    table = table.take(pc.sort_indices(table, [(table.column_names[0], "ascending")]))
    h = hashlib.sha256()
    for col in table.columns:
        for chunk in col.chunks:
            h.update(chunk.to_numpy(zero_copy_only=False).tobytes() if chunk.type != pa.string()
                     else "\n".join(chunk.to_pylist()).encode())
    return h.hexdigest()


# `mteach apply ...` that prints its own peak RSS last (VmHWM: ru_maxrss from wait4 would
# count this bench process's memory at the time of the spawn too)
APPLY_AND_PEAK = ("import sys; from mteach.cli import main; rc = main(sys.argv[1:]); "
                  "from _common import peak_rss_mib; print(peak_rss_mib()); sys.exit(rc)")


def local_run(data: Path, out: Path) -> tuple:
    """(seconds, peak RSS MiB) of `mteach apply` in a fresh process."""
    cmd = [sys.executable, "-c", APPLY_AND_PEAK, "apply", str(SPEC), str(data), "--id", ID, "-o", str(out), "-q"]
    t0 = time.perf_counter()
    run = subprocess.run(cmd, cwd=ROOT, env={**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'bench'}"},
                         capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if run.returncode != 0:
        raise SystemExit(f"local apply failed: {run.stderr}")
    return seconds, float(run.stdout.split()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=2_000_000)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args(argv)
    # the data made in another process, so this one's peak RSS is the Dask client's
    subprocess.run([sys.executable, "-c", f"from _common import replicated_parquet; replicated_parquet({args.rows})"],
                   cwd=Path(__file__).parent, check=True)
    data = replicated_parquet(args.rows)
    print(machine())
    print(f"rows: {args.rows:,}  spec: {SPEC.name}  data: {data.name} "
          f"({pq.ParquetFile(data).metadata.num_row_groups} row groups)")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        local_s, local_rss = local_run(data, tmp / "local.parquet")
        with DaskEngine(workers=args.workers) as engine:
            engine.client  # start the cluster before the clock
            t0 = time.perf_counter()
            apply_file(SPEC, data, tmp / "dask", ID, engine=engine, partitioned=True)
            dask_s = time.perf_counter() - t0
            workers = engine.worker_peak_rss_mib()
        client_rss = peak_rss_mib()
        parts = len(list((tmp / "dask").glob("part-*.parquet")))
        local_hash = sorted_hash(pq.read_table(tmp / "local.parquet"))
        dask_hash = sorted_hash(read_dataset(tmp / "dask"))
    print(f"local (1 process, 2 threads): {local_s:7.1f} s  {args.rows / local_s:>10,.0f} rows/s  "
          f"peak RSS {local_rss:,.0f} MiB")
    print(f"dask ({args.workers} workers × 1 thread, {parts} partitions): {dask_s:7.1f} s  "
          f"{args.rows / dask_s:>10,.0f} rows/s  peak RSS per worker "
          + ", ".join(f"{v:,.0f}" for _, v in sorted(workers.items())) + f" MiB, client {client_rss:,.0f} MiB")
    print(f"throughput dask / local: {local_s / dask_s:.2f}x")
    print(f"sha256 of the outputs sorted by id: local {local_hash[:16]}…, dask {dask_hash[:16]}… "
          f"({'identical' if local_hash == dask_hash else 'DIFFERENT'})")
    return 0 if local_hash == dask_hash else 1


if __name__ == "__main__":
    sys.exit(main())
