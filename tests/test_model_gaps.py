"""The model gaps of issue 9: slot types, versions when connecting, exact passthrough,
slot subsets, no silent drops, num_items against the file, CSDAT metafiles.

References are numpy arrays saved with numpy (or cryosparc-tools for CSDAT) and
joins computed by brute force over Python dictionaries (group_tables.brute_join).
"""

import os

import numpy as np
import pytest
import yaml
from group_tables import (
    ALIGN2D,
    BLOB,
    CTF,
    assert_table,
    blob_group,
    brute_join,
    chain_groups,
    csg,
    save,
    table,
    uids,
)

from csfast import CsFieldError, Input, InputError, InputSpec, ResultGroup, Slot, write_output
from csfast.dataset import Dataset

PARTICLES = InputSpec("particle", ["blob", "?ctf"], name="particles")


@pytest.fixture
def rng():
    return np.random.default_rng(11)


@pytest.fixture
def chain(tmp_path, rng):
    return chain_groups(tmp_path, rng)


@pytest.fixture
def loads(monkeypatch):
    """Every Dataset.load call from here on: (file name, fields, prefixes)."""
    calls = []
    real = Dataset.load.__func__

    def recording(cls, path, *a, **k):
        calls.append((os.path.basename(path), k.get("fields"), k.get("prefixes")))
        return real(cls, path, *a, **k)

    monkeypatch.setattr(Dataset, "load", classmethod(recording))
    return calls


def refused(inp, **load_args):
    """check()'s problems, which load() must raise as they are."""
    problems = inp.check(load_args.get("passthrough", True), load_args.get("slots"))
    with pytest.raises(InputError) as e:
        inp.load(**load_args)
    assert e.value.problems == problems
    return problems


# ---------------------------------------------------------------- slot types


def test_group_result_named_like_a_slot_but_of_another_type(tmp_path, rng):
    """It does not fill the slot: check() says so (optional slots too) until overridden."""
    u = uids(30, rng)
    main = table(u, rng, blob=BLOB, ctf=BLOB)  # a 'ctf' result holding blob data
    good = table(u, rng, ctf=CTF)
    save(tmp_path / "J3_000_particles.cs", main)
    save(tmp_path / "J4_000_particles.cs", good)
    j3 = csg(
        tmp_path,
        "J3",
        "particles",
        "particle",
        {"blob": (">J3_000_particles.cs", 30), "ctf": (">J3_000_particles.cs", 30)},
        extra_keys={"ctf": {"type": "particle.blob"}},
    )
    j4 = csg(tmp_path, "J4", "particles", "particle", {"ctf": (">J4_000_particles.cs", 30)})
    inp = Input(PARTICLES)
    inp.connect(j3)
    assert refused(inp) == [
        "input 'particles': connection 0 (J3.particles): slot 'ctf' takes 'particle.ctf' "
        "results; J3.particles.ctf is of type 'particle.blob'; override the slot with a "
        "'particle.ctf' result or clear it"
    ]
    inp.override(0, "ctf", j4["ctf"])
    assert inp.check() == []
    assert_table(inp.load(), brute_join(main, [(main, ["blob"], None), (good, ["ctf"], None)]))
    inp.clear(0, "ctf")
    assert_table(inp.load(), brute_join(main, [(main, ["blob"], None)]))
    required = Input(InputSpec("particle", ["blob", "ctf"]))
    required.connect(j3)
    assert refused(required)[0].endswith("override the slot with a 'particle.ctf' result")


def test_alignments_class_result_fills_the_alignments3D_slot(tmp_path, rng):
    u = uids(25, rng)
    main = table(u, rng, blob=BLOB, alignments_class_0=ALIGN2D, alignments_class_1=ALIGN2D)
    save(tmp_path / "J8_010_particles.cs", main)
    j8 = csg(
        tmp_path,
        "J8",
        "particles",
        "particle",
        {
            r: (">J8_010_particles.cs", 25)
            for r in ("blob", "alignments_class_0", "alignments_class_1")
        },
        extra_keys={f"alignments_class_{k}": {"type": "particle.alignments3D"} for k in (0, 1)},
    )
    inp = Input(InputSpec("particle", ["blob", Slot("alignments3D", type="particle.alignments3D")]))
    inp.connect(j8, passthrough=[])
    inp.override(0, "alignments3D", j8["alignments_class_1"])
    ds = inp.load()
    assert ds.prefixes() == ["blob", "alignments3D"]
    assert_table(
        ds,
        brute_join(
            main,
            [
                (main, ["blob"], None),
                (main, ["alignments_class_1"], {"alignments_class_1": "alignments3D"}),
            ],
        ),
    )


# ---------------------------------------------------------------- versions


@pytest.fixture
def versioned(tmp_path, rng):
    """J4: alignments2D in versions 1 and 2 (different rows), blob passthrough;
    J9: blob in versions 0 and 5."""
    u = uids(60, rng)
    v1 = table(u[:50], rng, alignments2D=ALIGN2D)
    v2 = table(rng.permutation(u)[:40], rng, alignments2D=ALIGN2D)
    pt = table(rng.permutation(u), rng, blob=BLOB)
    b0 = table(u, rng, blob=BLOB)
    b5 = table(rng.permutation(u), rng, blob=BLOB)
    for name, arr in (
        ("J4_001_particles.cs", v1),
        ("J4_002_particles.cs", v2),
        ("J4_passthrough_particles.cs", pt),
        ("J9_000_particles.cs", b0),
        ("J9_005_particles.cs", b5),
    ):
        save(tmp_path / name, arr)
    j4 = csg(
        tmp_path,
        "J4",
        "particles",
        "particle",
        {
            "alignments2D": (">J4_002_particles.cs", 40),
            "blob": (">J4_passthrough_particles.cs", 60),
        },
        extra_keys={
            "alignments2D": {"versions": {1: ">J4_001_particles.cs", 2: ">J4_002_particles.cs"}}
        },
    )
    j9 = csg(
        tmp_path,
        "J9",
        "particles",
        "particle",
        {"blob": (">J9_005_particles.cs", 60)},
        extra_keys={"blob": {"versions": {0: ">J9_000_particles.cs", 5: ">J9_005_particles.cs"}}},
    )
    return {"j4": j4, "j9": j9, "v1": v1, "v2": v2, "pt": pt, "b0": b0, "b5": b5}


def test_connect_and_override_at_a_version(versioned):
    g = versioned
    spec = InputSpec("particle", ["alignments2D", "?blob"], name="particles")
    final = Input(spec)
    final.connect(g["j4"])
    assert_table(
        final.load(),
        brute_join(g["v2"], [(g["v2"], ["alignments2D"], None), (g["pt"], ["blob"], None)]),
    )
    first = Input(spec)
    assert first.connect(g["j4"], version=1) == 0
    assert first.connections[0].version == 1
    assert_table(
        first.load(),
        brute_join(g["v1"], [(g["v1"], ["alignments2D"], None), (g["pt"], ["blob"], None)]),
    )
    first.override(0, "blob", g["j9"]["blob"], version=0)
    assert_table(
        first.load(),
        brute_join(g["v1"], [(g["v1"], ["alignments2D"], None), (g["b0"], ["blob"], None)]),
    )
    first.override(0, "blob", g["j9"]["blob"])  # final: version 5
    assert_table(
        first.load(),
        brute_join(g["v1"], [(g["v1"], ["alignments2D"], None), (g["b5"], ["blob"], None)]),
    )
    with pytest.raises(InputError) as e:
        first.connect(g["j4"], version=3)
    assert e.value.problems == ["input 'particles': J4.particles has no version 3 (versions: 1, 2)"]
    with pytest.raises(InputError) as e:
        first.override(0, "blob", g["j9"]["blob"], version=2)
    assert e.value.problems == [
        "input 'particles': connection 0 (J4.particles): slot 'blob': J9.particles.blob has "
        "no version 2 (versions: 0, 5)"
    ]


def test_connection_version_a_result_lacks(versioned, tmp_path):
    """connect(version=1) takes the group; a used result without version 1 is a problem."""
    j4 = csg(
        tmp_path,
        "J4",
        "particles",
        "particle",
        {"alignments2D": (">J4_002_particles.cs", 40), "ctf": (">J4_002_particles.cs", 40)},
        extra_keys={
            "alignments2D": {"versions": {1: ">J4_001_particles.cs", 2: ">J4_002_particles.cs"}},
            "ctf": {"versions": {2: ">J4_002_particles.cs"}},
        },
    )
    inp = Input(InputSpec("particle", ["alignments2D", "?ctf"], name="particles"))
    inp.connect(j4, version=1)
    assert refused(inp) == [
        "input 'particles': connection 0 (J4.particles): slot 'ctf': J4.particles.ctf has no "
        "version 1 (versions: 2)"
    ]


def test_passthrough_result_at_a_version(versioned):
    g = versioned
    inp = Input(InputSpec("particle", ["blob"], name="particles"))
    inp.connect(g["j4"], passthrough={"alignments2D": 1})
    assert_table(
        inp.load(allow_drop=True),
        brute_join(g["pt"], [(g["pt"], ["blob"], None), (g["v1"], ["alignments2D"], None)]),
    )
    assert inp.check() == [
        "input 'particles': connection 0 (J4.particles): passthrough result 'alignments2D' "
        "(J4.particles.alignments2D) covers 50 of the connection's 60 items; 10 would be "
        "dropped: use a result of the same items, or load with allow_drop=True"
    ]
    with pytest.raises(InputError) as e:
        inp.connect(g["j4"], passthrough={"alignments2D": 7})
    assert e.value.problems == [
        "input 'particles': J4.particles: passthrough result 'alignments2D': "
        "J4.particles.alignments2D has no version 7 (versions: 1, 2)"
    ]


# ---------------------------------------------------------------- passthrough, slots


def test_exact_passthrough_results(chain):
    inp = Input(PARTICLES)
    inp.connect(chain["j5"], passthrough=["location"])
    ds = inp.load()
    assert_table(
        ds, brute_join(chain["j5_pt"], [(chain["j5_pt"], ["blob", "ctf", "location"], None)])
    )  # not alignments2D
    none = Input(PARTICLES)
    none.connect(chain["j5"], passthrough=[])
    assert sorted(none.load().prefixes()) == ["blob", "ctf"]
    with pytest.raises(InputError) as e:
        none.connect(chain["j5"], passthrough=["pose"])
    assert e.value.problems == [
        "input 'particles': J5.particles_selected has no result 'pose' to pass through "
        "(results: alignments2D, blob, ctf, location)"
    ]
    with pytest.raises(InputError, match=r"'ctf' is a slot of the input, not a passthrough"):
        none.connect(chain["j5"], passthrough=["ctf"])
    with pytest.raises(TypeError, match="not a string"):
        none.connect(chain["j5"], passthrough="location")


def test_load_a_subset_of_the_slots(chain):
    inp = Input(InputSpec("particle", ["blob", "ctf", "alignments3D"], name="particles"))
    inp.connect(chain["j5"])
    # alignments3D is required and empty, but not asked for
    ds = inp.load(slots=["ctf"], passthrough=False)
    assert_table(ds, brute_join(chain["j5_pt"], [(chain["j5_pt"], ["ctf"], None)]))
    assert inp.check(slots=["blob", "ctf"]) == []
    assert len(inp.check()) == 1
    with pytest.raises(InputError, match=r"input 'particles' has no slot 'pose'"):
        inp.load(slots=["pose"])


def test_disconnect_without_an_index_clears_every_connection(chain):
    inp = Input(InputSpec("particle", ["blob"], repeat_allowed=True, name="particles"))
    inp.connect(chain["j2"])
    inp.connect(chain["j5"])
    assert inp.disconnect() == [chain["j2"], chain["j5"]]
    assert inp.connections == ()
    assert inp.check() == [
        "input 'particles' needs at least 1 connection, has 0; connect a 'particle' output group"
    ]


# ---------------------------------------------------------------- no silent drops


@pytest.mark.parametrize("shared", [100, 0])
def test_partial_override_is_reported_and_refused(chain, tmp_path, rng, shared):
    """An override covering `shared` of the selection's 170 items (and 30 others): check()
    gives the counts, load() refuses, load(allow_drop=True) gives the brute-force inner
    join, or, sharing no uid at all, an error saying so."""
    sel = chain["j5_pt"]["uid"]
    part, j9 = blob_group(
        tmp_path, "J9", np.concatenate([rng.permutation(sel)[:shared], uids(30, rng)]), rng
    )
    inp = Input(PARTICLES)
    inp.connect(chain["j5"])
    inp.override(0, "blob", j9["blob"])
    assert refused(inp) == [
        "input 'particles': connection 0 (J5.particles_selected): slot 'blob' "
        f"(J9.particles.blob) covers {shared} of the connection's 170 items; {170 - shared} "
        "would be dropped: use a result of the same items, or load with allow_drop=True"
    ]
    if not shared:
        with pytest.raises(InputError) as e:
            inp.load(allow_drop=True)
        assert str(e.value) == (
            "input 'particles': connection 0 (J5.particles_selected): the override of slot "
            "'blob' shares no uid with the connection's items; override with a result of the "
            "same items"
        )
        return
    ds = inp.load(allow_drop=True)
    expected = brute_join(
        chain["j5_pt"],
        [
            (part, ["blob"], None),
            (chain["j5_pt"], ["ctf", "location"], None),
            (chain["j5_main"], ["alignments2D"], None),
        ],
    )
    assert len(expected["uid"]) == shared
    assert_table(ds, expected)


def test_partial_slot_table_of_the_group_itself(chain, tmp_path, rng):
    """The group's own passthrough file lacks some of its items."""
    j5_pt = chain["j5_pt"]
    short = j5_pt[rng.permutation(len(j5_pt))[:150]]
    save(tmp_path / "J5_passthrough_particles_selected.cs", short)
    inp = Input(InputSpec("particle", ["alignments2D", "?ctf"], name="particles"))
    inp.connect(chain["j5"])
    assert refused(inp) == [
        "input 'particles': connection 0 (J5.particles_selected): J5.particles_selected.ctf, "
        "J5.particles_selected.blob, J5.particles_selected.location: num_items says 170, the "
        f"metafile {tmp_path / 'J5_passthrough_particles_selected.cs'} holds 150 items; the "
        "group's description and its file disagree: re-run its job or fix its .csg",
        "input 'particles': connection 0 (J5.particles_selected): slot 'ctf', passthrough "
        "result 'blob', passthrough result 'location' (J5.particles_selected.ctf, "
        "J5.particles_selected.blob, J5.particles_selected.location) covers 150 of the "
        "connection's 170 items; 20 would be dropped: use a result of the same items, or load "
        "with allow_drop=True",
    ]


def test_check_reads_no_column_but_uid(chain, loads):
    """check() opens metafiles for their uid column only (and headers)."""
    inp = Input(PARTICLES)
    inp.connect(chain["j5"])
    inp.override(0, "blob", chain["j2"]["blob"])
    assert inp.check() == []
    assert loads and all(fields == ["uid"] and prefixes is None for _, fields, prefixes in loads)
    assert {name for name, _, _ in loads} == {
        "J5_passthrough_particles_selected.cs",
        "J5_004_particles_selected.cs",
        "J2_000_particles.cs",
    }


def test_num_items_disagreeing_with_the_file(chain, tmp_path, rng):
    g = chain["j2"]
    g["ctf"].num_items = 299
    inp = Input(PARTICLES)
    inp.connect(g)
    path = g["ctf"].metafile
    assert refused(inp) == [
        "input 'particles': connection 0 (J2.particles): J2.particles.ctf: num_items says "
        f"299, the metafile {path} holds 300 items; the group's description and its file "
        "disagree: re-run its job or fix its .csg"
    ]


def test_num_items_of_a_version(versioned):
    """Counts per version (as job documents give them) are checked for the version used."""
    g = versioned
    r = g["j4"]["alignments2D"]
    r.counts = {1: 50, 2: 41}
    inp = Input(InputSpec("particle", ["alignments2D"], name="particles"))
    inp.connect(g["j4"], version=1, passthrough=[])
    assert inp.check() == []
    inp.disconnect()
    inp.connect(g["j4"], passthrough=[])  # the final version: 41 said, 40 in the file
    assert inp.check() == [
        "input 'particles': connection 0 (J4.particles): J4.particles.alignments2D: num_items "
        f"says 41, the metafile {r.metafile} holds 40 items; the group's description and its "
        "file disagree: re-run its job or fix its .csg"
    ]


def test_all_slots_overridden_still_follow_the_connections_items(chain):
    """The connection's items are its group's, even when no own table is read."""
    inp = Input(InputSpec("particle", ["blob"], name="particles"))
    inp.connect(chain["j5"], passthrough=[])
    inp.override(0, "blob", chain["j2"]["blob"])  # J2 has all 300 items, J5 170
    ds = inp.load()
    assert_table(ds, brute_join(chain["j5_main"], [(chain["j2_main"], ["blob"], None)]))


# ---------------------------------------------------------------- CSDAT metafiles


@pytest.mark.parametrize("compression", [None, "lz4"])
def test_csdat_metafile_checks_and_loads(chain, tmp_path, compression):
    cryosparc = pytest.importorskip("cryosparc.dataset")
    j2 = chain["j2_main"]
    cd = cryosparc.Dataset([(k, j2[k]) for k in j2.dtype.names])
    path = tmp_path / "J2_000_particles.cs"  # replaced by a CSDAT stream of the same table
    path.write_bytes(b"".join(bytes(c) for c in cd.stream(compression=compression)))
    inp = Input(PARTICLES)
    inp.connect(chain["j2"])
    assert inp.check() == []
    expected = brute_join(j2, [(j2, ["blob", "ctf"], None), (chain["j2_pt"], ["location"], None)])
    assert_table(inp.load(), expected)
    assert_table(chain["j2"].load(), expected)
    assert_table(chain["j2"]["ctf"].load(), brute_join(j2, [(j2, ["ctf"], None)]))
    over = Input(PARTICLES)
    over.connect(chain["j5"])
    over.override(0, "blob", chain["j2"]["blob"])
    assert over.check() == []
    assert_table(
        over.load(),
        brute_join(
            chain["j5_pt"],
            [
                (j2, ["blob"], None),
                (chain["j5_pt"], ["ctf", "location"], None),
                (chain["j5_main"], ["alignments2D"], None),
            ],
        ),
    )


# ---------------------------------------------------------------- versions cryoSPARC wrote


def test_versions_found_beside_a_cryosparc_csg(tmp_path, rng):
    """cryoSPARC's .csg names only the final metafile; the other versions are the files
    named like it but for the version number."""
    job = tmp_path / "J4"
    job.mkdir()
    u = uids(40, rng)
    arrays = {}
    for fname in (
        "J4_000_particles.cs",
        "J4_005_particles.cs",
        "J4_010_particles.cs",
        "J4_class_00_00000_particles.cs",
        "J4_class_00_00100_particles.cs",
        "J4_class_00_final_particles.cs",
        "J4_class_01_00100_particles.cs",
        "J4_010_particles_extra.cs",
        "J14_003_particles.cs",
    ):
        arrays[fname] = table(rng.permutation(u)[:30], rng, alignments2D=ALIGN2D)
        save(job / fname, arrays[fname])
    save(job / "J4_passthrough_particles.cs", table(u, rng, blob=BLOB))
    (job / "J4_particles.csg").write_text(
        "group: {name: particles, type: particle}\n"
        "results:\n"
        "  alignments2D: {metafile: '>J4_010_particles.cs', num_items: 30, "
        "type: particle.alignments2D}\n"
        "  blob: {metafile: J4/J4_passthrough_particles.cs, num_items: 40, type: particle.blob}\n"
        "version: v4.4.1\n"
    )
    (job / "J4_particles_class_0.csg").write_text(
        "group: {name: particles_class_0, type: particle}\n"
        "results:\n"
        "  alignments2D: {metafile: J4/J4_class_00_final_particles.cs, num_items: 30,"
        " type: particle.alignments2D}\n"
        "version: v4.4.1\n"
    )
    g = ResultGroup.from_csg(job / "J4_particles.csg")
    assert g["alignments2D"].versions == {
        v: str(job / f"J4_{v:03d}_particles.cs") for v in (0, 5, 10)
    }
    # the one passthrough file serves every version (docs/writes.md)
    assert g["blob"].versions == {v: str(job / "J4_passthrough_particles.cs") for v in (0, 5, 10)}
    five = arrays["J4_005_particles.cs"]
    assert_table(
        g.load(version=5, passthrough=False), brute_join(five, [(five, ["alignments2D"], None)])
    )
    assert_table(
        g["alignments2D"].load(version=5), brute_join(five, [(five, ["alignments2D"], None)])
    )
    inp = Input(InputSpec("particle", ["alignments2D"], name="particles"))
    inp.connect(g, version=5, passthrough=[])
    assert_table(inp.load(), brute_join(five, [(five, ["alignments2D"], None)]))
    c0 = ResultGroup.from_csg(job / "J4_particles_class_0.csg")
    # class 00 only; its final file's number is not in its name: one past the last found
    assert c0["alignments2D"].versions == {
        0: str(job / "J4_class_00_00000_particles.cs"),
        100: str(job / "J4_class_00_00100_particles.cs"),
        101: str(job / "J4_class_00_final_particles.cs"),
    }
    hundred = arrays["J4_class_00_00100_particles.cs"]
    assert_table(c0.load(version=100), brute_join(hundred, [(hundred, ["alignments2D"], None)]))


def test_csfast_csg_lists_its_own_versions(tmp_path, rng):
    """A stray file beside a .csg that csfast wrote is not taken as a version."""
    u = uids(10, rng)
    g = write_output(
        tmp_path,
        "J4",
        "particles",
        Dataset(table(u, rng, alignments2D=ALIGN2D)),
        "particle",
        ["alignments2D"],
        version=2,
        validate=False,
    )
    save(tmp_path / "J4_007_particles.cs", table(u, rng, alignments2D=ALIGN2D))
    assert ResultGroup.from_csg(g.path)["alignments2D"].versions == {
        2: str(tmp_path / "J4_002_particles.cs")
    }


# ---------------------------------------------------------------- outputs: types, min fields


def full_particles(u, rng):
    """Particles with every minimum field of blob and of two per-class alignments."""
    from csfast.groups import MIN_FIELDS

    blob = [
        ("path", "S20"),
        ("idx", "<u4"),
        ("shape", "<u4", (2,)),
        ("psize_A", "<f4"),
        ("sign", "<f4"),
    ]
    align = [
        (f, "<f4", (3,)) if f == "pose" else (f, "<f4") for f in MIN_FIELDS["particle.alignments3D"]
    ]
    return table(u, rng, blob=blob, alignments_class_0=align, alignments_class_1=align)


def test_write_output_records_each_results_type(tmp_path, rng):
    arr = full_particles(uids(12, rng), rng)
    write_output(
        tmp_path,
        "J7",
        "particles",
        Dataset(arr),
        "particle",
        ["blob", "alignments_class_0", "alignments_class_1"],
        result_types={"blob": "particle.blob"},
    )
    doc = yaml.safe_load((tmp_path / "J7_particles.csg").read_text())
    assert {r: e["type"] for r, e in doc["results"].items()} == {
        "blob": "particle.blob",
        "alignments_class_0": "particle.alignments3D",
        "alignments_class_1": "particle.alignments3D",
    }
    g = ResultGroup.from_csg(tmp_path / "J7_particles.csg")
    assert g["alignments_class_1"].result_type == "particle.alignments3D"
    inp = Input(InputSpec("particle", ["blob", Slot("alignments3D")], name="particles"))
    inp.connect(g, passthrough=[])
    inp.override(0, "alignments3D", g["alignments_class_1"])
    assert_table(
        inp.load(),
        brute_join(
            arr,
            [
                (arr, ["blob"], None),
                (arr, ["alignments_class_1"], {"alignments_class_1": "alignments3D"}),
            ],
        ),
    )
    # a short type is completed with the item type; another item type is refused
    write_output(
        tmp_path,
        "J8",
        "particles",
        Dataset(arr),
        "particle",
        ["alignments_class_0"],
        result_types={"alignments_class_0": "alignments3D"},
    )
    doc = yaml.safe_load((tmp_path / "J8_particles.csg").read_text())
    assert doc["results"]["alignments_class_0"]["type"] == "particle.alignments3D"
    with pytest.raises(
        CsFieldError,
        match=r"J9.particles: result 'blob' cannot be of type "
        r"'volume.blob' in a 'particle' output group",
    ):
        write_output(
            tmp_path,
            "J9",
            "particles",
            Dataset(arr),
            "particle",
            ["blob"],
            result_types={"blob": "volume.blob"},
        )


def test_write_output_refuses_results_without_their_minimum_fields(tmp_path, rng):
    u = uids(8, rng)
    arr = table(
        u,
        rng,
        blob=[("path", "S20"), ("idx", "<u4"), ("shape", "<u4", (2,))],
        alignments_class_0=ALIGN2D,
        notes=[("text", "S8")],
    )
    with pytest.raises(CsFieldError) as e:
        write_output(
            tmp_path,
            "J7",
            "particles",
            Dataset(arr),
            "particle",
            ["blob", "alignments_class_0", "notes"],
        )
    assert str(e.value) == (
        "J7.particles: results miss their type's minimum fields: 'blob' (particle.blob) lacks "
        "psize_A, sign; 'alignments_class_0' (particle.alignments3D) lacks split, psize_A, "
        "error, error_min, resid_pow, slice_pow, image_pow, cross_cor, alpha, alpha_min, "
        "weight, pose_ess, shift_ess, class_posterior, class_ess; add them, or pass "
        "validate=False"
    )
    assert os.listdir(tmp_path) == []
    g = write_output(
        tmp_path,
        "J7",
        "particles",
        Dataset(arr),
        "particle",
        ["blob", "alignments_class_0", "notes"],
        validate=False,
    )
    np.testing.assert_array_equal(np.load(tmp_path / "J7_000_particles.cs"), arr)
    assert g["notes"].result_type == "particle.notes"  # no minimum known: never refused


def test_unreadable_metafile_is_reported_by_check(chain):
    """Neither a .cs nor a CSDAT file: check() says why, from the one header reader."""
    path = chain["folder"] / "J2_passthrough_particles.cs"
    path.write_bytes(b"PK\x03\x04 not a table")
    inp = Input(PARTICLES)
    inp.connect(chain["j2"])
    assert refused(inp) == [
        f"input 'particles': connection 0 (J2.particles): passthrough result 'location': "
        f"metafile of J2.particles.location: {path} cannot be read ({path}: not a .cs file "
        "(bad magic b'PK\\x03\\x04 n', expected b'\\x93NUMPY')); re-run J2 or connect another "
        "group"
    ]


def test_override_with_the_groups_own_result_opens_each_file_once(chain, loads):
    """As a job document lists it: every slot filled explicitly, from the group itself."""
    j5 = chain["j5"]
    inp = Input(InputSpec("particle", ["blob", "ctf", "alignments2D"], name="particles"))
    inp.connect(j5, passthrough=["location"])
    for slot in ("blob", "ctf", "alignments2D"):
        inp.override(0, slot, j5[slot])
    ds = inp.load()
    opened = [name for name, fields, _ in loads if fields != ["uid"]]  # check() reads uids
    assert sorted(opened) == sorted({os.path.basename(j5[r].metafile) for r in j5.results})
    assert_table(
        ds,
        brute_join(
            chain["j5_pt"],
            [
                (chain["j5_pt"], ["blob", "ctf", "location"], None),
                (chain["j5_main"], ["alignments2D"], None),
            ],
        ),
    )
