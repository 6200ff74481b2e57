"""Git plumbing for provenance: a spec's commit and state, blame per rule, a spec's folder
at a revision. Outside git every fact is "unavailable", never an error, except where a
verb needs history (verify, diff), which says so."""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Optional

from ..compiler.spec import Spec
from ..errors import DataError

UNAVAILABLE = "unavailable"


# A spec's repository may be someone else's: its .git/config must not make us run anything.
# Only read commands are used, with hooks, fsmonitor, the pager, signatures and the system
# config off (your own ~/.gitconfig is read), and every filter driver emptied (``_git``).
SAFE_CONFIG = ("core.fsmonitor=false", "core.hooksPath=/dev/null", "core.pager=cat", "log.showSignature=false",
               "core.untrackedCache=false", "diff.external=", "protocol.allow=never")
SAFE_ENV = {"GIT_CONFIG_NOSYSTEM": "1", "GIT_TERMINAL_PROMPT": "0",
            "GIT_PAGER": "cat", "PAGER": "cat", "GIT_OPTIONAL_LOCKS": "0", "GIT_NO_REPLACE_OBJECTS": "1",
            "LC_ALL": "C"}
_FILTER_KEY = re.compile(r"^filter\.(.+)\.(clean|smudge|process)$", re.S)


def _run(argv, cwd, text=True, input=None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")} | SAFE_ENV
    try:
        return subprocess.run(argv, cwd=cwd, capture_output=True, text=text, env=env, input=input)
    except FileNotFoundError:
        raise DataError("git is not installed; provenance needs it for commits and blame") from None


def _neutralised_filters(cwd) -> list:
    """``-c filter.X.clean=`` (and smudge, process) for every filter driver the repository's
    config defines: an empty command is no filter, so none of them runs."""
    r = _run(["git", "--no-pager", *_config_args(SAFE_CONFIG), "config", "--null", "--get-regexp", r"^filter\."],
             cwd)
    keys = [entry.split("\n", 1)[0] for entry in r.stdout.split("\0") if entry] if r.returncode == 0 else []
    return [f"{key}=" for key in keys if _FILTER_KEY.match(key)]


def _config_args(pairs) -> list:
    return [arg for pair in pairs for arg in ("-c", pair)]


def _git(args, cwd, check=True, text=True, input=None) -> subprocess.CompletedProcess:
    """Run a read-only git command in a repository that may not be ours (``SAFE_CONFIG``)."""
    config = _config_args(SAFE_CONFIG + tuple(_neutralised_filters(cwd)))
    result = _run(["git", "--no-pager", *config, *args], cwd, text=text, input=input)
    if check and result.returncode != 0:
        err = result.stderr if text else result.stderr.decode("utf-8", "replace")
        raise DataError(f"git {' '.join(args)} failed: {err.strip()}")
    return result


def repo_root(path) -> Optional[Path]:
    """The git work tree holding ``path`` (a file or folder), or None outside git."""
    folder = Path(path) if Path(path).is_dir() else Path(path).parent
    try:
        r = _git(["rev-parse", "--show-toplevel"], folder or Path("."), check=False)
    except DataError:
        return None
    return Path(r.stdout.strip()) if r.returncode == 0 else None


def spec_git_facts(spec: Spec) -> dict:
    """Where the spec stands in git: commit (when committed and clean), state, repo path.

    state is "clean" (every file the spec reads is committed as it is; commit is the last
    commit that changed one of them), "dirty" (uncommitted or untracked changes; no commit
    recorded), or "unavailable" (not in git).
    """
    root = repo_root(spec.root)
    if root is None:
        return {"state": UNAVAILABLE, "commit": None, "path_in_repo": None}
    cwd = spec.root
    head = _git(["rev-parse", "--verify", "-q", "HEAD"], cwd, check=False).stdout.strip() or None
    prefix = _git(["rev-parse", "--show-prefix"], cwd).stdout.strip()
    files = list(spec.files)
    status = _git(["status", "--porcelain", "--untracked-files=all", "--ignore-submodules=all", "--", *files],
                  cwd).stdout.strip()
    tracked = _git(["ls-files", "--", *files], cwd).stdout.split("\n")
    committed = head is not None and len([t for t in tracked if t]) == len(files)
    clean = committed and not status
    commit = None
    if clean:
        # the last commit that changed any file the spec reads: unrelated commits do not change it
        commit = _git(["log", "-1", "--format=%H", "HEAD", "--", *files], cwd).stdout.strip() or head
    return {"state": "clean" if clean else "dirty", "commit": commit, "path_in_repo": prefix + spec.path.name}


def blame_lines(path: Path, ranges: list) -> list:
    """Per (first, last) line range of ``path``: the commit, author, email and date that last
    changed a line in it (the most recent one), from one ``git blame --porcelain`` call.

    Lines not committed yet come back with commit "uncommitted". Outside git: None per range.
    """
    if not ranges or repo_root(path) is None:
        return [None] * len(ranges)
    args = ["blame", "--porcelain", "--no-textconv"]
    for a, b in ranges:
        args += ["-L", f"{a},{b}"]
    r = _git(args + ["--", path.name], path.parent, check=False)
    if r.returncode != 0:  # untracked file
        return [None] * len(ranges)
    commits, line_commit = {}, {}
    current = None
    for line in r.stdout.split("\n"):
        if line.startswith("\t"):
            continue
        parts = line.split(" ")
        if len(parts) >= 3 and len(parts[0]) == 40 and all(c in "0123456789abcdef" for c in parts[0]):
            current = commits.setdefault(parts[0], {"commit": parts[0]})
            line_commit[int(parts[2])] = parts[0]
        elif current is not None and parts[0] in ("author", "author-mail", "author-time", "author-tz"):
            current[parts[0]] = line.split(" ", 1)[1] if " " in line else ""
    out = []
    for a, b in ranges:
        infos = [commits[line_commit[i]] for i in range(a, b + 1) if i in line_commit]
        if not infos:
            out.append(None)
            continue
        latest = max(infos, key=lambda c: int(c.get("author-time", 0)))
        sha = latest["commit"]
        if set(sha) == {"0"}:
            out.append({"commit": "uncommitted", "author": "not committed yet", "email": "", "date": ""})
            continue
        out.append({"commit": sha, "author": latest.get("author", ""),
                    "email": latest.get("author-mail", "").strip("<>"),
                    "date": _iso_date(latest.get("author-time"), latest.get("author-tz"))})
    return out


def blame_spans(spans: list) -> list:
    """``blame_lines`` for (file, first, last) spans of any files (a rule's lines, and the lines
    of the defines it reads, which may sit in a used file; a file as the spec's spans name it),
    one ``git blame`` per file; a result per span, in order."""
    by_file: dict = {}
    for i, (file, a, b) in enumerate(spans):
        by_file.setdefault(file, []).append((i, (a, b)))
    out = [None] * len(spans)
    for file, items in by_file.items():
        for (i, _), blame in zip(items, blame_lines(Path(file), [r for _, r in items])):
            out[i] = blame
    return out


def _iso_date(epoch, tz) -> str:
    import datetime as dt
    if not epoch:
        return ""
    offset = 0
    if tz and len(tz) == 5:
        offset = (1 if tz[0] == "+" else -1) * (int(tz[1:3]) * 60 + int(tz[3:5]))
    zone = dt.timezone(dt.timedelta(minutes=offset))
    return dt.datetime.fromtimestamp(int(epoch), zone).isoformat()


def resolve_commit(repo: Path, rev: str) -> str:
    """The full sha of ``rev`` in ``repo``; a clear error when it does not exist (any more)."""
    r = _git(["rev-parse", "--verify", "-q", f"{rev}^{{commit}}"], repo, check=False)
    if r.returncode != 0 or not r.stdout.strip():
        raise DataError(f"commit {rev} does not exist in the git repository at {repo} "
                        "(was history rewritten, or is this another clone? `git log` lists the commits)")
    return r.stdout.strip()


@contextlib.contextmanager
def spec_at_revision(repo: Path, path_in_repo: str, rev: str):
    """Yield the spec's path inside a temporary copy of its folder as it was at ``rev`` (used
    specs and lexicons come along). Blobs are read raw (``ls-tree`` + ``cat-file``): no
    filter the repository configures runs, and links and submodules are left out."""
    sha = resolve_commit(repo, rev)
    folder = str(Path(path_in_repo).parent.as_posix())
    folder = "" if folder == "." else folder
    exists = _git(["cat-file", "-e", f"{sha}:{path_in_repo}"], repo, check=False)
    if exists.returncode != 0:
        raise DataError(f"{path_in_repo} does not exist at commit {rev} ({sha[:10]})")
    listing = _git(["ls-tree", "-r", "-z", "--full-tree", sha, "--", folder or "."], repo, text=False).stdout
    blobs = []  # (object id, path in the repository)
    for entry in listing.split(b"\0"):
        if not entry:
            continue
        meta, path = entry.split(b"\t", 1)
        mode, kind, oid = meta.split(b" ")
        if kind == b"blob" and mode in (b"100644", b"100755"):
            blobs.append((oid.decode(), path.decode("utf-8", "surrogateescape")))
    contents = _git(["cat-file", "--batch"], repo, text=False,
                    input="".join(f"{oid}\n" for oid, _ in blobs).encode()).stdout
    tmp = tempfile.mkdtemp(prefix="mteach-rev-")
    try:
        at = 0
        for oid, rel in blobs:
            header_end = contents.index(b"\n", at)
            size = int(contents[at:header_end].split(b" ")[2])
            data = contents[header_end + 1:header_end + 1 + size]
            at = header_end + 1 + size + 1
            target = Path(tmp) / rel
            if ".." in Path(rel).parts or Path(rel).is_absolute():
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        yield Path(tmp) / path_in_repo
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def spec_repo_path(spec_path) -> tuple:
    """(repo root, spec path relative to it) for a spec file; DataError outside git."""
    spec_path = Path(spec_path)
    root = repo_root(spec_path.parent if spec_path.parent != Path("") else Path("."))
    if root is None:
        raise DataError(f"{spec_path} is not inside a git repository; this needs the spec's git history "
                        "(`git init` and commit it, or run from the repository)")
    rel = spec_path.resolve().relative_to(root.resolve())
    return root, rel.as_posix()
