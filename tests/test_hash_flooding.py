"""Hostile uids: the hash kernels stay fast and exact whatever uids a file holds.

Until issue 8 the uid hash was murmur3's fmix64 alone: public and a bijection,
so inverting it gives, for any hash values one likes, the uids that have them.
A file of such uids put every row in one partition and one cluster of the
table, and joins, appends, unions and subsets took quadratic time (80k uids:
9 s instead of 6 ms). Here those uids (and duplicate-heavy ones) are fed to
each operation: results must match numpy and brute-force references, and
time must stay within a small factor of random uids. With the unkeyed hash
the timing tests fail by a factor of a hundred or more.
"""

import os
import subprocess
import sys
import time
from collections.abc import Callable

import numpy as np
import pytest

from csfast import Dataset, _core
from csfast.errors import CsUidError

M64 = 2**64
C1, C2 = 0xFF51AFD7ED558CCD, 0xC4CEB9FE1A85EC53
N = 100_000
# Crafted uids may be this much slower than random ones (plus a little slack
# for timer and cache noise on tiny runs); the unkeyed hash was >1000x slower.
RATIO = 10
SLACK = 0.02


def fmix64(x: int) -> int:
    """murmur3's fmix64 on a Python int: the old, unkeyed uid hash."""
    x ^= x >> 33
    x = (x * C1) % M64
    x ^= x >> 33
    x = (x * C2) % M64
    return x ^ (x >> 33)


def unfmix64(h: np.ndarray) -> np.ndarray:
    """The uids whose old hash is h: fmix64 undone step by step (x ^= x >> 33
    is its own inverse for 64-bit x; a multiplication by an odd constant is
    undone by its inverse modulo 2**64)."""
    x = np.array(h, dtype=np.uint64)
    s = np.uint64(33)
    with np.errstate(over="ignore"):
        x ^= x >> s
        x *= np.uint64(pow(C2, -1, M64))
        x ^= x >> s
        x *= np.uint64(pow(C1, -1, M64))
        x ^= x >> s
    return x


def crafted(n: int, start: int = 1) -> np.ndarray:
    """n distinct uids whose old hashes share their top 14 bits (one partition
    at any partition count) and their low 24 bits (one slot of any table up
    to 16M slots)."""
    return unfmix64(np.arange(start, start + n, dtype=np.uint64) << np.uint64(24))


def random_uids(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, M64, n, dtype=np.uint64)


def test_crafted_uids_collide_under_the_old_hash():
    u = crafted(1000)
    assert len(np.unique(u)) == 1000
    for x in u[:50].tolist():
        h = fmix64(x)
        assert h % (1 << 24) == 0 and h >> 50 == 0


@pytest.fixture
def one_thread():
    """One thread: the kernel runs in the calling thread, so thread CPU time
    measures it and not what other processes on the machine do."""
    old = _core._threads
    _core.set_num_threads(1)
    try:
        yield
    finally:
        _core.set_num_threads(old)


def cpu_seconds(f: Callable[[], object], runs: int) -> float:
    best = float("inf")
    for _ in range(runs):
        t0 = time.thread_time()
        f()
        best = min(best, time.thread_time() - t0)
    return best


def assert_as_fast(make: Callable[[Callable[[int], np.ndarray]], Callable[[], object]]) -> None:
    """make(uids) builds the operation from a uid source; crafted uids must run
    within RATIO of random ones (min of several runs; crafted runs stop at the
    first one within bounds, or at once when hopeless, so a regression fails
    in seconds)."""
    rand = make(lambda n, start=1: random_uids(n, start))
    bad = make(crafted)
    rand()  # warm up: page faults of fresh outputs, lazy imports
    limit = RATIO * cpu_seconds(rand, 5) + SLACK
    got = float("inf")
    for _ in range(5):
        t = cpu_seconds(bad, 1)
        got = min(got, t)
        if got < limit or t > 20 * limit:
            break
    assert got < limit, f"crafted uids took {got:.3f} s, random ones < {limit:.3f} s"


# ------------------------------------------------------------ results and time


def last_rows(keys: np.ndarray, uids: np.ndarray) -> np.ndarray:
    """For each uid, the last row of keys holding it, or -1 (brute force)."""
    last = {int(u): i for i, u in enumerate(keys.tolist())}
    return np.array([last.get(int(u), -1) for u in uids.tolist()], dtype=np.int64)


def first_mask(keys: np.ndarray) -> np.ndarray:
    _, first = np.unique(keys, return_index=True)
    mask = np.zeros(len(keys), dtype=bool)
    mask[first] = True
    return mask


@pytest.mark.parametrize("bits", [-1, 0])  # partitioned, and one prefetched table
def test_join_crafted_uids(one_thread, bits):
    u = crafted(N)
    rng = np.random.default_rng(1)
    v = np.concatenate([rng.permutation(u)[: N // 2], crafted(N // 4, start=N + 1)])
    _core._set_partition_bits(bits)
    try:
        ia, ib = _core.join_index([u, v])
        want = last_rows(v, u)
        assert np.array_equal(ia, np.flatnonzero(want >= 0))
        assert np.array_equal(ib, want[want >= 0])

        def make(src):
            a, b = src(N), src(N)[::-1].copy()
            return lambda: _core.join_index([a, b])

        assert_as_fast(make)
    finally:
        _core._set_partition_bits(-1)


def test_isin_and_subset_crafted_uids(one_thread):
    u = crafted(N)
    members = np.concatenate([u[::3], crafted(1000, start=2 * N)])
    assert np.array_equal(_core.isin(u, members), np.isin(u, members))
    ds = Dataset({"uid": u, "x": np.arange(N)})
    sub = ds.subset_uids(members)
    assert np.array_equal(sub["uid"], u[::3]) and np.array_equal(sub["x"], np.arange(N)[::3])

    def make(src):
        d, m = Dataset({"uid": src(N)}), src(N)
        return lambda: d.subset_uids(m)

    assert_as_fast(make)


def test_append_uid_check_crafted_uids(one_thread):
    a = Dataset({"uid": crafted(N), "x": np.arange(N)})
    b = Dataset({"uid": crafted(N, start=N + 1), "x": np.arange(N)})
    both = a.append(b)  # no uid in common: the check passes
    assert np.array_equal(both["uid"], np.concatenate([a["uid"], b["uid"]]))
    twice = Dataset({"uid": np.concatenate([b["uid"][:5], a["uid"][7:8]]), "x": np.arange(6)})
    with pytest.raises(CsUidError, match=str(int(a["uid"][7]))):
        a.append(twice)

    def make(src):
        d, e = Dataset({"uid": src(N)}), Dataset({"uid": src(N, N + 1)})
        return lambda: d.append(e)

    assert_as_fast(make)


def test_union_crafted_uids(one_thread):
    a = Dataset({"uid": crafted(N), "x": np.arange(N)})
    b = Dataset({"uid": crafted(N, start=N // 2), "x": np.arange(N, 2 * N)})
    got = a.union(b)
    keys = np.concatenate([a["uid"], b["uid"]])
    keep = first_mask(keys)
    assert np.array_equal(got["uid"], keys[keep])
    assert np.array_equal(got["x"], np.arange(2 * N)[keep])

    def make(src):
        d, e = Dataset({"uid": src(N)}), Dataset({"uid": src(N, N // 2)})
        return lambda: d.union(e)

    assert_as_fast(make)


@pytest.mark.parametrize("copies", [16, N])  # each uid 16 times; one uid in every row
def test_duplicate_heavy_uids(one_thread, copies):
    """Repeats of one uid share one table slot: no probe grows with them."""
    rng = np.random.default_rng(3)

    def repeated(src):
        return rng.permutation(np.repeat(src(N // copies), copies))

    keys = repeated(crafted)
    probe = np.concatenate([keys[:1000], crafted(1000, start=3 * N)])
    assert np.array_equal(np.concatenate(_core.first_occurrence([keys])), first_mask(keys))
    count, rep, first = _core.repeats([keys], N)
    assert count == N - N // copies
    assert np.array_equal(rep, np.flatnonzero(~first_mask(keys)))
    assert np.array_equal(keys[first], keys[rep])
    assert np.array_equal(_core.isin(probe, keys), np.isin(probe, keys))
    want = last_rows(keys, probe)
    ia, ib = _core.join_index([probe, keys])
    assert np.array_equal(ia, np.flatnonzero(want >= 0))
    assert np.array_equal(ib, want[want >= 0])

    def make(src):
        k = repeated(src)
        return lambda: (_core.first_occurrence([k]), _core.join_index([k, k]))

    assert_as_fast(make)


# ------------------------------------------------------------------ the key


def keyed_hash(x: int, key: tuple[int, int, int, int]) -> int:
    """hash.h's definition: fmix64 of the top 64 bits of (a * x + b) mod 2**128."""
    mul_lo, mul_hi, add_lo, add_hi = key
    a, b = mul_hi << 64 | mul_lo, add_hi << 64 | add_lo
    return fmix64(((a * x + b) % 2**128) >> 64)


def test_kernels_hash_with_the_process_key():
    edges = np.array([0, 1, M64 - 1], dtype=np.uint64)
    u = np.concatenate([crafted(200), random_uids(200, 5), edges])
    got = _core._hash(u).tolist()
    assert got == [keyed_hash(x, _core._hash_key) for x in u.tolist()]
    assert got != [fmix64(x) for x in u.tolist()]


def key_of_new_process(seed: str | None) -> tuple[int, ...]:
    env = {k: v for k, v in os.environ.items() if k != "CSFAST_HASH_SEED"}
    if seed is not None:
        env["CSFAST_HASH_SEED"] = seed
    code = "from csfast import _core; print(*_core._hash_key)"
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout
    return tuple(int(w) for w in out.split())


def test_each_process_draws_its_own_key():
    a, b = key_of_new_process(None), key_of_new_process("")  # empty: random too
    assert a != b and len(a) == 4 and _core._hash_key not in (a, b)


def test_csfast_hash_seed_reproduces_a_key():
    a, b = key_of_new_process("debug-1"), key_of_new_process("debug-1")
    assert a == b and a != key_of_new_process("debug-2")
