"""csfast beside its peers on the scenario of docs/performance.md, in one process.

    python benchmarks/compare.py --rows 1000000 [--threads 1,2] [--repeat 3]

Generates the scenario (or reuses its cache, see scenario.py), then times
each operation with csfast (at each --threads count), cryosparc-tools,
polars and pandas where they have the operation, and numpy baselines, on
the same files. Prints one table: median times (best with --stat best),
peer/csfast ratios, csfast's time as a multiple of the memory-bandwidth
floor measured in the same run (2 x output bytes / memcpy bandwidth), and
the targets of docs/performance.md with pass/fail. Then the peak memory of the
join, each contender measured in its own subprocess.

``--json FILE`` writes every timing; ``--baseline FILE`` (a run at another
row count) adds the growth column: csfast's time at the larger size over its
time at the smaller. Peers that are not installed are skipped with a note.
polars and pandas cannot hold sub-array columns: they get the 1-d columns
only (strings included), which is less work than csfast's.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import scenario as scen  # noqa: E402
from operations import (  # noqa: E402
    COLUMN,
    CST,
    JOIN_MEMORY,
    NUMPY,
    OPERATIONS,
    PANDAS,
    POLARS,
    POLARS_ALL,
    Operation,
    Target,
    save_path,
)

import csfast  # noqa: E402
from csfast import Dataset  # noqa: E402

PEERS = (CST, POLARS, POLARS_ALL, PANDAS, NUMPY)


# ------------------------------------------------------------------ peers


def import_peers() -> tuple[dict[str, Any], dict[str, str]]:
    """The installed peer modules, and a note for each one that is missing."""
    mods: dict[str, Any] = {NUMPY: np}
    notes: dict[str, str] = {}
    for name, module in ((CST, "cryosparc.dataset"), (POLARS, "polars"), (PANDAS, "pandas")):
        try:
            mods[name] = __import__(module, fromlist=["_"])
        except ImportError as exc:
            notes[name] = f"{name} skipped: not installed ({exc}); pip install '.[bench]'"
    if POLARS in mods:
        mods[POLARS_ALL] = mods[POLARS]
    return mods, notes


def version_of(name: str, mod: Any) -> str:
    if name == CST:
        import cryosparc

        return getattr(cryosparc, "__version__", "?")
    return getattr(mod, "__version__", "?")


def flat_columns(path: Path) -> dict[str, np.ndarray]:
    """The 1-d columns of a .cs file (what a DataFrame can hold), in memory."""
    arr = np.load(path, mmap_mode="r")
    return {
        k: np.ascontiguousarray(arr[k])
        for k in arr.dtype.names
        if arr.dtype.fields[k][0].shape == ()
    }


def polars_members(pl: Any, uids: np.ndarray):
    """uids as the argument of polars' ``is_in``, for any polars version."""
    members = pl.Series(uids)
    try:  # polars >= 1.28 wants the collection as one list value
        pl.DataFrame({"uid": uids[:1]}).filter(pl.col("uid").is_in(members.implode()))
        return members.implode()
    except Exception:
        return members


def pandas_frame(pd: Any, path: Path):
    return pd.DataFrame(flat_columns(path))


def polars_frame(pl: Any, path: Path):
    return pl.DataFrame(flat_columns(path))


def polars_frame_all(pl: Any, path: Path, fields: list[str] | None = None):
    """Every column (or those of fields) of a .cs file in memory: sub-arrays as
    polars Array columns, strings as Binary, so that polars moves the bytes
    csfast moves. A contiguous copy of each column first: polars converts it
    2-3x faster than pl.from_numpy(arr) or a strided view of the map."""
    arr = np.load(path, mmap_mode="r")
    return pl.DataFrame(
        [pl.Series(k, np.ascontiguousarray(arr[k])) for k in fields or arr.dtype.names]
    )


# ----------------------------------------------------------------- timing


def timeit(fn: Callable[[], Any], repeat: int, warmup: int) -> list[float]:
    """Wall times of repeat calls of fn after warmup calls; results freed untimed."""
    times = []
    for i in range(warmup + repeat):
        gc.collect()
        t0 = time.perf_counter()
        result = fn()
        dt = time.perf_counter() - t0
        del result
        if i >= warmup:
            times.append(dt)
    return times


def materialize(ds: Dataset) -> Dataset:
    return scen.materialize(ds)


@dataclass
class Row:
    key: str
    label: str
    out_bytes: int | None = None
    csfast: dict[int, list[float]] = field(default_factory=dict)  # threads -> times
    peers: dict[str, list[float]] = field(default_factory=dict)
    target: Target | None = None
    note: str = ""


# ------------------------------------------------------------- operations


@dataclass
class Contender:
    """One timed contender of an operation: prepare() builds its inputs (untimed)."""

    row: Row
    name: str  # a peer, or "csfast"
    run: Callable[[Any], Any]
    prepare: Callable[[], Any] | None = None
    threads: int | None = None  # csfast only
    repeat: int | None = None

    def call(self, state: Any) -> float:
        if self.threads is not None:
            csfast.set_num_threads(self.threads)
        gc.collect()
        t0 = time.perf_counter()
        result = self.run(state)
        dt = time.perf_counter() - t0
        del result  # freed outside the timing
        return dt

    def record(self, times: list[float]) -> None:
        if self.threads is not None:
            self.row.csfast[self.threads] = times
        else:
            self.row.peers[self.name] = times


class Bench:
    """Runs every operation and its contenders.

    Below 5M rows the contenders of an operation run interleaved (round
    robin, alternating order), so a change in the machine's load hits them
    alike and the ratios hold; above, each runs alone in turn and its
    inputs are freed before the next one's are built (memory).
    """

    def __init__(
        self,
        sc: scen.Scenario,
        mods: dict[str, Any],
        threads: list[int],
        repeat: int,
        warmup: int,
        tmp: Path,
        log: Callable[[str], None],
    ):
        self.sc, self.mods, self.threads = sc, mods, threads
        self.repeat, self.warmup, self.tmp, self.log = repeat, warmup, tmp, log
        self.rows: list[Row] = []
        self.big = sc.rows >= 5_000_000
        self.sequential = self.big
        self.pending: list[Contender] = []

    def time_csfast(
        self,
        row: Row,
        run: Callable[[Any], Any],
        prepare: Callable[[], Any] | None = None,
        repeat: int | None = None,
    ) -> None:
        for t in self.threads:
            self.pending.append(Contender(row, "csfast", run, prepare, t, repeat))

    def time_peer(
        self,
        row: Row,
        peer: str,
        run: Callable[[Any], Any],
        prepare: Callable[[], Any] | None = None,
        repeat: int | None = None,
    ) -> None:
        if peer in self.mods:
            self.pending.append(Contender(row, peer, run, prepare, None, repeat))

    def warm_files(self) -> None:
        """Read the scenario's files, so no contender pays for the disk.

        Without warm-up runs (the default from 5M rows) the first contender
        would otherwise read what other processes pushed out of the page cache.
        """
        buf = bytearray(64 << 20)
        for path in [self.sc.particles, self.sc.passthrough, *self.sc.chunks]:
            with open(path, "rb", buffering=0) as f:
                while f.readinto(buf):
                    pass

    def go(self) -> None:
        """Time the pending contenders."""
        todo, self.pending = self.pending, []
        try:
            if self.sequential:
                for c in todo:
                    state = c.prepare() if c.prepare else None
                    self.warm_files()
                    times = [c.call(state) for _ in range(self.warmup + (c.repeat or self.repeat))]
                    c.record(times[self.warmup :])
                    del state
                    self._log(c)
            else:
                states = [c.prepare() if c.prepare else None for c in todo]
                self.warm_files()
                for _ in range(self.warmup):
                    for c, s in zip(todo, states, strict=True):
                        c.call(s)
                times: list[list[float]] = [[] for _ in todo]
                for i in range(max(c.repeat or self.repeat for c in todo)):
                    order = list(range(len(todo)))[:: 1 if i % 2 == 0 else -1]
                    for j in order:
                        if i < (todo[j].repeat or self.repeat):
                            times[j].append(todo[j].call(states[j]))
                del states
                for c, t in zip(todo, times, strict=True):
                    c.record(t)
                    self._log(c)
        finally:
            csfast.set_num_threads(0)

    def _log(self, c: Contender) -> None:
        times = c.row.csfast[c.threads] if c.threads is not None else c.row.peers[c.name]
        who = f"csfast t={c.threads}" if c.threads is not None else c.name
        self.log(f"  {c.row.key:<14} {who}: {_fmt_s(statistics.median(times))}")

    def add(self, row: Row) -> Row:
        self.rows.append(row)
        return row

    def add_operation(self, key: str) -> tuple[Row, Operation]:
        """The row of a registered operation (operations.py), with its target."""
        op = OPERATIONS[key]
        out_bytes = op.out_bytes(self.sc) if op.out_bytes else None
        return self.add(Row(key, op.label, out_bytes, target=op.target_at(self.sc.rows))), op

    def time_operation(self, row: Row, op: Operation, repeat: int | None = None) -> None:
        """Queue csfast's call of op, and numpy's baseline where it has one."""
        sc = self.sc
        prepare = op.prepare
        self.time_csfast(
            row, lambda s: op.csfast(sc, s), (lambda: prepare(sc)) if prepare else None, repeat
        )
        if op.numpy is not None:
            baseline, numpy_prepare = op.numpy, op.numpy_prepare
            self.time_peer(
                row,
                NUMPY,
                lambda s: baseline(sc, s),
                (lambda: numpy_prepare(sc)) if numpy_prepare else None,
                repeat,
            )

    # -- the table itself

    def memcpy(self) -> Row:
        """Memory bandwidth: copy the passthrough table into a touched buffer."""
        src = np.load(self.sc.passthrough).view(np.uint8)
        dst = np.empty_like(src)
        dst[...] = 0  # fault the pages in: measure copying, not the kernel's page zeroing
        row = next((r for r in self.rows if r.key == "memcpy"), None)
        if row is None:  # first call; the second (at the end) adds to the same row
            row = self.add(Row("memcpy", "memcpy of the passthrough table", out_bytes=src.nbytes))
        row.peers.setdefault(NUMPY, []).extend(
            timeit(lambda: np.copyto(dst, src), max(self.repeat, 5), 1)
        )
        # The best copy is the machine's bandwidth; others' load only slows copies down.
        self.bandwidth = src.nbytes / min(row.peers[NUMPY])
        self.log(f"  memcpy: {self.bandwidth / 1e9:.1f} GB/s")
        return row

    def open(self) -> None:
        row, op = self.add_operation("open")
        self.time_operation(row, op, repeat=max(self.repeat, 20))
        self.go()

    def read_column(self) -> None:
        sc, mods = self.sc, self.mods
        row, op = self.add_operation("column")
        self.time_operation(row, op)
        if CST in mods:
            self.time_peer(
                row, CST, lambda _: mods[CST].Dataset.load(sc.passthrough, fields=[COLUMN])
            )
        self.go()

    def load(self) -> None:
        sc, mods = self.sc, self.mods
        row, op = self.add_operation("load")
        self.time_operation(row, op)
        if CST in mods:
            self.time_peer(row, CST, lambda _: mods[CST].Dataset.load(sc.passthrough))
        self.go()

    def join(self) -> None:
        sc, mods = self.sc, self.mods
        probe = materialize(Dataset.load(sc.particles).innerjoin(Dataset.load(sc.passthrough)))
        out_bytes = scen.nbytes(probe)
        self.join_bytes = out_bytes
        del probe
        (mapped, join), (inmem, join_mem) = (
            self.add_operation("join"),
            self.add_operation("join_mem"),
        )
        mapped.out_bytes = inmem.out_bytes = out_bytes
        self.time_operation(mapped, join)
        self.time_operation(inmem, join_mem)
        if CST in mods:
            self.time_peer(
                inmem,
                CST,
                lambda s: s[0].innerjoin(s[1]),
                lambda: (
                    mods[CST].Dataset.load(sc.particles),
                    mods[CST].Dataset.load(sc.passthrough),
                ),
            )
        if POLARS in mods:
            pl = mods[POLARS]
            self.time_peer(
                inmem,
                POLARS,
                lambda s: s[0].join(s[1], on="uid", how="inner"),
                lambda: (polars_frame(pl, sc.particles), polars_frame(pl, sc.passthrough)),
            )
            self.time_peer(
                inmem,
                POLARS_ALL,
                lambda s: s[0].join(s[1], on="uid", how="inner"),
                lambda: (polars_frame_all(pl, sc.particles), polars_frame_all(pl, sc.passthrough)),
            )
        if PANDAS in mods:
            pd = mods[PANDAS]
            self.time_peer(
                inmem,
                PANDAS,
                lambda s: pd.merge(s[0], s[1], on="uid", how="inner"),
                lambda: (pandas_frame(pd, sc.particles), pandas_frame(pd, sc.passthrough)),
            )
        self.go()
        # The peers' inputs were in memory; the mapped row is compared with the same figures.
        mapped.peers = dict(inmem.peers)

    def append(self) -> None:
        sc, mods = self.sc, self.mods
        row, op = self.add_operation("append")
        self.time_operation(row, op)
        if CST in mods:
            self.time_peer(
                row,
                CST,
                lambda s: mods[CST].Dataset.append_many(*s),
                lambda: [mods[CST].Dataset.load(p) for p in sc.chunks],
            )
        if POLARS in mods:
            pl = mods[POLARS]
            self.time_peer(
                row,
                POLARS,
                lambda s: pl.concat(s, rechunk=True),
                lambda: [polars_frame(pl, p) for p in sc.chunks],
            )
            self.time_peer(
                row,
                POLARS_ALL,
                lambda s: pl.concat(s, rechunk=True),
                lambda: [polars_frame_all(pl, p) for p in sc.chunks],
            )
        if PANDAS in mods:
            pd = mods[PANDAS]
            self.time_peer(
                row,
                PANDAS,
                lambda s: pd.concat(s, ignore_index=True),
                lambda: [pandas_frame(pd, p) for p in sc.chunks],
            )
        self.go()

    def subset(self) -> None:
        sc, mods = self.sc, self.mods
        uids = sc.subset_uids()
        row, op = self.add_operation("subset")
        self.time_operation(row, op)
        if CST in mods:
            self.time_peer(
                row,
                CST,
                lambda ds: ds.query({"uid": uids}),
                lambda: mods[CST].Dataset.load(sc.passthrough),
            )
        if POLARS in mods:
            pl = mods[POLARS]
            members = polars_members(pl, uids)
            self.time_peer(
                row,
                POLARS,
                lambda df: df.filter(pl.col("uid").is_in(members)),
                lambda: polars_frame(pl, sc.passthrough),
            )
            self.time_peer(
                row,
                POLARS_ALL,
                lambda df: df.filter(pl.col("uid").is_in(members)),
                lambda: polars_frame_all(pl, sc.passthrough),
            )
        if PANDAS in mods:
            self.time_peer(
                row,
                PANDAS,
                lambda df: df[df["uid"].isin(uids)],
                lambda: pandas_frame(mods[PANDAS], sc.passthrough),
            )
        self.go()

    def union(self) -> None:
        sc, mods = self.sc, self.mods
        n = sc.rows
        a, b = slice(0, n * 6 // 10), slice(n * 4 // 10, n)  # the operation's two slices
        row, op = self.add_operation("union")
        self.time_operation(row, op)
        if CST in mods:

            def cst_inputs():
                ds = mods[CST].Dataset.load(sc.passthrough)
                return ds.slice(a.start, a.stop), ds.slice(b.start, b.stop)

            self.time_peer(row, CST, lambda s: mods[CST].Dataset.union(*s), cst_inputs)
        if POLARS in mods:
            pl = mods[POLARS]

            def pl_inputs():
                df = polars_frame(pl, sc.passthrough)
                return df[a], df[b]

            self.time_peer(
                row,
                POLARS,
                lambda s: pl.concat(list(s)).unique("uid", keep="first", maintain_order=True),
                pl_inputs,
            )
        if PANDAS in mods:
            pd = mods[PANDAS]

            def pd_inputs():
                df = pandas_frame(pd, sc.passthrough)
                return df.iloc[a], df.iloc[b]

            self.time_peer(
                row,
                PANDAS,
                lambda s: pd.concat(list(s)).drop_duplicates("uid", keep="first"),
                pd_inputs,
            )
        self.go()

    def save(self) -> None:
        sc, mods = self.sc, self.mods
        row, op = self.add_operation("save")
        self.time_operation(row, op)
        if CST in mods:
            out = save_path(sc)
            self.time_peer(
                row, CST, lambda ds: ds.save(out), lambda: mods[CST].Dataset.load(sc.passthrough)
            )
        self.go()
        row, op = self.add_operation("save_fsync")
        self.time_operation(row, op)
        self.go()
        Path(save_path(sc)).unlink(missing_ok=True)


# ------------------------------------------------------------------ memory


def _status() -> dict[str, int]:
    """VmRSS, VmHWM, RssAnon, RssFile of this process, in bytes."""
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
                out[key] = int(value.split()[0]) * 1024
    return out


def _reset_peak() -> bool:
    """Reset VmHWM (Linux >= 4.0), so the peak seen is the join's alone."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def memory_probe(kind: str, sc: scen.Scenario, threads: int) -> dict[str, Any]:
    """Peak memory of one inner join (run in a fresh subprocess)."""
    import resource

    csfast.set_num_threads(threads)
    if kind == "csfast-mapped":
        left, right = Dataset.load(sc.particles), Dataset.load(sc.passthrough)
    elif kind == "csfast-memory":
        left, right = (
            Dataset.load(sc.particles, mmap=False),
            Dataset.load(sc.passthrough, mmap=False),
        )
    elif kind == CST:
        from cryosparc.dataset import Dataset as CsDataset

        left, right = CsDataset.load(sc.particles), CsDataset.load(sc.passthrough)
    else:
        raise ValueError(kind)
    gc.collect()
    before = _status()
    reset = _reset_peak()
    out = left.innerjoin(right)
    if kind != CST:
        materialize(out)
    after = _status()
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    peak = after["VmHWM"] if reset else maxrss
    # Pages of mapped input files are page cache (shared, reclaimable), not the join's memory.
    file_growth = max(0, after["RssFile"] - before["RssFile"])
    return {
        "kind": kind,
        "rows": len(out),
        "ru_maxrss": maxrss,
        "peak": peak,
        "peak_reset": reset,
        "rss_before": before["VmRSS"],
        "increment": peak - before["VmRSS"],
        "increment_anon": peak - before["VmRSS"] - file_growth,
        "file_growth": file_growth,
    }


def run_memory_probes(
    sc: scen.Scenario, args, mods: dict[str, Any], threads: int, log
) -> list[dict[str, Any]]:
    kinds = ["csfast-memory", "csfast-mapped"] + ([CST] if CST in mods else [])
    out = []
    for kind in kinds:
        cmd = [
            sys.executable,
            __file__,
            "--probe-memory",
            kind,
            "--rows",
            str(sc.rows),
            "--threads",
            str(threads),
        ] + (["--dir", args.dir] if args.dir else [])
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            log(f"  memory probe {kind} failed: {res.stderr.strip().splitlines()[-1:]}")
            continue
        out.append(json.loads(res.stdout.strip().splitlines()[-1]))
        log(f"  memory {kind}: peak increment {out[-1]['increment'] / 1e6:,.0f} MB")
    return out


# ------------------------------------------------------------------ report


def _fmt_s(t: float | None) -> str:
    if t is None or t != t:
        return "-"
    ms = t * 1e3
    if ms < 1:
        return f"{ms:.3f}"
    if ms < 10:
        return f"{ms:.2f}"
    if ms < 100:
        return f"{ms:.1f}"
    return f"{ms:,.0f}"


def _fmt_x(x: float | None) -> str:
    if x is None or x != x:
        return "-"
    return f"{x:.2f}x" if x < 10 else f"{x:.1f}x"


def summarize(times: list[float] | None, stat: str) -> float | None:
    if not times:
        return None
    return min(times) if stat == "best" else statistics.median(times)


def render(
    rows: list[Row],
    threads: list[int],
    stat: str,
    bandwidth: float,
    baseline: dict[str, Any] | None,
    this_rows: int,
) -> tuple[str, dict[str, Any]]:
    """The comparison table as text, and the per-row figures used in it."""
    ref_t = threads[-1]
    head = (
        ["operation"]
        + [f"csfast t{t}" for t in threads]
        + ["cs-tools", "x", "polars*", "x", "polars-all", "x", "pandas*", "x", "numpy", "x"]
        + ["floor", "xfloor"]
    )
    growth_ok = baseline is not None and baseline.get("rows") and baseline["rows"] != this_rows
    if growth_ok:
        head.append("growth")
    head += ["target", "ok"]
    table = [head]
    figures: dict[str, Any] = {}
    for row in rows:
        cs = {t: summarize(row.csfast.get(t), stat) for t in threads}
        ref = cs.get(ref_t)
        peer = {p: summarize(row.peers.get(p), stat) for p in PEERS}
        floor = 2 * row.out_bytes / bandwidth if row.out_bytes else None
        line = [row.label] + [_fmt_s(cs[t]) for t in threads]
        for p in PEERS:
            ratio = peer[p] / ref if peer[p] and ref else None
            line += [_fmt_s(peer[p]), _fmt_x(ratio)]
        line += [_fmt_s(floor), _fmt_x(ref / floor if ref and floor else None)]
        growth = None
        if growth_ok:
            old = baseline["figures"].get(row.key, {}).get("csfast")
            if old and ref:
                big, small = (ref, old) if this_rows > baseline["rows"] else (old, ref)
                growth = big / small
            line.append(_fmt_x(growth))
        verdict = (
            ""
            if row.target is None
            else row.target.check(
                ref if ref is not None else float("nan"), {p: v for p, v in peer.items() if v}
            )
        )
        if (
            growth is not None
            and row.key != "memcpy"
            and growth > 12
            and max(this_rows, baseline["rows"]) / min(this_rows, baseline["rows"]) <= 10
        ):
            verdict = (verdict + " " if verdict else "") + "FAIL growth>12"
        line += [row.target.text if row.target else "", verdict]
        table.append(line)
        figures[row.key] = {
            "csfast": ref,
            "csfast_by_threads": cs,
            "peers": peer,
            "out_bytes": row.out_bytes,
            "floor": floor,
            "growth": growth,
            "verdict": verdict,
        }
    widths = [max(len(r[i]) for r in table) for i in range(len(head))]
    lines = []
    for j, r in enumerate(table):
        cells = [r[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(r[1:-2], widths[1:-2], strict=True)
        ]
        cells += [r[-2].ljust(widths[-2]), r[-1]]
        lines.append("  ".join(cells).rstrip())
        if j == 0:
            lines.append("-" * len(lines[0]))
    return "\n".join(lines), figures


def render_memory(probes: list[dict[str, Any]], out_bytes: int) -> str:
    lines = [
        f"peak memory of the inner join, each in a fresh process (output "
        f"{out_bytes / 1e6:,.0f} MB; target: csfast in-memory join <= {JOIN_MEMORY}x "
        "output). Peak "
        "RSS is VmHWM reset just before the join (ru_maxrss would carry the parent's "
        "peak across fork and the loading's peak); cryosparc-tools holds strings as "
        "pointers to shared Python objects, so its output is smaller than the bytes."
    ]
    for p in probes:
        ratio = p["increment"] / out_bytes
        line = (
            f"  {p['kind']:<16} peak RSS {p['peak'] / 1e6:6,.0f} MB, "
            f"{p['rss_before'] / 1e6:,.0f} MB before the join: increment "
            f"{p['increment'] / 1e6:6,.0f} MB = {ratio:.2f}x output"
        )
        if p["kind"] == "csfast-mapped":
            line += (
                f";  without mapped input pages {p['increment_anon'] / 1e6:,.0f} MB = "
                f"{p['increment_anon'] / out_bytes:.2f}x"
            )
        if p["kind"] == "csfast-memory":
            line += "  " + ("pass" if ratio <= JOIN_MEMORY else "FAIL")
        if not p["peak_reset"]:
            line += "  (VmHWM reset unavailable: lifetime peak)"
        lines.append(line)
    return "\n".join(lines)


# -------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rows", type=int, default=1_000_000, help="scenario rows (default 1M)")
    ap.add_argument(
        "--threads",
        default=None,
        help="comma-separated csfast thread counts, e.g. 1,2 (default: "
        "CSFAST_NUM_THREADS, else all cores); ratios use the last",
    )
    ap.add_argument("--repeat", type=int, default=3, help="timed runs per contender (default 3)")
    ap.add_argument(
        "--warmup",
        type=int,
        default=None,
        help="untimed runs first (default 1 below 5M rows, else 0)",
    )
    ap.add_argument("--stat", choices=("median", "best"), default="median")
    ap.add_argument(
        "--dir",
        default=None,
        help="scenario cache root (default $CSFAST_BENCH_DIR or /tmp/csfast-bench)",
    )
    ap.add_argument(
        "--only",
        default=None,
        help="comma-separated operations: open,column,load,join,append,subset,union,save",
    )
    ap.add_argument(
        "--sequential",
        action="store_true",
        help="time contenders one after the other, each with only its own inputs "
        "in memory (default from 5M rows; below, they run interleaved)",
    )
    ap.add_argument("--no-peers", action="store_true", help="csfast and numpy only")
    ap.add_argument("--no-memory", action="store_true", help="skip the peak-memory probes")
    ap.add_argument("--json", default=None, help="write all timings to this file")
    ap.add_argument(
        "--baseline", default=None, help="a --json file of a run at another row count: adds growth"
    )
    ap.add_argument("--quiet", action="store_true", help="print only the table")
    ap.add_argument("--probe-memory", default=None, help=argparse.SUPPRESS)
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    log = (
        (lambda msg: None) if args.quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
    )
    if args.probe_memory:
        sc = scen.build(args.rows, root=args.dir)
        print(json.dumps(memory_probe(args.probe_memory, sc, int(args.threads or 0))))
        return
    threads = [int(t) for t in args.threads.split(",")] if args.threads else [csfast.num_threads()]
    warmup = args.warmup if args.warmup is not None else (1 if args.rows < 5_000_000 else 0)
    sc = scen.build(args.rows, root=args.dir, log=log)
    mods, notes = import_peers()
    if args.no_peers:
        mods = {NUMPY: np}
    for note in notes.values():
        log(note)
    ops = ["open", "column", "load", "join", "append", "subset", "union", "save"]
    if args.only:
        ops = [o for o in ops if o in args.only.split(",")]
    with tempfile.TemporaryDirectory(dir=sc.folder) as tmp:
        bench = Bench(sc, mods, threads, args.repeat, warmup, Path(tmp), log)
        bench.sequential = bench.sequential or args.sequential
        bench.memcpy()
        for op in ops:
            log(f"{op} ...")
            getattr(bench, {"column": "read_column"}.get(op, op))()
        bench.memcpy()  # again: the machine's load may have changed meanwhile
    probes = []
    if not args.no_memory and "join" in ops:
        log("memory ...")
        probes = run_memory_probes(sc, args, mods, threads[-1], log)
    baseline = json.loads(Path(args.baseline).read_text()) if args.baseline else None
    text, figures = render(bench.rows, threads, args.stat, bench.bandwidth, baseline, sc.rows)
    flat = scen_flat_note(sc)
    print(
        f"\ncsfast {csfast.__version__} vs peers, {sc.rows:,} rows, {args.stat} of "
        f"{args.repeat} (times in ms), csfast threads {','.join(map(str, threads))}; "
        f"{platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}"
    )
    print("peers: " + ", ".join(f"{p} {version_of(p, m)}" for p, m in mods.items()))
    print(text)
    print(
        f"x: peer time / csfast time at {threads[-1]} thread(s) (above 1: csfast faster). "
        f"floor: 2 x output bytes / memcpy bandwidth (best memcpy, before and after: "
        f"{bench.bandwidth / 1e9:.1f} GB/s); "
        "xfloor: csfast / floor."
    )
    print(
        f"* polars and pandas hold the 1-d columns only ({flat}); peers' joins, appends and "
        "subsets run on tables already in memory, csfast's on freshly opened maps (the "
        "'inputs in memory' row on loaded tables). csfast save writes S<longest+1> strings."
        + (f" polars threads: {mods[POLARS].thread_pool_size()}." if POLARS in mods else "")
    )
    for note in notes.values():
        print(note)
    if probes:
        print(render_memory(probes, bench.join_bytes))
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "rows": sc.rows,
                    "threads": threads,
                    "stat": args.stat,
                    "repeat": args.repeat,
                    "bandwidth": bench.bandwidth,
                    "figures": figures,
                    "memory": probes,
                    "times": {
                        r.key: {
                            "csfast": {str(t): v for t, v in r.csfast.items()},
                            "peers": r.peers,
                        }
                        for r in bench.rows
                    },
                },
                indent=1,
            )
        )
        log(f"wrote {args.json}")


def scen_flat_note(sc: scen.Scenario) -> str:
    arr = np.load(sc.passthrough, mmap_mode="r")
    flat = [k for k in arr.dtype.names if arr.dtype.fields[k][0].shape == ()]
    flat_bytes = sum(arr.dtype.fields[k][0].itemsize for k in flat)
    return (
        f"passthrough: {len(flat)} of {len(arr.dtype.names)} fields, "
        f"{flat_bytes} of {arr.dtype.itemsize} bytes a row"
    )


if __name__ == "__main__":
    main()
