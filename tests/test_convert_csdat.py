"""CSDAT (cryosparc-tools' stream format): interop with cryosparc-tools both ways,
the LZ4 block codec against cryosparc-tools' own, and malformed input."""

import io
import json
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import csfast
from csfast import _lz4, csdat
from csfast.errors import CsFieldError, CsFormatError
from csfast.synthetic import particles

_cryosparc_dataset = pytest.importorskip("cryosparc.dataset")
CSDAT_FORMAT, CsDataset = _cryosparc_dataset.CSDAT_FORMAT, _cryosparc_dataset.Dataset
Stream = pytest.importorskip("cryosparc.dataset.core").Stream


def _cs_tools_table(n: int = 300) -> CsDataset:
    rng = np.random.default_rng(5)
    paths = np.array([f"J{i}/extract/mic_{i:04d}_ü.mrc" for i in range(7)], dtype=object)
    return CsDataset([
        ("uid", rng.integers(0, 2**64, n, dtype=np.uint64, endpoint=False)),
        ("blob/path", paths[rng.integers(0, 7, n)]),
        ("blob/idx", np.arange(n, dtype=np.uint32)),
        ("blob/shape", np.full((n, 2), 256, dtype=np.uint32)),
        ("ctf/type", np.array(["spa", ""] * (n // 2) + ["spa"] * (n % 2), dtype=object)),
        ("alignments3D/pose", rng.standard_normal((n, 3)).astype(np.float32)),
        ("alignments3D/error", rng.standard_normal(n).astype(np.float64)),
        ("pick_stats/template_idx", rng.integers(-5, 5, n).astype(np.int32)),
    ])


def _assert_matches_cs_tools(ds: csfast.Dataset, cd: CsDataset) -> None:
    assert ds.fields() == list(cd.fields())
    assert len(ds) == len(cd)
    for name in cd.fields():
        ref = cd[name]
        if ref.dtype == object:  # cryosparc-tools' strings are Python str
            longest = max((len(s.encode()) for s in ref), default=0)
            assert ds[name].dtype == np.dtype(f"S{longest + 1}")
            assert [v.decode() for v in ds[name].tolist()] == list(ref)
        else:
            assert ds[name].dtype == ref.dtype
            assert ds[name].shape == ref.shape
            assert np.array_equal(ds[name], ref)


@pytest.mark.parametrize("compression", [None, "lz4"])
def test_reads_streams_cryosparc_tools_writes(tmp_path, compression):
    cd = _cs_tools_table()
    data = b"".join(bytes(c) for c in cd.stream(compression=compression))
    path = tmp_path / "s.cs"
    path.write_bytes(data)
    _assert_matches_cs_tools(csfast.Dataset.load(path), cd)
    _assert_matches_cs_tools(csfast.Dataset.load(path, mmap=False), cd)
    n, cols = csdat.read(io.BytesIO(data))
    assert n == len(cd) and list(cols) == list(cd.fields())


def test_reads_files_cryosparc_tools_saves(tmp_path):
    cd = _cs_tools_table()
    cd.save(tmp_path / "saved.cs", format=CSDAT_FORMAT)  # lz4-compressed
    ds = csfast.Dataset.load(tmp_path / "saved.cs")
    _assert_matches_cs_tools(ds, cd)
    sub = csfast.Dataset.load(tmp_path / "saved.cs", prefixes=["blob"])
    assert sub.fields() == ["uid", "blob/path", "blob/idx", "blob/shape"]
    assert np.array_equal(sub["blob/idx"], cd["blob/idx"])
    one = csfast.Dataset.load(tmp_path / "saved.cs", fields=["ctf/type"])
    assert one.fields() == ["uid", "ctf/type"]
    with pytest.raises(CsFieldError, match="nope"):
        csfast.Dataset.load(tmp_path / "saved.cs", fields=["nope"])


def test_mapped_uncompressed_columns_are_copy_on_write_views(tmp_path):
    cd = _cs_tools_table()
    (tmp_path / "u.cs").write_bytes(b"".join(bytes(c) for c in cd.stream(compression=None)))
    frozen = csfast.Dataset.load(tmp_path / "u.cs", writable=False)
    assert not frozen["alignments3D/pose"].flags.writeable
    ds = csfast.Dataset.load(tmp_path / "u.cs")
    assert not ds["alignments3D/pose"].flags.owndata  # a view of the map, not a copy
    ds["alignments3D/pose"][0] = 7  # in place, in this dataset's private pages
    assert (ds["alignments3D/pose"][0] == 7).all()
    assert np.array_equal(frozen["alignments3D/pose"], cd["alignments3D/pose"])
    ds["alignments3D/pose"] = 0  # the file is untouched
    assert (ds["alignments3D/pose"] == 0).all()
    assert np.array_equal(csfast.Dataset.load(tmp_path / "u.cs")["alignments3D/pose"],
                          cd["alignments3D/pose"])


@pytest.mark.parametrize("compression", [None, "lz4"])
def test_cryosparc_tools_reads_what_csfast_writes(tmp_path, compression):
    ds = particles(400, results=("blob", "ctf", "alignments3D"), seed=2)
    ds["blob/path"] = np.char.add(ds["blob/path"].astype("S40"), "é".encode())
    path = tmp_path / "w.cs"
    csfast.convert.write_csdat(ds, path, compression=compression)
    cd = CsDataset.load(path)
    assert list(cd.fields()) == ds.fields()
    for name in ds.fields():
        col = ds[name]
        if col.dtype.kind == "S":
            assert list(cd[name]) == [v.decode() for v in col.tolist()]
        else:
            assert cd[name].dtype == col.dtype and np.array_equal(cd[name], col)
    header = CsDataset.inspect(path)
    assert header["compression"] == compression
    assert ("uid" in header["compressed_fields"]) is False


def test_empty_table_both_ways(tmp_path):
    cd = CsDataset.allocate(0, [("uid", "<u8"), ("blob/path", "O"), ("x", "<f4", (3,))])
    (tmp_path / "e.cs").write_bytes(b"".join(bytes(c) for c in cd.stream()))
    ds = csfast.Dataset.load(tmp_path / "e.cs")
    assert len(ds) == 0 and ds.fields() == ["uid", "blob/path", "x"]
    assert ds["x"].shape == (0, 3) and ds["x"].dtype == np.float32
    csfast.convert.write_csdat(ds, tmp_path / "e2.cs")
    back = CsDataset.load(tmp_path / "e2.cs")
    assert len(back) == 0 and list(back.fields()) == ["uid", "blob/path", "x"]


def test_string_heap_holds_each_distinct_string_once():
    ds = csfast.Dataset({"uid": np.arange(6, dtype=np.uint64),
                         "a": np.array([b"x", b"y", b"x", b"", b"x", b"y"]),
                         "b": np.array([b"y"] * 6)})
    data = b"".join(bytes(c) for c in csdat.stream(ds.cols(), 6, compression=None))
    heap = data[data.rindex(b"\0x\0") :]
    assert heap == b"\0x\0y\0"  # a leading NUL (offset 0 is ""), then x and y once each


@settings(max_examples=80, deadline=None)
@given(st.binary(max_size=3000), st.integers(1, 40))
def test_lz4_codec_interoperates_with_cryosparc_tools(data, repeat):
    raw = np.frombuffer(data * (repeat if len(data) < 100 else 1), dtype=np.uint8)
    if raw.size == 0:
        return
    ours = bytes(_lz4.compress(raw))
    out = np.empty_like(raw)
    Stream().decompress_numpy(ours, out)  # cryosparc-tools decodes our blocks
    assert out.tobytes() == raw.tobytes()
    stream = Stream()  # its result views the Stream's buffer: keep it alive while copying
    theirs = bytes(stream.compress_numpy(np.ascontiguousarray(raw)))
    back = bytearray(raw.size)
    _lz4.decompress(theirs, back)  # and we decode theirs
    assert bytes(back) == raw.tobytes()


def test_lz4_refuses_corrupt_blocks():
    raw = np.tile(np.arange(50, dtype=np.uint8), 40)
    block = bytes(_lz4.compress(raw))
    with pytest.raises(CsFormatError, match="expected"):
        _lz4.decompress(block, bytearray(raw.size + 1), "f")
    with pytest.raises(CsFormatError):
        _lz4.decompress(block[: len(block) // 2], bytearray(raw.size), "f")
    bad_offset = bytes([0x04]) + b"abcd" + b"\xff\xff" + bytes([0x40]) + b"wxyz"
    with pytest.raises(CsFormatError, match="corrupt"):
        _lz4.decompress(bad_offset, bytearray(64), "f")


def _stream(header: dict, body: bytes = b"") -> bytes:
    raw = json.dumps(header).encode()
    return b"\x95CSDAT" + struct.pack("<I", len(raw)) + raw + body


def test_malformed_streams_raise_format_errors(tmp_path):
    good = {"length": 2, "dtype": [["uid", "<u8"]], "compression": None,
            "compressed_fields": []}
    cases = {
        "truncated CSDAT header": b"\x95CSDAT\x10\x00\x00\x00{",
        "malformed": b"\x95CSDAT\x03\x00\x00\x00{{{",
        "no valid .length.": _stream({**good, "length": -1}),
        "compression": _stream({**good, "compression": "zstd"}),
        "unknown fields": _stream({**good, "compression": "lz4", "compressed_fields": ["nope"]}),
        "truncated at field": _stream(good, struct.pack("<I", 16) + b"\0" * 8),
        "holds 8 bytes": _stream(good, struct.pack("<I", 8) + b"\0" * 8),
        "string sub-arrays": _stream({**good, "dtype": [["uid", "<u8"], ["o", "|O", [2]]]}),
        "unsupported dtype": _stream({**good, "dtype": [["uid", "<u8"], ["z", "S0"]]}),
        "cannot hold": _stream({"length": 2**40, "dtype": [["x", "<f4"], ["uid", "<u8"]],
                                "compression": "lz4", "compressed_fields": ["x"]},
                               struct.pack("<I", 4) + b"\0" * 4),
    }
    for i, (message, data) in enumerate(cases.items()):
        path = tmp_path / f"bad{i}.cs"
        path.write_bytes(data)
        with pytest.raises(CsFormatError, match=message):
            csfast.Dataset.load(path)
    strings = {"length": 1, "dtype": [["uid", "<u8"], ["s", "|O"]], "compression": None,
               "compressed_fields": []}
    body = struct.pack("<I", 8) + b"\1" * 8 + struct.pack("<I", 8) + struct.pack("<Q", 99)
    with pytest.raises(CsFormatError, match="beyond the string heap"):
        csdat.read(_stream(strings, body + b"\0ab\0"))
    body = struct.pack("<I", 8) + b"\1" * 8 + struct.pack("<I", 8) + struct.pack("<Q", 1)
    with pytest.raises(CsFormatError, match="unterminated"):
        csdat.read(_stream(strings, body + b"\0ab"))
    with pytest.raises(CsFormatError, match="heap does not start with a NUL"):
        csdat.read(_stream(strings, body + b"xab\0"))


def _string_stream(offsets: np.ndarray, heap: bytes, compress: bool) -> bytes:
    """A CSDAT stream of uid + one string field s with the given heap offsets."""
    n = len(offsets)
    raw = np.asarray(offsets, dtype="<u8").tobytes()
    col = _lz4.compress(raw) if compress else raw
    header = {"length": n, "dtype": [["uid", "<u8"], ["s", "|O"]],
              "compression": "lz4" if compress else None,
              "compressed_fields": ["s"] if compress else []}
    uid = np.arange(n, dtype="<u8").tobytes()
    return _stream(header, struct.pack("<I", len(uid)) + uid + struct.pack("<I", len(col))
                   + bytes(col) + heap)


def _peak(fn) -> int:
    """Peak bytes traced (numpy reports its allocations to tracemalloc) while fn runs."""
    import tracemalloc

    tracemalloc.start()
    try:
        fn()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


@pytest.mark.parametrize("compress", [False, True])
def test_string_bombs_are_refused_before_allocating(tmp_path, compress):
    # 200k rows naming one 60 kB string: 12 GB as S60001, from a file of
    # 1.7 MB (uid) + the string; and 60k distinct suffixes of one string
    # (quadratic: 3.6 GB).
    long = b"\0" + b"a" * 60_000 + b"\0"
    bombs = {"same": _string_stream(np.ones(200_000, dtype=np.uint64), long, compress),
             "suffixes": _string_stream(np.arange(1, 60_001, dtype=np.uint64), long, compress)}
    for label, data in bombs.items():
        path = tmp_path / f"{label}.cs"
        path.write_bytes(data)
        with pytest.raises(CsFormatError, match=r"field 's'.*would take") as e:
            csfast.Dataset.load(path)
        assert str(path) in str(e.value)

        def refused(data=data):
            with pytest.raises(CsFormatError, match=r"<bytes>: field 's'.*would take"):
                csdat.read(data)

        assert _peak(refused) < 20 * len(data) + (8 << 20)
    # The same shape at a sane size reads, every row the right string.
    ok = _string_stream(np.array([1, 1, 5, 0], dtype=np.uint64), b"\0abc\0de\0", compress)
    n, cols = csdat.read(ok)
    assert n == 4 and cols["s"].tolist() == [b"abc", b"abc", b"de", b""]
    assert cols["s"].dtype == np.dtype("S4")


def test_string_longer_than_the_limit_is_refused():
    heap = b"\0" + b"x" * (csdat.MAX_STRING_BYTES + 1) + b"\0"
    with pytest.raises(CsFormatError, match=f"beyond the {csdat.MAX_STRING_BYTES}"):
        csdat.read(_string_stream(np.ones(1, dtype=np.uint64), heap, False))
    heap = b"\0" + b"x" * csdat.MAX_STRING_BYTES + b"\0"
    n, cols = csdat.read(_string_stream(np.ones(2, dtype=np.uint64), heap, False))
    assert cols["s"].dtype.itemsize == csdat.MAX_STRING_BYTES + 1
    assert cols["s"][1] == heap[1:-1]


def test_hostile_headers_raise_format_errors(tmp_path):
    good = {"length": 2, "dtype": [["uid", "<u8"]], "compression": None,
            "compressed_fields": []}
    cases = {
        "zero bytes": _stream({**good, "length": 2**40, "dtype": []}),
        "zero bytes ": _stream({**good, "length": 2**40, "dtype": [["uid", "<u8", [0]]]}),
        "invalid dtype": _stream({**good, "dtype": [["uid", "(2,)f4,"]]}),
        "invalid dtype ": _stream({**good, "dtype": [["uid", "f4,i4"]]}),
        "invalid shape": _stream({**good, "dtype": [["uid", "<u8", [2**31]]]}),
        "more than 2 GiB": _stream({**good, "dtype": [["uid", "<u8", [2**30, 4]]]}),
        "beyond the 1048576": b"\x95CSDAT" + struct.pack("<I", 2**20 + 1) + b" " * (2**20 + 1),
        "invalid CSDAT field entry": _stream({**good, "dtype": [["", "<u8"]]}),
    }
    deep = b"[" * 100_000 + b"]" * 100_000
    cases["malformed"] = b"\x95CSDAT" + struct.pack("<I", len(deep)) + deep
    for i, (message, data) in enumerate(cases.items()):
        path = tmp_path / f"bad{i}.cs"
        path.write_bytes(data)
        with pytest.raises(CsFormatError, match=message.strip()) as e:
            csfast.Dataset.load(path)
        assert str(path) in str(e.value)
