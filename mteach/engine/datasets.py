"""Parquet datasets: several part files read as one source, and outputs written as parts
with a manifest written last.

Input: ``open_source(path)`` opens a data file as ``io.open_data`` does, or a Parquet
dataset: a folder of ``.parquet`` files, a glob (``data/*.parquet``) or several paths
joined by commas. Its parts must agree on the schema; the first part and field that
differ are named before any work starts. A ``DatasetSource`` streams its parts in
order, so every engine (local or Dask) reads it like one file.

Output: ``DatasetWriter`` writes one Parquet file per partition into a folder, each
through a temporary name and renamed into place, and ``MANIFEST`` last: every part, its
rows and its sha256. A folder without a manifest is a run that did not finish;
``read_dataset`` refuses it (and a part whose bytes changed) with a message that says
so, which is how ``explain``, ``audit`` and ``verify`` tell a partial output from a
complete one.
"""
from __future__ import annotations

import glob
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import DataError
from .io import DataSource, _explain_arrow_error, atomic_path, file_fingerprint, open_data, parquet_batches

MANIFEST = "_manifest.json"
PART = "part-{:05d}.parquet"


@dataclass
class DatasetSource(DataSource):
    """A Parquet dataset opened for streaming: its parts, in order, read as one source."""
    parts: list = field(default_factory=list)
    part_rows: list = field(default_factory=list)

    def _batches(self, columns, batch_rows):
        for part in self.parts:
            yield from parquet_batches(part, columns, batch_rows)

    def fingerprint(self) -> str:
        """sha256 over the parts' names and bytes."""
        h = hashlib.sha256()
        for part in self.parts:
            h.update(f"{Path(part).name}:{file_fingerprint(part)};".encode())
        return h.hexdigest()


def is_dataset_path(path) -> bool:
    text = str(path)
    return Path(text).is_dir() or "," in text or any(ch in text for ch in "*?[")


def dataset_parts(path) -> list:
    """The Parquet files a dataset path names, in order (a folder's own parts: its
    manifest's order when it has one, else by name)."""
    text = str(path)
    if "," in text:
        parts = []
        for piece in text.split(","):
            parts.extend(dataset_parts(piece.strip()) if is_dataset_path(piece.strip()) else [Path(piece.strip())])
        return parts
    p = Path(text)
    if p.is_dir():
        manifest = p / MANIFEST
        if manifest.exists():
            return [p / part["file"] for part in _read_manifest(p)["parts"]]
        return sorted(q for q in p.iterdir() if q.suffix.lower() in (".parquet", ".pq") and not q.name.startswith("."))
    return sorted(Path(q) for q in glob.glob(text))


def open_source(path) -> DataSource:
    """A data file (``io.open_data``) or a Parquet dataset (``DatasetSource``)."""
    if not is_dataset_path(path):
        return open_data(path)
    parts = dataset_parts(path)
    if not parts:
        raise DataError(f"{path}: no Parquet files in it; a dataset is a folder of .parquet files, "
                        "a glob like data/*.parquet, or paths joined by commas")
    schema, rows = None, []
    for part in parts:
        if part.suffix.lower() not in (".parquet", ".pq"):
            raise DataError(f"{part}: a dataset's parts must be Parquet files (.parquet)")
        if not part.exists():
            raise DataError(f"{part}: no such data file")
        try:
            meta = pq.ParquetFile(part)
        except (pa.ArrowInvalid, OSError) as err:
            raise _explain_arrow_error(part, err) from None
        if schema is None:
            schema, first = meta.schema_arrow, part
        elif not meta.schema_arrow.equals(schema):
            raise DataError(f"{path}: the parts disagree on the schema: {part} {schema_difference(schema, meta.schema_arrow)} "
                            f"in {first}; rewrite the parts with one schema")
        rows.append(meta.metadata.num_rows)
    return DatasetSource(Path(str(path)), "parquet", schema, sum(rows), parts=parts, part_rows=rows)


def schema_difference(expected: pa.Schema, got: pa.Schema) -> str:
    """How ``got`` differs from ``expected``, naming the first field that differs."""
    for i, f in enumerate(got):
        if f.name not in expected.names:
            return f"has a field {f.name!r} that is not"
        want = expected.field(f.name)
        if want.type != f.type:
            return f"has field {f.name!r} as {f.type}, not {want.type} as"
    missing = [n for n in expected.names if n not in got.names]
    if missing:
        return f"lacks the field {missing[0]!r} that is"
    return "orders its fields differently from how they are"


def source_fingerprint(source: DataSource) -> str:
    """sha256 of a source's bytes: the file's, or a dataset's parts'."""
    return source.fingerprint() if isinstance(source, DatasetSource) else file_fingerprint(source.path)


# -- outputs -------------------------------------------------------------------------------
class DatasetWriter:
    """Writes a partitioned Parquet output: ``write(table)`` adds a part (atomically),
    ``close()`` writes the manifest, last. An old manifest in the folder is removed first,
    so an interrupted rewrite is never taken for the previous complete output."""

    def __init__(self, folder, schema: pa.Schema, facts: Optional[dict] = None):
        self.folder = Path(folder)
        if self.folder.exists() and not self.folder.is_dir():
            raise DataError(f"{self.folder}: is a file; a partitioned output needs a folder name "
                            "(give a new name, or remove the file)")
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / MANIFEST).unlink(missing_ok=True)
        for old in self.folder.glob("part-*.parquet"):
            old.unlink()
        self.schema = schema
        self.facts = facts or {}
        self.parts: list = []

    def write(self, table: pa.Table | pa.RecordBatch) -> None:
        if isinstance(table, pa.RecordBatch):
            table = pa.Table.from_batches([table])
        name = PART.format(len(self.parts))
        with atomic_path(self.folder / name) as tmp:
            pq.write_table(table.cast(self.schema) if table.schema != self.schema else table, tmp,
                           compression="zstd")
        self.parts.append({"file": name, "rows": table.num_rows, "sha256": file_fingerprint(self.folder / name)})

    def close(self) -> Path:
        manifest = {"format": "mteach dataset 1", "rows": sum(p["rows"] for p in self.parts),
                    "parts": self.parts, **self.facts}
        with atomic_path(self.folder / MANIFEST) as tmp:
            Path(tmp).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
        return self.folder


def write_dataset(folder, table: pa.Table, part_rows: list, facts: Optional[dict] = None) -> Path:
    """``table`` written as parts of ``part_rows`` rows each (the input's partitions), manifest last."""
    writer = DatasetWriter(folder, table.schema, facts)
    start = 0
    for rows in part_rows or [table.num_rows]:
        writer.write(table.slice(start, rows))
        start += rows
    if start < table.num_rows:
        writer.write(table.slice(start))
    return writer.close()


def _read_manifest(folder: Path) -> dict:
    manifest = folder / MANIFEST
    if not manifest.exists():
        parts = sorted(folder.glob("part-*.parquet"))
        raise DataError(f"{folder}: incomplete output: it has {len(parts)} part file(s) but no {MANIFEST}, "
                        "so the run that wrote it did not finish; re-run it")
    try:
        return json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise DataError(f"{manifest}: the manifest is damaged ({err}); re-run the command that wrote {folder}") from None


def read_dataset(folder, check: bool = True) -> pa.Table:
    """A partitioned output as one table; raises ``DataError`` when it is incomplete (no
    manifest), a part is missing, or (with ``check``) a part's sha256 differs from the manifest's."""
    folder = Path(folder)
    manifest = _read_manifest(folder)
    tables = []
    for part in manifest["parts"]:
        path = folder / part["file"]
        if not path.exists():
            raise DataError(f"{folder}: part {part['file']} listed in {MANIFEST} is missing; re-run the command")
        if check and file_fingerprint(path) != part["sha256"]:
            raise DataError(f"{path}: its bytes changed after it was written (sha256 differs from {MANIFEST}); "
                            "do not trust it — re-run the command")
        tables.append(pq.read_table(path))
    if not tables:
        raise DataError(f"{folder}: the manifest lists no parts")
    return pa.concat_tables(tables) if len(tables) > 1 else tables[0]


__all__ = ["DatasetSource", "DatasetWriter", "MANIFEST", "open_source", "read_dataset", "write_dataset",
           "source_fingerprint", "is_dataset_path", "dataset_parts"]
