"""Editable loaded datasets (private copy-on-write maps), file descriptors, and
string columns that compare with str. References: numpy's own reading of the
file (np.load), sha256 of the file bytes, and numpy on decoded strings."""

import hashlib
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import csfast
from csfast import CsFieldError, Dataset
from csfast.column import StrColumn
from csfast.synthetic import particles


@pytest.fixture
def table(tmp_path):
    ds = particles(3000, results=("blob", "ctf", "alignments3D"), seed=3, micrographs=9)
    path = tmp_path / "t.cs"
    with open(path, "wb") as f:
        np.save(f, ds.to_records())
    return path, np.load(path)


def _sha(path) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _is_map_view(col: np.ndarray) -> bool:
    return csfast.format.file_map_of(col) is not None


def test_two_loads_edit_one(table):
    path, ref = table
    before = _sha(path)
    a, b = Dataset.load(path), Dataset.load(path)
    a["ctf/df1_A"] += 1
    a["ctf/shift_A"][7] = (-1, -2)
    a[9]["alignments3D/class"] = 77
    a["blob/path"][3] = "J1/x.mrc"
    assert _is_map_view(a["ctf/df1_A"])  # edited in place: still the map, no copy
    assert a["ctf/df1_A"].tolist() == (ref["ctf/df1_A"] + 1).tolist()
    assert a["ctf/shift_A"][7].tolist() == [-1, -2]
    assert a["alignments3D/class"][9] == 77 and a["blob/path"][3] == "J1/x.mrc"
    assert _sha(path) == before  # the file never changes
    for name in ref.dtype.names:  # nor does another load of it
        assert np.array_equal(b[name], ref[name]), name
        assert np.array_equal(Dataset.load(path)[name], ref[name]), name


def test_edits_never_cross_between_a_dataset_and_its_subsets(table):
    path, ref = table
    ds = Dataset.load(path)
    idx = np.array([5, 0, 2999, 17])
    lazy = ds.take(idx)  # lazy rows of the map
    sliced = ds.slice(10, 20)  # views of the map
    ds["ctf/df1_A"] += 1  # the map is shared now: this copies the column
    ds["ctf/df2_A"][10] = -5
    assert lazy["ctf/df1_A"].tolist() == ref["ctf/df1_A"][idx].tolist()
    assert sliced["ctf/df2_A"].tolist() == ref["ctf/df2_A"][10:20].tolist()
    lazy["ctf/df2_A"][0] = 1e6
    sliced["ctf/df1_A"][:] = 0
    assert ds["ctf/df2_A"][5] == ref["ctf/df2_A"][5] and ds["ctf/df2_A"][10] == -5
    assert ds["ctf/df1_A"][10:20].tolist() == (ref["ctf/df1_A"][10:20] + 1).tolist()
    # a column edited before a subset: the subset sees the edit, later edits stay apart
    col = ds["blob/idx"]
    col[0] = 4242
    sub = ds.take([0, 1])
    col[1] = 4343  # through the array the user kept
    assert sub["blob/idx"].tolist() == [4242, ref["blob/idx"][1]]
    parts = ds.split_by("alignments3D/class")
    first = next(iter(parts.values()))
    first["blob/idx"][0] = 1
    assert ds["blob/idx"][2:].tolist() == ref["blob/idx"][2:].tolist()


def test_read_only_load_keeps_the_old_behaviour(table):
    path, ref = table
    ds = Dataset.load(path, writable=False)
    with pytest.raises(ValueError, match="read-only"):
        ds["ctf/df1_A"] += 1
    sub = ds.take([1, 2])
    with pytest.raises(ValueError, match="read-only"):
        sub["ctf/df1_A"][0] = 1
    ds["ctf/df1_A"] = 0.5  # assigning a whole column still works (an owned copy)
    assert (ds["ctf/df1_A"] == 0.5).all()
    assert np.array_equal(Dataset.load(path)["ctf/df1_A"], ref["ctf/df1_A"])


def test_a_refused_writable_map_falls_back_to_a_copy(table, monkeypatch):
    path, ref = table
    monkeypatch.setattr(csfast.dataset, "writable_view", lambda col: None)
    ds = Dataset.load(path)
    ds["ctf/df1_A"] *= 2
    assert not _is_map_view(ds["ctf/df1_A"]) and _is_map_view(ds.view("blob/idx"))
    assert ds["ctf/df1_A"].tolist() == (ref["ctf/df1_A"] * 2).tolist()


def test_csdat_columns_are_editable_too(tmp_path, table):
    _, ref = table
    path = tmp_path / "t.csdat"
    Dataset(ref).save(path, format=csfast.dataset.CSDAT_FORMAT)
    plain = tmp_path / "u.csdat"
    csfast.csdat.write(plain, Dataset(ref).cols(), len(ref), compression=None)
    for p in (path, plain):
        before = _sha(p)
        ds = Dataset.load(p)
        ds["ctf/df1_A"] -= 3
        ds["alignments3D/pose"][0] = 0
        assert ds["ctf/df1_A"].tolist() == (ref["ctf/df1_A"] - 3).tolist()
        assert _sha(p) == before
        assert np.array_equal(Dataset.load(p)["alignments3D/pose"], ref["alignments3D/pose"])


def test_thousands_of_loads_hold_no_descriptors(tmp_path):
    ds = particles(50, results=("blob", "ctf"), seed=1)
    ds.save(tmp_path / "a.cs")
    csfast.csdat.write(tmp_path / "a.csdat", ds.cols(), len(ds), compression=None)
    code = textwrap.dedent(f"""
        import resource, numpy as np, csfast
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))
        ref = np.load({str(tmp_path / "a.cs")!r})
        kept = [csfast.Dataset.load({str(tmp_path)!r} + ("/a.cs" if i % 2 else "/a.csdat"))
                for i in range(2000)]
        assert all(np.array_equal(d["ctf/df1_A"], ref["ctf/df1_A"]) for d in kept)
        assert all(np.array_equal(d["blob/path"], ref["blob/path"]) for d in kept[::97])
        print(len(kept))
    """)
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip() == "2000"


# ------------------------------------------------------------- strings


def test_string_columns_compare_with_str(table):
    path, ref = table
    ds = Dataset.load(path)
    col = ds["blob/path"]
    assert isinstance(col, StrColumn) and np.shares_memory(col, ds.view("blob/path"))
    text = np.char.decode(ref["blob/path"], "utf-8")  # numpy's own str column
    some = text[100]
    assert (col == some).sum() == (text == some).sum() > 0
    assert (col != some).sum() == (text != some).sum()
    assert (col < some).tolist() == (text < some).tolist()  # UTF-8 byte order is code point order
    assert np.isin(col, [some, "nope"]).tolist() == np.isin(text, [some, "nope"]).tolist()
    assert np.isin(col, np.array([some])).sum() == (text == some).sum()
    assert some in col and "nope" not in col
    assert (col == some.encode()).sum() == (text == some).sum()  # bytes still work
    assert np.char.startswith(col, some[:6]).tolist() == np.char.startswith(text, some[:6]).tolist()
    assert type(col == some) is np.ndarray  # results are plain arrays
    assert col[3] == text[3] and list(col[:4]) == text[:4].tolist()  # elements as str
    assert isinstance(col[2:9], StrColumn) and np.shares_memory(col[2:9], col)
    assert ds.query({"blob/path": [some]})["uid"].tolist() == ref["uid"][text == some].tolist()
    assert ds.decode("blob/path").tolist() == text.tolist()


def test_string_assignment_encodes_and_never_cuts(table):
    path, ref = table
    ds = Dataset.load(path)
    col = ds["blob/path"]
    width = col.dtype.itemsize
    col[0] = "é" * (width // 2)
    assert ds["blob/path"][0] == "é" * (width // 2)
    col[1:3] = ["a.mrc", "b.mrc"]
    assert ds["blob/path"][1:3].tolist() == [b"a.mrc", b"b.mrc"]
    with pytest.raises(CsFieldError, match="does not fit"):
        col[4] = "x" * (width + 1)
    with pytest.raises(CsFieldError, match="does not fit"):
        col[4:6] = ["ok", "é" * width]
    with pytest.raises(CsFieldError, match="does not fit"):
        col[4] = b"y" * (width + 1)
    assert ds["blob/path"][4:6].tolist() == ref["blob/path"][4:6].tolist()  # nothing cut
    ds["blob/path"] = ["x" * (width + 5)] * len(ds)  # a whole column widens
    assert ds["blob/path"][0] == "x" * (width + 5)


def test_whole_column_assignment_replaces_a_mapped_column(table):
    path, ref = table
    ds = Dataset.load(path)
    held = ds["ctf/df1_A"]
    ds["ctf/df1_A"] = ds["ctf/df1_A"] * 2  # a new column: the map's pages stay untouched
    assert not _is_map_view(ds["ctf/df1_A"]) and ds["ctf/df1_A"].flags.c_contiguous
    assert ds["ctf/df1_A"].tolist() == (ref["ctf/df1_A"] * 2).tolist()
    assert held.tolist() == ref["ctf/df1_A"].tolist()  # the old column, as documented
    col = ds["ctf/df2_A"]
    col += 1  # ds[f] += 1 hands the same array back: kept in place, not copied
    ds["ctf/df2_A"] = col
    assert _is_map_view(ds["ctf/df2_A"]) and np.shares_memory(ds["ctf/df2_A"], col)


def test_str_column_conversions_are_plain_arrays(table):
    path, ref = table
    col = Dataset.load(path)["blob/path"]
    text = col.astype(str)
    assert type(text) is np.ndarray and text.dtype.kind == "U"
    assert (text == text[5]).sum() == (col == text[5]).sum() > 0
    assert np.char.decode(col.view(np.ndarray)).tolist() == text.tolist()
    assert np.isin(["nope", text[0]], col).tolist() == [False, True]  # StrColumn as the members


@pytest.mark.parametrize("seed", range(6))
def test_random_edits_and_subsets_match_independent_copies(table, seed):
    """Datasets made by loads, subsets, slices and split_by, edited in every way in
    random order, against a model where every dataset is its own numpy copy."""
    path, ref = table
    rng = np.random.default_rng(seed)
    fields = ["ctf/df1_A", "ctf/shift_A", "blob/idx", "blob/path"]
    live: list[tuple[Dataset, dict]] = []

    def model_of(rows):
        return {f: ref[f][rows].copy() for f in fields}

    for _ in range(60):
        op = rng.integers(8) if live else 0
        if op == 0:
            live.append(
                (Dataset.load(path, writable=bool(rng.integers(4))), model_of(np.arange(len(ref))))
            )
            continue
        ds, model = live[rng.integers(len(live))]
        n = len(ds)
        if n == 0:
            continue
        f = fields[rng.integers(len(fields))]
        rows = rng.integers(0, n, size=rng.integers(1, 6))
        try:
            if op == 1:
                live.append((ds.take(rows), {k: v[rows].copy() for k, v in model.items()}))
            elif op == 2:
                a = int(rng.integers(n))
                live.append(
                    (ds.slice(a, a + 50), {k: v[a : a + 50].copy() for k, v in model.items()})
                )
            elif op == 3:
                value, part = next(iter(ds.split_by("blob/idx").items()))
                sel = model["blob/idx"] == value
                live.append((part, {k: v[sel].copy() for k, v in model.items()}))
            elif op == 4 and f != "blob/path":
                ds[f] += 1
                model[f] += 1
            elif op == 5:
                new = model[f][rows[:1]].copy() if f == "blob/path" else model[f][:1] * 0 + 7
                ds[f][rows[0]] = new[0].decode() if f == "blob/path" else new[0]
                model[f][rows[0]] = new[0]
            elif op == 6:
                ds[rows[0]]["blob/idx"] = 5
                model["blob/idx"][rows[0]] = 5
            elif op == 7 and f != "blob/path":
                ds[f] = ds[f] * 2
                model[f] = model[f] * 2
        except ValueError as e:  # an edit of a writable=False dataset, refused whole
            assert "read-only" in str(e) and not ds._editable
        for d, m in live:
            for k in fields:
                assert np.array_equal(d.view(k), m[k]), k
    assert any(d._editable for d, _ in live)


_text = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=6
)


@settings(max_examples=60, deadline=None)
@given(st.lists(_text, min_size=1, max_size=30), _text)
def test_str_comparisons_match_numpy_on_text(values, probe):
    col = Dataset({"s": values})["s"]
    text = np.array(values, dtype=str)
    for op in ("__eq__", "__ne__", "__lt__", "__ge__"):
        assert getattr(col, op)(probe).tolist() == getattr(text, op)(probe).tolist(), op
    assert np.isin(col, [probe, values[0]]).tolist() == np.isin(text, [probe, values[0]]).tolist()
    assert [col[i] for i in range(len(values))] == text.tolist()
