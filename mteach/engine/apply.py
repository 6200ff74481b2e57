"""Apply a spec's rules to data: the vote matrix (rows × rules, int8, -1 = abstain).

``apply_table`` works on an in-memory Arrow table; ``apply_file`` streams a data file
in record batches (memory bounded by the batch size), evaluates batches on a pool of
threads (Arrow kernels release the GIL), and writes the votes to Parquet through a
temporary file, so an error never leaves a half-written output.

The output file holds the row id and one int8 column per rule; its schema metadata
holds the rules table (``mteach.rules``) and the run's facts (``mteach.run``), so the
file alone says which spec line produced every vote.
"""
from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .. import __version__
from ..compiler.checker import load_spec
from ..compiler.evaluator import columns_needed, vote_matrix
from ..compiler.spec import Spec, field_kind
from ..errors import DataError
from .io import DEFAULT_BATCH_ROWS, DataSource, atomic_path, open_data

ROW_NUMBER = "row"  # id column written when the data has none


def rules_table(spec: Spec) -> pa.Table:
    """The rules as a table: what an auditor needs to trace a vote to its spec line."""
    rules = [r.rule for r in spec.rules]
    return pa.table({
        "rule": [r.name for r in rules],
        "label": [r.label for r in rules],
        "file": [r.span.file for r in rules],
        "line": pa.array([r.span.line for r in rules], pa.int32()),
        "column": pa.array([r.span.column for r in rules], pa.int32()),
        "source": [r.text for r in rules],
        "description": [r.description for r in rules],
        "confidence": pa.array([r.confidence for r in rules], pa.float64()),
    })


def checked_for(spec: Spec, schema: pa.Schema) -> Spec:
    """``spec`` checked against this data's columns and types.

    A spec loaded without a schema (or for other data) is checked again, so a missing
    column or a type mismatch is a ``SpecError`` naming the spec line, not a crash.
    """
    kinds = {}
    for name, f in spec.fields.items():
        if f.column not in schema.names:
            kinds = None
            break
        kinds[name] = field_kind(schema.field(f.column).type)
    if kinds == spec.field_kinds:
        return spec
    main_text = next(iter(spec.sources.values()), None)
    return load_spec(spec.path, schema, text=main_text)


def apply_table(spec: Spec, table: pa.Table | pa.RecordBatch) -> np.ndarray:
    """Votes for an in-memory table: (rows × rules) int8, -1 where a rule abstains."""
    return vote_matrix(checked_for(spec, table.schema), table)


def resolve_id_column(source: DataSource, id_column: Optional[str]) -> Optional[str]:
    if id_column is None:
        return None
    if id_column not in source.schema.names:
        from ..errors import did_you_mean
        raise DataError(f"{source.path}: no id column {id_column!r}{did_you_mean(id_column, source.schema.names)} "
                        f"(columns: {', '.join(source.schema.names)})")
    return id_column


@dataclass
class ApplyResult:
    output: Path
    rows: int
    rules: list
    coverage: np.ndarray  # per rule: rows voted
    id_column: str


def iter_votes(spec: Spec, source: DataSource, id_column: Optional[str] = None,
               batch_rows: int = DEFAULT_BATCH_ROWS, threads: int = 2):
    """Yield (ids, votes) per batch, in file order; ids are the id column or row numbers.

    Batches are evaluated on ``threads`` threads; at most threads + 1 are held at once.
    """
    columns = list(dict.fromkeys(columns_needed(spec) + ([id_column] if id_column else [])))
    offset = 0
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        pending = []
        for batch in source.batches(columns=columns, batch_rows=batch_rows):
            pending.append((batch, pool.submit(vote_matrix, spec, batch)))
            while len(pending) > threads or (pending and pending[0][1].done()):
                batch, future = pending.pop(0)
                yield _ids(batch, id_column, source.path, offset), future.result()
                offset += batch.num_rows
        for batch, future in pending:
            yield _ids(batch, id_column, source.path, offset), future.result()
            offset += batch.num_rows


def _ids(batch, id_column, path, offset) -> pa.Array:
    if not id_column:
        return pa.array(np.arange(offset, offset + batch.num_rows, dtype=np.int64))
    ids = batch.column(id_column)
    nulls = pc.is_null(ids)
    if pc.any(nulls).as_py():
        first = int(np.flatnonzero(nulls.to_numpy(zero_copy_only=False))[0]) + offset
        raise DataError(f"{path}: row {first + 1} has no value in the id column {id_column!r}; "
                        "every row needs an id (or leave out --id to number rows)")
    return ids


def run_metadata(spec: Spec, data_path, extra: dict | None = None) -> dict:
    return {"mteach_version": __version__, "spec": str(spec.path), "spec_hash": spec.content_hash,
            "concept": spec.concept.name, "labels": list(spec.labels), "data": str(data_path), **(extra or {})}


def apply_file(spec: Spec | str | Path, data, output, id_column: Optional[str] = None,
               batch_rows: int = DEFAULT_BATCH_ROWS, threads: int = 2,
               progress: Optional[Callable[[int], None]] = None) -> ApplyResult:
    """Apply ``spec`` to the data file and write the vote matrix to ``output`` (Parquet)."""
    source = open_data(data)
    if not isinstance(spec, Spec):
        spec = load_spec(spec, source.schema)
    spec = checked_for(spec, source.schema)
    id_column = resolve_id_column(source, id_column)
    id_name = id_column or ROW_NUMBER
    id_type = source.schema.field(id_column).type if id_column else pa.int64()
    names = spec.rule_names
    schema = pa.schema([pa.field(id_name, id_type)] + [pa.field(n, pa.int8()) for n in names])
    schema = schema.with_metadata({
        "mteach.rules": json.dumps(rules_table(spec).to_pylist()),
        "mteach.run": json.dumps(run_metadata(spec, data, {"id_column": id_name})),
    })
    rows = 0
    coverage = np.zeros(len(names), dtype=np.int64)
    with atomic_path(output) as tmp:
        with pq.ParquetWriter(tmp, schema, compression="zstd") as writer:
            for ids, votes in iter_votes(spec, source, id_column, batch_rows, threads):
                arrays = [ids] + [pa.array(votes[:, j]) for j in range(len(names))]
                writer.write_batch(pa.RecordBatch.from_arrays(arrays, schema=schema))
                rows += len(ids)
                coverage += (votes != -1).sum(axis=0)
                if progress:
                    progress(len(ids))
        if rows == 0:
            raise DataError(f"{data}: the file has a header but no rows")
    return ApplyResult(Path(output), rows, names, coverage, id_name)


def read_votes(path) -> tuple:
    """Read a vote file written by ``apply_file``: (ids, votes (n × m int8), rules table, run dict)."""
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowInvalid) as err:
        raise DataError(f"{path}: cannot read the vote file: {err}") from None
    meta = table.schema.metadata or {}
    if b"mteach.rules" not in meta:
        raise DataError(f"{path}: not a vote file written by `mteach apply` (no rules table in it)")
    rules = pa.Table.from_pylist(json.loads(meta[b"mteach.rules"]))
    run = json.loads(meta[b"mteach.run"])
    names = rules.column("rule").to_pylist() if rules.num_rows else []
    votes = np.column_stack([table.column(n).to_numpy() for n in names]) if names else np.zeros((table.num_rows, 0), np.int8)
    return table.column(0), votes.astype(np.int8), rules, run
