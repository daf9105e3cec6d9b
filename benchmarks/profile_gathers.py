"""The three 10M-row gathers of docs/performance.md, one per process, for `perf stat`.

    python benchmarks/profile_gathers.py make --rows 10000000       # once: a 3.8 GB table
    perf stat -e page-faults,task-clock --delay=-1 --control fd:3,4 \\
        python benchmarks/profile_gathers.py run join 3>ctl 4<ack     # or: see run_perf below
    python benchmarks/profile_gathers.py perf join append subset --rows 10000000 \\
        --variant plain advise hugepage

- join: every field of the mapped passthrough table gathered through a
  shuffled index (the innerjoin of particles with passthrough), one output
  array per field, as column.gather_jobs does;
- append: the same fields copied in order (index None), as an append of
  chunks of one layout does;
- subset: 30% of the rows, ascending (a subset by uid keeps file order).

`make` tiles the 1M-row scenario passthrough file (benchmarks/scenario.py)
to --rows rows (new, distinct uids) in --dir. `run` times one gather in this
process: the file is opened and mapped as Dataset.load maps it, and only
the gather itself is measured (perf is enabled around it through
--control fds when run under `perf`; getrusage CPU times and faults are
printed either way). `perf` runs `run` under `perf stat` once per operation
and variant and prints a table. Variants:

- plain: outputs from np.empty (numpy asks for huge pages itself), the map
  as opened;
- a FileMap.advise kind (normal, random, sequential, willneed, populate):
  the map advised so, inside the measured region;
- cold: the file dropped from the page cache first (posix_fadvise DONTNEED);
- reuse: outputs allocated and touched before the measured region, as a
  buffer reused from chunk to chunk would be;
- joined with "+": e.g. cold+sequential.

The machine shares two cores with other work: compare CPU seconds and
fault counts, not wall times.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

DEFAULT_DIR = Path(os.environ.get("CSFAST_PROFILE_DIR", "/tmp/csfast-profile"))
SOURCE = Path("/tmp/csfast-bench/rows1000000-seed0/passthrough_particles.cs")


def table_path(folder: Path, rows: int) -> Path:
    return folder / f"passthrough_{rows}.cs"


def make(rows: int, folder: Path, source: Path) -> Path:
    """A .cs (npy) file of `rows` rows tiled from source, uids made distinct."""
    src = np.load(source, mmap_mode="r")
    path = table_path(folder, rows)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=src.dtype, shape=(rows,))
    rng = np.random.default_rng(rows)
    for lo in range(0, rows, len(src)):
        hi = min(rows, lo + len(src))
        out[lo:hi] = src[: hi - lo]
        out["uid"][lo:hi] = rng.integers(0, 2**63, hi - lo, dtype=np.uint64)
    out.flush()
    del out
    os.replace(tmp, path)
    return path


def _perf_ctl(cmd: bytes) -> None:
    """Enable or disable the counters of an enclosing `perf stat --control fd:3,4`."""
    if os.environ.get("CSFAST_PERF_CTL") != "1":
        return
    os.write(3, cmd + b"\n")
    os.read(4, 16)  # "ack"


def run(op: str, path: Path, variant: str, threads: int) -> None:
    from csfast import _core, format

    _core.set_num_threads(threads)
    table = _open(path)
    n = len(table)
    names = table.dtype.names
    rng = np.random.default_rng(1)
    if op == "join":
        index = rng.permutation(n)
    elif op == "subset":
        index = np.flatnonzero(rng.random(n) < 0.3)
    else:
        index = None
    rows = n if index is None else len(index)
    advice = variant.split("+")  # e.g. "cold+sequential": "cold" drops the file from the page cache
    if "cold" in advice:
        with open(path, "rb") as f:
            os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
    srcs = [table[k] for k in names]
    fm = format.file_map_of(table)
    if "reuse" in advice:  # outputs touched before: a buffer reused across chunks
        outs = [np.empty((rows,) + table[k].shape[1:], table[k].dtype) for k in names]
        for o in outs:
            o.fill(0)  # np.zeros would leave the pages untouched (calloc)
    start = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    _perf_ctl(b"enable")
    for kind in advice:
        if kind not in ("plain", "cold", "reuse"):
            fm.advise(kind)
    if "reuse" not in advice:
        outs = [np.empty((rows,) + table[k].shape[1:], table[k].dtype) for k in names]
    _core.gather_many(srcs, index, outs)
    _perf_ctl(b"disable")
    wall = time.perf_counter() - t0
    end = resource.getrusage(resource.RUSAGE_SELF)
    out_bytes = sum(o.nbytes for o in outs)
    print(
        f"RESULT op={op} variant={variant} rows={rows} out_mb={out_bytes / 1e6:.0f} "
        f"user={end.ru_utime - start.ru_utime:.3f} sys={end.ru_stime - start.ru_stime:.3f} "
        f"minflt={end.ru_minflt - start.ru_minflt} wall={wall:.3f}"
    )


def _open(path: Path):
    from csfast import format

    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        info = format.read_header(f, str(path), size)
        fm = format.map_file(f.fileno(), info.data_offset + info.data_size, str(path))
    return np.frombuffer(fm, dtype=info.dtype, count=info.rows, offset=info.data_offset)


EVENTS = "page-faults,task-clock"


def run_perf(op: str, path: Path, variant: str, threads: int) -> dict[str, float]:
    """One `run` under perf stat, counters enabled around the gather only."""
    with tempfile.TemporaryDirectory() as d:
        ctl, ack = os.path.join(d, "ctl"), os.path.join(d, "ack")
        os.mkfifo(ctl)
        os.mkfifo(ack)
        cmd = [
            "perf", "stat", "-x,", "-e", EVENTS, "--delay=-1",
            "--control", f"fifo:{ctl},{ack}", "--",
            "bash", "-c", f'exec 3>"{ctl}" 4<"{ack}"; exec "$@"', "-",
            sys.executable, __file__, "run", op, "--path", str(path),
            "--variant", variant, "--threads", str(threads),
        ]  # fmt: skip
        env = dict(os.environ, CSFAST_PERF_CTL="1")
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
    found = {}
    for line in proc.stderr.splitlines():
        parts = line.split(",")
        if len(parts) > 2 and parts[2] in EVENTS.split(","):
            try:
                found[parts[2]] = float(parts[0])
            except ValueError:
                pass
    m = re.search(r"RESULT .*", proc.stdout)
    if m:
        for kv in m.group(0).split()[1:]:
            k, v = kv.split("=")
            found.setdefault(k, v)
    return found


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("cmd", choices=["make", "run", "perf"])
    ap.add_argument("ops", nargs="*", default=["join", "append", "subset"])
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--dir", type=Path, default=DEFAULT_DIR)
    ap.add_argument("--path", type=Path, default=None)
    ap.add_argument("--source", type=Path, default=SOURCE)
    ap.add_argument("--variant", nargs="+", default=["plain"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args()
    path = args.path or table_path(args.dir, args.rows)
    if args.cmd == "make":
        print(make(args.rows, args.dir, args.source))
    elif args.cmd == "run":
        run(args.ops[0], path, args.variant[0], args.threads)
    else:
        print(
            f"{'op':8s} {'variant':9s} {'faults':>9s} {'task-clock s':>12s} "
            f"{'user s':>7s} {'sys s':>7s} {'wall s':>7s}"
        )
        for op in args.ops:
            for variant in args.variant:
                for _ in range(args.repeat):
                    r = run_perf(op, path, variant, args.threads)
                    print(
                        f"{op:8s} {variant:9s} {r.get('page-faults', 0):9.0f} "
                        f"{r.get('task-clock', 0) / 1e3:12.3f} {r.get('user', '?'):>7s} "
                        f"{r.get('sys', '?'):>7s} {r.get('wall', '?'):>7s}",
                        flush=True,
                    )


if __name__ == "__main__":
    main()
