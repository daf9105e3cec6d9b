"""Joins, appends and unions of tables larger than memory, in a memory cgroup.

    python benchmarks/bounded.py --rows 10000000 50000000 --limit 2G

For each scenario size (scenario.py; generated once, a block at a time),
each operation runs as the ``csfast`` command line a user would type, in a
fresh process, with the page cache dropped first (a 50M-row scenario does
not fit in it, so every size is measured cold), fsync included:

- ``join``: ``csfast join particles.cs passthrough_particles.cs``;
- ``subset``: ``csfast filter passthrough_particles.cs --uids subset_uids.npy``
  (30% of the uids, in random order);
- ``append``: ``csfast append extract_000.cs ... extract_009.cs`` (ten
  chunks of the passthrough table, the uid check included);
- ``union``: ``csfast union`` of the ten chunks followed by chunks 0 and 5
  again (12 files, a sixth of the rows repeated and dropped).

Each runs in two modes: ``unlimited`` (no cgroup, the default budget: the
uid index in memory) and ``cgroup`` (a cgroup v1 memory cgroup of --limit
bytes, page cache included; the default budget is half of it, so the uid
kernels spill beside the output). Reported: wall seconds, peak RssAnon
(sampled every 5 ms: anonymous memory, not the mapped files' pages), the
cgroup's peak usage (which counts page cache), the output's bytes, and
nanoseconds per output byte, with each size's ratio to the smallest size's.

Disk: the 50M scenario's passthrough table and its chunks take 19 GB each;
with ``--lean-disk`` the chunks are cut from the passthrough table after
the joins, and the passthrough table is deleted (a later join at that size
generates the scenario again). Needs root (cgroups, dropping caches).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import scenario as scen  # noqa: E402
from pipeline import run_sampled  # noqa: E402

from csfast.spill import _parse_size  # noqa: E402

CGROUPS = Path("/sys/fs/cgroup/memory")
OPS = ("join", "subset", "append", "union")
MODES = ("unlimited", "cgroup")


def command(op: str, sc: scen.Scenario, out: Path) -> list[str]:
    """The csfast command line of one operation."""
    csfast = [sys.executable, "-m", "csfast"]
    if op == "join":
        return [*csfast, "join", str(sc.particles), str(sc.passthrough), "-o", str(out)]
    if op == "subset":
        uids = str(sc.subset_uids_path)
        return [*csfast, "filter", str(sc.passthrough), "--uids", uids, "-o", str(out), "--quiet"]
    chunks = [str(p) for p in sc.chunks]
    if op == "append":
        return [*csfast, "append", *chunks, "-o", str(out)]
    return [*csfast, "union", *chunks, chunks[0], chunks[5], "-o", str(out), "--quiet"]


@contextlib.contextmanager
def memory_cgroup(limit: int | None) -> Iterator[tuple[list[str], Path | None]]:
    """(command prefix, cgroup folder): a fresh cgroup v1 memory cgroup of
    `limit` bytes, or no cgroup at all for None."""
    if limit is None:
        yield [], None
        return
    cg = CGROUPS / f"csfast-bounded-{os.getpid()}"
    cg.mkdir()
    try:
        (cg / "memory.limit_in_bytes").write_text(str(limit))
        yield ["sh", "-c", f'echo $$ > {cg}/cgroup.procs && exec "$@"', "sh"], cg
    finally:
        cg.rmdir()  # its process has exited; its page cache moves to the parent


def _cgroup_stats(cg: Path | None) -> dict[str, int]:
    if cg is None:
        return {}
    oom = dict(line.split() for line in (cg / "memory.oom_control").read_text().splitlines())
    return {
        "cgroup_peak": int((cg / "memory.max_usage_in_bytes").read_text()),
        "oom_kills": int(oom.get("oom_kill", 0)),
    }


def drop_caches() -> None:
    os.sync()
    Path("/proc/sys/vm/drop_caches").write_text("3\n")


def run(op: str, sc: scen.Scenario, out_dir: Path, limit: int | None) -> dict[str, Any]:
    out = out_dir / f"{op}.cs"
    env = {k: v for k, v in os.environ.items() if k != "CSFAST_MEMORY_LIMIT"}
    drop_caches()
    with memory_cgroup(limit) as (prefix, cg):
        t0 = time.perf_counter()
        code, _, stderr, peak_anon = run_sampled(prefix + command(op, sc, out), env)
        seconds = time.perf_counter() - t0
        res: dict[str, Any] = {"op": op, "rows": sc.rows, "limit": limit, "seconds": seconds}
        res |= {"peak_anon": peak_anon, "exit": code} | _cgroup_stats(cg)
    if code != 0:
        res["error"] = (stderr.strip().splitlines() or [f"exit status {code}"])[-1]
        return res
    res["out_bytes"] = out.stat().st_size
    res["ns_per_byte"] = seconds / res["out_bytes"] * 1e9
    # Left spill folders would be a bug: the run removes its own.
    res["spill_left"] = sorted(p.name for p in out_dir.glob(".csfast-spill-*"))
    out.unlink()
    return res


def render(results: list[dict[str, Any]]) -> str:
    cols = ["op", "rows", "mode", "time s", "peak RssAnon MB", "cgroup peak MB", "output GB"]
    cols += ["ns/byte", "x smallest"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    base: dict[tuple[str, Any], float] = {}
    for r in sorted(results, key=lambda r: (OPS.index(r["op"]), r["limit"] or 0, r["rows"])):
        mode = "unlimited" if r["limit"] is None else f"cgroup {r['limit'] / 2**30:g} GiB"
        if "error" in r:
            lines.append(f"| {r['op']} | {r['rows']:,} | {mode} | failed: {r['error']} |")
            continue
        key = (r["op"], r["limit"])
        base.setdefault(key, r["ns_per_byte"])
        cg = f"{r['cgroup_peak'] / 1e6:,.0f}" if "cgroup_peak" in r else "-"
        lines.append(
            f"| {r['op']} | {r['rows']:,} | {mode} | {r['seconds']:.1f} | "
            f"{r['peak_anon'] / 1e6:,.0f} | {cg} | {r['out_bytes'] / 1e9:.2f} | "
            f"{r['ns_per_byte']:.2f} | {r['ns_per_byte'] / base[key]:.2f} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, nargs="+", default=[10_000_000])
    ap.add_argument("--limit", default="2G", help="the memory cgroup's limit (2G, 1536M, ...)")
    ap.add_argument("--ops", default=",".join(OPS), help="operations, comma-separated")
    ap.add_argument("--modes", default=",".join(MODES), help="unlimited and/or cgroup")
    ap.add_argument("--dir", default=None, help="scenario cache root (see scenario.py)")
    ap.add_argument("--out", default=None, help="output folder (default: beside the scenario)")
    ap.add_argument("--lean-disk", action="store_true", help="see the module's docstring")
    ap.add_argument("--json", default=None, help="write the results here too")
    args = ap.parse_args(argv)
    if os.geteuid() != 0 or not (CGROUPS / "cgroup.procs").exists():
        ap.error("needs root and the cgroup v1 memory controller at " + str(CGROUPS))
    ops = args.ops.split(",")
    limits = [None if m == "unlimited" else _parse_size(args.limit) for m in args.modes.split(",")]
    results = []
    for rows in args.rows:
        sc = scen.build(rows, root=args.dir, log=print, chunks=not args.lean_disk)
        out_dir = Path(args.out) if args.out else sc.folder.parent / "bounded-out"
        out_dir.mkdir(parents=True, exist_ok=True)
        for op in ops:
            if op in ("append", "union") and not all(p.exists() for p in sc.chunks):
                print("cutting the chunks from the passthrough table ...", flush=True)
                scen.write_chunks(sc)
                if args.lean_disk:
                    scen.drop(sc, sc.passthrough)
            for limit in limits:
                res = run(op, sc, out_dir, limit)
                print(json.dumps(res), flush=True)
                results.append(res)
        shutil.rmtree(out_dir, ignore_errors=True)
    print(render(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0 if all("error" not in r for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
