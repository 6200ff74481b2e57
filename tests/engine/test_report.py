"""The audit page: every ledger field escaped (a forged ledger renders inert), the row
browser's embedded sample and its count line, blame that follows defines, the end model's part."""
from __future__ import annotations

import json
import re

import numpy as np
import pyarrow as pa
import pytest

from mteach.compiler.checker import load_spec
from mteach.engine import ledger as led
from mteach.engine.explain import explain_row, format_explanation
from mteach.engine.io import open_data
from mteach.engine.report import WEAK, render_report, sample_rows
from mteach.engine.verify import verify_ledger
from mteach.engine.votes import collect_votes

EVIL = "<script>alert('{}')</script>"


def embedded(html: str) -> dict:
    """The row browser's data block, parsed as the page's script parses it."""
    block = re.search(r'<script type="application/json" id="mteach-rows">(.*?)</script>', html, re.S)
    return json.loads(block.group(1))


def test_a_forged_ledger_renders_inert(repo, tmp_path):
    """Rule line, rule name, row id and row text carrying markup come out as text: the page
    keeps exactly its own two script elements (the data block and the browser)."""
    _, spec_path, data, _, _ = repo
    led.label_data(spec_path, data, tmp_path / "l.parquet", "id")
    ledger = led.read_ledger(tmp_path / "l.parquet")
    evil_rule = EVIL.format("rule")
    rename = {"link": evil_rule}
    rows = ledger.table.to_pylist()
    for r in rows:
        for item in r["votes"] + r["contributions"]:
            item["rule"] = rename.get(item["rule"], item["rule"])
    rows[0]["id"] = EVIL.format("id")
    rows[1]["fields"]["text"] = "</script>" + EVIL.format("text")
    ledger.table = pa.Table.from_pylist(rows, schema=ledger.table.schema)
    for r in ledger.rules:
        r["rule"] = rename.get(r["rule"], r["rule"])
    ledger.rules[1]["line"] = EVIL.format("line")
    ledger.model["rules"] = [rename.get(n, n) for n in ledger.model["rules"]]
    # a forger can recompute the unkeyed hash: the file reads back as self-consistent
    led.write_ledger(ledger, tmp_path / "forged.parquet")
    html = render_report(led.read_ledger(tmp_path / "forged.parquet"))

    assert len(re.findall(r"<script\b", html, re.I)) == 2 and len(re.findall(r"</script", html, re.I)) == 2
    assert "<script>alert" not in html and "</script><script>" not in html
    assert "&lt;script&gt;alert(&#39;rule&#39;)" in html and "&lt;script&gt;alert(&#39;line&#39;)" in html
    data = embedded(html)
    assert {r["id"] for r in data["rows"]} >= {EVIL.format("id")}
    assert any(r["fields"].get("text") == "</script>" + EVIL.format("text") for r in data["rows"])
    assert data["rules"][0]["name"] == evil_rule and data["rules"][1]["where"].endswith(EVIL.format("line"))
    # the page says what the hash proves, and what proves the labels came from the spec and data
    assert "self-consistent" in html and "anyone can do" in html and "mteach verify" in html


def test_verify_catches_a_forged_row_text(repo, tmp_path):
    """The hash cannot tell a rewritten text from the real one; verify, re-reading the data, can."""
    _, spec_path, data, _, _ = repo
    led.label_data(spec_path, data, tmp_path / "l.parquet", "id")
    ledger = led.read_ledger(tmp_path / "l.parquet")
    assert verify_ledger(ledger, data).identical
    rows = ledger.table.to_pylist()
    rows[4]["fields"]["text"] = "a harmless greeting"
    ledger.table = pa.Table.from_pylist(rows, schema=ledger.table.schema)
    led.write_ledger(ledger, tmp_path / "forged.parquet")
    result = verify_ledger(led.read_ledger(tmp_path / "forged.parquet"), data)
    assert not result.identical and any("field values" in n for n in result.notes)


def test_the_row_browser_embeds_every_label_and_rule_and_says_how_many(repo, tmp_path):
    _, spec_path, data, _, _ = repo
    led.label_data(spec_path, data, tmp_path / "l.parquet", "id")
    ledger = led.read_ledger(tmp_path / "l.parquet")
    html = render_report(ledger, max_rows=7)
    d = embedded(html)
    n = len(d["rows"])
    assert n < ledger.table.num_rows
    assert f"This page embeds <b id=\"embedded\">{n} of the ledger's {ledger.table.num_rows} rows</b>" in html
    assert "mteach explain ledger.parquet --id ROW_ID" in html
    assert {r["label"] for r in d["rows"]} == {"SPAM", "HAM", None}  # every label, and a row with none
    assert {v["rule"] for r in d["rows"] for v in r["votes"]} == set(range(len(ledger.rules)))
    assert any(r["conflict"] for r in d["rows"])
    # each row: its text, label, probability, the rules that voted with file:line, words before numbers
    full = embedded(render_report(ledger))
    assert len(full["rows"]) == ledger.table.num_rows
    r1 = next(r for r in full["rows"] if r["id"] == "r1")
    assert r1["fields"] == {"text": "buy cheap pills now http://x.co"} and r1["label"] == "SPAM"
    assert r1["verdict"].startswith("row r1: SPAM with probability ") and 0.5 < r1["p"] <= 1
    rules = [full["rules"][v["rule"]] for v in r1["votes"]]
    assert [r["name"] for r in rules] == ["link", "buy"] and rules[0]["where"] == "spam.mt:7"
    assert "rule link : text ~ /https?:/ => SPAM" in rules[0]["source"]
    assert r1["votes"][0]["words"].startswith("votes SPAM, ") and "toward SPAM" in r1["votes"][0]["words"]
    e = explain_row(ledger, "r1")
    assert r1["votes"][0]["c"] == pytest.approx(e["votes"][0]["contribution"])


def test_the_sample_covers_every_stratum_of_a_large_ledger():
    n, k, m = 300_000, 3, 6
    rng = np.random.default_rng(1)
    votes = np.full((n, m), -1, dtype=np.int8)
    votes[:, :5] = np.where(rng.random((n, 5)) < 0.3, rng.integers(0, 2, (n, 5)), -1)
    votes[[7, 70_000, 299_999], 5] = 2          # a rare rule, voting for a rare label
    label = np.where((votes != -1).any(axis=1), 0, -1)
    label[[7, 70_000, 299_999]] = 2
    decided = np.where(label >= 0, "rules", "none").astype(object)
    decided[[11, 12]] = "end_model"
    label[[11, 12]] = 1
    probability = np.where(label >= 0, 0.9, np.nan)
    probability[123_456] = 0.55
    chosen = sample_rows(votes, label, decided, probability, k, max_rows=500)
    assert len(chosen) <= 500 and np.all(np.diff(chosen) > 0)
    assert np.array_equal(chosen, sample_rows(votes, label, decided, probability, k, max_rows=500))
    assert set(label[chosen]) == {-1, 0, 1, 2}
    assert all((votes[chosen, j] != -1).any() for j in range(m))
    assert (decided[chosen] == "end_model").any() and 123_456 in chosen
    conflict = ((votes[chosen] != -1) & (votes[chosen] != votes[chosen].max(axis=1, keepdims=True))).any(axis=1)
    assert conflict.any()


DEFINE_V1 = '''concept spam "spam comments"
labels SPAM, HAM
field text = "text"
define offers = any("buy", "free")
define pushy = text has offers or text ~ /!!+/

rule buy : pushy => SPAM
rule song : text has "song" => HAM
'''


def test_blame_follows_the_defines_a_rule_reads(tmp_path, kit, monkeypatch):
    for key, value in {"GIT_AUTHOR_NAME": "Ada Expert", "GIT_AUTHOR_EMAIL": "ada@example.org",
                       "GIT_CONFIG_NOSYSTEM": "1"}.items():
        monkeypatch.setenv(key, value)
    root = tmp_path / "repo"
    root.mkdir()
    kit.git(root, "init", "-q")
    spec_path = root / "spam.mt"
    spec_path.write_text(DEFINE_V1, encoding="utf-8")
    kit.git(root, "add", ".")
    monkeypatch.setenv("GIT_AUTHOR_DATE", "2026-01-05T10:00:00+00:00")
    kit.git(root, "commit", "-q", "-m", "first")
    ada = kit.git(root, "rev-parse", "HEAD")
    spec_path.write_text(DEFINE_V1.replace('any("buy", "free")', 'any("buy", "free", "cheap")'), encoding="utf-8")
    monkeypatch.setenv("GIT_AUTHOR_DATE", "2026-02-07T10:00:00+00:00")
    kit.git(root, "-c", "user.name=Bob Reviewer", "-c", "user.email=bob@example.org", "commit", "-q", "-a",
            "--author=Bob Reviewer <bob@example.org>", "-m", "offers catches cheap")
    bob = kit.git(root, "rev-parse", "HEAD")
    data = tmp_path / "data.csv"
    kit.write_csv(data)
    monkeypatch.chdir(tmp_path)  # the spec named by a relative path, as on a command line
    led.label_data("repo/spam.mt", data, tmp_path / "l.parquet", "id")
    ledger = led.read_ledger(tmp_path / "l.parquet")
    buy, song = ledger.rules
    assert buy["blame"]["commit"] == ada  # the rule's own line is Ada's ...
    # ... but it reads pushy (Ada's) which reads offers (Bob's): both answer for it
    assert [(d["define"], d["line"], d["blame"]["commit"]) for d in buy["defines"]] == [("pushy", 5, ada),
                                                                                       ("offers", 4, bob)]
    assert buy["defines"][1]["blame"]["author"] == "Bob Reviewer" and 'any("buy", "free", "cheap")' in \
        buy["defines"][1]["source"]
    assert song["defines"] == []
    row = next(r["id"] for r in ledger.table.to_pylist() if [v["rule"] for v in r["votes"]] == ["buy"])
    text = format_explanation(explain_row(ledger, row))
    assert re.search(r"uses define offers \(\S*spam.mt:4\), last changed in commit " + bob[:10] + " by Bob Reviewer",
                     text)
    html = render_report(ledger)
    rules_part = html.split('id="rules"')[1].split('id="conflicts"')[0]
    # the rule's own line is Ada's; through its defines, the latest change is Bob's
    assert re.search(r"Ada Expert &lt;ada@example.org&gt;<br><code>" + ada[:10] + r"</code> 2026-01-05<br>"
                     r'<span class="muted">through its defines:</span> Bob Reviewer &lt;bob@example.org&gt;<br><code>'
                     + bob[:10] + "</code> 2026-02-07", rules_part)
    assert "spam.mt:4; last changed in commit " + bob[:10] + " by Bob Reviewer" in rules_part


def test_the_end_models_part(repo, tmp_path):
    _, spec_path, data, _, _ = repo
    spec = load_spec(spec_path, open_data(data).schema)
    batch = collect_votes(spec, open_data(data), "id")
    n = len(batch.ids)
    uncovered = np.flatnonzero(~(batch.votes != -1).any(axis=1))
    proba = np.tile([0.2, 0.8], (n, 1))
    proba[uncovered[0]] = [0.45, 0.55]          # one weak decision
    provenance = {"sha256": "ab" * 32, "training_data": {"path": "train.csv", "sha256": "cd" * 32}, "rows": 1234,
                  "held_out": {"accuracy": 0.876, "f1": 0.8, "rows": 321, "on": "gold rows, out of fold"},
                  "calibration": {"temperature": 1.5, "fitted_on": "out-of-fold predictions on gold rows"}}
    ledger = led.build_ledger(spec, batch.ids, batch.votes, model_output=led.ModelOutput(proba, blend=0.5),
                              run_facts={"model": {"spec_hash": spec.content_hash, "blend": 0.5, **provenance}},
                              fields=led.row_fields(spec, batch.table))
    html = render_report(ledger)
    part = html.split('id="end-model"')[1].split('id="label-model"')[0]
    assert f"The end model labelled <b>{len(uncovered)}</b> rows" in part
    assert "<b>1</b> of its decisions are weak (probability under 0.6)" in part and WEAK == 0.6
    weak_id = batch.ids[int(uncovered[0])].as_py()
    assert f"<code>{weak_id}</code>" in part and "0.550" in part
    assert "ab" * 32 in part and "cd" * 32 in part and "1,234 rows" in part
    assert "0.876 (F1 0.800) on 321 gold rows, out of fold" in part
    assert "calibrated: temperature 1.500, fitted on out-of-fold predictions on gold rows" in part
    # no gold anywhere: the page says the rules' probabilities are not calibrated
    assert "not calibrated</span>: no gold labels were given" in html.split('id="browser"')[0]
    # on covered rows its log-odds are blended in: a share per label, between 0 and 1
    shares = re.findall(r'<td class="n">([\d.]+)%</td></tr>', part.split("end model's share")[1])
    assert shares and all(0 < float(s) < 100 for s in shares)
    em = np.abs(ledger.table.column("end_model_contribution").to_numpy(zero_copy_only=False))
    assert np.nanmax(em) > 0
    # without a model: the page says every label came from the rules
    plain = render_report(led.build_ledger(spec, batch.ids, batch.votes))
    assert "made without an end model" in plain.split('id="end-model"')[1]
