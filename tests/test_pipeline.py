"""The end-to-end pipeline benchmark (benchmarks/pipeline.py) computes the right tables.

Each stage of each installed contender runs on a 2,000-row scenario and its
output file is compared with a reference built here by brute force (Python
dicts and sets over numpy's reading of the input files): the same rows (as a
set, by uid) and, field by field, the same values. A peer that is not
installed skips. Speed is not measured here.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCH))

import pipeline  # noqa: E402

ROWS = 2_000
PEER_MODULES = {
    "cryosparc-tools": "cryosparc.dataset",
    "polars": "polars",
    "pandas": "pandas",
}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> pipeline.Inputs:
    return pipeline.prepare(ROWS, str(tmp_path_factory.mktemp("bench")))


def _columns(arr: np.ndarray) -> dict[str, np.ndarray]:
    return {n: arr[n] for n in arr.dtype.names}


def _joined(tables: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Inner join on uid, brute force: the first table's rows whose uid every other has."""
    where = [{int(u): i for i, u in enumerate(t["uid"])} for t in tables[1:]]
    rows = [
        (i, [w[int(u)] for w in where])
        for i, u in enumerate(tables[0]["uid"])
        if all(int(u) in w for w in where)
    ]
    out = {n: c[[i for i, _ in rows]] for n, c in tables[0].items()}
    for k, t in enumerate(tables[1:]):
        for n, c in t.items():
            out.setdefault(n, c[[js[k] for _, js in rows]])
    return out


def _reference(stage: str, inp: pipeline.Inputs) -> dict[str, np.ndarray]:
    sc = inp.sc
    if stage == "join":
        return _joined([_columns(np.load(sc.particles)), _columns(np.load(sc.passthrough))])
    if stage == "append":
        arr = np.concatenate([np.load(p) for p in sc.chunks])
        assert len(set(arr["uid"].tolist())) == len(arr)
        return _columns(arr)
    if stage == "subset":
        arr = np.load(sc.passthrough)
        keep = set(np.load(sc.subset_uids_path).tolist())
        return _columns(arr[[u in keep for u in arr["uid"].tolist()]])
    # The refinement (job J6 of csfast.demo): J5's selected particles, their
    # alignments2D, ctf, location and pick_stats; the blob of J2's extraction.
    demo = inp.demo

    def results(path: str, prefixes: tuple[str, ...]) -> dict[str, np.ndarray]:
        arr = np.load(demo / path)
        return {n: arr[n] for n in arr.dtype.names if n == "uid" or n.startswith(prefixes)}

    return _joined(
        [
            results("J5/J5_000_particles_selected.cs", ("alignments2D/",)),
            results(
                "J5/J5_passthrough_particles_selected.cs", ("ctf/", "location/", "pick_stats/")
            ),
            results("J2/J2_000_particles.cs", ("blob/",)),
        ]
    )


def _assert_table(path: Path, expected: dict[str, np.ndarray]) -> None:
    got = np.load(path)
    assert sorted(got.dtype.names) == sorted(expected)
    assert len(got) == len(expected["uid"]) > 0
    got = got[np.argsort(got["uid"])]
    order = np.argsort(expected["uid"])
    for name, col in expected.items():
        want = col[order]
        assert got[name].shape == want.shape, name
        if want.dtype.kind == "S":  # string widths may differ
            assert got[name].dtype.kind == "S", name
        else:
            assert got[name].dtype == want.dtype, name
        assert np.array_equal(got[name], want, equal_nan=want.dtype.kind == "f"), name


@pytest.mark.parametrize("contender", pipeline.CONTENDERS)
@pytest.mark.parametrize("stage", list(pipeline.STAGES))
def test_stage_output(inputs, tmp_path, stage, contender):
    if contender in PEER_MODULES:
        pytest.importorskip(PEER_MODULES[contender])
    out = tmp_path / "out.cs"
    pipeline.RUNNERS[contender](stage, inputs, out)
    _assert_table(out, _reference(stage, inputs))


def test_refinement_plan_names_the_demo_files(inputs):
    plan = {
        p.relative_to(inputs.demo).as_posix(): sorted(r)
        for p, r in pipeline.refinement_plan(inputs.demo)
    }
    assert plan == {
        "J5/J5_000_particles_selected.cs": ["alignments2D"],
        "J5/J5_passthrough_particles_selected.cs": ["ctf", "location", "pick_stats"],
        "J2/J2_000_particles.cs": ["blob"],
    }


def test_differences_reports_changed_rows_values_and_fields(inputs, tmp_path):
    src = np.load(inputs.sc.passthrough)
    ref = tmp_path / "ref.npy"
    np.save(ref, src)

    def diff(arr: np.ndarray) -> list[str]:
        path = tmp_path / "other.npy"
        np.save(path, arr)
        return pipeline.differences(ref, path)

    assert diff(src[::-1]) == []  # row order does not matter
    changed = src.copy()
    changed["ctf/df1_A"][7] += 1
    assert diff(changed) == ["ctf/df1_A: values differ"]
    assert diff(src[1:]) == [f"{len(src) - 1} rows, expected {len(src)}"]
    fewer = np.empty(len(src), [(n, src.dtype.fields[n][0]) for n in src.dtype.names[:-1]])
    for n in fewer.dtype.names:
        fewer[n] = src[n]
    assert diff(fewer)[0].startswith("fields differ: missing ['" + src.dtype.names[-1])


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_child_run_reports_time_and_memory(inputs, tmp_path):
    out = tmp_path / "subset.cs"
    res = pipeline.run_child("subset", "csfast", inputs, out)
    assert res["seconds"] > 0
    assert res["out_bytes"] == out.stat().st_size
    # Anonymous memory is part of the resident set, whose peak both others are.
    assert 0 < res["peak_anon"] <= res["vmhwm"] <= res["ru_maxrss"]
    _assert_table(out, _reference("subset", inputs))
