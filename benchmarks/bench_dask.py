"""csfast.dask on a local cluster: join and append of the scenario, beside one process.

For each row count and worker count, on the scenario files (scenario.py):

- join: ``read_cs(passthrough).innerjoin(read_cs(particles))``;
- append: ``append(read_cs(extract_000), ..., read_cs(extract_009))`` with the uid check;

each timed two ways: written as .cs shards by the workers (``to_cs``, no fsync: nothing
but uids, row numbers and the join's matched rows crosses between processes)
and gathered into this process (``compute``: every output row crosses).
The single-process csfast figure (``Dataset`` methods, then ``save`` without
fsync) is printed beside them. Each worker is a process with one thread on
127.0.0.1; csfast's own C threads inside a worker are set by ``--threads``.

    python benchmarks/bench_dask.py --rows 1000000 --workers 1,2
    python benchmarks/bench_dask.py --rows 10000000 --workers 1,2 --partitions 16

Timings are the best of ``--repeat`` runs (each starts from the files:
nothing persisted between runs); the cluster starts once per worker count.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from collections.abc import Callable

import scenario

import csfast

# A script, not a pytest-benchmark suite (conftest.py collects bench_*.py):
# dask is imported when it runs, so collecting this file needs no extra.


def best(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def fresh(root: str) -> str:
    """An empty folder for one run's output."""
    shutil.rmtree(root, ignore_errors=True)
    os.makedirs(root)
    return root


def single_process(sc: scenario.Scenario, out: str, repeat: int) -> dict[str, float]:
    def join() -> None:
        ds = csfast.Dataset.load(sc.passthrough).innerjoin(csfast.Dataset.load(sc.particles))
        ds.save(os.path.join(fresh(out), "join.cs"), fsync=False)

    def append() -> None:
        ds = csfast.Dataset.append_many(*(csfast.Dataset.load(p) for p in sc.chunks))
        ds.save(os.path.join(fresh(out), "append.cs"), fsync=False)

    return {"join": best(join, repeat), "append": best(append, repeat)}


def on_cluster(
    sc: scenario.Scenario, rows_per_partition: int, out: str, repeat: int
) -> dict[str, float]:
    import csfast.dask as cd

    def joined() -> cd.Partitioned:
        return cd.read_cs(sc.passthrough, rows_per_partition).innerjoin(
            cd.read_cs(sc.particles, rows_per_partition)
        )

    def appended() -> cd.Partitioned:
        return cd.append(*(cd.read_cs(p, rows_per_partition) for p in sc.chunks))

    return {
        "join, to_cs": best(lambda: joined().to_cs(fresh(out), fsync=False), repeat),
        "join, compute": best(lambda: joined().compute(), repeat),
        "append, to_cs": best(lambda: appended().to_cs(fresh(out), fsync=False), repeat),
        "append, compute": best(lambda: appended().compute(), repeat),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, nargs="+", default=[1_000_000])
    ap.add_argument("--workers", default="1,2", help="worker counts, comma-separated")
    ap.add_argument("--partitions", type=int, default=8, help="partitions of each large file")
    ap.add_argument("--threads", type=int, default=1, help="csfast threads in each process")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--dir", default=None, help="scenario cache root (see scenario.py)")
    args = ap.parse_args()
    from distributed import Client, LocalCluster

    os.environ["CSFAST_NUM_THREADS"] = str(args.threads)  # inherited by the worker processes
    csfast.set_num_threads(args.threads)
    workers = [int(w) for w in args.workers.split(",")]
    out = tempfile.mkdtemp(prefix="csfast-bench-dask-")
    try:
        for rows in args.rows:
            sc = scenario.build(rows, root=args.dir, log=print)
            rpp = -(-rows // args.partitions)
            print(f"\n{rows:,} rows, {args.partitions} partitions of {rpp:,} rows a large file")
            alone = single_process(sc, out, args.repeat)
            print(
                f"  one process:       join {alone['join']:.2f} s, append {alone['append']:.2f} s"
            )
            for n in workers:
                with (
                    LocalCluster(
                        n_workers=n,
                        processes=True,
                        threads_per_worker=1,
                        host="127.0.0.1",
                        dashboard_address=None,
                    ) as cluster,
                    Client(cluster),
                ):
                    got = on_cluster(sc, rpp, out, args.repeat)
                shown = ", ".join(f"{k} {v:.2f} s" for k, v in got.items())
                print(f"  {n} worker{'s' if n > 1 else ' '}:         {shown}")
    finally:
        shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
