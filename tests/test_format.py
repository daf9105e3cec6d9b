"""Reading and writing .cs files, checked against numpy itself.

Round trips on generated dtypes, hand-written files for every real-file quirk
(docs/formats.md), memory mapping, inspect(), bad input and atomic saves.
"""

import errno
import os
import pickle
import re
import stat
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from npyfiles import (
    npy_bytes,
    numpy_load,
    numpy_save,
    numpy_save_bytes,
    same_bytes,
    write_array,
    write_npy,
)

import csfast
import csfast.dataset
import csfast.format
from csfast import CsError, CsFormatError, Dataset
from csfast._core import FileMap

# ---------------------------------------------------------------- generators

NUMERIC = ["u1", "u2", "u4", "u8", "i1", "i2", "i4", "i8", "f2", "f4", "f8", "c8", "c16", "b1"]
TEXT = "ab é€😀"  # 1- to 4-byte UTF-8 characters


@st.composite
def field_types(draw) -> np.dtype:
    kind = draw(st.sampled_from(NUMERIC + ["S", "U"]))
    base = f"{kind}{draw(st.integers(1, 9))}" if kind in "SU" else kind
    order = draw(st.sampled_from("<>"))
    shape = tuple(draw(st.lists(st.integers(1, 3), max_size=3)))
    return np.dtype((np.dtype(order + base), shape)) if shape else np.dtype(order + base)


@st.composite
def struct_dtypes(draw, uid: bool | None = None) -> np.dtype:
    names = draw(
        st.lists(
            st.text(alphabet="abcxé€/_", min_size=1, max_size=6),
            min_size=1,
            max_size=6,
            unique=True,
        )
    )
    names = [n for n in names if n != "uid"] or ["a"]
    fields = [(n, draw(field_types())) for n in names]
    with_uid = draw(st.booleans()) if uid is None else uid
    if with_uid:
        pos = draw(st.integers(0, len(fields)))
        fields.insert(pos, ("uid", np.dtype(draw(st.sampled_from(["<u8", ">u8"])))))
    return np.dtype(fields)


def random_table(dtype: np.dtype, n: int, seed: int) -> np.ndarray:
    """n rows of dtype: random bytes, then valid values where bytes are not enough
    (bool 0/1, UTF-8-encodable U strings)."""
    rng = np.random.default_rng(seed)
    arr = np.frombuffer(
        rng.integers(0, 256, n * dtype.itemsize, dtype=np.uint8).tobytes(), dtype=dtype
    ).copy()
    for name in dtype.names:
        col = arr[name]
        base = col.dtype
        if base.kind == "b":
            col[...] = rng.integers(0, 2, col.shape).astype(bool)
        elif base.kind == "U":
            width = base.itemsize // 4
            flat = [
                "".join(rng.choice(list(TEXT), rng.integers(0, width + 1))) for _ in range(col.size)
            ]
            col[...] = np.array(flat, dtype=f"U{width}").reshape(col.shape)
    return arr


def save_reference(cols: dict) -> np.ndarray:
    """What Dataset.save must write, built with numpy alone (issue 2's rule):
    uid first, U columns encoded to UTF-8, string columns S<longest + 1>."""
    names = (["uid"] if "uid" in cols else []) + [k for k in cols if k != "uid"]
    out = {}
    for k in names:
        col = np.asarray(cols[k])
        if col.dtype.kind == "U":
            col = np.char.encode(col, "utf-8")
        if col.dtype.kind == "S":
            longest = int(np.char.str_len(col).max(initial=0))
            col = col.astype(f"S{longest + 1}")
        out[k] = col
    dtype = np.dtype([(k, c.dtype, c.shape[1:]) for k, c in out.items()])
    n = len(next(iter(out.values())))
    ref = np.empty(n, dtype=dtype)
    for k, c in out.items():
        ref[k] = c
    return ref


def assert_columns_equal(ds: Dataset, ref: np.ndarray) -> None:
    assert len(ds) == len(ref)
    for name in ref.dtype.names:
        assert same_bytes(ds[name], ref[name]), name


HYP = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# ------------------------------------------------------ round trips vs numpy


@HYP
@given(
    dtype=struct_dtypes(),
    n=st.sampled_from([0, 1, 2, 7, 50]),
    seed=st.integers(0, 2**32 - 1),
    aligned=st.booleans(),
)
def test_reads_what_numpy_writes(tmp_path_factory, dtype, n, seed, aligned):
    if aligned:
        dtype = np.dtype([(k, dtype.fields[k][0]) for k in dtype.names], align=True)
    arr = random_table(dtype, n, seed)
    path = numpy_save(tmp_path_factory.mktemp("read") / "t.cs", arr)
    idx = np.random.default_rng(seed).integers(0, n, 2 * n) if n else np.zeros(0, int)
    for mapped in (True, False):
        ds = Dataset.load(path, mmap=mapped)
        assert ds.fields() == list(dtype.names)
        assert_columns_equal(ds, arr)
        # the kernels copy every kind of column (strided, unaligned, big-endian)
        assert_columns_equal(ds.take(idx), arr[idx])
        assert_columns_equal(ds.copy(), arr)
        odd = idx % (n // 2) if n > 1 else idx[:0]
        assert_columns_equal(ds.slice(1, None, 2).take(odd), arr[1::2][odd])
    info = csfast.inspect(path)
    assert info.rows == n and info.dtype == numpy_load(path).dtype
    assert info.file_size == path.stat().st_size


@HYP
@given(dtype=struct_dtypes(), n=st.sampled_from([0, 1, 3, 40]), seed=st.integers(0, 2**32 - 1))
def test_writes_what_numpy_writes(tmp_path_factory, dtype, n, seed):
    arr = random_table(dtype, n, seed)
    folder = tmp_path_factory.mktemp("write")
    # From a structured array in memory (U columns become UTF-8 bytes) ...
    ds = Dataset(arr)
    ds.save(folder / "a.cs")
    # uid becomes native uint64 in memory (the only conversion construction makes)
    assert ds["uid"].dtype == np.dtype(np.uint64)
    if "uid" in dtype.names:
        assert ds["uid"].tolist() == arr["uid"].tolist()
    ref = save_reference({**{k: arr[k] for k in dtype.names}, "uid": ds["uid"]})
    assert (folder / "a.cs").read_bytes() == numpy_save_bytes(ref)
    back = numpy_load(folder / "a.cs")
    assert same_bytes(back, ref)
    # ... and from a mapped file numpy wrote (U columns stay U until saved).
    numpy_save(folder / "np.cs", arr)
    Dataset.load(folder / "np.cs").save(folder / "b.cs")
    ref = save_reference({k: arr[k] for k in dtype.names})
    assert (folder / "b.cs").read_bytes() == numpy_save_bytes(ref)


@HYP
@given(dtype=struct_dtypes(), n=st.integers(0, 2**40), fortran=st.booleans())
def test_fast_header_parse_agrees_with_literal_eval(dtype, n, fortran):
    # The header numpy writes, parsed by csfast's fast path and by Python itself.
    import ast

    from csfast.format import _parse_plain_header

    data = numpy_save_bytes(np.zeros(0, dtype))
    prefix = 10 if data[6] == 1 else 12
    text = data[prefix:].decode("utf-8" if data[6] == 3 else "latin1")
    text = text.replace("(0,)", f"({n},)").replace("False", str(fortran))
    fast = _parse_plain_header(text)
    if fast is not None:
        assert fast == ast.literal_eval(text)


def test_many_rows_round_trip(tmp_path):
    dtype = np.dtype(
        [
            ("uid", "<u8"),
            ("blob/path", "S40"),
            ("blob/idx", "<u4"),
            ("alignments3D/pose", "<f4", (3,)),
            ("x/big", ">f8"),
            ("x/flag", "?"),
            ("x/c", "<c8", (2, 2)),
        ]
    )
    arr = random_table(dtype, 100_000, seed=3)
    numpy_save(tmp_path / "np.cs", arr)
    ds = Dataset.load(tmp_path / "np.cs")
    assert_columns_equal(ds, arr)
    ds.save(tmp_path / "cs.cs")
    assert (tmp_path / "cs.cs").read_bytes() == numpy_save_bytes(
        save_reference({k: arr[k] for k in dtype.names})
    )


def test_save_string_widths_follow_longest_plus_one(tmp_path):
    # A subset keeps a wide width; save narrows it to longest + 1 (a NUL always fits).
    ds = Dataset(
        {
            "uid": np.arange(3, dtype=np.uint64),
            "blob/path": np.array([b"a", b"abcd", b""], dtype="S64"),
            "ctf/type": np.array(["", "", ""]),
            "n/name": np.array(["é", "€€", "x"]),
        }
    )
    ds.save(tmp_path / "s.cs")
    back = numpy_load(tmp_path / "s.cs")
    assert back.dtype["blob/path"] == np.dtype("S5")
    assert back.dtype["ctf/type"] == np.dtype("S1")
    assert back.dtype["n/name"] == np.dtype("S7")  # "€€" is 6 bytes of UTF-8
    assert back["n/name"].tolist() == ["é".encode(), "€€".encode(), b"x"]


# ------------------------------------------------------ real-file quirks


def _quirk_table(n=5) -> np.ndarray:
    dtype = np.dtype(
        [
            ("uid", "<u8"),
            ("blob/path", "S12"),
            ("blob/shape", "<u4", (2,)),
            ("alignments3D/pose", "<f4", (3,)),
            ("ctf/anisomag", "<f4", (2, 2)),
            ("x/cube", "<i2", (2, 1, 3)),
        ]
    )
    return random_table(dtype, n, seed=11)


@pytest.mark.parametrize("version", [(1, 0), (2, 0), (3, 0)])
@pytest.mark.parametrize("align", [16, 64])
def test_versions_and_data_offsets(tmp_path, version, align):
    arr = _quirk_table()
    path = write_array(tmp_path / "v.cs", arr, version=version, align=align)
    info = csfast.inspect(path)
    assert info.version == version
    assert info.data_offset % align == 0
    assert info.data_offset == path.stat().st_size - arr.nbytes
    assert same_bytes(numpy_load(path), arr)  # numpy agrees the file is valid
    assert_columns_equal(Dataset.load(path), arr)


def test_version_3_with_non_latin1_field_name(tmp_path):
    dtype = np.dtype([("uid", "<u8"), ("€/wert", "<f4"), ("日本/x", "S3")])
    arr = random_table(dtype, 4, seed=1)
    path = write_array(tmp_path / "v3.cs", arr, version=(3, 0))
    ds = Dataset.load(path)
    assert ds.fields() == ["uid", "€/wert", "日本/x"]
    assert_columns_equal(ds, arr)
    assert same_bytes(numpy_load(path), arr)
    # and csfast writes such a table as numpy does (version 3.0)
    ds.save(tmp_path / "out.cs")
    assert (tmp_path / "out.cs").read_bytes()[6:8] == b"\x03\x00"
    assert (tmp_path / "out.cs").read_bytes() == numpy_save_bytes(
        save_reference({k: arr[k] for k in dtype.names})
    )


def test_python2_long_literals_in_header(tmp_path):
    # Python 2 numpy wrote shapes as (3L,); numpy still reads such files.
    arr = _quirk_table(3)
    text = (
        repr(
            {
                "descr": np.lib.format.dtype_to_descr(arr.dtype),
                "fortran_order": False,
                "shape": (3,),
            }
        )
        .replace("(3,)", "(3L,)")
        .replace("(2,)", "(2L,)")
    )
    path = write_npy(tmp_path / "py2.cs", None, arr.tobytes(), text=text)
    with pytest.warns(UserWarning, match="Python 2"):
        assert same_bytes(numpy_load(path), arr)
    assert_columns_equal(Dataset.load(path), arr)
    # but an L inside a field name is the name's own
    arr = np.zeros(2, [("uid", "<u8"), ("3L", "<f4")])
    path = write_npy(
        tmp_path / "name.cs",
        None,
        arr.tobytes(),
        text=repr(
            {"descr": [("uid", "<u8"), ("3L", "<f4")], "fortran_order": False, "shape": (2,)}
        ),
    )
    assert Dataset.load(path).fields() == ["uid", "3L"]


def test_header_with_5000_fields(tmp_path):
    fields = [("uid", "<u8")] + [
        (f"alignments_class_{k}/{f}", "<f4" if f != "class" else "<u4")
        for k in range(500)
        for f in ("class", "error", "pose", "w", "a", "b", "c", "d", "e", "f")
    ]
    arr = random_table(np.dtype(fields), 7, seed=2)
    path = numpy_save(tmp_path / "wide.cs", arr)
    with pytest.raises(ValueError):  # numpy's default limit, which csfast must not have
        np.load(path)
    info = csfast.inspect(path)
    assert len(info.fields) == 5001 and info.version == (2, 0)
    assert info.data_offset > 10_000
    ds = Dataset.load(path, prefixes=["alignments_class_499"])
    assert ds.fields() == ["uid"] + [k for k, _ in fields if k.startswith("alignments_class_499/")]
    assert_columns_equal(ds, arr[ds.fields()])
    full = Dataset.load(path)
    assert_columns_equal(full, arr)
    full.save(tmp_path / "out.cs")
    assert (tmp_path / "out.cs").read_bytes() == path.read_bytes()


def test_header_version_boundary_matches_numpy(tmp_path):
    # Around 65,535 header bytes numpy switches from format 1.0 to 2.0.
    versions = set()
    for pad in range(0, 400, 9):
        names = [f"r{k:04d}/{'n' * (20 + (pad if k == 0 else 0))}" for k in range(1673)]
        arr = np.zeros(2, [("uid", "<u8")] + [(k, "<u1") for k in names])
        Dataset(arr).save(tmp_path / "b.cs")
        expected = numpy_save_bytes(arr)
        versions.add(expected[6])
        assert (tmp_path / "b.cs").read_bytes() == expected, pad
    assert versions == {1, 2}


def test_one_megabyte_header(tmp_path):
    # Long field names rather than padding: a 1 MB dict literal to parse.
    fields = [("uid", "<u8")] + [(f"result_{k:05d}/{'x' * 40}", "<f4") for k in range(17_000)]
    arr = random_table(np.dtype(fields), 3, seed=4)
    path = numpy_save(tmp_path / "huge.cs", arr)
    info = csfast.inspect(path)
    assert info.data_offset > 1_000_000
    ds = Dataset.load(path)
    assert len(ds.fields()) == 17_001
    last = "result_16999/" + "x" * 40
    assert_columns_equal(ds.filter_fields([last]), arr[["uid", last]])
    # padding after the literal counts too
    padded = write_array(tmp_path / "pad.cs", _quirk_table(), version=(2, 0), align=1 << 20)
    assert csfast.inspect(padded).data_offset == 1 << 20
    assert_columns_equal(Dataset.load(padded), _quirk_table())


def test_packed_dtype_with_odd_offsets(tmp_path):
    dtype = np.dtype(
        [
            ("uid", "<u8"),
            ("a/flag", "u1"),
            ("a/x", "<f8"),
            ("a/v", "<u4", (3,)),
            ("b/s", "S3"),
            ("b/y", "<f4"),
        ]
    )
    assert dtype.fields["a/x"][1] == 9  # odd: unaligned reads are needed
    arr = random_table(dtype, 33, seed=5)
    path = write_array(tmp_path / "p.cs", arr)
    ds = Dataset.load(path)
    assert not ds["a/x"].flags.aligned
    assert ds["a/x"].strides[0] == dtype.itemsize
    assert_columns_equal(ds, arr)
    # the kernels read them unaligned: a gather of rows and a copy
    idx = np.array([32, 0, 5, 5, 17])
    assert_columns_equal(ds.take(idx), arr[idx])
    assert_columns_equal(ds.copy(), arr)
    assert_columns_equal(ds.slice(3, 30, 4), arr[3:30:4])


def test_big_endian_fields(tmp_path):
    dtype = np.dtype(
        [
            ("uid", ">u8"),
            ("ctf/df1_A", ">f4"),
            ("a/pose", ">f8", (3,)),
            ("a/n", ">i2"),
            ("a/s", ">U3"),
        ]
    )
    arr = np.zeros(3, dtype)
    arr["uid"] = [1, 2**63 + 5, 2**64 - 1]
    arr["ctf/df1_A"] = [1.5, -2.25, 12000.0]
    arr["a/pose"] = np.arange(9).reshape(3, 3) / 7
    arr["a/n"] = [-1, 300, 7]
    arr["a/s"] = ["é", "ab", "€€€"]
    path = write_array(tmp_path / "be.cs", arr)
    ds = Dataset.load(path)
    assert ds["uid"].tolist() == [1, 2**63 + 5, 2**64 - 1]  # values, not bytes, are right
    assert ds["ctf/df1_A"].tolist() == [1.5, -2.25, 12000.0]
    np.testing.assert_array_equal(ds["a/pose"], np.arange(9).reshape(3, 3) / 7)
    assert ds["a/n"].tolist() == [-1, 300, 7]
    assert ds["a/s"].tolist() == ["é", "ab", "€€€"]
    # joins work on big-endian uids
    other = Dataset({"uid": np.array([2**64 - 1, 1], dtype="<u8"), "z/q": [1, 2]})
    assert sorted(ds.innerjoin(other)["uid"].tolist()) == [1, 2**64 - 1]


@pytest.mark.parametrize("version", [(1, 0), (2, 0)])
def test_zero_row_files(tmp_path, version):
    arr = _quirk_table(0)
    path = write_array(tmp_path / "empty.cs", arr, version=version)
    ds = Dataset.load(path)
    assert len(ds) == 0 and ds.fields() == list(arr.dtype.names)
    assert ds.descr() == Dataset(arr).descr()
    assert csfast.inspect(path).rows == 0
    assert numpy_load(path).shape == (0,)


def test_zero_row_file_of_exactly_4096_bytes(tmp_path):
    arr = _quirk_table(0)
    path = write_array(tmp_path / "4k.cs", arr, pad_to=4096)
    assert path.stat().st_size == 4096
    assert numpy_load(path).shape == (0,)
    info = csfast.inspect(path)
    assert (info.rows, info.data_offset, info.file_size) == (0, 4096, 4096)
    ds = Dataset.load(path)
    assert len(ds) == 0 and len(ds["alignments3D/pose"]) == 0
    assert ds["alignments3D/pose"].shape == (0, 3)
    assert len(ds.take([])) == 0 and len(ds.mask(np.zeros(0, bool))) == 0


def test_file_without_uid(tmp_path):
    dtype = np.dtype([("blob/path", "S5"), ("blob/idx", "<u4")])
    arr = random_table(dtype, 6, seed=8)
    path = numpy_save(tmp_path / "nouid.cs", arr)
    ds = Dataset.load(path)
    assert ds.fields() == ["blob/path", "blob/idx"]
    assert "uid" not in ds
    assert_columns_equal(ds, arr)
    with pytest.raises(csfast.CsFieldError, match="uid"):
        ds.innerjoin(Dataset(6))
    ds.save(tmp_path / "out.cs")  # written as it is: no uid invented
    assert (tmp_path / "out.cs").read_bytes() == numpy_save_bytes(
        save_reference({k: arr[k] for k in dtype.names})
    )


@pytest.mark.parametrize(
    "uid", ["|S8", "|V8", ("<u8", (2,)), ("<u8", (1,)), "<f8", "<u4", "<i2", "|b1", ("<u8", (0,))]
)
@pytest.mark.parametrize("kind", ["cs", "csdat"])
def test_uid_field_that_cannot_hold_uids(tmp_path, uid, kind):
    """Before issue 8 these loaded, then joins raised ValueError / IndexError
    or (<f8) silently truncated uids: now the load names the file and dtype."""
    dtype = np.dtype([("uid", uid), ("x", "<f4")])
    arr = np.zeros(4, dtype)
    path = tmp_path / "bad.cs"
    if kind == "cs":
        numpy_save(path, arr)
    else:
        csfast.csdat.write(path, {k: arr[k] for k in dtype.names}, len(arr), compression=None)
    base, shape = dtype["uid"].base, dtype["uid"].shape
    want = f"{base.str} with shape {shape}" if shape else base.str
    if kind == "csdat":  # the writer narrows strings to the longest + 1
        want = want.replace("|S8", "|S1")
    for mapped in (True, False):
        with pytest.raises(
            csfast.CsFieldError,
            match=rf"bad\.cs: field 'uid' is "
            rf"{re.escape(want)}; a uid column",
        ):
            Dataset.load(path, mmap=mapped)
    with pytest.raises(csfast.CsFieldError, match="bad.cs"):
        Dataset.load(path, fields=["x"])
    with pytest.raises(csfast.CsFieldError, match="<bytes>: field 'uid'"):
        Dataset.load(path.read_bytes())
    if base.kind not in "ui" or shape:  # narrower integers are fine in memory: values fit
        with pytest.raises(csfast.CsFieldError, match="uid"):
            Dataset(arr)


@pytest.mark.parametrize("kind", ["cs", "csdat"])
def test_uid_fields_of_64_bit_integers_load_and_join(tmp_path, kind):
    """>u8 is read by value; <i8 / >i8 as the unsigned number with the same
    bits (-1 is the uid 2**64 - 1), and keep their dtype until combined."""
    want = [1, 2**63 + 5, 2**64 - 1, 0]
    signed = np.array(want, dtype=np.uint64).view(np.int64)
    assert signed[2] == -1
    other = Dataset({"uid": np.array(want[::-1], dtype="<u8"), "z/q": np.arange(4)})
    for uid in (np.array(want, ">u8"), signed.astype("<i8"), signed.astype(">i8")):
        path = tmp_path / f"{uid.dtype.str[0]}{uid.dtype.kind}.cs"
        cols = {"uid": uid, "x": np.arange(4, dtype="<f4")}
        if kind == "cs":
            arr = np.zeros(4, [("uid", uid.dtype), ("x", "<f4")])
            arr["uid"], arr["x"] = cols["uid"], cols["x"]
            numpy_save(path, arr)
        else:
            csfast.csdat.write(path, cols, 4, compression=None)
        ds = Dataset.load(path)
        assert ds["uid"].dtype == uid.dtype or kind == "csdat"  # CSDAT: native order
        assert ds["uid"].astype(np.uint64).tolist() == want
        joined = ds.innerjoin(other)
        assert joined["uid"].dtype == np.uint64 and joined["uid"].tolist() == want
        assert joined["z/q"].tolist() == [3, 2, 1, 0]
        assert ds.subset_uids([2**64 - 1])["x"].tolist() == [2.0]


def test_unicode_columns(tmp_path):
    arr = np.zeros(4, [("uid", "<u8"), ("a/name", "<U4"), ("a/pair", "<U2", (2,))])
    arr["uid"] = [4, 3, 2, 1]
    arr["a/name"] = ["α", "βγ", "", "€uro"]
    arr["a/pair"] = [["a", "é"], ["", "x"], ["😀", "😀😀"], ["z", ""]]
    path = numpy_save(tmp_path / "u.cs", arr)
    ds = Dataset.load(path)
    assert ds["a/name"].dtype == np.dtype("<U4")
    assert ds["a/name"].tolist() == arr["a/name"].tolist()
    assert ds["a/pair"].tolist() == arr["a/pair"].tolist()
    assert ds.decode("a/name").tolist() == arr["a/name"].tolist()


def test_corrupt_unicode_column_is_a_clear_error_on_save(tmp_path):
    # A damaged file may hold code points no str can: reading works, saving
    # (which encodes to UTF-8) names the field instead of crashing.
    arr = np.zeros(2, [("uid", "<u8"), ("a/u", "<U2")])
    raw = bytearray(arr.tobytes())
    raw[8:12] = (0x110000).to_bytes(4, "little")  # beyond U+10FFFF
    raw[24:28] = (0xD800).to_bytes(4, "little")  # a lone surrogate
    path = write_npy(tmp_path / "u.cs", arr.dtype, bytes(raw), 2)
    ds = Dataset.load(path)
    assert np.frombuffer(ds["a/u"].tobytes(), "<u4")[::2].tolist() == [0x110000, 0xD800]
    for rows in ([0], [1]):
        with pytest.raises(csfast.CsFieldError, match="a/u"):
            ds.take(rows).save(tmp_path / "out.cs")
    assert not (tmp_path / "out.cs").exists()


def test_strings_stay_bytes_and_decode_on_request(tmp_path):
    arr = np.zeros(3, [("uid", "<u8"), ("blob/path", "S8")])
    arr["blob/path"] = ["é/a.mrc".encode(), b"b.mrc", "é/a.mrc".encode()]
    ds = Dataset.load(numpy_save(tmp_path / "s.cs", arr))
    assert ds["blob/path"].dtype == np.dtype("S8")
    assert ds.decode("blob/path").tolist() == ["é/a.mrc", "b.mrc", "é/a.mrc"]


# ------------------------------------------------------ memory mapping


def _mapped_base(a: np.ndarray):
    while isinstance(a, (np.ndarray, memoryview)):
        a = a.base if isinstance(a, np.ndarray) else a.obj
    return a


@pytest.fixture
def stack(tmp_path):
    dtype = np.dtype(
        [
            ("uid", "<u8"),
            ("blob/path", "S9"),
            ("blob/idx", "<u4"),
            ("ctf/df1_A", "<f4"),
            ("ctf/shift_A", "<f4", (2,)),
            ("alignments3D/pose", "<f4", (3,)),
            ("alignments3D/class", "<u4"),
        ]
    )
    arr = random_table(dtype, 1000, seed=9)
    return write_array(tmp_path / "stack.cs", arr), arr


@pytest.mark.parametrize("writable", [False, True])
def test_load_maps_without_copy(stack, writable):
    path, arr = stack
    ds = Dataset.load(path, writable=writable)
    raw = np.memmap(path, mode="r")  # numpy's own view of the file bytes
    for name in arr.dtype.names:
        col = ds[name]
        assert col.flags.writeable == writable and not col.flags.owndata
        assert isinstance(_mapped_base(col), FileMap)
        assert col.strides[0] == arr.dtype.itemsize  # a strided view, not a copy
        # the column's first byte is at its field's offset in the file
        start = col.__array_interface__["data"][0] - _map_address(col)
        assert start == csfast.inspect(path).data_offset + arr.dtype.fields[name][1]
        assert (
            raw[start : start + col.dtype.itemsize].tobytes()
            == arr[name][:1].tobytes()[: col.dtype.itemsize]
        )
    if not writable:
        with pytest.raises(ValueError):
            ds["ctf/df1_A"][0] = 1.0
    # columns of one load share one map
    assert _mapped_base(ds["uid"]) is _mapped_base(ds["ctf/df1_A"])
    assert np.may_share_memory(ds["uid"], ds["ctf/df1_A"])


def _map_address(col: np.ndarray) -> int:
    whole = np.frombuffer(_mapped_base(col), dtype=np.uint8)
    return whole.__array_interface__["data"][0]


def test_load_fields_and_prefixes(stack):
    path, arr = stack
    ds = Dataset.load(path, fields=["ctf/df1_A", "alignments3D/class"])
    assert ds.fields() == ["uid", "ctf/df1_A", "alignments3D/class"]
    assert_columns_equal(ds, arr[ds.fields()])
    ds = Dataset.load(path, prefixes=["alignments3D", "blob"])
    assert ds.fields() == [
        "uid",
        "blob/path",
        "blob/idx",
        "alignments3D/pose",
        "alignments3D/class",
    ]
    assert_columns_equal(ds, arr[ds.fields()])
    ds = Dataset.load(path, fields=["blob/idx"], prefixes=["ctf"])
    assert ds.fields() == ["uid", "blob/idx", "ctf/df1_A", "ctf/shift_A"]
    with pytest.raises(csfast.CsFieldError, match="nope"):
        Dataset.load(path, fields=["nope"])


def test_modified_mapped_dataset_becomes_a_copy(stack):
    path, arr = stack
    before = path.read_bytes()
    ds = Dataset.load(path)
    ds["ctf/df1_A"] = 5.0
    ds["alignments3D/pose"] = np.ones((1000, 3), np.float32)
    ds.add_fields([("new/x", "<f8")])
    ds["new/y"] = np.arange(1000)
    assert ds["ctf/df1_A"].flags.writeable and ds["ctf/df1_A"].flags.owndata
    ds["ctf/df1_A"][3] = 7.0  # owned now: in-place writes are fine
    assert ds["ctf/df1_A"][:4].tolist() == [5.0, 5.0, 5.0, 7.0]
    assert_columns_equal(
        ds.filter_fields(["blob/path", "ctf/shift_A"], copy=True),
        arr[["uid", "blob/path", "ctf/shift_A"]],
    )
    assert isinstance(_mapped_base(ds["blob/idx"]), FileMap)  # untouched: still mapped
    assert path.read_bytes() == before
    assert same_bytes(numpy_load(path), arr)


def test_row_subsets_of_mapped_dataset_stay_lazy(stack, monkeypatch):
    path, arr = stack
    ds = Dataset.load(path)
    calls = []  # one entry per column the kernels copy
    core = csfast.dataset._core
    real, real_many = core.gather, getattr(core, "gather_many", None)

    def counting(src, index, out, **kw):
        calls.append(src.dtype)
        return real(src, index, out, **kw)

    def counting_many(srcs, index, outs, **kw):
        calls.extend(s.dtype for s in srcs)
        return real_many(srcs, index, outs, **kw)

    monkeypatch.setattr(core, "gather", counting)
    if real_many is not None:
        monkeypatch.setattr(core, "gather_many", counting_many)
    idx = np.array([999, 0, 500, 3])
    sub = ds.take(idx)
    masked = ds.mask(arr["alignments3D/class"] % 2 == 0)
    sliced = ds.slice(100, 900, 7)
    sub2 = sub.take([1, 2])  # subsets of subsets stay lazy too
    assert calls == []  # nothing read yet
    assert same_bytes(sub["ctf/df1_A"], arr["ctf/df1_A"][idx])
    assert len(calls) == 1  # only the column that was read
    assert same_bytes(sub2["blob/path"], arr["blob/path"][idx[[1, 2]]])
    assert len(calls) == 2
    assert isinstance(_mapped_base(sliced.view("alignments3D/pose")), FileMap)  # a view
    assert same_bytes(sliced["alignments3D/pose"], arr["alignments3D/pose"][100:900:7])
    assert_columns_equal(masked, arr[arr["alignments3D/class"] % 2 == 0])


def test_load_into_memory(stack):
    path, arr = stack
    ds = Dataset.load(path, mmap=False)
    for name in arr.dtype.names:
        assert ds[name].flags.writeable and not isinstance(_mapped_base(ds[name]), FileMap)
    assert_columns_equal(ds, arr)


def test_overwrite_the_mapped_file_itself(stack):
    path, arr = stack
    ds = Dataset.load(path)
    ds["ctf/df1_A"] = -1.0
    ds.save(path)
    assert numpy_load(path)["ctf/df1_A"].tolist() == [-1.0] * 1000
    assert same_bytes(ds["blob/idx"], arr["blob/idx"])  # the old map stays readable


# ------------------------------------------------------ inspect


def test_inspect_reports_header_facts_without_mapping(tmp_path, monkeypatch):
    arr = _quirk_table(21)
    path = write_array(tmp_path / "i.cs", arr, version=(2, 0), align=16)

    def no_map(*a, **k):
        raise AssertionError("inspect must not map the file")

    monkeypatch.setattr(csfast.format, "map_file", no_map)
    info = csfast.inspect(Path(path))
    assert info.path == str(path)
    assert info.rows == 21
    assert info.version == (2, 0)
    assert info.data_offset == path.stat().st_size - arr.nbytes and info.data_offset % 16 == 0
    assert info.file_size == path.stat().st_size
    assert info.row_size == arr.dtype.itemsize
    assert info.fields == [
        ("uid", "<u8", ()),
        ("blob/path", "|S12", ()),
        ("blob/shape", "<u4", (2,)),
        ("alignments3D/pose", "<f4", (3,)),
        ("ctf/anisomag", "<f4", (2, 2)),
        ("x/cube", "<i2", (2, 1, 3)),
    ]
    # cryosparc-tools' header mapping: strings as "|O"
    assert Dataset.inspect(path) == {
        "length": 21,
        "compression": None,
        "compressed_fields": [],
        "dtype": [
            ("uid", "<u8"),
            ("blob/path", "|O"),
            ("blob/shape", "<u4", (2,)),
            ("alignments3D/pose", "<f4", (3,)),
            ("ctf/anisomag", "<f4", (2, 2)),
            ("x/cube", "<i2", (2, 1, 3)),
        ],
    }


# ------------------------------------------------------ bad input

GOOD = np.zeros(3, [("uid", "<u8"), ("a/x", "<f4")])


def _bad(tmp_path, data: bytes) -> Path:
    path = tmp_path / "bad.cs"
    path.write_bytes(data)
    return path


def _refused(path: Path, match: str) -> CsFormatError:
    for load in (csfast.inspect, Dataset.load, lambda p: Dataset.load(p, mmap=False)):
        with pytest.raises(CsFormatError, match=match) as e:
            load(path)
        assert isinstance(e.value, ValueError) and isinstance(e.value, CsError)
        assert str(path) in str(e.value)
    return e.value


@pytest.mark.parametrize(
    "data, match",
    [
        (b"", "magic"),
        (b"PK\x03\x04 a zip file", "magic"),
        (b"\x93NUMP", "magic"),
        (b"\x93NUMPY\x01", "truncated"),
        (b"\x93NUMPY\x02\x00\x05", "truncated"),
        (b"\x95CSDAT\x00\x00\x00\x00", "CSDAT"),
        (
            npy_bytes(GOOD.dtype, GOOD.tobytes(), 3)[:6]
            + b"\x04\x00"
            + npy_bytes(GOOD.dtype, GOOD.tobytes(), 3)[8:],
            "version 4.0",
        ),
    ],
)
def test_wrong_magic_and_prefix(tmp_path, data, match):
    _refused(_bad(tmp_path, data), match)


@pytest.mark.parametrize(
    "text",
    [
        "{'descr': [('uid', '<u8')], 'fortran_order': False, 'shape': (3,)",  # no closing brace
        "{'descr': [('uid', '<u8')], 'fortran_order': False}",  # no shape
        "[('uid', '<u8')]",
        "{[1]: 2}",
        "{'descr': [('uid', '<u8')('a', '<f4')], 'fortran_order': False, 'shape': (3,), }",
        "{'descr': [('uid', '<u8')], 'fortran_order': False, 'shape': (007,), }",
        "{'descr': [('uid', '<u8')], 'fortran_order': False, 'shape': (-3,)}",
        "{'descr': [('uid', '<u8')], 'fortran_order': False, 'shape': (3.0,)}",
        "{'descr': [('uid', '<u8', -2)], 'fortran_order': False, 'shape': (3,)}",
        "{'descr': [('uid', 'not a type')], 'fortran_order': False, 'shape': (3,)}",
        "{'descr': __import__('os').system('echo hi'), 'fortran_order': False, 'shape': (3,)}",
        "\xff\xfe",
        "{'descr': " + "[" * 5000 + "]" * 5000 + ", 'fortran_order': False, 'shape': (3,)}",
        "{'descr': " + "(" * 100_000 + ")" * 100_000 + ", 'fortran_order': False, 'shape': (3,)}",
    ],
)
def test_malformed_header(tmp_path, text):
    version = (1, 0) if len(text) < 60_000 else (2, 0)
    _refused(
        _bad(tmp_path, npy_bytes(None, GOOD.tobytes(), text=text, version=version)),
        "header|shape|field description",
    )


def test_header_length_beyond_reason(tmp_path):
    data = b"\x93NUMPY\x02\x00" + (2**32 - 1).to_bytes(4, "little") + b"{}"
    _refused(_bad(tmp_path, data), "header length")
    data = npy_bytes(GOOD.dtype, GOOD.tobytes(), 3, version=(2, 0))
    data = data[:8] + (len(data) * 2).to_bytes(4, "little") + data[12:]
    _refused(_bad(tmp_path, data), "truncated header")


def test_truncated_data_names_expected_and_found_bytes(tmp_path):
    data = npy_bytes(GOOD.dtype, GOOD.tobytes(), 3)
    path = _bad(tmp_path, data[:-5])
    e = _refused(path, "truncated")
    assert "36" in str(e) and "31" in str(e)  # 3 rows x 12 bytes expected, 31 found
    _refused(_bad(tmp_path, npy_bytes(GOOD.dtype, b"", 10**12)), "truncated")


def test_file_shrinking_while_opened(tmp_path, monkeypatch):
    data = npy_bytes(GOOD.dtype, GOOD.tobytes(), 3)
    path = _bad(tmp_path, data[:-5])
    real_fstat = os.fstat

    class Stat:  # the size the file had a moment ago
        def __init__(self, st):
            self.st_size, self.st_mode = len(data), st.st_mode

    monkeypatch.setattr(csfast.format.os, "fstat", lambda fd: Stat(real_fstat(fd)))
    with pytest.raises(CsFormatError, match="truncated"):
        Dataset.load(path)
    with pytest.raises(CsFormatError, match="truncated"):
        Dataset.load(path, mmap=False)


class _Payload:
    """Unpickling this would create a file: proof that nothing was unpickled."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


@pytest.mark.parametrize(
    "descr",
    [
        [("uid", "<u8"), ("o", "|O")],
        [("uid", "<u8"), ("o", "|O", (2,))],
        [("uid", "<u8"), ("nested", [("o", "|O")])],
        "|O",
    ],
)
def test_object_columns_are_never_unpickled(tmp_path, descr):
    marker = tmp_path / "pwned"
    payload = pickle.dumps([_Payload(str(marker))] * 3, protocol=2)
    path = _bad(tmp_path, npy_bytes(descr, payload, 3))
    # the file is live: numpy with allow_pickle=True does run it
    try:
        np.load(path, allow_pickle=True)
    except Exception:
        pass
    assert marker.exists()
    marker.rmdir()
    e = _refused(path, "object|structured")
    assert not marker.exists()
    if isinstance(descr, list):
        assert "pickle" in str(e)


def test_field_named_like_object_type_is_fine(tmp_path):
    arr = np.zeros(2, [("uid", "<u8"), ("O", "<f4"), ("Omega/O", "<u4")])
    ds = Dataset.load(numpy_save(tmp_path / "o.cs", arr))
    assert ds.fields() == ["uid", "O", "Omega/O"]


@pytest.mark.parametrize(
    "text, match",
    [
        ("{'descr': [('uid', '<u8')], 'fortran_order': True, 'shape': (3,)}", "fortran"),
        ("{'descr': [('uid', '<u8')], 'fortran_order': False, 'shape': (3, 1)}", "1-D"),
        ("{'descr': [('uid', '<u8')], 'fortran_order': False, 'shape': ()}", "1-D"),
        ("{'descr': '<u8', 'fortran_order': False, 'shape': (3,)}", "structured"),
        ("{'descr': [], 'fortran_order': False, 'shape': (3,)}", "structured"),
    ],
)
def test_not_a_table(tmp_path, text, match):
    _refused(_bad(tmp_path, npy_bytes(None, bytes(24), text=text)), match)


def test_os_errors_pass_through(tmp_path):
    for load in (csfast.inspect, Dataset.load):
        with pytest.raises(FileNotFoundError):
            load(tmp_path / "missing.cs")
        with pytest.raises(IsADirectoryError):
            load(tmp_path)
    if os.geteuid() != 0:
        path = numpy_save(tmp_path / "locked.cs", GOOD)
        path.chmod(0)
        with pytest.raises(PermissionError):
            Dataset.load(path)
        with pytest.raises(PermissionError):
            csfast.inspect(path)


def test_permission_error_passes_through_even_as_root(tmp_path, monkeypatch):
    path = numpy_save(tmp_path / "t.cs", GOOD)

    def denied(file, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(file))

    monkeypatch.setattr(csfast.format, "open", denied, raising=False)
    for load in (csfast.inspect, Dataset.load, lambda p: Dataset.load(p, mmap=False)):
        with pytest.raises(PermissionError) as e:
            load(path)
        assert not isinstance(e.value, CsError)


# ------------------------------------------------------ atomic save


def _listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_failed_write_leaves_old_file(tmp_path, monkeypatch):
    path = numpy_save(tmp_path / "t.cs", GOOD)
    path.chmod(0o640)
    before, names = path.read_bytes(), _listing(tmp_path)
    ds = Dataset(500)
    ds["a/x"] = np.arange(500, dtype=np.float32)
    real_pack, calls = csfast.dataset._core.pack, []

    def failing_pack(*args):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("boom mid-way")
        return real_pack(*args)

    monkeypatch.setattr(
        csfast.format,
        "iter_chunks",
        lambda rows, size: ((s, min(rows, s + 100)) for s in range(0, rows, 100)),
    )
    monkeypatch.setattr(csfast.dataset._core, "pack", failing_pack)
    with pytest.raises(RuntimeError, match="boom"):
        ds.save(path)
    assert len(calls) == 3  # it failed mid-way, after writing some chunks
    assert path.read_bytes() == before
    assert _listing(tmp_path) == names
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    monkeypatch.undo()
    ds.save(path)  # and a later save works, keeping the permissions
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert same_bytes(numpy_load(path)["a/x"], np.arange(500, dtype=np.float32))


class _FullDisk:
    """A file whose writes fail with ENOSPC once `room` bytes are written."""

    def __init__(self, f, room: int):
        self.f, self.room = f, room

    def write(self, b) -> int:
        b = memoryview(b).cast("B")
        if len(b) > self.room:
            self.f.write(b[: self.room])
            self.room = 0
            raise OSError(errno.ENOSPC, "No space left on device")
        self.room -= len(b)
        return self.f.write(b)

    def __getattr__(self, name):
        return getattr(self.f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()


@pytest.mark.parametrize("room", [0, 100, 5000])
def test_disk_full_leaves_old_file(tmp_path, monkeypatch, room):
    path = numpy_save(tmp_path / "t.cs", GOOD)
    before, names = path.read_bytes(), _listing(tmp_path)
    real_file = csfast.format._CompleteFile
    monkeypatch.setattr(
        csfast.format, "_CompleteFile", lambda *a, **k: _FullDisk(real_file(*a, **k), room)
    )
    with pytest.raises(OSError) as e:
        Dataset(1000).save(path)
    assert e.value.errno == errno.ENOSPC
    assert path.read_bytes() == before
    assert _listing(tmp_path) == names


def test_save_fsyncs_before_rename(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(
        csfast.format.os,
        "fsync",
        lambda fd: events.append(("fsync", stat.S_ISDIR(os.fstat(fd).st_mode))) or real_fsync(fd),
    )
    monkeypatch.setattr(
        csfast.format.os,
        "replace",
        lambda a, b: events.append(("replace", Path(b).name)) or real_replace(a, b),
    )
    Dataset(10).save(tmp_path / "d.cs")
    # the data reaches the disk before the name points at it, then the folder entry
    assert events == [("fsync", False), ("replace", "d.cs"), ("fsync", True)]
    assert numpy_load(tmp_path / "d.cs").shape == (10,)


def test_save_new_file_and_missing_folder(tmp_path):
    umask = os.umask(0o022)
    try:
        Dataset(3).save(tmp_path / "new.cs")
    finally:
        os.umask(umask)
    assert stat.S_IMODE((tmp_path / "new.cs").stat().st_mode) == 0o644
    assert _listing(tmp_path) == ["new.cs"]
    with pytest.raises(FileNotFoundError):
        Dataset(3).save(tmp_path / "no" / "such" / "dir.cs")
    (tmp_path / "taken.cs").mkdir()
    with pytest.raises(IsADirectoryError):
        Dataset(3).save(tmp_path / "taken.cs")
    assert _listing(tmp_path) == ["new.cs", "taken.cs"]  # no temporary file left
    # a str path gets no ".npy" suffix (numpy.save through a path would add one)
    Dataset(2).save(str(tmp_path / "plain.cs"))
    assert (tmp_path / "plain.cs").exists()
