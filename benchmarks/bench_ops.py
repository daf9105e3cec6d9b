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
from scenario import materialize, nbytes

from csfast import Dataset

# ---------------------------------------------------------------- join


def test_innerjoin(run, scenario):
    def join():
        parts = Dataset.load(scenario.particles)
        return materialize(parts.innerjoin(Dataset.load(scenario.passthrough)))

    out = join()
    out_bytes = nbytes(out)
    del out
    out = run(join, group="inner join, all columns", nbytes=out_bytes)
    assert len(out) == scenario.rows


def test_innerjoin_many(run, scenario):
    """Three-way join: particles, passthrough, and particles' alignments3D again."""
    def join():
        return materialize(Dataset.innerjoin_many(
            Dataset.load(scenario.particles), Dataset.load(scenario.passthrough),
            Dataset.load(scenario.particles, prefixes=["alignments3D"])))

    out = run(join, group="inner join, all columns")
    assert len(out) == scenario.rows


# -------------------------------------------------------------- append


def test_append_csfast(run, scenario):
    def append():
        return Dataset.append_many(*(Dataset.load(p) for p in scenario.chunks))

    out = run(append, group="append 10 chunks",
              nbytes=sum(np.load(p, mmap_mode="r").nbytes for p in scenario.chunks))
    assert len(out) == scenario.rows


def test_append_csfast_repeat_allowed(run, scenario):
    """The same without the uid check: what the check costs."""
    def append():
        return Dataset.append_many(*(Dataset.load(p) for p in scenario.chunks),
                                   repeat_allowed=True)

    out = run(append, group="append 10 chunks")
    assert len(out) == scenario.rows


def test_append_numpy_concatenate(run, scenario):
    def append():
        return np.concatenate([np.load(p, mmap_mode="r") for p in scenario.chunks])

    out = run(append, group="append 10 chunks")
    assert len(out) == scenario.rows


# -------------------------------------------------------------- subset


@pytest.fixture(scope="module")
def subset_uids(scenario):
    return scenario.subset_uids()


def test_subset_uids(run, scenario, subset_uids):
    def subset():
        return materialize(Dataset.load(scenario.passthrough).subset_uids(subset_uids))

    out = run(subset, group="subset 30% by uid")
    assert len(out) == len(subset_uids)


def test_subset_query_uid(run, scenario, subset_uids):
    def subset():
        return materialize(Dataset.load(scenario.passthrough).query({"uid": subset_uids}))

    out = run(subset, group="subset 30% by uid")
    assert len(out) == len(subset_uids)


def test_subset_numpy_isin(run, scenario, subset_uids):
    def subset():
        arr = np.load(scenario.passthrough, mmap_mode="r")
        return arr[np.isin(arr["uid"], subset_uids)]

    out = run(subset, group="subset 30% by uid")
    assert len(out) == len(subset_uids)


# --------------------------------------------------------------- union


def test_union(run, scenario):
    """Two overlapping 60% slices of the passthrough table (20% overlap)."""
    n = scenario.rows

    def union():
        ds = Dataset.load(scenario.passthrough)
        return materialize(Dataset.union_many(ds.slice(0, n * 6 // 10), ds.slice(n * 4 // 10, n)))

    out = run(union, group="union")
    assert len(out) == n


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

