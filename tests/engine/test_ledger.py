"""The label ledger: columns, exact decomposition, byte-identical output, tamper check,
the end model's rows, the audit report."""
from __future__ import annotations

import re

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mteach.compiler.checker import load_spec
from mteach.engine import explain, ledger as led
from mteach.engine.io import open_data
from mteach.engine.report import render_report
from mteach.engine.votes import collect_votes


def test_ledger_columns_votes_and_exact_decomposition(repo, tmp_path, gold):
    root, spec_path, data, _, sha2 = repo
    out = tmp_path / "ledger.parquet"
    ledger = led.label_data(spec_path, data, out, "id", gold=gold)
    t = pq.read_table(out)
    assert t.column_names == ["id", "label", "probability", "decided_by", "votes", "contributions", "gold", "fields"]
    rows = {r["id"]: r for r in t.to_pylist()}
    assert rows["r1"]["fields"] == {"text": "buy cheap pills now http://x.co"}  # the audit page shows it
    assert rows["r1"]["votes"] == [{"rule": "link", "label": "SPAM"}, {"rule": "buy", "label": "SPAM"}]
    assert [c["rule"] for c in rows["r1"]["contributions"]] == ["link", "buy"]
    assert rows["r13"]["decided_by"] == "none" and rows["r13"]["label"] is None
    assert rows["r13"]["probability"] is None and rows["r13"]["votes"] == []
    assert rows["r4"]["gold"] is None and rows["r2"]["gold"] == "HAM"
    # probability == sigmoid(baseline log-odds + sum of contributions), two classes
    model = ledger.model
    b = np.array(model["baseline"])
    for r in rows.values():
        if r["decided_by"] != "rules":
            continue
        t_idx = ledger.labels.index(r["label"])
        z = b[t_idx] - b[1 - t_idx] + sum(c["contribution"] for c in r["contributions"])
        assert r["probability"] == pytest.approx(1 / (1 + np.exp(-z)), abs=1e-12)
    run = ledger.run
    assert run["git"] == {"state": "clean", "commit": sha2, "path_in_repo": "specs/spam.mt"}
    assert run["spec_hash"] == load_spec(spec_path).content_hash
    assert len(run["data_sha256"]) == 64 and run["id_column"] == "id"
    assert "time" not in str(run).lower()
    assert np.array(model["weights"]).shape == (4, 2, 2)
    assert [r["rule"] for r in ledger.rules] == ["link", "buy", "short", "song"]


def test_ledger_is_byte_identical_across_runs_and_threads(repo, tmp_path, kit):
    _, spec_path, data, _, _ = repo
    outs = []
    for i, threads in enumerate((1, 4, 2)):
        out = tmp_path / f"l{i}.parquet"
        led.label_data(spec_path, data, out, "id", seed=3, threads=threads, batch_rows=3 + i)
        outs.append(out.read_bytes())
    assert outs[0] == outs[1] == outs[2]
    # a commit that does not touch the spec's files leaves the ledger as it was
    root = spec_path.parents[1]
    (root / "README").write_text("unrelated\n", encoding="utf-8")
    kit.git(root, "add", "README")
    kit.git(root, "commit", "-q", "-m", "unrelated")
    led.label_data(spec_path, data, tmp_path / "after.parquet", "id", seed=3, threads=2, batch_rows=5)
    assert (tmp_path / "after.parquet").read_bytes() == outs[0]
    other = tmp_path / "seed.parquet"
    led.label_data(spec_path, data, other, "id", seed=4)
    assert b'"seed":4' in other.read_bytes()


def test_tampered_ledger_is_reported(repo, tmp_path):
    _, spec_path, data, _, _ = repo
    out = tmp_path / "ledger.parquet"
    led.label_data(spec_path, data, out, "id")
    led.read_ledger(out)  # intact
    t = pq.read_table(out)
    labels = t.column("label").to_pylist()
    labels[1] = "SPAM" if labels[1] == "HAM" else "HAM"
    forged = t.set_column(1, "label", pa.array(labels, pa.string())).replace_schema_metadata(t.schema.metadata)
    pq.write_table(forged, out)
    with pytest.raises(led.LedgerError, match="modified after it was written"):
        led.read_ledger(out)
    # editing a recorded fact is caught too
    meta = dict(t.schema.metadata)
    meta[b"mteach.rules"] = meta[b"mteach.rules"].replace(b"Ada Expert", b"Eve Forger")
    pq.write_table(t.replace_schema_metadata(meta), out)
    with pytest.raises(led.LedgerError, match="modified"):
        led.read_ledger(out)


def test_end_model_decides_uncovered_rows(repo, tmp_path):
    _, spec_path, data, _, _ = repo
    spec = load_spec(spec_path, open_data(data).schema)
    batch = collect_votes(spec, open_data(data), "id")
    ids, votes = batch.ids, batch.votes
    uncovered = np.flatnonzero(~(votes != -1).any(axis=1))
    assert len(uncovered) > 0
    feats = [[{"feature": "voice", "weight": -1.5}]] * len(uncovered)
    ledger = led.build_ledger(spec, ids, votes,
                               model_output=led.ModelOutput(np.tile([0.2, 0.8], (len(ids), 1)), features=feats))
    t = ledger.table
    decided = np.array(t.column("decided_by").to_pylist())
    assert set(decided[uncovered]) == {"end_model"} and "none" not in decided
    assert t.column("label").to_pylist()[uncovered[0]] == "HAM"
    feats = t.column("end_model_features").to_pylist()
    assert feats[uncovered[0]] == [{"feature": "voice", "weight": -1.5}] and feats[0] == []
    ledger.path = tmp_path / "e.parquet"
    led.write_ledger(ledger, ledger.path)
    e = explain.explain_row(led.read_ledger(ledger.path), ids[int(uncovered[0])].as_py())
    text = explain.format_explanation(e)
    assert "decided by the end model" in text and "voice" in text


def test_report_holds_rules_owners_and_gold(repo, tmp_path, gold):
    _, spec_path, data, _, sha2 = repo
    led.label_data(spec_path, data, tmp_path / "l.parquet", "id", gold=gold)
    html = render_report(led.read_ledger(tmp_path / "l.parquet"))
    assert sha2 in html and "Bob Reviewer" in html and "<svg" in html
    assert "rows per label" in html and "accuracy against gold per rule" in html
    assert not re.search(r"(src|href|url)\s*[=(]\s*[\"']?\s*(https?:|//)", html)  # nothing from the network
    assert "<script src" not in html and "<link" not in html and "default-src 'none'" in html
