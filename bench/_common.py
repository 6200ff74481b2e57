"""Shared helpers for the apply benches: paths, replicated YouTube data, timing, RSS.

The benchmark data is the 1,586 YouTube training comments replicated to the size
asked for. Each replicate is a fresh random permutation of the comments (seeded), and
every row gets a unique id ("<COMMENT_ID>#<replicate>"), so batches are not periodic
and ids stay unique. Files are written in chunks, so generating 10M rows needs
little memory; they are cached under bench/_data/ (gitignored) by row count.
"""
from __future__ import annotations

import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
DATA_DIR = BENCH / "_data"
SPEC = ROOT / "specs" / "youtube_spam.mt"
TRAIN = ROOT / "data" / "youtube" / "train.csv"
SNORKEL_PY = BENCH / ".venv-snorkel" / "bin" / "python"
TEXT, ID = "CONTENT", "COMMENT_ID"


def train_table() -> pa.Table:
    return pacsv.read_csv(TRAIN, convert_options=pacsv.ConvertOptions(strings_can_be_null=True))


def replicated_parquet(rows: int, path: Path | None = None, seed: int = 0, chunk_rows: int = 1 << 20) -> Path:
    """A Parquet file of ``rows`` rows (ID, CONTENT): the train comments, replicated."""
    path = Path(path) if path else DATA_DIR / f"youtube_{rows}.parquet"
    if path.exists() and pq.ParquetFile(path).metadata.num_rows == rows:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    base = train_table().select([ID, TEXT])
    n = base.num_rows
    ids = np.asarray(base.column(ID).to_pylist(), dtype=object)
    rng = np.random.default_rng(seed)
    tmp = path.with_suffix(".tmp")
    schema = pa.schema([pa.field(ID, pa.string()), pa.field(TEXT, pa.string())])
    done, rep = 0, 0
    with pq.ParquetWriter(tmp, schema, compression="zstd") as writer:
        while done < rows:
            take_idx, rep_no = [], []
            while sum(map(len, take_idx)) < min(chunk_rows, rows - done):
                take_idx.append(rng.permutation(n))
                rep_no.append(np.full(n, rep))
                rep += 1
            idx = np.concatenate(take_idx)[: rows - done]
            reps = np.concatenate(rep_no)[: rows - done]
            chunk_ids = pa.array([f"{i}#{r}" for i, r in zip(ids[idx], reps)], pa.string())
            chunk = pa.table({ID: chunk_ids, TEXT: base.column(TEXT).take(pa.array(idx))}, schema=schema)
            writer.write_table(chunk, row_group_size=1 << 17)
            done += len(idx)
    os.replace(tmp, path)
    return path


def sample_csv(rows: int, path: Path | None = None) -> Path:
    """The first ``rows`` rows of the replicated data as CSV (for Snorkel, which reads pandas)."""
    path = Path(path) if path else DATA_DIR / f"youtube_{rows}.csv"
    if not path.exists():
        table = pq.read_table(replicated_parquet(rows))
        path.parent.mkdir(parents=True, exist_ok=True)
        pacsv.write_csv(table, path)
    return path


def median_time(fn, repeat: int) -> tuple:
    """(median seconds, all times) over ``repeat`` runs of ``fn()``."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times


def peak_rss_mib() -> float:
    """This process's peak resident set size, MiB: VmHWM on Linux (the peak of this
    address space, so a child does not inherit its parent's peak across fork/exec as
    ``ru_maxrss`` does), else ``getrusage``'s ru_maxrss."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale / (1024 if scale == 1 else 1)


def machine() -> str:
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
