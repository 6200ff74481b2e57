"""verify: re-running the recorded spec version and listing what differs."""
from __future__ import annotations

import pytest

from mteach.engine import ledger as led, verify
from mteach.errors import DataError


def test_verify_reproduces_from_git_and_lists_differences(repo, tmp_path, gold, kit):
    root, spec_path, data, sha1, sha2 = repo
    out = tmp_path / "l.parquet"
    led.label_data(spec_path, data, out, "id", gold=gold)
    # the working copy moves on; verify still reads the recorded commit
    spec_path.write_text(kit.SPEC_V1, encoding="utf-8")
    kit.git(root, "commit", "-q", "-a", "-m", "back to v1")
    result = verify.verify_ledger(led.read_ledger(out), data, repo=root)
    assert result.identical, result
    assert result.n_vote_differences == 0 and "commit" in result.notes[0]
    changed = tmp_path / "changed.csv"
    kit.write_csv(changed, [(i, "hello there" if i == "r6" else t) for i, t in kit.ROWS])
    result = verify.verify_ledger(led.read_ledger(out), changed, repo=root)
    assert not result.identical and not result.data_ok
    assert {"id": "r6", "rule": "buy", "recorded": "SPAM", "now": "abstain"} in result.vote_differences
    assert any(d["id"] == "r6" for d in result.label_differences)


def test_verify_missing_commit_is_a_clear_error(repo, tmp_path, kit):
    root, spec_path, data, _, _ = repo
    out = tmp_path / "l.parquet"
    led.label_data(spec_path, data, out, "id")
    other = tmp_path / "other"
    other.mkdir()
    kit.git(other, "init", "-q")
    with pytest.raises(DataError, match="does not exist in the git repository"):
        verify.verify_ledger(led.read_ledger(out), data, repo=other)
