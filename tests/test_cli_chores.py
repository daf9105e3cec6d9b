"""The daily chores (union, append --dedupe, filter, fields, split, sets, info and
convert of a .csg, STAR export options), run through the installed `csfast`
command on files numpy wrote, outputs checked with numpy against references
computed with numpy and plain Python."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from csfast import Dataset, write_output

CSFAST = shutil.which("csfast", path=os.path.dirname(sys.executable)) or shutil.which("csfast")
pytestmark = pytest.mark.skipif(CSFAST is None, reason="the csfast command is not installed")

MICROGRAPHS = [
    b"J1/mic_001.mrc",
    b"J1/mic 002.mrc",
    "J1/\u00fcn\u00efcode.mrc".encode(),
    b"J1/../up.mrc",
    b">J2/exported/mic.mrc",
    b"",
    b"J1/mic,comma.mrc",
    b"J1/mic_001.mrc/",
]
CLASSES = 3  # alignments_class_<k> results, as a 3D classification writes


def table(uids: np.ndarray, rng: np.random.Generator, classes: int = CLASSES) -> np.ndarray:
    """A particle table built by numpy alone: strings, sub-arrays, per-class results."""
    n = len(uids)
    descr = [
        ("uid", "<u8"),
        ("blob/path", "S24"),
        ("blob/idx", "<u4"),
        ("blob/shape", "<u4", (2,)),
        ("ctf/df1_A", "<f4"),
        ("ctf/tilt_A", "<f4", (2,)),
        ("alignments3D/class", "<u4"),
        ("location/micrograph_path", "S40"),
    ]
    descr += [
        (f"alignments_class_{k}/{f}", "<f4")
        for k in range(classes)
        for f in ("class_posterior", "error")
    ]
    a = np.zeros(n, dtype=descr)
    a["uid"] = uids
    a["blob/path"] = rng.choice([b"J5/stack_a.mrc", b"J5/stack_b.mrc", b"J5/stack_c.mrc"], n)
    a["blob/idx"] = rng.integers(0, 40, n)
    a["blob/shape"] = 128
    a["ctf/df1_A"] = rng.uniform(10000, 40000, n)
    a["ctf/tilt_A"] = rng.normal(0, 50, (n, 2))
    a["alignments3D/class"] = rng.integers(0, 5, n)
    a["location/micrograph_path"] = rng.choice(np.array(MICROGRAPHS, dtype="S40"), n)
    for k in range(classes):
        a[f"alignments_class_{k}/class_posterior"] = rng.uniform(0, 1, n)
        a[f"alignments_class_{k}/error"] = rng.normal(0, 1, n)
    return a


def save(path: Path, arr: np.ndarray) -> str:
    with open(path, "wb") as f:
        np.save(f, arr)
    return str(path)


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([CSFAST, *args], capture_output=True, text=True, cwd=cwd, timeout=300)


def run_all(argvs: list[list[str]]) -> list[subprocess.CompletedProcess]:
    """Several csfast commands at once (each pays the interpreter's start-up)."""
    procs = [
        subprocess.Popen([CSFAST, *a], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for a in argvs
    ]
    out = []
    for a, p in zip(argvs, procs, strict=True):
        stdout, stderr = p.communicate(timeout=300)
        out.append(subprocess.CompletedProcess([CSFAST, *a], p.returncode, stdout, stderr))
    return out


def ok(*args: str) -> str:
    r = run(*args)
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""  # not a terminal: no progress display, no warnings
    return r.stdout


def load(path) -> np.ndarray:
    return np.load(path, allow_pickle=False)


def assert_rows(got: np.ndarray, ref: np.ndarray) -> None:
    """Same field names, values and (but for string widths) dtypes, in order."""
    assert got.dtype.names == ref.dtype.names
    assert len(got) == len(ref)
    for k in ref.dtype.names:
        g, r = got.dtype[k], ref.dtype[k]
        assert g.kind == r.kind or (g.subdtype and g.base == r.base), k
        if g.base.kind != "S":
            assert g == r, k
        np.testing.assert_array_equal(got[k], ref[k], err_msg=k)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A: 600 rows. B: 400 rows, 250 of them A's uids (other values), 150 new, with
    an extra result. C: B's particles (same images) under new uids."""
    d = tmp_path_factory.mktemp("chores")
    rng = np.random.default_rng(7)
    uids = rng.permutation(np.unique(rng.integers(0, 2**64, 2000, dtype=np.uint64)))
    uids[:2] = [2**64 - 1, 2**63]  # the top of the range joins like any uid
    a = table(uids[:600], rng)
    shared = rng.choice(uids[:600], 250, replace=False)
    b0 = table(np.concatenate([shared, uids[600:750]]), rng)
    b0 = b0[rng.permutation(len(b0))]
    extra = np.zeros(len(b0), dtype=b0.dtype.descr + [("pick_stats/ncc_score", "<f4")])
    for k in b0.dtype.names:
        extra[k] = b0[k]
    extra["pick_stats/ncc_score"] = rng.uniform(0, 1, len(b0))
    c = extra.copy()
    c["uid"] = uids[1000 : 1000 + len(c)]
    return {
        "dir": d,
        "A": save(d / "A.cs", a),
        "B": save(d / "B.cs", extra),
        "C": save(d / "C.cs", c),
        "a": a,
        "b": extra,
        "c": c,
    }


# ------------------------------------------------------------------ union


def test_union_and_append_dedupe(files, tmp_path):
    a, b = files["a"], files["b"]
    out = tmp_path / "u.cs"
    text = ok("union", files["A"], files["B"], "-o", str(out))
    # Reference: first occurrence of each uid over A's rows then B's, fields of both.
    seen: set[int] = set()
    rows = []
    for which, arr in (("a", a), ("b", b)):
        for i, u in enumerate(arr["uid"].tolist()):
            if u not in seen:
                seen.add(u)
                rows.append((which, i))
    ref = np.zeros(len(rows), dtype=a.dtype)
    for k in a.dtype.names:
        ref[k] = [(a if w == "a" else b)[k][i] for w, i in rows]
    assert_rows(load(out), ref)
    assert f"{len(rows):,} rows from 1,000" in text and "250 repeats dropped" in text
    assert "pick_stats/ncc_score" in text  # the field only B has is named as left out

    out2 = tmp_path / "d.cs"
    ok("append", "--dedupe", files["A"], files["B"], "-o", str(out2))
    assert out2.read_bytes() == out.read_bytes()


# ------------------------------------------------------------------ filter


def test_filter_conditions_against_numpy(files, tmp_path):
    a = files["a"]
    mic = MICROGRAPHS[1].decode()
    cases = [
        (
            ["alignments3D/class in 0,3", "ctf/df1_A < 30000"],
            np.isin(a["alignments3D/class"], [0, 3]) & (a["ctf/df1_A"] < 30000),
        ),
        (["alignments3D/class not in 1, 2,4"], ~np.isin(a["alignments3D/class"], [1, 2, 4])),
        ([f"location/micrograph_path == {mic}"], a["location/micrograph_path"] == mic.encode()),
        (
            ['location/micrograph_path in "J1/mic,comma.mrc","J1/mic 002.mrc"'],
            np.isin(a["location/micrograph_path"], [b"J1/mic,comma.mrc", b"J1/mic 002.mrc"]),
        ),
        (['location/micrograph_path == ""'], a["location/micrograph_path"] == b""),
        # strings order as UTF-8 bytes: u-umlaut (0xc3 0xbc) sorts after every ASCII letter
        (
            ["location/micrograph_path>=J1/z"],
            np.array([p >= b"J1/z" for p in a["location/micrograph_path"].tolist()]),
        ),
        (
            [f"uid != {2**64 - 1}", "blob/idx <= 20", "ctf/df1_A >= 25000.5"],
            (a["uid"] != np.uint64(2**64 - 1))
            & (a["blob/idx"] <= 20)
            & (a["ctf/df1_A"] >= np.float32(25000.5)),
        ),
        (
            [f"uid in {2**64 - 1},{2**63},5"],
            np.isin(a["uid"], np.array([2**64 - 1, 2**63], dtype=np.uint64)),
        ),
        (["alignments3D/class > -1", "blob/idx < 99999999999"], np.ones(len(a), bool)),
    ]
    argvs = [
        ["filter", files["A"], "-o", str(tmp_path / f"f{i}.cs")]
        + [x for w in where for x in ("--where", w)]
        for i, (where, _) in enumerate(cases)
    ]
    for i, ((_, mask), r) in enumerate(zip(cases, run_all(argvs), strict=True)):
        assert r.returncode == 0, (argvs[i], r.stderr)
        assert_rows(load(tmp_path / f"f{i}.cs"), a[mask])
        assert f"kept {mask.sum():,} of {len(a):,} rows" in r.stdout


def test_filter_uid_lists_and_invert(files, tmp_path):
    a, b = files["a"], files["b"]
    listed = b["uid"][::2]
    np.save(tmp_path / "u.npy", listed)
    np.save(tmp_path / "u32.npy", np.arange(3, dtype=np.int32))  # small ints: no match
    (tmp_path / "u.txt").write_text(
        "# uids to keep\n" + "\n".join(map(str, listed.tolist())) + "\n\n"
    )
    argvs = [
        ["filter", files["A"], "--uids", str(tmp_path / "u.npy"), "-o", str(tmp_path / "n.cs")],
        ["filter", files["A"], "--uids", str(tmp_path / "u.txt"), "-o", str(tmp_path / "t.cs")],
        ["filter", files["A"], "--uids", files["B"], "-o", str(tmp_path / "c.cs")],
        [
            "filter",
            files["A"],
            "--uids",
            str(tmp_path / "u.npy"),
            "--invert",
            "--where",
            "alignments3D/class == 2",
            "-o",
            str(tmp_path / "i.cs"),
        ],
        ["filter", files["A"], "--uids", str(tmp_path / "u32.npy"), "-o", str(tmp_path / "z.cs")],
    ]
    for r in run_all(argvs):
        assert r.returncode == 0, r.stderr
    inlist = np.isin(a["uid"], listed)
    assert_rows(load(tmp_path / "n.cs"), a[inlist])
    assert_rows(load(tmp_path / "t.cs"), a[inlist])
    assert_rows(load(tmp_path / "c.cs"), a[np.isin(a["uid"], b["uid"])])
    assert_rows(load(tmp_path / "i.cs"), a[~(inlist & (a["alignments3D/class"] == 2))])
    assert len(load(tmp_path / "z.cs")) == 0


# ------------------------------------------------------------------ fields


def test_fields_keep_and_drop_patterns(files, tmp_path):
    a = files["a"]
    names = a.dtype.names
    cases = [
        (["--keep", "blob,ctf"], [n for n in names if n == "uid" or n[:4] in ("blob", "ctf/")]),
        (["--drop", "alignments_class_*"], [n for n in names if "alignments_class_" not in n]),
        (
            ["--keep", "blob", "--keep", "*/class_posterior", "--drop", "blob/shape"],
            [
                n
                for n in names
                if n == "uid" or n in ("blob/path", "blob/idx") or n.endswith("/class_posterior")
            ],
        ),
        (["--keep", "ctf/tilt_A"], ["uid", "ctf/tilt_A"]),
    ]
    argvs = [
        ["fields", files["A"], "-o", str(tmp_path / f"k{i}.cs"), *opts]
        for i, (opts, _) in enumerate(cases)
    ]
    for i, ((_, kept), r) in enumerate(zip(cases, run_all(argvs), strict=True)):
        assert r.returncode == 0, r.stderr
        got = load(tmp_path / f"k{i}.cs")
        assert_rows(got, a[kept])
        assert f"kept {len(kept)} of {len(names)} fields" in r.stdout


def test_fields_opens_a_header_numpy_refuses(tmp_path):
    """400 classes: a header over numpy's default 10,000-byte limit."""
    rng = np.random.default_rng(3)
    big = table(np.arange(1, 51, dtype=np.uint64), rng, classes=400)
    src = save(tmp_path / "big.cs", big)
    with pytest.raises(ValueError, match="[Hh]eader"):
        np.load(src)
    ok("fields", src, "--drop", "alignments_class_*", "-o", str(tmp_path / "small.cs"))
    small = np.load(tmp_path / "small.cs")  # default limit: opens now
    kept = [n for n in big.dtype.names if not n.startswith("alignments_class_")]
    assert_rows(small, big[kept])


# ------------------------------------------------------------------- split


def test_split_by_string_values(files, tmp_path):
    a = files["a"]
    out = tmp_path / "parts"
    text = ok("split", files["A"], "--by", "location/micrograph_path", "-o", str(out))
    manifest = json.loads((out / "A_split.json").read_text())
    order = list(dict.fromkeys(a["location/micrograph_path"].tolist()))  # first appearance
    assert [p["value"] for p in manifest["parts"]] == [v.decode() for v in order]
    assert sorted(os.listdir(out)) == sorted(
        [p["file"] for p in manifest["parts"]] + ["A_split.json"]
    )
    for k, (value, part) in enumerate(zip(order, manifest["parts"], strict=True), 1):
        name = part["file"]
        assert name.startswith(f"A_{k:03d}_") and name.endswith(".cs")
        assert all(ch.isascii() and (ch.isalnum() or ch in "._-") for ch in name)
        assert not name.startswith(".") and ".." not in name
        ref = a[a["location/micrograph_path"] == value]
        assert_rows(load(out / name), ref)
        assert part["rows"] == len(ref)
        assert f"{name}" in text
    assert f"wrote {len(order)} files ({len(a):,} rows)" in text


def test_split_by_number_and_batches(files, tmp_path):
    a = files["a"]
    argvs = [
        ["split", files["A"], "--by", "alignments3D/class", "-o", str(tmp_path / "c")],
        ["split", files["A"], "--batches", "7", "-o", str(tmp_path / "b")],
        ["split", files["A"], "--batches", "7", "--random", "42", "-o", str(tmp_path / "r")],
    ]
    for r in run_all(argvs):
        assert r.returncode == 0, r.stderr
    classes = list(dict.fromkeys(a["alignments3D/class"].tolist()))
    for k, c in enumerate(classes, 1):
        assert_rows(load(tmp_path / "c" / f"A_{k:03d}_{c}.cs"), a[a["alignments3D/class"] == c])
    consecutive = np.array_split(np.arange(len(a)), 7)
    dealt = np.array_split(np.random.default_rng(42).permutation(len(a)), 7)
    for k in range(7):
        assert_rows(load(tmp_path / "b" / f"A_batch_{k + 1:03d}.cs"), a[consecutive[k]])
        assert_rows(load(tmp_path / "r" / f"A_batch_{k + 1:03d}.cs"), a[np.sort(dealt[k])])


# -------------------------------------------------------------------- sets


def test_sets_by_uid(files, tmp_path):
    a, b = files["a"], files["b"]
    out = tmp_path / "s"
    text = ok("sets", files["A"], files["B"], "--both", "-o", str(out))
    assert sorted(os.listdir(out)) == [
        "A_minus_B.cs",
        "B_minus_A.cs",
        "intersect_A.cs",
        "intersect_B.cs",
    ]
    a_in_b = np.array([u in set(b["uid"].tolist()) for u in a["uid"].tolist()])
    b_in_a = np.array([u in set(a["uid"].tolist()) for u in b["uid"].tolist()])
    assert_rows(load(out / "intersect_A.cs"), a[a_in_b])
    assert_rows(load(out / "intersect_B.cs"), b[b_in_a])  # B's columns: pick_stats too
    assert_rows(load(out / "A_minus_B.cs"), a[~a_in_b])
    assert_rows(load(out / "B_minus_A.cs"), b[~b_in_a])
    counts = {
        line.split()[0]: int(line.split()[1].replace(",", ""))
        for line in text.splitlines()
        if line.startswith("  ")
    }
    assert counts == {
        "intersect_A.cs": a_in_b.sum(),
        "intersect_B.cs": b_in_a.sum(),
        "A_minus_B.cs": (~a_in_b).sum(),
        "B_minus_A.cs": (~b_in_a).sum(),
    }

    ok("sets", files["A"], files["B"], "--subtract", "-o", str(tmp_path / "sub"))
    assert sorted(os.listdir(tmp_path / "sub")) == ["A_minus_B.cs", "B_minus_A.cs"]


def test_sets_by_image_location(files, tmp_path):
    """C holds B's images under other uids: matching on uid finds nothing, matching on
    blob/path + blob/idx finds what a set of (path, idx) pairs finds."""
    b, c = files["b"], files["c"]
    a = files["a"]
    ok(
        "sets",
        files["A"],
        files["C"],
        "--intersect",
        "--on",
        "blob/path,blob/idx",
        "-o",
        str(tmp_path / "loc"),
    )
    ok("sets", files["A"], files["C"], "--intersect", "-o", str(tmp_path / "uid"))
    keys_c = set(zip(c["blob/path"].tolist(), c["blob/idx"].tolist(), strict=True))
    keys_a = set(zip(a["blob/path"].tolist(), a["blob/idx"].tolist(), strict=True))
    in_c = np.array(
        [k in keys_c for k in zip(a["blob/path"].tolist(), a["blob/idx"].tolist(), strict=True)]
    )
    in_a = np.array(
        [k in keys_a for k in zip(c["blob/path"].tolist(), c["blob/idx"].tolist(), strict=True)]
    )
    assert 0 < in_c.sum() < len(a)
    assert_rows(load(tmp_path / "loc" / "intersect_A.cs"), a[in_c])
    assert_rows(load(tmp_path / "loc" / "intersect_B.cs"), c[in_a])
    assert len(load(tmp_path / "uid" / "intersect_A.cs")) == 0
    assert len(b) == len(c) and not np.isin(c["uid"], b["uid"]).any()


# ------------------------------------------------------- .csg info, convert


def test_info_and_convert_of_a_group(files, tmp_path):
    a = files["a"]
    ds = Dataset.load(files["A"])
    # A generated table holds a few fields of each result, not every field cryoSPARC's
    # types require: validate=False.
    write_output(
        tmp_path,
        "J9",
        "particles",
        ds,
        "particle",
        ["ctf", "alignments3D"],
        passthrough=ds,
        version=1,
        validate=False,
    )
    g = write_output(
        tmp_path,
        "J9",
        "particles",
        ds,
        "particle",
        ["ctf", "alignments3D"],
        passthrough=ds,
        version=2,
        validate=False,
    )
    text = ok("info", g.path)
    assert "group J9.particles (particle), 600 items" in text
    for name in ("ctf", "alignments3D", "blob", "location", "alignments_class_0"):
        assert f"  {name} " in text
    assert "J9_002_particles.cs" in text and "J9_001_particles.cs" in text
    assert "J9_passthrough_particles.cs" in text and "passthrough" in text
    assert text.count("600") >= 4

    ok("convert", g.path, str(tmp_path / "all.cs"))
    got = load(tmp_path / "all.cs")
    assert sorted(got.dtype.names) == sorted(a.dtype.names)
    assert_rows(got[list(a.dtype.names)], a)


def test_convert_to_star_with_image_suffix(files, tmp_path):
    starfile = pytest.importorskip("starfile")
    a = files["a"]
    r = run("convert", files["A"], str(tmp_path / "p.star"), "--image-suffix", ".mrcs")
    assert r.returncode == 0 and r.stderr.startswith("not written (star has no place")
    p = starfile.read(tmp_path / "p.star", always_dict=True)["particles"]
    ref = [
        f"{i + 1:06d}@{os.path.splitext(s.decode())[0]}.mrcs"
        for i, s in zip(a["blob/idx"].tolist(), a["blob/path"].tolist(), strict=True)
    ]
    assert p["rlnImageName"].tolist() == ref
    # names with a space, and the empty name, are quoted and read back as they were
    mics = [s.decode().removeprefix(">") for s in a["location/micrograph_path"].tolist()]
    assert p["rlnMicrographName"].fillna("").astype(str).tolist() == mics


def test_star_beam_tilt_and_magnification_values(tmp_path):
    """rlnBeamTiltX/Y (mrad) and rlnMagMat (identity + anisomag), per optics group,
    against the formulas computed here; from_star gives the float32 fields back."""
    starfile = pytest.importorskip("starfile")
    from csfast import from_star, to_star

    n = 9
    group = np.repeat([1, 2, 3], 3).astype(np.uint32)
    tilt = np.repeat(np.float32([[120.0, -35.5], [0.0, 0.0], [-3.25, 900.0]]), 3, axis=0)
    aniso = np.repeat(
        np.float32(
            [[0.01, -0.002, 0.003, -0.008], [0, 0, 0, 0], [-0.0051, 0.0007, 0.0002, 0.0049]]
        ),
        3,
        axis=0,
    )
    ds = Dataset(
        {
            "uid": np.arange(1, n + 1, dtype=np.uint64),
            "ctf/exp_group_id": group,
            "ctf/cs_mm": np.full(n, 2.7, np.float32),
            "ctf/tilt_A": tilt,
            "ctf/anisomag": aniso,
        }
    )
    to_star(ds, tmp_path / "o.star")
    o = starfile.read(tmp_path / "o.star", always_dict=True)["optics"]
    for j, label in enumerate(("rlnBeamTiltX", "rlnBeamTiltY")):
        ref = [1000 * np.arcsin(float(t) / (2.7 * 1e7)) for t in tilt[::3, j]]
        np.testing.assert_allclose(o[label], ref, rtol=1e-6)
    for j, label in enumerate(("rlnMagMat00", "rlnMagMat01", "rlnMagMat10", "rlnMagMat11")):
        ref = [float(x) + (1.0 if j in (0, 3) else 0.0) for x in aniso[::3, j]]
        np.testing.assert_allclose(o[label], ref, rtol=0, atol=1e-12)
    back = from_star(tmp_path / "o.star")
    assert np.array_equal(back["ctf/tilt_A"], tilt)
    assert np.array_equal(back["ctf/anisomag"], aniso)


# -------------------------------------------------------- bad arguments


def test_bad_arguments_one_line_and_nothing_written(files, tmp_path):
    d = tmp_path
    np.save(d / "obj.npy", np.array([{"a": 1}], dtype=object))
    np.save(d / "neg.npy", np.array([-1, 2]))
    np.save(d / "float.npy", np.array([1.5]))
    (d / "bad.txt").write_text("12\nnot-a-uid\n")
    (d / "big.txt").write_text(f"{2**64}\n")
    old = d / "old.cs"
    old.write_bytes(b"old contents")
    A, B = files["A"], files["B"]
    out = str(old)  # a failed command must leave it as it was
    dirout = str(d / "newdir")  # ... and create nothing
    cases = [
        (
            ["filter", A, "-o", out, "--where", "alignments3D/clas in 0,3"],
            "no field 'alignments3D/clas'; did you mean alignments3D/class",
        ),
        (["filter", A, "-o", out, "--where", "ctf/df1_A < abc"], "'abc' is not a number"),
        (
            ["filter", A, "-o", out, "--where", "alignments3D/class in 1,2.5"],
            "'2.5' is not an integer",
        ),
        (["filter", A, "-o", out, "--where", "ctf/df1_A ~ 3"], "expected 'FIELD OP VALUE'"),
        (["filter", A, "-o", out, "--where", "ctf/df1_A <"], "no value after '<'"),
        (["filter", A, "-o", out, "--where", "alignments3D/class in 1,,2"], "an empty item"),
        (["filter", A, "-o", out, "--where", "ctf/tilt_A > 0"], "is a sub-array"),
        (["filter", A, "-o", out], "at least one --where"),
        (["filter", A, "-o", out, "--uids", str(d / "obj.npy")], "obj.npy"),
        (["filter", A, "-o", out, "--uids", str(d / "neg.npy")], "non-negative"),
        (["filter", A, "-o", out, "--uids", str(d / "float.npy")], "integer array"),
        (["filter", A, "-o", out, "--uids", str(d / "bad.txt")], "bad.txt, line 2"),
        (["filter", A, "-o", out, "--uids", str(d / "big.txt")], "outside [0, 2**64)"),
        (["filter", A, "-o", out, "--uids", str(d / "none.npy")], "No such file"),
        (["filter", str(d / "missing.cs"), "-o", out, "--where", "uid == 1"], "missing.cs"),
        (["fields", A, "-o", out, "--keep", "blbo"], "--keep 'blbo' matches no result"),
        (["fields", A, "-o", out, "--drop", "uid"], "cannot drop the uid field"),
        (["fields", A, "-o", out], "needs --keep or --drop"),
        (["split", A, "--batches", "0", "-o", dirout], "need at least 1"),
        (["split", A, "--batches", "601", "-o", dirout], "more batches than the 600 rows"),
        (["split", A, "--by", "blob/shape", "-o", dirout], "sub-array"),
        (["split", A, "--by", "nope", "-o", dirout], "no field 'nope'"),
        (["split", A, "--by", "uid", "--random", "3", "-o", dirout], "--batches only"),
        (["split", A, "--batches", "2", "-o", str(old)], "not a folder"),
        (["split", A, "--batches", "2", "-o", str(d / "no" / "such")], "does not exist"),
        (["sets", A, B, "--intersect", "--on", "blob/pth", "-o", dirout], "no field 'blob/pth'"),
        (["sets", A, B, "--intersect", "--on", "uid,blob/idx", "-o", dirout], "--on is uid"),
        (["sets", A, B, "--intersect", "--on", "blob/shape", "-o", dirout], "sub-array"),
        (
            [
                "sets",
                A,
                B,
                "--intersect",
                "--on",
                "blob/path,ctf/df1_A,blob/idx",
                "-o",
                dirout,
                "--on",
                "uid,uid",
            ],
            "--on is uid",
        ),
        (["union", A, str(d / "obj.npy"), "-o", out], "obj.npy"),
        (["append", "--dedupe", "--repeat-allowed", A, B, "-o", out], "contradict"),
        (["convert", A, out, "--image-suffix", ".mrcs"], "applies to .star output only"),
        (["convert", A, str(d / "x.star"), "--image-suffix", "mrcs/"], "expected a dot"),
        (["info", str(d / "missing.csg")], "missing.csg"),
    ]
    results = run_all([argv for argv, _ in cases])
    for (argv, message), r in zip(cases, results, strict=True):
        assert r.returncode != 0, argv
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1, (argv, r.stderr)
        assert lines[0].startswith(f"csfast {argv[0]}:"), (argv, lines)
        assert message in lines[0], (argv, lines[0])
    assert old.read_bytes() == b"old contents"
    assert not os.path.exists(dirout) and not (d / "x.star").exists()
    assert sorted(os.listdir(d)) == [
        "bad.txt",
        "big.txt",
        "float.npy",
        "neg.npy",
        "obj.npy",
        "old.cs",
    ]


def test_argparse_errors_exit_nonzero(files):
    for argv in (
        ["split", files["A"], "-o", "x"],
        ["sets", files["A"], files["B"], "-o", "x"],
        ["union", files["A"]],
        ["split", files["A"], "--batches", "x", "-o", "y"],
    ):
        r = run(*argv)
        assert r.returncode == 2 and "error:" in r.stderr.splitlines()[-1]


def test_disk_full_leaves_no_part_behind(tmp_path, tiny_fs):
    """A split that runs out of space midway publishes none of its parts."""
    rng = np.random.default_rng(5)
    big = save(tmp_path / "big.cs", table(np.arange(1, 20001, dtype=np.uint64), rng))
    r = run("split", big, "--batches", "4", "-o", str(tiny_fs / "parts"))
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1
    assert "No space left" in r.stderr
    (tiny_fs / "kept").mkdir()  # a folder that exists stays, empty
    r = run("split", big, "--batches", "4", "-o", str(tiny_fs / "kept"))
    assert r.returncode == 1 and "No space left" in r.stderr
    assert os.listdir(tiny_fs / "kept") == []
    r = run("filter", big, "--where", "uid > 0", "-o", str(tiny_fs / "f.cs"))
    assert r.returncode == 1 and "No space left" in r.stderr
    assert os.listdir(tiny_fs) == ["kept"]  # the folder split made is gone


# --------------------------------------------------------------- progress


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_shows_on_a_terminal_only(monkeypatch):
    pytest.importorskip("tqdm")
    import argparse

    from csfast import cli

    monkeypatch.setattr(cli._Progress, "DELAY", 0.0)
    for quiet, tty in ((False, True), (True, True), (False, False)):
        err = _Terminal() if tty else io.StringIO()
        monkeypatch.setattr(sys, "stderr", err)
        with cli._Progress(argparse.Namespace(quiet=quiet)) as progress:
            progress(1, 3, "writing part 2 of 3")
            time.sleep(0.5)
        shown = "writing part 2 of 3: 1/3" in err.getvalue()
        assert shown == (tty and not quiet), (quiet, tty, err.getvalue())


# ------------------------------------------------------------- streamed save


@pytest.mark.parametrize("rows, keep", [(0, 1.0), (500, 0.4), (60_000, 0.7), (60_000, 0.0)])
def test_lazy_subset_saves_what_numpy_saves(tmp_path, rows, keep):
    """Chunk by chunk (42,000 rows of this table span two 8 MB chunks), the bytes
    np.save writes for the rows, string widths shrunk to the subset's longest + 1."""
    from test_lazy import npy_bytes, saved_like_csfast

    rng = np.random.default_rng(rows)
    arr = table(np.arange(1, rows + 1, dtype=np.uint64), rng, classes=20)
    if rows:
        arr["location/micrograph_path"][rng.integers(0, rows)] = b"x" * 39  # one long value
    src = save(tmp_path / "src.cs", arr)
    mask = rng.random(rows) < keep
    Dataset.load(src).mask(mask).save(tmp_path / "streamed.cs")
    expected = npy_bytes(saved_like_csfast(arr[mask]), tmp_path)
    assert (tmp_path / "streamed.cs").read_bytes() == expected


def test_save_encodes_text_and_narrows_string_sub_arrays(tmp_path):
    from test_lazy import npy_bytes

    ds = Dataset(
        {
            "uid": np.arange(3, dtype=np.uint64),
            "a/name": np.array(["\u00e9t\u00e9", "b", ""]),
            "a/pair": np.array([[b"x", b"yy"]] * 3, dtype="S9"),
        }
    )
    ds.save(tmp_path / "s.cs")
    ref = np.zeros(3, dtype=[("uid", "<u8"), ("a/name", "S6"), ("a/pair", "S3", (2,))])
    ref["uid"] = np.arange(3)
    ref["a/name"] = ["\u00e9t\u00e9".encode(), b"b", b""]
    ref["a/pair"] = [[b"x", b"yy"]] * 3
    assert (tmp_path / "s.cs").read_bytes() == npy_bytes(ref, tmp_path)
