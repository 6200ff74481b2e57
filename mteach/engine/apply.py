"""Apply a spec's rules to data: the vote matrix (rows × rules, int8, -1 = abstain).

``apply_table`` works on an in-memory Arrow table; ``apply_file`` streams a data file's
votes (``engine.votes``: record batches, memory bounded by the batch size, evaluated on
a pool of threads or by another engine, Dask say) to Parquet through a temporary file, so
an error never leaves a half-written output; or, ``partitioned``, to a folder of parts
with a manifest written last (``engine.datasets``).

The output file holds the row id and one int8 column per rule; its schema metadata
holds the rules table (``mteach.rules``) and the run's facts (``mteach.run``), so the
file alone says which spec line produced every vote.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .._version import __version__
from ..compiler.checker import load_spec
from ..compiler.evaluator import vote_matrix
from ..compiler.spec import Spec, field_kind
from ..errors import DataError
from .analysis import votes_per_rule
from .io import DEFAULT_BATCH_ROWS, DataSource, as_table, atomic_path
from .votes import vote_batches

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


def apply_table(spec: Spec, table) -> np.ndarray:
    """Votes for in-memory data: (rows × rules) int8, the label's index where a rule votes, -1 where
    it abstains. ``table``: a pyarrow Table or RecordBatch, a pandas or a polars DataFrame.

        votes = mteach.apply_table(spec, pandas.read_csv("comments.csv"))
    """
    if not isinstance(table, pa.RecordBatch):
        table = as_table(table)
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


def run_metadata(spec: Spec, data_path, extra: dict | None = None) -> dict:
    return {"mteach_version": __version__, "spec": str(spec.path), "spec_hash": spec.content_hash,
            "concept": spec.concept.name, "labels": list(spec.labels), "data": str(data_path), **(extra or {})}


def apply_file(spec: Spec | str | Path, data, output, id_column: Optional[str] = None,
               batch_rows: int = DEFAULT_BATCH_ROWS, threads: int = 2,
               progress: Optional[Callable[[int], None]] = None, engine=None,
               partitioned: bool = False) -> ApplyResult:
    """Apply ``spec`` to the data (a path, a Parquet dataset or an opened ``DataSource``) and
    write the vote matrix to ``output``: one Parquet file, or with ``partitioned`` a folder
    with a part per batch the engine yields (a partition, on Dask) and a manifest."""
    from .datasets import DatasetWriter, open_source
    source = data if isinstance(data, DataSource) else open_source(data)
    data = source.path if isinstance(data, DataSource) else data
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
    batches = vote_batches(spec, source, id_column, batch_rows=batch_rows, threads=threads, progress=progress,
                           engine=engine, rule_columns=False)

    def write_all(write) -> None:
        nonlocal rows, coverage
        for batch in batches:
            arrays = [batch.ids] + [pa.array(batch.votes[:, j]) for j in range(len(names))]
            write(pa.RecordBatch.from_arrays(arrays, schema=schema))
            rows += batch.num_rows
            coverage += votes_per_rule(batch.votes)
        if rows == 0:
            raise DataError(f"{data}: the file has a header but no rows")

    # Parquet stores an int8 as an int32: dictionary-encoding a thousand vote columns and
    # keeping their min and max took half of `apply`'s time at 1,000 rules; zstd alone
    # packs their runs of -1. The id column keeps both.
    options = {"compression": "zstd", "use_dictionary": [id_name], "write_statistics": [id_name]}
    if partitioned:
        with DatasetWriter(output, schema, options=options) as writer:
            write_all(writer.write)
    else:
        with atomic_path(output) as tmp:
            with pq.ParquetWriter(tmp, schema, **options) as writer:
                write_all(writer.write_batch)
    return ApplyResult(Path(output), rows, names, coverage, id_name)


def read_votes(path) -> tuple:
    """Read a vote file written by ``apply_file`` (a file or a partitioned folder): (ids, votes
    (n × m int8), rules table, run dict)."""
    from .datasets import read_dataset
    if Path(path).is_dir():
        return _votes_of(read_dataset(path), path)
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowInvalid) as err:
        raise DataError(f"{path}: cannot read the vote file: {err}") from None
    return _votes_of(table, path)


def _votes_of(table: pa.Table, path) -> tuple:
    meta = table.schema.metadata or {}
    if b"mteach.rules" not in meta:
        raise DataError(f"{path}: not a vote file written by `mteach apply` (no rules table in it)")
    rules = pa.Table.from_pylist(json.loads(meta[b"mteach.rules"]))
    run = json.loads(meta[b"mteach.run"])
    names = rules.column("rule").to_pylist() if rules.num_rows else []
    votes = np.column_stack([table.column(n).to_numpy() for n in names]) if names else np.zeros((table.num_rows, 0), np.int8)
    return table.column(0), votes.astype(np.int8), rules, run
