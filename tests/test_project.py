"""Reading cryoSPARC project folders (csfast.Project), checked against numpy and the documents.

The project is written by tests/projectfiles.py with numpy and json only;
every assembled input is compared with a brute-force join of the arrays.
"""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import projectfiles
import pytest

from csfast import CsError, CsFormatError, InputError, Project
from csfast.cli import main


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return projectfiles.build(tmp_path_factory.mktemp("project"))


@pytest.fixture
def fx(tmp_path):
    """A fresh copy a test may change."""
    return projectfiles.build(tmp_path / "p")


def _abs(fx, rel: str) -> str:
    return os.path.join(str(fx.root), rel)


def assert_same_table(got, expected: dict[str, np.ndarray]) -> None:
    """got (a Dataset) holds exactly the expected columns, compared row by row on uid."""
    assert sorted(got.fields()) == sorted(expected)
    order = np.argsort(np.asarray(got["uid"]), kind="stable")
    np.testing.assert_array_equal(np.asarray(got["uid"])[order], expected["uid"])
    for k, v in expected.items():
        np.testing.assert_array_equal(np.asarray(got[k])[order], v, err_msg=k)


# ---------------------------------------------------------------------- listing


def test_jobs_in_numeric_order(fx):
    # J10 sorts after J7 (numbers, not text); J8 has no job.json, exports/ is no job.
    doc = fx.doc("J5")
    doc["uid"] = "J10"
    fx.write_doc("J10", doc)
    assert Project(fx.root).jobs() == ["J1", "J2", "J3", "J4", "J5", "J6", "J7", "J10"]


def test_job_header_both_shapes(built):
    p = Project(built.root)
    facts = {
        uid: (p.job(uid).type, p.job(uid).title, p.job(uid).status, p.job(uid).shape)
        for uid in p.jobs()
    }
    assert facts == {
        "J1": ("import_particles", "Import particles", "completed", "v4"),
        "J2": ("downsample_particles", "Downsample", "completed", "v5"),
        "J3": ("class_2D", "2D classification", "completed", "v4"),
        "J4": ("hetero_refine", "Heterogeneous refinement", "completed", "v5"),
        "J5": ("import_particles", "Import second batch", "completed", "v5"),
        "J6": ("homo_refine_new", "Refinement", "completed", "v4"),
        "J7": ("homo_refine_new", "Refinement from class 0", "building", "v5"),
    }


def test_outputs_every_version_and_metafile(built):
    p = Project(built.root)
    for uid in p.jobs():
        doc = built.docs[uid]
        if "spec" in doc:
            listed = {
                (o, r["name"]): (o_doc["type"], r)
                for o, o_doc in doc["spec"]["outputs"].items()
                for r in o_doc["results"]
            }
        else:
            types = {g["name"]: g["type"] for g in doc["output_result_groups"]}
            listed = {
                (r["group_name"], r["name"]): (types[r["group_name"]], r)
                for r in doc["output_results"]
            }
        outputs = p.job(uid).outputs
        assert {(g, r) for g, group in outputs.items() for r in group.results} == set(listed)
        for (g, name), (item_type, r) in listed.items():
            res = outputs[g][name]
            assert outputs[g].item_type == item_type and outputs[g].job == uid
            listed_versions = {
                v: _abs(built, m) for v, m in zip(r["versions"], r["metafiles"], strict=True)
            }
            own = {v for x in outputs[g].results.values() if not x.passthrough for v in x.versions}
            if r["passthrough"] and len(listed_versions) == 1 and own:
                # cryoSPARC's one passthrough file serves every version (docs/writes.md)
                listed_versions = dict.fromkeys(own, *listed_versions.values())
            assert res.versions == listed_versions
            assert res.passthrough == r["passthrough"]
            full = r.get("type") or f"{item_type}.{r['dtype']}"
            assert res.result_type == full
            counts = r["num_items"]
            final = counts[-1] if isinstance(counts, list) else counts
            assert res.num_items == final
            if isinstance(counts, list):
                listed_counts = dict(zip(r["versions"], counts, strict=True))
            else:  # a plain count is the final version's only
                listed_counts = {max(r["versions"]): counts}
            if r["passthrough"] and len(listed_counts) == 1:  # spread as the versions are
                listed_counts = dict.fromkeys(res.versions, *listed_counts.values())
            assert res.counts == listed_counts


def test_output_details(built):
    j3 = Project(built.root).job("J3").outputs["particles"]
    assert j3.label == "J3.particles" and j3.num_items == projectfiles.A_ROWS
    assert j3["alignments2D"].metafile_of(2) == _abs(built, "J3/J3_002_particles.cs")
    assert j3["alignments2D"].version == 4
    j4 = Project(built.root).job("J4").outputs["particles"]
    assert j4["alignments_class_1"].result_type == "particle.alignments3D"
    assert Project(built.root).job("J7").outputs == {}


def test_output_load_matches_metafile(built):
    g = Project(built.root).job("J3").outputs["particles"]
    ds = g.load(version=2)
    main_arr = built.arrays["J3/J3_002_particles.cs"]
    pt = built.arrays["J3/J3_passthrough_particles.cs"]
    expected = {"uid": np.sort(main_arr["uid"])}
    for arr in (main_arr, pt):
        order = np.argsort(arr["uid"])
        expected |= {k: arr[k][order] for k in arr.dtype.names if k != "uid"}
    assert_same_table(ds, expected)


def test_unwritten_result_left_out(fx):
    doc = fx.doc("J3")
    doc["output_results"][0]["versions"] = []
    doc["output_results"][0]["metafiles"] = []
    doc["output_results"][0]["num_items"] = []
    fx.write_doc("J3", doc)
    assert list(Project(fx.root).job("J3").outputs["particles"].results) == ["blob", "location"]


# ---------------------------------------------------------------------- inputs


def test_input_specs(built):
    p = Project(built.root)
    j6 = p.job("J6").inputs["particles"].spec
    assert j6.item_type == "particle" and j6.count_min == 1 and j6.count_max is None
    assert not j6.repeat_allowed
    assert [(s.name, j6.slot_type(s.name), s.required) for s in j6.slots] == [
        ("blob", "particle.blob", True),
        ("alignments3D", "particle.alignments3D", True),
        ("alignments2D", "particle.alignments2D", False),
    ]
    j7 = p.job("J7").inputs["particles"].spec
    assert j7.count_max is None  # "inf"
    assert [(s.name, j7.slot_type(s.name), s.required) for s in j7.slots] == [
        ("alignments3D", "particle.alignments3D", True),
        ("ctf", "particle.ctf", False),
    ]
    assert p.job("J1").inputs == {} and p.job("J5").inputs == {}


def test_connections_restored(built):
    p = Project(built.root)
    inp = p.job("J6").inputs["particles"]
    c0, c1 = inp.connections
    assert c0.group.label == "J4.particles" and c1.group.label == "J5.particles"
    assert c0.version is None
    assert {k: (r.label, c0.override_versions.get(k)) for k, r in c0.overrides.items()} == {
        "blob": ("J1.imported_particles.blob", None),
        "alignments3D": ("J4.particles.alignments_class_1", None),
        "alignments2D": ("J3.particles.alignments2D", 2),
    }
    assert list(c0.passthrough) == ["location", "alignments_class_0"]
    assert c1.overrides == {} and list(c1.passthrough) == ["location"]
    j7 = p.job("J7").inputs["particles"].connections[0]
    assert j7.version == 0  # every own versioned result is read at version 0
    assert {k: r.label for k, r in j7.overrides.items()} == {
        "alignments3D": "J4.particles.alignments_class_0"
    }
    assert list(j7.passthrough) == ["blob", "location", "alignments2D"]


@pytest.mark.parametrize("job", ["J2", "J3", "J4", "J6", "J7"])
def test_input_load_matches_brute_force(built, job):
    inp = Project(built.root).job(job).inputs["particles"]
    assert inp.check() == []
    got = inp.load()
    assert_same_table(got, projectfiles.expected_input(built, job, "particles"))


def test_passthrough_named_like_a_slot(fx):
    """A result carried with no slot but named like a slot fills that slot (same fields);
    next to a listed slot of that name it is left out (the slot's source wins)."""
    doc = fx.doc("J6")
    conn = doc["input_slot_groups"][0]["connections"]
    conn[1]["slots"][2]["slot_name"] = None  # J5's alignments2D, carried
    conn[0]["slots"].append(
        {
            "slot_name": None,
            "job_uid": "J4",
            "group_name": "particles",
            "result_name": "blob",
            "result_type": "particle.blob",
            "version": "F",
        }
    )  # beside slot blob <- J1
    fx.write_doc("J6", doc)
    inp = Project(fx.root).job("J6").inputs["particles"]
    c0, c1 = inp.connections
    assert c0.overrides["blob"].label == "J1.imported_particles.blob"
    assert list(c0.passthrough) == ["location", "alignments_class_0"]
    assert list(c1.passthrough) == ["location"] and c1.cleared == set()
    assert_same_table(inp.load(), projectfiles.expected_input(fx, "J6", "particles"))


def test_appended_connections_in_order(built):
    got = Project(built.root).job("J6").inputs["particles"].load()
    uids = np.asarray(got["uid"])
    a = projectfiles.A_ROWS
    assert set(uids[:a].tolist()) == set(built.uids_a.tolist())
    assert set(uids[a:].tolist()) == set(built.uids_b.tolist())
    assert {0, 2**64 - 1} <= set(uids.tolist())


def test_renamed_and_versioned_values(built):
    """The slot alignments3D of J7 holds J4's alignments_class_0 at version 0, by uid."""
    got = Project(built.root).job("J7").inputs["particles"].load()
    src = built.arrays["J4/J4_000_particles.cs"]
    row = {int(u): i for i, u in enumerate(src["uid"])}
    rows = [row[int(u)] for u in np.asarray(got["uid"])]
    np.testing.assert_array_equal(got["alignments3D/pose"], src["alignments_class_0/pose"][rows])
    assert not any(f.startswith("alignments_class_") for f in got.fields())


# ---------------------------------------------------------------------- errors


def _drop(doc, *path):
    obj = doc
    for k in path[:-1]:
        obj = obj[k]
    del obj[path[-1]]
    return doc


def _set(doc, value, *path):
    obj = doc
    for k in path[:-1]:
        obj = obj[k]
    obj[path[-1]] = value
    return doc


MALFORMED = [
    # (job, change, the message's key and complaint); outputs
    (
        "J3",
        lambda d: (
            _drop(d, "output_results", 0, "metafiles")
            and _set(d, [0], "output_results", 0, "versions")
        ),
        "key 'output_results[0].metafiles' lists 0 metafiles for 1 versions",
    ),
    (
        "J3",
        lambda d: _drop(d, "output_results", 1, "name"),
        "key 'output_results[1].name' is missing",
    ),
    (
        "J3",
        lambda d: _set(d, "4", "output_results", 0, "versions", 2),
        "key 'output_results[0].versions' must be a list of version numbers, not [0, 2, \"4\"]",
    ),
    (
        "J3",
        lambda d: _set(d, [30], "output_results", 0, "num_items"),
        "key 'output_results[0].num_items' lists 1 counts for 3 versions",
    ),
    (
        "J3",
        lambda d: _set(d, "many", "output_results", 0, "num_items"),
        "key 'output_results[0].num_items' must be an item count or a list of them, not 'many'",
    ),
    (
        "J3",
        lambda d: _set(d, "other", "output_results", 0, "group_name"),
        "key 'output_results' names group 'other', which is not in output_result_groups",
    ),
    ("J3", lambda d: _drop(d, "output_result_groups"), "key 'output_result_groups' is missing"),
    (
        "J3",
        lambda d: _drop(d, "output_result_groups", 0, "type"),
        "key 'output_result_groups[0].type' is missing",
    ),
    (
        "J4",
        lambda d: _drop(d, "spec", "outputs", "particles", "type"),
        "key 'spec.outputs.particles.type' is missing",
    ),
    (
        "J4",
        lambda d: _drop(d, "spec", "outputs", "particles", "results", 1, "dtype"),
        "key 'spec.outputs.particles.results[1].dtype' is missing",
    ),
    (
        "J4",
        lambda d: _set(d, [0, 0], "spec", "outputs", "particles", "results", 0, "versions"),
        "key 'spec.outputs.particles.results[0].versions' repeats a version: [0, 0]",
    ),
    (
        "J4",
        lambda d: _set(d, "yes", "spec", "outputs", "particles", "results", 2, "passthrough"),
        "key 'spec.outputs.particles.results[2].passthrough' must be true or false, not 'yes'",
    ),
    (
        "J4",
        lambda d: _set(d, [1], "spec", "outputs", "particles", "results"),
        "key 'spec.outputs.particles.results[0]' must be a mapping, not 1",
    ),
]

MALFORMED_INPUTS = [
    (
        "J6",
        lambda d: _drop(d, "input_slot_groups", 0, "connections", 0, "slots", 3, "slot_name"),
        "key 'input_slot_groups[0].connections[0].slots[3].slot_name' is missing",
    ),
    (
        "J6",
        lambda d: _drop(d, "input_slot_groups", 0, "connections", 0, "slots", 2, "result_name"),
        "key 'input_slot_groups[0].connections[0].slots[2].result_name' is missing",
    ),
    (
        "J6",
        lambda d: _set(d, "final", "input_slot_groups", 0, "connections", 0, "slots", 2, "version"),
        "key 'input_slot_groups[0].connections[0].slots[2].version' must be \"F\" or a "
        "non-negative version number, not 'final'",
    ),
    (
        "J6",
        lambda d: _set(d, -1, "input_slot_groups", 0, "count_max"),
        "key 'input_slot_groups[0].count_max' must be a non-negative integer, \"inf\" or null, "
        "not -1",
    ),
    (
        "J6",
        lambda d: _drop(d, "input_slot_groups", 0, "slots", 0, "type"),
        "key 'input_slot_groups[0].slots[0].type' is missing",
    ),
    (
        "J6",
        lambda d: _drop(d, "input_slot_groups", 0, "connections", 1, "group_name"),
        "key 'input_slot_groups[0].connections[1].group_name' is missing",
    ),
    (
        "J6",
        lambda d: _set(d, "J99", "input_slot_groups", 0, "connections", 0, "slots", 0, "job_uid"),
        "key 'input_slot_groups[0].connections[0].slots[0]' refers to job J99, which is not in "
        "the project (no J99/job.json)",
    ),
    (
        "J6",
        lambda d: _set(d, "volume", "input_slot_groups", 0, "connections", 1, "group_name"),
        "key 'input_slot_groups[0].connections[1]' refers to output 'volume' of J5, which has "
        "particles",
    ),
    (
        "J6",
        lambda d: _set(
            d,
            "alignments_class_9",
            "input_slot_groups",
            0,
            "connections",
            0,
            "slots",
            1,
            "result_name",
        ),
        "key 'input_slot_groups[0].connections[0].slots[1]' names result 'alignments_class_9' "
        "of J4.particles, which has alignments_class_0, alignments_class_1, blob, location, "
        "alignments2D",
    ),
    (
        "J6",
        lambda d: _set(d, "ctf", "input_slot_groups", 0, "connections", 1, "slots", 0, "slot_name"),
        "key 'input_slot_groups[0].connections[1].slots[0]' names slot 'ctf', which input "
        "'particles' does not have",
    ),
    (
        "J6",
        lambda d: _set(d, "J3", "input_slot_groups", 0, "connections", 0, "slots", 3, "job_uid"),
        "key 'input_slot_groups[0].connections[0].slots[3]' carries passthrough result "
        "J3.particles.location from another group than the connection's (J4.particles)",
    ),
    (
        "J7",
        lambda d: (
            _set(d, 7, "spec", "inputs", "particles", "connections", 0, "results", 3, "version")
            and _set(
                d,
                "alignments_class_1",
                "spec",
                "inputs",
                "particles",
                "connections",
                0,
                "results",
                3,
                "result",
            )
        ),
        "key 'spec.inputs.particles.connections[0].results[3]' carries result "
        "'alignments_class_1' while the connection reads its own results at several versions "
        "(0, 7); csfast carries a connection's passthrough results at one version",
    ),
    (
        "J6",
        lambda d: _set(d, 9, "input_slot_groups", 0, "connections", 0, "slots", 2, "version"),
        "key 'input_slot_groups[0].connections[0].slots[2]' cannot be restored: input "
        "'particles': connection 0 (J4.particles): slot 'alignments2D': "
        "J3.particles.alignments2D has no version 9 (versions: 0, 2, 4)",
    ),
    (
        "J6",
        lambda d: (
            _set(
                d,
                "alignments_class_0",
                "input_slot_groups",
                0,
                "connections",
                0,
                "slots",
                2,
                "result_name",
            )
            and _set(d, "J4", "input_slot_groups", 0, "connections", 0, "slots", 2, "job_uid")
            and _set(d, "F", "input_slot_groups", 0, "connections", 0, "slots", 2, "version")
        ),
        "key 'input_slot_groups[0].connections[0].slots[2]' cannot be restored: input "
        "'particles': connection 0 (J4.particles): slot 'alignments2D' takes "
        "'particle.alignments2D' results; J4.particles.alignments_class_0 is of type "
        "'particle.alignments3D'; override with a 'particle.alignments2D' result",
    ),
    (
        "J6",
        lambda d: _set(d, 0, "input_slot_groups", 0, "count_max"),
        "key 'input_slot_groups[0]' is not a valid input group: invalid counts: count_min=1, "
        "count_max=0",
    ),
    (
        "J6",
        lambda d: _set(d, "exposure.ctf", "input_slot_groups", 0, "slots", 2, "type"),
        "key 'input_slot_groups[0]' is not a valid input group: slot 'alignments2D' takes "
        "'exposure.ctf' results, not of the input's item type 'particle'",
    ),
    (
        "J7",
        lambda d: _drop(d, "spec", "inputs", "particles", "connections", 0, "output"),
        "key 'spec.inputs.particles.connections[0].output' is missing",
    ),
    (
        "J7",
        lambda d: _set(d, "lots", "spec", "inputs", "particles", "count_max"),
        "key 'spec.inputs.particles.count_max' must be a non-negative integer, \"inf\" or null, "
        "not 'lots'",
    ),
    (
        "J7",
        lambda d: _drop(d, "spec", "inputs", "particles", "slots", 0, "dtype"),
        "key 'spec.inputs.particles.slots[0].dtype' is missing",
    ),
    (
        "J7",
        lambda d: _set(d, 3, "spec", "inputs", "particles", "connections", 0, "results", 0, "name"),
        "key 'spec.inputs.particles.connections[0].results[0].name' must be a string or null, "
        "not 3",
    ),
    (
        "J7",
        lambda d: _set(d, {"a": 1}, "spec", "inputs", "particles", "connections"),
        "key 'spec.inputs.particles.connections' must be a list, not {\"a\": 1}",
    ),
    ("J7", lambda d: _set(d, [], "spec", "inputs"), "key 'spec.inputs' must be a mapping, not []"),
]


@pytest.mark.parametrize(
    "what, job, change, message",
    [("outputs", *m) for m in MALFORMED] + [("inputs", *m) for m in MALFORMED_INPUTS],
)
def test_malformed_document(fx, what, job, change, message):
    fx.write_doc(job, change(fx.doc(job)))
    with pytest.raises(CsFormatError) as e:
        getattr(Project(fx.root).job(job), what)
    path = os.path.join(str(fx.root), job, "job.json")
    assert str(e.value) == f"job {job} ({path}): {message}"


@pytest.mark.parametrize(
    "job, change, message",
    [
        ("J2", lambda d: _drop(d, "spec", "type"), "key 'spec.type' is missing"),
        ("J2", lambda d: _set(d, [], "spec"), "key 'spec' must be a mapping, not []"),
        ("J1", lambda d: _drop(d, "job_type"), "key 'job_type' is missing"),
        ("J1", lambda d: _set(d, 3, "title"), "key 'title' must be a string, not 3"),
        (
            "J1",
            lambda d: _set(d, "J2", "uid"),
            "key 'uid' is 'J2' but the document is in folder J1/",
        ),
    ],
)
def test_malformed_header(fx, job, change, message):
    fx.write_doc(job, change(fx.doc(job)))
    with pytest.raises(CsFormatError) as e:
        Project(fx.root).job(job)
    path = os.path.join(str(fx.root), job, "job.json")
    assert str(e.value) == f"job {job} ({path}): {message}"


def test_not_a_job_document(fx):
    path = fx.root / "J2" / "job.json"
    path.write_text(json.dumps({"uid": "J2", "status": "completed"}))
    with pytest.raises(
        CsFormatError,
        match=r"job J2 \(.*\): neither a v5 job document \(key "
        r"'spec'\) nor a v4 one",
    ):
        Project(fx.root).job("J2")
    path.write_text("[1, 2")
    with pytest.raises(
        CsFormatError,
        match=r"job J2 \(.*J2/job.json\): not a valid JSON "
        "document",
    ):
        Project(fx.root).job("J2")
    path.write_text("[1, 2]")
    with pytest.raises(CsFormatError, match=r"job J2 \(.*\): the document is not a JSON object"):
        Project(fx.root).job("J2")


def test_missing_job(built):
    p = Project(built.root)
    for uid in ("J99", "J8", "exports", "../J1"):
        with pytest.raises(CsError) as e:
            p.job(uid)
        assert str(e.value) == (
            f"project {built.root} has no job {uid!r} (no {uid}/job.json); "
            "its jobs: J1, J2, J3, J4, J5, J6, J7"
        )
    with pytest.raises(CsError, match=r"/nowhere: not a folder \(a cryoSPARC project folder"):
        Project(built.root / "nowhere")


def test_missing_parent_job(fx):
    shutil.rmtree(fx.root / "J5")
    with pytest.raises(CsFormatError) as e:
        Project(fx.root).job("J6").inputs  # noqa: B018
    assert str(e.value).endswith(
        "key 'input_slot_groups[0].connections[1]' refers to job J5, "
        "which is not in the project (no J5/job.json)"
    )
    # The outputs of J6 and the other jobs are still readable.
    assert list(Project(fx.root).job("J6").outputs) == ["particles"]


def test_connection_to_an_unwritten_output(fx):
    doc = fx.doc("J4")
    doc["status"] = "queued"
    for r in doc["spec"]["outputs"]["particles"]["results"]:
        r["versions"], r["metafiles"], r["num_items"] = [], [], []
    fx.write_doc("J4", doc)
    with pytest.raises(CsFormatError) as e:
        Project(fx.root).job("J7").inputs  # noqa: B018
    assert str(e.value).endswith(
        "key 'spec.inputs.particles.connections[0].results[0]' names result "
        "'alignments_class_0' of J4.particles, which has no results written (job J4: queued)"
    )


def test_check_reports_counts_the_document_gets_wrong(fx):
    """num_items of the version a job read (J3's alignments2D version 2) against its file."""
    doc = fx.doc("J3")
    doc["output_results"][0]["num_items"] = [30, 29, 30]
    fx.write_doc("J3", doc)
    problems = Project(fx.root).job("J6").inputs["particles"].check()
    assert len(problems) == 1
    path = _abs(fx, "J3/J3_002_particles.cs")
    assert (
        f"J3.particles.alignments2D: num_items says 29, the metafile {path} holds 30 items"
    ) in problems[0]


def test_missing_metafile(fx):
    os.unlink(fx.root / "J3" / "J3_002_particles.cs")
    inp = Project(fx.root).job("J6").inputs["particles"]
    path = _abs(fx, "J3/J3_002_particles.cs")
    problems = inp.check()
    assert any(f"{path} is missing on disk" in p for p in problems), problems
    with pytest.raises(InputError, match="J3_002_particles.cs is missing on disk"):
        inp.load()
    with pytest.raises(FileNotFoundError) as e:
        Project(fx.root).job("J3").outputs["particles"].load(version=2)
    assert e.value.filename == path


# ---------------------------------------------------------------------- command line


def test_cli_project(built, capsys):
    assert main(["project", str(built.root)]) == 0
    text = capsys.readouterr().out
    assert text.startswith(f"{built.root}: 7 jobs\n")
    for line in (
        "J3  class_2D  completed  '2D classification'  (v4 document)",
        "J7  homo_refine_new  building  'Refinement from class 0'  (v5 document)",
        "alignments2D (versions 0, 2, 4); + blob, location",
        "<- J4.particles; blob <- J1.imported_particles.blob; alignments3D <- "
        "J4.particles.alignments_class_1; alignments2D <- J3.particles.alignments2D v2; "
        "+ location, alignments_class_0",
        "<- J5.particles; + location",
        "<- J4.particles v0; alignments3D <- J4.particles.alignments_class_0 v0; "
        "+ blob, location, alignments2D",
    ):
        assert line in text, line
    assert "42 rows" in text and "2 of 1..inf" in text


def test_cli_project_reports_a_bad_job(fx, capsys):
    fx.write_doc("J4", _drop(fx.doc("J4"), "spec", "outputs", "particles", "type"))
    assert main(["project", str(fx.root)]) == 1
    text = capsys.readouterr().out
    assert "J4  ! job J4" in text and "'spec.outputs.particles.type' is missing" in text
    assert "J3  class_2D" in text and "J5  import_particles" in text


def test_cli_load_output_and_input(built, tmp_path, capsys):
    out = tmp_path / "out.cs"
    assert (
        main(["load", str(built.root / "J3"), "particles", "--version", "2", "-o", str(out)]) == 0
    )
    got = np.load(out)
    src = built.arrays["J3/J3_002_particles.cs"]
    row = {int(u): i for i, u in enumerate(src["uid"])}
    rows = [row[int(u)] for u in got["uid"]]
    np.testing.assert_array_equal(got["alignments2D/pose"], src["alignments2D/pose"][rows])
    assert "J3.particles: 30 rows" in capsys.readouterr().out

    assert main(["load", str(built.root / "J6"), "--input", "particles", "-o", str(out)]) == 0
    got = np.load(out)
    expected = projectfiles.expected_input(built, "J6", "particles")
    order = np.argsort(got["uid"])
    assert sorted(got.dtype.names) == sorted(expected)
    for k, v in expected.items():
        np.testing.assert_array_equal(got[k][order], v)
    assert "J6 input particles: 42 rows" in capsys.readouterr().out


def test_cli_load_errors(built, capsys):
    assert main(["load", str(built.root / "J3"), "volume"]) == 1
    assert capsys.readouterr().err == (
        "csfast load: job J3 has no output 'volume' (outputs: particles; inputs: particles)\n"
    )
    assert main(["load", str(built.root / "J3")]) == 1
    assert "job J3 needs an output name or --input" in capsys.readouterr().err
    assert main(["load", str(built.root / "J3"), "--input", "micrographs"]) == 1
    assert capsys.readouterr().err == (
        "csfast load: job J3 has no input 'micrographs' (inputs: particles)\n"
    )
    assert main(["load", str(built.root / "J3"), "--input", "particles", "--version", "2"]) == 1
    assert "--input loads an input as the job read it" in capsys.readouterr().err
    assert main(["load", str(built.root / "J8"), "particles"]) == 1
    assert "has no job 'J8' (no J8/job.json)" in capsys.readouterr().err


def test_listing_reads_job_documents_only(fx, capsys):
    """With every metafile gone, the project still lists: only job.json files are read."""
    for path in fx.root.rglob("*.cs"):
        path.unlink()
    p = Project(fx.root)
    for uid in p.jobs():
        job = p.job(uid)
        for g in job.outputs.values():
            assert g.results
        for inp in job.inputs.values():
            assert inp.connections
    assert main(["project", str(fx.root)]) == 0
    assert "alignments2D (versions 0, 2, 4)" in capsys.readouterr().out


def test_v5_documents_follow_cryosparc_tools_schema(built, tmp_path, capsys):
    """The fixture's v5 documents and those write_job writes (the demo's) validate
    against cryosparc-tools 5's own models (Inputs, Outputs of models/job_spec.py)."""
    job_spec = pytest.importorskip(
        "cryosparc.models.job_spec", reason="cryosparc-tools >= 5 not installed"
    )
    folder = tmp_path / "demo"
    assert main(["demo", "--rows", "1000", "--dir", str(folder), "--quiet"]) == 0
    capsys.readouterr()
    docs = [built.doc(j) for j in ("J2", "J4", "J5", "J7")]
    # The fixture's one deliberate deviation: J2's location has a plain count (older
    # documents), where the schema has a list.
    docs[0]["spec"]["outputs"]["particles"]["results"][1]["num_items"] = [projectfiles.A_ROWS]
    docs += [json.loads((folder / f"J{k}" / "job.json").read_text()) for k in range(1, 10)]
    for doc in docs:
        job_spec.Inputs.model_validate(doc["spec"]["inputs"])
        outputs = job_spec.Outputs.model_validate(doc["spec"]["outputs"])
        for name, out in outputs.root.items():  # one count per version, as the schema says
            for r in out.results:
                assert len(r.num_items) == len(r.versions) == len(r.metafiles), (name, r.name)
    # J4 of the demo wrote two versions of 2D classification: both counts are known.
    j4 = Project(folder).job("J4").outputs["particles"]["alignments2D"]
    assert set(j4.counts) == {10, 20}
    assert j4.counts[10] == len(np.load(folder / "J4" / "J4_010_particles.cs"))


def test_write_job_round_trip(fx):
    """Inputs written by write_job read back with the same connections, overrides,
    versions, explicit passthrough and cleared slots, and load the same table."""
    from csfast import write_job

    p = Project(fx.root)
    j6, j7 = p.job("J6").inputs["particles"], p.job("J7").inputs["particles"]
    j6.clear(1, "alignments2D")  # an optional slot J5's group would fill
    j7.spec = type(j7.spec)(j7.spec.item_type, j7.spec.slots, name="particles_class_0")
    path = write_job(
        fx.root,
        "J20",
        "homo_refine_new",
        title="again",
        status="building",
        inputs=[j6, j7],
        outputs=[p.job("J3").outputs["particles"]],
    )
    assert path == os.path.join(str(fx.root), "J20", "job.json")
    back = Project(fx.root).job("J20")
    assert (back.type, back.title, back.status, back.shape) == (
        "homo_refine_new",
        "again",
        "building",
        "v5",
    )

    def facts(inp):
        return [
            (
                c.group.label,
                c.version,
                c.passthrough,
                sorted(c.cleared),
                {k: (r.label, c.override_versions.get(k)) for k, r in c.overrides.items()},
            )
            for c in inp.connections
        ]

    assert facts(back.inputs["particles"]) == facts(j6)
    assert facts(back.inputs["particles_class_0"]) == facts(j7)
    assert back.inputs["particles"].spec.slots == j6.spec.slots
    expected = projectfiles.expected_input(fx, "J6", "particles")
    expected = {k: v for k, v in expected.items() if not k.startswith("alignments2D/")}
    assert_same_table(back.inputs["particles"].load(), expected)
    # The output group: every version and metafile, counts per version.
    g, orig = back.outputs["particles"], p.job("J3").outputs["particles"]
    assert {
        n: (r.versions, r.counts, r.passthrough, r.result_type) for n, r in g.results.items()
    } == {n: (r.versions, r.counts, r.passthrough, r.result_type) for n, r in orig.results.items()}


def test_write_job_needs_groups_of_jobs(tmp_path, fx):
    from csfast import ResultGroup, write_job

    inp = Project(fx.root).job("J2").inputs["particles"]
    loose = ResultGroup.from_csg(_write_csg(tmp_path))
    inp.disconnect()
    inp.connect(loose)
    with pytest.raises(CsError) as e:
        write_job(fx.root, "J21", "x", inputs=[inp])
    assert str(e.value) == (
        "input 'particles': connection 0 (particles) is a group of no job; "
        "a job document can only name groups of jobs"
    )
    assert not (fx.root / "J21" / "job.json").exists()


def _write_csg(folder) -> str:
    """A .csg (no job in its name) over a one-result table, written by hand."""
    arr = projectfiles.table(np.random.default_rng(1), np.arange(5, dtype=np.uint64), ["blob"])
    projectfiles.save(folder / "loose.cs", arr)
    (folder / "loose.csg").write_text(
        "group: {name: particles, type: particle}\n"
        "results:\n  blob: {metafile: '>loose.cs', num_items: 5, type: particle.blob}\n"
    )
    return str(folder / "loose.csg")


def test_cli_load_csg_takes_no_names(tmp_path, capsys):
    csg = _write_csg(tmp_path)
    assert main(["load", csg, "particles"]) == 1
    assert capsys.readouterr().err == (
        f"csfast load: {csg}: a .csg names one group; an output or --input name goes with a "
        "job folder (PROJECT/J42)\n"
    )
