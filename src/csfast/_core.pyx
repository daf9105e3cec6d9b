# cython: language_level=3
"""Typed wrappers over the C kernels in csrc/.

Every array argument may be a strided, unaligned, read-only view (a column
of a mapped structured array): the kernels read it in place through its data
pointer and strides, never through a copy. uid arrays are native-endian
64-bit integers, 1-D. Each wrapper converts its arguments to C types, makes
one kernel call with the GIL released, and turns the kernel's status into a
Python exception.
"""
from cpython.buffer cimport PyBUF_WRITABLE, PyBuffer_FillInfo
from libc.stddef cimport ptrdiff_t
from libc.stdint cimport int64_t, uint8_t, uint64_t
from libc.stdlib cimport free, malloc

import fcntl
import hashlib
import os

import numpy as np

cdef extern from "status.h":
    enum:
        CSF_OK
        CSF_ENOMEM
        CSF_EINDEX
        CSF_EINVAL
        CSF_ESYS
        CSF_ESHORT
    ctypedef struct csf_column:
        const char *data
        int64_t n
        ptrdiff_t stride

cdef extern from "threads.h":
    int csf_default_threads() noexcept nogil

cdef extern from "hash.h":
    ctypedef struct csf_hash_key:
        uint64_t mul_lo
        uint64_t mul_hi
        uint64_t add_lo
        uint64_t add_hi
    void csf_hash_set_key(const csf_hash_key *key) noexcept nogil
    int csf_hash(const csf_column *uids, uint64_t *out) noexcept nogil
    int csf_lookup(const csf_column *build, const csf_column *probe, int64_t *out_rows,
                   uint8_t *out_mask, int nthreads, int bits) noexcept nogil
    int csf_join(const csf_column *cols, int ncols, int64_t *const *out, int64_t *nout,
                 int nthreads, int bits) noexcept nogil
    int csf_repeats(const csf_column *cols, int ncols, int64_t cap, int64_t *count,
                    int64_t *rep_rows, int64_t *first_rows, int nthreads,
                    int bits) noexcept nogil
    int csf_first_occurrence(const csf_column *cols, int ncols, uint8_t *mask, int nthreads,
                             int bits) noexcept nogil

cdef extern from "partition.h":
    ctypedef struct csf_record:
        uint64_t uid
        int64_t row
    int csf_partition(const csf_column *uids, int64_t first_row, uint64_t seed, int bits,
                      csf_record *out, int64_t *counts, int nthreads) noexcept nogil

cdef extern from "gather.h":
    ctypedef struct csf_gather_args:
        const char *src
        int64_t src_n
        ptrdiff_t src_stride
        int64_t src_el
        const char *index
        ptrdiff_t index_stride
        char *out
        int64_t n
        ptrdiff_t out_stride
        int64_t out_el
        int64_t nelem
    ctypedef struct csf_pack_column:
        const char *data
        ptrdiff_t stride
        int64_t nelem
        int64_t el
        int64_t out_el
        int64_t offset
        int64_t width
    int csf_gather(const csf_gather_args *g, int nthreads) noexcept nogil
    int csf_gather_many(const csf_gather_args *g, int ncols, int nthreads) noexcept nogil
    int csf_pack(const csf_pack_column *cols, int ncols, int64_t n, char *out,
                 ptrdiff_t row_stride, int nthreads) noexcept nogil

cdef extern from "strcol.h":
    int csf_str_maxlen(const char *data, int64_t src_n, ptrdiff_t stride, int64_t nelem,
                       int64_t el, int unit, const char *index, ptrdiff_t index_stride,
                       int64_t n, int64_t *out, int nthreads) noexcept nogil

cdef extern from "filemap.h":
    int csf_map_file(int fd, int64_t size, void **out, int *err) noexcept nogil
    int csf_map_writable(void *addr, int64_t size, int *err) noexcept nogil
    int csf_unmap(void *addr, int64_t size, int *err) noexcept nogil
    enum:
        CSF_ADVISE_NORMAL
        CSF_ADVISE_RANDOM
        CSF_ADVISE_SEQUENTIAL
        CSF_ADVISE_WILLNEED
        CSF_ADVISE_POPULATE
    int csf_map_advise(void *addr, int64_t size, int64_t offset, int64_t length, int kind,
                       int *err) noexcept nogil
cdef extern from "filecopy.h":
    enum:
        CSF_COPY_NO_KERNEL
    int csf_copy_file_range(int src_fd, int64_t src_offset, int64_t length, int dst_fd,
                            int64_t dst_offset, int flags, int64_t *copied, int64_t *by_kernel,
                            int *err) noexcept nogil

_threads = 0
# Partition bits for the hash kernels: -1 lets the kernel choose from the
# input size. Only benchmarks change it (to measure what partitioning buys).
_bits = -1


def _seed_hash():
    """Key the uid hash of this process: random (os.urandom), or derived from
    CSFAST_HASH_SEED (any string) to reproduce a run's table layout and timing.

    Results never depend on the key, only the time taken does: a file made by
    someone who knew the key could hold uids that all collide.
    """
    seed = os.environ.get("CSFAST_HASH_SEED", "")
    raw = (hashlib.blake2b(seed.encode("utf-8", "surrogateescape"), digest_size=32,
                           person=b"csfast-uid-hash").digest() if seed else os.urandom(32))
    words = tuple(int.from_bytes(raw[i:i + 8], "little") for i in range(0, 32, 8))
    cdef csf_hash_key key
    key.mul_lo, key.mul_hi, key.add_lo, key.add_hi = words
    csf_hash_set_key(&key)
    return words


# Set once, at import, before any kernel can run.
_hash_key = _seed_hash()


def num_threads():
    """Threads the kernels use (CSFAST_NUM_THREADS, else every core)."""
    return _threads if _threads > 0 else csf_default_threads()


def set_num_threads(int n):
    """Use n threads from now on; 0 restores the default."""
    global _threads
    if n < 0:
        raise ValueError(f"number of threads must be >= 0, got {n}")
    _threads = n


def _set_partition_bits(int bits):
    """Force 2**bits hash partitions (0: one table; -1: automatic). For benchmarks."""
    global _bits
    _bits = bits


cdef int _check(int status, str what) except -1:
    if status == CSF_OK:
        return 0
    if status == CSF_ENOMEM:
        raise MemoryError(f"{what}: out of memory for scratch buffers")
    if status == CSF_EINDEX:
        raise IndexError(f"{what}: row index out of range")
    raise ValueError(f"{what}: inconsistent arguments (kernel status {status})")


cdef inline size_t _addr(a):
    """Address of an array's first element (works for read-only arrays too)."""
    return a.__array_interface__["data"][0]


def _as_uids(k):
    """k as a 1-D array of native 64-bit integers, a view whenever possible."""
    a = np.asarray(k)
    if a.ndim != 1:
        a = a.reshape(-1)
    dt = a.dtype
    if not (dt.kind in "ui" and dt.itemsize == 8 and dt.isnative):
        a = a.astype(np.uint64)
    return a


cdef void _fill_column(csf_column *c, a):
    c.data = <const char *>_addr(a)
    c.n = a.shape[0]
    c.stride = a.strides[0]


cdef csf_column *_columns(list arrays) except NULL:
    cdef Py_ssize_t i, m = len(arrays)
    cdef csf_column *cols = <csf_column *>malloc((m + 1) * sizeof(csf_column))
    if cols == NULL:
        raise MemoryError()
    for i in range(m):
        _fill_column(&cols[i], arrays[i])
    return cols


def _hash(uids):
    """The keyed hash the kernels compute for each uid (for tests)."""
    u = _as_uids(uids)
    out = np.empty(u.shape[0], dtype=np.uint64)
    cdef csf_column c
    _fill_column(&c, u)
    cdef uint64_t *op = <uint64_t *>_addr(out)
    with nogil:
        csf_hash(&c, op)
    return out


def join_index(keys):
    """Row indices of a multi-way inner join on uid.

    Output rows follow keys[0] (duplicates kept); for every later input the
    last row holding the uid is chosen. Returns one intp array per input.
    """
    arrays = [_as_uids(k) for k in keys]
    cdef int m = len(arrays)
    if m == 0:
        return []
    cdef Py_ssize_t n0 = arrays[0].shape[0]
    outs = [np.empty(n0, dtype=np.intp) for _ in range(m)]
    cdef csf_column *cols = _columns(arrays)
    cdef int64_t **ptrs = <int64_t **>malloc(m * sizeof(int64_t *))
    cdef int64_t nout = 0
    cdef int status, i, nt = num_threads(), bits = _bits
    if ptrs == NULL:
        free(cols)
        raise MemoryError()
    for i in range(m):
        ptrs[i] = <int64_t *>_addr(outs[i])
    with nogil:
        status = csf_join(cols, m, ptrs, &nout, nt, bits)
    free(cols)
    free(ptrs)
    _check(status, "join_index")
    if nout == n0:
        return outs
    # A much shorter result is copied so the full-size buffers are freed.
    return [o[:nout].copy() if nout < n0 // 2 else o[:nout] for o in outs]


def isin(values, members):
    """Boolean mask: values[i] is among members."""
    shape = np.shape(values)
    v = _as_uids(values)
    mem = _as_uids(members)
    out = np.empty(v.shape[0], dtype=bool)
    cdef csf_column vc, mc
    _fill_column(&vc, v)
    _fill_column(&mc, mem)
    cdef uint8_t *mask = <uint8_t *>_addr(out)
    cdef int status, nt = num_threads(), bits = _bits
    with nogil:
        status = csf_lookup(&mc, &vc, NULL, mask, nt, bits)
    _check(status, "isin")
    return out.reshape(shape)


def repeats(keys, Py_ssize_t limit):
    """Rows (of the concatenation of keys) whose uid appeared in an earlier row.

    Returns (count, repeat_rows, first_rows): the number of such rows and,
    for at most `limit` of them, their global row and the global row of the
    uid's first occurrence.
    """
    arrays = [_as_uids(k) for k in keys]
    cdef int m = len(arrays)
    cdef int64_t total = sum(a.shape[0] for a in arrays)
    cdef int64_t cap = min(max(limit, 0), total)
    # np.empty pages are only committed when written: a large cap costs nothing.
    rep = np.empty(cap, dtype=np.int64)
    first = np.empty(cap, dtype=np.int64)
    cdef int64_t *rp = <int64_t *>_addr(rep)
    cdef int64_t *fp = <int64_t *>_addr(first)
    cdef int64_t count = 0
    cdef int status, nt = num_threads(), bits = _bits
    cdef csf_column *cols = _columns(arrays)
    with nogil:
        status = csf_repeats(cols, m, cap, &count, rp, fp, nt, bits)
    free(cols)
    _check(status, "repeats")
    k = min(count, cap)
    if k < cap:
        rep, first = rep[:k].copy(), first[:k].copy()
    return int(count), rep, first


def first_occurrence(keys):
    """Per input, a mask of rows whose uid appears in no earlier row of any input."""
    arrays = [_as_uids(k) for k in keys]
    cdef int m = len(arrays)
    cdef int64_t total = sum(a.shape[0] for a in arrays)
    mask = np.empty(total, dtype=bool)
    cdef uint8_t *mp = <uint8_t *>_addr(mask)
    cdef int status, nt = num_threads(), bits = _bits
    cdef csf_column *cols = _columns(arrays)
    with nogil:
        status = csf_first_occurrence(cols, m, mp, nt, bits)
    free(cols)
    _check(status, "first_occurrence")
    out, start = [], 0
    for a in arrays:
        out.append(mask[start:start + a.shape[0]])
        start += a.shape[0]
    return out


RECORD = np.dtype([("uid", np.uint64), ("row", np.int64)])


def partition(uids, int64_t first_row, uint64_t seed, int bits):
    """(records, counts): uids as RECORD rows (uid, first_row + row), grouped by
    partition, the top `bits` bits (1..16) of splitmix64(uid + seed), each
    partition in row order; counts holds each partition's rows."""
    u = _as_uids(uids)
    if not 1 <= bits <= 16:
        raise ValueError(f"partition: bits must be 1 to 16, got {bits}")
    records = np.empty(u.shape[0], dtype=RECORD)
    counts = np.empty(1 << bits, dtype=np.int64)
    cdef csf_column c
    _fill_column(&c, u)
    cdef csf_record *rp = <csf_record *>_addr(records)
    cdef int64_t *cp = <int64_t *>_addr(counts)
    cdef int status, nt = num_threads()
    with nogil:
        status = csf_partition(&c, first_row, seed, bits, rp, cp, nt)
    _check(status, "partition")
    return records, counts


cdef bint _rows_contiguous(a):
    """Whether each row's item is one run of bytes (inner dimensions C-contiguous)."""
    cdef Py_ssize_t expect = a.dtype.itemsize
    cdef int d
    shape, strides = a.shape, a.strides
    for d in range(a.ndim - 1, 0, -1):
        if shape[d] != 1 and strides[d] != expect:
            return False
        expect *= shape[d]
    return True


cdef Py_ssize_t _elements(a):
    cdef Py_ssize_t k = 1
    for s in a.shape[1:]:
        k *= s
    return k


def _widens(sd, od, truncate=False):
    """od holds sd's values by copying bytes and zero-padding (same string
    kind); with truncate, od may also be a narrower string dtype (the caller
    knows the bytes cut off are NULs)."""
    if sd == od:
        return not sd.hasobject
    return (sd.kind == od.kind and sd.kind in "SU"
            and (truncate or od.itemsize >= sd.itemsize)
            and (sd.kind == "S" or sd.isnative == od.isnative))


def _index_array(index):
    """(usable, index): index as a 1-D intp array or None; usable False when
    only numpy's indexing covers it (a boolean or multi-dimensional index)."""
    if index is None:
        return True, None
    idx = np.asarray(index)
    if idx.size == 0 and idx.ndim == 1:
        return True, np.zeros(0, dtype=np.intp)  # [] is float64 to numpy
    if idx.ndim != 1 or idx.dtype.kind not in "iu":
        return False, idx
    if idx.dtype != np.intp:
        idx = idx.astype(np.intp)
    return True, idx


cdef bint _gather_args(csf_gather_args *g, src, idx, out, bint truncate) except -1:
    """Fill g for out[i] = src[idx[i]]; False when the byte-copy kernel cannot do it."""
    if not (isinstance(src, np.ndarray) and isinstance(out, np.ndarray)) or src.ndim == 0 \
            or src.shape[1:] != out.shape[1:] or not _widens(src.dtype, out.dtype, truncate) \
            or not _rows_contiguous(src) or not _rows_contiguous(out):
        return False
    if not out.flags.writeable:
        raise ValueError("gather: the output array is read-only")
    n = src.shape[0] if idx is None else idx.shape[0]
    if out.shape[0] != n:
        raise ValueError(f"gather: {n} rows do not fit an output of {out.shape[0]} rows")
    g.src = <const char *>_addr(src)
    g.src_n = src.shape[0]
    g.src_stride = src.strides[0]
    g.src_el = src.dtype.itemsize
    g.index = NULL if idx is None else <const char *>_addr(idx)
    g.index_stride = 0 if idx is None else idx.strides[0]
    g.out = <char *>_addr(out)
    g.n = n
    g.out_stride = out.strides[0]
    g.out_el = out.dtype.itemsize
    g.nelem = _elements(src)
    return True


def gather(src, index, out, *, truncate=False):
    """out[i] = src[index[i]] (index None: src itself).

    src and out may be strided and unaligned; out may be a wider string
    dtype of the same kind (zero-padded), or with truncate a narrower one
    (each value cut to out's width).
    """
    cdef csf_gather_args g
    usable, idx = _index_array(index)
    if not usable or not _gather_args(&g, src, idx, out, truncate):
        # Anything the byte-copy kernel does not cover keeps numpy's semantics.
        _assign(out, src if index is None else np.asarray(src)[index])
        return
    cdef int status, nt = num_threads()
    with nogil:
        status = csf_gather(&g, nt)
    _check(status, "gather")


def gather_many(srcs, index, outs, *, truncate=False):
    """outs[j][i] = srcs[j][index[i]] for every j, as gather does column by column.

    Columns of one table share the cache lines of its rows: gathering them
    together, a block of rows at a time, reads each source row once.
    """
    srcs, outs = list(srcs), list(outs)
    if len(srcs) != len(outs):
        raise ValueError(f"gather_many: {len(srcs)} sources but {len(outs)} outputs")
    usable, idx = _index_array(index)
    cdef Py_ssize_t j, m = 0
    cdef csf_gather_args *g = <csf_gather_args *>malloc((len(srcs) + 1) * sizeof(csf_gather_args))
    if g == NULL:
        raise MemoryError()
    cdef int status = CSF_OK, nt = num_threads()
    try:
        for j in range(len(srcs)):
            if not usable or not _gather_args(&g[m], srcs[j], idx, outs[j], truncate):
                _assign(outs[j], srcs[j] if index is None else np.asarray(srcs[j])[index])
            else:
                m += 1
        if m:
            with nogil:
                status = csf_gather_many(g, <int>m, nt)
    finally:
        free(g)
    _check(status, "gather_many")


def _assign(out, vals):
    if out.dtype.kind in "SU" and out.dtype != vals.dtype:
        out[...] = vals.astype(out.dtype)
    else:
        out[...] = vals


def str_maxlen(col, index=None):
    """Longest value of an S or U column, in characters (trailing NULs
    excluded); of its rows at index (integers, negative from the end) if given."""
    a = np.asarray(col)
    if a.dtype.kind not in "SU":
        raise TypeError(f"str_maxlen needs a string column, not {a.dtype}")
    if a.ndim == 0:
        a = a.reshape(1)
    usable, idx = _index_array(index)
    if not usable:
        a, idx = a[idx], None
    if a.size == 0 or (idx is not None and len(idx) == 0):
        return 0
    if not _rows_contiguous(a):
        a = np.ascontiguousarray(a)
    cdef int64_t best = 0
    cdef const char *data = <const char *>_addr(a)
    cdef int64_t src_n = a.shape[0], nelem = _elements(a), el = a.dtype.itemsize
    cdef int64_t n = src_n if idx is None else idx.shape[0]
    cdef const char *rows = NULL if idx is None else <const char *>_addr(idx)
    cdef ptrdiff_t stride = a.strides[0], index_stride = 0 if idx is None else idx.strides[0]
    cdef int unit = 1 if a.dtype.kind == "S" else 4
    cdef int status, nt = num_threads()
    with nogil:
        status = csf_str_maxlen(data, src_n, stride, nelem, el, unit, rows, index_stride, n,
                                &best, nt)
    _check(status, "str_maxlen")
    return int(best)


def pack(columns, offsets, Py_ssize_t start, out):
    """Interleave rows start.. of columns into out (n, rowsize) uint8 buffer.

    Column j goes to bytes [offsets[j], next offset or rowsize) of each row:
    string columns element by element, zero-padded or truncated to that
    width; other columns byte for byte.
    """
    if out.ndim != 2 or out.dtype.itemsize != 1 or (out.shape[0] > 1 and out.strides[1] != 1):
        raise ValueError("pack: out must be a 2-D uint8 buffer with contiguous rows")
    if not out.flags.writeable:
        raise ValueError("pack: the output buffer is read-only")
    if out.shape[0] == 0:
        return
    columns = list(columns)
    offsets = [int(o) for o in offsets]
    if len(offsets) != len(columns):
        raise ValueError(f"pack: {len(columns)} columns but {len(offsets)} offsets")
    cdef Py_ssize_t n = out.shape[0], rowsize = out.shape[1]
    cdef int m = len(columns), j, status = CSF_OK, nt = num_threads()
    cdef char *dst
    cdef ptrdiff_t row_stride
    keep = []
    cdef csf_pack_column *cols = <csf_pack_column *>malloc((m + 1) * sizeof(csf_pack_column))
    if cols == NULL:
        raise MemoryError()
    try:
        for j in range(m):
            col = np.asarray(columns[j])
            off = offsets[j]
            end = offsets[j + 1] if j + 1 < m else rowsize
            if col.ndim == 0 or col.shape[0] < start + n:
                raise ValueError(f"pack: column {j} has {len(col)} rows, "
                                 f"rows {start}..{start + n} are needed")
            if col.dtype.hasobject:
                raise TypeError(f"pack: column {j} holds Python objects")
            if off < 0 or end > rowsize or end < off:
                raise ValueError(f"pack: column {j} bytes {off}..{end} outside a row of {rowsize}")
            base = 0
            if not _rows_contiguous(col):
                col = np.ascontiguousarray(col[start:start + n])
            else:
                base = start
            keep.append(col)
            nelem = _elements(col)
            el = col.dtype.itemsize
            width = end - off
            if col.dtype.kind in "SU" and nelem > 0 and width % nelem == 0:
                out_el = width // nelem  # each string element padded or truncated
            else:
                el, nelem = el * nelem, 1  # one run of bytes per row
                out_el = min(width, el)
            cols[j].data = <const char *>_addr(col) + <ptrdiff_t>(base * col.strides[0])
            cols[j].stride = col.strides[0]
            cols[j].nelem = nelem
            cols[j].el = el
            cols[j].out_el = out_el
            cols[j].offset = off
            cols[j].width = width
        dst = <char *>_addr(out)
        row_stride = out.strides[0]
        with nogil:
            status = csf_pack(cols, m, n, dst, row_stride, nt)
    finally:
        free(cols)
    _check(status, "pack")


_ADVICE = {
    "normal": CSF_ADVISE_NORMAL,
    "random": CSF_ADVISE_RANDOM,
    "sequential": CSF_ADVISE_SEQUENTIAL,
    "willneed": CSF_ADVISE_WILLNEED,
    "populate": CSF_ADVISE_POPULATE,
}


cdef class FileMap:
    """A private (copy-on-write) map of a file's first ``size`` bytes.

    Holds no file descriptor: the caller closes its own once this exists, so
    thousands of maps cost no descriptors. The buffer is read-only until
    ``make_writable``; from then on writes change this map's pages only,
    never the file. Unmapped when the last buffer that views it is released.
    ``owner`` is free for the caller (the Dataset records who may write).
    """

    cdef char *addr
    cdef int64_t size
    cdef bint writable
    cdef public object owner

    def __cinit__(self, int fd, int64_t size):
        cdef void *p = NULL
        cdef int err = 0, status
        with nogil:
            status = csf_map_file(fd, size, &p, &err)
        if status == CSF_ESYS:
            raise OSError(err, f"cannot map {size} bytes: {os.strerror(err)}")
        if status == CSF_ESHORT:
            raise EOFError(f"the file holds fewer than {size} bytes")
        _check(status, "FileMap")
        self.addr = <char *>p
        self.size = size

    def __dealloc__(self):
        cdef int err = 0
        if self.addr != NULL:
            csf_unmap(self.addr, self.size, &err)
            self.addr = NULL

    @property
    def writable(self):
        return bool(self.writable)

    def __len__(self):
        return self.size

    def make_writable(self):
        """Make the pages writable (private: the file never changes); OSError if refused."""
        cdef int err = 0, status
        if self.writable:
            return
        with nogil:
            status = csf_map_writable(self.addr, self.size, &err)
        if status == CSF_ESYS:
            raise OSError(err, os.strerror(err))
        _check(status, "FileMap.make_writable")
        self.writable = True

    def advise(self, str kind, int64_t offset=0, length=None):
        """Tell the kernel how bytes [offset, offset + length) will be read.

        ``kind``: ``"sequential"`` (a whole-file scan: larger read-ahead),
        ``"willneed"`` (read the range into the page cache now),
        ``"populate"`` (also map every page now, one call instead of a page
        fault per few pages: for a range about to be read whole),
        ``"random"`` (no read-ahead or fault-around), ``"normal"`` (the
        default). Advice changes speed only, never contents. ValueError for
        an unknown kind or a range outside the map; OSError if the kernel
        refuses (``"populate"`` needs Linux 5.14, and fails if the file
        shrank under the map).
        """
        cdef int k = _ADVICE.get(kind, -1)
        if k < 0:
            raise ValueError(f"FileMap.advise: unknown kind {kind!r}, "
                             f"expected one of {', '.join(_ADVICE)}")
        cdef int64_t n = self.size - offset if length is None else length
        if offset < 0 or n < 0 or offset > self.size or n > self.size - offset:
            raise ValueError(f"FileMap.advise: bytes {offset}..{offset + n} "
                             f"outside a map of {self.size}")
        cdef int err = 0, status
        with nogil:
            status = csf_map_advise(self.addr, self.size, offset, n, k, &err)
        if status == CSF_ESYS:
            raise OSError(err, f"FileMap.advise({kind!r}): {os.strerror(err)}")
        _check(status, "FileMap.advise")

    def __getbuffer__(self, Py_buffer *buffer, int flags):
        if (flags & PyBUF_WRITABLE) and not self.writable:
            raise BufferError("the map is read-only")
        PyBuffer_FillInfo(buffer, self, self.addr, self.size, not self.writable, flags)

    def __releasebuffer__(self, Py_buffer *buffer):
        pass


def copy_file_range(src, int64_t src_offset, int64_t length, int dst_fd, int64_t dst_offset,
                    *, bint use_kernel=True):
    """Copy ``length`` bytes of ``src`` (a file descriptor or a path) at
    ``src_offset`` into the file ``dst_fd`` at ``dst_offset``.

    The kernel copies them (``copy_file_range(2)``: no trip through this
    process's memory; on a file system with reflinks, no data moved) where
    it can; across file systems or on old kernels, a read/write loop does
    (``use_kernel=False``: the loop does it all). Neither descriptor's file
    position moves. Returns the number of bytes the kernel copied (the rest
    went through the loop). OSError if the source ends before ``length``
    bytes or a read or write fails (ENOSPC...): ``dst_fd`` may then hold
    part of the bytes. ValueError for negative offsets or lengths, or a
    ``dst_fd`` opened with O_APPEND (its writes would land at its end).
    """
    if src_offset < 0 or length < 0 or dst_offset < 0:
        raise ValueError(f"copy_file_range: negative offset or length "
                         f"({src_offset}, {length}, {dst_offset})")
    if fcntl.fcntl(dst_fd, fcntl.F_GETFL) & os.O_APPEND:
        raise ValueError("copy_file_range: the destination is opened with O_APPEND")
    cdef int fd, err = 0, status, flags = 0 if use_kernel else CSF_COPY_NO_KERNEL
    cdef int64_t copied = 0, by_kernel = 0
    name = src
    own = not isinstance(src, int)
    fd = os.open(src, os.O_RDONLY | os.O_CLOEXEC) if own else src
    try:
        with nogil:
            status = csf_copy_file_range(fd, src_offset, length, dst_fd, dst_offset, flags,
                                         &copied, &by_kernel, &err)
    finally:
        if own:
            os.close(fd)
    if status == CSF_ESHORT:
        raise OSError(f"copy_file_range: {name!r} ended after {copied} of {length} bytes "
                      f"from offset {src_offset}")
    if status == CSF_ESYS:
        raise OSError(err, f"copy_file_range: {os.strerror(err)} after {copied} of "
                           f"{length} bytes", name)
    _check(status, "copy_file_range")
    return int(by_kernel)
