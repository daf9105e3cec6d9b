"""cryoSPARC project folders: open and list 500 jobs; check() of a 1M-row input.

- ``open + list``: a fresh ``Project`` over 500 job documents (v4 and v5
  alternating, each with a ``params`` block of about 50 kB, 26 MB in all),
  then for every job its type, status, output groups and input groups with
  their connections restored: what ``csfast project`` does. Job documents
  only; no metafile exists in that project. ``headers``: type and status
  only (the documents are still read whole: JSON has no index).
- ``check``: a job whose input connects a group of the scenario's
  passthrough table (blob, ctf, location, pick_stats) with its
  ``alignments3D`` slot overridden from the scenario's other table (same
  uids, shuffled): ``Input.check()`` reads headers and uid columns only.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import csfast

JOBS = 500


def _params(k: int) -> dict:
    """A params block the size of a real job's (parameters with titles and descriptions)."""
    return {
        f"param_{i}": {
            "value": i * k % 7,
            "title": f"Parameter {i}",
            "type": "number",
            "desc": "How many iterations of the inner loop to run " * 3,
            "order": i,
            "section": "compute",
            "advanced": False,
            "hidden": False,
        }
        for i in range(150)
    }


def _results(job: str, versions: list[int]) -> list[tuple[str, str, list[str], bool]]:
    files = [f"{job}/{job}_{v:03d}_particles.cs" for v in versions]
    pt = [f"{job}/{job}_passthrough_particles.cs"]
    return [
        ("alignments_class_0", "alignments3D", files, False),
        ("alignments_class_1", "alignments3D", files, False),
        ("blob", "blob", pt, True),
        ("ctf", "ctf", pt, True),
        ("location", "location", pt, True),
    ]


def _write_project(root: Path, jobs: int) -> None:
    """Job k reads job k-1's particles: slot alignments3D <- alignments_class_1, blob
    overridden from J1, the rest carried."""
    versions = [0, 10, 20, 30]
    for k in range(1, jobs + 1):
        job = f"J{k}"
        (root / job).mkdir(parents=True)
        results = _results(job, versions)
        inputs = []
        if k > 1:
            parent = f"J{k - 1}"
            inputs = [
                (
                    parent,
                    [
                        ("alignments3D", "alignments3D", parent, "alignments_class_1", "F"),
                        ("blob", "blob", "J1", "blob", "F"),
                    ]
                    + [
                        (None, r, parent, r, "F") for r in ("alignments_class_0", "ctf", "location")
                    ],
                )
            ]
        n = 1_000_000
        if k % 2:  # v4
            doc = {
                "uid": job,
                "job_type": "hetero_refine",
                "title": f"Job {k}",
                "status": "completed",
                "params_base": _params(k),
                "output_result_groups": [
                    {
                        "uid": f"{job}-G1",
                        "type": "particle",
                        "name": "particles",
                        "title": "Particles",
                        "num_items": n,
                        "passthrough": "particles",
                    }
                ],
                "output_results": [
                    {
                        "uid": f"{job}-R{i}",
                        "type": f"particle.{t}",
                        "name": name,
                        "group_name": "particles",
                        "versions": versions[: len(files)],
                        "metafiles": files,
                        "num_items": [n] * len(files),
                        "passthrough": pt,
                        "min_fields": [["path", "O"], ["idx", "u4"]],
                    }
                    for i, (name, t, files, pt) in enumerate(results)
                ],
                "input_slot_groups": [
                    {
                        "type": "particle",
                        "name": "particles",
                        "count_min": 1,
                        "count_max": None,
                        "repeat_allowed": False,
                        "slots": [
                            {
                                "type": "particle.alignments3D",
                                "name": "alignments3D",
                                "optional": False,
                            },
                            {"type": "particle.blob", "name": "blob", "optional": False},
                        ],
                        "connections": [
                            {
                                "job_uid": p,
                                "group_name": "particles",
                                "slots": [
                                    {
                                        "slot_name": s,
                                        "job_uid": j,
                                        "group_name": "particles",
                                        "result_name": r,
                                        "result_type": f"particle.{t}",
                                        "version": v,
                                    }
                                    for s, t, j, r, v in sources
                                ],
                            }
                            for p, sources in inputs
                        ],
                    }
                ],
            }
        else:  # v5
            doc = {
                "uid": job,
                "title": f"Job {k}",
                "status": "completed",
                "spec": {
                    "type": "hetero_refine",
                    "params": _params(k),
                    "outputs": {
                        "particles": {
                            "type": "particle",
                            "title": "Particles",
                            "num_items": n,
                            "results": [
                                {
                                    "name": name,
                                    "dtype": t,
                                    "versions": versions[: len(files)],
                                    "metafiles": files,
                                    "num_items": [n] * len(files),
                                    "passthrough": pt,
                                }
                                for name, t, files, pt in results
                            ],
                        }
                    },
                    "inputs": {
                        "particles": {
                            "type": "particle",
                            "title": "Particles",
                            "count_min": 1,
                            "count_max": "inf",
                            "repeat_allowed": False,
                            "slots": [
                                {"name": "alignments3D", "dtype": "alignments3D", "required": True},
                                {"name": "blob", "dtype": "blob", "required": True},
                            ],
                            "connections": [
                                {
                                    "job_uid": p,
                                    "output": "particles",
                                    "results": [
                                        {
                                            "name": s,
                                            "dtype": t,
                                            "job_uid": j,
                                            "output": "particles",
                                            "result": r,
                                            "version": v,
                                        }
                                        for s, t, j, r, v in sources
                                    ],
                                }
                                for p, sources in inputs
                            ],
                        }
                    },
                },
            }
        (root / job / "job.json").write_text(json.dumps(doc, indent=1))


@pytest.fixture(scope="module")
def project_500(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("project500")
    _write_project(root, JOBS)
    return root


def _open_and_list(root: Path) -> int:
    project = csfast.Project(root)
    connections = 0
    for uid in project.jobs():
        job = project.job(uid)
        assert job.type and job.status
        for group in job.outputs.values():
            assert group.num_items
        for inp in job.inputs.values():
            connections += len(inp.connections)
    return connections


def _open_and_headers(root: Path) -> int:
    project = csfast.Project(root)
    return sum(bool(project.job(uid).status) for uid in project.jobs())


def test_project_open_and_headers_500_jobs(benchmark, project_500):
    benchmark.group = f"project: open + list {JOBS} jobs"
    assert benchmark(_open_and_headers, project_500) == JOBS


def test_project_open_and_list_500_jobs(benchmark, project_500):
    benchmark.group = f"project: open + list {JOBS} jobs"
    size = sum(os.path.getsize(project_500 / f"J{k}" / "job.json") for k in range(1, JOBS + 1))
    benchmark.extra_info["job_documents_bytes"] = size
    assert benchmark(_open_and_list, project_500) == JOBS - 1


@pytest.fixture(scope="module")
def project_1m(tmp_path_factory, scenario) -> Path:
    """J1: the passthrough table as a group; J2: the alignments table; J3 reads J1 with
    alignments3D overridden from J2 (metafiles are links to the scenario's files)."""
    root = tmp_path_factory.mktemp("project1m")
    n = scenario.rows
    for job, src, results in (
        ("J1", scenario.passthrough, ["blob", "ctf", "location", "pick_stats"]),
        ("J2", scenario.particles, ["alignments3D"]),
    ):
        (root / job).mkdir()
        os.symlink(src, root / job / f"{job}_particles.cs")
        doc = {
            "uid": job,
            "title": job,
            "status": "completed",
            "spec": {
                "type": "import_particles",
                "inputs": {},
                "outputs": {
                    "particles": {
                        "type": "particle",
                        "num_items": n,
                        "results": [
                            {
                                "name": r,
                                "dtype": r,
                                "versions": [0],
                                "metafiles": [f"{job}/{job}_particles.cs"],
                                "num_items": [n],
                            }
                            for r in results
                        ],
                    }
                },
            },
        }
        (root / job / "job.json").write_text(json.dumps(doc))
    (root / "J3").mkdir()
    sources = [
        ("blob", "J1", "blob"),
        ("ctf", "J1", "ctf"),
        ("alignments3D", "J2", "alignments3D"),
        (None, "J1", "location"),
        (None, "J1", "pick_stats"),
    ]
    doc = {
        "uid": "J3",
        "title": "J3",
        "status": "completed",
        "spec": {
            "type": "homo_refine_new",
            "outputs": {},
            "inputs": {
                "particles": {
                    "type": "particle",
                    "count_min": 1,
                    "count_max": 1,
                    "slots": [
                        {"name": s, "dtype": s, "required": True}
                        for s in ("blob", "ctf", "alignments3D")
                    ],
                    "connections": [
                        {
                            "job_uid": "J1",
                            "output": "particles",
                            "results": [
                                {
                                    "name": s,
                                    "dtype": r,
                                    "job_uid": j,
                                    "output": "particles",
                                    "result": r,
                                    "version": "F",
                                }
                                for s, j, r in sources
                            ],
                        }
                    ],
                }
            },
        },
    }
    (root / "J3" / "job.json").write_text(json.dumps(doc))
    return root


def test_project_input_check_1m(run, project_1m, scenario):
    inp = csfast.Project(project_1m).job("J3").inputs["particles"]
    assert inp.connections[0].overrides["alignments3D"].label == "J2.particles.alignments3D"
    problems = run(inp.check, group=f"project: input check() at {scenario.rows:,} rows")
    assert problems == []
