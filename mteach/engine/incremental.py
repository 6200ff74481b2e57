"""Re-apply only what changed: a cache of each rule's vote mask over one in-memory table.

An editor re-checks the spec after every pause in typing. Most edits touch one rule,
so each rule's result (where it fires) is cached under a hash of its *normalized,
resolved* predicate (``CompiledRule.predicate.key()``: position-free, defines and
lexicons inlined) together with the data's fingerprint. A refresh evaluates only the
predicates not in the cache; renaming a rule, moving it, changing its label or its
comment costs nothing. The label is applied after the cache, so the cached value is
the boolean mask and a rule's vote column is ``where(mask, label, -1)``.

Below that, the evaluator of each batch keeps its memo of sub-expressions (lower-cased
text, each phrase's mask, word counts) across refreshes while the spec's field
mapping stays the same: adding one phrase to a rule evaluates that phrase only.

It is an implementation of ``engine.votes.Engine`` (``vote_batches``) bound to one
in-memory table; ``votes(spec)`` is its whole-table shortcut.

The statistics follow the same way: ``column_keys`` names each vote column for
``engine.analysis.IncrementalStats``, which updates them from the changed columns only.

Thread-safe: a refresh may run in a worker thread while an older one finishes.
"""
from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator, Optional

import numpy as np
import pyarrow as pa

from ..compiler.evaluator import ABSTAIN, BatchEvaluator, columns_needed
from ..compiler.spec import Spec
from .votes import VoteBatch, batch_ids

DEFAULT_BATCH_ROWS = 32_768
MEMO_LIMIT = 4096  # sub-expressions kept per batch before the memo is dropped


def predicate_hash(rule, fields: Optional[dict] = None) -> str:
    """Hash of a rule's normalized predicate (and of the columns its field names map to)."""
    h = hashlib.sha256(repr(rule.predicate.key()).encode("utf-8"))
    if fields:
        h.update(repr(sorted((name, f.column) for name, f in fields.items())).encode("utf-8"))
    return h.hexdigest()


def table_fingerprint(table: pa.Table | pa.RecordBatch) -> str:
    """A cheap identity of an in-memory table: its schema, size and buffer addresses."""
    h = hashlib.sha256(str(table.schema).encode("utf-8"))
    h.update(str(table.num_rows).encode())
    cols = table.columns
    for col in cols:
        chunks = col.chunks if isinstance(col, pa.ChunkedArray) else [col]
        for chunk in chunks:
            for buf in chunk.buffers():
                if buf is not None:
                    h.update(f"{buf.address}:{buf.size};".encode())
    return h.hexdigest()


def rule_masks_with(evaluator: BatchEvaluator, rules: list) -> list:
    """Like ``compiler.evaluator.rule_masks`` but on a given (memoizing) evaluator."""
    return [evaluator.predicate(r.predicate) for r in rules]


class IncrementalVotes:
    """Vote matrices for successive versions of a spec over one table, re-evaluating
    only the rules whose predicate changed.

    ``votes(spec)`` → (rows × rules) int8, -1 = abstain, identical to
    ``compiler.evaluator.vote_matrix(spec, table)``. ``evaluations`` counts predicates
    evaluated so far; ``last_evaluated`` names the rules the latest call evaluated.
    """

    def __init__(self, table: pa.Table, batch_rows: int = DEFAULT_BATCH_ROWS, threads: int = 4,
                 keep: int = 64):
        self.table = table
        self.batch_rows = batch_rows
        self.threads = threads
        self.keep = keep  # masks kept beyond the current spec's (undo, toggling an edit back)
        self.fingerprint = table_fingerprint(table)
        self._cache: "OrderedDict[str, np.ndarray]" = OrderedDict()
        self._lock = threading.Lock()
        self._evaluators: dict = {}  # batch start -> BatchEvaluator (memo kept across refreshes)
        self._evaluators_for = None  # the field mapping those memos were computed under
        self.evaluations = 0
        self.last_evaluated: list = []

    @property
    def num_rows(self) -> int:
        return self.table.num_rows

    def _key(self, spec: Spec, rule) -> str:
        return self.fingerprint + ":" + predicate_hash(rule, {n: spec.fields[n] for n in spec.fields})

    def _evaluate(self, spec: Spec, rules: list) -> list:
        """Masks of ``rules`` over the whole table, batch by batch on a thread pool."""
        n = self.table.num_rows
        if not rules:
            return []
        starts = list(range(0, n, self.batch_rows)) or [0]
        mapping = repr(sorted((name, f.column, spec.field_kinds.get(name)) for name, f in spec.fields.items()))
        with self._lock:
            if mapping != self._evaluators_for:
                self._evaluators, self._evaluators_for = {}, mapping
            evaluators = self._evaluators

        def one(start):
            ev = evaluators.get(start)
            if ev is None or len(ev.memo) > MEMO_LIMIT:
                ev = evaluators[start] = BatchEvaluator(spec, self.table.slice(start, self.batch_rows))
            ev.spec = spec  # same fields, so the memo's keys mean the same thing
            return rule_masks_with(ev, rules)

        if len(starts) == 1:
            parts = [one(0)]
        else:
            with ThreadPoolExecutor(max_workers=max(1, self.threads)) as pool:
                parts = list(pool.map(one, starts))
        return [np.concatenate([np.asarray(p[j], dtype=bool) for p in parts]) if n else np.zeros(0, bool)
                for j in range(len(rules))]

    def masks(self, spec: Spec) -> list:
        """One boolean mask per rule of ``spec`` (cached or evaluated now)."""
        keys = [self._key(spec, r) for r in spec.rules]
        with self._lock:
            have = {k: self._cache[k] for k in keys if k in self._cache}
        missing, seen = [], set()
        for rule, key in zip(spec.rules, keys):
            if key not in have and key not in seen:
                missing.append((rule, key))
                seen.add(key)
        fresh = self._evaluate(spec, [r for r, _ in missing])
        with self._lock:
            self.evaluations += len(missing)
            self.last_evaluated = [r.name for r, _ in missing]
            for (_, key), mask in zip(missing, fresh):
                have[key] = mask
                self._cache[key] = mask
            for key in keys:  # the current spec's masks are the most recently used
                self._cache.move_to_end(key)
            while len(self._cache) > len(set(keys)) + self.keep:
                self._cache.popitem(last=False)
        return [have[k] for k in keys]

    def column_keys(self, spec: Spec) -> list:
        """Per rule of ``spec``: a key of its vote column (equal keys, equal columns), for
        ``engine.analysis.IncrementalStats``."""
        return [f"{self._key(spec, r)}=>{r.label_index}" for r in spec.rules]

    def votes(self, spec: Spec) -> np.ndarray:
        masks = self.masks(spec)
        out = np.full((self.table.num_rows, len(masks)), ABSTAIN, dtype=np.int8, order="F")
        for j, (rule, mask) in enumerate(zip(spec.rules, masks)):
            out[mask, j] = rule.label_index
        return out

    def vote_batches(self, spec: Spec, source=None, id_column: Optional[str] = None, *, columns=(),
                     batch_rows: Optional[int] = None, progress=None, rule_columns: bool = True) -> Iterator[VoteBatch]:
        """``engine.votes.Engine``'s method, so code written against the seam runs on the
        studio's cache too. The data is the table this cache was made with: ``source`` names
        it for the caller and is not read."""
        votes = self.votes(spec)
        rows = batch_rows or self.batch_rows
        wanted = list(dict.fromkeys(columns_needed(spec) + ([id_column] if id_column else []) + list(columns)))
        for start in range(0, self.table.num_rows, rows):
            table = self.table.slice(start, rows).select(wanted)
            yield VoteBatch(batch_ids(table, id_column, "the studio's data", start), votes[start:start + rows], table)
            if progress:
                progress(table.num_rows)

    def clear(self) -> None:
        with self._lock:
            self._cache.clear()
