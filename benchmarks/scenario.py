"""The benchmark scenario of docs/performance.md, generated once (seeded) and cached.

For n rows, a folder holds:

- ``passthrough_particles.cs``: uid + blob + ctf + location + pick_stats,
  about 380 bytes a row, two ``S96`` path columns with a few thousand
  distinct values, sub-array fields (2,) and (4,);
- ``particles.cs``: uid + alignments3D (about 90 bytes a row), the same uids
  in a shuffled order;
- ``extract_000.cs`` ... ``extract_009.cs``: the passthrough table cut in ten
  consecutive chunks (the inputs of an append; their uids are distinct);
- ``subset_uids.npy``: 30% of the uids, in random order (a subset query).

The files are written with ``numpy.save`` of a structured array (not with
csfast), so every reader sees a file numpy made. ``scenario.json`` is written
last: a folder without it (an interrupted run) is generated again.

Usable as a script: ``python benchmarks/scenario.py --rows 1000000``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# Bump when the generated content changes, so old caches are rebuilt.
SCENARIO_VERSION = 1
CHUNKS = 10
SUBSET_FRACTION = 0.3
PASSTHROUGH_RESULTS = ("blob", "ctf", "location", "pick_stats")
DEFAULT_ROOT = Path(os.environ.get("CSFAST_BENCH_DIR", "/tmp/csfast-bench"))


@dataclass(frozen=True)
class Scenario:
    """Paths of one generated scenario."""

    rows: int
    seed: int
    folder: Path

    @property
    def passthrough(self) -> Path:
        return self.folder / "passthrough_particles.cs"

    @property
    def particles(self) -> Path:
        return self.folder / "particles.cs"

    @property
    def chunks(self) -> list[Path]:
        return [self.folder / f"extract_{i:03d}.cs" for i in range(CHUNKS)]

    @property
    def subset_uids_path(self) -> Path:
        return self.folder / "subset_uids.npy"

    def subset_uids(self) -> np.ndarray:
        return np.load(self.subset_uids_path)

    @property
    def manifest(self) -> Path:
        return self.folder / "scenario.json"

    def files(self) -> list[Path]:
        return [self.passthrough, self.particles, *self.chunks, self.subset_uids_path]

    def total_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.files())


def _records(ds) -> np.ndarray:
    """A numpy structured array of a Dataset's columns, built by numpy alone."""
    dtype = np.dtype([(k, ds[k].dtype, ds[k].shape[1:]) for k in ds.fields()])
    rec = np.empty(len(ds), dtype=dtype)
    for k in ds.fields():
        rec[k] = ds[k]
    return rec


def _save(path: Path, rec: np.ndarray) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        np.save(f, rec, allow_pickle=False)
    os.replace(tmp, path)


def _valid(sc: Scenario) -> bool:
    try:
        meta = json.loads(sc.manifest.read_text())
    except (OSError, ValueError):
        return False
    if (
        meta.get("version") != SCENARIO_VERSION
        or meta.get("rows") != sc.rows
        or meta.get("seed") != sc.seed
    ):
        return False
    sizes = meta.get("sizes", {})
    return all(p.exists() and p.stat().st_size == sizes.get(p.name) for p in sc.files())


def build(
    rows: int = 1_000_000, *, seed: int = 0, root: str | os.PathLike | None = None, log=None
) -> Scenario:
    """The scenario at ``rows`` rows, generated unless a valid cache exists."""
    if rows < CHUNKS:
        raise ValueError(f"the scenario needs at least {CHUNKS} rows, got {rows}")
    root = Path(root) if root is not None else DEFAULT_ROOT
    sc = Scenario(rows, seed, root / f"rows{rows}-seed{seed}")
    if _valid(sc):
        return sc
    # Imported here: building the cache is the only use of csfast in this module.
    from csfast.synthetic import particles

    if sc.folder.exists():
        shutil.rmtree(sc.folder)
    sc.folder.mkdir(parents=True)
    say = log or (lambda msg: None)
    t0 = time.perf_counter()
    say(f"generating the {rows:,}-row scenario in {sc.folder} ...")
    rng = np.random.default_rng([seed, rows])
    passthrough = _records(particles(rows, results=PASSTHROUGH_RESULTS, seed=seed))
    uids = passthrough["uid"].copy()
    _save(sc.passthrough, passthrough)
    bounds = np.linspace(0, rows, CHUNKS + 1).astype(np.int64)
    for path, lo, hi in zip(sc.chunks, bounds[:-1], bounds[1:], strict=True):
        _save(path, passthrough[lo:hi])
    del passthrough
    shuffled = uids[rng.permutation(rows)]
    _save(
        sc.particles,
        _records(particles(rows, results=("alignments3D",), seed=seed + 1, uids=shuffled)),
    )
    np.save(sc.subset_uids_path, rng.choice(uids, size=int(rows * SUBSET_FRACTION), replace=False))
    sizes = {p.name: p.stat().st_size for p in sc.files()}
    sc.manifest.write_text(
        json.dumps(
            {"version": SCENARIO_VERSION, "rows": rows, "seed": seed, "sizes": sizes}, indent=1
        )
    )
    say(f"  done in {time.perf_counter() - t0:.1f} s, {sum(sizes.values()) / 1e9:.2f} GB")
    return sc


def materialize(ds):
    """Read every column of a csfast Dataset, so lazy row subsets become arrays.

    Peers (cryosparc-tools, numpy) return materialized tables; csfast keeps
    row subsets of mapped files lazy, so timings call this to compare alike.
    """
    ds.cols()  # the public way to read every column: a mapped row is read once for all
    return ds


def nbytes(ds) -> int:
    """Bytes of every column of a csfast Dataset (materializing it)."""
    return sum(ds[k].nbytes for k in ds.fields())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--dir", default=None, help=f"cache root (default {DEFAULT_ROOT}, or $CSFAST_BENCH_DIR)"
    )
    args = ap.parse_args()
    sc = build(args.rows, seed=args.seed, root=args.dir, log=print)
    print(f"{sc.folder}: {sc.total_bytes() / 1e9:.2f} GB")


if __name__ == "__main__":
    main()
