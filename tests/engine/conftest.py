"""Fixtures for the provenance modules' tests (ledger, gitfacts, explain, verify, diff):
a temporary git repository with two commits of a spec, its data and gold labels."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

from types import SimpleNamespace

import pytest

from mteach.engine.gold import GoldRequest

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


@pytest.fixture
def gold(tmp_path) -> GoldRequest:
    """The GOLD labels as a gold file (id,label), as `--gold FILE` gives them."""
    path = tmp_path / "gold.csv"
    path.write_text("id,label\n" + "".join(f"{i},{lab}\n" for i, lab in GOLD.items()), encoding="utf-8")
    return GoldRequest(file=str(path))


@pytest.fixture
def kit():
    """The helpers and texts behind ``repo``, for tests that move the repository on."""
    return SimpleNamespace(git=git, write_csv=write_csv, ROWS=ROWS, SPEC_V1=SPEC_V1)
