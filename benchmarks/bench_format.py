"""The .cs file layer: open, read one column, read a whole table, save.

Each csfast benchmark sits in a group beside numpy doing the same work
(np.load, np.load(mmap_mode="r"), np.save). Files are in the page cache
(the scenario was just generated or read), so these measure CPU and memory
work, not the disk.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from scenario import materialize, nbytes

import csfast

COLUMN = "ctf/df1_A"


# ---------------------------------------------------------------- open


def test_open_csfast(benchmark, scenario):
    benchmark.group = "open (header + map)"
    ds = benchmark(csfast.Dataset.load, scenario.passthrough)
    assert len(ds) == scenario.rows


def test_open_csfast_inspect(benchmark, scenario):
    benchmark.group = "open (header + map)"
    info = benchmark(csfast.inspect, scenario.passthrough)
    assert info.rows == scenario.rows


def test_open_numpy_mmap(benchmark, scenario):
    benchmark.group = "open (header + map)"
    arr = benchmark(np.load, scenario.passthrough, mmap_mode="r")
    assert len(arr) == scenario.rows


# ------------------------------------------------------ read one column


def test_read_column_csfast(run, scenario):
    def read():
        return np.ascontiguousarray(csfast.Dataset.load(scenario.passthrough)[COLUMN])

    col = run(read, group="read one column (fresh map)", nbytes=scenario.rows * 4)
    assert col.shape == (scenario.rows,)


def test_read_column_csfast_fields(run, scenario):
    def read():
        return np.ascontiguousarray(
            csfast.Dataset.load(scenario.passthrough, fields=[COLUMN])[COLUMN])

    col = run(read, group="read one column (fresh map)", nbytes=scenario.rows * 4)
    assert col.shape == (scenario.rows,)


def test_read_column_numpy_mmap(run, scenario):
    def read():
        return np.ascontiguousarray(np.load(scenario.passthrough, mmap_mode="r")[COLUMN])

    col = run(read, group="read one column (fresh map)", nbytes=scenario.rows * 4)
    assert col.shape == (scenario.rows,)


# ------------------------------------------------------- read all rows


def test_read_all_csfast(run, scenario):
    size = os.path.getsize(scenario.passthrough)
    ds = run(lambda: csfast.Dataset.load(scenario.passthrough, mmap=False),
             group="read whole table", nbytes=size)
    assert len(ds) == scenario.rows


def test_read_all_csfast_copy_from_map(run, scenario):
    """Every column copied out of the map into contiguous arrays."""
    ds = run(lambda: csfast.Dataset(csfast.Dataset.load(scenario.passthrough)),
             group="read whole table", nbytes=os.path.getsize(scenario.passthrough))
    assert len(materialize(ds)) == scenario.rows


def test_read_all_numpy(run, scenario):
    arr = run(lambda: np.load(scenario.passthrough), group="read whole table",
              nbytes=os.path.getsize(scenario.passthrough))
    assert len(arr) == scenario.rows


# ---------------------------------------------------------------- save


@pytest.fixture(scope="module")
def table(scenario):
    """The passthrough table in memory: a csfast Dataset and numpy's array."""
    ds = csfast.Dataset.load(scenario.passthrough, mmap=False)
    return ds, np.load(scenario.passthrough)


@pytest.mark.parametrize("fsync", [False, True], ids=["no-fsync", "fsync"])
def test_save_csfast(run, table, tmp_path, fsync):
    ds, _ = table
    out = tmp_path / "out.cs"
    run(lambda: ds.save(out, fsync=fsync), group=f"save ({'fsync' if fsync else 'no fsync'})",
        nbytes=nbytes(ds))
    assert csfast.inspect(out).rows == len(ds)


@pytest.mark.parametrize("fsync", [False, True], ids=["no-fsync", "fsync"])
def test_save_numpy(run, table, tmp_path, fsync):
    _, arr = table
    out = tmp_path / "out.npy"

    def save():
        with open(out, "wb") as f:
            np.save(f, arr, allow_pickle=False)
            if fsync:
                f.flush()
                os.fsync(f.fileno())

    run(save, group=f"save ({'fsync' if fsync else 'no fsync'})", nbytes=arr.nbytes)
    assert len(np.load(out, mmap_mode="r")) == len(arr)
