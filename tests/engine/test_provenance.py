"""The label ledger: schema, exact decomposition, determinism, tamper check, git facts,
blame, verify and diff — on a temporary git repository with two commits of a spec."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from mteach.compiler.checker import load_spec
from mteach.engine import provenance as prov
from mteach.engine.gold import GoldRequest
from mteach.engine.io import open_data
from mteach.engine.votes import collect_votes
from mteach.engine.report import render_report
from mteach.errors import DataError

ENV = {"GIT_AUTHOR_NAME": "Ada Expert", "GIT_AUTHOR_EMAIL": "ada@example.org",
       "GIT_COMMITTER_NAME": "Ada Expert", "GIT_COMMITTER_EMAIL": "ada@example.org",
       "GIT_CONFIG_NOSYSTEM": "1"}

SPEC_V1 = '''concept spam "spam comments"
labels SPAM, HAM
field text = "text"
define own = lexicon("lexicons/own.txt")

# Links point away from the video.
rule link : text ~ /https?:/ => SPAM confidence 0.9
# Selling things.
rule buy : text has any("buy", "free") => SPAM confidence 0.9
# Talking about the song.
rule song : text has "song" => HAM confidence 0.8
rule own_stuff : text has own => SPAM
'''

# v2: `buy` changed (adds "cheap"), `song` moved down two lines only, `own_stuff` removed,
# `short` added.
SPAM_V2 = '''concept spam "spam comments"
labels SPAM, HAM
field text = "text"
define own = lexicon("lexicons/own.txt")

# Links point away from the video.
rule link : text ~ /https?:/ => SPAM confidence 0.9
# Selling things, cheap ones too.
rule buy : text has any("buy", "free", "cheap") => SPAM confidence 0.9
# Short comments are reactions.
rule short : words(text) <= 2 => HAM confidence 0.7


# Talking about the song.
rule song : text has "song" => HAM confidence 0.8
'''

ROWS = [
    ("r1", "buy cheap pills now http://x.co"), ("r2", "I love this song"), ("r3", "check out my channel"),
    ("r4", "great song buy it"), ("r5", "hello"), ("r6", "free money free money"), ("r7", "cheap watches for sale today"),
    ("r8", "nice song"), ("r9", "subscribe to my channel"), ("r10", "lol"), ("r11", "this song is great"),
    ("r12", "cheap cheap cheap deals today"), ("r13", "what a voice"), ("r14", "http://spam.example"),
    ("r15", "good song"), ("r16", "cool song"), ("r17", "song rocks"), ("r18", "free stuff at http://a.example"),
    ("r19", "buy followers http://b.example"),
]
GOLD = {"r1": "SPAM", "r2": "HAM", "r3": "SPAM", "r5": "HAM", "r7": "SPAM", "r8": "HAM"}


def git(cwd, *args) -> str:
    return subprocess.run(["git", "-c", "user.name=Ada Expert", "-c", "user.email=ada@example.org",
                           "-c", "commit.gpgsign=false", *args], cwd=cwd, check=True, capture_output=True,
                          text=True, env={**os.environ, **ENV}).stdout.strip()


def write_csv(path: Path, rows=ROWS):
    lines = ["id,text"] + [f'{i},"{t}"' for i, t in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.fixture
def repo(tmp_path, monkeypatch):
    """A git repo with specs/spam.mt at two commits; returns (root, spec, data, sha1, sha2)."""
    for k, v in ENV.items():
        monkeypatch.setenv(k, v)
    root = tmp_path / "repo"
    (root / "specs" / "lexicons").mkdir(parents=True)
    git(root, "init", "-q")
    spec = root / "specs" / "spam.mt"
    (root / "specs" / "lexicons" / "own.txt").write_text("my channel\nmy video\n", encoding="utf-8")
    spec.write_text(SPEC_V1, encoding="utf-8")
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "first spec")
    sha1 = git(root, "rev-parse", "HEAD")
    spec.write_text(SPAM_V2, encoding="utf-8")
    git(root, "-c", "user.name=Bob Reviewer", "-c", "user.email=bob@example.org", "commit", "-q", "-a",
        "--author=Bob Reviewer <bob@example.org>", "-m", "buy catches cheap; add short; drop own_stuff")
    sha2 = git(root, "rev-parse", "HEAD")
    data = tmp_path / "data.csv"
    write_csv(data)
    return root, spec, data, sha1, sha2


def gold_of(tmp_path) -> GoldRequest:
    """The GOLD labels as a gold file (id,label), as `--gold FILE` gives them."""
    path = tmp_path / "gold.csv"
    path.write_text("id,label\n" + "".join(f"{i},{lab}\n" for i, lab in GOLD.items()), encoding="utf-8")
    return GoldRequest(file=str(path))


def test_ledger_columns_votes_and_exact_decomposition(repo, tmp_path):
    root, spec_path, data, _, sha2 = repo
    out = tmp_path / "ledger.parquet"
    ledger = prov.label_data(spec_path, data, out, "id", gold=gold_of(tmp_path))
    t = pq.read_table(out)
    assert t.column_names == ["id", "label", "probability", "decided_by", "votes", "contributions", "gold"]
    rows = {r["id"]: r for r in t.to_pylist()}
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


def test_ledger_is_byte_identical_across_runs_and_threads(repo, tmp_path):
    _, spec_path, data, _, _ = repo
    outs = []
    for i, threads in enumerate((1, 4, 2)):
        out = tmp_path / f"l{i}.parquet"
        prov.label_data(spec_path, data, out, "id", seed=3, threads=threads, batch_rows=3 + i)
        outs.append(out.read_bytes())
    assert outs[0] == outs[1] == outs[2]
    # a commit that does not touch the spec's files leaves the ledger as it was
    root = spec_path.parents[1]
    (root / "README").write_text("unrelated\n", encoding="utf-8")
    git(root, "add", "README")
    git(root, "commit", "-q", "-m", "unrelated")
    prov.label_data(spec_path, data, tmp_path / "after.parquet", "id", seed=3, threads=2, batch_rows=5)
    assert (tmp_path / "after.parquet").read_bytes() == outs[0]
    other = tmp_path / "seed.parquet"
    prov.label_data(spec_path, data, other, "id", seed=4)
    assert b'"seed":4' in other.read_bytes()


def test_tampered_ledger_is_reported(repo, tmp_path):
    _, spec_path, data, _, _ = repo
    out = tmp_path / "ledger.parquet"
    prov.label_data(spec_path, data, out, "id")
    prov.read_ledger(out)  # intact
    t = pq.read_table(out)
    labels = t.column("label").to_pylist()
    labels[1] = "SPAM" if labels[1] == "HAM" else "HAM"
    forged = t.set_column(1, "label", pa.array(labels, pa.string())).replace_schema_metadata(t.schema.metadata)
    pq.write_table(forged, out)
    with pytest.raises(prov.LedgerError, match="modified after it was written"):
        prov.read_ledger(out)
    # editing a recorded fact is caught too
    meta = dict(t.schema.metadata)
    meta[b"mteach.rules"] = meta[b"mteach.rules"].replace(b"Ada Expert", b"Eve Forger")
    pq.write_table(t.replace_schema_metadata(meta), out)
    with pytest.raises(prov.LedgerError, match="modified"):
        prov.read_ledger(out)


def test_blame_names_the_commit_that_last_changed_each_rule(repo, tmp_path):
    root, spec_path, data, sha1, sha2 = repo
    ledger = prov.label_data(spec_path, data, tmp_path / "l.parquet", "id")
    blame = {r["rule"]: r["blame"] for r in ledger.rules}
    assert blame["link"]["commit"] == sha1 and blame["link"]["author"] == "Ada Expert"
    assert blame["buy"]["commit"] == sha2 and blame["buy"]["author"] == "Bob Reviewer"
    assert blame["buy"]["email"] == "bob@example.org" and blame["buy"]["date"][:4].isdigit()
    assert blame["song"]["commit"] == sha1  # moved, not changed
    rules = {r["rule"]: r for r in ledger.rules}
    assert rules["song"]["confidence"] == 0.8 and 0 < rules["song"]["estimated_accuracy"] <= 1
    assert rules["song"]["line"] == 15 and rules["song"]["description"] == "Talking about the song."


def test_git_state_dirty_and_outside_git(repo, tmp_path):
    root, spec_path, data, _, _ = repo
    (root / "specs" / "lexicons" / "own.txt").write_text("my channel\n", encoding="utf-8")  # a lexicon edit
    spec = load_spec(spec_path)
    assert prov.spec_git_facts(spec) == {"state": "dirty", "commit": None, "path_in_repo": "specs/spam.mt"}
    outside = tmp_path / "plain"
    outside.mkdir()
    (outside / "s.mt").write_text(SPEC_V1.replace('define own = lexicon("lexicons/own.txt")\n', "")
                                  .replace("rule own_stuff : text has own => SPAM\n", ""), encoding="utf-8")
    ledger = prov.label_data(outside / "s.mt", data, tmp_path / "o.parquet", "id")
    assert ledger.run["git"]["state"] == "unavailable" and ledger.run["git"]["commit"] is None
    assert all(r["blame"] is None for r in ledger.rules)
    text = prov.format_explanation(prov.explain_row(prov.read_ledger(tmp_path / "o.parquet"), "r1"))
    assert "git unavailable" in text and "unavailable (blame needs the spec in git)" in text
    with pytest.raises(prov.LedgerError, match="outside git"):
        prov.verify_ledger(prov.read_ledger(tmp_path / "o.parquet"), data)


def test_end_model_decides_uncovered_rows(repo, tmp_path):
    _, spec_path, data, _, _ = repo
    spec = load_spec(spec_path, open_data(data).schema)
    batch = collect_votes(spec, open_data(data), "id")
    ids, votes = batch.ids, batch.votes
    uncovered = np.flatnonzero(~(votes != -1).any(axis=1))
    assert len(uncovered) > 0
    feats = [[{"feature": "voice", "weight": -1.5}]] * len(uncovered)
    ledger = prov.build_ledger(spec, ids, votes,
                               model_output=prov.ModelOutput(np.tile([0.2, 0.8], (len(ids), 1)), features=feats))
    t = ledger.table
    decided = np.array(t.column("decided_by").to_pylist())
    assert set(decided[uncovered]) == {"end_model"} and "none" not in decided
    assert t.column("label").to_pylist()[uncovered[0]] == "HAM"
    feats = t.column("end_model_features").to_pylist()
    assert feats[uncovered[0]] == [{"feature": "voice", "weight": -1.5}] and feats[0] == []
    ledger.path = tmp_path / "e.parquet"
    prov.write_ledger(ledger, ledger.path)
    e = prov.explain_row(prov.read_ledger(ledger.path), ids[int(uncovered[0])].as_py())
    text = prov.format_explanation(e)
    assert "decided by the end model" in text and "voice" in text


def test_verify_reproduces_from_git_and_lists_differences(repo, tmp_path):
    root, spec_path, data, sha1, sha2 = repo
    out = tmp_path / "l.parquet"
    prov.label_data(spec_path, data, out, "id", gold=gold_of(tmp_path))
    # the working copy moves on; verify still reads the recorded commit
    spec_path.write_text(SPEC_V1, encoding="utf-8")
    git(root, "commit", "-q", "-a", "-m", "back to v1")
    result = prov.verify_ledger(prov.read_ledger(out), data, repo=root)
    assert result.identical, result
    assert result.n_vote_differences == 0 and "commit" in result.notes[0]
    changed = tmp_path / "changed.csv"
    write_csv(changed, [(i, "hello there" if i == "r6" else t) for i, t in ROWS])
    result = prov.verify_ledger(prov.read_ledger(out), changed, repo=root)
    assert not result.identical and not result.data_ok
    assert {"id": "r6", "rule": "buy", "recorded": "SPAM", "now": "abstain"} in result.vote_differences
    assert any(d["id"] == "r6" for d in result.label_differences)


def test_verify_missing_commit_is_a_clear_error(repo, tmp_path):
    root, spec_path, data, _, _ = repo
    out = tmp_path / "l.parquet"
    prov.label_data(spec_path, data, out, "id")
    other = tmp_path / "other"
    other.mkdir()
    git(other, "init", "-q")
    with pytest.raises(DataError, match="does not exist in the git repository"):
        prov.verify_ledger(prov.read_ledger(out), data, repo=other)


def test_diff_by_content_and_flips_by_rule_change(repo):
    root, spec_path, data, sha1, sha2 = repo
    d = prov.diff_revisions(spec_path, sha1, sha2, data, "id")
    assert [r["rule"] for r in d["added"]] == ["short"]
    assert [r["rule"] for r in d["removed"]] == ["own_stuff"]
    assert [c["rule"] for c in d["changed"]] == ["buy"]  # `song` moved two lines: not changed
    by = {c["rule"]: c for c in d["by_rule_change"]}
    # buy now also catches "cheap" (r7, r12); short votes on r5 r8 r10 r14 r15 r16 r17; own_stuff voted on r3, r9
    assert by["buy"]["rows_voting_differently"] == 2 and by["own_stuff"]["rows_voting_differently"] == 2
    assert by["short"]["rows_voting_differently"] == 7
    d = prov.diff_revisions(spec_path, sha1, sha2, data, "id", sample=100)
    flipped = {s["id"]: s for s in d["sample"]}
    assert len(flipped) == d["flipped"] == sum(d["transitions"].values())
    # rows that gain or lose coverage flip for structural reasons, whatever the label model says
    assert flipped["r7"]["from"] is None and flipped["r7"]["to"] == "SPAM" and flipped["r7"]["rules"] == ["buy"]
    assert flipped["r3"]["to"] is None and flipped["r3"]["rules"] == ["own_stuff"]
    assert flipped["r5"]["from"] is None and flipped["r5"]["rules"] == ["short"] and flipped["r5"]["text"] == "hello"
    assert "r13" not in flipped  # no rule votes on it in either version
    # every flip is attributed: to a rule change that votes differently on it, or to re-weighting
    per_rule = sum(c["flipped_rows"] for c in d["by_rule_change"])
    reweighted = [s for s in d["sample"] if s["rules"] == ["(label model re-weighting)"]]
    assert d["label_model_reweighting"] == len(reweighted)
    assert per_rule + len(reweighted) >= d["flipped"]
    same = prov.diff_revisions(spec_path, sha2, "HEAD", data, "id")
    assert same["flipped"] == 0 and not (same["added"] or same["removed"] or same["changed"])


def test_spec_at_revision_brings_lexicons_and_rejects_missing_paths(repo):
    root, spec_path, _, sha1, _ = repo
    with prov.spec_at_revision(root, "specs/spam.mt", sha1) as p:
        assert (p.parent / "lexicons" / "own.txt").exists()
        assert "own_stuff" in load_spec(p).rule_names
    with pytest.raises(DataError, match="does not exist at commit"):
        with prov.spec_at_revision(root, "specs/nope.mt", sha1):
            pass
    with pytest.raises(DataError, match="commit 0123456789abcdef does not exist"):
        prov.resolve_commit(root, "0123456789abcdef")


def test_find_row_suggests_near_ids(repo, tmp_path):
    _, spec_path, data, _, _ = repo
    prov.label_data(spec_path, data, tmp_path / "l.parquet", "id")
    ledger = prov.read_ledger(tmp_path / "l.parquet")
    with pytest.raises(prov.LedgerError, match="did you mean r12"):
        prov.find_row(ledger, "r122")


def test_report_holds_rules_owners_and_gold(repo, tmp_path):
    _, spec_path, data, _, sha2 = repo
    prov.label_data(spec_path, data, tmp_path / "l.parquet", "id", gold=gold_of(tmp_path))
    html = render_report(prov.read_ledger(tmp_path / "l.parquet"))
    assert sha2 in html and "Bob Reviewer" in html and "<svg" in html
    assert "rows per label" in html and "accuracy against gold per rule" in html
    assert "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "<script" not in html and "<link" not in html
