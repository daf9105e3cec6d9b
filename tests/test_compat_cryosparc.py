"""The same script on cryosparc-tools' Dataset and on csfast's: every result compared.

``script`` is what a user of cryosparc-tools writes; it takes the Dataset
class and runs on one .cs file that numpy writes. Every value it records must
be equal between the two libraries, except the documented differences in
``DIFFERENT`` (README, "Differences from the cryosparc-tools Dataset"), each
asserted as it is: a known, deliberate answer, not a silent one.
"""

import hashlib
import io
import os

import numpy as np
import pytest

import csfast
from csfast.synthetic import particles

cryosparc_dataset = pytest.importorskip("cryosparc.dataset")
Tools = cryosparc_dataset.Dataset


@pytest.fixture(scope="module")
def table_path(tmp_path_factory):
    """A particle table written by numpy itself (paths with a non-ASCII character)."""
    ds = particles(120, results=("blob", "ctf", "alignments3D"), seed=7, micrographs=5)
    rec = ds.to_records()
    rec["blob/path"][::7] = "J9/é.mrc".encode()
    path = tmp_path_factory.mktemp("compat") / "particles.cs"
    with open(path, "wb") as f:  # np.save(path) would append .npy
        np.save(f, rec)
    return path


def _sha(path) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def script(D, path, tmp) -> dict:
    """A cryosparc-tools script; returns every value it computes, by name."""
    out = {}
    ds = D.load(path)
    out["len"] = len(ds)
    out["fields"] = ds.fields()
    out["prefixes"] = sorted(ds.prefixes())
    out["keys"] = list(ds.keys())
    out["contains"] = ("uid" in ds, "nope" in ds)
    out["get missing"] = ds.get("nope", 7)
    out["items first"] = list(ds.items())[0][0]
    out["descr"] = ds.descr()
    out["inspect"] = D.inspect(path)

    # strings compare with str
    first = ds["blob/path"][0]
    out["element is str"] = isinstance(first, str)
    out["== str"] = int((ds["blob/path"] == "J9/é.mrc").sum())
    out["== first"] = int((ds["blob/path"] == first).sum())
    out["!= str"] = int((ds["blob/path"] != "J9/é.mrc").sum())
    out["np.isin str"] = int(np.isin(ds["blob/path"], ["J9/é.mrc", first]).sum())
    out["str in column"] = "J9/é.mrc" in ds["blob/path"]
    out["query str"] = ds.query({"blob/path": ["J9/é.mrc", first]})["uid"]
    out["query scalar str"] = ds.query({"blob/path": "J9/é.mrc"})["uid"]

    # rows
    rows = ds.rows()
    out["rows"] = len(rows)
    out["row 3 idx"] = ds[3]["blob/idx"]
    out["row 3 path"] = ds[3]["blob/path"]
    out["row -1 uid"] = ds[-1]["uid"]
    out["row slice"] = [r["uid"] for r in ds[2:5]]
    out["row keys"] = list(ds[0].keys())
    out["row to_dict scalars"] = {k: v for k, v in ds[1].to_dict().items() if np.ndim(ds[k]) == 1}
    out["row to_dict sub-array"] = ds[1].to_dict()["blob/shape"]
    out["row to_list scalars"] = [
        v for k, v in zip(ds.fields(), ds[2].to_list(), strict=True) if np.ndim(ds[k]) == 1
    ]
    out["row item"] = (ds[4].item("blob/idx"), ds[4].item("nope", "default"))
    out["subset"] = ds.subset(rows[::9])["uid"]
    out["query row function"] = ds.query(lambda row: row["blob/idx"] % 3 == 0)["uid"]
    scalars = ds.filter_fields([k for k in ds.fields() if np.ndim(ds[k]) == 1], copy=True)
    out["to_list"] = scalars.to_list()

    # edits in place: the dataset changes, the file and other loads do not
    before = _sha(path)
    other = D.load(path)
    ds["ctf/df1_A"] += 1
    ds["ctf/df2_A"][5] = 123.5
    ds["ctf/shift_A"][:, 0] *= 2
    row = ds[6]
    row["blob/idx"] = 999
    row["blob/path"] = "J1/edited.mrc"
    out["after += 1"] = np.array(ds["ctf/df1_A"])
    out["after item edit"] = np.array(ds["ctf/df2_A"])
    out["after sub-array edit"] = np.array(ds["ctf/shift_A"])
    out["after row edit"] = (ds["blob/idx"][6], ds["blob/path"][6])
    out["other load unchanged"] = np.array(other["ctf/df1_A"])
    out["file unchanged"] = _sha(path) == before
    # edits after a subset do not reach the subset
    sub = ds.take([0, 1, 2])
    ds["ctf/df1_A"] += 1
    out["subset before edit"] = sub["ctf/df1_A"]

    # extend in place
    a, b = ds.slice(0, 10), ds.slice(10, 25)
    out["extend"] = a.extend(b) is a
    out["extend uids"] = a["uid"]
    out["extend paths"] = a["blob/path"]

    # save and load: paths, file objects, CSDAT, streams
    ds.save(os.path.join(tmp, f"{D.__module__}.cs"))
    out["save/load path"] = D.load(os.path.join(tmp, f"{D.__module__}.cs"))["blob/path"]
    buf = io.BytesIO()
    ds.save(buf)
    buf.seek(0)
    out["save/load file object"] = D.load(buf)["ctf/df1_A"]
    csdat = os.path.join(tmp, f"{D.__module__}.csdat")
    ds.save(csdat, format=cryosparc_dataset.CSDAT_FORMAT)
    back = D.load(csdat)
    out["CSDAT path"] = (back["blob/path"], back["ctf/shift_A"], back["uid"])
    out["inspect CSDAT"] = D.inspect(csdat)
    streamed = io.BytesIO(b"".join(bytes(c) for c in ds.stream()))
    back = D.load(streamed)
    out["stream"] = (back["blob/path"], back["alignments3D/pose"])
    return out


# What differs, and the answer each library gives (README table).
DIFFERENT = {
    # cryosparc-tools describes string columns as Python objects; csfast gives the
    # stored fixed width (descr(strings="str") gives cryosparc-tools' answer).
    "descr": lambda tools, ours: (
        [f for f in tools if f[1] != "|O"] == [f for f in ours if f[1][1] != "S"]
        and all(f[1] == "|O" for f in tools if f[0] == "blob/path")
        and all(f[1].startswith("|S") for f in ours if f[0] == "blob/path")
    ),
    # cryosparc-tools' Row.to_dict gives col.item(idx): element idx of the
    # flattened sub-array column, not the row's values; csfast gives the row as a list.
    "row to_dict sub-array": lambda tools, ours: isinstance(tools, int) and ours == [256, 256],
}


def _plain(x):
    """Results as comparable Python values: strings as str, arrays as nested lists."""
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return type(x)(_plain(v) for v in x)
    if isinstance(x, np.ndarray):
        if x.dtype.kind == "S":
            return [_plain(v) for v in x.view(np.ndarray).tolist()]
        return _plain(x.tolist())
    if isinstance(x, bytes):
        return x.decode()
    if isinstance(x, np.generic):
        return x.item()
    return x


def test_same_script_same_results(table_path, tmp_path):
    tools = script(Tools, table_path, str(tmp_path))
    ours = script(csfast.Dataset, table_path, str(tmp_path))
    assert tools.keys() == ours.keys()
    same = [k for k in tools if k not in DIFFERENT]
    for k in same:
        assert _plain(tools[k]) == _plain(ours[k]), k
    for k, documented in DIFFERENT.items():
        assert _plain(tools[k]) != _plain(ours[k]), f"{k} is now the same: update DIFFERENT"
        assert documented(_plain(tools[k]), _plain(ours[k])), k
    # the values are what numpy reads from the file, not just equal to each other
    ref = np.load(table_path)
    assert ours["== str"] == int((ref["blob/path"] == "J9/é.mrc".encode()).sum()) > 0
    assert ours["after += 1"].tolist() == (ref["ctf/df1_A"] + 1).tolist()


def test_descr_strings_as_cryosparc_tools(table_path):
    ours, tools = csfast.Dataset.load(table_path), Tools.load(table_path)
    assert ours.descr(strings="str") == tools.descr()
    assert ours.descr(exclude_uid=True, strings="str") == tools.descr(exclude_uid=True)
    with pytest.raises(ValueError):
        ours.descr(strings="object")


def test_bytes_load_like_a_file_object(table_path):
    data = table_path.read_bytes()
    a = csfast.Dataset.load(data)
    b = csfast.Dataset.load(bytearray(data))
    ref = np.load(table_path)
    for ds in (a, b):
        assert ds["uid"].tolist() == ref["uid"].tolist()
    b["ctf/df1_A"] += 1  # never aliases the caller's buffer
    assert bytes(data) == table_path.read_bytes()
    with pytest.raises(csfast.CsFormatError, match="neither"):
        csfast.Dataset.load(b"not a table at all")
