"""The Dask engine: the votes of a spec computed on a ``distributed`` cluster.

An implementation of ``engine.votes.Engine``: ``vote_batches`` splits a Parquet source
(one file, or a dataset: ``engine.datasets``) into partitions (a part file, or a run of
its row groups), evaluates each partition on a worker with the same evaluator as the
local engine (``compiler.evaluator.vote_matrix`` over Arrow batches, read on the worker
with pyarrow, so no pandas conversion changes a type), and yields the results back in
file order, holding at most a few partitions in flight. Every verb that reads votes
through ``engine.votes`` (apply, stats, label, predict, the label model of train) runs
on it unchanged, so the labels equal a local run's: the label model fits on the unique
vote patterns with their counts either way.

The spec is shipped with the tasks (scattered once), never read from the workers' disks;
the data is read by the workers from its path, so on a real cluster the path must be on
storage every worker sees. Without a scheduler address a ``LocalCluster`` is started.

Refused with a clear message, before any work: a scheduler that does not answer within
``timeout`` seconds, and workers that run another mteach version (both versions named).
A task that fails (a worker lost mid-task) is retried; the scheduler also reschedules the
tasks of a worker that dies.
"""
from __future__ import annotations

import logging
import resource
from collections import deque
from typing import Iterator, Optional, Sequence

import numpy as np
import pyarrow.parquet as pq

from .._version import __version__
from ..compiler.evaluator import columns_needed, vote_matrix
from ..compiler.spec import Spec
from ..errors import DataError
from .datasets import DatasetSource, open_source
from .io import DEFAULT_BATCH_ROWS, DataSource
from .votes import Progress, VoteBatch, batch_ids

DEFAULT_TIMEOUT = 10.0  # seconds to wait for a scheduler


def evaluate_partition(spec: Spec, path: str, row_groups: list, columns: list, id_column: Optional[str],
                       offset: int, batch_rows: int) -> tuple:
    """On a worker: read the partition's columns and evaluate the rules over it in batches.
    Returns (ids, votes, table)."""
    table = pq.ParquetFile(path).read_row_groups(row_groups, columns=columns)
    votes = [vote_matrix(spec, batch) for batch in table.to_batches(max_chunksize=batch_rows)]
    votes = np.concatenate(votes) if votes else np.zeros((0, len(spec.rules)), np.int8)
    return batch_ids(table, id_column, path, offset), votes, table


def worker_version() -> str:
    return __version__


def worker_peak_rss_mib() -> float:
    """The worker process's peak resident memory (MiB), for the bench: VmHWM, which (unlike
    ru_maxrss, kept across exec on Linux) does not count the process that spawned it."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def partitions(source: DataSource, batch_rows: int) -> list:
    """(path, row groups, first row) of each partition: a part file, split into runs of
    row groups of about ``batch_rows`` rows or more."""
    if source.format != "parquet":
        raise DataError(f"{source.path}: the Dask engine reads Parquet (a file, a folder of parts or a glob); "
                        "convert it first, e.g. with pyarrow, or use the local engine")
    parts = source.parts if isinstance(source, DatasetSource) else [source.path]
    out, offset = [], 0
    for part in parts:
        meta = pq.ParquetFile(part).metadata
        groups, rows = [], 0
        for g in range(meta.num_row_groups):
            groups.append(g)
            rows += meta.row_group(g).num_rows
            if rows >= batch_rows:
                out.append((str(part), groups, offset))
                offset += rows
                groups, rows = [], 0
        if groups:
            out.append((str(part), groups, offset))
            offset += rows
    return out


def partition_rows(source: DataSource, batch_rows: int = DEFAULT_BATCH_ROWS) -> list:
    """The number of rows of each partition, in order."""
    starts = [offset for _, _, offset in partitions(source, batch_rows)] + [source.num_rows]
    return [b - a for a, b in zip(starts, starts[1:])]


class DaskEngine:
    """Votes computed on a Dask ``distributed`` cluster (``scheduler``: its address, e.g.
    ``tcp://10.0.0.5:8786``; None starts a ``LocalCluster`` of ``workers`` processes).
    ``client``: an existing ``distributed.Client`` to use instead. Use it as a context
    manager, or call ``close()``, to stop a cluster it started."""

    def __init__(self, scheduler: Optional[str] = None, workers: int = 2, threads_per_worker: int = 1,
                 timeout: float = DEFAULT_TIMEOUT, retries: int = 2, client=None, in_flight: Optional[int] = None):
        self.scheduler = scheduler
        self.workers = workers
        self.threads_per_worker = threads_per_worker
        self.timeout = timeout
        self.retries = retries
        self.in_flight = in_flight
        self._client = client
        self._own = []  # what this engine started, closed by close()

    # -- the cluster ------------------------------------------------------------------
    @property
    def client(self):
        if self._client is None:
            self._client = self._connect()
            self._own.append(self._client)
            self.check_versions()
        return self._client

    def _connect(self):
        from distributed import Client, LocalCluster
        if self.scheduler is None:
            cluster = LocalCluster(n_workers=self.workers, threads_per_worker=self.threads_per_worker,
                                   processes=True, dashboard_address=None, silence_logs=logging.ERROR)
            self._own.append(cluster)
            return Client(cluster)
        try:
            return Client(self.scheduler, timeout=self.timeout)
        except (OSError, TimeoutError, ValueError) as err:
            raise DataError(f"the Dask scheduler at {self.scheduler} did not answer within {self.timeout:g} s "
                            f"({type(err).__name__}); check the address and that `dask scheduler` runs there "
                            "(or leave out --scheduler to start a local cluster)") from None

    def check_versions(self) -> None:
        """Refuse workers that run another mteach version than this machine."""
        versions = self._client.run(worker_version)
        if not versions:
            raise DataError(f"the Dask cluster at {self.scheduler or 'localhost'} has no workers; start some with "
                            "`dask worker ADDRESS`")
        other = {w: v for w, v in versions.items() if v != __version__}
        if other:
            worker, version = sorted(other.items())[0]
            raise DataError(f"Dask worker {worker} runs mteach {version}, this machine runs mteach {__version__} "
                            f"({len(other)} of {len(versions)} workers differ); install mteach {__version__} "
                            "on every worker")

    def close(self) -> None:
        for thing in reversed(self._own):
            thing.close()
        self._own.clear()
        self._client = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def worker_peak_rss_mib(self) -> dict:
        """Peak resident memory (MiB) of each worker process so far."""
        return self.client.run(worker_peak_rss_mib)

    # -- the Engine seam ----------------------------------------------------------------
    def vote_batches(self, spec: Spec, source, id_column: Optional[str] = None, *,
                     columns: Sequence[str] = (), batch_rows: int = DEFAULT_BATCH_ROWS,
                     progress: Progress = None) -> Iterator[VoteBatch]:
        source = source if isinstance(source, DataSource) else open_source(source)
        wanted = list(dict.fromkeys(columns_needed(spec) + ([id_column] if id_column else []) + list(columns)))
        todo = deque(partitions(source, batch_rows))
        client = self.client
        [shipped] = client.scatter([spec], broadcast=True, hash=False)
        limit = self.in_flight or 2 * max(1, len(client.scheduler_info().get("workers", {})) or self.workers)
        pending: deque = deque()
        try:
            while todo or pending:
                while todo and len(pending) < limit:
                    path, groups, offset = todo.popleft()
                    pending.append(client.submit(evaluate_partition, shipped, path, groups, wanted, id_column,
                                                 offset, batch_rows, retries=self.retries, pure=False))
                ids, votes, table = pending.popleft().result()
                if progress:
                    progress(table.num_rows)
                yield VoteBatch(ids, votes, table)
        finally:
            for future in pending:
                future.cancel()


__all__ = ["DaskEngine", "evaluate_partition", "partitions"]
