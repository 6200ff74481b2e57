"""Git plumbing for provenance: a spec's commit and state, blame per rule, a spec's folder
at a revision. Outside git every fact is "unavailable", never an error, except where a
verb needs history (verify, diff), which says so."""
from __future__ import annotations

import contextlib
import io
import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path
from typing import Optional

from ..compiler.spec import Spec
from ..errors import DataError

UNAVAILABLE = "unavailable"


def _git(args, cwd, check=True, text=True) -> subprocess.CompletedProcess:
    env = dict(os.environ, GIT_OPTIONAL_LOCKS="0", LC_ALL="C")
    try:
        result = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=text, env=env)
    except FileNotFoundError:
        raise DataError("git is not installed; provenance needs it for commits and blame") from None
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
    status = _git(["status", "--porcelain", "--untracked-files=all", "--", *files], cwd).stdout.strip()
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
    args = ["blame", "--porcelain"]
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
    """Yield the spec's path inside a temporary copy of its folder as it was at ``rev``
    (``git archive``, so used specs and lexicons come along)."""
    sha = resolve_commit(repo, rev)
    folder = str(Path(path_in_repo).parent.as_posix())
    folder = "" if folder == "." else folder
    exists = _git(["cat-file", "-e", f"{sha}:{path_in_repo}"], repo, check=False)
    if exists.returncode != 0:
        raise DataError(f"{path_in_repo} does not exist at commit {rev} ({sha[:10]})")
    r = _git(["archive", "--format=tar", sha, "--", folder or "."], repo, text=False)
    tmp = tempfile.mkdtemp(prefix="mteach-rev-")
    try:
        with tarfile.open(fileobj=io.BytesIO(r.stdout)) as tar:
            kwargs = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            tar.extractall(tmp, **kwargs)
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
