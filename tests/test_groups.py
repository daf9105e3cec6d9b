"""Result groups, input groups, overrides and passthrough outputs (issue 4, docs/model.md).

References are built by hand: tables as numpy structured arrays saved with
numpy itself, .csg files as YAML text, joins and concatenations by Python
dictionaries over uids.
"""

import os
from pathlib import Path

import numpy as np
import pytest
import yaml
from group_tables import (  # tests/ helper module (conftest.py)
    ALIGN2D,
    BLOB,
    CTF,
    LOCATION,
    MAP,
    assert_table,
    brute_join,
    chain_groups,
    csg,
    prefix_fields,
    save,
    table,
    uids,
)

import csfast
from csfast import (
    CsError,
    CsUidError,
    Input,
    InputError,
    InputSpec,
    Result,
    ResultGroup,
    Slot,
    write_output,
)
from csfast.dataset import Dataset

RNG_SEED = 7


@pytest.fixture
def rng():
    return np.random.default_rng(RNG_SEED)


@pytest.fixture
def chain(tmp_path, rng):
    return chain_groups(tmp_path, rng)


PARTICLES = InputSpec("particle", ["blob", "?ctf"], name="particles")


# ---------------------------------------------------------------- specs


def test_slot_strings_and_spec_defaults():
    spec = InputSpec("particle", ["blob", "?ctf", Slot("location", required=False)])
    assert spec.slots == (
        Slot("blob", required=True),
        Slot("ctf", required=False),
        Slot("location", required=False),
    )
    assert Slot("blob") == Slot("blob", "blob", True)  # type defaults to the name
    assert [s.type for s in spec.slots] == ["blob", "ctf", "location"]
    assert [spec.slot_type(s.name) for s in spec.slots] == [
        "particle.blob",
        "particle.ctf",
        "particle.location",
    ]
    full = Slot("alignments3D", type="particle.alignments3D")
    assert full.full_type("particle") == "particle.alignments3D"
    assert Slot("half", "map_half_A").full_type("volume") == "volume.map_half_A"
    with pytest.raises(TypeError, match="pass required= by keyword"):
        Slot("ctf", False)
    with pytest.raises(
        ValueError,
        match=r"slot 'map' takes 'volume.map' results, not of the "
        r"input's item type 'particle'",
    ):
        InputSpec("particle", [Slot("map", type="volume.map")])
    assert spec.name == "particles" and spec.count_min == 1 and spec.count_max is None
    assert not spec.repeat_allowed
    with pytest.raises(ValueError, match="repeat"):
        InputSpec("particle", ["blob", "?blob"])
    assert issubclass(InputError, CsError)


# ---------------------------------------------------------------- .csg files


def test_read_csg_in_the_cs_format_layout(tmp_path, rng):
    """A .csg written by hand exactly as docs/formats.md shows it."""
    job = tmp_path / "J42"
    job.mkdir()
    u = uids(20, rng)
    main = table(u, rng, blob=BLOB, alignments3D=ALIGN2D)
    pt = table(u[::-1].copy(), rng, location=LOCATION)
    save(job / "J42_005_particles.cs", main)
    save(job / "J42_passthrough_particles.cs", pt)
    other = tmp_path / "elsewhere.cs"
    save(other, table(u, rng, ctf=CTF))
    text = f"""\
created: 2024-05-01 12:00:00.000000
group:
  name: particles
  title: Particles
  type: particle
  description: Particles refined
results:
  blob:
    metafile: '>J42_005_particles.cs'
    num_items: 20
    type: particle.blob
  alignments_class_0:
    metafile: '>J42_005_particles.cs'
    num_items: 20
    type: particle.alignments3D
  location:
    metafile: '>J42_passthrough_particles.cs'
    num_items: 20
    type: particle.location
  ctf:
    metafile: {other}
    num_items: 20
    type: particle.ctf
  pick_stats:
    metafile: J42/J42_passthrough_particles.cs
    num_items: 20
    type: particle.pick_stats
version: v4.4.1
"""
    (job / "J42_particles.csg").write_text(text)
    g = ResultGroup.from_csg(job / "J42_particles.csg")
    assert (g.name, g.item_type, g.title, g.job, g.label) == (
        "particles",
        "particle",
        "Particles",
        "J42",
        "J42.particles",
    )
    assert g.description == "Particles refined"
    assert list(g.results) == ["blob", "alignments_class_0", "location", "ctf", "pick_stats"]
    blob = g["blob"]
    assert blob.metafile == str(job / "J42_005_particles.cs")
    assert blob.versions == {5: str(job / "J42_005_particles.cs")} and blob.version == 5
    assert (blob.item_type, blob.result_type, blob.num_items) == ("particle", "particle.blob", 20)
    assert blob.label == "J42.particles.blob" and not blob.passthrough
    assert g["alignments_class_0"].result_type == "particle.alignments3D"
    assert g["location"].passthrough and g["location"].metafile == str(
        job / "J42_passthrough_particles.cs"
    )
    assert g["ctf"].metafile == str(other)
    # project-relative (cryoSPARC style): resolved against the folder above the .csg
    assert g["pick_stats"].metafile == str(job / "J42_passthrough_particles.cs")
    ds = g["location"].load()
    assert ds.fields() == ["uid"] + prefix_fields(pt, ["location"])
    np.testing.assert_array_equal(ds["location/center_x_frac"], pt["location/center_x_frac"])
    with pytest.raises(csfast.CsFieldError, match="J42.particles has no result 'map'"):
        g["map"]


def test_csg_round_trip(tmp_path, rng):
    u = uids(10, rng)
    a, b = tmp_path / "J7_003_volume.cs", tmp_path / "J7_009_volume.cs"
    save(a, table(u[:1], rng, map=MAP))
    save(b, table(u[:1], rng, map=MAP))
    outside = tmp_path.parent / f"{tmp_path.name}_other.cs"
    save(outside, table(u[:1], rng, mask=MAP))
    g = ResultGroup(
        "volume",
        "volume",
        {
            "map": Result("map", "volume", {3: str(a), 9: str(b)}, num_items=1),
            "mask": Result("mask", "volume", {0: str(outside)}, num_items=1, passthrough=True),
        },
        title="Refined volume",
        description="two versions",
        job="J7",
    )
    sub = tmp_path / "groups"
    sub.mkdir()
    path = g.save_csg(sub / "J7_volume.csg")
    doc = yaml.safe_load(Path(path).read_text())
    assert doc["group"] == {
        "name": "volume",
        "title": "Refined volume",
        "type": "volume",
        "description": "two versions",
    }
    assert doc["results"]["map"]["metafile"] == str(b)  # outside the .csg folder: absolute
    assert doc["results"]["map"]["versions"] == {3: str(a), 9: str(b)}
    assert doc["results"]["map"]["type"] == "volume.map"
    assert doc["results"]["mask"]["passthrough"] is True
    back = ResultGroup.from_csg(path)
    assert (back.name, back.item_type, back.title, back.description, back.job) == (
        "volume",
        "volume",
        "Refined volume",
        "two versions",
        "J7",
    )
    for name in ("map", "mask"):
        r0, r1 = g[name], back[name]
        assert (r1.versions, r1.num_items, r1.passthrough, r1.result_type) == (
            r0.versions,
            r0.num_items,
            r0.passthrough,
            r0.result_type,
        )
    # inside the folder: written '>relative' and resolved back
    path2 = g.save_csg(tmp_path / "J7_volume.csg")
    doc = yaml.safe_load(Path(path2).read_text())
    assert doc["results"]["map"]["metafile"] == ">J7_009_volume.cs"
    assert ResultGroup.from_csg(path2)["map"].versions == {3: str(a), 9: str(b)}


def test_bad_csg_is_a_format_error(tmp_path):
    p = tmp_path / "J1_x.csg"
    p.write_text("group: [1, 2]\n")
    with pytest.raises(csfast.CsFormatError, match="J1_x.csg"):
        ResultGroup.from_csg(p)


# ---------------------------------------------------------------- group.load


def test_group_load_joins_and_opens_each_metafile_once(chain, monkeypatch):
    opened = []
    real = Dataset.load.__func__

    def counting(cls, path, *a, **k):
        opened.append(os.fspath(path))
        return real(cls, path, *a, **k)

    monkeypatch.setattr(Dataset, "load", classmethod(counting))
    ds = chain["j5"].load()
    assert sorted(opened) == sorted({chain["j5"][r].metafile for r in chain["j5"].results})
    expected = brute_join(
        chain["j5_main"],
        [
            (chain["j5_main"], ["alignments2D"], None),
            (chain["j5_pt"], ["blob", "ctf", "location"], None),
        ],
    )
    assert_table(ds, expected)
    # the .csg marks no result passthrough, its file name does (J5_passthrough_...)
    assert [r for r in chain["j5"].results if chain["j5"][r].passthrough] == [
        "blob",
        "ctf",
        "location",
    ]
    own = chain["j5"].load(passthrough=False)
    assert_table(own, brute_join(chain["j5_main"], [(chain["j5_main"], ["alignments2D"], None)]))
    only = chain["j5"].load(slots=["ctf"], passthrough=False)
    assert sorted(only.prefixes()) == ["ctf"]
    np.testing.assert_array_equal(only["uid"], chain["j5_pt"]["uid"])


def test_group_load_versions(tmp_path, rng):
    u = uids(30, rng)
    v1, v2 = table(u, rng, alignments2D=ALIGN2D), table(u, rng, alignments2D=ALIGN2D)
    pt = table(u, rng, blob=BLOB)
    d = Dataset(v1)
    write_output(
        tmp_path,
        "J4",
        "particles",
        d,
        "particle",
        ["alignments2D"],
        passthrough=Dataset(pt),
        version=1,
        validate=False,
    )
    g = write_output(
        tmp_path,
        "J4",
        "particles",
        Dataset(v2),
        "particle",
        ["alignments2D"],
        version=2,
        validate=False,
    )
    assert sorted(f for f in os.listdir(tmp_path) if not f.startswith(".")) == [
        "J4_001_particles.cs",
        "J4_002_particles.cs",
        "J4_particles.csg",
        "J4_passthrough_particles.cs",
    ]
    g = ResultGroup.from_csg(g.path)
    assert set(g["alignments2D"].versions) == {1, 2} and g["blob"].passthrough
    final = g.load()
    assert_table(final, brute_join(v2, [(v2, ["alignments2D"], None), (pt, ["blob"], None)]))
    first = g.load(version=1, passthrough=False)
    assert_table(first, brute_join(v1, [(v1, ["alignments2D"], None)]))
    with pytest.raises(CsError, match="no version 3"):
        g.load(version=3)


# ---------------------------------------------------------------- the two model cases


def test_downsampled_particles_with_blob_override(chain):
    """Case 1: the selection's particles, with the full-size extraction's blob."""
    inp = Input(PARTICLES)
    assert inp.connect(chain["j5"]) == 0
    inp.override(0, "blob", chain["j2"]["blob"])
    assert inp.check() == []
    ds = inp.load()
    # Reference: J5's rows and order; blob from J2 (not J5's downsampled one);
    # ctf, location (passthrough along the chain) and alignments2D from J5.
    expected = brute_join(
        chain["j5_pt"],
        [
            (chain["j2_main"], ["blob"], None),
            (chain["j5_pt"], ["ctf", "location"], None),
            (chain["j5_main"], ["alignments2D"], None),
        ],
    )
    assert_table(ds, expected)
    assert (ds["blob/shape"] != 64).all()  # never the downsampled blob
    assert ds.prefixes() == ["blob", "ctf", "location", "alignments2D"]
    # Without passthrough: only the slots.
    slots_only = inp.load(passthrough=False)
    assert sorted(slots_only.prefixes()) == ["blob", "ctf"]
    assert len(slots_only) == len(chain["j5_pt"])


def test_clear_optional_slot(chain):
    inp = Input(PARTICLES)
    inp.connect(chain["j5"])
    inp.clear(0, "ctf")
    ds = inp.load()
    assert "ctf" not in ds.prefixes() and "blob" in ds.prefixes()
    expected = brute_join(
        chain["j5_pt"],
        [(chain["j5_pt"], ["blob", "location"], None), (chain["j5_main"], ["alignments2D"], None)],
    )
    assert_table(ds, expected)


def local_resolution_jobs(tmp_path, rng):
    """J6 refinement volume (map, half maps, mask), J7 and J8 each with one half map."""
    j6 = table(uids(1, rng), rng, map=MAP, map_half_A=MAP, map_half_B=MAP, mask=MAP)
    j7 = table(uids(1, rng), rng, map_half_A=MAP)
    j8 = table(uids(1, rng), rng, map=MAP, map_half_B=MAP)
    groups = {}
    for job, arr in (("J6", j6), ("J7", j7), ("J8", j8)):
        save(tmp_path / f"{job}_005_volume.cs", arr)
        prefixes = sorted({k.split("/")[0] for k in arr.dtype.names[1:]})
        groups[job] = csg(
            tmp_path, job, "volume", "volume", {r: (f">{job}_005_volume.cs", 1) for r in prefixes}
        )
    return groups, {"J6": j6, "J7": j7, "J8": j8}


LOCRES = InputSpec(
    "volume", ["map", "map_half_A", "map_half_B", "?mask"], count_max=1, name="volume"
)


def test_local_resolution_half_maps_from_two_jobs(tmp_path, rng):
    """Case 2: map_half_A and map_half_B overridden from two different jobs."""
    groups, arrays = local_resolution_jobs(tmp_path, rng)
    inp = Input(LOCRES)
    inp.connect(groups["J6"])
    inp.override(0, "map_half_A", groups["J7"]["map_half_A"])
    inp.override(0, "map_half_B", groups["J8"]["map_half_B"])
    assert inp.check() == []
    ds = inp.load()
    j6, j7, j8 = arrays["J6"], arrays["J7"], arrays["J8"]
    expected = {"uid": j6["uid"]}  # the connection's own item keeps its uid
    for k in prefix_fields(j6, ["map", "mask"]):
        expected[k] = j6[k]
    for k in prefix_fields(j7, ["map_half_A"]):
        expected[k] = j7[k]
    for k in prefix_fields(j8, ["map_half_B"]):
        expected[k] = j8[k]
    assert_table(ds, expected)
    # map and mask share J6's metafile, loaded once: their columns come together
    assert ds.prefixes() == ["map", "mask", "map_half_A", "map_half_B"]


def test_override_from_a_result_of_another_name(tmp_path, rng):
    """A slot filled from a result named differently (of the slot's type) takes the slot's
    name; a result of another type is refused at once, naming both types."""
    groups, arrays = local_resolution_jobs(tmp_path, rng)
    other = table(uids(1, rng), rng, sharpened_half_A=MAP)
    save(tmp_path / "J9_002_volume.cs", other)
    j9 = csg(
        tmp_path,
        "J9",
        "volume",
        "volume",
        {"sharpened_half_A": (">J9_002_volume.cs", 1)},
        extra_keys={"sharpened_half_A": {"type": "volume.map_half_A"}},
    )
    inp = Input(LOCRES)
    inp.connect(groups["J6"])
    with pytest.raises(InputError) as e:
        inp.override(0, "map_half_A", groups["J8"]["map"])
    assert str(e.value) == (
        "input 'volume': connection 0 (J6.volume): slot 'map_half_A' takes "
        "'volume.map_half_A' results; J8.volume.map is of type 'volume.map'; override with a "
        "'volume.map_half_A' result"
    )
    inp.override(0, "map_half_A", j9["sharpened_half_A"])
    inp.override(0, "map_half_B", groups["J8"]["map_half_B"])
    inp.clear(0, "mask")
    ds = inp.load(passthrough=False)
    j6, j8 = arrays["J6"], arrays["J8"]
    assert ds.prefixes() == ["map", "map_half_A", "map_half_B"]
    np.testing.assert_array_equal(ds["uid"], j6["uid"])
    np.testing.assert_array_equal(ds["map/path"], j6["map/path"])
    np.testing.assert_array_equal(ds["map_half_A/path"], other["sharpened_half_A/path"])
    np.testing.assert_array_equal(ds["map_half_A/shape"], other["sharpened_half_A/shape"])
    np.testing.assert_array_equal(ds["map_half_B/path"], j8["map_half_B/path"])


def test_connections_append_in_order(tmp_path, rng):
    u = uids(50, rng)
    a = table(u[:20], rng, blob=BLOB, ctf=CTF)
    b = table(u[20:], rng, blob=BLOB)
    save(tmp_path / "J1_000_particles.cs", a)
    save(tmp_path / "J2_000_particles.cs", b)
    g1 = csg(
        tmp_path,
        "J1",
        "particles",
        "particle",
        {"blob": (">J1_000_particles.cs", 20), "ctf": (">J1_000_particles.cs", 20)},
    )
    g2 = csg(tmp_path, "J2", "particles", "particle", {"blob": (">J2_000_particles.cs", 30)})
    inp = Input(PARTICLES)
    inp.connect(g1)
    inp.connect(g2)
    ds = inp.load()
    expected = {k: np.concatenate([a[k], b[k]]) for k in ["uid"] + prefix_fields(b, ["blob"])}
    assert_table(ds, expected)  # ctf only in connection 0: not a common field
    assert inp.disconnect(0) is g1 and [c.group for c in inp.connections] == [g2]


# ---------------------------------------------------------------- requirement failures


def problems_of(inp, passthrough=True):
    problems = inp.check(passthrough)
    with pytest.raises(InputError) as e:
        inp.load(passthrough)
    assert e.value.problems == problems
    assert str(e.value) == "\n".join(problems)
    return problems


def test_too_few_connections():
    assert problems_of(Input(PARTICLES)) == [
        "input 'particles' needs at least 1 connection, has 0; connect a 'particle' output group"
    ]


def test_too_many_connections(tmp_path, rng):
    groups, _ = local_resolution_jobs(tmp_path, rng)
    inp = Input(LOCRES)
    inp.connect(groups["J6"])
    inp.connect(groups["J8"])
    assert "input 'volume' takes at most 1 connection, has 2; disconnect 1" in problems_of(inp)


def test_group_connected_twice(chain):
    inp = Input(PARTICLES)
    inp.connect(chain["j5"])
    inp.connect(ResultGroup.from_csg(chain["j5"].path))  # the same group, read again
    assert problems_of(inp) == [
        "input 'particles': J5.particles_selected is connected twice (connections 0 and 1) "
        "and repeat_allowed is False; disconnect connection 1"
    ]


def test_repeat_allowed_loads_both(chain):
    inp = Input(InputSpec("particle", ["blob"], repeat_allowed=True))
    inp.connect(chain["j5"])
    inp.connect(chain["j5"])
    ds = inp.load(passthrough=False)
    np.testing.assert_array_equal(ds["uid"], np.concatenate([chain["j5_pt"]["uid"]] * 2))


def test_required_slot_empty(chain):
    inp = Input(InputSpec("particle", ["blob", "alignments3D"]))
    inp.connect(chain["j2"])
    inp.connect(chain["j5"])
    inp.connect(chain["j2"].__class__.from_csg(chain["j2"].path))
    problems = problems_of(inp)
    assert (
        "input 'particles': connection 1 (J5.particles_selected): required slot "
        "'alignments3D' is empty: J5.particles_selected has no 'alignments3D' result (it "
        "has: alignments2D, blob, ctf, location); override the slot with a "
        "'particle.alignments3D' result of another group"
    ) in problems
    assert any(
        p.startswith(
            "input 'particles': connection 2 (J2.particles): required slot 'alignments3D' is empty"
        )
        for p in problems
    )


def test_override_of_the_wrong_type(chain, tmp_path, rng):
    """Refused at once, of another item type or of the same item type (a blob for ctf)."""
    groups, _ = local_resolution_jobs(tmp_path, rng)
    inp = Input(PARTICLES)
    inp.connect(chain["j5"])
    for slot, result, message in (
        (
            "blob",
            groups["J7"]["map_half_A"],
            "slot 'blob' takes 'particle.blob' results; J7.volume.map_half_A is of type "
            "'volume.map_half_A'; override with a 'particle.blob' result",
        ),
        (
            "ctf",
            chain["j2"]["blob"],
            "slot 'ctf' takes 'particle.ctf' results; J2.particles.blob is of type "
            "'particle.blob'; override with a 'particle.ctf' result",
        ),
    ):
        with pytest.raises(InputError) as e:
            inp.override(0, slot, result)
        assert e.value.problems == [
            f"input 'particles': connection 0 (J5.particles_selected): {message}"
        ]
    assert inp.connections[0].overrides == {}


def test_group_of_the_wrong_item_type(tmp_path, rng):
    groups, _ = local_resolution_jobs(tmp_path, rng)
    inp = Input(PARTICLES)
    inp.connect(groups["J6"])
    assert problems_of(inp) == [
        "input 'particles': connection 0 (J6.volume): group is of item type 'volume', input "
        "expects 'particle'; connect a 'particle' output group"
    ]


def test_metafile_missing_on_disk(chain):
    os.remove(chain["folder"] / "J2_000_particles.cs")
    inp = Input(PARTICLES)
    inp.connect(chain["j2"])
    path = chain["folder"] / "J2_000_particles.cs"
    assert problems_of(inp) == [
        f"input 'particles': connection 0 (J2.particles): slot {s!r}: metafile of "
        f"J2.particles.{s}: {path} is missing on disk; re-run J2 or connect another group"
        for s in ("blob", "ctf")
    ]


def test_metafile_without_the_results_fields(chain):
    g = chain["j2"]
    g.results["ctf"] = Result("ctf", "particle", {0: g["location"].metafile}, group_label=g.label)
    inp = Input(PARTICLES)
    inp.connect(g)
    assert problems_of(inp) == [
        f"input 'particles': connection 0 (J2.particles): slot 'ctf': metafile "
        f"{g['location'].metafile} of J2.particles.ctf holds no 'ctf' fields; fix its .csg"
    ]


def test_one_item_override_into_a_many_item_group(chain, tmp_path, rng):
    one = table(chain["j5_pt"]["uid"][:1], rng, blob=BLOB)
    save(tmp_path / "J9_000_particles.cs", one)
    g9 = csg(tmp_path, "J9", "particles", "particle", {"blob": (">J9_000_particles.cs", 1)})
    inp = Input(PARTICLES)
    inp.connect(chain["j5"])
    inp.override(0, "blob", g9["blob"])
    assert problems_of(inp) == [
        "input 'particles': connection 0 (J5.particles_selected): slot 'blob' is overridden by "
        "the one-item result J9.particles.blob, but J5.particles_selected holds 170 items; "
        "override with a result of the same items"
    ]


def test_one_item_override_into_a_many_item_volume_group(tmp_path, rng):
    groups, _ = local_resolution_jobs(tmp_path, rng)
    three = table(uids(3, rng), rng, map=MAP, map_half_A=MAP, map_half_B=MAP)
    save(tmp_path / "J10_000_volumes.cs", three)
    g10 = csg(
        tmp_path,
        "J10",
        "volumes",
        "volume",
        {r: (">J10_000_volumes.cs", 3) for r in ("map", "map_half_A", "map_half_B")},
    )
    inp = Input(LOCRES)
    inp.connect(g10)
    inp.override(0, "map_half_A", groups["J7"]["map_half_A"])
    assert problems_of(inp) == [
        "input 'volume': connection 0 (J10.volumes): slot 'map_half_A' is overridden by the "
        "one-item result J7.volume.map_half_A, but J10.volumes holds 3 items; override with a "
        "result of the same items"
    ]
    # and the other way round: a many-item override of a one-item kind
    inp = Input(LOCRES)
    inp.connect(groups["J6"])
    inp.override(0, "map_half_B", g10["map_half_B"])
    assert problems_of(inp) == [
        "input 'volume': connection 0 (J6.volume): slot 'map_half_B' is overridden by "
        "J10.volumes.map_half_B, which holds 3 items; a 'volume' override must hold exactly one"
    ]


def test_duplicate_uids_across_connections(tmp_path, rng):
    u = uids(40, rng)
    a, b = table(u[:25], rng, blob=BLOB), table(u[20:], rng, blob=BLOB)
    save(tmp_path / "J17_000_particles.cs", a)
    save(tmp_path / "J18_000_particles.cs", b)
    g17 = csg(tmp_path, "J17", "particles", "particle", {"blob": (">J17_000_particles.cs", 25)})
    g18 = csg(tmp_path, "J18", "particles", "particle", {"blob": (">J18_000_particles.cs", 20)})
    inp = Input(PARTICLES)
    inp.connect(g17)
    inp.connect(g18)
    assert inp.check() == []
    with pytest.raises(
        InputError,
        match=r"^input 'particles': connections 0 \(J17.particles\) "
        r"and 1 \(J18.particles\) share 5 uids \(e.g. \d+, \d+, \d+\) and "
        r"repeat_allowed is False; connect groups of different items$",
    ):
        inp.load()
    allowed = Input(InputSpec("particle", ["blob"], repeat_allowed=True))
    allowed.connect(g17)
    allowed.connect(g18)
    ds = allowed.load()
    np.testing.assert_array_equal(ds["uid"], np.concatenate([a["uid"], b["uid"]]))


def test_misuse_raises_at_once(chain):
    inp = Input(PARTICLES)
    inp.connect(chain["j5"])
    with pytest.raises(
        InputError,
        match=r"input 'particles' has no slot 'pose' \(slots: "
        r"blob, ctf\)",
    ):
        inp.override(0, "pose", chain["j2"]["blob"])
    with pytest.raises(InputError, match="input 'particles' has no connection 3 \\(it has 1\\)"):
        inp.override(3, "blob", chain["j2"]["blob"])
    with pytest.raises(InputError, match="slot 'blob' is required and cannot be cleared"):
        inp.clear(0, "blob")
    with pytest.raises(InputError, match="has no connection 1"):
        inp.disconnect(1)


def test_every_problem_listed_at_once(tmp_path, rng):
    groups, _ = local_resolution_jobs(tmp_path, rng)
    inp = Input(InputSpec("particle", ["blob"], count_max=1))
    inp.connect(groups["J6"])
    inp.connect(groups["J7"])
    problems = problems_of(inp)
    assert len(problems) == 3
    assert problems[0].startswith("input 'particles' takes at most 1 connection, has 2")
    assert "connection 1 (J7.volume): group is of item type 'volume'" in problems[2]


# ---------------------------------------------------------------- outputs and passthrough


def test_passthrough_round_trip(tmp_path, rng):
    """A job that keeps a subset writes exactly the output uids and the input's other
    fields; a following job connected to its output sees everything."""
    n = 200
    u = uids(n, rng)
    main = table(u, rng, blob=BLOB, ctf=CTF)
    pt = table(rng.permutation(u), rng, location=LOCATION)
    save(tmp_path / "J1_000_particles.cs", main)
    save(tmp_path / "J1_passthrough_particles.cs", pt)
    j1 = csg(
        tmp_path,
        "J1",
        "particles",
        "particle",
        {
            "blob": (">J1_000_particles.cs", n),
            "ctf": (">J1_000_particles.cs", n),
            "location": (">J1_passthrough_particles.cs", n),
        },
    )
    inp = Input(InputSpec("particle", ["blob", "?ctf"]))
    inp.connect(j1)
    received = inp.load()
    keep = np.sort(rng.permutation(n)[:90])[::-1]  # a subset, in a new order
    out_uids = main["uid"][keep]
    new = table(out_uids, rng, ctf=CTF, alignments2D=ALIGN2D)  # replaces ctf
    g = write_output(
        tmp_path,
        "J2",
        "particles",
        Dataset(new),
        "particle",
        ["ctf", "alignments2D"],
        passthrough=inp.load(passthrough=True),
        validate=False,
    )
    assert g.label == "J2.particles" and g.path == str(tmp_path / "J2_particles.csg")
    written = np.load(tmp_path / "J2_000_particles.cs")
    assert written.dtype.names == new.dtype.names
    np.testing.assert_array_equal(written, new)
    carried = np.load(tmp_path / "J2_passthrough_particles.cs")
    ref = brute_join(new, [(main, ["blob"], None), (pt, ["location"], None)])
    assert sorted(carried.dtype.names) == sorted(ref)  # not ctf: the job replaced it
    for k, v in ref.items():
        np.testing.assert_array_equal(carried[k], v)
    assert {r: g[r].passthrough for r in g.results} == {
        "ctf": False,
        "alignments2D": False,
        "blob": True,
        "location": True,
    }
    assert g["blob"].num_items == 90
    # The next job sees everything.
    nxt = Input(InputSpec("particle", ["alignments2D"]))
    nxt.connect(ResultGroup.from_csg(g.path))
    ds = nxt.load()
    expected = brute_join(
        new,
        [(new, ["ctf", "alignments2D"], None), (main, ["blob"], None), (pt, ["location"], None)],
    )
    assert_table(ds, expected)
    assert len(received) == n


def test_passthrough_needs_every_output_uid(tmp_path, rng):
    u = uids(20, rng)
    received = Dataset(table(u[:10], rng, location=LOCATION))
    new = Dataset(table(u[5:15], rng, blob=BLOB))
    with pytest.raises(
        CsUidError, match="J3.particles: 5 output uids are not in the passthrough input"
    ):
        write_output(
            tmp_path,
            "J3",
            "particles",
            new,
            "particle",
            ["blob"],
            passthrough=received,
            validate=False,
        )
    with pytest.raises(csfast.CsFieldError, match=r"results \['ctf'\] are not in the dataset"):
        write_output(tmp_path, "J3", "particles", new, "particle", ["ctf"], validate=False)
    assert os.listdir(tmp_path) == []


def test_failed_write_leaves_the_earlier_group_loadable(tmp_path, rng, monkeypatch):
    u = uids(50, rng)
    v0 = table(u, rng, alignments3D=ALIGN2D)
    pt = Dataset(table(u, rng, blob=BLOB))
    g0 = write_output(
        tmp_path,
        "J6",
        "particles",
        Dataset(v0),
        "particle",
        ["alignments3D"],
        passthrough=pt,
        validate=False,
    )
    before = Path(g0.path).read_text()
    expected = brute_join(v0, [(v0, ["alignments3D"], None), (pt.to_records(), ["blob"], None)])

    import csfast.groups as groups

    def fail(*args, **kwargs):
        raise OSError(28, "No space left on device")

    for target in (groups, Dataset):  # the .csg write, or a data file write
        with monkeypatch.context() as m:
            m.setattr(target, "atomic_write" if target is groups else "save", fail)
            with pytest.raises(OSError, match="No space"):
                write_output(
                    tmp_path,
                    "J6",
                    "particles",
                    Dataset(table(u, rng, alignments3D=ALIGN2D)),
                    "particle",
                    ["alignments3D"],
                    passthrough=pt,
                    version=1,
                    validate=False,
                )
        assert Path(g0.path).read_text() == before
        assert_table(ResultGroup.from_csg(g0.path).load(), expected)
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]


def test_output_without_passthrough_keeps_earlier_passthrough(tmp_path, rng):
    u = uids(10, rng)
    pt = Dataset(table(u, rng, location=LOCATION))
    write_output(
        tmp_path,
        "J2",
        "particles",
        Dataset(table(u, rng, blob=BLOB)),
        "particle",
        ["blob"],
        passthrough=pt,
        validate=False,
    )
    g = write_output(
        tmp_path,
        "J2",
        "particles",
        Dataset(table(u, rng, blob=BLOB)),
        "particle",
        ["blob"],
        version=3,
        validate=False,
    )
    assert g["location"].passthrough and g["blob"].versions.keys() == {0, 3}
    with pytest.raises(CsError, match="item type 'particle', not 'volume'"):
        write_output(
            tmp_path,
            "J2",
            "particles",
            Dataset(table(u, rng, blob=BLOB)),
            "volume",
            ["blob"],
            version=4,
            validate=False,
        )


@pytest.mark.parametrize("seed", range(6))
def test_random_connections_against_brute_force(tmp_path, seed):
    """Several connections, each a main and a passthrough file in different row orders,
    some with a blob override covering only part of their items; rows and values must be
    the brute-force join per connection, concatenated in connection order."""
    rng = np.random.default_rng(seed)
    all_uids = uids(400, rng)
    inp = Input(InputSpec("particle", ["blob", "?ctf"], count_max=None))
    expected_parts, expected_drops = [], []
    start = 0
    for c in range(int(rng.integers(1, 4))):
        n = int(rng.integers(5, 60))
        u = all_uids[start : start + n]
        start += n
        main = table(u, rng, blob=BLOB, ctf=CTF)
        pt = table(rng.permutation(u)[: n - int(rng.integers(0, 3))], rng, location=LOCATION)
        job = f"J{10 + c}"
        save(tmp_path / f"{job}_001_particles.cs", main)
        save(tmp_path / f"{job}_passthrough_particles.cs", pt)
        g = csg(
            tmp_path,
            job,
            "particles",
            "particle",
            {
                "blob": (f">{job}_001_particles.cs", n),
                "ctf": (f">{job}_001_particles.cs", n),
                "location": (f">{job}_passthrough_particles.cs", len(pt)),
            },
        )
        i = inp.connect(g)
        blob_source = main
        if rng.random() < 0.6:
            over = table(rng.permutation(u)[: max(2, n // 2)], rng, blob=BLOB)
            save(tmp_path / f"J9{c}_000_particles.cs", over)
            og = csg(
                tmp_path,
                f"J9{c}",
                "particles",
                "particle",
                {"blob": (f">J9{c}_000_particles.cs", len(over))},
            )
            inp.override(i, "blob", og["blob"])
            blob_source = over
        where = f"input 'particles': connection {i} ({job}.particles)"
        for what, src in (
            (
                "slot 'blob' ("
                + ("J9" + str(c) if blob_source is not main else job)
                + ".particles.blob)",
                blob_source,
            ),
            (f"passthrough result 'location' ({job}.particles.location)", pt),
        ):
            covered = len(set(map(int, src["uid"])) & set(map(int, u)))
            if covered < n:
                expected_drops.append(
                    f"{where}: {what} covers {covered:,} of the connection's "
                    f"{n:,} items; {n - covered:,} would be dropped: use a "
                    "result of the same items, or load with allow_drop=True"
                )
        expected_parts.append(
            brute_join(
                main,
                [(blob_source, ["blob"], None), (main, ["ctf"], None), (pt, ["location"], None)],
            )
        )
    problems = inp.check()
    # Every connection whose override or passthrough table lacks some of its items is
    # reported, with the counts the brute-force join drops.
    assert problems == [p for p in expected_drops if p]
    if problems:
        with pytest.raises(InputError) as e:
            inp.load()
        assert e.value.problems == problems
    ds = inp.load(allow_drop=True)
    expected = {k: np.concatenate([p[k] for p in expected_parts]) for k in expected_parts[0]}
    assert_table(ds, expected)


def test_old_style_file_names(tmp_path, rng):
    """Older releases prefix files with cryosparc_P3_; job and version still parse, and
    the versions beside the final one are those of the same prefix."""
    u = uids(5, rng)
    for name in (
        "cryosparc_P3_J42_007_particles.cs",
        "cryosparc_P3_J42_003_particles.cs",
        "cryosparc_P9_J42_005_particles.cs",
    ):
        save(tmp_path / name, table(u, rng, blob=BLOB))
    (tmp_path / "cryosparc_P3_J42_particles.csg").write_text(
        "group: {name: particles, type: particle}\n"
        "results:\n  blob: {metafile: '>cryosparc_P3_J42_007_particles.cs', num_items: 5,"
        " type: particle.blob}\n"
    )
    g = ResultGroup.from_csg(tmp_path / "cryosparc_P3_J42_particles.csg")
    assert g.label == "J42.particles" and g["blob"].version == 7
    assert g["blob"].versions == {
        v: str(tmp_path / f"cryosparc_P3_J42_{v:03d}_particles.cs") for v in (3, 7)
    }
    np.testing.assert_array_equal(g.load()["uid"], u)


def test_csg_with_a_non_numeric_count_is_a_format_error(tmp_path):
    path = tmp_path / "J1_particles.csg"
    path.write_text(
        "group:\n  name: particles\n  type: particle\nresults:\n  blob:\n"
        "    metafile: '>J1_000_particles.cs'\n    num_items: ten\n"
    )
    with pytest.raises(csfast.CsFormatError, match=r"J1_particles.csg: result 'blob': .*'ten'"):
        ResultGroup.from_csg(path)


def test_result_group_is_a_deprecated_alias_of_group_label():
    r = Result("blob", "particle", {0: "J1_000_particles.cs"}, group_label="J1.particles")
    assert r.label == "J1.particles.blob"
    with pytest.warns(DeprecationWarning, match="group_label"):
        assert r.group == "J1.particles"
    with pytest.warns(DeprecationWarning, match="group_label"):
        r.group = "J2.particles"
    assert r.group_label == "J2.particles" and r.label == "J2.particles.blob"


def test_write_output_takes_a_dataset_as_passthrough(chain, tmp_path):
    inp = Input(InputSpec("particle", ["blob"]))
    inp.connect(next(iter(chain.values())))
    ds = inp.load(passthrough=False)
    with pytest.raises(TypeError, match="not Input; for an Input, pass input.load"):
        write_output(tmp_path, "J9", "particles", ds, "particle", ["blob"], passthrough=inp)
    assert not list(tmp_path.glob("J9_*"))


def test_missing_results_and_versions_have_their_own_errors(chain):
    g = next(iter(chain.values()))
    with pytest.raises(csfast.CsResultError, match="has no result 'nothing'") as e:
        g["nothing"]
    assert isinstance(e.value, csfast.CsFieldError)  # except clauses of 0.1 still catch it
    r = next(iter(g.results.values()))
    with pytest.raises(csfast.CsVersionError, match="has no version 99"):
        r.metafile_of(99)
    with pytest.raises(csfast.CsProjectError, match="not a folder"):
        csfast.Project(r.metafile)
