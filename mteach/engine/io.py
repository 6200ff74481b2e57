"""Reading data files in Arrow record batches, and writing outputs atomically.

Parquet, CSV and JSON Lines are read as streams of record batches, so memory stays
bounded by the batch size however long the file is. Every reader error becomes a
``DataError`` that names the file and says what to do.
"""
from __future__ import annotations

import codecs
import contextlib
import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq

from ..errors import DataError

DEFAULT_BATCH_ROWS = 65_536
BLOCK_BYTES = 1 << 22  # bytes per read block of CSV and JSONL (grown for a CSV row larger than this)
FORMATS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl",
           ".json": "jsonl"}


def data_format(path: Path) -> str:
    fmt = FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise DataError(f"{path}: unknown data format {Path(path).suffix!r}; use .parquet, .csv or .jsonl")
    return fmt


def _explain_arrow_error(path, err: Exception) -> DataError:
    text = str(err)
    if "UTF8" in text or "utf8" in text or "UTF-8" in text:
        return DataError(f"{path}: the file is not valid UTF-8 ({text.splitlines()[0]}); "
                         "re-encode it as UTF-8, e.g. `iconv -f latin1 -t utf-8 IN > OUT`")
    if "Empty CSV file" in text or "Empty file" in text:
        return DataError(f"{path}: the file is empty; it needs a header line and rows")
    return DataError(f"{path}: cannot read the data: {text.splitlines()[0] if text else type(err).__name__}")


def _not_utf8(path, columns) -> DataError:
    """Name the column(s) and the first line holding bytes that are not UTF-8."""
    where, NEWLINE = "", b"\n"
    decoder = codecs.getincrementaldecoder("utf-8")()
    line = 1
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            try:
                decoder.decode(block)
            except UnicodeDecodeError as err:
                where = f" (first at line {line + block[:err.start].count(NEWLINE)})"
                break
            line += block.count(NEWLINE)
    return DataError(f"{path}: column {', '.join(map(repr, columns))} is not valid UTF-8 text{where}; "
                     "re-encode the file as UTF-8, e.g. `iconv -f latin1 -t utf-8 IN > OUT`")


@dataclass
class DataSource:
    """A data file opened for streaming: its schema and its batches."""
    path: Path
    format: str
    schema: pa.Schema
    num_rows: Optional[int]  # known up front for Parquet only

    def batches(self, columns=None, batch_rows: int = DEFAULT_BATCH_ROWS) -> Iterator[pa.RecordBatch]:
        try:
            yield from self._batches(columns, batch_rows)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OSError) as err:
            raise _explain_arrow_error(self.path, err) from None

    def _batches(self, columns, batch_rows):
        if self.format == "parquet":
            yield from pq.ParquetFile(self.path).iter_batches(batch_size=batch_rows, columns=columns)
            return
        if self.format == "csv":
            yield from _csv_batches(self.path, _csv_convert(self.schema, columns), batch_rows)
            return
        reader = pajson.open_json(self.path, read_options=pajson.ReadOptions(block_size=BLOCK_BYTES),
                                  parse_options=pajson.ParseOptions(explicit_schema=self.schema))
        for batch in reader:
            if columns is not None:
                batch = batch.select(columns)
            batch.validate(full=True)  # the JSON reader lets invalid UTF-8 into string columns
            for start in range(0, batch.num_rows, batch_rows):
                yield batch.slice(start, batch_rows)

    def read_all(self, columns=None) -> pa.Table:
        batches = list(self.batches(columns))
        schema = self.schema if columns is None else pa.schema([self.schema.field(c) for c in columns])
        return pa.Table.from_batches(batches, schema=schema) if batches else schema.empty_table()


def _csv_reader(path, convert_options=None, block_size=None, skip_rows: int = 0):
    """A streaming CSV reader that reads quoted cells holding newlines as one cell (the
    default splits them into phantom rows where a read block ends inside a cell)."""
    return pacsv.open_csv(path, read_options=pacsv.ReadOptions(block_size=block_size or BLOCK_BYTES,
                                                               skip_rows_after_names=skip_rows),
                          parse_options=pacsv.ParseOptions(newlines_in_values=True),
                          convert_options=convert_options or pacsv.ConvertOptions(strings_can_be_null=True))


def _grow_block(path, block: int, err: Exception) -> int:
    """Twice the read block after Arrow's error for a row (a cell) larger than it; other errors re-raised."""
    if "straddl" not in str(err) or block > os.path.getsize(path):
        raise err
    return block * 2


def _csv_batches(path, convert_options, batch_rows):
    """The CSV's record batches; a row larger than the read block makes the block twice as
    large and the read resumes after the rows already given (no row twice, none lost)."""
    block, done = BLOCK_BYTES, 0
    while True:
        try:
            for batch in _csv_reader(path, convert_options, block, skip_rows=done):
                for start in range(0, batch.num_rows, batch_rows):
                    part = batch.slice(start, batch_rows)
                    done += part.num_rows
                    yield part
            return
        except pa.ArrowInvalid as err:
            block = _grow_block(path, block, err)


def _csv_schema(path) -> pa.Schema:
    """The schema Arrow infers from a CSV's first block (grown until its first row fits)."""
    block = BLOCK_BYTES
    while True:
        try:
            reader = _csv_reader(path, block_size=block)
            schema = reader.schema
            binary = [f.name for f in schema if pa.types.is_binary(f.type) or pa.types.is_large_binary(f.type)]
            if binary:  # Arrow reads a column with non-UTF-8 bytes as binary
                raise _not_utf8(path, binary)
            reader.read_next_batch()
            return schema
        except StopIteration:  # before the types below are blamed on the spec
            raise DataError(f"{path}: the file has a header but no rows") from None
        except pa.ArrowInvalid as err:
            block = _grow_block(path, block, err)


def _csv_convert(schema: pa.Schema, columns):
    # Keep the types found when the file was opened, so every block agrees.
    return pacsv.ConvertOptions(column_types={f.name: f.type for f in schema},
                                include_columns=list(columns) if columns is not None else None,
                                strings_can_be_null=True)


def open_data(path) -> DataSource:
    """Open a Parquet, CSV or JSONL file; raises ``DataError`` with a clear message on failure."""
    path = Path(path)
    fmt = data_format(path)
    if not path.exists():
        raise DataError(f"{path}: no such data file")
    if path.is_dir():
        raise DataError(f"{path}: is a folder; give a .parquet, .csv or .jsonl file")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: the file is empty; it needs a header line and rows")
    try:
        if fmt == "parquet":
            meta = pq.ParquetFile(path)
            return DataSource(path, fmt, meta.schema_arrow, meta.metadata.num_rows)
        if fmt == "csv":
            schema = _csv_schema(path)
            # Columns that are empty in the first block come out as null type; read them as text.
            schema = pa.schema([pa.field(f.name, pa.string()) if pa.types.is_null(f.type) else f for f in schema])
            return DataSource(path, fmt, schema, None)
        reader = pajson.open_json(path, read_options=pajson.ReadOptions(block_size=BLOCK_BYTES))
        schema = pa.schema([pa.field(f.name, pa.string()) if pa.types.is_null(f.type) else f for f in reader.schema])
        return DataSource(path, fmt, schema, None)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OSError) as err:
        raise _explain_arrow_error(path, err) from None


def file_fingerprint(path) -> str:
    """sha256 of the file's bytes (streamed)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# -- atomic writes: every output file and model folder goes through these --------------------
def _fsync_path(path) -> None:
    """Flush a file's (or a folder's) data to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _check_parent(target: Path) -> None:
    if target.parent and not target.parent.exists():
        raise DataError(f"{target}: the folder {target.parent} does not exist")


@contextlib.contextmanager
def atomic_path(target):
    """Yield a temporary path beside ``target``; on success fsync it, rename it into place
    and fsync the folder, so the new file survives a crash once this returns.

    A crash or an error leaves ``target`` as it was (absent or the previous version).
    """
    target = Path(target)
    _check_parent(target)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent or ".")
    os.close(fd)
    try:
        yield Path(tmp)
        _fsync_path(tmp)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_path(target.parent or ".")


def readable(path):
    """Give a file written through a temporary name the usual permissions (0666 less the umask)."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, 0o666 & ~mask)


def write_bytes_atomic(target, data: bytes) -> None:
    with atomic_path(target) as tmp:
        Path(tmp).write_bytes(data)


def write_text_atomic(target, text: str) -> None:
    write_bytes_atomic(target, text.encode("utf-8"))


@contextlib.contextmanager
def atomic_folder(target):
    """Yield a temporary folder beside ``target`` to fill; on success fsync every file in it,
    replace ``target`` (a previous version is removed) and fsync the parent folder."""
    target = Path(target)
    parent = target.resolve().parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=parent))
    try:
        yield tmp
        for folder, _, files in os.walk(tmp):
            for name in files:
                _fsync_path(os.path.join(folder, name))
            _fsync_path(folder)
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _fsync_path(parent)


def as_table(data) -> pa.Table:
    """In-memory data as a ``pyarrow.Table``: the one coercion behind the Python API.

    A pyarrow Table passes through and a RecordBatch is wrapped (no copy); a pandas
    DataFrame (its index is dropped: keep ids in a column) or a polars DataFrame is
    converted. pandas and polars are never imported here: an object is recognized by
    the module its type comes from, so neither is needed unless you pass one.
    """
    if isinstance(data, pa.Table):
        return data
    if isinstance(data, pa.RecordBatch):
        return pa.Table.from_batches([data])
    library = type(data).__module__.split(".")[0]
    if library == "pandas" and hasattr(data, "columns"):
        return pa.Table.from_pandas(data, preserve_index=False)
    if library == "polars" and hasattr(data, "to_arrow"):
        return data.to_arrow()
    raise DataError(f"expected a pyarrow Table, a pandas DataFrame or a polars DataFrame, "
                    f"not {type(data).__module__}.{type(data).__name__}")
