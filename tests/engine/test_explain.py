"""Explaining a row from the ledger alone."""
from __future__ import annotations

import pytest

from mteach.engine import explain, ledger as led


def test_find_row_suggests_near_ids(repo, tmp_path):
    _, spec_path, data, _, _ = repo
    led.label_data(spec_path, data, tmp_path / "l.parquet", "id")
    ledger = led.read_ledger(tmp_path / "l.parquet")
    with pytest.raises(led.LedgerError, match="did you mean r12"):
        explain.find_row(ledger, "r122")
