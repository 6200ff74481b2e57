"""Provenance: the label ledger, and the git facts that tie every label to its spec line.

The **ledger** is a Parquet file with one row per data row:

=================  ===========================================  ==========================================
column             type                                         meaning
=================  ===========================================  ==========================================
``id``             the data's id type (or int64 row numbers)    the row
``label``          string (null when nothing decided)           the label given
``probability``    float64 (null when nothing decided)          posterior probability of ``label``
``decided_by``     string                                       "rules", "end_model" or "none"
``votes``          list<struct<rule: string, label: string>>    every rule that voted, in spec order
``contributions``  list<struct<rule: string, contribution: f64>>  each voting rule's additive log-odds
                                                                toward ``label`` (aligned with ``votes``)
``gold``           string (only when gold labels were given)    the gold label, null where unknown
``end_model_features``  list<struct<feature, weight>> (only      the end model's top features, where the
                   when the end model gave them)                end model decided
=================  ===========================================  ==========================================

Its schema metadata holds JSON (keys sorted, no wall-clock time anywhere, so the same
spec version, data and seed give a byte-identical file):

- ``mteach.run``: mteach version, spec path, spec content hash, git facts (commit and
  state: clean / dirty / unavailable), data path and sha256 fingerprint, id column,
  settings (seed, label model class and parameters, gold source);
- ``mteach.rules``: the rules table (``apply.rules_table``) plus, per rule, its content
  key, the commit / author / date that last changed its lines (``git blame``), its
  vote count and the label model's estimated accuracy;
- ``mteach.label_model``: ``baseline_``, ``weights_``, ``accuracy_``, ``class_balance_``
  so ``explain`` needs no re-run;
- ``mteach.ledger_sha256``: sha256 over the row content and the three entries above;
  ``read_ledger`` recomputes it and reports tampering.

Git helpers (commit, dirty state, blame, a spec's folder at a revision) live here too.
"""
from __future__ import annotations

import contextlib
import difflib
import hashlib
import io
import json
import math
import os
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .. import __version__
from ..compiler.checker import load_spec
from ..compiler.spec import Spec
from ..errors import DataError, MteachError
from .apply import ROW_NUMBER, iter_votes, resolve_id_column, rules_table
from .io import DEFAULT_BATCH_ROWS, DataSource, atomic_path, file_fingerprint, open_data

LEDGER_FORMAT = "mteach-ledger/1"
UNAVAILABLE = "unavailable"
META_RUN, META_RULES, META_MODEL, META_HASH = (b"mteach.run", b"mteach.rules", b"mteach.label_model",
                                               b"mteach.ledger_sha256")

VOTE_TYPE = pa.list_(pa.field("element", pa.struct([("rule", pa.string()), ("label", pa.string())])))
CONTRIB_TYPE = pa.list_(pa.field("element", pa.struct([("rule", pa.string()), ("contribution", pa.float64())])))
FEATURE_TYPE = pa.list_(pa.field("element", pa.struct([("feature", pa.string()), ("weight", pa.float64())])))


class LedgerError(MteachError):
    """A ledger that cannot be trusted or used: tampered, from another spec, unreadable."""
    exit_code = 2


# =========================================================================================
# git
# =========================================================================================
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


# =========================================================================================
# content keys
# =========================================================================================
def rule_content_key(rule) -> str:
    """A short hash of what a rule does: its resolved predicate and its label (not its
    name, line or comment), so a rule that only moved is recognised as the same rule."""
    text = repr((rule.predicate.key() if rule.predicate is not None else None, rule.rule.label))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _canonical_json(obj) -> str:
    return json.dumps(_jsonable(obj), sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _jsonable(o):
    if isinstance(o, dict):
        return {str(k): _jsonable(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_jsonable(v) for v in o]
    if isinstance(o, np.ndarray):
        return _jsonable(o.tolist())
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, (float, np.floating)):
        return None if not math.isfinite(float(o)) else float(o)
    if isinstance(o, Path):
        return o.as_posix()
    return o


def rows_sha256(table: pa.Table) -> str:
    """sha256 of the ledger's row content, canonical: independent of chunking, buffer layout
    and the Parquet round trip (each column: name, type, validity, lengths and values)."""
    h = hashlib.sha256()
    h.update(str(table.num_rows).encode() + b"\0")
    for name in table.column_names:
        h.update(name.encode("utf-8") + b"\0")
        _hash_array(h, table.column(name).combine_chunks())
    return h.hexdigest()


def _hash_array(h, arr: pa.Array):
    t = arr.type
    kind = ("list" if pa.types.is_list(t) or pa.types.is_large_list(t) else
            "struct<" + ",".join(t.field(i).name for i in range(t.num_fields)) + ">" if pa.types.is_struct(t)
            else str(t))
    h.update(kind.encode() + b"\0" + str(len(arr)).encode() + b"\0")
    valid = pc.is_valid(arr).to_numpy(zero_copy_only=False)
    h.update(np.packbits(valid).tobytes())
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        lengths = pc.fill_null(pc.list_value_length(arr), 0).to_numpy(zero_copy_only=False).astype(np.int64)
        h.update(lengths.tobytes())
        _hash_array(h, arr.flatten())
    elif pa.types.is_struct(t):
        for i in range(t.num_fields):
            _hash_array(h, pc.struct_field(arr, [i]))
    elif pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_binary(t) or pa.types.is_large_binary(t):
        filled = pc.fill_null(arr, "" if "string" in str(t) else b"").cast(pa.large_binary())
        filled = pa.concat_arrays([filled]) if filled.offset else filled
        offsets = np.frombuffer(filled.buffers()[1], dtype=np.int64)[: len(filled) + 1]
        h.update(np.diff(offsets).tobytes())
        h.update(filled.buffers()[2].to_pybytes()[offsets[0]:offsets[-1]] if len(filled) else b"")
    elif pa.types.is_dictionary(t):
        _hash_array(h, arr.dictionary_decode())
    else:
        values = pc.fill_null(arr, pa.scalar(0, t) if not pa.types.is_boolean(t) else False)
        h.update(values.to_numpy(zero_copy_only=False).tobytes())


def ledger_sha256(table: pa.Table, run: str, rules: str, model: str) -> str:
    h = hashlib.sha256()
    for part in (rows_sha256(table), run, rules, model):
        h.update(part.encode("utf-8") + b"\0")
    return h.hexdigest()


# =========================================================================================
# building the ledger
# =========================================================================================
@dataclass
class Ledger:
    """A ledger in memory: the row table and the facts from its metadata."""
    table: pa.Table
    run: dict
    rules: list            # of dicts (one per rule, spec order)
    model: dict            # baseline, weights, accuracy, class_balance, ...
    path: Optional[Path] = None

    @property
    def labels(self) -> list:
        return list(self.run["labels"])

    @property
    def rule_names(self) -> list:
        return [r["rule"] for r in self.rules]

    def votes_matrix(self) -> np.ndarray:
        """(n × m) int8 vote matrix rebuilt from the ``votes`` column (-1 = abstain)."""
        n, m = self.table.num_rows, len(self.rules)
        col = self.table.column("votes").combine_chunks()
        parents = pc.list_parent_indices(col).to_numpy()
        flat = col.flatten()
        rule_idx = pc.index_in(flat.field("rule"), value_set=pa.array(self.rule_names, pa.string()))
        lab_idx = pc.index_in(flat.field("label"), value_set=pa.array(self.labels, pa.string()))
        if rule_idx.null_count or lab_idx.null_count:
            raise LedgerError(f"{self.path}: the votes column names a rule or label the ledger's rules table lacks")
        out = np.full((n, m), -1, dtype=np.int8)
        out[parents, rule_idx.to_numpy()] = lab_idx.to_numpy().astype(np.int8)
        return out


def _fit_label_model(spec: Spec, votes: np.ndarray, gold: Optional[np.ndarray], seed: int):
    from .label_model import fit_for_spec  # scikit-learn is slow to import; only verbs that fit pay for it
    return fit_for_spec(spec, votes, gold, seed=seed)


def _list_column(offsets: np.ndarray, children: dict, typ: pa.DataType) -> pa.Array:
    struct = pa.StructArray.from_arrays(list(children.values()), names=list(children))
    return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), struct).cast(typ)


def build_ledger(spec: Spec, ids: pa.Array, votes: np.ndarray, *, gold: Optional[np.ndarray] = None,
                 seed: int = 0, run_facts: Optional[dict] = None,
                 end_model: Optional[Callable[[np.ndarray], object]] = None,
                 label_model=None, end_model_proba: Optional[np.ndarray] = None, blend: float = 0.0,
                 git: bool = True) -> Ledger:
    """Fit the label model on ``votes`` and build the ledger (no per-row Python).

    ``gold``: label index per row (-1 unknown) — sharpens the label model and is kept in a
    ``gold`` column. ``end_model``: called once with the indices of the rows no rule voted
    on; returns their class probabilities (r × k), or ``(probabilities, features)`` where
    ``features`` is a list<struct<feature, weight>> array (or list) of the top features
    per row. Those rows get ``decided_by = "end_model"``; without it they get "none".
    ``label_model``: an already fitted label model (from a trained model folder) used as is.
    ``end_model_proba`` (n × k) with ``blend`` = beta > 0: on covered rows the posterior is
    p ∝ p_label_model · p_end_model^beta, and the end model's share of the log-odds is kept
    per row in ``end_model_contribution`` — so the decomposition stays exact.
    """
    votes = np.ascontiguousarray(votes, dtype=np.int8)
    n, m = votes.shape
    labels = list(spec.labels)
    k = len(labels)
    names = spec.rule_names
    model = label_model if label_model is not None else _fit_label_model(spec, votes, gold, seed)
    proba = model.predict_proba(votes)
    em_term = None
    if end_model_proba is not None and blend > 0:
        log_em = blend * np.log(np.clip(end_model_proba, 1e-12, 1.0))
        logits = np.log(np.clip(proba, 1e-300, 1.0)) + log_em
        proba = np.exp(logits - logits.max(axis=1, keepdims=True))
        proba /= proba.sum(axis=1, keepdims=True)
    predicted = np.argmax(proba, axis=1)
    contrib = model.contributions(votes, target=predicted)
    if end_model_proba is not None and blend > 0:
        # same convention as the rules' contributions: toward the label, minus the mean of the others
        chosen = log_em[np.arange(n), predicted]
        em_term = chosen - (log_em.sum(axis=1) - chosen) / max(k - 1, 1)

    voted = votes != -1
    covered = voted.any(axis=1)
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(voted.sum(axis=1), out=offsets[1:])
    rows, cols = np.nonzero(voted)  # row-major: rules in spec order within a row
    rule_arr = pa.array(names, pa.string()).take(pa.array(cols))
    vote_labels = pa.array(labels, pa.string()).take(pa.array(votes[rows, cols].astype(np.int64)))
    votes_col = _list_column(offsets, {"rule": rule_arr, "label": vote_labels}, VOTE_TYPE)
    contrib_col = _list_column(offsets, {"rule": rule_arr, "contribution": pa.array(contrib[rows, cols])},
                               CONTRIB_TYPE)

    label_idx = np.where(covered, predicted, -1)
    prob = np.where(covered, proba[np.arange(n), predicted], np.nan)
    decided = np.where(covered, 0, 2)  # 0 rules, 1 end_model, 2 none
    features_col = None
    if end_model is not None and (~covered).any():
        uncovered = np.flatnonzero(~covered)
        out = end_model(uncovered)
        feats = None
        if isinstance(out, tuple):
            out, feats = out
        p = np.asarray(out, dtype=np.float64)
        if p.shape != (len(uncovered), k):
            raise DataError(f"the end model returned probabilities of shape {p.shape}; expected {(len(uncovered), k)}")
        best = np.argmax(p, axis=1)
        label_idx[uncovered] = best
        prob[uncovered] = p[np.arange(len(uncovered)), best]
        decided[uncovered] = 1
        if feats is not None:
            feats = feats if isinstance(feats, pa.Array) else pa.array(feats, FEATURE_TYPE)
            # rows the end model did not decide get an empty list
            pos = np.full(n, -1, dtype=np.int64)
            pos[uncovered] = np.arange(len(uncovered))
            empty = pa.array([[]], FEATURE_TYPE)
            both = pa.concat_arrays([feats.cast(FEATURE_TYPE), empty])
            features_col = both.take(pa.array(np.where(pos >= 0, pos, len(uncovered))))

    label_names = pa.array(labels + [None], pa.string())
    cols_out = {
        "id": ids if isinstance(ids, pa.Array) else pa.array(ids),
        "label": label_names.take(pa.array(np.where(label_idx >= 0, label_idx, k))),
        "probability": pa.array(prob, pa.float64(), mask=np.isnan(prob)),
        "decided_by": pa.array(["rules", "end_model", "none"], pa.string()).take(pa.array(decided)),
        "votes": votes_col,
        "contributions": contrib_col,
    }
    if em_term is not None:
        cols_out["end_model_contribution"] = pa.array(np.where(covered, em_term, np.nan), pa.float64(),
                                                      mask=~covered)
    if gold is not None:
        cols_out["gold"] = label_names.take(pa.array(np.where(gold >= 0, gold, k)))
    if features_col is not None:
        cols_out["end_model_features"] = features_col
    if isinstance(cols_out["id"], pa.ChunkedArray):
        cols_out["id"] = cols_out["id"].combine_chunks()
    table = pa.table(cols_out)

    git_facts = spec_git_facts(spec) if git else {"state": UNAVAILABLE, "commit": None, "path_in_repo": None}
    run = {"format": LEDGER_FORMAT, "mteach_version": __version__, "spec": spec.path.as_posix(),
           "spec_hash": spec.content_hash, "spec_files": list(spec.files), "concept": spec.concept.name,
           "labels": labels, "git": git_facts, "rows": n, "covered": int(covered.sum()),
           "settings": {"seed": int(seed), "label_model": {"class": type(model).__name__,
                                                           "params": _jsonable(model.get_params())},
                        "gold": None if gold is None else {"rows": int((gold >= 0).sum())},
                        "end_model": end_model is not None, "blend": float(blend) if em_term is not None else 0.0},
           **(run_facts or {})}

    rt = rules_table(spec).to_pylist()
    spans = [(r.rule.span.line, max(r.rule.span.end_line, r.rule.span.line)) for r in spec.rules]
    blames = blame_lines(spec.path, spans) if git and spec.rules else [None] * len(spec.rules)
    vote_counts = voted.sum(axis=0)
    # the share of each rule's votes the label model believes right, with its 95% interval
    est_accuracy = getattr(model, "vote_accuracy_", model.accuracy_)
    est_interval = getattr(model, "vote_accuracy_interval_", None)
    for i, (row, r) in enumerate(zip(rt, spec.rules)):
        row.update({"index": i, "end_line": spans[i][1], "content_key": rule_content_key(r),
                    "votes": int(vote_counts[i]), "estimated_accuracy": float(est_accuracy[i]),
                    "estimated_interval": None if est_interval is None else [float(x) for x in est_interval[i]],
                    "blame": blames[i]})
    params = {"class": type(model).__name__, "labels": labels, "rules": names,
              "baseline": model.baseline_, "weights": model.weights_, "accuracy": model.accuracy_,
              "class_balance": getattr(model, "class_balance_", None),
              "n_iter": getattr(model, "n_iter_", None), "converged": getattr(model, "converged_", None)}
    return Ledger(table, _jsonable(run), _jsonable(rt), _jsonable(params))


def write_ledger(ledger: Ledger, output) -> Path:
    """Write ``ledger`` to Parquet through a temporary file; byte-identical for equal input."""
    run, rules, model = (_canonical_json(x) for x in (ledger.run, ledger.rules, ledger.model))
    digest = ledger_sha256(ledger.table, run, rules, model)
    table = ledger.table.replace_schema_metadata({META_RUN: run, META_RULES: rules, META_MODEL: model,
                                                  META_HASH: digest})
    with atomic_path(output) as tmp:
        pq.write_table(table, tmp, compression="zstd", write_statistics=False)
        readable(tmp)
    ledger.path = Path(output)
    return Path(output)


def readable(path):
    """Give a file written through a temporary name the usual permissions (0666 less the umask)."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, 0o666 & ~mask)


def label_data(spec_path, data, output, id_column: Optional[str] = None, gold_fn=None, seed: int = 0,
               batch_rows: int = DEFAULT_BATCH_ROWS, threads: int = 2, progress=None,
               end_model=None, spec: Optional[Spec] = None, model=None) -> Ledger:
    """Apply the spec to ``data``, fit the label model and write the ledger to ``output``.

    ``gold_fn(spec, source, id_column, ids)`` returns gold label indices or None.
    ``model``: a trained model (``mteach.engine.train.TrainedModel``) of the same spec: its
    label model is used as trained, its end model decides the rows no rule covers (with
    their top features) and joins covered rows with the model's blend.
    """
    source = open_data(data)
    if spec is None:
        spec = load_spec(spec_path, source.schema)
    id_column = resolve_id_column(source, id_column)
    ids, votes = collect_votes(spec, source, id_column, batch_rows, threads, progress)
    gold = gold_fn(spec, source, id_column, ids) if gold_fn else None
    facts = {"data": Path(data).as_posix(), "data_sha256": file_fingerprint(data),
             "id_column": id_column or ROW_NUMBER}
    extra = {}
    if model is not None:
        table = source.read_all([spec.column(f) for f in spec.fields])
        em = model.end_model_proba(table)

        def end_model(rows):
            proba = model.uncovered_proba(em[rows])
            return proba, model.top_features(table.take(pa.array(rows)), proba.argmax(axis=1))
        extra = dict(label_model=model.label_model, end_model_proba=em, blend=model.blend)
        facts["model"] = {"spec_hash": model.spec.content_hash, "blend": model.blend, "settings": model.settings}
    ledger = build_ledger(spec, ids, votes, gold=gold, seed=seed, run_facts=facts, end_model=end_model, **extra)
    write_ledger(ledger, output)
    return ledger


def collect_votes(spec: Spec, source: DataSource, id_column, batch_rows=DEFAULT_BATCH_ROWS, threads=2,
                  progress=None):
    ids, parts = [], []
    for batch_ids, votes in iter_votes(spec, source, id_column, batch_rows, threads):
        ids.append(batch_ids)
        parts.append(votes)
        if progress:
            progress(len(batch_ids))
    if not parts:
        raise DataError(f"{source.path}: the file has a header but no rows")
    return pa.concat_arrays(ids), np.concatenate(parts).astype(np.int8)


# =========================================================================================
# reading and checking a ledger
# =========================================================================================
def read_ledger(path, check: bool = True) -> Ledger:
    """Read a ledger; with ``check``, recompute its sha256 and raise LedgerError on a mismatch."""
    path = Path(path)
    if not path.exists():
        raise LedgerError(f"{path}: no such ledger file (write one with `mteach label SPEC DATA -o {path.name}`)")
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowInvalid) as err:
        raise LedgerError(f"{path}: cannot read the ledger: {str(err).splitlines()[0]}") from None
    meta = table.schema.metadata or {}
    if META_RUN not in meta or META_RULES not in meta:
        raise LedgerError(f"{path}: not a label ledger written by `mteach label` (no run facts in its metadata)")
    try:
        run, rules, model = (json.loads(meta[key]) for key in (META_RUN, META_RULES, META_MODEL))
    except (KeyError, ValueError) as err:
        raise LedgerError(f"{path}: the ledger's metadata is damaged ({err})") from None
    ledger = Ledger(table.replace_schema_metadata(None), run, rules, model, path)
    if check:
        recorded = meta.get(META_HASH, b"").decode()
        actual = ledger_sha256(ledger.table, meta[META_RUN].decode(), meta[META_RULES].decode(),
                               meta[META_MODEL].decode())
        if recorded != actual:
            raise LedgerError(f"{path}: the ledger was modified after it was written: its content sha256 is "
                              f"{actual[:16]}…, the one recorded when it was written is "
                              f"{(recorded or 'missing')[:16]}…; do not trust its labels — re-run `mteach label`")
    return ledger


def label_counts(ledger: Ledger) -> dict:
    """Rows per label (spec order), then "no label" for rows nothing decided."""
    counts = {v["values"]: v["counts"] for v in pc.value_counts(ledger.table.column("label")).to_pylist()}
    out = {lab: int(counts.get(lab, 0)) for lab in ledger.labels}
    if counts.get(None):
        out["no label"] = int(counts[None])
    return out


def check_spec_matches(ledger: Ledger, spec: Spec):
    """Raise LedgerError when ``spec`` is not the version the ledger was made from."""
    if spec.content_hash != ledger.run["spec_hash"]:
        git = ledger.run.get("git") or {}
        where = f" (commit {git['commit'][:10]})" if git.get("commit") else ""
        raise LedgerError(f"{ledger.path} was made from another version of the spec: its spec hash is "
                          f"{ledger.run['spec_hash'][:16]}…{where}, {spec.path} now hashes to "
                          f"{spec.content_hash[:16]}…; re-run `mteach label`, or check out that version")


def find_row(ledger: Ledger, row_id: str) -> int:
    """Position of the row whose id (as text) is ``row_id``; LedgerError with near ids if absent."""
    ids = pc.cast(ledger.table.column("id"), pa.string()).combine_chunks()
    hit = pc.index(ids, pa.scalar(str(row_id), pa.string())).as_py()
    if hit is not None and hit >= 0:
        return hit
    near = nearest_ids(ids, str(row_id))
    hint = f" — did you mean {' or '.join(near)}?" if near else ""
    raise LedgerError(f"row id {row_id!r} is not in {ledger.path} ({ledger.table.num_rows:,} rows, "
                      f"id column {ledger.run.get('id_column')!r}){hint}")


def nearest_ids(ids: pa.Array, wanted: str, n: int = 3) -> list:
    pool = ids
    for width in (4, 2, 1):
        if len(wanted) >= width:
            mask = pc.starts_with(ids, wanted[:width])
            if pc.any(mask).as_py():
                pool = ids.filter(mask)
                break
    pool = pool.slice(0, 20_000).to_pylist()
    return difflib.get_close_matches(wanted, [p for p in pool if p is not None], n=n, cutoff=0.5)


# =========================================================================================
# explaining one row
# =========================================================================================
def explain_row(ledger: Ledger, row_id: str) -> dict:
    """Why row ``row_id`` has its label, from the ledger alone."""
    i = find_row(ledger, row_id)
    row = ledger.table.slice(i, 1).to_pylist()[0]
    labels = ledger.labels
    rules = {r["rule"]: r for r in ledger.rules}
    baseline = np.asarray(ledger.model["baseline"], dtype=np.float64)
    weights = np.asarray(ledger.model["weights"], dtype=np.float64)
    label = row["label"]
    k = len(labels)
    contribs = {c["rule"]: c["contribution"] for c in row["contributions"] or []}
    out = {"id": row["id"], "label": label, "probability": row["probability"], "decided_by": row["decided_by"],
           "gold": row.get("gold"), "spec": ledger.run.get("spec"), "spec_hash": ledger.run.get("spec_hash"),
           "git": ledger.run.get("git"), "ledger": str(ledger.path), "votes": []}
    target = labels.index(label) if label in labels else None
    if target is not None:
        others = [c for c in range(k) if c != target]
        out["baseline_log_odds"] = float(baseline[target] - baseline[others].mean())
    out["baseline"] = {lab: float(b) for lab, b in zip(labels, baseline)}
    score = baseline.copy()
    for v in row["votes"] or []:
        info = rules.get(v["rule"], {})
        j = info.get("index")
        if j is not None:
            score = score + weights[j, labels.index(v["label"])]
        out["votes"].append({
            "rule": v["rule"], "label": v["label"], "contribution": contribs.get(v["rule"]),
            "file": info.get("file"), "line": info.get("line"), "source": info.get("source"),
            "description": info.get("description"), "estimated_accuracy": info.get("estimated_accuracy"),
            "confidence": info.get("confidence"), "blame": info.get("blame")})
    if row["decided_by"] == "rules":
        p = np.exp(score - score.max())
        out["posterior"] = {lab: float(x) for lab, x in zip(labels, p / p.sum())}
        if row.get("end_model_contribution") is not None:
            out["end_model_contribution"] = row["end_model_contribution"]
            out["blend"] = ledger.run.get("settings", {}).get("blend")
    if row["decided_by"] == "end_model":
        out["end_model_features"] = row.get("end_model_features")
    return out


def format_explanation(e: dict) -> str:
    """The explanation in words, for an expert and an auditor."""
    lines = []
    git = e.get("git") or {}
    if e["decided_by"] == "none":
        lines.append(f"row {e['id']}: no label — no rule voted on it and no end model labelled it.")
    else:
        lines.append(f"row {e['id']}: {e['label']} with probability {e['probability']:.4f}, "
                     f"decided by {'the rules' if e['decided_by'] == 'rules' else 'the end model'}.")
    if git.get("state") == "clean":
        version = f"commit {git['commit'][:10]} ({git.get('path_in_repo')})"
    elif git.get("state") == "dirty":
        version = "uncommitted changes (no commit recorded)"
    else:
        version = "git unavailable (the spec was not in a git repository)"
    lines.append(f"spec: {e['spec']}, version {e['spec_hash'][:12]}, {version}")
    if e.get("gold") is not None and e.get("label") is None:
        lines.append(f"gold label: {e['gold']} (the row has no label to compare)")
    elif e.get("gold") is not None:
        agree = "agrees" if e["gold"] == e["label"] else "DISAGREES"
        lines.append(f"gold label: {e['gold']} ({agree} with the given label)")
    if e["decided_by"] == "rules":
        lines.append("")
        lab = e["label"]
        lines.append(f"start: the class baseline gives {lab} {e['baseline_log_odds']:+.3f} log-odds "
                     f"(the class balance and what every rule's silence says; a rule that votes replaces its silence with its vote)")
        lines.append(f"then each rule that voted adds its log-odds toward {lab}:")
        for v in e["votes"]:
            acc = v["estimated_accuracy"]
            acc_text = f"estimated accuracy {acc:.2f}" if acc is not None else "accuracy unknown"
            c = v["contribution"]
            lines.append(f"  {c:+.3f}  rule {v['rule']} votes {v['label']}  ({v['file']}:{v['line']}, {acc_text})")
            if v.get("description"):
                for d in v["description"].splitlines():
                    lines.append(f"          # {d}")
            lines.append(f"          {v['source']}")
            b = v.get("blame")
            if b and b.get("commit") == "uncommitted":
                lines.append("          last changed: not committed yet")
            elif b:
                lines.append(f"          last changed in commit {b['commit'][:10]} by {b['author']} "
                             f"<{b['email']}> on {b['date'][:10]}")
            else:
                lines.append("          last changed: unavailable (blame needs the spec in git)")
        total = e["baseline_log_odds"] + sum(v["contribution"] for v in e["votes"])
        if e.get("end_model_contribution") is not None:
            lines.append(f"  {e['end_model_contribution']:+.3f}  the end model's view of the text "
                         f"(blended in with weight {e.get('blend')})")
            total += e["end_model_contribution"]
        lines.append(f"total: {total:+.3f} log-odds toward {lab}"
                     + (f" = probability {1 / (1 + math.exp(-total)):.4f}" if len(e["baseline"]) == 2 else
                        f"; label model posterior {', '.join(f'{k} {p:.3f}' for k, p in e['posterior'].items())}"))
    elif e["decided_by"] == "end_model":
        lines.append("")
        lines.append("no rule voted on this row; it was decided by the end model (trained on the rules' labels).")
        feats = e.get("end_model_features")
        if feats:
            lines.append("the end model's top features for it:")
            for f in feats:
                lines.append(f"  {f['weight']:+.3f}  {f['feature']}")
        else:
            lines.append("the ledger records no end-model features for this row.")
    return "\n".join(lines)


# =========================================================================================
# verifying a ledger
# =========================================================================================
@dataclass
class Verification:
    identical: bool
    rows: int
    spec_hash_ok: bool
    data_ok: bool
    vote_differences: list = field(default_factory=list)   # {id, rule, recorded, now}
    label_differences: list = field(default_factory=list)  # {id, recorded, now, recorded_p, now_p}
    n_vote_differences: int = 0
    n_label_differences: int = 0
    notes: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def verify_ledger(ledger: Ledger, data, spec_path=None, repo=None, threads: int = 2, limit: int = 20,
                  batch_rows: int = DEFAULT_BATCH_ROWS) -> Verification:
    """Re-run the recorded spec version on ``data`` and compare with the ledger.

    The spec comes from git at the recorded commit (its folder is extracted with
    ``git archive``), or from ``spec_path`` when given (its content hash must match).
    """
    run = ledger.run
    git = run.get("git") or {}
    notes = []
    if spec_path is not None:
        return _verify_with(ledger, data, Path(spec_path), threads, limit, batch_rows, notes)
    if git.get("state") != "clean" or not git.get("commit"):
        why = "uncommitted changes" if git.get("state") == "dirty" else "a spec outside git"
        raise LedgerError(f"{ledger.path} was made from {why}, so no commit is recorded to re-run; "
                          "give the spec file with --spec to verify against it")
    root = Path(repo) if repo else _find_repo_for(run)
    with spec_at_revision(root, git["path_in_repo"], git["commit"]) as path:
        notes.append(f"spec {git['path_in_repo']} read from git at commit {git['commit'][:10]}")
        return _verify_with(ledger, data, path, threads, limit, batch_rows, notes)


def _find_repo_for(run: dict) -> Path:
    for candidate in (Path(run.get("spec", ".")).parent, Path(".")):
        if candidate.exists():
            root = repo_root(candidate if str(candidate) else Path("."))
            if root is not None:
                return root
    raise DataError("cannot find the git repository of the spec; run from inside it or give --repo DIR")


def _verify_with(ledger, data, spec_path, threads, limit, batch_rows, notes) -> Verification:
    run = ledger.run
    source = open_data(data)
    spec = load_spec(spec_path, source.schema)
    spec_ok = spec.content_hash == run["spec_hash"]
    if not spec_ok:
        notes.append(f"the spec read now hashes to {spec.content_hash[:16]}…, the ledger records "
                     f"{run['spec_hash'][:16]}…")
    data_ok = file_fingerprint(data) == run.get("data_sha256")
    if not data_ok:
        notes.append(f"{data} is not the data file the ledger was made from (sha256 differs)")
    id_column = run.get("id_column")
    id_column = None if id_column == ROW_NUMBER and id_column not in source.schema.names else id_column
    id_column = resolve_id_column(source, id_column)
    ids, votes = collect_votes(spec, source, id_column, batch_rows, threads)
    old = ledger.table
    gold = None
    if "gold" in old.column_names and old.num_rows == len(ids):
        gold_names = old.column("gold").combine_chunks()
        idx = pc.index_in(gold_names, value_set=pa.array(list(spec.labels), pa.string()))
        gold = pc.fill_null(idx, -1).to_numpy().astype(np.int64)
    seed = run.get("settings", {}).get("seed", 0)
    facts = {k: run[k] for k in ("data", "data_sha256", "id_column") if k in run}
    new = build_ledger(spec, ids, votes, gold=gold, seed=seed, run_facts=facts, git=False)
    result = Verification(False, len(ids), spec_ok, data_ok, notes=notes)
    if old.num_rows != len(ids) or not pc.all(pc.equal(pc.cast(old.column("id"), pa.string()),
                                                        pc.cast(new.table.column("id"), pa.string()))).as_py():
        result.notes.append(f"the rows differ: the ledger has {old.num_rows:,} rows, the data {len(ids):,} "
                            "(or their ids differ in order)")
        return result
    id_strings = pc.cast(old.column("id"), pa.string()).combine_chunks()
    # votes, rule by rule (by name: a rule missing on one side counts as abstaining there)
    old_votes = ledger.votes_matrix()
    old_names, new_names = ledger.rule_names, spec.rule_names
    all_names = list(dict.fromkeys(old_names + new_names))
    labels = list(spec.labels)
    if ledger.labels != labels:
        result.notes.append(f"the labels differ: ledger {ledger.labels}, spec {labels}")
    def column(mat, names, name):
        return mat[:, names.index(name)] if name in names else np.full(len(ids), -1, np.int8)
    for name in all_names:
        a, b = column(old_votes, old_names, name), column(votes, new_names, name)
        diff = np.flatnonzero(a != b)
        result.n_vote_differences += len(diff)
        for r in diff[: max(0, limit - len(result.vote_differences))]:
            result.vote_differences.append({
                "id": id_strings[int(r)].as_py(), "rule": name,
                "recorded": ledger.labels[a[r]] if a[r] >= 0 else "abstain",
                "now": labels[b[r]] if b[r] >= 0 else "abstain"})
    # labels and probabilities, on rows the rules decide (the end model is not re-run)
    by_rules = pc.equal(old.column("decided_by"), "rules").to_numpy(zero_copy_only=False)
    if (~by_rules & pc.equal(old.column("decided_by"), "end_model").to_numpy(zero_copy_only=False)).any():
        result.notes.append("rows decided by the end model are not re-checked (verify re-runs the rules "
                            "and the label model)")
    now_rules = pc.equal(new.table.column("decided_by"), "rules").to_numpy(zero_copy_only=False)
    old_lab = pc.fill_null(old.column("label"), "").to_numpy(zero_copy_only=False)
    new_lab = pc.fill_null(new.table.column("label"), "").to_numpy(zero_copy_only=False)
    old_p = pc.fill_null(old.column("probability"), -1.0).to_numpy(zero_copy_only=False)
    new_p = pc.fill_null(new.table.column("probability"), -1.0).to_numpy(zero_copy_only=False)
    new_lab = np.where(now_rules | by_rules, new_lab, old_lab)
    new_p = np.where(now_rules | by_rules, new_p, old_p)
    differs = (old_lab != new_lab) | (old_p != new_p)
    diff = np.flatnonzero(differs)
    result.n_label_differences = len(diff)
    for r in diff[:limit]:
        result.label_differences.append({"id": id_strings[int(r)].as_py(), "recorded": old_lab[r] or None,
                                         "now": new_lab[r] or None, "recorded_probability": _p(old_p[r]),
                                         "now_probability": _p(new_p[r])})
    old_c = old.column("contributions").combine_chunks().flatten().field("contribution")
    new_c = new.table.column("contributions").combine_chunks().flatten().field("contribution")
    contrib_same = len(old_c) == len(new_c) and pc.all(pc.equal(old_c, new_c)).as_py() in (True, None)
    if not contrib_same and not result.n_vote_differences:
        result.notes.append("the rules' log-odds contributions differ (the label model's fit changed)")
    if _model_differs(ledger.model, new.model):
        result.notes.append("the label model's parameters differ from the recorded ones")
    result.identical = (spec_ok and data_ok and result.n_vote_differences == 0 and
                        result.n_label_differences == 0 and contrib_same and ledger.labels == labels and
                        not _model_differs(ledger.model, new.model))
    return result


def _p(x):
    return None if x < 0 else float(x)


def _model_differs(a: dict, b: dict) -> bool:
    return any(_canonical_json(a.get(k)) != _canonical_json(b.get(k)) for k in ("baseline", "weights", "accuracy"))


# =========================================================================================
# diff between two revisions of a spec
# =========================================================================================
def _labels_of(spec: Spec, votes: np.ndarray, seed: int) -> np.ndarray:
    """Label index per row (-1 where no rule voted), from the label model."""
    covered = (votes != -1).any(axis=1)
    if not covered.any():
        return np.full(len(votes), -1, np.int64)
    model = _fit_label_model(spec, votes, None, seed)
    return np.where(covered, model.predict(votes), -1)


def diff_revisions(spec_path, rev_from: str, rev_to: str, data, id_column: Optional[str] = None,
                   seed: int = 0, sample: int = 10, threads: int = 2) -> dict:
    """Rules added / removed / changed between two git revisions of a spec, and the rows
    whose label flips, counted by the rule changes responsible."""
    root, rel = spec_repo_path(spec_path)
    source = open_data(data)
    id_column = resolve_id_column(source, id_column)
    sides = {}
    for side, rev in (("from", rev_from), ("to", rev_to)):
        with spec_at_revision(root, rel, rev) as path:
            spec = load_spec(path, source.schema)
            ids, votes = collect_votes(spec, source, id_column, threads=threads)
            sides[side] = (spec, ids, votes, resolve_commit(root, rev))
    (s0, ids, v0, c0), (s1, _, v1, c1) = sides["from"], sides["to"]
    if list(s0.labels) != list(s1.labels):
        labels_note = f"the labels changed: {', '.join(s0.labels)} → {', '.join(s1.labels)}"
    else:
        labels_note = None
    # match rules: same content first (a moved or renamed rule is not a change), then same name
    k0 = {r.name: rule_content_key(r) for r in s0.rules}
    k1 = {r.name: rule_content_key(r) for r in s1.rules}
    left0, left1 = dict(k0), dict(k1)
    renamed = []
    for n1, key in k1.items():
        if n1 in left0 and left0[n1] == key:
            left0.pop(n1)
            left1.pop(n1)
    for n1, key in list(left1.items()):
        match = next((n0 for n0, key0 in left0.items() if key0 == key and n0 not in left1), None)
        if match is not None:
            renamed.append({"from": match, "to": n1})
            left0.pop(match)
            left1.pop(n1)
    changed = [n for n in left1 if n in left0]
    added = [n for n in left1 if n not in left0]
    removed = [n for n in left0 if n not in left1]

    def rule_info(spec, name):
        r = next(x for x in spec.rules if x.name == name)
        return {"rule": name, "label": r.rule.label, "file": rel, "line": r.rule.span.line,
                "source": r.rule.text}
    names0, names1 = s0.rule_names, s1.rule_names
    n = len(ids)
    none = np.full(n, -1, np.int8)
    col0 = lambda name: v0[:, names0.index(name)] if name in names0 else none
    col1 = lambda name: v1[:, names1.index(name)] if name in names1 else none
    # labels as names so a relabelled spec still compares by meaning
    lab0, lab1 = _labels_of(s0, v0, seed), _labels_of(s1, v1, seed)
    names_0 = np.array(list(s0.labels) + [""], dtype=object)[lab0]
    names_1 = np.array(list(s1.labels) + [""], dtype=object)[lab1]
    flipped = names_0 != names_1
    changes = ([("added", x, none, col1(x)) for x in added] + [("removed", x, col0(x), none) for x in removed]
               + [("changed", x, col0(x), col1(x)) for x in changed])
    responsible_any = np.zeros(n, dtype=bool)
    counted = []
    for kind, name, a, b in changes:
        moved = {"changed": a != b, "added": b != -1, "removed": a != -1}[kind]
        hits = flipped & moved
        responsible_any |= hits
        counted.append({"rule": name, "change": kind, "flipped_rows": int(hits.sum()),
                        "rows_voting_differently": int(moved.sum())})
    counted.sort(key=lambda c: (-c["flipped_rows"], c["rule"]))
    reweighted = int((flipped & ~responsible_any).sum())
    flip_rows = np.flatnonzero(flipped)
    text_field = (s1.text_fields or s0.text_fields or [None])[0]
    spec_for_text = s1 if s1.text_fields else s0
    samples = []
    if len(flip_rows) and sample > 0:
        take = flip_rows[:sample]
        texts = None
        if text_field is not None:
            column = spec_for_text.column(text_field)
            texts = source.read_all([column]).column(column).take(pa.array(take)).to_pylist()
        id_list = ids.take(pa.array(take)).to_pylist()
        for i, r in enumerate(take):
            why = [c["rule"] for c in counted if _moved(c, col0, col1, int(r))]
            samples.append({"id": id_list[i], "from": names_0[r] or None, "to": names_1[r] or None,
                            "rules": why or ["(label model re-weighting)"],
                            "text": texts[i] if texts is not None else None})
    transitions = {}
    if len(flip_rows):
        keys = np.char.add(np.char.add(np.where(names_0[flip_rows] == "", "none", names_0[flip_rows]).astype(str),
                                       " → "),
                           np.where(names_1[flip_rows] == "", "none", names_1[flip_rows]).astype(str))
        values, counts = np.unique(keys, return_counts=True)
        transitions = {str(v): int(c) for v, c in zip(values, counts)}
    return {"spec": rel, "from": {"rev": rev_from, "commit": c0, "rules": len(s0.rules), "spec_hash": s0.content_hash},
            "to": {"rev": rev_to, "commit": c1, "rules": len(s1.rules), "spec_hash": s1.content_hash},
            "labels_note": labels_note,
            "added": [rule_info(s1, x) for x in added], "removed": [rule_info(s0, x) for x in removed],
            "changed": [{"rule": x, "before": rule_info(s0, x), "after": rule_info(s1, x)} for x in changed],
            "renamed": renamed, "rows": n, "flipped": int(flipped.sum()), "transitions": transitions,
            "by_rule_change": counted, "label_model_reweighting": reweighted, "sample": samples,
            "text_field": text_field}


def _moved(c, col0, col1, r) -> bool:
    if c["flipped_rows"] == 0:
        return False
    a, b = col0(c["rule"])[r], col1(c["rule"])[r]
    if c["change"] == "added":
        return b != -1
    if c["change"] == "removed":
        return a != -1
    return a != b
