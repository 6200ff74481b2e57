"""A ledger's bytes do not depend on the working folder nor on how paths were typed (issue 9 item 20)."""
import os

from mteach.engine import ledger as led, verify


def test_same_spec_and_data_give_byte_identical_ledgers_from_anywhere(repo, tmp_path, monkeypatch):
    root, spec_path, data, _, _ = repo
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    runs = [(root, "specs/spam.mt", os.path.relpath(data, root)),            # from the repository
            (root / "specs", "spam.mt", str(data)),                          # from the spec's folder, absolute data
            (elsewhere, str(spec_path), os.path.relpath(data, elsewhere)),   # from another folder
            (elsewhere, f"../repo/specs/../specs/spam.mt", "../data.csv")]   # typed the long way
    outputs = []
    for i, (cwd, spec, data_arg) in enumerate(runs):
        monkeypatch.chdir(cwd)
        out = tmp_path / f"l{i}.parquet"
        led.label_data(spec, data_arg, out, "id")
        outputs.append(out.read_bytes())
    assert all(o == outputs[0] for o in outputs[1:])
    ledger = led.read_ledger(tmp_path / "l0.parquet")
    assert ledger.run["spec"] == "spam.mt" and ledger.run["data"] == "../../data.csv"
    assert {r["file"] for r in ledger.rules} == {"spam.mt"}
    assert str(tmp_path) not in repr((ledger.run, ledger.rules)), "no absolute path of this machine"
    assert ledger.run["spec_from_data"] == "repo/specs"
    monkeypatch.chdir(elsewhere)  # the repository is found from the data, the spec's folder relative to it
    assert verify.verify_ledger(ledger, os.path.relpath(data, elsewhere)).identical
    assert verify.verify_ledger(ledger, data, repo=root).identical  # or named
