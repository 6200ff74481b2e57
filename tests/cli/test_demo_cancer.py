"""The tabular example: `mteach demo --example cancer` on scikit-learn's breast-cancer data, a fixed
split, thresholds from the training split, a held-out evaluation with F1; every verb works on it."""
import re
from pathlib import Path

import numpy as np
import pyarrow.csv as pacsv
import pytest

from mteach.cli import main

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "data" / "breast_cancer"


def test_the_csvs_are_sklearns_data_split_as_documented():
    pytest.importorskip("sklearn")
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split
    d = load_breast_cancer()
    train, test = train_test_split(np.arange(len(d.target)), test_size=0.3, random_state=0, stratify=d.target)
    for name, rows in (("train", np.sort(train)), ("test", np.sort(test))):
        t = pacsv.read_csv(DATA / f"{name}.csv")
        assert t.column("id").to_pylist() == [f"case{i:03d}" for i in rows]
        assert t.column("diagnosis").to_pylist() == ["M" if d.target[i] == 0 else "B" for i in rows]
        for j, feature in enumerate(d.feature_names):
            np.testing.assert_array_equal(t.column(feature.replace(" ", "_")).to_numpy(), d.data[rows, j])


def test_cancer_demo_evaluates_on_held_out_rows_and_every_verb_works_in_its_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["demo", "--example", "cancer"]) == 0
    out = capsys.readouterr().out
    assert "8 rules, 0 hints, 3/3 examples pass" in out
    assert "on the held-out test split" in out and "f1: of MALIGNANT" in out
    short = out.split("In short, on the 171 held-out biopsies:", 1)[1].splitlines()[1:4]
    assert [s.split(":")[0].strip() for s in short] == ["rules", "model", "next"]
    combined = re.search(r"^combined\s+all\s+(\S+)\s+\S+\s+(\S+)\s+\S+\s+171$", out, re.M)
    assert combined and f"{float(combined.group(1)):.1%} right in all" in short[1]

    folder = tmp_path / "mteach-demo-cancer"
    monkeypatch.chdir(folder)
    gold = ["--gold-column", "diagnosis", "--gold-map", "M=MALIGNANT,B=BENIGN"]
    assert main(["stats", *gold]) == 0
    assert "398 rows:" in capsys.readouterr().out
    assert main(["rows", "--uncovered"]) == 0
    assert re.search(r"^\d+ of 398 rows", capsys.readouterr().out, re.M)
    assert main(["train", "-o", "model2", "-q"]) == 0  # from mteach.toml alone, as the demo trained
    assert (folder / "model2" / "model.json").is_file()
    assert main(["predict", "model", "data/breast_cancer/test.csv", "-o", "pred.parquet", *gold]) == 0
    predicted = capsys.readouterr().out
    assert re.search(r"^combined\s+all\s+" + re.escape(combined.group(1)), predicted, re.M)  # as the demo said
    assert main(["label", "-o", "ledger.parquet", "--model", "model"]) == 0
    assert main(["explain", "ledger.parquet", "--id", "case000"]) == 0
    assert "case000" in capsys.readouterr().out

    from mteach.tui.app import StudioApp
    opened = []
    monkeypatch.setattr(StudioApp, "run", lambda app: opened.append(app.session))
    assert main(["tui"]) == 0
    assert opened[0].spec_path.name == "breast_cancer.mt"
