"""Dataset operations on the scenario: join, append, subset, union, query.

Every csfast round starts from freshly opened (mapped) files, as a pipeline
stage does, and reads every output column, so lazy row subsets cost what
they cost when used. numpy baselines do the same work where numpy has it
(np.concatenate without the uid check; isin plus a boolean index).
cryosparc-tools, pandas and polars are compared in benchmarks/compare.py.
"""

from __future__ import annotations

import numpy as np
import pytest
from operations import OPERATIONS
from scenario import materialize, nbytes

from csfast import Dataset

# ---------------------------------------------------------------- join


def test_innerjoin(run, scenario):
    op = OPERATIONS["join"]
    out = op.csfast(scenario, None)
    out_bytes = nbytes(out)
    del out
    out = run(lambda: op.csfast(scenario, None), group=op.label, nbytes=out_bytes)
    assert len(out) == scenario.rows


def test_innerjoin_many(run, scenario):
    """Three-way join: particles, passthrough, and particles' alignments3D again."""
    def join():
        return materialize(Dataset.innerjoin_many(
            Dataset.load(scenario.particles), Dataset.load(scenario.passthrough),
            Dataset.load(scenario.particles, prefixes=["alignments3D"])))

    out = run(join, group=OPERATIONS["join"].label)
    assert len(out) == scenario.rows


# -------------------------------------------------------------- append


def test_append_csfast(run_operation, scenario):
    assert len(run_operation("append")) == scenario.rows


def test_append_csfast_repeat_allowed(run, scenario):
    """The same without the uid check: what the check costs."""
    def append():
        return Dataset.append_many(*(Dataset.load(p) for p in scenario.chunks),
                                   repeat_allowed=True)

    out = run(append, group=OPERATIONS["append"].label)
    assert len(out) == scenario.rows


def test_append_numpy_concatenate(run_operation, scenario):
    assert len(run_operation("append", "numpy")) == scenario.rows


# -------------------------------------------------------------- subset


@pytest.fixture(scope="module")
def subset_uids(scenario):
    return scenario.subset_uids()


def test_subset_uids(run_operation, subset_uids):
    assert len(run_operation("subset")) == len(subset_uids)


def test_subset_query_uid(run, scenario, subset_uids):
    def subset():
        return materialize(Dataset.load(scenario.passthrough).query({"uid": subset_uids}))

    out = run(subset, group=OPERATIONS["subset"].label)
    assert len(out) == len(subset_uids)


def test_subset_numpy_isin(run_operation, subset_uids):
    assert len(run_operation("subset", "numpy")) == len(subset_uids)


# --------------------------------------------------------------- union


def test_union(run_operation, scenario):
    """Two overlapping 60% slices of the passthrough table (20% overlap)."""
    assert len(run_operation("union")) == scenario.rows


# --------------------------------------------------------------- query


def test_query_path(run, scenario):
    """Rows of 10% of the micrographs, by their path (string membership)."""
    paths = np.unique(np.load(scenario.passthrough, mmap_mode="r")["location/micrograph_path"])
    wanted = paths[:: 10]

    def query():
        ds = Dataset.load(scenario.passthrough)
        return materialize(ds.query({"location/micrograph_path": wanted}))

    out = run(query, group="query a string field")
    assert 0 < len(out) < scenario.rows


def test_split_by_class(run, scenario):
    def split():
        return Dataset.load(scenario.particles).split_by("alignments3D/class")

    parts = run(split, group="split_by")
    assert sum(len(p) for p in parts.values()) == scenario.rows

