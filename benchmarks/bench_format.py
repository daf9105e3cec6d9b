"""The .cs file layer: open, read one column, read a whole table, save.

Each csfast benchmark sits in a group beside numpy doing the same work
(np.load, np.load(mmap_mode="r"), np.save). Files are in the page cache
(the scenario was just generated or read), so these measure CPU and memory
work, not the disk.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from operations import COLUMN, OPERATIONS, save_path
from scenario import materialize

import csfast

# ---------------------------------------------------------------- open


OPEN = OPERATIONS["open"]


def test_open_csfast(benchmark, scenario):
    benchmark.group = OPEN.label
    ds = benchmark(OPEN.csfast, scenario, None)
    assert len(ds) == scenario.rows


def test_open_csfast_inspect(benchmark, scenario):
    benchmark.group = OPEN.label
    info = benchmark(csfast.inspect, scenario.passthrough)
    assert info.rows == scenario.rows


def test_open_numpy_mmap(benchmark, scenario):
    benchmark.group = OPEN.label
    arr = benchmark(OPEN.numpy, scenario, None)
    assert len(arr) == scenario.rows


# ------------------------------------------------------ read one column


def test_read_column_csfast(run_operation, scenario):
    assert run_operation("column").shape == (scenario.rows,)


def test_read_column_csfast_fields(run, scenario):
    def read():
        return np.ascontiguousarray(
            csfast.Dataset.load(scenario.passthrough, fields=[COLUMN])[COLUMN])

    col = run(read, group=OPERATIONS["column"].label, nbytes=scenario.rows * 4)
    assert col.shape == (scenario.rows,)


def test_read_column_numpy_mmap(run_operation, scenario):
    assert run_operation("column", "numpy").shape == (scenario.rows,)


# ------------------------------------------------------- read all rows


def test_read_all_csfast(run_operation, scenario):
    assert len(run_operation("load")) == scenario.rows


def test_read_all_csfast_copy_from_map(run, scenario):
    """Every column copied out of the map into contiguous arrays."""
    ds = run(lambda: csfast.Dataset(csfast.Dataset.load(scenario.passthrough)),
             group=OPERATIONS["load"].label, nbytes=os.path.getsize(scenario.passthrough))
    assert len(materialize(ds)) == scenario.rows


def test_read_all_numpy(run_operation, scenario):
    assert len(run_operation("load", "numpy")) == scenario.rows


# ---------------------------------------------------------------- save


@pytest.mark.parametrize("key", ["save", "save_fsync"])
@pytest.mark.parametrize("side", ["csfast", "numpy"])
def test_save(run_operation, scenario, key, side):
    out = Path(save_path(scenario))
    try:
        run_operation(key, side)
        assert csfast.inspect(out).rows == scenario.rows
    finally:
        out.unlink(missing_ok=True)
