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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# Bump when the generated content changes, so old caches are rebuilt.
SCENARIO_VERSION = 1
CHUNKS = 10
SUBSET_FRACTION = 0.3
PASSTHROUGH_RESULTS = ("blob", "ctf", "location", "pick_stats")
# Tables are generated (in memory) this many rows at a time.
BLOCK_ROWS = 10_000_000
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
        return sum(p.stat().st_size for p in self.files() if p.exists())


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


def _valid(sc: Scenario, chunks: bool = True) -> bool:
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
    wanted = sc.files() if chunks else [sc.passthrough, sc.particles, sc.subset_uids_path]
    return all(p.exists() and p.stat().st_size == sizes.get(p.name) for p in wanted)


def _block_bounds(rows: int) -> np.ndarray:
    """Row bounds of the blocks a table is generated in (one block up to BLOCK_ROWS)."""
    return np.linspace(0, rows, -(-rows // BLOCK_ROWS) + 1).astype(np.int64)


def _save_blocks(path: Path, bounds: np.ndarray, make: Callable[[int, int], np.ndarray]) -> None:
    """One .npy of the records make(lo, hi) of each block, written through a
    numpy-made memory map, so a table larger than memory is never whole in it."""
    tmp = path.with_name(path.name + ".tmp")
    first = make(int(bounds[0]), int(bounds[1]))
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=first.dtype, shape=(int(bounds[-1]),))
    out[: len(first)] = first
    del first
    for lo, hi in zip(bounds[1:-1], bounds[2:], strict=True):
        out[lo:hi] = make(int(lo), int(hi))
    out.flush()
    del out
    os.replace(tmp, path)


def _seed(seed: int, block: int, blocks: int) -> int | list[int]:
    # A table of one block is seeded as before blocks existed (its cache stays valid).
    return seed if blocks == 1 else [seed, block]


def write_chunks(sc: Scenario) -> None:
    """Cut the passthrough table into CHUNKS files (read through a map, so
    the table need not fit in memory) and add them to the manifest."""
    table = np.load(sc.passthrough, mmap_mode="r")
    bounds = np.linspace(0, sc.rows, CHUNKS + 1).astype(np.int64)
    for path, lo, hi in zip(sc.chunks, bounds[:-1], bounds[1:], strict=True):
        _save(path, table[lo:hi])
    _write_manifest(sc)


def drop(sc: Scenario, path: Path) -> None:
    """Delete one file of the scenario (to make room on disk) and say so in its manifest."""
    path.unlink()
    _write_manifest(sc)


def _write_manifest(sc: Scenario) -> None:
    sizes = {p.name: p.stat().st_size for p in sc.files() if p.exists()}
    sc.manifest.write_text(
        json.dumps(
            {"version": SCENARIO_VERSION, "rows": sc.rows, "seed": sc.seed, "sizes": sizes},
            indent=1,
        )
    )


def build(
    rows: int = 1_000_000,
    *,
    seed: int = 0,
    root: str | os.PathLike | None = None,
    log=None,
    chunks: bool = True,
) -> Scenario:
    """The scenario at ``rows`` rows, generated unless a valid cache exists.

    Tables beyond BLOCK_ROWS rows are generated a block at a time. With
    chunks=False the ten chunk files are not written (``write_chunks`` adds
    them later): at 50M rows, the passthrough table and its chunks take 19 GB each.
    """
    if rows < CHUNKS:
        raise ValueError(f"the scenario needs at least {CHUNKS} rows, got {rows}")
    root = Path(root) if root is not None else DEFAULT_ROOT
    sc = Scenario(rows, seed, root / f"rows{rows}-seed{seed}")
    if _valid(sc, chunks):
        return sc
    # Imported here: building the cache is the only use of csfast in this module.
    from csfast.dataset import generate_uids
    from csfast.synthetic import particles

    if sc.folder.exists():
        shutil.rmtree(sc.folder)
    sc.folder.mkdir(parents=True)
    say = log or (lambda msg: None)
    t0 = time.perf_counter()
    say(f"generating the {rows:,}-row scenario in {sc.folder} ...")
    rng = np.random.default_rng([seed, rows])
    bounds = _block_bounds(rows)
    blocks = len(bounds) - 1
    # One block makes its own uids (as before blocks existed); more share them.
    uids = None if blocks == 1 else generate_uids(rows, seed=[seed, rows, 1])

    def passthrough(lo: int, hi: int) -> np.ndarray:
        block = None if uids is None else uids[lo:hi]
        seeded = _seed(seed, int(np.searchsorted(bounds, lo)), blocks)
        return _records(particles(hi - lo, results=PASSTHROUGH_RESULTS, seed=seeded, uids=block))

    _save_blocks(sc.passthrough, bounds, passthrough)
    if uids is None:
        uids = np.load(sc.passthrough, mmap_mode="r")["uid"].copy()
    if chunks:
        write_chunks(sc)
    shuffled = uids[rng.permutation(rows)]

    def aligned(lo: int, hi: int) -> np.ndarray:
        seeded = _seed(seed + 1, int(np.searchsorted(bounds, lo)), blocks)
        return _records(
            particles(hi - lo, results=("alignments3D",), seed=seeded, uids=shuffled[lo:hi])
        )

    _save_blocks(sc.particles, bounds, aligned)
    np.save(sc.subset_uids_path, rng.choice(uids, size=int(rows * SUBSET_FRACTION), replace=False))
    _write_manifest(sc)
    say(f"  done in {time.perf_counter() - t0:.1f} s, {sc.total_bytes() / 1e9:.2f} GB")
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
    ap.add_argument(
        "--no-chunks", action="store_true", help="leave out the ten chunk files (append inputs)"
    )
    args = ap.parse_args()
    sc = build(args.rows, seed=args.seed, root=args.dir, log=print, chunks=not args.no_chunks)
    print(f"{sc.folder}: {sc.total_bytes() / 1e9:.2f} GB")


if __name__ == "__main__":
    main()
