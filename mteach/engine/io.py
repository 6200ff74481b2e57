"""Reading data files in Arrow record batches, and writing outputs atomically.

Parquet, CSV and JSON Lines are read as streams of record batches, so memory stays
bounded by the batch size however long the file is. Every reader error becomes a
``DataError`` that names the file and says what to do.
"""
from __future__ import annotations

import codecs
import contextlib
import errno
import hashlib
import json
import os
import re
import secrets
import shutil
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


def parquet_batches(path, columns=None, batch_rows: int = DEFAULT_BATCH_ROWS) -> Iterator[pa.RecordBatch]:
    """A Parquet file's rows in batches of ``batch_rows`` (the last one shorter), as
    ``ParquetFile.iter_batches`` gives them for plain columns (for dictionary columns its
    batches fall irregularly at row groups; here they are all ``batch_rows`` long too), but
    read one row group at a time: pyarrow's reader over the whole file keeps memory that
    grows with the file (~45 bytes a row of a ledger)."""
    file = pq.ParquetFile(path)
    if columns is not None and not columns:  # no columns: nothing to hold
        yield from file.iter_batches(batch_size=batch_rows, columns=columns)
        return
    pending, held = [], 0
    for group in range(file.num_row_groups):
        for batch in file.iter_batches(batch_size=batch_rows, row_groups=[group], columns=columns):
            if not pending and batch.num_rows == batch_rows:
                yield batch
                continue
            pending.append(batch)
            held += batch.num_rows
            while held >= batch_rows:  # a batch that straddles row groups, as the whole-file reader gives it
                table = pa.Table.from_batches(pending)
                yield _one_batch(table.slice(0, batch_rows))
                pending = table.slice(batch_rows).to_batches()
                held -= batch_rows
    if held:
        yield _one_batch(pa.Table.from_batches(pending))


def _one_batch(table: pa.Table) -> pa.RecordBatch:
    return pa.RecordBatch.from_arrays([c.combine_chunks() for c in table.columns], schema=table.schema)


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
            yield from parquet_batches(self.path, columns, batch_rows)
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
# A write goes to a temporary name beside its target, ``.NAME.PID-RANDOM.mteach.tmp``, then is
# renamed into place. One left by a run that was killed is recognised by that name and removed
# by the next write to the same target (a model folder caught between its two renames is put back).
TMP_SUFFIX = ".mteach.tmp"
_TMP_NAME = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)-[A-Za-z0-9_]+(?P<old>\.old)?" + re.escape(TMP_SUFFIX) + "$")
# errors of the place written to (not of mteach): a message naming the target, not a traceback
_PLACE_ERRORS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.ENOTDIR,
                 errno.EISDIR}


def _fsync_path(path) -> None:
    """Flush a file's (or a folder's) data to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def readable(path):
    """Give a file written through a temporary name the usual permissions (0666 less the umask;
    a folder 0777 less the umask), as if it had been created in place."""
    os.chmod(path, (0o777 if os.path.isdir(path) else 0o666) & ~_umask())


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale_temporaries(target) -> list:
    """Remove the temporaries that runs killed mid-write left beside ``target`` (those of live
    processes are kept); a previous model folder moved aside just before a crash is put back
    when ``target`` is missing. Returns the names removed or restored."""
    target = Path(target)
    parent = target.parent if str(target.parent) else Path(".")
    done = []
    try:
        names = sorted(os.listdir(parent))
    except OSError:
        return done
    for name in names:
        m = _TMP_NAME.match(name)
        if not m or m["name"] != target.name or _alive(int(m["pid"])):
            continue
        path = parent / name
        with contextlib.suppress(OSError):
            if m["old"] and not (target.exists() or target.is_symlink()):
                os.rename(path, target)
            elif path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                os.unlink(path)
            done.append(name)
    return done


def _temporary_name(target: Path, old: bool = False) -> Path:
    return target.parent / f".{target.name}.{os.getpid()}-{secrets.token_hex(4)}{'.old' if old else ''}{TMP_SUFFIX}"


def _place_error(target, err: OSError) -> DataError:
    return DataError(f"{target}: cannot write there ({err.strerror or err}); "
                     "choose another output, or free space / make its folder writable")


def _check_parent(target: Path) -> None:
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.exists():
        raise DataError(f"{target}: the folder {parent} does not exist")
    if not parent.is_dir():
        raise DataError(f"{target}: {parent} is not a folder")


@contextlib.contextmanager
def _write_errors_name(target):
    """OSErrors of the place written to (read-only, full, ...) become a DataError naming ``target``."""
    try:
        yield
    except OSError as err:
        if err.errno in _PLACE_ERRORS:
            raise _place_error(target, err) from None
        raise


@contextlib.contextmanager
def atomic_path(target):
    """Yield a temporary path beside ``target``; on success give it the umask's permissions,
    fsync it, rename it into place and fsync the folder, so the new file survives a crash
    once this returns.

    A crash or an error leaves ``target`` as it was (absent or the previous version).
    """
    target = Path(target)
    _check_parent(target)
    if target.is_dir():
        raise DataError(f"{target}: is a folder; give a file name to write")
    clean_stale_temporaries(target)
    with _write_errors_name(target):
        tmp = _temporary_name(target)
        os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        try:
            yield tmp
            readable(tmp)
            _fsync_path(tmp)
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        _fsync_path(target.parent if str(target.parent) else ".")


def write_bytes_atomic(target, data: bytes) -> None:
    with atomic_path(target) as tmp:
        Path(tmp).write_bytes(data)


def write_text_atomic(target, text: str) -> None:
    write_bytes_atomic(target, text.encode("utf-8"))


@contextlib.contextmanager
def atomic_folder(target):
    """Yield a temporary folder beside ``target`` to fill; on success fsync every file in it
    and put it in place: a previous ``target`` is renamed aside, the new folder renamed in,
    and only then the previous one deleted — a crash in between leaves the previous folder
    under a temporary name, put back by the next write (``clean_stale_temporaries``)."""
    target = Path(target)
    parent = target.resolve().parent
    if target.exists() and not target.is_dir():
        raise DataError(f"{target}: is a file, not a folder; choose another output folder")
    with _write_errors_name(target):
        parent.mkdir(parents=True, exist_ok=True)
        clean_stale_temporaries(parent / target.name)
        tmp = _temporary_name(parent / target.name)
        tmp.mkdir(mode=0o700)
        try:
            yield tmp
            readable(tmp)
            for folder, _, files in os.walk(tmp):
                for name in files:
                    _fsync_path(os.path.join(folder, name))
                _fsync_path(folder)
            if target.exists() or target.is_symlink():
                old = _temporary_name(parent / target.name, old=True)
                os.rename(target, old)
                try:
                    os.rename(tmp, target)
                except OSError:
                    os.rename(old, target)
                    raise
                _fsync_path(parent)
                if old.is_symlink():
                    os.unlink(old)
                else:
                    shutil.rmtree(old, ignore_errors=True)
            else:
                os.rename(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        _fsync_path(parent)


# -- outputs: refused before any work when they would overwrite an input ----------------------
def _key(path: Path) -> Path:
    return Path(os.path.realpath(path))


def _same(a: Path, b: Path) -> bool:
    if a.exists() and b.exists():
        return os.path.samefile(a, b)  # hard links too
    return _key(a) == _key(b)


def _inside(path: Path, folder: Path) -> bool:
    return _key(folder) in _key(path).parents


# The manifest of a partitioned output (``engine.datasets``), written last: a folder holding one
# is a complete output of mteach's; its parts are named ``PART_NAME``.
PARTS_MANIFEST = "_manifest.json"
PART_NAME = re.compile(r"^part-\d{5}\.parquet$")


def is_partitioned_output(folder) -> bool:
    """Whether ``folder`` is an output mteach wrote as parts: complete (its manifest) or
    left incomplete by an interrupted run (only parts and mteach's temporaries)."""
    folder = Path(folder)
    try:
        names = os.listdir(folder)
    except OSError:
        return False
    if PARTS_MANIFEST in names:
        try:
            with open(folder / PARTS_MANIFEST, encoding="utf-8") as f:
                return str(json.load(f).get("format", "")).startswith("mteach dataset")
        except (OSError, ValueError, AttributeError):
            return False
    return bool(names) and all(PART_NAME.match(n) or _TMP_NAME.match(n) for n in names)


def check_output(target, inputs=(), kind: str = "file", writes=()) -> None:
    """Refuse an output, before any work, that would overwrite one of ``inputs`` (files or
    folders, symlinks and hard links followed) or is the wrong kind of thing.

    ``kind``: "file" — ``target`` is a file to write (not an existing folder, nor a file of an
    input folder such as a model); "model" — a model folder replaced whole (not an existing
    file, nor a folder that is not a model, nor one holding an input); "folder" — a folder the
    files named in ``writes`` are written into; "parts" — a partitioned output (parts and a
    manifest, ``engine.datasets``) replaced whole: new, empty, or a previous one of mteach's.
    """
    target = Path(target)
    inputs = [Path(p) for p in inputs if p]
    if kind == "file" and target.is_dir():
        raise DataError(f"{target}: is a folder; -o needs a file name (e.g. {target / 'out.parquet'})")
    if kind in ("model", "folder", "parts") and target.exists() and not target.is_dir():
        raise DataError(f"{target}: is a file; -o needs a folder here — choose another name")
    if kind == "model" and target.is_dir() and not (target / "model.json").is_file() and any(target.iterdir()):
        raise DataError(f"{target}: exists and is not a model folder (no model.json); `train` replaces its -o "
                        "folder whole, so choose a new or empty folder, or an old model to replace")
    if kind == "parts":
        check_parts_folder(target)
    written = [target / name for name in writes] if kind == "folder" else [target]
    for out in written:
        for given in inputs:
            if _same(out, given) or (kind in ("model", "parts") and _inside(given, out)):
                what = "is" if _same(out, given) else "holds"
                raise DataError(f"{out}: -o {what} an input ({given}); writing there would destroy it — "
                                "choose another output")
            if given.is_dir() and _inside(out, given) and out.exists():
                raise DataError(f"{out}: -o names a file of the input folder {given}; writing there would "
                                "damage it — choose another output")


def check_parts_folder(target) -> None:
    """Refuse a partitioned output's folder that holds anything but a previous output of
    mteach's: it is replaced whole."""
    target = Path(target)
    if target.is_dir() and any(target.iterdir()) and not is_partitioned_output(target):
        other = sorted(n for n in os.listdir(target) if not (PART_NAME.match(n) or _TMP_NAME.match(n)))
        raise DataError(f"{target}: a folder that is not an output of mteach's (no {PARTS_MANIFEST}; it holds "
                        f"{other[0]!r}{f' and {len(other) - 1} more' if len(other) > 1 else ''}); a partitioned "
                        "output replaces its folder whole, so choose a new or empty folder, or a previous output "
                        "to replace")


# -- columns past 2 GB ---------------------------------------------------------------------------
# Bytes of text one Arrow string (binary) array can hold: its offsets are int32. A column
# gathered from many batches may hold more; it is then made large_string (int64 offsets) rather
# than fail with ArrowCapacityError. A name, so tests can lower it.
STRING_LIMIT = (1 << 31) - 1
_LARGE = {pa.string(): pa.large_string(), pa.binary(): pa.large_binary()}


def combined(column) -> pa.Array:
    """One array from a column (an Array or a ChunkedArray): text over ``STRING_LIMIT`` bytes
    in all becomes large_string (large_binary), so combining never raises ArrowCapacityError."""
    if not isinstance(column, pa.ChunkedArray):
        return column
    if column.type in _LARGE and column.nbytes >= STRING_LIMIT:
        column = column.cast(_LARGE[column.type])
    return column.combine_chunks()


def large_where_needed(table: pa.Table) -> pa.Table:
    """``table`` with each string (binary) column holding over ``STRING_LIMIT`` bytes made
    large_string (large_binary), chunk by chunk (nothing concatenated), so any kernel that
    combines its chunks (take, filter, combine_chunks) can."""
    for i, field in enumerate(table.schema):
        if field.type in _LARGE and table.column(i).nbytes >= STRING_LIMIT:
            table = table.set_column(i, pa.field(field.name, _LARGE[field.type]),
                                     table.column(i).cast(_LARGE[field.type]))
    return table


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
