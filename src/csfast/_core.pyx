# cython: language_level=3
"""Typed wrappers over the C kernels in csrc/ (interim numpy versions).

Every array argument may be a strided, unaligned view (a column of a mapped
structured array). uid arrays are native-endian uint64, 1-D.
"""
import numpy as np

cdef extern from "threads.h":
    int csf_default_threads() noexcept nogil

_threads = 0


def num_threads():
    """Threads the kernels use (CSFAST_NUM_THREADS, else every core)."""
    return _threads if _threads > 0 else csf_default_threads()


def set_num_threads(int n):
    """Use n threads from now on; 0 restores the default."""
    global _threads
    if n < 0:
        raise ValueError(f"number of threads must be >= 0, got {n}")
    _threads = n


def join_index(keys):
    """Row indices of a multi-way inner join on uid.

    Output rows follow keys[0] (duplicates kept); for every later input the
    last row holding the uid is chosen. Returns one intp array per input.
    """
    keys = list(keys)
    first = np.asarray(keys[0])
    sel = np.arange(len(first), dtype=np.intp)
    picks = []
    for k in keys[1:]:
        k = np.asarray(k)
        uniq_rev, idx_rev = np.unique(k[::-1], return_index=True)
        last = len(k) - 1 - idx_rev
        pos = np.searchsorted(uniq_rev, first[sel])
        pos[pos >= len(uniq_rev)] = 0
        found = uniq_rev[pos] == first[sel] if len(uniq_rev) else np.zeros(len(sel), bool)
        sel = sel[found]
        picks = [p[found] for p in picks]
        picks.append(last[pos[found]].astype(np.intp))
    return [sel] + picks


def isin(values, members):
    """Boolean mask: values[i] is among members."""
    return np.isin(np.asarray(values), np.asarray(members))


def repeats(keys, Py_ssize_t limit):
    """Rows (of the concatenation of keys) whose uid appeared in an earlier row.

    Returns (count, repeat_rows, first_rows): the number of such rows and,
    for at most `limit` of them, their global row and the global row of the
    uid's first occurrence.
    """
    allk = np.concatenate([np.asarray(k) for k in keys]) if keys else np.zeros(0, np.uint64)
    uniq, first, inv = np.unique(allk, return_index=True, return_inverse=True)
    is_first = np.zeros(len(allk), bool)
    is_first[first] = True
    rep = np.flatnonzero(~is_first)
    return len(rep), rep[:limit].astype(np.int64), first[inv[rep[:limit]]].astype(np.int64)


def first_occurrence(keys):
    """Per input, a mask of rows whose uid appears in no earlier row of any input."""
    keys = [np.asarray(k) for k in keys]
    allk = np.concatenate(keys) if keys else np.zeros(0, np.uint64)
    _, first = np.unique(allk, return_index=True)
    mask = np.zeros(len(allk), bool)
    mask[first] = True
    out, start = [], 0
    for k in keys:
        out.append(mask[start:start + len(k)])
        start += len(k)
    return out


def gather(src, index, out):
    """out[i] = src[index[i]] (index None: src itself).

    src and out may be strided and unaligned; out may be a wider string
    dtype of the same kind (zero-padded).
    """
    vals = src if index is None else src[index]
    _assign(out, vals)


def _assign(out, vals):
    if out.dtype.kind in "SU" and out.dtype != vals.dtype:
        out[...] = vals.astype(out.dtype)
    else:
        out[...] = vals


def str_maxlen(col):
    """Longest value of an S or U column, in characters (trailing NULs excluded)."""
    if len(col) == 0:
        return 0
    return int(np.char.str_len(np.asarray(col)).max())


def pack(columns, offsets, Py_ssize_t start, out):
    """Interleave rows start.. of columns into out (n, rowsize) uint8 buffer.

    Column j goes to bytes [offsets[j], offsets[j] + column itemsize) of each
    row, after conversion to the width implied by the next offset.
    """
    n = out.shape[0]
    for j, (col, off) in enumerate(zip(columns, offsets)):
        end = offsets[j + 1] if j + 1 < len(offsets) else out.shape[1]
        width = end - off
        part = np.ascontiguousarray(col[start:start + n])
        raw = part.view(np.uint8).reshape(n, -1) if n else np.zeros((0, part.dtype.itemsize), np.uint8)
        k = min(width, raw.shape[1])
        out[:, off:off + k] = raw[:, :k]
        if k < width:
            out[:, off + k:end] = 0
