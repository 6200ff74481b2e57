"""The Dask engine against the local one: the same outputs, throughput, peak memory, and
the bytes the workers send back to the client.

    python bench/dask_engine.py [--rows 2000000] [--workers 2] [--verbs apply label]

Runs specs/youtube_spam.mt (14 rules) on --rows replicated YouTube comments (a Parquet
file of 131,072-row row groups, cached under bench/_data/), each verb twice:
1. local: ``mteach VERB`` in a fresh process (2 threads), one output file; its peak RSS
   is that process's.
2. dask: the same verb through the API on a ``DaskEngine`` over a fresh LocalCluster of
   --workers worker processes (1 thread each), a partitioned output (a part per partition
   and the manifest); peak RSS per worker process and the bytes of the workers' results
   that came back to the client (``DaskEngine.shipped_bytes``: dask's ``sizeof``).
   ``label`` writes each partition's ledger part on its worker (a first pass brings back
   each partition's vote-pattern counts, a second each part's manifest entry, facts and
   64-bit id hashes).
Then, for the bytes before this change, the votes read through ``vote_batches`` as every
verb read them then (the rules' text columns sent back with each partition's votes).
Peaks are each process's VmHWM (its own high-water mark).
Prints rows/s of each, their ratio, the peaks, the bytes shipped, and whether the outputs
are identical: apply's by the sha256 of each output sorted by id; label's row for row
(the partitioned ledger's parts read in order against the local ledger, batch by batch).
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
from mteach.compiler.checker import load_spec  # noqa: E402
from mteach.engine.apply import apply_file  # noqa: E402
from mteach.engine.dask_engine import DaskEngine  # noqa: E402
from mteach.engine.datasets import open_source, read_dataset, read_manifest  # noqa: E402
from mteach.engine.io import parquet_batches  # noqa: E402
from mteach.engine.ledger import label_data  # noqa: E402
from mteach.settings import load_settings  # noqa: E402


def sorted_hash(table: pa.Table) -> str:
    """sha256 of the table's columns (id and votes) after sorting by id."""
    table = table.take(pc.sort_indices(table, [(table.column_names[0], "ascending")]))
    h = hashlib.sha256()
    for col in table.columns:
        for chunk in col.chunks:
            h.update(chunk.to_numpy(zero_copy_only=False).tobytes() if chunk.type != pa.string()
                     else "\n".join(chunk.to_pylist()).encode())
    return h.hexdigest()


def rebatched(files: list, batch_rows: int = 65_536):
    """The rows of ``files`` in order, in batches of exactly ``batch_rows`` (the last shorter)."""
    pending, held = [], 0
    for path in files:
        for batch in parquet_batches(path, None, batch_rows):
            pending.append(batch)
            held += batch.num_rows
            while held >= batch_rows:
                table = pa.Table.from_batches(pending)
                yield table.slice(0, batch_rows)
                pending, held = table.slice(batch_rows).to_batches(), held - batch_rows
    if held:
        yield pa.Table.from_batches(pending)


def same_rows(local: Path, folder: Path) -> tuple:
    """(identical?, rows compared): the local ledger against the partitioned one's parts, in order."""
    parts = [folder / p["file"] for p in read_manifest(folder)["parts"]]
    rows = 0
    for a, b in zip(rebatched([local]), rebatched(parts), strict=True):
        if not a.replace_schema_metadata(None).equals(b.replace_schema_metadata(None)):
            return False, rows
        rows += a.num_rows
    return True, rows


# `mteach ...` that prints its own peak RSS last (VmHWM: ru_maxrss from wait4 would count
# this bench process's memory at the time of the spawn too)
RUN_AND_PEAK = ("import sys; from mteach.cli import main; rc = main(sys.argv[1:]); "
                "from _common import peak_rss_mib; print(peak_rss_mib()); sys.exit(rc)")


def local_run(verb: str, data: Path, out: Path) -> tuple:
    """(seconds, peak RSS MiB) of `mteach VERB` in a fresh process."""
    cmd = [sys.executable, "-c", RUN_AND_PEAK, verb, str(SPEC), str(data), "--id", ID, "-o", str(out), "-q"]
    t0 = time.perf_counter()
    run = subprocess.run(cmd, cwd=ROOT, env={**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'bench'}"},
                         capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if run.returncode != 0:
        raise SystemExit(f"local {verb} failed: {run.stderr}")
    return seconds, float(run.stdout.split()[-1])


def dask_run(verb: str, data: Path, out: Path, workers: int) -> tuple:
    """(seconds, peak RSS per worker, bytes shipped back) of VERB on a fresh LocalCluster."""
    with DaskEngine(workers=workers) as engine:
        engine.client  # start the cluster before the clock
        t0 = time.perf_counter()
        if verb == "apply":
            apply_file(SPEC, data, out, ID, engine=engine, partitioned=True)
        else:  # as `mteach label` does without a mteach.toml: the default [label_model]
            label_data(SPEC, data, out, ID, engine=engine, partitioned=True,
                       label_model_settings=load_settings(None).label_model)
        seconds = time.perf_counter() - t0
        return seconds, engine.worker_peak_rss_mib(), engine.shipped_bytes


def bytes_before(data: Path, workers: int) -> tuple:
    """(seconds, bytes shipped) of reading the votes as every verb did before: with the rules' columns."""
    source = open_source(data)
    spec = load_spec(SPEC, source.schema)
    with DaskEngine(workers=workers) as engine:
        engine.client
        t0 = time.perf_counter()
        for _ in engine.vote_batches(spec, source, ID, rule_columns=True):
            pass
        return time.perf_counter() - t0, engine.shipped_bytes


def mib(n: float) -> str:
    return f"{n / 2**20:,.1f} MiB"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=2_000_000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--verbs", nargs="+", choices=("apply", "label"), default=["apply", "label"])
    args = ap.parse_args(argv)
    # the data made in another process, so this one's peak RSS is the Dask client's
    subprocess.run([sys.executable, "-c", f"from _common import replicated_parquet; replicated_parquet({args.rows})"],
                   cwd=Path(__file__).parent, check=True)
    data = replicated_parquet(args.rows)
    print(machine())
    print(f"rows: {args.rows:,}  spec: {SPEC.name}  data: {data.name} "
          f"({pq.ParquetFile(data).metadata.num_row_groups} row groups)")
    ok, runs = True, []
    with tempfile.TemporaryDirectory(dir=ROOT / "bench" / "_data") as tmp:
        tmp = Path(tmp)
        for verb in args.verbs:
            local_s, local_rss = local_run(verb, data, tmp / f"{verb}.parquet")
            runs.append((verb, local_s, local_rss, *dask_run(verb, data, tmp / verb, args.workers)))
        client_rss = peak_rss_mib()  # before the comparisons below, which read whole outputs here
        for verb, local_s, local_rss, dask_s, workers, shipped in runs:
            local_out = tmp / f"{verb}.parquet"
            parts = len(read_manifest(tmp / verb)["parts"])
            print(f"{verb}, local (1 process, 2 threads): {local_s:7.1f} s  {args.rows / local_s:>10,.0f} rows/s  "
                  f"peak RSS {local_rss:,.0f} MiB")
            print(f"{verb}, dask ({args.workers} workers × 1 thread, {parts} partitions): {dask_s:7.1f} s  "
                  f"{args.rows / dask_s:>10,.0f} rows/s  peak RSS per worker "
                  + ", ".join(f"{v:,.0f}" for _, v in sorted(workers.items())) + " MiB")
            print(f"{verb}, throughput dask / local: {local_s / dask_s:.2f}x;  sent back to the client: "
                  f"{mib(shipped)} ({shipped / args.rows:.1f} bytes a row)")
            if verb == "apply":
                local_hash, dask_hash = sorted_hash(pq.read_table(local_out)), sorted_hash(read_dataset(tmp / verb))
                same = local_hash == dask_hash
                print(f"apply, sha256 of the outputs sorted by id: local {local_hash[:16]}…, dask {dask_hash[:16]}… "
                      f"({'identical' if same else 'DIFFERENT'})")
            else:
                same, rows = same_rows(local_out, tmp / verb)
                print(f"label, the partitioned ledger against the local one: "
                      f"{'identical row for row' if same else 'DIFFERENT after row ' + format(rows, ',')}"
                      f"{f' ({rows:,} rows)' if same else ''}")
            ok = ok and same
        print(f"client (this process) peak RSS over the Dask runs: {client_rss:,.0f} MiB")
    before_s, before = bytes_before(data, args.workers)
    print(f"before (every verb's votes came back with the rules' text columns): {mib(before)} sent back "
          f"({before / args.rows:.1f} bytes a row; that read alone {before_s:.1f} s)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
