"""The `csfast load`, `join`, `append` and `demo` commands, checked against numpy."""

import json
import os

import numpy as np
import pytest

from csfast import Dataset, Project, ResultGroup, write_output
from csfast.cli import main


def structured(uids, rng, **results):
    descr = [("uid", "<u8")]
    for r, fields in results.items():
        descr += [(f"{r}/{name}", dt) for name, dt in fields]
    a = np.zeros(len(uids), dtype=descr)
    a["uid"] = uids
    for k in a.dtype.names[1:]:
        if a[k].dtype.kind == "S":
            a[k] = [f"{k}{i}".encode() for i in rng.integers(0, 10**6, len(uids))]
        else:
            a[k] = rng.integers(0, 10**6, len(uids)).astype(a[k].dtype)
    return a


BLOB = [("path", "S12"), ("idx", "<u4")]
CTF = [("df1_A", "<f4")]
LOC = [("center_x_frac", "<f4"), ("micrograph_uid", "<u8")]


def save(path, arr):
    with open(path, "wb") as f:
        np.save(f, arr)
    return str(path)


@pytest.fixture
def rng():
    return np.random.default_rng(11)


def some_uids(n, rng):
    return rng.permutation(np.unique(rng.integers(0, 2**64, 3 * n, dtype=np.uint64)))[:n]


def by_uid(arr):
    return {int(u): i for i, u in enumerate(arr["uid"])}


def test_load_group(tmp_path, rng, capsys):
    u = some_uids(60, rng)
    main_arr = structured(u, rng, blob=BLOB, ctf=CTF)
    pt_arr = structured(rng.permutation(u), rng, location=LOC)
    g = write_output(
        tmp_path,
        "J2",
        "particles",
        Dataset(main_arr),
        "particle",
        ["blob", "ctf"],
        passthrough=Dataset(pt_arr),
        validate=False,
    )
    out = tmp_path / "all.cs"
    assert main(["load", g.path, "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "J2.particles: 60 rows x 6 fields (blob, ctf, location)" in text
    assert f"wrote {out}" in text
    got = np.load(out)
    m = by_uid(pt_arr)
    rows = [m[int(x)] for x in main_arr["uid"]]
    for k in main_arr.dtype.names:
        np.testing.assert_array_equal(got[k], main_arr[k])
    for k in ("location/center_x_frac", "location/micrograph_uid"):
        np.testing.assert_array_equal(got[k], pt_arr[k][rows])

    assert main(["load", g.path, "--slots", "ctf", "-o", str(out)]) == 0
    got = np.load(out)
    assert got.dtype.names == ("uid", "ctf/df1_A")
    np.testing.assert_array_equal(got["ctf/df1_A"], main_arr["ctf/df1_A"])
    capsys.readouterr()

    assert main(["load", g.path, "--slots", "ctf", "--passthrough"]) == 0  # no -o: prints it
    text = capsys.readouterr().out
    assert "60 rows x 4 fields (ctf, location)" in text and "Dataset(60 rows, 4 fields)" in text

    newer = structured(u, rng, blob=BLOB, ctf=CTF)
    write_output(
        tmp_path,
        "J2",
        "particles",
        Dataset(newer),
        "particle",
        ["blob", "ctf"],
        version=4,
        validate=False,
    )
    for version, arr in ((None, newer), (0, main_arr)):
        opts = [] if version is None else ["--version", str(version)]
        assert main(["load", g.path, "--no-passthrough", "-o", str(out)] + opts) == 0
        got = np.load(out)
        assert got.dtype.names == main_arr.dtype.names
        np.testing.assert_array_equal(got["ctf/df1_A"], arr["ctf/df1_A"])
    capsys.readouterr()

    assert main(["load", g.path, "--slots", "map"]) == 1
    assert "csfast load: J2.particles has no result 'map'" in capsys.readouterr().err


def test_join_files(tmp_path, rng, capsys):
    u = some_uids(80, rng)
    a = structured(u[:60], rng, blob=BLOB)
    b = structured(rng.permutation(u[20:]), rng, ctf=CTF)
    pa, pb = save(tmp_path / "a.cs", a), save(tmp_path / "b.cs", b)
    out = tmp_path / "j.cs"
    assert main(["join", pa, pb, "-o", str(out)]) == 0
    assert f"40 rows x 4 fields (rows in: {pa} 60, {pb} 60)" in capsys.readouterr().out
    got = np.load(out)
    mb = by_uid(b)
    rows = [i for i, x in enumerate(a["uid"]) if int(x) in mb]
    np.testing.assert_array_equal(got["uid"], a["uid"][rows])
    np.testing.assert_array_equal(got["blob/path"], a["blob/path"][rows])
    np.testing.assert_array_equal(
        got["ctf/df1_A"], b["ctf/df1_A"][[mb[int(x)] for x in a["uid"][rows]]]
    )

    c = save(tmp_path / "c.cs", structured(some_uids(5, rng), rng, ctf=CTF))
    assert main(["join", pa, c, "-o", str(tmp_path / "none.cs")]) == 1
    assert "share no uid" in capsys.readouterr().err
    assert not (tmp_path / "none.cs").exists()


def test_append_files(tmp_path, rng, capsys):
    u = some_uids(50, rng)
    a = structured(u[:30], rng, blob=BLOB, ctf=CTF)
    b = structured(u[30:], rng, blob=BLOB)
    pa, pb = save(tmp_path / "a.cs", a), save(tmp_path / "b.cs", b)
    out = tmp_path / "ab.cs"
    assert main(["append", pa, pb, "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "appended 2 files" in text and "50 rows x 3 fields" in text
    assert "fields not in every file, left out: ctf/df1_A" in text
    got = np.load(out)
    for k in b.dtype.names:
        np.testing.assert_array_equal(got[k], np.concatenate([a[k], b[k]]))

    dup = save(tmp_path / "dup.cs", structured(u[25:35], rng, blob=BLOB))
    assert main(["append", pa, dup, "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("csfast append: ") and "repeat" in err
    assert main(["append", pa, dup, "--repeat-allowed", "-o", str(out)]) == 0
    np.testing.assert_array_equal(np.load(out)["uid"], np.concatenate([u[:30], u[25:35]]))


def test_demo(tmp_path, capsys):
    folder = tmp_path / "demo"
    assert main(["demo", "--rows", "3000", "--dir", str(folder), "--quiet"]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""  # no progress when not on a terminal
    text = captured.out
    for line in (
        "csfast demo: a cryo-EM job tree of 3,000 synthetic particles",
        "inp.override(0, 'blob', J2.particles.blob)",
        "input 'particles' needs at least 1 connection, has 0",
        "inp.override(0, 'map_half_A', J7.volume.map_half_A)",
        "J7/J7_map_half_A.mrc",
        f"csfast project {folder}",
        f"csfast load {folder}/J6 particles -o particles.cs",
        f"csfast load {folder}/J6 --input particles -o refinement_input.cs",
    ):
        assert line in text
    # A project folder: one folder per job, each with its job.json and .csg files.
    for job in ("J1", "J2", "J3", "J4", "J5", "J6", "J7", "J8", "J9"):
        names = set(os.listdir(folder / job))
        assert "job.json" in names, job
        assert any(n.startswith(f"{job}_") and n.endswith(".csg") for n in names), job
        assert json.loads((folder / job / "job.json").read_text())["uid"] == job
    assert {"J4_010_particles.cs", "J4_020_particles.cs"} <= set(os.listdir(folder / "J4"))
    assert {"J6_005_particles.cs", "J6_passthrough_particles.cs"} <= set(os.listdir(folder / "J6"))
    # The refinement's particles: J5's selection, with J2's full-size blob (numpy only).
    sel = np.load(folder / "J5" / "J5_000_particles_selected.cs")
    j2 = np.load(folder / "J2" / "J2_000_particles.cs")
    j6 = np.load(folder / "J6" / "J6_005_particles.cs")
    assert sorted(j6["uid"].tolist()) == sorted(sel["uid"].tolist())
    m = by_uid(j2)
    rows = [m[int(x)] for x in j6["uid"]]
    np.testing.assert_array_equal(j6["blob/path"], j2["blob/path"][rows])
    assert (j6["blob/shape"] == 256).all()
    # and the group reads back as the union of its files
    g = ResultGroup.from_csg(folder / "J6" / "J6_particles.csg")
    ds = g.load()
    pt = np.load(folder / "J6" / "J6_passthrough_particles.cs")
    assert len(ds) == len(j6)
    assert set(ds.fields()) == set(j6.dtype.names) | set(pt.dtype.names)
    assert f"{len(j6):,} rows x {len(ds.fields())} fields" in text


def test_demo_reads_back_as_a_project(tmp_path, capsys):
    """Every job's input, assembled from its job.json, is what the job read."""
    folder = tmp_path / "demo"
    assert main(["demo", "--rows", "2000", "--dir", str(folder), "--quiet"]) == 0
    capsys.readouterr()
    project = Project(folder)
    assert project.jobs() == [f"J{i}" for i in range(1, 10)]
    for uid in project.jobs():
        for name, inp in project.job(uid).inputs.items():
            assert inp.check() == [], (uid, name)
    # J6 read J5's selection with the blob of J2 (numpy only): its output's passthrough
    # file holds exactly the carried results of those rows.
    got = project.job("J6").inputs["particles"].load()
    sel = np.load(folder / "J5" / "J5_000_particles_selected.cs")
    sel_pt = np.load(folder / "J5" / "J5_passthrough_particles_selected.cs")
    j2 = np.load(folder / "J2" / "J2_000_particles.cs")
    assert sorted(np.asarray(got["uid"]).tolist()) == sorted(sel["uid"].tolist())
    rows_j2 = [by_uid(j2)[int(u)] for u in np.asarray(got["uid"])]
    np.testing.assert_array_equal(got["blob/path"], j2["blob/path"][rows_j2])
    rows_pt = [by_uid(sel_pt)[int(u)] for u in np.asarray(got["uid"])]
    np.testing.assert_array_equal(got["ctf/df1_A"], sel_pt["ctf/df1_A"][rows_pt])
    rows_sel = [by_uid(sel)[int(u)] for u in np.asarray(got["uid"])]
    np.testing.assert_array_equal(got["alignments2D/pose"], sel["alignments2D/pose"][rows_sel])
    assert sorted(got.prefixes()) == ["alignments2D", "blob", "ctf", "location", "pick_stats"]
    # J9: one volume, half maps from J7 and J8, the uid of J6's volume.
    vol = project.job("J9").inputs["volume"].load()
    j6v = np.load(folder / "J6" / "J6_005_volume.cs")
    assert vol["uid"].tolist() == j6v["uid"].tolist()
    assert list(vol.decode("map_half_B/path")) == ["J8/J8_map_half_B.mrc"]
    assert main(["project", str(folder)]) == 0
    listing = capsys.readouterr().out
    assert (
        "<- J5.particles_selected; blob <- J2.particles.blob; + alignments2D, location, "
        "pick_stats" in listing
    )
