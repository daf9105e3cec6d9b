"""Kernel-level micro benchmarks: csfast._core's C kernels against numpy.

The numpy versions are the interim bodies _core had before the C kernels
(np.unique / searchsorted joins, np.isin, fancy indexing, per-column
assignment), so the table shows what the kernels buy. Inputs are what
dataset.py passes: uid and other columns of packed structured tables (the
380-byte passthrough rows and 80-byte particle rows), read-only, strided.

    python -m pytest benchmarks/bench_kernels.py --benchmark-only [--rows N] [--threads T]
    python benchmarks/bench_kernels.py --rows 1000000 10000000 --threads 1 2

The script form prints one table of best-of-3 times (numpy, csfast with each
thread count) plus a memcpy of the same bytes as the bandwidth floor.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
import pytest

from csfast import _core, synthetic

# ------------------------------------------------------------ numpy versions


def np_join_index(keys):
    first = np.asarray(keys[0])
    sel = np.arange(len(first), dtype=np.intp)
    picks = []
    for k in keys[1:]:
        uniq_rev, idx_rev = np.unique(k[::-1], return_index=True)
        last = len(k) - 1 - idx_rev
        pos = np.searchsorted(uniq_rev, first[sel])
        pos[pos >= len(uniq_rev)] = 0
        found = uniq_rev[pos] == first[sel]
        sel = sel[found]
        picks = [p[found] for p in picks]
        picks.append(last[pos[found]].astype(np.intp))
    return [sel] + picks


def np_repeats(keys, limit):
    allk = np.concatenate(keys)
    _, first, inv = np.unique(allk, return_index=True, return_inverse=True)
    is_first = np.zeros(len(allk), bool)
    is_first[first] = True
    rep = np.flatnonzero(~is_first)
    return len(rep), rep[:limit], first[inv[rep[:limit]]]


def np_gather(src, index, out):
    out[...] = src if index is None else src[index]


def np_pack(columns, offsets, start, out):
    n = out.shape[0]
    for j, (col, off) in enumerate(zip(columns, offsets, strict=True)):
        end = offsets[j + 1] if j + 1 < len(offsets) else out.shape[1]
        part = np.ascontiguousarray(col[start : start + n])
        raw = part.view(np.uint8).reshape(n, -1)
        k = min(end - off, raw.shape[1])
        out[:, off : off + k] = raw[:, :k]


# ------------------------------------------------------------------ inputs


class Inputs:
    """Seeded tables of n rows: passthrough (~380 B rows) and particles (shuffled uids)."""

    def __init__(self, n: int, seed: int = 0):
        rng = np.random.default_rng(seed)
        pt = synthetic.particles(n, seed=seed).to_records()
        pt.flags.writeable = False
        self.passthrough = pt
        order = rng.permutation(n)
        parts = np.zeros(n, np.dtype([("uid", "<u8"), ("alignments3D", "V72")]))
        parts["uid"] = pt["uid"][order]
        parts.flags.writeable = False
        self.particles = parts
        self.index = order  # particles row i is passthrough row order[i]
        self.chunks = [pt["uid"][i * n // 10 : (i + 1) * n // 10] for i in range(10)]
        self.subset = rng.choice(pt["uid"], size=int(0.3 * n), replace=False)


def cases(inp: Inputs) -> dict[str, tuple[Callable, Callable, int]]:
    """{name: (numpy version, csfast version, bytes moved)}."""
    pt, parts = inp.passthrough, inp.particles
    n = len(pt)
    names = pt.dtype.names
    out_cols = {k: np.empty_like(pt[k]) for k in names}
    rowbuf = np.empty((n, pt.dtype.itemsize), np.uint8)
    offsets = [pt.dtype.fields[k][1] for k in names]
    cols = [pt[k] for k in names]
    keys = [parts["uid"], pt["uid"]]

    def gather_all(fn):
        def run():
            for k in names:
                fn(pt[k], inp.index, out_cols[k])

        return run

    return {
        "join_index 2-way": (lambda: np_join_index(keys), lambda: _core.join_index(keys), 16 * n),
        "isin 30% list": (
            lambda: np.isin(pt["uid"], inp.subset),
            lambda: _core.isin(pt["uid"], inp.subset),
            9 * n,
        ),
        "repeats 10 chunks": (
            lambda: np_repeats(inp.chunks, 5),
            lambda: _core.repeats(inp.chunks, 5),
            8 * n,
        ),
        "first_occurrence 10 chunks": (None, lambda: _core.first_occurrence(inp.chunks), 9 * n),
        "gather all columns (shuffled)": (
            gather_all(np_gather),
            gather_all(_core.gather),
            2 * pt.nbytes,
        ),
        "gather_many all columns": (
            None,
            lambda: _core.gather_many(
                [pt[k] for k in names], inp.index, [out_cols[k] for k in names]
            ),
            2 * pt.nbytes,
        ),
        "pack whole table (save)": (
            lambda: np_pack(cols, offsets, 0, rowbuf),
            lambda: _core.pack(cols, offsets, 0, rowbuf),
            2 * pt.nbytes,
        ),
        "str_maxlen S96": (
            lambda: int(np.char.str_len(pt["blob/path"]).max()),
            lambda: _core.str_maxlen(pt["blob/path"]),
            96 * n,
        ),
    }


# -------------------------------------------------------------- pytest side


@pytest.fixture(scope="module")
def inputs(rows):
    return Inputs(rows)


CASE_NAMES = [
    "join_index 2-way",
    "isin 30% list",
    "repeats 10 chunks",
    "first_occurrence 10 chunks",
    "gather all columns (shuffled)",
    "gather_many all columns",
    "pack whole table (save)",
    "str_maxlen S96",
]


@pytest.mark.parametrize("impl", ["numpy", "csfast"])
@pytest.mark.parametrize("case", CASE_NAMES)
def test_kernel(benchmark, inputs, case, impl):
    np_fn, cs_fn, nbytes = cases(inputs)[case]
    fn = np_fn if impl == "numpy" else cs_fn
    if fn is None:
        pytest.skip("no numpy version")
    benchmark.group = case
    benchmark.extra_info["bytes"] = nbytes
    benchmark.pedantic(fn, rounds=3, iterations=1, warmup_rounds=1)


# -------------------------------------------------------------- script side


def best_of(
    fn: Callable,
    rounds: int = 3,
    clock: Callable[[], float] = time.perf_counter,
) -> float:
    """Best time of fn over rounds (after a warm-up call).

    On a busy machine pass clock=time.process_time: CPU seconds of all this
    process's threads, which waiting for a core does not inflate.
    """
    fn()
    times = []
    for _ in range(rounds):
        t = clock()
        fn()
        times.append(clock() - t)
    return min(times)


def memcpy_time(nbytes: int) -> float:
    """Best time of one memcpy of nbytes: the bandwidth floor of a copy."""
    src = np.ones(nbytes, np.uint8)
    dst = np.empty_like(src)
    return best_of(lambda: np.copyto(dst, src))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, nargs="+", default=[1_000_000])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument(
        "--bits",
        type=int,
        nargs="*",
        default=[],
        help="also time the hash kernels with 2**bits partitions forced",
    )
    ap.add_argument("--no-numpy", action="store_true", help="skip the numpy versions")
    ap.add_argument("--only", nargs="*", default=None, help="kernels whose name starts so")
    ap.add_argument(
        "--cpu",
        action="store_true",
        help="report CPU seconds (all threads) instead of wall time: busy machines",
    )
    args = ap.parse_args()
    clock = time.process_time if args.cpu else time.perf_counter
    for n in args.rows:
        inp = Inputs(n)
        floor = memcpy_time(inp.passthrough.nbytes)
        print(
            f"\n{n:,} rows; memcpy of the {inp.passthrough.nbytes / 1e6:.0f} MB table "
            f"{floor * 1e3:.1f} ms"
        )
        head = (
            f"{'kernel':32s} {'numpy':>9s}"
            + "".join(f" {'C ' + str(t) + 'thr':>9s}" for t in args.threads)
            + "   speed-up"
        )
        print(head)
        for name, (np_fn, cs_fn, _) in cases(inp).items():
            if args.only and not any(name.startswith(o) for o in args.only):
                continue
            t_np = best_of(np_fn, clock=clock) if np_fn is not None and not args.no_numpy else None
            t_cs = []
            for t in args.threads:
                _core.set_num_threads(t)
                t_cs.append(best_of(cs_fn, clock=clock))
            _core.set_num_threads(0)
            line = f"{name:32s} {t_np * 1e3 if t_np else float('nan'):8.1f}m"
            line += "".join(f" {x * 1e3:8.1f}m" for x in t_cs)
            if t_np:
                line += f"   {t_np / min(t_cs):6.1f}x"
            print(line, flush=True)
        for bits in args.bits:
            _core._set_partition_bits(bits)
            for name in ("join_index 2-way", "isin 30% list", "repeats 10 chunks"):
                cs_fn = cases(inp)[name][1]
                times = []
                for t in args.threads:
                    _core.set_num_threads(t)
                    times.append(best_of(cs_fn, clock=clock))
                print(f"  bits={bits:2d} {name:24s}" + "".join(f" {x * 1e3:8.1f}m" for x in times))
            _core._set_partition_bits(-1)
            _core.set_num_threads(0)


if __name__ == "__main__":
    main()
