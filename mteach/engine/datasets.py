"""Parquet datasets: several part files read as one source, and outputs written as parts
with a manifest written last.

Input: ``open_source(path)`` opens a data file as ``io.open_data`` does, or a Parquet
dataset: a folder of ``.parquet`` files, a glob (``data/*.parquet``) or several paths
joined by commas. Its parts must agree on the schema; the first part and field that
differ are named before any work starts. A ``DatasetSource`` streams its parts in
order, so every engine (local or Dask) reads it like one file.

Output: one Parquet file per partition (``write_part``: through a temporary name, on the
Dask worker that made it, or here by ``DatasetWriter``) and ``MANIFEST`` last
(``write_manifest``): every part, its rows and its sha256. The parts are written into a
temporary folder beside the output, put in its place only once complete
(``replacing_folder``), so re-running over a previous output replaces it whole and an
interrupted re-run leaves the previous one readable; a folder that is not an output of
mteach's is refused. A folder without a manifest is a run that did not finish;
``read_dataset`` refuses it (and a part whose bytes changed) with a message that says
so, which is how ``explain``, ``audit`` and ``verify`` tell a partial output from a
complete one.
"""
from __future__ import annotations

import contextlib
import glob
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import DataError
from .io import (PARTS_MANIFEST, DataSource, _explain_arrow_error, atomic_folder, atomic_path, check_parts_folder,
                 file_fingerprint, open_data, parquet_batches, write_text_atomic)

MANIFEST = PARTS_MANIFEST
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
            return [p / part["file"] for part in read_manifest(p)["parts"]]
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
@contextlib.contextmanager
def replacing_folder(target):
    """A temporary folder beside ``target`` to write a partitioned output into, put in
    ``target``'s place only when the block ends without an error (``io.atomic_folder``): a
    run that fails or is killed leaves a previous output whole, never a mix of old and new
    parts. ``target`` must be new, empty, or a previous output of mteach's (``io.check_parts_folder``)."""
    check_parts_folder(target)
    with atomic_folder(target) as tmp:
        yield Path(tmp)


def write_part(folder, index: int, tables, schema: Optional[pa.Schema] = None,
               options: Optional[dict] = None) -> dict:
    """Part ``index`` of a partitioned output: ``tables`` (Tables or RecordBatches, cast to
    ``schema`` when given) written to ``folder/part-NNNNN.parquet`` through a temporary name,
    with ``options`` for ``pq.ParquetWriter`` (default: zstd).
    Runs wherever the part is made (on a Dask worker for the engine's outputs). Returns its
    manifest entry: file, rows, sha256."""
    path = Path(folder) / PART.format(index)
    options = options or {"compression": "zstd"}
    rows, writer = 0, None
    with atomic_path(path) as tmp:
        try:
            for table in tables:
                if isinstance(table, pa.RecordBatch):
                    table = pa.Table.from_batches([table])
                if schema is not None and table.schema != schema:
                    table = table.cast(schema)
                writer = writer or pq.ParquetWriter(tmp, schema or table.schema, **options)
                writer.write_table(table)
                rows += table.num_rows
        finally:
            if writer is not None:
                writer.close()
        if writer is None:
            if schema is None:
                raise DataError(f"{path}: a part with no rows and no schema")
            pq.write_table(schema.empty_table(), tmp, **options)
    return {"file": path.name, "rows": rows, "sha256": file_fingerprint(path)}


def write_manifest(folder, parts: list, facts: Optional[dict] = None) -> Path:
    """The manifest, written last: every part (its entry from ``write_part``, in order), the rows
    in all, and ``facts``."""
    manifest = {"format": "mteach dataset 1", "rows": sum(p["rows"] for p in parts), "parts": parts,
                **(facts or {})}
    write_text_atomic(Path(folder) / MANIFEST, json.dumps(manifest, indent=1) + "\n")
    return Path(folder)


class DatasetWriter:
    """Writes a partitioned Parquet output from this process: ``write(table)`` adds a part,
    ``close()`` writes the manifest, last, and puts the folder in place (``replacing_folder``);
    ``abort()`` (or an error inside ``with DatasetWriter(...) as writer:``) leaves ``folder`` as
    it was."""

    def __init__(self, folder, schema: pa.Schema, facts: Optional[dict] = None, options: Optional[dict] = None):
        self.folder = Path(folder)
        self.schema = schema
        self.options = options  # for ``pq.ParquetWriter``, see ``write_part``
        self.facts = facts or {}
        self.parts: list = []
        self._place = replacing_folder(self.folder)
        self.tmp = self._place.__enter__()

    def write(self, table: pa.Table | pa.RecordBatch) -> None:
        self.parts.append(write_part(self.tmp, len(self.parts), [table], self.schema, self.options))

    def close(self) -> Path:
        write_manifest(self.tmp, self.parts, self.facts)
        self._place.__exit__(None, None, None)
        return self.folder

    def abort(self) -> None:
        err = DataError("aborted")
        self._place.__exit__(DataError, err, None)

    def __enter__(self):
        return self

    def __exit__(self, kind, value, traceback):
        if kind is None:
            self.close()
        else:
            self.abort()


def read_manifest(folder: Path) -> dict:
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
    tables = read_parts(folder, check)
    return pa.concat_tables(tables) if len(tables) > 1 else tables[0]


def read_parts(folder, check: bool = True) -> list:
    """A partitioned output's parts as tables, in order (``read_dataset``'s checks)."""
    return [pq.read_table(path) for path in part_paths(folder, check)]


def part_paths(folder, check: bool = True) -> list:
    """A partitioned output's part files, in order, without reading their rows; raises
    ``DataError`` as ``read_dataset`` does (no manifest, a part missing, with ``check`` a part
    whose sha256 differs from the manifest's, naming it)."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    paths = []
    for part in manifest["parts"]:
        path = folder / part["file"]
        if not path.exists():
            raise DataError(f"{folder}: part {part['file']} listed in {MANIFEST} is missing; re-run the command")
        if check and file_fingerprint(path) != part["sha256"]:
            raise DataError(f"{path}: its bytes changed after it was written (sha256 differs from {MANIFEST}); "
                            "do not trust it — re-run the command")
        paths.append(path)
    if not paths:
        raise DataError(f"{folder}: the manifest lists no parts")
    return paths


__all__ = ["DatasetSource", "DatasetWriter", "MANIFEST", "open_source", "read_dataset",
           "replacing_folder", "write_part", "write_manifest", "read_manifest", "read_parts", "part_paths",
           "source_fingerprint", "is_dataset_path", "dataset_parts"]
