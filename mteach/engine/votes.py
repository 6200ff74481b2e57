"""Votes for a data source: the one seam every verb gets the rules' votes through.

``vote_batches(spec, source, id_column)`` yields a ``VoteBatch`` per record batch, in file
order: the row ids, the vote matrix (rows × rules, int8, -1 = abstain) and the data
columns the rules read plus any ``columns`` the caller asks for (a gold column, a text
column), so a verb reads its data once. A verb that needs only the votes and the columns
it asks for says ``rule_columns=False``: an engine whose rows live elsewhere (Dask) then
leaves the rules' columns (the text) where they are. ``collect_votes`` gathers all rows in
one batch.

Who computes the votes is an ``Engine``: anything with this ``vote_batches`` method.
``LocalEngine`` evaluates batches on a pool of threads on this machine; the studio's
``engine.incremental.IncrementalVotes`` implements the same method over one in-memory
table with a per-rule cache; a distributed backend (Dask, say) would implement it by
evaluating partitions on workers and yielding them back in order: that is
``engine.dask_engine.DaskEngine``, chosen by name with ``open_engine("dask")``.
"""
from __future__ import annotations

import contextlib
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Iterator, Optional, Protocol, Sequence, Union

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..compiler.spec import Spec
from ..compiler.evaluator import columns_needed, vote_matrix
from ..errors import DataError
from .datasets import open_source
from .io import DEFAULT_BATCH_ROWS, DataSource

Progress = Optional[Callable[[int], None]]  # called with the rows of each batch done


@dataclass
class VoteBatch:
    """The rules' votes on some rows of a data source."""
    ids: pa.Array            # the id column's values, or row numbers from 0 when there is no id column
    votes: np.ndarray        # rows × rules, int8, -1 = abstain, else the index of the rule's label
    table: Union[pa.RecordBatch, pa.Table]  # the columns asked for plus (unless the caller said
                                            # rule_columns=False) those the rules read
                                            # (a Table for ``collect_votes``)

    @property
    def num_rows(self) -> int:
        return len(self.ids)


class Engine(Protocol):
    """Computes the votes of a spec on a data source, batch by batch, in file order."""

    def vote_batches(self, spec: Spec, source, id_column: Optional[str] = None, *,
                     columns: Sequence[str] = (), batch_rows: int = DEFAULT_BATCH_ROWS,
                     progress: Progress = None, rule_columns: bool = True) -> Iterator[VoteBatch]: ...


class LocalEngine:
    """Streams the source in record batches and evaluates them on ``threads`` threads
    (Arrow kernels release the GIL); at most threads + 1 batches are held at once."""

    def __init__(self, threads: int = 2):
        self.threads = max(1, threads)

    def vote_batches(self, spec: Spec, source, id_column: Optional[str] = None, *,
                     columns: Sequence[str] = (), batch_rows: int = DEFAULT_BATCH_ROWS,
                     progress: Progress = None, rule_columns: bool = True) -> Iterator[VoteBatch]:
        # the rules' columns are read here anyway: kept whatever ``rule_columns`` says
        source = source if isinstance(source, DataSource) else open_source(source)
        wanted = list(dict.fromkeys(columns_needed(spec) + ([id_column] if id_column else []) + list(columns)))
        offset = 0
        pool = ThreadPoolExecutor(max_workers=self.threads)
        try:
            pending = []

            def done(batch, future) -> VoteBatch:
                nonlocal offset
                out = VoteBatch(batch_ids(batch, id_column, source.path, offset), future.result(), batch)
                offset += batch.num_rows
                if progress:
                    progress(batch.num_rows)
                return out

            for batch in source.batches(columns=wanted, batch_rows=batch_rows):
                pending.append((batch, pool.submit(vote_matrix, spec, batch)))
                while len(pending) > self.threads or (pending and pending[0][1].done()):
                    yield done(*pending.pop(0))
            for batch, future in pending:
                yield done(batch, future)
        finally:
            # not waited for: a generator left unfinished is closed by the garbage collector, maybe
            # on one of these threads, which cannot join itself; what is queued is dropped
            pool.shutdown(wait=False, cancel_futures=True)


ENGINES = ("local", "dask")


@contextlib.contextmanager
def open_engine(name: Optional[str] = "local", scheduler: Optional[str] = None, threads: int = 2):
    """The engine called ``name`` ("local" or "dask"; ``scheduler``: a Dask scheduler's
    address, None for a ``LocalCluster``), closed (a cluster it started stopped) on exit."""
    name = name or "local"
    if name == "local":
        if scheduler:
            raise DataError("--scheduler needs --engine dask (or [engine] name = \"dask\" in mteach.toml)")
        yield LocalEngine(threads)
    elif name == "dask":
        from .dask_engine import DaskEngine
        with DaskEngine(scheduler) as engine:
            yield engine
    else:
        raise DataError(f"unknown engine {name!r}; use one of: {', '.join(ENGINES)}")


def batch_ids(batch, id_column: Optional[str], path, offset: int) -> pa.Array:
    """The batch's ids (a null id is a ``DataError`` naming the row), or row numbers from ``offset``."""
    if not id_column:
        return pa.array(np.arange(offset, offset + batch.num_rows, dtype=np.int64))
    ids = batch.column(id_column)
    nulls = pc.is_null(ids)
    if pc.any(nulls).as_py():
        first = int(np.flatnonzero(nulls.to_numpy(zero_copy_only=False))[0]) + offset
        raise DataError(f"{path}: row {first + 1} has no value in the id column {id_column!r}; "
                        "every row needs an id (or leave out --id to number rows)")
    return ids.combine_chunks() if isinstance(ids, pa.ChunkedArray) else ids


def vote_batches(spec: Spec, source, id_column: Optional[str] = None, *, columns: Sequence[str] = (),
                 batch_rows: int = DEFAULT_BATCH_ROWS, threads: int = 2, progress: Progress = None,
                 engine: Optional[Engine] = None, rule_columns: bool = True) -> Iterator[VoteBatch]:
    """The votes of ``spec`` on ``source`` (a ``DataSource`` or a path), one ``VoteBatch`` per
    record batch in file order; by default on a ``LocalEngine`` of ``threads`` threads."""
    engine = engine or LocalEngine(threads)
    return engine.vote_batches(spec, source, id_column, columns=columns, batch_rows=batch_rows, progress=progress,
                               rule_columns=rule_columns)


def collect_votes(spec: Spec, source, id_column: Optional[str] = None, *, columns: Sequence[str] = (),
                  batch_rows: int = DEFAULT_BATCH_ROWS, threads: int = 2, progress: Progress = None,
                  engine: Optional[Engine] = None, rule_columns: bool = True) -> VoteBatch:
    """All rows' votes in one ``VoteBatch`` (its ``table`` a ``pa.Table``); a file with a
    header but no rows is a ``DataError``."""
    source = source if isinstance(source, DataSource) else open_source(source)
    parts = list(vote_batches(spec, source, id_column, columns=columns, batch_rows=batch_rows, threads=threads,
                              progress=progress, engine=engine, rule_columns=rule_columns))
    if not parts:
        raise DataError(f"{source.path}: the file has a header but no rows")
    # joined column-major, as each batch's matrix is, and not copied again: at 1,000 rules x
    # 1M rows a row-major join and an astype copy took 4.5 s and a second GB
    votes = np.concatenate([p.votes.T for p in parts], axis=1).T.astype(np.int8, copy=False)
    return VoteBatch(pa.concat_arrays([p.ids for p in parts]), votes,
                     pa.concat_tables([pa.Table.from_batches([p.table]) if isinstance(p.table, pa.RecordBatch)
                                       else p.table for p in parts]))


class VoteSpool:
    """Vote matrices kept on disk batch by batch (int8, one byte a vote, in a temporary file)
    and read back in the same batches, so a verb's second pass over the votes need not apply
    the rules again; memory holds one batch."""

    def __init__(self, n_rules: int):
        self.n_rules, self.sizes = n_rules, []
        self.file = tempfile.TemporaryFile()

    def add(self, votes: np.ndarray) -> None:
        self.file.write(np.ascontiguousarray(votes, dtype=np.int8).tobytes())
        self.sizes.append(len(votes))

    def __iter__(self) -> Iterator[np.ndarray]:
        self.file.seek(0)
        for n in self.sizes:
            yield np.frombuffer(self.file.read(n * self.n_rules), dtype=np.int8).reshape(n, self.n_rules)

    def close(self) -> None:
        self.file.close()


__all__ = ["VoteBatch", "Engine", "LocalEngine", "vote_batches", "collect_votes", "batch_ids", "open_engine",
           "VoteSpool"]
