"""csfast.tables: one answer to ".cs or CSDAT", for headers and columns, checked
against files numpy and cryosparc-tools write."""

import io

import numpy as np
import pytest

import csfast
from csfast import tables
from csfast.errors import CsFieldError, CsFormatError

cryosparc_dataset = pytest.importorskip("cryosparc.dataset")


def _table(n: int = 50) -> np.ndarray:
    rng = np.random.default_rng(3)
    arr = np.zeros(
        n,
        dtype=[
            ("uid", "<u8"),
            ("blob/path", "S12"),
            ("blob/idx", "<u4"),
            ("alignments2D/shift", "<f4", (2,)),
        ],
    )
    arr["uid"] = rng.integers(1, 2**63, n, dtype=np.uint64)
    arr["blob/path"] = [f"mic_{i % 3}.mrc".encode() for i in range(n)]
    arr["blob/idx"] = np.arange(n)
    arr["alignments2D/shift"] = rng.standard_normal((n, 2))
    return arr


def _save_csdat(arr: np.ndarray, path) -> None:
    """The table as cryosparc-tools writes it (strings as objects, LZ4)."""
    cols = [
        (k, arr[k].astype(object) if arr[k].dtype.kind == "S" else arr[k]) for k in arr.dtype.names
    ]
    cd = cryosparc_dataset.Dataset(
        [
            (k, np.array([v.decode() for v in c], dtype=object)) if c.dtype == object else (k, c)
            for k, c in cols
        ]
    )
    cd.save(path, format=cryosparc_dataset.CSDAT_FORMAT)


def test_inspect_tells_either_kind_by_its_magic(tmp_path):
    arr = _table()
    np.save(tmp_path / "a.npy", arr)
    (tmp_path / "a.npy").rename(tmp_path / "plain.csdat")  # a misleading name
    _save_csdat(arr, tmp_path / "stream.cs")
    cs, cd = csfast.inspect(tmp_path / "plain.csdat"), csfast.inspect(tmp_path / "stream.cs")
    assert (cs.kind, cd.kind) == ("cs", "csdat")
    assert cs.rows == cd.rows == len(arr)
    assert cs.dtype == arr.dtype and cs.version == (1, 0) and cs.compression is None
    assert cd.dtype.names == arr.dtype.names and cd.version == (0, 0)
    assert cd.string_fields == {"blob/path"} and cd.compression == "lz4"
    assert dict((n, d) for n, d, _ in cd.fields)["blob/path"] == "|O"
    assert cd.compressed_fields == set(arr.dtype.names) - {"uid"}
    assert cs.file_size == (tmp_path / "plain.csdat").stat().st_size


@pytest.mark.parametrize("kind", ["cs", "csdat"])
@pytest.mark.parametrize("how", ["path", "bytes", "stream"])
def test_open_columns_of_either_kind(tmp_path, kind, how):
    arr = _table()
    path = tmp_path / "t.cs"
    if kind == "cs":
        with open(path, "wb") as f:
            np.save(f, arr)
    else:
        _save_csdat(arr, path)
    source = {"path": path, "bytes": path.read_bytes(), "stream": io.BytesIO(path.read_bytes())}[
        how
    ]
    opened = tables.open_columns(source, ["blob/idx", "alignments2D/shift"])
    assert opened.info.kind == kind and opened.info.rows == len(arr)
    assert list(opened.columns) == ["blob/idx", "alignments2D/shift"]
    for k, col in opened.columns.items():
        np.testing.assert_array_equal(col, arr[k])
    assert bool(opened.maps) == (how == "path" and kind == "cs")
    chosen = tables.open_columns(
        source if how != "stream" else io.BytesIO(path.read_bytes()),
        lambda info: [n for n in info.dtype.names if "/" not in n],
    )
    assert list(chosen.columns) == ["uid"]


def test_open_columns_names_what_is_missing(tmp_path):
    np.save(tmp_path / "t.npy", _table())
    with pytest.raises(CsFieldError, match="no fields \\['ctf/type'\\]"):
        tables.open_columns(tmp_path / "t.npy", ["uid", "ctf/type"])
    with pytest.raises(CsFormatError, match="neither a .cs file nor a CSDAT stream"):
        tables.open_columns(b"PK\x03\x04 a zip file")


def test_dataset_inspect_reports_either_kind_as_cryosparc_tools_does(tmp_path):
    arr = _table()
    _save_csdat(arr, tmp_path / "t.csdat")
    ours = csfast.Dataset.inspect(tmp_path / "t.csdat")
    theirs = cryosparc_dataset.Dataset.inspect(tmp_path / "t.csdat")
    assert ours["length"] == theirs["length"]
    assert [tuple(f) for f in ours["dtype"]] == [tuple(f) for f in theirs["dtype"]]
    assert ours["compression"] == theirs["compression"]
    assert sorted(ours["compressed_fields"]) == sorted(theirs["compressed_fields"])
