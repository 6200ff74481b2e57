"""The Dask engine against the local one: the same outputs, throughput, peak memory, and
the bytes the workers send back to the client.

    python bench/dask_engine.py [--rows 2000000] [--workers 2]
                                [--verbs apply label verify train predict] [--max-rows 20000]

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
   ``train`` (``[end_model] max_rows = --max-rows``) sends back each partition's vote-pattern
   counts and 2 bytes a row (covered, gold), then only the rows chosen for training.
   ``predict`` (a model trained locally, gold labels from a file of ~13k ids) predicts, writes
   and scores each partition on its worker: only the evaluation's counts come back.
3. verify (no engine: it reads the ledger at the client): ``mteach verify`` of label's local
   ledger file and of its partitioned ledger, each in a fresh process, and, for the memory
   before this change, a fresh process that reads the partitioned ledger whole (``read_ledger``).
Then, for the bytes before this change, the votes read through ``vote_batches`` as every
verb read them then (the rules' text columns sent back with each partition's votes; train's
second pass and predict with gold gathered the same).
Peaks are each process's VmHWM (its own high-water mark).
Prints rows/s of each, their ratio, the peaks, the bytes shipped, and whether the outputs
are identical: apply's by the sha256 of each output sorted by id; label's and predict's row
for row (the parts read in order against the local file, batch by batch); train's report
(losses per epoch, rows chosen) and predict's evaluation (floats to 12 digits) and verify's
report as JSON.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv  # noqa: F401 (pa.csv)
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


def local_run(argv: list) -> tuple:
    """(seconds, peak RSS MiB, stdout) of `mteach ARGV` in a fresh process."""
    cmd = [sys.executable, "-c", RUN_AND_PEAK, *map(str, argv)]
    t0 = time.perf_counter()
    run = subprocess.run(cmd, cwd=ROOT, env={**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'bench'}"},
                         capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if run.returncode != 0:
        raise SystemExit(f"mteach {' '.join(map(str, argv))} failed: {run.stderr}")
    out, peak = run.stdout.rstrip().rsplit("\n", 1) if "\n" in run.stdout.rstrip() else ("", run.stdout)
    return seconds, float(peak), out


def local_argv(verb: str, data: Path, tmp: Path) -> list:
    """The `mteach` command line of the local run of VERB (its output in ``tmp``)."""
    if verb == "train":
        return ["train", SPEC, data, "--id", ID, "-o", tmp / "model", "--config", tmp / "mteach.toml", "-q"]
    if verb == "predict":
        return ["predict", tmp / "model", data, "--id", ID, "-o", tmp / "predict.parquet", "--gold", tmp / "gold.csv",
                "--format", "json"]
    return [verb, SPEC, data, "--id", ID, "-o", tmp / f"{verb}.parquet", "-q"]


def dask_run(verb: str, data: Path, tmp: Path, workers: int) -> tuple:
    """(seconds, peak RSS per worker, bytes shipped back, what to compare) of VERB on a fresh
    LocalCluster; its output in ``tmp / VERB``."""
    from mteach.engine.train import load_model, train_streamed
    out = tmp / verb
    source = open_source(data)
    model = load_model(tmp / "model") if verb == "predict" else None
    with DaskEngine(workers=workers) as engine:
        engine.client  # start the cluster before the clock
        t0 = time.perf_counter()
        if verb == "apply":
            result = apply_file(SPEC, data, out, ID, engine=engine, partitioned=True)
        elif verb == "label":  # as `mteach label` does without a mteach.toml: the default [label_model]
            result = label_data(SPEC, data, out, ID, engine=engine, partitioned=True,
                                label_model_settings=load_settings(None).label_model)
        elif verb == "train":
            spec = load_spec(SPEC, source.schema)
            result = train_streamed(spec, source, ID, load_settings(tmp / "mteach.toml"), engine=engine)[1]
        else:
            from mteach.cli.learn import Evaluation, prediction_table
            from mteach.engine.dask_engine import predict_partitioned
            from mteach.engine.gold import GoldRequest
            _, _, evaluation, effects = predict_partitioned(
                engine, model, source, out, prediction_table, ID, gold=GoldRequest(file=str(tmp / "gold.csv")),
                evaluation=Evaluation(list(model.spec.labels)))
            result = {**evaluation.figures(), "hints": [{k: v for k, v in e.items() if k != "flipped_rows"}
                                                        for e in effects.result()]}
        seconds = time.perf_counter() - t0
        return seconds, engine.worker_peak_rss_mib(), engine.shipped_bytes, result


def write_inputs(data: Path, tmp: Path, max_rows: int) -> None:
    """train's mteach.toml, and a gold file: the train comments' labels for the ids of their
    first 8 copies in the replicated data."""
    (tmp / "mteach.toml").write_text(f"[end_model]\nmax_rows = {max_rows}\n")
    from _common import train_table
    base = train_table()
    ids = [f"{i}#{r}" for r in range(8) for i in base.column(ID).to_pylist()]
    labels = ["SPAM" if c == 1 else "HAM" for c in base.column("CLASS").to_pylist()] * 8
    pa.csv.write_csv(pa.table({"id": ids, "label": labels}), tmp / "gold.csv")


def close(a, b) -> bool:
    """Equal, floats to 12 digits (sums added in another order)."""
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(close(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(map(close, a, b))
    if isinstance(a, float) and isinstance(b, float):
        return a == b or abs(a - b) <= 1e-12 * max(abs(a), abs(b))
    return a == b


def verify_runs(data: Path, tmp: Path) -> list:
    """`mteach verify` of label's ledger file and of its partitioned ledger, and reading the
    latter whole as verify did before: (what, seconds, peak RSS MiB, report or None) each."""
    runs = []
    for what, ledger in (("ledger file", tmp / "label.parquet"), ("partitioned ledger", tmp / "label")):
        seconds, peak, out = local_run(["verify", ledger, data, "--spec", SPEC, "--format", "json"])
        runs.append((what, seconds, peak, json.loads(out)))
    whole = ("import sys; from mteach.engine.ledger import read_ledger; read_ledger(sys.argv[1]); "
             "from _common import peak_rss_mib; print(peak_rss_mib())")
    t0 = time.perf_counter()
    run = subprocess.run([sys.executable, "-c", whole, str(tmp / "label")], cwd=ROOT, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'bench'}"}, check=True)
    runs.append(("before: the partitioned ledger read whole (read_ledger, no re-run)", time.perf_counter() - t0,
                 float(run.stdout.split()[-1]), None))
    return runs


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


VERBS = ("apply", "label", "verify", "train", "predict")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=2_000_000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--verbs", nargs="+", choices=VERBS, default=["apply", "label"])
    ap.add_argument("--max-rows", type=int, default=20_000, help="train's [end_model] max_rows (default 20000)")
    args = ap.parse_args(argv)
    verbs = [v for v in VERBS if v in args.verbs or (v == "label" and "verify" in args.verbs)]
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
        write_inputs(data, tmp, args.max_rows)
        if "predict" in verbs and "train" not in verbs:  # predict needs a model
            local_run(local_argv("train", data, tmp))
        for verb in verbs:
            if verb == "verify":
                continue
            local_s, local_rss, local_out = local_run(local_argv(verb, data, tmp))
            runs.append((verb, local_s, local_rss, local_out, *dask_run(verb, data, tmp, args.workers)))
        client_rss = peak_rss_mib()  # before the comparisons below, which read whole outputs here
        for verb, local_s, local_rss, local_out, dask_s, workers, shipped, result in runs:
            parts = f", {len(read_manifest(tmp / verb)['parts'])} partitions" if (tmp / verb).is_dir() else ""
            print(f"{verb}, local (1 process, 2 threads): {local_s:7.1f} s  {args.rows / local_s:>10,.0f} rows/s  "
                  f"peak RSS {local_rss:,.0f} MiB")
            print(f"{verb}, dask ({args.workers} workers × 1 thread{parts}): {dask_s:7.1f} s  "
                  f"{args.rows / dask_s:>10,.0f} rows/s  peak RSS per worker "
                  + ", ".join(f"{v:,.0f}" for _, v in sorted(workers.items())) + " MiB")
            print(f"{verb}, throughput dask / local: {local_s / dask_s:.2f}x;  sent back to the client: "
                  f"{mib(shipped)} ({shipped / args.rows:.1f} bytes a row)")
            if verb == "apply":
                local_hash = sorted_hash(pq.read_table(tmp / "apply.parquet"))
                dask_hash = sorted_hash(read_dataset(tmp / verb))
                same = local_hash == dask_hash
                print(f"apply, sha256 of the outputs sorted by id: local {local_hash[:16]}…, dask {dask_hash[:16]}… "
                      f"({'identical' if same else 'DIFFERENT'})")
            elif verb in ("label", "predict"):
                same, rows = same_rows(tmp / f"{verb}.parquet", tmp / verb)
                print(f"{verb}, the partitioned output against the local one: "
                      f"{'identical row for row' if same else 'DIFFERENT after row ' + format(rows, ',')}"
                      f"{f' ({rows:,} rows)' if same else ''}")
                if verb == "predict":
                    scores = close(result, json.loads(local_out))
                    print(f"predict, the evaluation ({result['combined']['all']['rows']:,} gold rows) and hint "
                          f"effects: {'identical (floats to 12 digits)' if scores else 'DIFFERENT'}")
                    same = same and scores
            else:
                local_report = json.loads((tmp / "model" / "report.json").read_text())
                mine = json.loads(json.dumps(result, default=str))
                same = all(local_report[k] == mine[k] for k in mine)
                print(f"train, the report (losses per epoch, rows chosen) against the local one's: "
                      f"{'identical' if same else 'DIFFERENT'}; {mine['end_model']['training_rows']['chosen']}")
            ok = ok and same
        print(f"client (this process) peak RSS over the Dask runs: {client_rss:,.0f} MiB")
        if "verify" in verbs:
            verified = verify_runs(data, tmp)
            for what, seconds, peak, report in verified:
                print(f"verify, {what}: {seconds:.1f} s, peak RSS {peak:,.0f} MiB"
                      + (f", {'identical' if report['identical'] else 'DIFFERENT'}" if report else ""))
            same = verified[0][3] == verified[1][3]
            print(f"verify, the two reports: {'identical' if same else 'DIFFERENT'}")
            ok = ok and same
    before_s, before = bytes_before(data, args.workers)
    print(f"before (every verb's votes came back with the rules' text columns): {mib(before)} sent back "
          f"({before / args.rows:.1f} bytes a row; that read alone {before_s:.1f} s)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
