"""A spec repository's .git/config cannot make mteach run code (issue 9 item 16)."""
from __future__ import annotations

import subprocess

from mteach.compiler.checker import load_spec
from mteach.engine import gitfacts, ledger as led


def _arm(root, tmp_path) -> dict:
    """Config and attributes that run a command (creating a marker file) when git obeys them."""
    markers = {name: tmp_path / f"RAN-{name}" for name in ("fsmonitor", "hook", "clean", "smudge", "process",
                                                           "gpg", "textconv", "pager")}
    config = {"core.fsmonitor": f"touch {markers['fsmonitor']}; echo",
              "filter.evil.clean": f"touch {markers['clean']}; cat",
              "filter.evil.smudge": f"touch {markers['smudge']}; cat",
              "filter.evil.process": f"touch {markers['process']}",
              "log.showSignature": "true", "gpg.program": f"touch {markers['gpg']}; false",
              "diff.evil.textconv": f"touch {markers['textconv']}; cat", "core.pager": f"touch {markers['pager']}"}
    for key, value in config.items():
        subprocess.run(["git", "config", key, value], cwd=root, check=True)
    hooks = root / ".git" / "hooks"
    for hook in ("post-index-change", "post-checkout", "pre-auto-gc"):
        (hooks / hook).write_text(f"#!/bin/sh\ntouch {markers['hook']}\n")
        (hooks / hook).chmod(0o755)
    return markers


def test_a_crafted_git_config_runs_nothing(repo, tmp_path, kit):
    root, spec_path, data, sha1, _ = repo
    (root / ".gitattributes").write_text("* filter=evil diff=evil\n", encoding="utf-8")
    kit.git(root, "add", ".gitattributes")
    kit.git(root, "commit", "-q", "-m", "attributes")
    markers = _arm(root, tmp_path)
    spec_path.touch()  # stat data changed: status looks at the file
    ledger = led.label_data(spec_path, data, tmp_path / "l.parquet", "id")  # status, ls-files, log, blame
    assert ledger.run["git"]["state"] == "clean" and ledger.rules[0]["blame"]["commit"]
    with gitfacts.spec_at_revision(root, "specs/spam.mt", sha1) as p:  # verify, diff
        assert "own_stuff" in load_spec(p).rule_names
    (root / "specs" / "spam.mt").write_text(spec_path.read_text() + "\n# edit\n", encoding="utf-8")
    assert gitfacts.spec_git_facts(load_spec(spec_path))["state"] == "dirty"
    ran = sorted(name for name, path in markers.items() if path.exists())
    assert ran == [], f"git ran the repository's {ran}"


def test_the_marker_would_be_made_by_plain_git(repo, tmp_path):
    """The test above is a real test: the same config makes plain `git status` run fsmonitor."""
    root = repo[0]
    markers = _arm(root, tmp_path)
    subprocess.run(["git", "status", "--porcelain"], cwd=root, capture_output=True)
    assert markers["fsmonitor"].exists()
