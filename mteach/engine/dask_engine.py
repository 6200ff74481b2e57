"""The Dask engine: the votes of a spec computed on a ``distributed`` cluster.

An implementation of ``engine.votes.Engine``: ``vote_batches`` splits a Parquet source
(one file, or a dataset: ``engine.datasets``) into partitions (a part file, or a run of
its row groups), evaluates each partition on a worker with the same evaluator as the
local engine (``compiler.evaluator.vote_matrix`` over Arrow batches, read on the worker
with pyarrow, so no pandas conversion changes a type), and yields the results back in
file order, holding at most a few partitions in flight. Every verb that reads votes
through ``engine.votes`` (apply, stats, label, predict, the label model of train) runs
on it unchanged, so the labels equal a local run's: the label model fits on the unique
vote patterns with their counts either way. Only the ids, the votes and the columns a
verb asks for come back (the rules' text columns too unless it says ``rule_columns=False``).

Verbs whose output is as long as the data do their per-row work where the rows are:
``map_partitions`` runs a function on each partition's vote batches on a worker and
brings back only its result (``for_each_partition`` runs it here on other engines). The
partitioned ledger (``ledger.label_partitioned``) and predictions (``predict_partitioned``)
are written that way, a part per partition, by the workers.

The spec is shipped with the tasks (scattered once), never read from the workers' disks;
the data is read by the workers from its path, and partitioned outputs are written by
them, so on a real cluster both must be on storage every worker sees. Without a
scheduler address a ``LocalCluster`` is started.

Refused with a clear message, before any work: a scheduler that does not answer within
``timeout`` seconds, and workers that run another mteach version (both versions named).
A task that fails (a worker lost mid-task) is retried; the scheduler also reschedules the
tasks of a worker that dies.
"""
from __future__ import annotations

import contextlib
import logging
import resource
import sys
from collections import deque
from typing import Iterator, Optional, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .._version import __version__
from ..compiler.evaluator import columns_needed, vote_matrix
from ..compiler.spec import Spec
from ..errors import DataError
from .datasets import DatasetSource, open_source
from .io import DEFAULT_BATCH_ROWS, DataSource
from .votes import Progress, VoteBatch, batch_ids, vote_batches

DEFAULT_TIMEOUT = 10.0  # seconds to wait for a scheduler


def read_partition(spec: Spec, path: str, row_groups: list, columns: list, id_column: Optional[str],
                   offset: int, batch_rows: int) -> Iterator[VoteBatch]:
    """On a worker: the partition's rows (its ``columns``) and the rules' votes on them, in
    ``VoteBatch``es of at most ``batch_rows`` rows."""
    table = pq.ParquetFile(path).read_row_groups(row_groups, columns=columns)
    for batch in table.to_batches(max_chunksize=batch_rows):
        yield VoteBatch(batch_ids(batch, id_column, path, offset), vote_matrix(spec, batch), batch)
        offset += batch.num_rows


def evaluate_partition(spec: Spec, path: str, row_groups: list, columns: list, id_column: Optional[str],
                       offset: int, batch_rows: int, keep: Sequence[str] = ()) -> tuple:
    """On a worker: the partition's (ids, votes, table of the ``keep`` columns): what goes back
    to the client, so the text the rules read stays on the worker unless a verb asks for it."""
    parts = list(read_partition(spec, path, row_groups, columns, id_column, offset, batch_rows))
    if not parts:
        return pa.array([], pa.int64()), np.zeros((0, len(spec.rules)), np.int8), pa.table({})
    table = pa.Table.from_batches([p.table for p in parts]).select(list(keep))
    return (pa.concat_arrays([p.ids for p in parts]), np.concatenate([p.votes for p in parts]), table)


def run_partition(fn, spec: Spec, path: str, row_groups: list, columns: list, id_column: Optional[str],
                  offset: int, batch_rows: int, index: int, shared: dict):
    """On a worker: ``fn(spec, index, offset, vote_batches, **shared)`` over the partition's
    ``VoteBatch``es (``read_partition``); its result goes back to the client."""
    return fn(spec, index, offset, read_partition(spec, path, row_groups, columns, id_column, offset, batch_rows),
              **shared)


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
        self.shipped_bytes = 0  # the size of what the workers' results brought back to the client

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
                     progress: Progress = None, rule_columns: bool = True) -> Iterator[VoteBatch]:
        """Each partition's ``VoteBatch``, in order. Its table holds the columns asked for, and
        (``rule_columns``) the columns the rules read: without them only ids, votes and the
        asked columns come back from the workers, not the text."""
        source = source if isinstance(source, DataSource) else open_source(source)
        keep = list(dict.fromkeys((columns_needed(spec) if rule_columns else []) + list(columns)))
        tasks = [(evaluate_partition, spec, path, groups, self._wanted(spec, id_column, columns), id_column, offset,
                  batch_rows, keep) for path, groups, offset in partitions(source, batch_rows)]
        for ids, votes, table in self._run(tasks, {}):
            if progress:
                progress(len(ids))
            yield VoteBatch(ids, votes, table)

    def map_partitions(self, fn, spec: Spec, source, id_column: Optional[str] = None, *,
                       columns: Sequence[str] = (), batch_rows: int = DEFAULT_BATCH_ROWS,
                       progress: Progress = None, **shared) -> Iterator:
        """``fn(spec, index, offset, vote_batches, **shared)`` run on a worker for each partition
        (its index, first row and ``VoteBatch``es, with the columns the rules read and
        ``columns``), the results yielded in partition order. ``shared`` values (a label model,
        a trained model) are sent to the workers once. A verb that writes its output where the
        rows are (a part per partition) gets back only what ``fn`` returns."""
        source = source if isinstance(source, DataSource) else open_source(source)
        wanted = self._wanted(spec, id_column, columns)
        plan = partitions(source, batch_rows)
        ends = [offset for _, _, offset in plan[1:]] + [source.num_rows]
        tasks = [(run_partition, fn, spec, path, groups, wanted, id_column, offset, batch_rows, i)
                 for i, (path, groups, offset) in enumerate(plan)]
        for (_, _, offset), end, result in zip(plan, ends, self._run(tasks, shared, with_shared=True)):
            if progress:
                progress(end - offset)
            yield result

    @staticmethod
    def _wanted(spec: Spec, id_column: Optional[str], columns: Sequence[str]) -> list:
        return list(dict.fromkeys(columns_needed(spec) + ([id_column] if id_column else []) + list(columns)))

    def _run(self, tasks: list, shared: dict, with_shared: bool = False) -> Iterator:
        """Submit ``tasks`` ((function, args...) each; the spec, and ``shared``, scattered once),
        at most ``in_flight`` at a time, and yield their results in order, counting their
        bytes in ``shipped_bytes``."""
        from dask.sizeof import sizeof
        client = self.client
        todo = deque(tasks)
        scattered = {}
        if todo:
            spec = todo[0][2] if with_shared else todo[0][1]
            [scattered["spec"]] = client.scatter([spec], broadcast=True, hash=False)
            for name, value in shared.items():
                [scattered[name]] = client.scatter([value], broadcast=True, hash=False)
        limit = self.in_flight or 2 * max(1, len(client.scheduler_info().get("workers", {})) or self.workers)
        pending: deque = deque()
        try:
            while todo or pending:
                while todo and len(pending) < limit:
                    task = list(todo.popleft())
                    if with_shared:  # (run_partition, fn, spec, ..., index) + the shared values
                        task[2] = scattered["spec"]
                        task.append({name: scattered[name] for name in shared})
                    else:
                        task[1] = scattered["spec"]
                    pending.append(client.submit(*task, retries=self.retries, pure=False))
                result = pending.popleft().result()
                self.shipped_bytes += _result_bytes(result, sizeof)
                yield result
        except Exception:
            # A task failed. distributed cannot stop the tasks already running, and they write into
            # the output's temporary folder, which the caller removes next: let them end first.
            from distributed import wait
            try:
                wait(list(pending), timeout=self.timeout)
            except Exception:  # they failed too, or took longer: the error raised is the first one
                pass
            raise
        finally:
            for future in pending:
                future.cancel()


def _result_bytes(result, sizeof) -> int:
    """The size of a task's result: dask's ``sizeof``, except that an object of a class it does
    not know (which it counts by ``sys.getsizeof``: the shell, not what it holds, e.g. a
    ``VoteCounts``'s arrays) is counted by its attributes."""
    if isinstance(result, dict):
        return sizeof(list(result)) + sum(_result_bytes(v, sizeof) for v in result.values())
    if isinstance(result, (list, tuple)):
        return sum(_result_bytes(v, sizeof) for v in result)
    if hasattr(result, "__dict__"):
        return sys.getsizeof(result) + _result_bytes(vars(result), sizeof)
    return sizeof(result)


def for_each_partition(engine, fn, spec: Spec, source, id_column: Optional[str] = None, *,
                       columns: Sequence[str] = (), batch_rows: int = DEFAULT_BATCH_ROWS,
                       progress: Progress = None, **shared) -> Iterator:
    """``fn(spec, index, offset, vote_batches, **shared)`` per partition, results in order:
    on the workers of an engine that maps partitions (``DaskEngine.map_partitions``), else
    here, a partition per batch the engine (None: the local one) yields."""
    if hasattr(engine, "map_partitions"):
        yield from engine.map_partitions(fn, spec, source, id_column, columns=columns, batch_rows=batch_rows,
                                         progress=progress, **shared)
        return
    offset = 0
    for index, batch in enumerate(vote_batches(spec, source, id_column, columns=columns, batch_rows=batch_rows,
                                               progress=progress, engine=engine)):
        yield fn(spec, index, offset, iter([batch]), **shared)
        offset += batch.num_rows


def predict_partitioned(engine, model, source, output, table_of, id_column: Optional[str] = None, *,
                        gold=None, evaluation=None, batch_rows: int = DEFAULT_BATCH_ROWS,
                        progress: Progress = None) -> tuple:
    """``predict`` where each partition is evaluated (on the Dask workers: no text comes back
    here): its rows featurised and predicted by ``model`` (a ``train.TrainedModel``) and, with
    ``output``, written as a part, then the manifest; the folder replaces ``output`` only once
    complete (``datasets.replacing_folder``). ``table_of(ids, result, labels)``: the output's
    rows from ``model.predict``'s result. With ``gold`` (an ``engine.gold.GoldRequest``) and
    ``evaluation`` (an empty ``cli.learn.Evaluation``), each partition also scores its rows and
    measures the hints (``train.HintEffects``) and sends back only those counts, summed here
    in partition order. Returns (rows, rows the rules decided, the evaluation, the hint
    effects); the last two None without gold."""
    from .datasets import replacing_folder, write_manifest
    from .ledger import batch_gold
    from .train import HintEffects
    gold_of = None
    if gold is not None:
        gold.check(source.schema, id_column, source.path)
        gold_of = batch_gold(gold, model.spec.labels, source.path, id_column)
    with (replacing_folder(output) if output else contextlib.nullcontext()) as folder:
        parts = list(for_each_partition(engine, _predict_part, model.spec, source, id_column,
                                        columns=gold.columns if gold is not None else (), batch_rows=batch_rows,
                                        progress=progress, folder=folder and str(folder), model=model,
                                        table_of=table_of, gold_of=gold_of, evaluation=evaluation))
        rows = sum(part["rows"] for part in parts)
        if not rows:
            raise DataError(f"{source.path}: the file has a header but no rows")
        effects = None
        if gold_of is not None:
            effects = HintEffects(model)
            for part in parts:
                evaluation.merge(part["evaluation"])
                effects.merge(part["effects"])
            gold_of.check(evaluation.counts["combined", "all"]["rows"])
        if folder is not None:
            write_manifest(folder, [part["entry"] for part in parts])
    return rows, sum(part["covered"] for part in parts), evaluation, effects


def _predict_part(spec: Spec, index: int, offset: int, batches, folder: Optional[str], model, table_of,
                  gold_of=None, evaluation=None) -> dict:
    """On a worker: a partition's predictions, written as part ``index`` of ``folder`` when
    given (``entry``: its manifest entry); its ``rows``, how many the rules decided and, with
    ``gold_of``, its ``evaluation`` and hint ``effects``: counts, not rows."""
    from .datasets import write_part
    from .train import HintEffects, _feature_table
    out = {"rows": 0, "covered": 0}
    if gold_of is not None:
        gold_of, evaluation, effects = gold_of.starting_at(offset), evaluation.starting_at(offset), HintEffects(model)

    def tables():
        for batch in batches:
            result = model.predict(batch.table, batch.votes)
            out["rows"] += batch.num_rows
            out["covered"] += int(result["covered"].sum())
            if gold_of is not None:
                known = gold_of(batch)
                evaluation.add(result, batch.votes, known)
                effects.add(_feature_table(spec, batch.table), result["covered"], known)
            if folder is not None:
                yield table_of(batch.ids, result, list(spec.labels))
    if folder is None:
        for _ in tables():
            pass
    else:
        out["entry"] = write_part(folder, index, tables())
    if gold_of is not None:
        effects.model = effects.hints = None  # the counts go back, not the model and its hints
        out.update(evaluation=evaluation, effects=effects)
    return out


__all__ = ["DaskEngine", "evaluate_partition", "for_each_partition", "partitions", "predict_partitioned",
           "read_partition"]
