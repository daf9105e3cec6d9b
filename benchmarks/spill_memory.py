"""Peak anonymous memory and time of the join index, in memory and spilled.

    python benchmarks/spill_memory.py --rows 10000000 --budget 256M,64M

Joins N uids with a permutation of them, both read from mapped .npy files
(generated once, seeded, in --dir). Each run is a fresh process; its
RssAnon (anonymous memory: not the mapped inputs or the spilled files'
pages) is sampled every 2 ms from this process, so a kernel holding the
GIL cannot hide a peak. Prints wall and CPU seconds and the peak above the
process's RssAnon before the call. See docs/memory.md.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

CHILD = r"""
import sys, time
import numpy as np
from csfast import _core, spill

a = np.load(sys.argv[2], mmap_mode="r")
b = np.load(sys.argv[3], mmap_mode="r")
print("ready", flush=True)
sys.stdin.readline()
t, c = time.perf_counter(), time.process_time()
if sys.argv[1] == "memory":
    out = _core.join_index([a, b])
else:
    out = spill.join_index([a, b], budget=spill._parse_size(sys.argv[1]), folder=sys.argv[4])
print(time.perf_counter() - t, time.process_time() - c, len(out[0]), flush=True)
sys.stdin.readline()
"""


def inputs(rows: int, folder: Path) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    a, b = folder / f"uids-{rows}-a.npy", folder / f"uids-{rows}-b.npy"
    if not (a.exists() and b.exists()):
        rng = np.random.default_rng(0)
        uids = np.arange(1, 2 * rows, 2, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
        np.save(a, rng.permutation(uids))
        np.save(b, rng.permutation(uids))
    return a, b


def rss_anon(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"RssAnon:\s+(\d+)", status).group(1)) * 1024


def run(mode: str, a: Path, b: Path, folder: Path) -> str:
    cmd = [sys.executable, "-c", CHILD, mode, str(a), str(b), str(folder)]
    with subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) as p:
        assert p.stdout.readline() == "ready\n"
        base = rss_anon(p.pid)
        peak, done = [base], threading.Event()

        def sample() -> None:
            while not done.is_set():
                peak[0] = max(peak[0], rss_anon(p.pid))
                time.sleep(0.002)

        sampler = threading.Thread(target=sample)
        sampler.start()
        p.stdin.write("\n")
        p.stdin.flush()
        line = p.stdout.readline()
        done.set()
        sampler.join()
        p.stdin.write("\n")
        p.stdin.flush()
    wall, cpu, n = line.split()
    mib = 1 << 20
    return (
        f"{mode:>8}: {float(wall):6.2f} s wall, {float(cpu):6.2f} s CPU, peak RssAnon "
        f"+{(peak[0] - base) / mib:.1f} MiB (over {base / mib:.0f} MiB), {n} rows"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--budget", default="256M,64M", help="spilled runs' budgets, comma-separated")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--dir", type=Path, default=Path("/tmp/csfast-bench/spill"))
    args = ap.parse_args()
    a, b = inputs(args.rows, args.dir)
    for _ in range(args.repeat):
        for mode in ["memory", *args.budget.split(",")]:
            print(run(mode, a, b, args.dir), flush=True)


if __name__ == "__main__":
    main()
