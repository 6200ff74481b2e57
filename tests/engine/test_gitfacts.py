"""Git facts: blame per rule, clean / dirty / outside git, a spec's folder at a revision."""
from __future__ import annotations

import pytest

from mteach.compiler.checker import load_spec
from mteach.engine import explain, gitfacts, ledger as led, verify
from mteach.errors import DataError


def test_blame_names_the_commit_that_last_changed_each_rule(repo, tmp_path):
    root, spec_path, data, sha1, sha2 = repo
    ledger = led.label_data(spec_path, data, tmp_path / "l.parquet", "id")
    blame = {r["rule"]: r["blame"] for r in ledger.rules}
    assert blame["link"]["commit"] == sha1 and blame["link"]["author"] == "Ada Expert"
    assert blame["buy"]["commit"] == sha2 and blame["buy"]["author"] == "Bob Reviewer"
    assert blame["buy"]["email"] == "bob@example.org" and blame["buy"]["date"][:4].isdigit()
    assert blame["song"]["commit"] == sha1  # moved, not changed
    rules = {r["rule"]: r for r in ledger.rules}
    assert rules["song"]["confidence"] == 0.8 and 0 < rules["song"]["estimated_accuracy"] <= 1
    assert rules["song"]["line"] == 15 and rules["song"]["description"] == "Talking about the song."


def test_git_state_dirty_and_outside_git(repo, tmp_path, kit):
    root, spec_path, data, _, _ = repo
    (root / "specs" / "lexicons" / "own.txt").write_text("my channel\n", encoding="utf-8")  # a lexicon edit
    spec = load_spec(spec_path)
    assert gitfacts.spec_git_facts(spec) == {"state": "dirty", "commit": None, "path_in_repo": "specs/spam.mt"}
    outside = tmp_path / "plain"
    outside.mkdir()
    (outside / "s.mt").write_text(kit.SPEC_V1.replace('define own = lexicon("lexicons/own.txt")\n', "")
                                  .replace("rule own_stuff : text has own => SPAM\n", ""), encoding="utf-8")
    ledger = led.label_data(outside / "s.mt", data, tmp_path / "o.parquet", "id")
    assert ledger.run["git"]["state"] == "unavailable" and ledger.run["git"]["commit"] is None
    assert all(r["blame"] is None for r in ledger.rules)
    text = explain.format_explanation(explain.explain_row(led.read_ledger(tmp_path / "o.parquet"), "r1"))
    assert "git unavailable" in text and "unavailable (blame needs the spec in git)" in text
    with pytest.raises(led.LedgerError, match="outside git"):
        verify.verify_ledger(led.read_ledger(tmp_path / "o.parquet"), data)


def test_spec_at_revision_brings_lexicons_and_rejects_missing_paths(repo):
    root, spec_path, _, sha1, _ = repo
    with gitfacts.spec_at_revision(root, "specs/spam.mt", sha1) as p:
        assert (p.parent / "lexicons" / "own.txt").exists()
        assert "own_stuff" in load_spec(p).rule_names
    with pytest.raises(DataError, match="does not exist at commit"):
        with gitfacts.spec_at_revision(root, "specs/nope.mt", sha1):
            pass
    with pytest.raises(DataError, match="commit 0123456789abcdef does not exist"):
        gitfacts.resolve_commit(root, "0123456789abcdef")
