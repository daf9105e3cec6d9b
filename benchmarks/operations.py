"""The benchmarked operations, defined once, each beside its docs/performance.md target.

compare.py times every operation here against its peers (cryosparc-tools,
polars, pandas: their code stays there); the pytest-benchmark suites
(bench_format.py, bench_ops.py) time csfast's side and the numpy baseline
of the same operations. An operation's ``csfast`` and ``numpy`` calls take
the scenario and the state its ``prepare`` built (untimed, or None), and
start from freshly opened (mapped) files unless prepare loaded them, as a
pipeline stage does; csfast's outputs are materialized, so lazy row
subsets cost what they cost when used.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scenario import Scenario, materialize

from csfast import Dataset

CST, POLARS, PANDAS, NUMPY = "cryosparc-tools", "polars", "pandas", "numpy"
#: polars holding every column (sub-arrays as Array, strings as Binary): csfast's work
POLARS_ALL = "polars-all"
SHORT = {CST: "cst", NUMPY: "np"}
COLUMN = "ctf/df1_A"
BIG_ROWS = 5_000_000  # from here, the targets of the large scenario apply
JOIN_MEMORY = 1.3  # target: an in-memory join's peak memory <= 1.3x its output


@dataclass(frozen=True)
class Target:
    """A target: ratio bounds against peers, or an absolute time."""

    text: str
    # (peer, minimum peer/csfast ratio): csfast must be at least that much faster.
    faster_than: list[tuple[str, float]] = field(default_factory=list)
    max_seconds: float | None = None

    def check(self, cs: float, peer_times: dict[str, float]) -> str:
        """ "pass", "FAIL <who>" or "n/a" for csfast's time cs and the peers' times."""
        if cs != cs:  # nan: csfast did not run
            return "n/a"
        failed, missing = [], []
        if self.max_seconds is not None and cs > self.max_seconds:
            failed.append(f"{cs * 1e3:.1f}ms")
        for peer, ratio in self.faster_than:
            if peer not in peer_times:
                missing.append(SHORT.get(peer, peer))
            elif peer_times[peer] / cs < ratio:
                failed.append(SHORT.get(peer, peer))
        if failed:
            return "FAIL " + ",".join(failed)
        checked = len(self.faster_than) - len(missing) + (self.max_seconds is not None)
        return ("pass" if checked else "n/a") + (f" (no {','.join(missing)})" if missing else "")


Run = Callable[[Scenario, Any], Any]


@dataclass(frozen=True)
class Operation:
    """One benchmarked operation: csfast's call, numpy's baseline, the target."""

    key: str
    label: str
    csfast: Run
    numpy: Run | None = None
    prepare: Callable[[Scenario], Any] | None = None  # csfast's untimed inputs
    numpy_prepare: Callable[[Scenario], Any] | None = None
    out_bytes: Callable[[Scenario], int] | None = None  # for the bandwidth floor
    target: Target | None = None
    target_big: Target | None = None  # from BIG_ROWS rows, where it differs

    def target_at(self, rows: int) -> Target | None:
        return self.target_big if rows >= BIG_ROWS and self.target_big else self.target


def _table_bytes(sc: Scenario) -> int:
    return np.load(sc.passthrough, mmap_mode="r").nbytes


def _row_bytes(sc: Scenario) -> int:
    return np.load(sc.passthrough, mmap_mode="r").dtype.itemsize


def save_path(sc: Scenario) -> str:
    """Where the save operations write (removed by whoever runs them)."""
    return str(sc.folder / f"saved-{os.getpid()}.cs")


def _np_save(arr: np.ndarray, out: str, fsync: bool) -> None:
    with open(out, "wb") as f:
        np.save(f, arr, allow_pickle=False)
        if fsync:
            f.flush()
            os.fsync(f.fileno())


def _join(left: Dataset, right: Dataset) -> Dataset:
    return materialize(left.innerjoin(right))


def _union(sc: Scenario) -> Dataset:
    """Two overlapping 60% slices of the passthrough table (20% overlap)."""
    n = sc.rows
    ds = Dataset.load(sc.passthrough)
    return materialize(Dataset.union_many(ds.slice(0, n * 6 // 10), ds.slice(n * 4 // 10, n)))


def _np_subset(sc: Scenario, uids: np.ndarray) -> np.ndarray:
    arr = np.load(sc.passthrough, mmap_mode="r")
    return arr[np.isin(arr["uid"], uids)]


JOIN = Target(">=10x cst, < polars(-all)", [(CST, 10.0), (POLARS, 1.0), (POLARS_ALL, 1.0)])
JOIN_BIG = Target(
    ">=15x cst, <=0.5x polars, < polars-all", [(CST, 15.0), (POLARS, 2.0), (POLARS_ALL, 1.0)]
)
SAVE = Target("<=1.1x np.save", [(NUMPY, 1 / 1.1)])

OPERATIONS: dict[str, Operation] = {
    op.key: op
    for op in [
        Operation(
            "open",
            "open (header + map)",
            lambda sc, _: Dataset.load(sc.passthrough),
            numpy=lambda sc, _: np.load(sc.passthrough, mmap_mode="r"),
            target=Target("< 5 ms", max_seconds=5e-3),
        ),
        Operation(
            "column",
            f"read one column ({COLUMN})",
            lambda sc, _: np.ascontiguousarray(Dataset.load(sc.passthrough)[COLUMN]),
            numpy=lambda sc, _: np.ascontiguousarray(
                np.load(sc.passthrough, mmap_mode="r")[COLUMN]
            ),
            out_bytes=lambda sc: sc.rows * 4,
        ),
        Operation(
            "load",
            "load whole passthrough",
            lambda sc, _: Dataset.load(sc.passthrough, mmap=False),
            numpy=lambda sc, _: np.load(sc.passthrough),
            out_bytes=_table_bytes,
        ),
        Operation(
            "join",
            "inner join, all columns (mapped files)",
            lambda sc, _: _join(Dataset.load(sc.particles), Dataset.load(sc.passthrough)),
            target=JOIN,
            target_big=JOIN_BIG,
        ),
        Operation(
            "join_mem",
            "inner join, all columns (inputs in memory)",
            lambda sc, s: _join(*s),
            prepare=lambda sc: (
                Dataset.load(sc.particles, mmap=False),
                Dataset.load(sc.passthrough, mmap=False),
            ),
            target=JOIN,
            target_big=JOIN_BIG,
        ),
        Operation(
            "append",
            "append 10 chunks, uid check",
            lambda sc, _: materialize(Dataset.append_many(*(Dataset.load(p) for p in sc.chunks))),
            numpy=lambda sc, _: np.concatenate([np.load(p, mmap_mode="r") for p in sc.chunks]),
            out_bytes=lambda sc: sum(np.load(p, mmap_mode="r").nbytes for p in sc.chunks),
            target=Target(
                ">=5x cst, <=1.2x np.concatenate, < polars-all",
                [(CST, 5.0), (NUMPY, 1 / 1.2), (POLARS_ALL, 1.0)],
            ),
        ),
        Operation(
            "subset",
            "subset 30% by uid",
            lambda sc, uids: materialize(Dataset.load(sc.passthrough).subset_uids(uids)),
            numpy=_np_subset,
            prepare=lambda sc: sc.subset_uids(),
            numpy_prepare=lambda sc: sc.subset_uids(),
            out_bytes=lambda sc: len(sc.subset_uids()) * _row_bytes(sc),
            target=Target(">=15x cst, < polars-all", [(CST, 15.0), (POLARS_ALL, 1.0)]),
        ),
        Operation(
            "union",
            "union of two 60% slices",
            lambda sc, _: _union(sc),
            out_bytes=lambda sc: sc.rows * _row_bytes(sc),
        ),
        Operation(
            "save",
            "save passthrough (no fsync)",
            lambda sc, ds: ds.save(save_path(sc), fsync=False),
            numpy=lambda sc, arr: _np_save(arr, save_path(sc), False),
            prepare=lambda sc: Dataset.load(sc.passthrough, mmap=False),
            numpy_prepare=lambda sc: np.load(sc.passthrough),
            out_bytes=_table_bytes,
            target=SAVE,
        ),
        Operation(
            "save_fsync",
            "save passthrough + fsync (csfast default)",
            lambda sc, ds: ds.save(save_path(sc)),
            numpy=lambda sc, arr: _np_save(arr, save_path(sc), True),
            prepare=lambda sc: Dataset.load(sc.passthrough, mmap=False),
            numpy_prepare=lambda sc: np.load(sc.passthrough),
            out_bytes=_table_bytes,
        ),
    ]
}
