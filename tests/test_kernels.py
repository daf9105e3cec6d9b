"""The C kernels of csfast._core against brute-force Python and numpy references.

Inputs are taken the way dataset.py passes them: columns of packed (so
unaligned), often read-only structured arrays, interlaced outputs, wider
string outputs, sub-array fields. Each kernel is run with 1 and 2 threads
and with forced hash partitioning, so every code path meets small inputs.
.ci/run runs this file again against a build with AddressSanitizer and
UndefinedBehaviorSanitizer, so every input here also checks that the C
reads and writes only what it should.
"""

import errno
import os
from contextlib import contextmanager

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from csfast import _core, _lz4
from csfast.errors import CsFormatError

MAXU = 2**64 - 1
POOL = [0, 1, 2, 3, MAXU, MAXU - 1, 2**63, 12345678901234567890]

uid_lists = st.lists(st.one_of(st.sampled_from(POOL), st.integers(0, MAXU)), max_size=40)
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@contextmanager
def kernel_mode(threads: int, bits: int):
    """Run with `threads` threads and 2**bits hash partitions (-1: automatic)."""
    old = _core._threads
    _core.set_num_threads(threads)
    _core._set_partition_bits(bits)
    try:
        yield
    finally:
        _core.set_num_threads(old)
        _core._set_partition_bits(-1)


MODES = [(1, -1), (2, -1), (1, 0), (2, 3), (1, 6)]


def packed_column(values: np.ndarray, readonly: bool = True) -> np.ndarray:
    """values as a column of a packed structured array: strided, unaligned."""
    values = np.asarray(values)
    dt = np.dtype([("pad", "u1"), ("col", values.dtype, values.shape[1:]), ("tail", "S3")])
    rec = np.zeros(len(values), dtype=dt)
    rec["col"] = values
    if readonly:
        rec = np.frombuffer(rec.tobytes(), dtype=dt)  # truly read-only memory
    col = rec["col"]
    assert len(values) == 0 or col.ctypes.data % 8 != 0 or values.dtype.itemsize == 1
    return col


def uid_column(uids: list[int], how: int) -> np.ndarray:
    a = np.array(uids, dtype=np.uint64)
    if how == 0:
        return a
    if how == 1:
        return packed_column(a)
    return np.ascontiguousarray(a[::-1])[::-1]  # negative stride


# ------------------------------------------------------------------ references


def ref_join(keys: list[list[int]]) -> list[list[int]]:
    last = []
    for k in keys[1:]:
        d = {}
        for i, u in enumerate(k):
            d[u] = i
        last.append(d)
    out = [[] for _ in keys]
    for i, u in enumerate(keys[0]):
        if all(u in d for d in last):
            out[0].append(i)
            for j, d in enumerate(last):
                out[j + 1].append(d[u])
    return out


def ref_first(keys: list[list[int]]) -> list[int]:
    seen, first = {}, []
    for r, u in enumerate(u for k in keys for u in k):
        first.append(seen.setdefault(u, r))
    return first


# ------------------------------------------------------------------ hash kernels


@SETTINGS
@given(st.lists(uid_lists, min_size=1, max_size=10), st.integers(0, 2), st.sampled_from(MODES))
def test_join_index(keys, how, mode):
    cols = [uid_column(k, how) for k in keys]
    with kernel_mode(*mode):
        got = _core.join_index(cols)
    want = ref_join(keys)
    assert len(got) == len(keys)
    for g, w in zip(got, want, strict=True):
        assert g.dtype == np.intp
        assert g.tolist() == w


@SETTINGS
@given(uid_lists, uid_lists, st.integers(0, 2), st.sampled_from(MODES))
def test_isin(values, members, how, mode):
    with kernel_mode(*mode):
        got = _core.isin(uid_column(values, how), uid_column(members, 2 - how))
    s = set(members)
    assert got.dtype == bool
    assert got.tolist() == [u in s for u in values]


@SETTINGS
@given(
    st.lists(uid_lists, max_size=10), st.integers(0, 2), st.integers(0, 8), st.sampled_from(MODES)
)
def test_repeats_and_first_occurrence(keys, how, limit, mode):
    cols = [uid_column(k, how) for k in keys]
    with kernel_mode(*mode):
        count, rep, first = _core.repeats(cols, limit)
        masks = _core.first_occurrence(cols)
    ref = ref_first(keys)
    reps = [r for r, f in enumerate(ref) if f != r]
    assert count == len(reps)
    assert rep.tolist() == reps[:limit]
    assert first.tolist() == [ref[r] for r in reps[:limit]]
    assert [len(m) for m in masks] == [len(k) for k in keys]
    flat = [bool(x) for m in masks for x in m]
    assert flat == [f == r for r, f in enumerate(ref)]


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("bits", [-1, 0])
def test_hash_kernels_large(threads, bits):
    """More rows than one partition and one thread's share; numpy references."""
    rng = np.random.default_rng(7)
    pool = rng.integers(0, 2**64, size=150_000, dtype=np.uint64, endpoint=False)
    pool[:2] = [0, MAXU]
    a = pool[rng.integers(0, len(pool), size=200_000)]
    b = pool[rng.integers(0, len(pool), size=180_000)]
    ca, cb = packed_column(a), packed_column(b)
    with kernel_mode(threads, bits):
        ia, ib = _core.join_index([ca, cb])
        mask = _core.isin(ca, cb)
        count, rep, first = _core.repeats([ca, cb], 1 << 62)
        fo = _core.first_occurrence([ca, cb])
    # join: last row of b per uid, via numpy on the reversed array
    ub, ridx = np.unique(b[::-1], return_index=True)
    last_b = len(b) - 1 - ridx
    pos = np.searchsorted(ub, a).clip(0, len(ub) - 1)
    hit = ub[pos] == a
    assert np.array_equal(ia, np.flatnonzero(hit))
    assert np.array_equal(ib, last_b[pos[hit]])
    assert np.array_equal(mask, np.isin(a, b))
    allk = np.concatenate([a, b])
    _, firsts, inv = np.unique(allk, return_index=True, return_inverse=True)
    is_first = np.zeros(len(allk), bool)
    is_first[firsts] = True
    assert count == int((~is_first).sum())
    assert np.array_equal(rep, np.flatnonzero(~is_first))
    assert np.array_equal(first, firsts[inv[rep]])
    assert np.array_equal(np.concatenate(fo), is_first)


def test_hash_empty_inputs():
    e = np.zeros(0, np.uint64)
    assert [len(x) for x in _core.join_index([e, e])] == [0, 0]
    assert _core.isin(e, np.arange(3, dtype=np.uint64)).shape == (0,)
    assert not _core.isin(np.arange(3, dtype=np.uint64), e).any()
    count, rep, first = _core.repeats([], 5)
    assert count == 0 and len(rep) == 0 and len(first) == 0
    assert _core.first_occurrence([]) == []


# ------------------------------------------------------------------ gather

ITEM_DTYPES = [
    "u1",
    "b1",
    "<i2",
    ">i2",
    "<u4",
    "<f4",
    ">f8",
    "<i8",
    "<c8",
    "<c16",
    "S1",
    "S3",
    "S7",
    "S12",
    "S16",
    "S96",
    "S5000",
    "<U1",
    "<U3",
    "V12",
    "V24",
]
SUBSHAPES = [(), (2,), (4,), (2, 3)]


def fill(dtype: np.dtype, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    raw = rng.integers(0, 256, size=int(np.prod(shape)) * dtype.itemsize, dtype=np.uint8)
    a = (
        raw.view(dtype).reshape(shape)
        if dtype.kind != "U"
        else rng.integers(1, 0x10FFFF, size=shape + (dtype.itemsize // 4,), dtype=np.uint32)
        .view(dtype)
        .reshape(shape)
    )
    if dtype.kind == "S":  # realistic strings: short values, zero padding
        lens = rng.integers(0, dtype.itemsize + 1, size=shape)
        a = a.copy()
        flat, fl = a.reshape(-1), lens.reshape(-1)
        for i in range(len(flat)):
            flat[i] = bytes(flat[i])[: fl[i]].replace(b"\0", b"x")
    return a


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(ITEM_DTYPES),
    st.sampled_from(SUBSHAPES),
    st.integers(0, 40),
    st.integers(0, 3),
    st.integers(0, 2**32),
    st.sampled_from([1, 2]),
    st.booleans(),
    st.integers(0, 2),
)
def test_gather(dt, sub, n, out_kind, seed, threads, indexed, widen):
    rng = np.random.default_rng(seed)
    dtype = np.dtype(dt)
    vals = fill(dtype, (n,) + sub, rng)
    src = packed_column(vals, readonly=bool(seed % 2))
    index = None
    if indexed:
        index = rng.integers(-n, n, size=rng.integers(0, 50)) if n else np.zeros(0, np.intp)
        if seed % 3 == 0:
            index = index.astype(np.int32)
    want = vals if index is None else vals[index]
    out_dtype = dtype
    if widen and dtype.kind in "SU":
        unit = 4 if dtype.kind == "U" else 1
        out_dtype = np.dtype(f"{dtype.kind}{dtype.itemsize // unit + widen * 5}")
    m = len(want)
    if out_kind == 0:
        out = np.zeros((m,) + sub, out_dtype)
        view = out
    elif out_kind == 1:  # interlaced, as Dataset.interlace writes
        out = np.zeros((3 * m,) + sub, out_dtype)
        view = out[1::3]
    elif out_kind == 2:  # a field of a packed structured array
        rec = np.zeros(m, np.dtype([("a", "u1"), ("f", out_dtype, sub)]))
        out, view = rec, rec["f"]
    else:  # reversed rows
        out = np.zeros((m,) + sub, out_dtype)
        view = out[::-1]
    with kernel_mode(threads, -1):
        _core.gather(src, index, view)
    expect = want.astype(out_dtype)
    got = view.copy()
    assert got.tobytes() == np.ascontiguousarray(expect).tobytes()
    if out_kind == 1:  # the rows between stay untouched
        rest = np.concatenate([out[0::3], out[2::3]])
        assert not np.ascontiguousarray(rest).view(np.uint8).any()


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("itemsize", [1, 2, 4, 8, 12, 16, 24, 32, 380])
def test_gather_large(threads, itemsize):
    """Enough rows for every thread to take part, fast paths by item size."""
    rng = np.random.default_rng(itemsize)
    n = 2_400_000 // itemsize + 1000  # over 2 MB: two threads take part
    vals = rng.integers(0, 256, size=(n, itemsize), dtype=np.uint8).view(f"V{itemsize}")[:, 0]
    src = packed_column(vals)
    index = rng.permutation(n)
    with kernel_mode(threads, -1):
        out = np.empty(n, vals.dtype)
        _core.gather(src, index, out)
        assert out.tobytes() == vals[index].tobytes()
        whole = np.empty(n, vals.dtype)
        _core.gather(vals, None, whole)
        assert whole.tobytes() == vals.tobytes()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(st.sampled_from(ITEM_DTYPES), st.sampled_from(SUBSHAPES[:3]), st.integers(0, 1)),
        min_size=1,
        max_size=6,
    ),
    st.integers(0, 300),
    st.integers(0, 2**32),
    st.sampled_from([1, 2]),
    st.booleans(),
)
def test_gather_many(fields, n, seed, threads, indexed):
    """Columns of one packed table gathered together, as a join materializes them."""
    rng = np.random.default_rng(seed)
    descr = [("pad", "u1")] + [(f"f{j}", dt, sub) for j, (dt, sub, _) in enumerate(fields)]
    rec = np.zeros(n, np.dtype(descr))
    for j, (dt, sub, _) in enumerate(fields):
        rec[f"f{j}"] = fill(np.dtype(dt), (n,) + sub, rng)
    rec = np.frombuffer(rec.tobytes(), rec.dtype)
    index = rng.integers(-n, n, size=rng.integers(0, 400)) if indexed and n else None
    srcs, outs, wants = [], [], []
    for j, (dt, _sub, widen) in enumerate(fields):
        dtype = np.dtype(dt)
        if widen and dtype.kind in "SU":
            unit = 4 if dtype.kind == "U" else 1
            dtype = np.dtype(f"{dtype.kind}{dtype.itemsize // unit + 3}")
        col = rec[f"f{j}"]
        want = (col if index is None else col[index]).astype(dtype)
        srcs.append(col)
        outs.append(np.zeros(want.shape, dtype))
        wants.append(want)
    with kernel_mode(threads, -1):
        _core.gather_many(srcs, index, outs)
    for o, w in zip(outs, wants, strict=True):
        assert o.tobytes() == w.tobytes()


def test_gather_many_large():
    rng = np.random.default_rng(5)
    n = 100_000
    rec = np.zeros(n, np.dtype([("a", "<u8"), ("p", "S40"), ("x", "<f4", (3,))]))
    rec["a"] = rng.integers(0, 2**63, n)
    rec["p"] = [b"f%d" % i for i in range(n)]
    rec["x"] = rng.random((n, 3))
    index = rng.permutation(n)
    for threads in (1, 2):
        outs = [np.empty((n,) + rec[k].shape[1:], rec[k].dtype) for k in rec.dtype.names]
        with kernel_mode(threads, -1):
            _core.gather_many([rec[k] for k in rec.dtype.names], index, outs)
        for k, o in zip(rec.dtype.names, outs, strict=True):
            assert np.array_equal(o, rec[k][index])


def test_gather_errors():
    src = np.arange(5, dtype=np.int64)
    with pytest.raises(IndexError):
        _core.gather(src, np.array([0, 5]), np.empty(2, np.int64))
    with pytest.raises(IndexError):
        _core.gather(src, np.array([-6]), np.empty(1, np.int64))
    ro = np.empty(5, np.int64)
    ro.flags.writeable = False
    with pytest.raises(ValueError):
        _core.gather(src, None, ro)
    empty = np.empty(0, np.int64)
    _core.gather(src, [], empty)
    out = np.empty(2, np.int64)
    _core.gather(src, np.array([True, False, True, False, True]).nonzero()[0][:2], out)
    assert out.tolist() == [0, 2]


# ------------------------------------------------------------------ strings


@settings(max_examples=80, deadline=None)
@given(
    st.lists(st.binary(max_size=20), max_size=30),
    st.sampled_from([(), (3,)]),
    st.sampled_from([1, 2]),
)
def test_str_maxlen_bytes(values, sub, threads):
    a = np.array(values or [b""], dtype="S24")[: len(values)]
    if sub:
        a = np.repeat(a[:, None], 3, axis=1)
        if len(a):
            a[0, 1] = b"z" * 23
    col = packed_column(a)
    want = int(np.char.str_len(a).max()) if a.size else 0
    with kernel_mode(threads, -1):
        assert _core.str_maxlen(col) == want


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(max_size=12), max_size=30))
def test_str_maxlen_unicode(values):
    a = np.array(values, dtype="U12")
    want = int(np.char.str_len(a).max()) if a.size else 0
    assert _core.str_maxlen(packed_column(a)) == want
    assert _core.str_maxlen(a[::-1]) == want


def test_str_maxlen_large_and_errors():
    rng = np.random.default_rng(1)
    a = np.array([b"x" * int(k) for k in rng.integers(0, 90, size=300_000)], dtype="S96")
    for threads in (1, 2):
        with kernel_mode(threads, -1):
            assert _core.str_maxlen(packed_column(a)) == int(np.char.str_len(a).max())
    with pytest.raises(TypeError):
        _core.str_maxlen(np.zeros(3))


# ------------------------------------------------------------------ pack

PACK_DTYPES = ["u1", "<i2", ">f4", "<f8", "<u8", "S5", "S96", "<U3", "V7"]


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(st.sampled_from(PACK_DTYPES), st.sampled_from(SUBSHAPES[:3]), st.integers(-3, 3)),
        min_size=1,
        max_size=8,
    ),
    st.integers(0, 30),
    st.integers(0, 5),
    st.integers(0, 2**32),
    st.sampled_from([1, 2]),
)
def test_pack(fields, n, start, seed, threads):
    """Against numpy's own structured assignment (string fields resized)."""
    rng = np.random.default_rng(seed)
    cols, descr = [], []
    for j, (dt, sub, resize) in enumerate(fields):
        dtype = np.dtype(dt)
        vals = fill(dtype, (start + n,) + sub, rng)
        cols.append(packed_column(vals, readonly=bool(j % 2)))
        if dtype.kind in "SU":
            unit = 4 if dtype.kind == "U" else 1
            width = max(1, dtype.itemsize // unit + resize)
            dtype = np.dtype(f"{dtype.kind}{width}")
        descr.append((f"f{j}", dtype, sub))
    rec_dtype = np.dtype(descr)
    want = np.zeros(n, rec_dtype)
    for j, c in enumerate(cols):
        want[f"f{j}"] = c[start : start + n]
    out = np.full((n, rec_dtype.itemsize), 0xAB, np.uint8)
    offsets = [rec_dtype.fields[f"f{j}"][1] for j in range(len(cols))]
    with kernel_mode(threads, -1):
        _core.pack(cols, offsets, start, out)
    assert out.tobytes() == want.tobytes()


@pytest.mark.parametrize("threads", [1, 2])
def test_pack_large(threads):
    rng = np.random.default_rng(3)
    n = 60_000  # over 2 MB of rows: two threads take part
    dt = np.dtype([("uid", "<u8"), ("p", "S96"), ("x", "<f4", (2,)), ("b", "u1"), ("s", "S7")])
    src = np.zeros(n, dt)
    src["uid"] = rng.integers(0, 2**63, n)
    src["p"] = [b"path/%d" % i for i in range(n)]
    src["x"] = rng.random((n, 2))
    src["b"] = rng.integers(0, 255, n)
    src["s"] = [b"ab%d" % (i % 1000) for i in range(n)]
    out_dt = np.dtype([("uid", "<u8"), ("p", "S20"), ("x", "<f4", (2,)), ("b", "u1"), ("s", "S9")])
    want = np.zeros(n, out_dt)
    for k in dt.names:
        want[k] = src[k]
    out = np.empty((n, out_dt.itemsize), np.uint8)
    with kernel_mode(threads, -1):
        _core.pack([src[k] for k in dt.names], [out_dt.fields[k][1] for k in dt.names], 0, out)
        assert out.tobytes() == want.tobytes()
        # The same layout (fields merge into whole-row copies), from row 5 on.
        same = np.empty((n - 5, dt.itemsize), np.uint8)
        _core.pack([src[k] for k in dt.names], [dt.fields[k][1] for k in dt.names], 5, same)
        assert same.tobytes() == src[5:].tobytes()
        # Fields in another order: only some neighbours stay neighbours.
        names = ["x", "b", "uid", "p", "s"]
        perm = np.dtype([(k, dt.fields[k][0]) for k in names])
        want2 = np.zeros(n, perm)
        for k in names:
            want2[k] = src[k]
        out2 = np.empty((n, perm.itemsize), np.uint8)
        _core.pack([src[k] for k in names], [perm.fields[k][1] for k in names], 0, out2)
        assert out2.tobytes() == want2.tobytes()


def test_threads_setting():
    old = _core._threads
    _core.set_num_threads(3)
    assert _core.num_threads() == 3
    _core.set_num_threads(0)
    assert _core.num_threads() >= 1
    with pytest.raises(ValueError):
        _core.set_num_threads(-1)
    _core.set_num_threads(old)


# ------------------------------------------------------------------ lz4 block codec


@pytest.mark.parametrize(
    "block, want",
    [
        (b"\x00", b""),  # an empty block: one token, no literals
        (b"\x50hello", b"hello"),
        # "a", then a match at offset 1 of length 3 + 4 (overlapping), then literals
        (b"\x13a\x01\x00\x50bbbbb", b"a" * 8 + b"bbbbb"),
        # a literal length of 15 + 5 (one extra length byte)
        (b"\xf0\x05" + bytes(range(20)), bytes(range(20))),
    ],
)
def test_lz4_decodes_handwritten_blocks(block, want):
    out = bytearray(len(want))
    _lz4.decompress(block, out, "f")
    assert bytes(out) == want


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=2000), st.integers(1, 50))
def test_lz4_roundtrip(data, repeat):
    raw = data * repeat if len(data) < 60 else data  # short data repeated: long matches
    block = bytes(_lz4.compress(raw))
    assert len(block) <= len(raw) + len(raw) // 255 + 16
    out = bytearray(len(raw))
    _lz4.decompress(block, out, "f")
    assert bytes(out) == raw


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), st.binary(max_size=8), st.integers(0, 400))
def test_lz4_decodes_damaged_blocks_or_refuses_them(data, noise, size):
    """A damaged block decodes to exactly size bytes or raises CsFormatError."""
    block = bytearray(_lz4.compress(data * 3))
    for i, b in enumerate(noise):  # overwrite a few bytes spread over the block
        block[(i * 7919 + b) % len(block)] = b
    out = bytearray(size)
    try:
        _lz4.decompress(bytes(block), out, "f")
    except CsFormatError as e:
        assert str(e).startswith("f: ")


# ------------------------------------------------------------------ file maps and copies

ADVICE = ["normal", "random", "sequential", "willneed", "populate"]


def test_advise_every_kind_leaves_contents(tmp_path):
    """Every kind is accepted on the whole map and on unaligned ranges; advice
    never changes what the map reads (compared with the file's bytes)."""
    data = np.random.default_rng(0).integers(0, 256, 3 * 4096 + 123, dtype=np.uint8).tobytes()
    path = tmp_path / "f"
    path.write_bytes(data)
    with open(path, "rb") as f:
        fm = _core.FileMap(f.fileno(), len(data))
    for kind in ADVICE:
        for offset, length in [(0, None), (5, 100), (4095, 2), (len(data) - 1, 1), (len(data), 0)]:
            fm.advise(kind, offset, length)
            assert bytes(memoryview(fm)) == data
    fm.make_writable()
    view = np.frombuffer(fm, dtype=np.uint8)
    view[4096:4100] = [1, 2, 3, 4]  # a private page: advice must not drop it
    for kind in ADVICE:
        fm.advise(kind)
    assert bytes(memoryview(fm)) == data[:4096] + bytes([1, 2, 3, 4]) + data[4100:]
    assert path.read_bytes() == data


def test_advise_rejects_unknown_kinds_and_ranges(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"x" * 100)
    with open(path, "rb") as f:
        fm = _core.FileMap(f.fileno(), 100)
    for kind in ["", "RANDOM", "hugepage", "dontneed"]:
        with pytest.raises(ValueError, match="unknown kind"):
            fm.advise(kind)
    for offset, length in [(-1, 1), (0, 101), (101, 0), (50, 51), (0, -1)]:
        with pytest.raises(ValueError, match="outside a map of 100"):
            fm.advise("willneed", offset, length)


def _write(path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)


@SETTINGS
@given(
    size=st.integers(0, 300_000),
    src_at=st.integers(0, 300_000),
    length=st.integers(0, 300_000),
    dst_at=st.integers(0, 200_000),
    use_kernel=st.booleans(),
    by_path=st.booleans(),
)
def test_copy_file_range_exact_bytes(
    tmp_path_factory, size, src_at, length, dst_at, use_kernel, by_path
):
    """The copied range equals Python's slice; the destination's other bytes stay;
    a source that ends too soon raises OSError after copying what it had."""
    d = tmp_path_factory.mktemp("cfr")
    rng = np.random.default_rng(size ^ src_at)
    data = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
    before = rng.integers(0, 256, 250_000, dtype=np.uint8).tobytes()
    _write(d / "src", data)
    _write(d / "dst", before)
    expect = bytearray(before)
    fits = length == 0 or src_at + length <= size  # copying nothing never fails
    got = data[src_at : src_at + length]
    expect[dst_at : dst_at + len(got)] = got
    fd = os.open(d / "dst", os.O_RDWR)
    src_fd = os.open(d / "src", os.O_RDONLY)
    try:
        src = str(d / "src") if by_path else src_fd
        if fits:
            by_kernel = _core.copy_file_range(
                src, src_at, length, fd, dst_at, use_kernel=use_kernel
            )
            assert 0 <= by_kernel <= length and (use_kernel or by_kernel == 0)
        else:
            with pytest.raises(OSError, match=f"ended after {len(got)} of {length} bytes"):
                _core.copy_file_range(src, src_at, length, fd, dst_at, use_kernel=use_kernel)
        assert os.lseek(fd, 0, os.SEEK_CUR) == 0 and os.lseek(src_fd, 0, os.SEEK_CUR) == 0
    finally:
        os.close(fd)
        os.close(src_fd)
    assert (d / "dst").read_bytes() == bytes(expect)


def test_copy_file_range_bad_arguments(tmp_path):
    _write(tmp_path / "src", b"abc")
    with open(tmp_path / "dst", "ab") as f:
        with pytest.raises(ValueError, match="O_APPEND"):
            _core.copy_file_range(tmp_path / "src", 0, 3, f.fileno(), 0)
    with open(tmp_path / "dst", "wb") as f:
        for args in [(-1, 3, 0), (0, -1, 0), (0, 3, -1)]:
            with pytest.raises(ValueError, match="negative"):
                _core.copy_file_range(tmp_path / "src", args[0], args[1], f.fileno(), args[2])
        with pytest.raises(FileNotFoundError):
            _core.copy_file_range(tmp_path / "missing", 0, 3, f.fileno(), 0)
    with open(tmp_path / "src", "rb") as f:  # a read-only destination: EBADF
        for use_kernel in (True, False):
            with pytest.raises(OSError) as e:
                _core.copy_file_range(tmp_path / "src", 0, 3, f.fileno(), 0, use_kernel=use_kernel)
            assert e.value.errno == errno.EBADF


def test_copy_file_range_to_another_file_system(tmp_path, tiny_fs):
    """Into a tmpfs (copy_file_range refuses across file systems: the read/write
    loop takes over) the bytes arrive exact; past its 1 MB, ENOSPC."""
    data = np.random.default_rng(1).integers(0, 256, 600_000, dtype=np.uint8).tobytes()
    _write(tmp_path / "src", data)
    for use_kernel in (True, False):
        with open(tiny_fs / "dst", "wb") as f:
            _core.copy_file_range(
                tmp_path / "src", 1000, 500_000, f.fileno(), 7, use_kernel=use_kernel
            )
        assert (tiny_fs / "dst").read_bytes() == bytes(7) + data[1000:501_000]
        (tiny_fs / "dst").unlink()
    _write(tmp_path / "big", data * 3)
    for use_kernel in (True, False):
        with open(tiny_fs / "full", "wb") as f:
            with pytest.raises(OSError) as e:
                _core.copy_file_range(
                    tmp_path / "big", 0, len(data) * 3, f.fileno(), 0, use_kernel=use_kernel
                )
        assert e.value.errno == errno.ENOSPC
        (tiny_fs / "full").unlink()
