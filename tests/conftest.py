"""Shared fixtures for the core-road tests: a spec writer and small tables.

``spec_file(text, name=...)`` writes a spec (and, via ``files=``, lexicons or used
specs) into a fresh folder and returns its path. ``fires(pred, table)`` evaluates one
predicate over a small Arrow table and returns the rows where it holds, as a list of
bools. Keep this file small: put fixtures used by one file in that file.
"""
from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

import mteach

HEADER = 'concept c "test concept"\nlabels A, B\n'


@pytest.fixture
def spec_file(tmp_path):
    def put(rel: str, content) -> Path:
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
        return path

    def write(text: str, name: str = "spec.mt", files: dict | None = None) -> Path:
        for rel, content in (files or {}).items():
            put(rel, content)
        return put(name, text)
    return write


def fields_for(table: pa.Table) -> str:
    """`field NAME = "NAME"` for every column of the table."""
    return "".join(f'field {n} = "{n}"\n' for n in table.column_names)


@pytest.fixture
def fires(tmp_path):
    """fires(pred, table, defines="") -> [bool per row] for `rule r : pred => A`."""
    def run(pred: str, table: pa.Table, defines: str = "", files: dict | None = None) -> list:
        for rel, content in (files or {}).items():
            p = tmp_path / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(content, encoding="utf-8")
        text = HEADER + fields_for(table) + defines + f"\nrule r : {pred} => A\n"
        spec = mteach.load_spec(tmp_path / "spec.mt", schema=table.schema, text=text)
        votes = mteach.apply_table(spec, table)
        return [bool(v == 0) for v in votes[:, 0]]
    return run


@pytest.fixture
def texts():
    """One text column `t` from a list of strings (None = null)."""
    return lambda *values: pa.table({"t": pa.array(list(values), pa.string())})


@pytest.fixture
def small_csv(tmp_path):
    """A 6-row CSV with id, text and a gold class column; and its matching spec."""
    data = tmp_path / "data.csv"
    data.write_text(
        "id,text,cls\n"
        "1,buy cheap pills now,1\n"
        "2,I love this song,0\n"
        "3,check out my channel,1\n"
        "4,great song buy it,0\n"
        "5,hello,0\n"
        "6,free money free money,1\n", encoding="utf-8")
    spec = tmp_path / "spec.mt"
    spec.write_text(
        'concept spam "spam"\nlabels SPAM, HAM\nfield text = "text"\n'
        'rule buy : text has any("buy", "free") => SPAM\n'
        'rule channel : text has "my channel" => SPAM\n'
        'rule song : text has "song" => HAM\n'
        'example "buy now" => SPAM\n', encoding="utf-8")
    return spec, data
