"""RELION STAR: the written file read back by starfile and checked field by field
against values computed here independently (scipy for the angles)."""

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import csfast
from csfast import StarWarning, from_star, to_star
from csfast.synthetic import particles

starfile = pytest.importorskip("starfile")
Rotation = pytest.importorskip("scipy.spatial.transform").Rotation

MAPPED = {
    "blob/idx",
    "blob/path",
    "blob/psize_A",
    "blob/shape",
    "ctf/accel_kv",
    "ctf/cs_mm",
    "ctf/amp_contrast",
    "ctf/exp_group_id",
    "ctf/df1_A",
    "ctf/df2_A",
    "ctf/df_angle_rad",
    "ctf/phase_shift_rad",
    "ctf/bfactor",
    "ctf/scale",
    "location/micrograph_path",
    "location/center_x_frac",
    "location/center_y_frac",
    "location/micrograph_shape",
    "alignments3D/pose",
    "alignments3D/shift",
    "alignments3D/psize_A",
    "alignments3D/class",
    "alignments3D/split",
    "ctf/tilt_A",
    "ctf/anisomag",
}


def refinement(n: int = 400, seed: int = 0, exported: bool = False) -> csfast.Dataset:
    """A refinement-like particle table with per-group optics held constant."""
    ds = particles(n, results=("blob", "ctf", "location", "alignments3D"), seed=seed, classes=4)
    rng = np.random.default_rng(seed)
    ds["blob/psize_A"] = np.float32(1.06)
    ds["alignments3D/psize_A"] = np.float32(1.06)
    ds["ctf/accel_kv"] = np.float32(300)
    ds["ctf/cs_mm"] = np.float32(2.7)
    ds["ctf/amp_contrast"] = np.float32(0.07)
    ds["ctf/df_angle_rad"] = rng.uniform(-np.pi, np.pi, n).astype(np.float32)
    ds["ctf/phase_shift_rad"] = rng.uniform(0, np.pi, n).astype(np.float32)
    ds["location/micrograph_shape"] = np.array([3838, 3710], dtype=np.uint32)
    # Beam tilt and anisotropic magnification: per exposure group, as cryoSPARC refines them.
    group = ds["ctf/exp_group_id"].astype(np.float32)[:, None]
    ds["ctf/tilt_A"] = (group * np.float32([130.5, -71.25])).astype(np.float32)
    ds["ctf/anisomag"] = (group * np.float32([0.0031, -0.0007, 0.0009, -0.0042])).astype(np.float32)
    if exported:
        ds["blob/path"] = np.char.add(b">", ds["blob/path"])
    return ds


def f32(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float64).astype(np.float32)


def test_particles_table_matches_independent_values(tmp_path):
    ds = refinement(exported=True)
    left = to_star(ds, tmp_path / "p.star")
    assert set(left) == set(ds.fields()) - MAPPED  # every other field reported
    assert "uid" in left and "alignments3D/error" in left
    blocks = starfile.read(tmp_path / "p.star", always_dict=True)
    assert set(blocks) == {"optics", "particles"}
    p, o = blocks["particles"], blocks["optics"]
    assert len(p) == len(ds)
    names = [
        f"{i + 1:06d}@{s.decode()[1:]}"
        for i, s in zip(ds["blob/idx"].tolist(), ds["blob/path"].tolist(), strict=True)
    ]
    assert p["rlnImageName"].tolist() == names
    assert p["rlnMicrographName"].tolist() == [
        s.decode() for s in ds["location/micrograph_path"].tolist()
    ]
    assert np.array_equal(f32(p["rlnDefocusU"]), ds["ctf/df1_A"])
    assert np.array_equal(f32(p["rlnDefocusV"]), ds["ctf/df2_A"])
    assert np.array_equal(
        f32(p["rlnDefocusAngle"]), f32([np.degrees(float(x)) for x in ds["ctf/df_angle_rad"]])
    )
    assert np.array_equal(
        f32(p["rlnPhaseShift"]), f32([np.degrees(float(x)) for x in ds["ctf/phase_shift_rad"]])
    )
    assert np.array_equal(f32(p["rlnCtfBfactor"]), ds["ctf/bfactor"])
    assert np.array_equal(f32(p["rlnCtfScalefactor"]), ds["ctf/scale"])
    x = ds["location/center_x_frac"].astype(np.float64) * 3710
    y = (1 - ds["location/center_y_frac"].astype(np.float64)) * 3838
    assert np.array_equal(f32(p["rlnCoordinateX"]), f32(x))
    assert np.array_equal(f32(p["rlnCoordinateY"]), f32(y))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Gimbal lock detected")
        euler = Rotation.from_rotvec(ds["alignments3D/pose"].astype(np.float64)).as_euler(
            "ZYZ", degrees=True
        )
    got = np.stack([p["rlnAngleRot"], p["rlnAngleTilt"], p["rlnAnglePsi"]], axis=1)
    assert np.abs((got - euler + 180) % 360 - 180).max() < 1e-4
    shift = ds["alignments3D/shift"].astype(np.float64) * 1.06
    assert np.allclose(p["rlnOriginXAngst"], f32(shift[:, 0] * np.float32(1.06) / 1.06))
    assert np.allclose(p["rlnOriginYAngst"], shift[:, 1], rtol=1e-6, atol=1e-6)
    assert p["rlnClassNumber"].tolist() == (ds["alignments3D/class"] + 1).tolist()
    assert p["rlnRandomSubset"].tolist() == (ds["alignments3D/split"] + 1).tolist()
    groups = sorted(set(ds["ctf/exp_group_id"].tolist()))
    assert p["rlnOpticsGroup"].tolist() == [
        groups.index(g) + 1 for g in ds["ctf/exp_group_id"].tolist()
    ]
    # optics: one row per group, values as given
    assert o["rlnOpticsGroup"].tolist() == list(range(1, len(groups) + 1))
    assert o["rlnOpticsGroupName"].tolist() == [f"exp_group_{g}" for g in groups]
    assert set(o["rlnVoltage"]) == {300} and set(o["rlnSphericalAberration"]) == {2.7}
    assert set(o["rlnAmplitudeContrast"]) == {0.07} and set(o["rlnImagePixelSize"]) == {1.06}
    assert set(o["rlnImageSize"]) == {256} and set(o["rlnImageDimensionality"]) == {2}


def test_star_round_trip(tmp_path):
    ds = refinement(n=300, seed=3)
    to_star(ds, tmp_path / "r.star")
    back = from_star(tmp_path / "r.star", micrograph_shape=(3838, 3710))
    assert set(back.fields()) == MAPPED | {"uid"}
    for name in MAPPED - {
        "alignments3D/pose",
        "location/center_y_frac",
        "location/center_x_frac",
        "alignments3D/shift",
    }:
        assert back[name].dtype == ds[name].dtype, name
        assert np.array_equal(back[name], ds[name]), name
    for name in ("location/center_x_frac", "location/center_y_frac", "alignments3D/shift"):
        assert np.allclose(back[name], ds[name], rtol=1e-6, atol=1e-6), name
    v, w = ds["alignments3D/pose"].astype(np.float64), back["alignments3D/pose"]
    assert (
        np.abs(Rotation.from_rotvec(v).as_matrix() - Rotation.from_rotvec(w).as_matrix()).max()
        < 1e-5
    )


def test_unmapped_star_labels_are_kept_and_written_back(tmp_path):
    text = """
data_optics

loop_
_rlnOpticsGroupName #1
_rlnOpticsGroup #2
_rlnVoltage #3
_rlnImagePixelSize #4
_rlnImageSize #5
_rlnMicrographOriginalPixelSize #6
opticsGroup1 1 300.0 1.1 128 0.55

data_particles

loop_
_rlnImageName #1
_rlnOpticsGroup #2
_rlnLogLikeliContribution #3
_rlnAnglePsi #4
_rlnOriginXAngst #5
_rlnOriginYAngst #6
_rlnGroupName #7
000003@Extract/job007/a.mrcs 1 12.5 90.0 2.2 -1.1 g1
000001@Extract/job007/b.mrcs 1 13.5 -45.0 0.0 1.1 g2
"""
    (tmp_path / "in.star").write_text(text)
    ds = from_star(tmp_path / "in.star")
    assert ds["blob/idx"].tolist() == [2, 0]
    assert ds["blob/path"].tolist() == [b"Extract/job007/a.mrcs", b"Extract/job007/b.mrcs"]
    assert ds["ctf/exp_group_id"].tolist() == [1, 1]
    assert np.allclose(ds["alignments2D/pose"], np.radians([90.0, -45.0]))
    assert np.allclose(ds["alignments2D/shift"], [[2.0, -1.0], [0.0, 1.0]])
    assert ds["star/rlnLogLikeliContribution"].tolist() == [12.5, 13.5]
    assert ds["star/rlnGroupName"].tolist() == [b"g1", b"g2"]
    assert ds["star/rlnMicrographOriginalPixelSize"].tolist() == [0.55, 0.55]
    left = to_star(ds, tmp_path / "out.star")
    assert left == ["uid"]
    p = starfile.read(tmp_path / "out.star", always_dict=True)["particles"]
    assert p["rlnLogLikeliContribution"].tolist() == [12.5, 13.5]
    assert p["rlnGroupName"].tolist() == ["g1", "g2"]
    assert np.allclose(p["rlnAnglePsi"], [90.0, -45.0], atol=1e-5)  # via float32 radians


def test_relion_30_single_table(tmp_path):
    text = """
data_

loop_
_rlnImageName #1
_rlnVoltage #2
_rlnDefocusU #3
_rlnClassNumber #4
_rlnAngleRot #5
_rlnAngleTilt #6
_rlnAnglePsi #7
000001@stack.mrcs 300 15000.5 2 0 0 0
000002@stack.mrcs 300 15001.5 1 10 90 -30
"""
    (tmp_path / "old.star").write_text(text)
    ds = from_star(tmp_path / "old.star")
    assert ds["ctf/accel_kv"].tolist() == [300, 300]
    assert ds["ctf/df1_A"].tolist() == [15000.5, 15001.5]
    assert ds["alignments3D/class"].tolist() == [1, 0]
    assert np.abs(ds["alignments3D/pose"][0]).max() == 0
    ref = Rotation.from_euler("ZYZ", [10, 90, -30], degrees=True).as_rotvec()
    assert np.allclose(ds["alignments3D/pose"][1], ref, atol=1e-6)


def test_varying_optics_are_reported(tmp_path):
    ds = refinement(n=50)
    ds["ctf/cs_mm"] = np.linspace(2.0, 3.0, 50).astype(np.float32)
    with pytest.warns(StarWarning) as caught:
        to_star(ds, tmp_path / "v.star")
    # Beam tilt in mrad depends on Cs, so it varies with it.
    assert sorted(str(w.message).split()[0] for w in caught) == ["ctf/cs_mm", "ctf/tilt_A"]
    assert all("varies within optics group" in str(w.message) for w in caught)


def test_alignments2d_and_no_flip(tmp_path):
    ds = particles(40, results=("blob", "location", "alignments2D"), seed=1)
    ds["location/micrograph_shape"] = np.array([1000, 2000], dtype=np.uint32)
    with pytest.warns(StarWarning):  # synthetic blob/psize_A varies row to row
        left = to_star(ds, tmp_path / "a.star", flip_y=False)
    assert "alignments2D/pose" not in left
    p = starfile.read(tmp_path / "a.star", always_dict=True)["particles"]
    assert "rlnAngleRot" not in p.columns
    assert np.array_equal(
        f32(p["rlnAnglePsi"]), f32(np.degrees(ds["alignments2D/pose"].astype(np.float64)))
    )
    assert np.array_equal(
        f32(p["rlnCoordinateY"]), f32(ds["location/center_y_frac"].astype(np.float64) * 1000)
    )


def test_empty_table(tmp_path):
    ds = refinement(n=0)
    to_star(ds, tmp_path / "e.star")
    back = from_star(tmp_path / "e.star")
    assert len(back) == 0


@settings(max_examples=15, deadline=None)
@given(st.integers(1, 60), st.integers(0, 2**16), st.booleans())
def test_star_round_trip_generated(tmp_path_factory, n, seed, exported):
    ds = refinement(n=n, seed=seed, exported=exported)
    path = tmp_path_factory.mktemp("star") / "g.star"
    to_star(ds, path)
    back = from_star(path, micrograph_shape=(3838, 3710))
    paths = [p[1:] if p.startswith(b">") else p for p in ds["blob/path"].tolist()]
    assert back["blob/path"].tolist() == paths
    for name in (
        "blob/idx",
        "ctf/df1_A",
        "ctf/exp_group_id",
        "alignments3D/class",
        "alignments3D/split",
        "ctf/df_angle_rad",
    ):
        assert np.array_equal(back[name], ds[name]), name
    v, w = ds["alignments3D/pose"].astype(np.float64), back["alignments3D/pose"]
    assert (
        np.abs(Rotation.from_rotvec(v).as_matrix() - Rotation.from_rotvec(w).as_matrix()).max()
        < 1e-5
    )


def test_fast_loop_reader_agrees_with_starfile(tmp_path):
    from csfast.convert.star import read_loops

    ds = refinement(n=200, seed=8, exported=True)
    to_star(ds, tmp_path / "a.star")
    (tmp_path / "b.star").write_text(
        "# comment\ndata_\n\nloop_\n_rlnImageName #1\n_rlnVoltage #2\n"
        "000001@s.mrcs 300\n# a comment row\n000002@s.mrcs 200\n"
    )
    (tmp_path / "c.star").write_text(
        "data_optics\n\nloop_\n_rlnOpticsGroup #1\n\ndata_particles\n\nloop_\n_rlnImageName #1\n"
    )
    for name in ("a.star", "b.star", "c.star"):
        ours = read_loops(tmp_path / name)
        ref = starfile.read(tmp_path / name, always_dict=True)
        assert set(ours) == set(ref), name
        for block, df in ref.items():
            assert list(ours[block].columns) == list(df.columns), name
            assert len(ours[block]) == len(df), name
            for c in df.columns:
                assert ours[block][c].tolist() == df[c].tolist(), (name, c)
    # key-value blocks and quoted values go to starfile
    (tmp_path / "kv.star").write_text("data_general\n\n_rlnFinalResolution 3.2\n")
    assert read_loops(tmp_path / "kv.star") is None
    (tmp_path / "q.star").write_text('data_\n\nloop_\n_rlnImageName #1\n"1@a b.mrcs"\n')
    assert read_loops(tmp_path / "q.star") is None
    assert from_star(tmp_path / "q.star")["blob/path"].tolist() == [b"a b.mrcs"]


@pytest.mark.parametrize(
    "row, message",
    [
        ("000000@a.mrcs\t100", "rlnImageName index row 1: 0 is not a whole number from 1 to"),
        ("000001@a.mrcs\tabc", "could not convert string to float: 'abc'"),
    ],
)
def test_bad_values_raise_format_errors_naming_the_file(tmp_path, row, message):
    path = tmp_path / "bad.star"
    path.write_text("data_particles\n\nloop_\n_rlnImageName #1\n_rlnDefocusU #2\n" + row + "\n")
    with pytest.raises(csfast.CsFormatError, match=message) as err:
        from_star(path)
    assert str(path) in str(err.value)


_OPTICS = "data_optics\n\nloop_\n_rlnOpticsGroup #1\n_rlnVoltage #2\n1 300\n\n"
_PARTICLES = "data_particles\n\nloop_\n_rlnImageName #1\n_rlnOpticsGroup #2\n_rlnClassNumber #3\n"


@pytest.mark.parametrize(
    "text, message",
    [
        (
            "data_optics\n\nloop_\n_rlnVoltage #1\n300\n\n" + _PARTICLES + "000001@a.mrcs 1 1\n",
            "data_optics has no rlnOpticsGroup column",
        ),
        (
            _OPTICS + "data_particles\n\nloop_\n_rlnImageName #1\n_rlnImageName #2\n"
            "000001@a.mrcs 000002@a.mrcs\n",
            r"data_particles names labels \['rlnImageName'\] twice",
        ),
        (
            _OPTICS + "data_particles\n\nloop_\n_rlnImageName #1\n_rlnImageName #2\n"
            "'000001@a b.mrcs' 000002@a.mrcs\n",
            r"data_particles names labels \['rlnImageName'\]",
        ),
        (
            _OPTICS.replace("1 300\n", "1 300\n1 200\n") + _PARTICLES + "000001@a.mrcs 1 1\n",
            "data_optics lists optics group 1 twice",
        ),
        (
            _OPTICS + _PARTICLES + "4294967297@a.mrcs 1 1\n",
            "rlnImageName index row 1: 4294967297 is not a whole number from 1 to 4294967296",
        ),
        (
            _OPTICS + _PARTICLES + "000001@a.mrcs 1 2\n000001@a.mrcs 1 1.5\n",
            "rlnClassNumber row 2: 1.5 is not a whole number",
        ),
        (
            _OPTICS + _PARTICLES + "000001@a.mrcs 1 4294967297\n",
            "rlnClassNumber row 1: 4294967297 is not",
        ),
        (
            _OPTICS.replace("1 300", "4294967296 300")
            + _PARTICLES
            + "000001@a.mrcs 4294967296 1\n",
            "rlnOpticsGroup row 1: 4294967296 is not a whole number from 0 to 4294967295",
        ),
        (
            "data_optics\n\nloop_\n_rlnOpticsGroup #1\n_rlnOpticsGroupName #2\n"
            "1 exp_group_99999999999\n\n" + _PARTICLES + "000001@a.mrcs 1 1\n",
            "rlnOpticsGroupName row 1: 99999999999",
        ),
        (
            "data_optics\n\nloop_\n_rlnOpticsGroup #1\n_rlnImageSize #2\n1 -3\n\n"
            + _PARTICLES
            + "000001@a.mrcs 1 1\n",
            "rlnImageSize row 1: -3 is not",
        ),
    ],
    ids=[
        "optics-without-group",
        "labels-twice",
        "labels-twice-quoted",
        "optics-row-twice",
        "index-wraps",
        "class-fraction",
        "class-wraps",
        "group-wraps",
        "group-name-wraps",
        "negative-size",
    ],
)
def test_broken_tables_and_wrapping_integers_raise_format_errors(tmp_path, text, message):
    path = tmp_path / "bad.star"
    path.write_text(text)
    with pytest.raises(csfast.CsFormatError, match=message) as err:
        from_star(path)
    assert str(path) in str(err.value)
    # The largest values that fit are read exactly.
    path.write_text(_OPTICS + _PARTICLES + "4294967296@a.mrcs 1 4294967296\n")
    ds = from_star(path)
    assert ds["blob/idx"].tolist() == [2**32 - 1]
    assert ds["alignments3D/class"].tolist() == [2**32 - 1]


def test_string_bomb_is_refused(tmp_path):
    # 400k rows, one of them naming a 60 kB stack: 24 GB as a fixed-width column
    # from a 6 MB file.
    path = tmp_path / "bomb.star"
    rows = ["000001@a.mrcs 1 1\n"] * 400_000 + ["000001@" + "b" * 60_000 + " 1 1\n"]
    path.write_text(_OPTICS + _PARTICLES + "".join(rows))
    with pytest.raises(csfast.CsFormatError, match=f"{path}: field 'blob/path'.*would take"):
        from_star(path)


def chunking_table(tmp_path, n: int = 300) -> csfast.Dataset:
    """A lazy (mapped, reordered) refinement table whose optics groups
    interleave, so every chunk size below n splits groups; a text column whose
    values with a space or empty (quoted) come only in its last rows; optics
    that vary within a group only at later rows."""
    ds = refinement(n=n, seed=5)
    rng = np.random.default_rng(5)
    group = rng.integers(3, 9, n).astype(np.uint32)
    ds["ctf/exp_group_id"] = group
    ds["ctf/tilt_A"] = (group.astype(np.float32)[:, None] * np.float32([130.5, -71.25])).astype(
        np.float32
    )
    note = np.full(n, b"plain", dtype="S12")
    if n > 10:
        note[-3:] = [b"two words", b"", b"x y z"]
        ds["ctf/accel_kv"][n - 20] = 200  # varies: one row late in the table
        ds["ctf/cs_mm"][[n - 30, n - 5]] = 2.0  # two rows, in different chunks
    ds["star/rlnNote"] = note
    path = tmp_path / f"chunking{n}.cs"
    ds.save(path)
    order = np.random.default_rng(6).permutation(n)
    return csfast.Dataset.load(path).take(order)  # lazy: rows gathered per chunk


def star_bytes(ds, path, **options):
    """The written file without starfile's banner (it holds the time), and the warnings."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        to_star(ds, path, **options)
    return path.read_bytes().split(b"\n", 1)[1], [str(w.message) for w in caught]


@pytest.mark.parametrize("arrow", [True, False], ids=["pyarrow", "starfile"])
@pytest.mark.parametrize("n", [0, 1, 300])
def test_chunked_file_equals_the_whole_table_file(tmp_path, monkeypatch, n, arrow):
    ds = chunking_table(tmp_path, n)
    if not arrow:  # starfile's writer, as where pyarrow is not installed
        for module in ("pyarrow", "pyarrow.compute", "pyarrow.csv"):
            monkeypatch.setitem(__import__("sys").modules, module, None)
    whole = star_bytes(ds, tmp_path / "whole.star", rows_per_chunk=max(n, 1))
    assert whole[0].count(b"\n") > n  # a row per line
    for rows in sorted({1, 2, 7, 64, max(n - 1, 1)}):
        if n > 10:  # every chunk size splits optics groups: a group in two chunks
            group = ds["ctf/exp_group_id"]
            assert np.isin(group[:rows], group[rows:]).any()
        assert star_bytes(ds, tmp_path / f"c{rows}.star", rows_per_chunk=rows) == whole, rows
    assert star_bytes(ds, tmp_path / "default.star") == whole


def test_chunked_file_reads_back_the_input_values(tmp_path):
    ds = chunking_table(tmp_path)
    with pytest.warns(StarWarning):
        to_star(ds, tmp_path / "c.star", rows_per_chunk=7)
    back = from_star(tmp_path / "c.star", micrograph_shape=(3838, 3710))
    ref = ds.materialize()
    for name in (
        "blob/idx",
        "ctf/df1_A",
        "ctf/df2_A",
        "ctf/df_angle_rad",
        "ctf/phase_shift_rad",
        "ctf/exp_group_id",
        "alignments3D/class",
        "alignments3D/split",
    ):
        assert back[name].dtype == ref[name].dtype, name
        assert np.array_equal(back[name], ref[name]), name  # float32 exact
    assert back["blob/path"].tolist() == ref["blob/path"].tolist()
    # Quoted values (a space, or empty) only in the last chunk, read back as they were.
    assert back["star/rlnNote"].tolist() == ref["star/rlnNote"].tolist()
    # Optics: each group's first row's value (numpy, brute force).
    o = starfile.read(tmp_path / "c.star", always_dict=True)["optics"]
    group = ref["ctf/exp_group_id"]
    for g, voltage in zip(o["rlnOpticsGroupName"], o["rlnVoltage"], strict=True):
        first = int(np.flatnonzero(group == int(g.removeprefix("exp_group_")))[0])
        assert voltage == ref["ctf/accel_kv"][first]


def test_chunked_warning_once_per_field_for_later_chunks(tmp_path):
    ds = chunking_table(tmp_path)
    ref = ds.materialize()
    group = ref["ctf/exp_group_id"]
    ids = np.unique(group)
    expected = []
    for field in ("ctf/accel_kv", "ctf/cs_mm"):  # brute force: rows unlike their group's first
        v = ref[field]
        differ = [
            i for i in range(len(ref)) if v[i] != v[int(np.flatnonzero(group == group[i])[0])]
        ]
        assert differ and differ[0] > 7  # past the first chunk
        g = int(np.searchsorted(ids, group[differ[0]]))
        expected.append(
            f"{field} varies within optics group {g + 1} (exp_group_{ids[g]}); RELION holds "
            f"one value per group, the group's first is written ({len(differ)} rows differ)"
        )
    for rows in (7, 64, len(ref)):
        _, caught = star_bytes(ds, tmp_path / "w.star", rows_per_chunk=rows)
        # tilt_A in mrad depends on Cs: it varies where Cs does (one warning for two labels)
        assert caught[:2] == expected and len(caught) == 3, rows
        assert caught[2].startswith("ctf/tilt_A varies within optics group")


def test_bad_chunk_size_is_refused(tmp_path):
    with pytest.raises(csfast.errors.CsArgumentError, match="rows_per_chunk"):
        to_star(refinement(n=5), tmp_path / "x.star", rows_per_chunk=0)
