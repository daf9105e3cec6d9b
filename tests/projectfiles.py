"""A small cryoSPARC project folder written with numpy and json only (not with csfast).

``build(root)`` writes seven job folders: J1, J3, J6 with v4 job documents,
J2, J4, J5, J7 with v5 ones, their .cs metafiles, a job folder without a
document (J8) and a folder that is no job. It returns a ``Fixture``: the
documents as written (tests change copies of them), every metafile's array,
and for each input what the job read, spelled out slot by slot, so that a
test can assemble the expected table by brute force.

The jobs:
    J1 import (v4)     imported_particles: blob + location, batch A (30 items,
                       uids 0 and 2**64-1 among them)
    J2 downsample (v5) input particles <- J1 (blob; location carried);
                       particles: new blob; location passthrough
    J3 class 2D (v4)   input <- J2; particles: alignments2D versions 0, 2, 4;
                       blob, location passthrough
    J4 hetero (v5)     input <- J3; particles: alignments_class_0/_1
                       (type alignments3D), versions 0 and 7; blob,
                       location, alignments2D passthrough
    J5 import (v5)     particles: blob, alignments3D, alignments2D,
                       location of batch B (12 items)
    J6 refine (v4)     input particles, count_max null (unbounded):
                       connection 0 <- J4.particles with blob overridden from
                       J1, alignments3D <- alignments_class_1 (renamed),
                       alignments2D <- J3 version 2 (non-final, another job),
                       location and alignments_class_0 carried;
                       connection 1 <- J5.particles (appended)
    J7 refine (v5)     building; input <- J4.particles with alignments3D <-
                       alignments_class_0 at version 0; blob, location,
                       alignments2D carried; count_max "inf"
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

A_ROWS, B_ROWS = 30, 12

FIELDS = {
    "blob": [
        ("path", "S24", ()),
        ("idx", "<u4", ()),
        ("shape", "<u4", (2,)),
        ("psize_A", "<f4", ()),
    ],
    "location": [("micrograph_uid", "<u8", ()), ("center_x_frac", "<f4", ())],
    "alignments2D": [("class", "<u4", ()), ("pose", "<f4", ())],
    "alignments3D": [("class", "<u4", ()), ("pose", "<f4", (3,))],
}


def _kind(result: str) -> str:
    return "alignments3D" if result.startswith("alignments_class_") else result


def table(rng: np.random.Generator, uids: np.ndarray, results: list[str]) -> np.ndarray:
    """A structured array: uid, then each result's fields filled with random values."""
    descr = [("uid", "<u8")]
    for r in results:
        descr += [(f"{r}/{f}", d, s) if s else (f"{r}/{f}", d) for f, d, s in FIELDS[_kind(r)]]
    arr = np.zeros(len(uids), dtype=descr)
    arr["uid"] = uids
    for name in arr.dtype.names[1:]:
        col = arr[name]
        if col.dtype.kind == "S":
            arr[name] = [f"{name[:6]}_{int(x)}".encode() for x in rng.integers(0, 1e6, len(uids))]
        elif col.dtype.kind == "u":
            arr[name] = rng.integers(0, 2**31, col.shape)
        else:
            arr[name] = rng.normal(size=col.shape).astype(col.dtype)
    return arr


def save(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:  # a file handle: np.save would add .npy to a path
        np.save(f, arr)


@dataclass
class Source:
    """What filled one slot (slot None: one carried passthrough result)."""

    slot: str | None
    file: str  # project-relative metafile
    result: str


@dataclass
class Fixture:
    root: Path
    docs: dict[str, dict]  # job uid -> document as written
    arrays: dict[str, np.ndarray]  # project-relative metafile -> its array
    read: dict[tuple[str, str], list[list[Source]]] = field(default_factory=dict)
    uids_a: np.ndarray | None = None
    uids_b: np.ndarray | None = None

    def write_doc(self, job: str, doc: dict) -> None:
        path = self.root / job / "job.json"
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps(doc, indent=1))

    def doc(self, job: str) -> dict:
        return copy.deepcopy(self.docs[job])


def _v4_result(
    job: str,
    group: str,
    name: str,
    rtype: str,
    versions: list[int],
    files: list[str],
    counts: list[int] | int,
    passthrough: bool = False,
) -> dict:
    return {
        "uid": f"{job}-R-{group}-{name}",
        "type": rtype,
        "name": name,
        "group_name": group,
        "title": name,
        "description": "",
        "versions": versions,
        "metafiles": files,
        "min_fields": [],
        "num_items": counts,
        "passthrough": passthrough,
    }


def _v4_slot(
    slot: str | None, job: str, group: str, result: str, rtype: str, version: int | str = "F"
) -> dict:
    return {
        "slot_name": slot,
        "job_uid": job,
        "group_name": group,
        "result_name": result,
        "result_type": rtype,
        "version": version,
    }


def _v5_result(
    slot: str | None, dtype: str, job: str, output: str, result: str, version: int | str = "F"
) -> dict:
    return {
        "name": slot,
        "dtype": dtype,
        "job_uid": job,
        "output": output,
        "result": result,
        "version": version,
    }


def _v5_output_result(
    name: str,
    dtype: str,
    versions: list[int],
    files: list[str],
    counts: list[int] | int,
    passthrough: bool = False,
) -> dict:
    return {
        "name": name,
        "dtype": dtype,
        "versions": versions,
        "metafiles": files,
        "num_items": counts,
        "passthrough": passthrough,
    }


def _v4_doc(
    uid: str, job_type: str, title: str, status: str, inputs: list, groups: list, results: list
) -> dict:
    return {
        "_id": "0" * 24,
        "uid": uid,
        "uid_num": int(uid[1:]),
        "project_uid": "P1",
        "job_type": job_type,
        "title": title,
        "description": "",
        "status": status,
        "params_spec": {},
        "parents": [],
        "children": [],
        "input_slot_groups": inputs,
        "output_result_groups": groups,
        "output_results": results,
    }


def _v4_group(name: str, n: int, passthrough: str | bool = False) -> dict:
    return {
        "uid": "G",
        "type": "particle",
        "name": name,
        "title": name.title(),
        "description": "",
        "contains": [],
        "passthrough": passthrough,
        "num_items": n,
        "summary": {},
    }


def _v5_doc(uid: str, job_type: str, title: str, status: str, inputs: dict, outputs: dict) -> dict:
    return {
        "_id": "0" * 24,
        "uid": uid,
        "project_uid": "P1",
        "title": title,
        "status": status,
        "job_dir": uid,
        "workspace_uids": ["W1"],
        "spec": {
            "type": job_type,
            "params": {},
            "inputs": inputs,
            "outputs": outputs,
            "ui_tile_width": 1,
            "ui_tile_height": 1,
            "resource_spec": {},
        },
    }


def _v5_input(
    slots: list[tuple[str, str, bool]], connections: list, count_max: int | str = "inf"
) -> dict:
    return {
        "type": "particle",
        "title": "Particles",
        "description": "",
        "slots": [{"name": n, "dtype": d, "required": r} for n, d, r in slots],
        "count_min": 1,
        "count_max": count_max,
        "repeat_allowed": False,
        "connections": connections,
    }


def build(root: Path, seed: int = 0) -> Fixture:
    rng = np.random.default_rng(seed)
    uids_a = rng.integers(1, 2**64 - 1, A_ROWS, dtype=np.uint64, endpoint=False)
    uids_a[3], uids_a[17] = 0, 2**64 - 1
    uids_b = rng.integers(1, 2**64 - 1, B_ROWS, dtype=np.uint64)
    arrays: dict[str, np.ndarray] = {}

    def put(rel: str, uids: np.ndarray, results: list[str]) -> None:
        arrays[rel] = table(rng, uids, results)
        save(root / rel, arrays[rel])

    # Each file holds the items in its own order, as jobs that shuffle do.
    def order() -> np.ndarray:
        return uids_a[rng.permutation(A_ROWS)]

    put("J1/J1_imported_particles.cs", order(), ["blob", "location"])
    put("J2/J2_particles.cs", order(), ["blob"])
    put("J2/J2_passthrough_particles.cs", order(), ["location"])
    for v in (0, 2, 4):
        put(f"J3/J3_{v:03d}_particles.cs", order(), ["alignments2D"])
    put("J3/J3_passthrough_particles.cs", order(), ["blob", "location"])
    for v in (0, 7):
        put(f"J4/J4_{v:03d}_particles.cs", order(), ["alignments_class_0", "alignments_class_1"])
    put("J4/J4_passthrough_particles.cs", order(), ["blob", "location", "alignments2D"])
    put("J5/J5_particles.cs", uids_b, ["blob", "alignments3D", "alignments2D", "location"])
    both = np.concatenate([uids_a, uids_b])
    put("J6/J6_003_particles.cs", both, ["alignments3D"])
    put("J6/J6_passthrough_particles.cs", both, ["blob", "alignments2D", "location"])
    (root / "J8").mkdir()  # a job folder with no document: not a job of the listing
    (root / "exports").mkdir()

    a = A_ROWS
    docs = {}
    docs["J1"] = _v4_doc(
        "J1",
        "import_particles",
        "Import particles",
        "completed",
        [],
        [_v4_group("imported_particles", a)],
        [
            _v4_result(
                "J1",
                "imported_particles",
                "blob",
                "particle.blob",
                [0],
                ["J1/J1_imported_particles.cs"],
                [a],
            ),
            _v4_result(
                "J1",
                "imported_particles",
                "location",
                "particle.location",
                [0],
                ["J1/J1_imported_particles.cs"],
                [a],
            ),
        ],
    )
    docs["J2"] = _v5_doc(
        "J2",
        "downsample_particles",
        "Downsample",
        "completed",
        {
            "particles": _v5_input(
                [("blob", "blob", True)],
                [
                    {
                        "job_uid": "J1",
                        "output": "imported_particles",
                        "results": [
                            _v5_result("blob", "blob", "J1", "imported_particles", "blob"),
                            _v5_result(None, "location", "J1", "imported_particles", "location"),
                        ],
                    }
                ],
            )
        },
        {
            "particles": {
                "type": "particle",
                "title": "Particles",
                "num_items": a,
                "results": [
                    _v5_output_result("blob", "blob", [0], ["J2/J2_particles.cs"], [a]),
                    _v5_output_result(
                        "location",
                        "location",
                        [0],
                        ["J2/J2_passthrough_particles.cs"],
                        a,
                        passthrough=True,
                    ),
                ],
            }
        },
    )
    docs["J3"] = _v4_doc(
        "J3",
        "class_2D",
        "2D classification",
        "completed",
        [
            {
                "type": "particle",
                "name": "particles",
                "title": "Particles",
                "description": "",
                "count_min": 1,
                "count_max": None,
                "repeat_allowed": False,
                "slots": [
                    {
                        "type": "particle.blob",
                        "name": "blob",
                        "title": "",
                        "description": "",
                        "optional": False,
                    },
                    {
                        "type": "particle.ctf",
                        "name": "ctf",
                        "title": "",
                        "description": "",
                        "optional": True,
                    },
                ],
                "connections": [
                    {
                        "job_uid": "J2",
                        "group_name": "particles",
                        "slots": [
                            _v4_slot("blob", "J2", "particles", "blob", "particle.blob"),
                            _v4_slot(None, "J2", "particles", "location", "particle.location"),
                        ],
                    }
                ],
            }
        ],
        [_v4_group("particles", a, "particles")],
        [
            _v4_result(
                "J3",
                "particles",
                "alignments2D",
                "particle.alignments2D",
                [0, 2, 4],
                [f"J3/J3_{v:03d}_particles.cs" for v in (0, 2, 4)],
                [a, a, a],
            ),
            _v4_result(
                "J3",
                "particles",
                "blob",
                "particle.blob",
                [0],
                ["J3/J3_passthrough_particles.cs"],
                [a],
                passthrough=True,
            ),
            _v4_result(
                "J3",
                "particles",
                "location",
                "particle.location",
                [0],
                ["J3/J3_passthrough_particles.cs"],
                [a],
                passthrough=True,
            ),
        ],
    )
    j4_files = [f"J4/J4_{v:03d}_particles.cs" for v in (0, 7)]
    docs["J4"] = _v5_doc(
        "J4",
        "hetero_refine",
        "Heterogeneous refinement",
        "completed",
        {
            "particles": _v5_input(
                [("blob", "blob", True)],
                [
                    {
                        "job_uid": "J3",
                        "output": "particles",
                        "results": [
                            _v5_result("blob", "blob", "J3", "particles", "blob"),
                            _v5_result(None, "location", "J3", "particles", "location"),
                            _v5_result(None, "alignments2D", "J3", "particles", "alignments2D"),
                        ],
                    }
                ],
            )
        },
        {
            "particles": {
                "type": "particle",
                "title": "Particles",
                "num_items": a,
                "results": [
                    _v5_output_result(
                        "alignments_class_0", "alignments3D", [0, 7], j4_files, [a, a]
                    ),
                    _v5_output_result(
                        "alignments_class_1", "alignments3D", [0, 7], j4_files, [a, a]
                    ),
                    *[
                        _v5_output_result(
                            r, r, [0], ["J4/J4_passthrough_particles.cs"], [a], passthrough=True
                        )
                        for r in ("blob", "location", "alignments2D")
                    ],
                ],
            }
        },
    )
    docs["J5"] = _v5_doc(
        "J5",
        "import_particles",
        "Import second batch",
        "completed",
        {},
        {
            "particles": {
                "type": "particle",
                "title": "Particles",
                "num_items": B_ROWS,
                "results": [
                    _v5_output_result(r, r, [0], ["J5/J5_particles.cs"], [B_ROWS])
                    for r in ("blob", "alignments3D", "alignments2D", "location")
                ],
            }
        },
    )
    n6 = a + B_ROWS
    docs["J6"] = _v4_doc(
        "J6",
        "homo_refine_new",
        "Refinement",
        "completed",
        [
            {
                "type": "particle",
                "name": "particles",
                "title": "Particles",
                "description": "",
                "count_min": 1,
                "count_max": None,
                "repeat_allowed": False,
                "slots": [
                    {"type": "particle.blob", "name": "blob", "optional": False},
                    {"type": "particle.alignments3D", "name": "alignments3D", "optional": False},
                    {"type": "particle.alignments2D", "name": "alignments2D", "optional": True},
                ],
                "connections": [
                    {
                        "job_uid": "J4",
                        "group_name": "particles",
                        "slots": [
                            _v4_slot("blob", "J1", "imported_particles", "blob", "particle.blob"),
                            _v4_slot(
                                "alignments3D",
                                "J4",
                                "particles",
                                "alignments_class_1",
                                "particle.alignments3D",
                            ),
                            _v4_slot(
                                "alignments2D",
                                "J3",
                                "particles",
                                "alignments2D",
                                "particle.alignments2D",
                                2,
                            ),
                            _v4_slot(None, "J4", "particles", "location", "particle.location"),
                            _v4_slot(
                                None,
                                "J4",
                                "particles",
                                "alignments_class_0",
                                "particle.alignments3D",
                            ),
                        ],
                    },
                    {
                        "job_uid": "J5",
                        "group_name": "particles",
                        "slots": [
                            _v4_slot("blob", "J5", "particles", "blob", "particle.blob"),
                            _v4_slot(
                                "alignments3D",
                                "J5",
                                "particles",
                                "alignments3D",
                                "particle.alignments3D",
                            ),
                            _v4_slot(
                                "alignments2D",
                                "J5",
                                "particles",
                                "alignments2D",
                                "particle.alignments2D",
                            ),
                            _v4_slot(None, "J5", "particles", "location", "particle.location"),
                        ],
                    },
                ],
            }
        ],
        [_v4_group("particles", n6, "particles")],
        [
            _v4_result(
                "J6",
                "particles",
                "alignments3D",
                "particle.alignments3D",
                [3],
                ["J6/J6_003_particles.cs"],
                n6,
            ),
            *[
                _v4_result(
                    "J6",
                    "particles",
                    r,
                    f"particle.{r}",
                    [0],
                    ["J6/J6_passthrough_particles.cs"],
                    n6,
                    passthrough=True,
                )
                for r in ("blob", "alignments2D", "location")
            ],
        ],
    )
    docs["J7"] = _v5_doc(
        "J7",
        "homo_refine_new",
        "Refinement from class 0",
        "building",
        {
            "particles": _v5_input(
                [("alignments3D", "alignments3D", True), ("ctf", "ctf", False)],
                [
                    {
                        "job_uid": "J4",
                        "output": "particles",
                        "results": [
                            _v5_result(
                                "alignments3D",
                                "alignments3D",
                                "J4",
                                "particles",
                                "alignments_class_0",
                                0,
                            ),
                            *[
                                _v5_result(None, r, "J4", "particles", r)
                                for r in ("blob", "location", "alignments2D")
                            ],
                        ],
                    }
                ],
            )
        },
        {},
    )

    fx = Fixture(root, docs, arrays, uids_a=uids_a, uids_b=uids_b)
    for job, doc in docs.items():
        fx.write_doc(job, doc)

    fx.read[("J2", "particles")] = [
        [
            Source("blob", "J1/J1_imported_particles.cs", "blob"),
            Source(None, "J1/J1_imported_particles.cs", "location"),
        ]
    ]
    fx.read[("J3", "particles")] = [
        [
            Source("blob", "J2/J2_particles.cs", "blob"),
            Source(None, "J2/J2_passthrough_particles.cs", "location"),
        ]
    ]
    fx.read[("J4", "particles")] = [
        [
            Source("blob", "J3/J3_passthrough_particles.cs", "blob"),
            Source(None, "J3/J3_passthrough_particles.cs", "location"),
            Source(None, "J3/J3_004_particles.cs", "alignments2D"),
        ]
    ]
    fx.read[("J6", "particles")] = [
        [
            Source("blob", "J1/J1_imported_particles.cs", "blob"),
            Source("alignments3D", "J4/J4_007_particles.cs", "alignments_class_1"),
            Source("alignments2D", "J3/J3_002_particles.cs", "alignments2D"),
            Source(None, "J4/J4_passthrough_particles.cs", "location"),
            Source(None, "J4/J4_007_particles.cs", "alignments_class_0"),
        ],
        [
            Source("blob", "J5/J5_particles.cs", "blob"),
            Source("alignments3D", "J5/J5_particles.cs", "alignments3D"),
            Source("alignments2D", "J5/J5_particles.cs", "alignments2D"),
            Source(None, "J5/J5_particles.cs", "location"),
        ],
    ]
    fx.read[("J7", "particles")] = [
        [
            Source("alignments3D", "J4/J4_000_particles.cs", "alignments_class_0"),
            Source(None, "J4/J4_passthrough_particles.cs", "blob"),
            Source(None, "J4/J4_passthrough_particles.cs", "location"),
            Source(None, "J4/J4_passthrough_particles.cs", "alignments2D"),
        ]
    ]
    return fx


def expected_input(fx: Fixture, job: str, name: str) -> dict[str, np.ndarray]:
    """What the job read, by brute force: per connection, each source's fields renamed
    to the slot's name, rows kept when every source has their uid (a Python dict
    per source); connections appended; only the fields every connection has.
    Returns columns sorted by uid."""
    parts = []
    for sources in fx.read[(job, name)]:
        rows: dict[int, dict[str, object]] | None = None
        for s in sources:
            arr = fx.arrays[s.file]
            prefix = s.slot or s.result
            mine = {}
            for i, u in enumerate(arr["uid"].tolist()):
                mine[u] = {
                    f"{prefix}/{k.split('/', 1)[1]}": arr[k][i]
                    for k in arr.dtype.names
                    if k.split("/", 1)[0] == s.result
                }
            if rows is None:
                rows = mine
            else:
                rows = {u: {**rows[u], **mine[u]} for u in rows if u in mine}
        parts.append(rows)
    common = set.intersection(*(set(next(iter(p.values()))) for p in parts))
    out: dict[str, list] = {"uid": []}
    for p in parts:
        for u in sorted(p):
            out["uid"].append(u)
    by_uid = {u: r for p in parts for u, r in p.items()}
    order = sorted(out["uid"])
    cols = {"uid": np.array(order, dtype=np.uint64)}
    for k in sorted(common):
        cols[k] = np.array([by_uid[u][k] for u in order])
    return cols
