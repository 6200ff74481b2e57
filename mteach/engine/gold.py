"""Gold labels: from a file of (id, label) rows, or from a column of the data.

A gold file is CSV, Parquet or JSONL with columns ``id`` and ``label`` (review
sessions also write ``reviewer`` and ``time``; they are ignored here). Its labels
are the spec's label names. A data column (YouTube's CLASS 1/0) needs a mapping of
its values to label names: ``1=SPAM,0=HAM``. ``GoldRequest`` is what a user asked for
(the CLI's and the studio's flags), checked and resolved in one place.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import DataError, did_you_mean
from .io import open_data

UNKNOWN = -1


def parse_mapping(text: str, labels) -> dict:
    """``"1=SPAM,0=HAM"`` → {"1": "SPAM", "0": "HAM"}; every target must be a spec label."""
    mapping = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        if "=" not in part:
            raise DataError(f"--gold-map: {part!r} is not VALUE=LABEL (e.g. 1=SPAM,0=HAM)")
        value, label = (s.strip() for s in part.split("=", 1))
        if label not in labels:
            raise DataError(f"--gold-map: {label!r} is not a label of the spec{did_you_mean(label, labels)} "
                            f"(labels: {', '.join(labels)})")
        mapping[value] = label
    if not mapping:
        raise DataError("--gold-map is empty; write VALUE=LABEL pairs, e.g. 1=SPAM,0=HAM")
    return mapping


def _to_indices(values: pa.Array, labels, where: str, mapping: Optional[dict] = None, first_row: int = 0) -> np.ndarray:
    """Label names (or mapped raw values) → label indices; nulls → -1. Unknown values are errors
    (naming the row, counted from ``first_row``: the values may be a batch of the data)."""
    strings = pc.cast(values, pa.string()) if not pa.types.is_string(values.type) else values
    if mapping is not None:
        keys = pa.array(list(mapping), pa.string())
        idx = pc.index_in(strings, value_set=keys)
        targets = np.array([labels.index(mapping[k]) for k in mapping] + [UNKNOWN])
    else:
        idx = pc.index_in(strings, value_set=pa.array(list(labels), pa.string()))
        targets = np.arange(len(labels) + 1)
        targets[-1] = UNKNOWN
    bad = pc.and_(pc.is_null(idx), pc.is_valid(strings))
    if pc.any(bad).as_py():
        row = int(np.flatnonzero(bad.to_numpy(zero_copy_only=False))[0])
        value = strings[row].as_py()
        row += first_row
        allowed = list(mapping) if mapping is not None else list(labels)
        raise DataError(f"{where}: row {row + 1} has label {value!r}, which is not "
                        f"{'mapped by --gold-map' if mapping is not None else 'a label of the spec'}"
                        f"{did_you_mean(str(value), allowed)} (expected one of: {', '.join(allowed)})")
    position = pc.fill_null(idx, len(targets) - 1).to_numpy(zero_copy_only=False)
    return targets[position].astype(np.int64)


def gold_from_column(table: pa.Table, column: str, mapping: dict, labels, where: str, first_row: int = 0) -> np.ndarray:
    if column not in table.column_names:
        raise DataError(f"{where}: no gold column {column!r}{did_you_mean(column, table.column_names)}")
    col = table.column(column)
    col = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    return _to_indices(col, labels, f"{where}, column {column}", mapping, first_row)


def read_gold_file(path, labels) -> tuple:
    """(ids as strings, label indices) from a gold file. Duplicate ids: the last line wins
    (a review session appends corrections)."""
    source = open_data(path)
    for needed in ("id", "label"):
        if needed not in source.schema.names:
            raise DataError(f"{path}: a gold file needs columns id and label (found: {', '.join(source.schema.names)})")
    table = source.read_all(["id", "label"])
    ids = pc.cast(table.column("id"), pa.string()).combine_chunks()
    return ids, _to_indices(table.column("label").combine_chunks(), labels, str(path))


def align_gold(row_ids: pa.Array, gold_ids: pa.Array, gold_labels: np.ndarray) -> np.ndarray:
    """Gold label index per data row (-1 where the gold file has none)."""
    row_ids = pc.cast(row_ids, pa.string())
    if isinstance(row_ids, pa.ChunkedArray):
        row_ids = row_ids.combine_chunks()
    # last occurrence wins: reverse, take the first index of each id
    rev_ids = gold_ids[::-1]
    rev_labels = gold_labels[::-1]
    pos = pc.index_in(row_ids, value_set=rev_ids)
    out = np.full(len(row_ids), UNKNOWN, dtype=np.int64)
    valid = pc.is_valid(pos).to_numpy(zero_copy_only=False)
    out[valid] = rev_labels[pc.drop_null(pos).to_numpy()]
    return out


# -- what the user asked for, resolved against the data ----------------------------------------
@dataclass(frozen=True)
class GoldRequest:
    """Where gold labels come from: a gold file matched by id (``file``), or a column of the
    data (``column``) whose values ``mapping`` ("1=SPAM,0=HAM") maps to labels (default: the
    values are label names). Both empty: no gold labels. The CLI and the studio build one
    from their flags; ``check`` and ``resolve`` are the same for both."""
    file: Optional[str] = None
    column: Optional[str] = None
    mapping: Optional[str] = None

    def __bool__(self) -> bool:
        return bool(self.file or self.column)

    @property
    def columns(self) -> tuple:
        """The data columns to read along with the votes."""
        return (self.column,) if self.column else ()

    def check(self, schema: pa.Schema, id_column: Optional[str], data_path) -> None:
        """Usage errors, before any data is read."""
        if self.file and self.column:
            raise DataError("give either --gold FILE or --gold-column COLUMN, not both")
        if self.mapping and not self.column:
            raise DataError("--gold-map goes with --gold-column")
        if self.file and not id_column:
            raise DataError("--gold FILE matches rows by id: also give --id COLUMN")
        if self.column and self.column not in schema.names:
            raise DataError(f"{data_path}: no gold column {self.column!r}"
                            f"{did_you_mean(self.column, schema.names)} (columns: {', '.join(schema.names)})")

    def resolve(self, labels, ids: pa.Array, table, data_path, id_column: Optional[str] = None) -> Optional[np.ndarray]:
        """Gold label index per row (-1 unknown), or None when no gold was asked for.
        ``ids`` are the rows' ids; ``table`` holds the gold column when there is one."""
        labels = list(labels)
        if self.file:
            gold_ids, gold_labels = read_gold_file(self.file, labels)
            gold = align_gold(ids, gold_ids, gold_labels)
            if (gold == UNKNOWN).all():
                raise DataError(f"{self.file}: none of its ids is in {data_path} (column {id_column})")
            return gold
        if self.column:
            mapping = parse_mapping(self.mapping, labels) if self.mapping else {lab: lab for lab in labels}
            return gold_from_column(table, self.column, mapping, labels, str(data_path))
        return None
