"""A compiled kernel for the hashed featurizer's transform (numba): the feature matrix's CSR.

The numpy path in :mod:`mteach.engine.features` hashes n-grams in many full-array passes
(flags, runs, prefix sums, sliding windows, lookups, cumulative sums), each as large as the
n-grams: hashing is a loop over bytes, which numpy can only do that way. These kernels do
the same work per row, fused, and over row chunks in parallel: read the row's UTF-8 bytes,
find its words (for ``char_wb``, its whitespace-separated words, padded) with the same
character tables, hash each n-gram with the same polynomial hash (``features.ngram_bucket``
is its definition), look the bucket up in the fitted column table (``_column``: a bit per
bucket, 256 KB for 2^20 buckets, so it stays in the cache) and write the entry — column
and idf / |row| as float32 — straight into the whole matrix's CSR arrays, every block of a
row side by side, so no block is stacked afterwards. The matrix is the numpy
path's, bit for bit: the same entries in the same order, the same float64 sums in the same
order (tests/engine/test_features_kernel.py checks it).

``features.Featurizer.transform`` drives them: ``count`` gives each row's n-grams per block
(the word / character structure only, no hashing), so every row of every block knows where
its entries go; ``fill`` hashes, looks up and writes them (``copy_rows`` writes the numeric
block); ``compact`` closes the gaps left by n-grams of buckets not fitted. Each row's entries
depend on that row alone, so the result does not depend on the number of threads.
``sparse_dot`` is the linear end model's product with that matrix, over rows in parallel.
The kernels release the GIL (the batches' votes are computed on other threads meanwhile).

This module needs numba (``pip install mteach[train]``); ``features`` imports it only when
numba is installed and ``MTEACH_NO_NUMBA`` is not set, and uses its numpy path otherwise.
Compiled code is cached on disk (``cache=True``): a process loads it rather than compiling
again (bench/README.md gives both costs).
"""
from __future__ import annotations

import os
import threading

import numba
import numpy as np
from numba import njit, prange, types
from numba.extending import intrinsic

if not os.environ.get("NUMBA_THREADING_LAYER"):
    # fork-safe and needs no other library; it runs one parallel kernel at a time: ``lock``
    numba.config.THREADING_LAYER = "workqueue"
# Every call holds it (a transform holds it around all of its calls): the workqueue layer
# aborts the process when two threads run parallel kernels at once.
lock = threading.RLock()

_u64 = np.uint64
_B = _u64(0x100000001B3)  # features._B and its inverse mod 2^64
_B_INV = _u64(pow(0x100000001B3, -1, 1 << 64))
_MIX = _u64(0x9E3779B97F4A7C15)  # features._MIX
_SPACE = _u64(32)


@intrinsic
def _popcount(typingctx, x):
    """The number of bits set in a uint64 (one ``popcnt`` instruction)."""
    def codegen(context, builder, signature, args):
        return builder.ctpop(args[0])
    return types.uint64(types.uint64), codegen


@njit(cache=True)
def _column(table, h, shift):
    """The column of the bucket ``h >> shift`` (-1: not fitted) in ``table``
    (``features.lookup_tables``): per 64 buckets, a bit per fitted one and the columns of the
    buckets before; its column is that plus the fitted buckets below it in its 64."""
    bucket = h >> shift
    g = np.int64(bucket >> _u64(6))
    below = table[g, 0] << (_u64(63) - (bucket & _u64(63)))  # its bit on top, those below it under
    if np.int64(below) >= 0:
        return -1
    return np.int64(table[g, 1]) + np.int64(_popcount(below)) - 1


@njit(cache=True)
def _char(data, i, table):
    """(whether the UTF-8 character at ``data[i]`` is in ``table``, its length in bytes)."""
    c = data[i]
    if c < 0x80:
        return table[c], 1
    if c >= 0xF0:
        cp = ((np.int64(c) & 0x07) << 18) | ((np.int64(data[i + 1]) & 0x3F) << 12) \
            | ((np.int64(data[i + 2]) & 0x3F) << 6) | (np.int64(data[i + 3]) & 0x3F)
        return table[cp], 4
    if c >= 0xE0:
        cp = ((np.int64(c) & 0x0F) << 12) | ((np.int64(data[i + 1]) & 0x3F) << 6) | (np.int64(data[i + 2]) & 0x3F)
        return table[cp], 3
    return table[((np.int64(c) & 0x1F) << 6) | (np.int64(data[i + 1]) & 0x3F)], 2


@njit(cache=True)
def _runs(data, s, e, table, want, starts, ends):
    """The maximal runs of characters of class ``want`` in bytes [s, e) (``tokens.flag_runs``):
    their number; their bounds go into ``starts`` / ``ends``. Without branches on the
    characters (runs are short: a branch would be mispredicted at most of their ends): each
    character's offset is written as the next start and the next end, and that one is kept
    (the count moves on) where a run starts or ends."""
    n_starts = 0
    n_ends = 0
    inside = 0
    i = s
    while i < e:
        cls, size = _char(data, i, table)
        now = np.int64(cls == want)
        starts[n_starts] = i
        ends[n_ends] = i
        n_starts += now & (1 - inside)
        n_ends += inside & (1 - now)
        inside = now
        i += size
    ends[n_ends] = e
    return n_ends + inside


@njit(cache=True)
def _per_length(units, lo, hi):
    """How many runs of lo..hi consecutive units a sequence of ``units`` has."""
    total = 0
    for n in range(lo, hi + 1):
        if units >= n:
            total += units - n + 1
    return total


@njit(cache=True)
def _count_row(data, s, e, char_kind, lo, hi, word_table, space_table, starts, ends):
    if not char_kind:
        return _per_length(_runs(data, s, e, word_table, True, starts, ends), lo, hi)
    total = 0
    for j in range(_runs(data, s, e, space_table, False, starts, ends)):
        c = 2  # the padded word's characters
        for i in range(starts[j], ends[j]):
            if (data[i] & 0xC0) != 0x80:
                c += 1
        total += 1 if c < lo else _per_length(c, lo, hi)
    return total


@njit(cache=True)
def _word_row(data, s, e, lo, hi, shift, word_table, columns, starts, ends, th, tp, out):
    """The row's word n-grams' columns (fitted ones) into ``out`` in the numpy path's order
    (by first token, then length); their number."""
    t = _runs(data, s, e, word_table, True, starts, ends)
    for j in range(t):  # each token's hash H and B^-length
        h = _u64(0)
        p = _u64(1)
        for i in range(starts[j], ends[j]):
            h += _u64(data[i]) * p
            p *= _B_INV
        th[j] = h
        tp[j] = p
    k = 0
    for j in range(t):
        h = th[j]
        p = tp[j]
        for n in range(1, min(hi, t - j) + 1):
            if n > 1:  # H(a + " " + b) = H(a) + 32 B^-|a| + B^-(|a|+1) H(b)
                q = p * _B_INV
                h += _SPACE * p + q * th[j + n - 1]
                p = q * tp[j + n - 1]
            if n >= lo:
                col = _column(columns, h * _MIX, shift)
                if col >= 0:
                    out[k] = col
                    k += 1
    return k


@njit(cache=True)
def _char_row(data, s, e, lo, hi, shift, space_table, columns, starts, ends, prefix, mixed, at, out):
    """The row's char_wb n-grams' columns (fitted ones) into ``out``: per whitespace-separated
    word padded with a space each side, per first character, per length (a padded word
    shorter than ``lo``: once, whole); their number. Over a padded word's bytes x_0..x_m-1,
    prefix[i] = sum_{j<i} x_j B^-j, so the span [a, b) hashes to (prefix[b] - prefix[a]) B^a
    and its bucket is the top bits of that times M: mixed[a] = B^a M."""
    k = 0
    for j in range(_runs(data, s, e, space_table, False, starts, ends)):
        ws, we = starts[j], ends[j]
        m = we - ws + 2
        prefix[0] = 0
        prefix[1] = _SPACE
        mixed[0] = _MIX
        mixed[1] = _MIX * _B
        p = _B_INV
        at[0] = 0  # where each character starts: the pad, the word's characters, the pad, the end
        c = 1
        for i in range(ws, we):
            x = i - ws + 1
            byte = data[i]
            if (byte & 0xC0) != 0x80:
                at[c] = x
                c += 1
            prefix[x + 1] = prefix[x] + _u64(byte) * p
            mixed[x + 1] = mixed[x] * _B
            p *= _B_INV
        prefix[m] = prefix[m - 1] + _SPACE * p
        at[c] = m - 1
        c += 1
        at[c] = m
        if c < lo:
            col = _column(columns, prefix[m] * _MIX, shift)
            if col >= 0:
                out[k] = col
                k += 1
            continue
        for g in range(c - lo + 1):
            a = at[g]
            base, mix = prefix[a], mixed[a]
            for n in range(lo, min(hi, c - g) + 1):
                col = _column(columns, (prefix[at[g + n]] - base) * mix, shift)
                if col >= 0:
                    out[k] = col
                    k += 1
    return k


@njit(cache=True)
def _add_products(cols, vals, start, stop, col_offset, dense, out):
    """``out`` += entries ``start``..``stop`` (columns ``cols`` + ``col_offset``, values ``vals``)
    @ ``dense``: each of ``out``'s sums added to in entry order, in float32, as scipy's product
    adds them. Each sum is a chain of dependent adds, so two are built side by side, in
    registers."""
    k = dense.shape[1]
    for j in range(0, k - 1, 2):
        t0, t1 = out[j], out[j + 1]
        for i in range(start, stop):
            c = cols[i] + col_offset
            t0 += vals[i] * dense[c, j]
            t1 += vals[i] * dense[c, j + 1]
        out[j], out[j + 1] = t0, t1
    if k % 2:
        t0 = out[k - 1]
        for i in range(start, stop):
            t0 += vals[i] * dense[cols[i] + col_offset, k - 1]
        out[k - 1] = t0


@njit(cache=True)
def _chunks(offsets, parts):
    """Row bounds of ``parts`` chunks of about equal bytes."""
    n = len(offsets) - 1
    parts = max(1, min(n, parts))
    bounds = np.empty(parts + 1, np.int64)
    bounds[0] = 0
    row = 0
    total = offsets[n] - offsets[0]
    for c in range(1, parts):
        target = offsets[0] + (total * c) // parts
        while row < n and offsets[row] < target:
            row += 1
        bounds[c] = row
    bounds[parts] = n
    return bounds


@njit(cache=True)
def _longest(offsets, r0, r1):
    m = 0
    for r in range(r0, r1):
        m = max(m, offsets[r + 1] - offsets[r])
    return m


@njit(cache=True, parallel=True, nogil=True)
def _count(data, offsets, char_kind, lo, hi, word_table, space_table, parts):
    n = len(offsets) - 1
    out = np.zeros(n, np.int64)
    bounds = _chunks(offsets, parts)
    for c in prange(len(bounds) - 1):
        r0, r1 = bounds[c], bounds[c + 1]
        size = _longest(offsets, r0, r1) + 1
        starts = np.empty(size, np.int64)
        ends = np.empty(size, np.int64)
        for r in range(r0, r1):
            out[r] = _count_row(data, offsets[r], offsets[r + 1], char_kind, lo, hi, word_table, space_table,
                                starts, ends)
    return out


@njit(cache=True)
def _row(data, s, e, char_kind, lo, hi, shift, word_table, space_table, columns, idf, sub_tf, scratch, cols, vals):
    """One row's fitted n-grams: their columns into ``cols`` and their values into ``vals``,
    idf / |row| as float32 (with ``sub_tf``: each distinct column once, increasing, tf idf /
    |row|); how many. ``scratch``: (starts, ends, token hashes / prefix, powers, character
    starts), each as long as the row's bytes + 3."""
    starts, ends, th, tp, at, weights = scratch
    if char_kind:
        k = _char_row(data, s, e, lo, hi, shift, space_table, columns, starts, ends, th, tp, at, cols)
    else:
        k = _word_row(data, s, e, lo, hi, shift, word_table, columns, starts, ends, th, tp, cols)
    total = 0.0
    if len(sub_tf):  # sublinear tf: each distinct column once, increasing, 1 + log(count)
        found = cols[:k]
        found.sort()
        m = 0
        for i in range(k):
            if m > 0 and found[i] == found[m - 1]:
                vals[m - 1] += 1
            else:
                found[m] = found[i]
                vals[m] = 1
                m += 1
        k = m
        for i in range(k):
            v = sub_tf[np.int64(vals[i])] * idf[cols[i]]
            total += v * v
        norm = np.sqrt(total)
        for i in range(k):
            vals[i] = np.float32(sub_tf[np.int64(vals[i])] * idf[cols[i]] / norm)
    else:  # each occurrence idf / |row|; |row|^2 added up in entry order, as numpy's bincount does
        for i in range(k):
            v = idf[cols[i]]
            weights[i] = v
            total += v * v
        norm = np.sqrt(total)
        for i in range(k):
            vals[i] = np.float32(weights[i] / norm)
    return k


@njit(cache=True)
def _scratch(longest, most):
    """``_row``'s scratch for rows of up to ``longest`` bytes and ``most`` n-grams."""
    size = longest + 3
    return (np.empty(size, np.int64), np.empty(size, np.int64), np.empty(size, np.uint64),
            np.empty(size, np.uint64), np.empty(size, np.int64), np.empty(most, np.float64))


@njit(cache=True)
def _most(lo, hi, longest):
    """At least as many n-grams of ``lo``..``hi`` units as a row of ``longest`` bytes has."""
    return 3 * (hi - lo + 1) * (longest + 3)


@njit(cache=True, parallel=True, nogil=True)
def _fill(data, offsets, char_kind, lo, hi, shift, word_table, space_table, columns, idf, sub_tf, col_offset,
          dest, out_cols, out_vals, parts):
    n = len(offsets) - 1
    kept = np.zeros(n, np.int64)
    bounds = _chunks(offsets, parts)
    for c in prange(len(bounds) - 1):
        longest = _longest(offsets, bounds[c], bounds[c + 1])
        scratch = _scratch(longest, _most(lo, hi, longest))
        for r in range(bounds[c], bounds[c + 1]):
            a = dest[r]
            k = _row(data, offsets[r], offsets[r + 1], char_kind, lo, hi, shift, word_table, space_table, columns,
                     idf, sub_tf, scratch, out_cols[a:], out_vals[a:])
            for i in range(a, a + k):
                out_cols[i] += col_offset
            kept[r] = k
    return kept


@njit(cache=True, parallel=True, nogil=True)
def _score(data, offsets, char_kind, lo, hi, shift, word_table, space_table, columns, idf, sub_tf, col_offset,
           dense, out, parts):
    bounds = _chunks(offsets, parts)
    for c in prange(len(bounds) - 1):
        longest = _longest(offsets, bounds[c], bounds[c + 1])
        size = _most(lo, hi, longest)
        scratch = _scratch(longest, size)
        cols = np.empty(size, np.int32)
        vals = np.empty(size, np.float32)
        for r in range(bounds[c], bounds[c + 1]):
            k = _row(data, offsets[r], offsets[r + 1], char_kind, lo, hi, shift, word_table, space_table, columns,
                     idf, sub_tf, scratch, cols, vals)
            _add_products(cols, vals, 0, k, col_offset, dense, out[r])
    return out


@njit(cache=True)
def _distinct(cols, vals, n, place, out_cols, out_vals):
    """The row's ``n`` entries as ``sum_duplicates`` merges them: each column once (in order of
    first occurrence here; ``place``: zeros, one per feature, left zeros), its entries added up
    in float32 in entry order; their number."""
    m = 0
    for i in range(n):
        c = cols[i]
        at = place[c]
        if at == 0:
            place[c] = m + 1
            out_cols[m] = c
            out_vals[m] = vals[i]
            m += 1
        else:
            out_vals[at - 1] += vals[i]
    for i in range(m):
        place[out_cols[i]] = 0
    return m


@njit(cache=True)
def _column_order(cols, vals, m, keys, one):
    """The ``m`` distinct entries sorted by column (the canonical order) in place."""
    bits = vals.view(np.uint32)
    ones = one.view(np.uint32)
    for i in range(m):
        keys[i] = (np.int64(cols[i]) << 32) | np.int64(bits[i])
    keys[:m].sort()
    for i in range(m):
        cols[i] = np.int32(keys[i] >> 32)
        ones[0] = np.uint32(keys[i] & 0xFFFFFFFF)
        vals[i] = one[0]


@njit(cache=True)
def _top(cols, vals, m, dense, w32, top, top_cols, top_vals):
    """Gradient x input of each of the row's ``m`` distinct entries (the gradient: the rows of
    ``dense`` times the class weights ``w32``, in float32, as ``EndModel.attributions``); the
    ``top`` largest positive ones into ``top_cols`` / ``top_vals``, largest first, of equal
    ones the lower column (the first in canonical order, as ``end_model.top_attributions``);
    their number."""
    got = 0
    least = 0.0  # what an entry must exceed: 0, then (``top`` kept) the smallest kept
    for i in range(m):
        c = cols[i]
        g = dense[c, 0] * w32[0]
        for j in range(1, dense.shape[1]):
            g += dense[c, j] * w32[j]
        v = np.float64(g * vals[i])
        if not v > least:  # most entries, once ``top`` are kept: a branch rarely mispredicted
            if not (got == top and v == least and c < top_cols[top - 1]):
                continue
        if got == top:
            at = top - 1  # the smallest kept makes room
        else:
            at = got
            got += 1
        while at > 0 and (top_vals[at - 1] < v or (top_vals[at - 1] == v and top_cols[at - 1] > c)):
            top_vals[at] = top_vals[at - 1]
            top_cols[at] = top_cols[at - 1]
            at -= 1
        top_vals[at] = v
        top_cols[at] = c
        if got == top:
            least = top_vals[top - 1]
    return got


@njit(cache=True, parallel=True, nogil=True)
def _score_top(data, offsets, blocks, shift, word_table, space_table, columns, idf, idf_at, sub_tf,
               num_ptr, num_cols, num_vals, num_offset, dense, bias, explain, top, out, top_cols, top_vals, top_n,
               parts):
    nb = blocks.shape[0]
    k_classes = dense.shape[1]
    bounds = _chunks(offsets[0], parts)
    for c in prange(len(bounds) - 1):
        r0, r1 = bounds[c], bounds[c + 1]
        longest = 0
        for f in range(offsets.shape[0]):
            longest = max(longest, _longest(offsets[f], r0, r1))
        size = 1
        for b in range(nb):
            size += _most(blocks[b, 2], blocks[b, 3], longest)
        scratch = _scratch(longest, size)
        most = 0
        for r in range(r0, r1):
            most = max(most, num_ptr[r + 1] - num_ptr[r])
        size += most
        cols = np.empty(size, np.int32)
        vals = np.empty(size, np.float32)
        merged_cols = np.empty(size, np.int32)
        merged_vals = np.empty(size, np.float32)
        place = np.zeros(dense.shape[0], np.int32)
        keys = np.empty(size if k_classes > 2 else 0, np.int64)
        one = np.empty(1, np.float32)
        z = np.empty(k_classes, np.float32)
        w64 = np.empty(k_classes, np.float64)
        w32 = np.empty(k_classes, np.float32)
        for r in range(r0, r1):
            pos = 0
            for b in range(nb):  # each block's entries multiplied in where found, as ``_score`` adds them
                f, char_kind, lo, hi, off = blocks[b, 0], blocks[b, 1], blocks[b, 2], blocks[b, 3], blocks[b, 4]
                k = _row(data, offsets[f, r], offsets[f, r + 1], char_kind == 1, lo, hi, shift, word_table,
                         space_table, columns[b], idf[idf_at[b]:idf_at[b + 1]], sub_tf, scratch, cols[pos:],
                         vals[pos:])
                for i in range(pos, pos + k):
                    cols[i] += off
                _add_products(cols, vals, pos, pos + k, 0, dense, out[r])
                pos += k
            start = pos
            for i in range(num_ptr[r], num_ptr[r + 1]):  # then the numeric block's, as ``_sparse_dot``
                cols[pos] = num_cols[i] + num_offset
                vals[pos] = num_vals[i]
                pos += 1
            _add_products(cols, vals, start, pos, 0, dense, out[r])
            slot = explain[r]
            if slot < 0:
                continue
            # the row as ``EndModel.attributions`` takes it: each column once (sum_duplicates)
            m = _distinct(cols, vals, pos, place, merged_cols, merged_vals)
            best = 0  # the class explained: the largest logit, the first of equal ones (argmax of the probabilities)
            for j in range(k_classes):
                if out[r, j] + bias[j] > out[r, best] + bias[best]:
                    best = j
            # d margin / d logits: 1 for the class, -softmax of the others' logits (decision_function's on
            # the canonical row: its entries added in column order); of two classes, -1 for the other
            for j in range(k_classes):
                w32[j] = np.float32(1.0) if j == best else np.float32(-1.0)
            if k_classes > 2:
                _column_order(merged_cols, merged_vals, m, keys, one)
                for j in range(k_classes):
                    z[j] = 0
                for i in range(m):
                    for j in range(k_classes):
                        z[j] += merged_vals[i] * dense[merged_cols[i], j]
                top_z = -np.inf
                for j in range(k_classes):
                    if j != best:
                        top_z = max(top_z, np.float64(z[j] + bias[j]))
                total = 0.0
                for j in range(k_classes):
                    w64[j] = 0.0 if j == best else np.exp(np.float64(z[j] + bias[j]) - top_z)
                    total += w64[j]
                for j in range(k_classes):
                    if j != best:
                        w32[j] = np.float32(-w64[j] / total)
            top_n[slot] = _top(merged_cols, merged_vals, m, dense, w32, top, top_cols[slot], top_vals[slot])
    return out


@njit(cache=True, parallel=True, nogil=True)
def _copy_rows(ptr, cols, vals, col_offset, dest, out_cols, out_vals, parts):
    n = len(ptr) - 1
    bounds = _chunks(ptr, parts)
    for c in prange(len(bounds) - 1):
        for r in range(bounds[c], bounds[c + 1]):
            for i in range(ptr[r], ptr[r + 1]):
                out_cols[dest[r] + i - ptr[r]] = cols[i] + col_offset
                out_vals[dest[r] + i - ptr[r]] = vals[i]
    return n


@njit(cache=True, nogil=True)
def _compact(dest, kept, out_cols, out_vals):
    """Each row's blocks' kept entries moved to be consecutive, rows in order (in place: an
    entry only ever moves left); the row pointers."""
    blocks, n = dest.shape
    ptr = np.zeros(n + 1, np.int64)
    w = 0
    for r in range(n):
        for b in range(blocks):
            src = dest[b, r]
            for i in range(kept[b, r]):
                out_cols[w + i] = out_cols[src + i]
                out_vals[w + i] = out_vals[src + i]
            w += kept[b, r]
        ptr[r + 1] = w
    return ptr


@njit(cache=True, parallel=True, nogil=True)
def _sparse_dot(ptr, cols, vals, col_offset, dense, out):
    for r in prange(len(ptr) - 1):
        _add_products(cols, vals, ptr[r], ptr[r + 1], col_offset, dense, out[r])
    return out


def _parts() -> int:
    return 8 * numba.get_num_threads()


def count(data, offsets, kind: str, lo: int, hi: int, word_table, space_table) -> np.ndarray:
    """Per row of ``offsets`` (int64, into ``data``, the case-folded UTF-8 bytes): how many
    n-grams it has — ``kind`` "w": word n-grams of ``lo``..``hi`` tokens, "c": char_wb n-grams
    of ``lo``..``hi`` characters (``word_table`` / ``space_table``: a bool per code point,
    ``tokens.char_table``)."""
    with lock:
        return _count(data, offsets, kind == "c", int(lo), int(hi), word_table, space_table, _parts())


def fill(data, offsets, kind: str, lo: int, hi: int, bits: int, word_table, space_table, columns, idf, sub_tf,
         col_offset: int, dest, out_cols, out_vals) -> np.ndarray:
    """Write each row's fitted n-grams (``columns``: the block's bucket -> column table of
    2^``bits`` buckets, ``features.lookup_tables``) from ``out_cols[dest[r]]`` on: its
    column plus ``col_offset`` and its value, idf / |row| as float32 — with ``sub_tf``
    (1 + log(count) for counts 0, 1, 2...; empty: raw counts) each distinct column once, in
    increasing order, tf idf / |row|. Returns how many each row kept."""
    with lock:
        return _fill(data, offsets, kind == "c", int(lo), int(hi), _u64(64 - int(bits)), word_table, space_table,
                     columns, idf, sub_tf, np.int32(col_offset), dest, out_cols, out_vals, _parts())


def copy_rows(ptr, cols, vals, col_offset: int, dest, out_cols, out_vals) -> None:
    """Copy a CSR block's rows (``vals`` float32) to ``dest``, columns shifted by ``col_offset``."""
    with lock:
        _copy_rows(ptr.astype(np.int64), cols, vals, np.int32(col_offset), dest, out_cols, out_vals, _parts())


def compact(dest: np.ndarray, kept: np.ndarray, out_cols, out_vals) -> np.ndarray:
    """``dest`` / ``kept``: (blocks, rows); see ``_compact``."""
    with lock:
        return _compact(dest, kept, out_cols, out_vals)


def sparse_dot(X, dense: np.ndarray, out=None, col_offset: int = 0) -> np.ndarray:
    """``X @ dense`` for a float32 CSR ``X`` and a float32 C-ordered ``dense`` (X's column j
    is row j + ``col_offset`` of ``dense``), over rows in parallel: each row's products added
    in entry order in float32, as scipy's are; added to ``out`` when given."""
    if out is None:
        out = np.zeros((X.shape[0], dense.shape[1]), np.float32)
    with lock:
        return _sparse_dot(X.indptr, X.indices, X.data, np.int32(col_offset), dense, out)


def score(data, offsets, kind: str, lo: int, hi: int, bits: int, word_table, space_table, columns, idf, sub_tf,
          col_offset: int, dense, out) -> np.ndarray:
    """``fill``'s entries multiplied into ``dense`` and added to ``out`` (rows x dense's
    columns, float32) instead of written: ``out`` += the block's rows @ ``dense`` (block
    columns from row ``col_offset``), in the order ``sparse_dot`` adds them, so the
    matrix is never made."""
    with lock:
        return _score(data, offsets, kind == "c", int(lo), int(hi), _u64(64 - int(bits)), word_table, space_table,
                      columns, idf, sub_tf, np.int32(col_offset), dense, out, _parts())


def score_top(data, offsets, blocks, bits: int, word_table, space_table, columns, idf, idf_at, sub_tf, numeric,
              num_offset: int, dense, bias, explain, top: int, out) -> tuple:
    """``score`` of every block of every row in one pass (``out`` += the rows @ ``dense``, added
    in the order ``Featurizer.dot`` adds them) and, for the rows with ``explain[r]`` >= 0, a
    linear model's (``dense``, ``bias``) attributions toward its largest logit, the ``top``
    largest positive ones: what ``end_model.top_attributions(EndModel.attributions(X, argmax))``
    gives on their feature matrix X, which is never made. ``data``: the text fields' bytes
    end to end, ``offsets`` (fields x rows + 1) into it; ``blocks`` (blocks x 5, int64): field,
    1 for char_wb n-grams, lo, hi, first column; ``columns``: the blocks' tables
    (``features.lookup_tables``); ``idf``: the blocks' end to end, block b's from
    ``idf_at[b]``; ``numeric``: a float32 CSR block (or None) whose column j is feature
    ``num_offset`` + j. Returns (columns, values, counts)
    per explained row (``explain[r]``: its slot), each row's largest first."""
    slots = int(explain.max(initial=-1)) + 1
    top_cols = np.zeros((slots, top), np.int32)
    top_vals = np.zeros((slots, top), np.float64)
    top_n = np.zeros(slots, np.int64)
    n = offsets.shape[1] - 1
    if numeric is None:
        num_ptr, num_cols, num_vals = np.zeros(n + 1, np.int64), np.zeros(0, np.int32), np.zeros(0, np.float32)
    else:
        num_ptr, num_cols, num_vals = numeric.indptr.astype(np.int64), numeric.indices, numeric.data
    with lock:
        _score_top(data, offsets, blocks, _u64(64 - int(bits)), word_table, space_table, columns, idf, idf_at, sub_tf,
                   num_ptr, num_cols, num_vals, np.int32(num_offset), dense, bias, explain, int(top), out, top_cols,
                   top_vals, top_n, _parts())
    return top_cols, top_vals, top_n


_P = _u64(0x100000001B3)  # ledger._P
_FIN = _u64(0xFF51AFD7ED558CCD)


@njit(cache=True, parallel=True, nogil=True)
def _id_hashes(data, offsets, parts):
    n = len(offsets) - 1
    out = np.empty(n, np.uint64)
    bounds = _chunks(offsets, parts)
    for c in prange(len(bounds) - 1):
        for r in range(bounds[c], bounds[c + 1]):
            h = _u64(0)
            p = _u64(1)
            for i in range(offsets[r], offsets[r + 1]):
                h += _u64(data[i]) * p
                p *= _P
            h += _u64(offsets[r + 1] - offsets[r]) * _MIX
            h ^= h >> _u64(33)
            h *= _FIN
            h ^= h >> _u64(33)
            out[r] = h
    return out


def id_hashes(data, offsets) -> np.ndarray:
    """``ledger.id_hashes`` of texts given as UTF-8 ``data`` and int64 ``offsets`` into it (the
    same numbers: sum of byte_i P^i, plus the length times M, then murmur3's finaliser), a
    loop over each id's bytes, ids in parallel."""
    with lock:
        return _id_hashes(data, offsets, _parts())
