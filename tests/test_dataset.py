"""The Dataset API against the cryosparc-tools Dataset it mirrors.

Same names and semantics where they overlap; each deliberate difference is
asserted as csfast's documented behaviour (marked "difference:").
"""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from npyfiles import numpy_load, same_bytes

import csfast
from csfast import CsFieldError, CsUidError, Dataset, generate_uids

# A differential test: without cryosparc-tools there is nothing to compare with.
ToolsDataset = pytest.importorskip("cryosparc.dataset").Dataset

N = 40


def _data(n: int = N, seed: int = 0) -> dict:
    """Columns of a small particle table, uid first, strings as Python str."""
    rng = np.random.default_rng(seed)
    uid = generate_uids(n, seed=seed)
    uid[:2] = [2**64 - 1, 0]  # the ends of the range
    return {
        "uid": uid,
        "blob/path": [f"J{i % 3}/mic_{i % 5}_é.mrc" for i in range(n)],
        "blob/idx": np.arange(n, dtype=np.uint32),
        "blob/shape": np.full((n, 2), 256, dtype=np.uint32),
        "ctf/df1_A": rng.uniform(8000, 20000, n).astype(np.float32),
        "alignments3D/pose": rng.normal(size=(n, 3)).astype(np.float32),
        "alignments3D/class": rng.integers(0, 5, n).astype(np.uint32),
        "location/micrograph_uid": rng.integers(0, 2**64, n, dtype=np.uint64),
        "field": np.zeros(n, np.int64),  # a field without a result prefix
    }


@pytest.fixture
def pair():
    """The same table as a csfast and a cryosparc-tools Dataset."""
    d = _data()
    return Dataset(d), ToolsDataset(d)


def _encode(col) -> np.ndarray:
    """A cryosparc-tools column as csfast keeps it (strings as UTF-8 bytes)."""
    a = np.asarray(col)
    if a.dtype.kind == "O":
        return np.array([s.encode() for s in a.tolist()], dtype=bytes)
    return a


def assert_same_table(ours: Dataset, tools: ToolsDataset) -> None:
    assert ours.fields() == tools.fields()
    assert len(ours) == len(tools)
    for k in tools.fields():
        assert np.array_equal(ours[k], _encode(tools[k])), k


def _numeric_descr(descr) -> list:
    return [f for f in descr if np.dtype(f[1]).kind not in "SUO"]


# ---------------------------------------------------------------- construction

def test_construct_from_n():
    for n in (0, 1, 5, 1000):
        ds, tools = Dataset(n), ToolsDataset(n)
        assert len(ds) == n and ds.fields() == tools.fields() == ["uid"]
        assert ds.descr() == tools.descr() == [("uid", "<u8")]
        assert len(np.unique(ds["uid"])) == n
    assert len(Dataset()) == len(Dataset(None)) == 0
    with pytest.raises(ValueError):
        Dataset(-1)


def test_construct_from_mapping_list_and_array(pair):
    ours, tools = pair
    assert_same_table(ours, tools)
    assert _numeric_descr(ours.descr()) == _numeric_descr(tools.descr())
    d = _data()
    assert Dataset(list(d.items())) == ours
    rec = ours.to_records()
    from_rec, tools_rec = Dataset(rec), ToolsDataset(rec)
    assert from_rec == ours
    assert from_rec.fields() == tools_rec.fields()
    assert _numeric_descr(from_rec.descr()) == _numeric_descr(tools_rec.descr())
    # a table without uid gets new ones, first, like cryosparc-tools
    no_uid = {k: v for k, v in d.items() if k != "uid"}
    ds = Dataset(no_uid)
    assert ds.fields() == ToolsDataset(no_uid).fields() == ["uid"] + list(no_uid)
    assert len(np.unique(ds["uid"])) == N
    # construction copies: the caller's arrays stay independent
    src = np.arange(3, dtype=np.uint64)
    ds = Dataset({"uid": src})
    ds["uid"][0] = 9
    assert src[0] == 0


def test_allocate():
    fields = [("a/x", "<f4"), ("a/v", "<u4", (3,)), ("b/n", "<i8")]
    ours, tools = Dataset.allocate(7, fields), ToolsDataset.allocate(7, fields)
    assert ours.descr() == tools.descr() == [("uid", "<u8")] + fields
    for k, *_ in fields:
        assert np.array_equal(ours[k], tools[k]) and not ours[k].any()
    assert len(np.unique(ours["uid"])) == 7
    assert Dataset.allocate().descr() == ToolsDataset.allocate().descr()


def test_pickle_round_trip(pair, tmp_path):
    import pickle

    ours, _ = pair
    ours.save(tmp_path / "p.cs")
    mapped = Dataset.load(tmp_path / "p.cs")
    for ds in (ours, mapped, mapped.take([5, 1, 5]), mapped.slice(3, 20, 2)):
        back = pickle.loads(pickle.dumps(ds))
        assert back == ds
    back = pickle.loads(pickle.dumps(mapped))
    back["ctf/df1_A"] = 0.0  # an independent in-memory copy
    assert mapped["ctf/df1_A"][0] != 0.0


def test_construct_errors():
    with pytest.raises(CsFieldError, match="length"):
        Dataset({"uid": np.arange(3, dtype=np.uint64), "a": [1, 2]})
    with pytest.raises(CsUidError, match="non-negative"):  # as query_mask and subset_uids
        Dataset({"uid": [-1, 2]})
    with pytest.raises(CsFieldError, match="object"):
        Dataset({"a": np.array([object(), 1], dtype=object)})
    with pytest.raises(TypeError):
        Dataset(np.zeros(3))


def test_generate_uids_distinct_full_range():
    uids = generate_uids(200_000)
    assert uids.dtype == np.uint64 and len(uids) == 200_000
    assert len(np.unique(uids)) == 200_000
    assert (uids >= 2**63).sum() > 90_000  # about half: the full unsigned range
    assert (uids < 2**32).sum() < 10
    assert np.array_equal(generate_uids(50, seed=3), generate_uids(50, seed=3))
    assert len(generate_uids(0)) == 0
    assert csfast.generate_uids is generate_uids


# ---------------------------------------------------------------- mapping API

def test_len_getitem_contains_iter(pair):
    ours, tools = pair
    assert len(ours) == len(tools) == N
    assert list(ours) == list(tools) == ours.fields()
    assert ours.fields(exclude_uid=True) == tools.fields(exclude_uid=True)
    for k in tools:
        assert (k in ours) and (k in tools)
    assert "nope" not in ours and 3 not in ours
    with pytest.raises(KeyError, match="nope"):
        ours["nope"]
    assert ours["uid"].tolist() == tools["uid"].tolist()
    assert ours["uid"][0] == 2**64 - 1  # never cast to int64
    assert ours.cols().keys() == tools.cols().keys()


def test_descr_and_prefixes(pair):
    ours, tools = pair
    assert _numeric_descr(ours.descr()) == _numeric_descr(tools.descr())
    assert _numeric_descr(ours.descr(exclude_uid=True)) == _numeric_descr(
        tools.descr(exclude_uid=True))
    # difference: strings are fixed-width bytes (S<w>), not objects ("|O")
    assert ("blob/path", "|S15") in ours.descr()
    assert ("blob/path", "|O") in tools.descr()
    # difference: prefixes() is in column order (cryosparc-tools: set order)
    assert ours.prefixes() == ["blob", "ctf", "alignments3D", "location", "field"]
    assert sorted(ours.prefixes()) == sorted(tools.prefixes())


def test_setitem(pair):
    ours, tools = pair
    for ds in (ours, tools):
        ds["ctf/df1_A"] = 1.5  # broadcast
        ds["alignments3D/pose"] = np.ones((N, 3), np.float32)
        ds["blob/idx"] = np.arange(N)[::-1]
        ds["blob/path"] = "short"
    assert_same_table(ours, tools)
    # longer strings widen the column instead of being cut (cryosparc-tools keeps objects)
    ours["blob/path"] = ["a much longer path than before é"] * N
    assert ours.view("blob/path")[0] == "a much longer path than before é".encode()
    assert ours["blob/path"][0] == "a much longer path than before é"  # an element reads as str
    ours["blob/path"] = np.array([b"x" * 50] * N)
    assert ours.view("blob/path")[0] == b"x" * 50
    # difference: assigning a new field adds it (cryosparc-tools asks for add_fields first)
    ours["new/v"] = np.arange(N, dtype=np.int16)
    assert ours.descr()[-1] == ("new/v", "<i2")
    with pytest.raises(AssertionError):
        tools["new/v"] = np.arange(N)
    with pytest.raises(CsFieldError, match="rows"):
        ours["new/w"] = np.arange(N + 1)
    # assignment into a column is in place for columns the dataset owns
    col = ours["blob/idx"]
    ours["blob/idx"] = 7
    assert col[0] == 7


def test_add_fields(pair):
    ours, tools = pair
    for ds in (ours, tools):
        ds.add_fields([("a/x", "<f8"), ("a/v", "<u4", (3,))])
        ds.add_fields(["b/y", "b/z"], ["i2", ("f4", (2,))])
        ds.add_fields(["c/p", "c/q"], "u8,f4")
        ds.add_fields([("ctf/df1_A", "<i4")])  # existing: left alone
        ds.add_fields([])
    assert _numeric_descr(ours.descr()) == _numeric_descr(tools.descr())
    assert_same_table(ours, tools)
    assert ours["ctf/df1_A"].dtype == np.float32
    # an "O" field (cryosparc-tools' strings) is an empty string column here
    ours.add_fields([("s/name", "O")])
    tools.add_fields([("s/name", "O")])
    assert_same_table(ours, tools)
    ours["s/name"] = ["é"] * N
    assert ours.decode("s/name").tolist() == ["é"] * N
    assert ours.add_fields([("z", "u1")]) is ours
    with pytest.raises(ValueError):
        ours.add_fields(["k", "l"], ["u1"])


@pytest.mark.parametrize("copy", [False, True])
def test_field_selection(pair, copy):
    ours, tools = pair
    cases = [
        ("filter_fields", (["blob/idx", "ctf/df1_A"],)),
        ("filter_fields", (lambda k: k.endswith("_A"),)),
        ("filter_prefixes", (["alignments3D", "blob"],)),
        ("filter_prefixes", (["field"],)),  # only "field/..." fields, not "field"
        ("drop_fields", (["blob/path", "alignments3D/pose"],)),
        ("drop_fields", (lambda k: k.startswith("ctf/"),)),
        ("rename_fields", ({"blob/idx": "blob/index", "field": "other"},)),
        ("rename_fields", (lambda k: "x/" + k,)),  # uid is never renamed
        ("rename_prefix", ("alignments3D", "alignments2D")),
        ("filter_prefix", ("blob",)),
    ]
    for method, args in cases:
        o, t = ours.copy(), ToolsDataset(tools)
        if method == "rename_prefix":  # cryosparc-tools fails on a field without "/"
            o, t = o.drop_fields(["field"]), t.drop_fields(["field"])
        before = o.fields()
        got, want = getattr(o, method)(*args, copy=copy), getattr(t, method)(*args, copy=copy)
        assert_same_table(got, want)
        assert (got is o) is not copy, method
        if copy:
            assert o.fields() == before  # the original is untouched


def test_field_selection_errors(pair):
    ours, _ = pair
    # difference: naming a field that is not there is an error, not ignored
    with pytest.raises(CsFieldError, match="nope"):
        ours.filter_fields(["nope"])
    # difference: uid cannot be dropped or renamed (cryosparc-tools silently keeps it)
    with pytest.raises(CsFieldError, match="uid"):
        ours.drop_fields(["uid"])
    with pytest.raises(CsFieldError, match="uid"):
        ours.rename_fields({"uid": "id"})
    with pytest.raises(CsFieldError, match="same name"):
        ours.rename_fields({"blob/idx": "blob/path"})
    del ours["field"]
    assert "field" not in ours


def test_copy_is_deep(pair, tmp_path):
    ours, _ = pair
    c = ours.copy()
    assert c == ours and c is not ours
    c["ctf/df1_A"][0] = -1
    c["blob/path"][0] = b"changed"
    assert ours["ctf/df1_A"][0] != -1 and ours["blob/path"][0] != b"changed"
    # a copy of a mapped dataset owns writable columns
    ours.save(tmp_path / "m.cs")
    m = Dataset.load(tmp_path / "m.cs").copy()
    m["ctf/df1_A"][1] = 3.0
    assert m["ctf/df1_A"][1] == 3.0


# ---------------------------------------------------------------- rows

@pytest.mark.parametrize("mapped", [False, True])
def test_take_mask_slice(pair, tmp_path, mapped):
    ours, tools = pair
    if mapped:
        ours.save(tmp_path / "t.cs")
        ours = Dataset.load(tmp_path / "t.cs")
    idx = [5, 0, 39, 5, -1, 12]
    assert_same_table(ours.take(idx), tools.take(idx))
    assert_same_table(ours.take(np.array(idx, dtype=np.int32)), tools.take(np.array(idx)))
    assert_same_table(ours.take([]), tools.take(np.array([], dtype=int)))
    m = np.asarray(tools["alignments3D/class"]) % 2 == 1
    assert_same_table(ours.mask(m), tools.mask(m))
    assert_same_table(ours.mask(m.tolist()), tools.mask(m.tolist()))
    for args in [(), (3,), (3, 30), (3, 30, 4), (0, None, 7), (30, 3), (-10,)]:
        assert_same_table(ours.slice(*args), tools.slice(*args))
    # subsets are independent of their source
    sub = ours.take([1, 2])
    sub["ctf/df1_A"] = 0.0
    assert ours["ctf/df1_A"][1] != 0.0
    with pytest.raises(IndexError):
        ours.take([N])
    with pytest.raises(ValueError):
        ours.mask(m[:-1])
    # difference: take() wants indices; a boolean array goes to mask()
    with pytest.raises(TypeError, match="mask"):
        ours.take(m)


def test_to_records(pair):
    ours, tools = pair
    rec = ours.to_records()
    assert isinstance(rec, np.ndarray) and rec.dtype.names == tuple(ours.fields())
    # packed: the dtype numpy makes from the column dtypes
    assert rec.dtype == np.dtype([(k, ours[k].dtype, ours[k].shape[1:]) for k in ours])
    fixed = tools.to_records(fixed=True)
    for k in ours:
        assert np.array_equal(rec[k], fixed[k]), k
    assert same_bytes(ours.to_records(fixed=True), rec)
    assert same_bytes(np.asarray(ours), rec)
    assert Dataset(np.zeros(0, rec.dtype)).to_records().dtype == rec.dtype


def test_equality(pair):
    ours, _ = pair
    assert ours == ours.copy() == Dataset(_data())
    other = ours.copy()
    other["ctf/df1_A"][3] += 1
    assert ours != other
    reordered = Dataset({k: ours[k] for k in reversed(ours.fields())})
    assert ours != reordered and ours.is_equivalent(reordered)
    assert ours != ours.take(range(N - 1))
    assert ours != "not a dataset"
    nan = Dataset({"uid": np.arange(2, dtype=np.uint64), "x": [np.nan, 1.0]})
    assert (nan == nan.copy()) == ToolsDataset({"uid": np.arange(2, dtype=np.uint64),
                                                "x": [np.nan, 1.0]}).__eq__(
        ToolsDataset({"uid": np.arange(2, dtype=np.uint64), "x": [np.nan, 1.0]}))


def test_repr_groups_fields_by_result(pair):
    ours, _ = pair
    text = repr(ours)
    assert text.splitlines()[0] == f"Dataset({N} rows, {len(ours.fields())} fields)"
    lines = text.splitlines()[1:]
    for result in ("blob", "ctf", "alignments3D", "location"):
        line = next(line for line in lines if line.strip().startswith(result + "/"))
        for k in ours.fields():
            if k.startswith(result + "/"):
                assert k.split("/", 1)[1] in line
    assert "(3,)" in text and "|S15" in text
    assert repr(Dataset(10**6)).startswith("Dataset(1,000,000 rows, 1 fields)")


# ---------------------------------------------------------------- interop

def test_cryosparc_tools_reads_what_csfast_saves(pair, tmp_path):
    ours, tools = pair
    ours.save(tmp_path / "ours.cs")
    back = ToolsDataset.load(tmp_path / "ours.cs")
    assert_same_table(ours, back)
    assert back == tools  # strings decode to the same Python str values
    # and the bytes are the ones cryosparc-tools writes itself
    tools.save(tmp_path / "tools.cs")
    assert (tmp_path / "ours.cs").read_bytes() == (tmp_path / "tools.cs").read_bytes()


def test_csfast_reads_what_cryosparc_tools_saves(tmp_path):
    d = _data(300, seed=5)
    d["u/uni"] = ["", "é€😀", "x"] * 100
    tools = ToolsDataset(d)
    tools.save(tmp_path / "tools.cs")
    for mapped in (True, False):
        ours = Dataset.load(tmp_path / "tools.cs", mmap=mapped)
        assert_same_table(ours, tools)
        assert ours.decode("u/uni").tolist() == d["u/uni"]
        sub = ours.filter_prefixes(["ctf", "u"])
        assert_same_table(sub, ToolsDataset.load(tmp_path / "tools.cs", prefixes=["ctf", "u"]))
    # loaded with fields= like cryosparc-tools
    ours = Dataset.load(tmp_path / "tools.cs", fields=["blob/idx", "u/uni"])
    assert_same_table(ours, ToolsDataset.load(tmp_path / "tools.cs", fields=["blob/idx", "u/uni"]))
    # a round trip through both keeps every value
    ours = Dataset.load(tmp_path / "tools.cs")
    ours.save(tmp_path / "again.cs")
    assert (tmp_path / "again.cs").read_bytes() == (tmp_path / "tools.cs").read_bytes()
    assert same_bytes(numpy_load(tmp_path / "again.cs"), numpy_load(tmp_path / "tools.cs"))


def test_empty_dataset_interop(tmp_path):
    ours = Dataset(0).add_fields([("a/x", "<f4"), ("a/v", "<u4", (2,))])
    ours.save(tmp_path / "e.cs")
    back = ToolsDataset.load(tmp_path / "e.cs")
    assert len(back) == 0 and back.descr() == ours.descr()
    ToolsDataset(0).add_fields([("a/x", "<f4")]).save(tmp_path / "t.cs")
    ds = Dataset.load(tmp_path / "t.cs")
    assert len(ds) == 0 and ds.descr() == [("uid", "<u8"), ("a/x", "<f4")]


# ---------------------------------------------------------------- generated tables

TOOLS_TYPES = ["<u1", "<u2", "<u4", "<u8", "<i1", "<i2", "<i4", "<i8", "<f4", "<f8", "<c8",
               "<c16"]


@st.composite
def tables(draw):
    """Columns cryosparc-tools can hold too (native numbers, sub-arrays, UTF-8 strings)."""
    n = draw(st.sampled_from([0, 1, 2, 5, 30]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    cols = {"uid": generate_uids(n, seed=rng)}
    names = draw(st.lists(st.sampled_from(["a/x", "a/y", "b/z", "b/w", "c", "d/v/q"]),
                          min_size=1, max_size=5, unique=True))
    for name in names:
        if draw(st.integers(0, 4)) == 0:
            words = draw(st.lists(st.text("ab é€😀/", max_size=6), min_size=1, max_size=4))
            cols[name] = [words[i] for i in rng.integers(0, len(words), n)]
            continue
        dt = np.dtype(draw(st.sampled_from(TOOLS_TYPES)))
        shape = (n,) + tuple(draw(st.lists(st.integers(1, 3), max_size=2)))
        raw = rng.integers(0, 256, int(np.prod(shape)) * dt.itemsize, dtype=np.uint8)
        cols[name] = np.frombuffer(raw.tobytes(), dtype=dt).reshape(shape)
    return cols


def _same_values(ours: Dataset, tools: ToolsDataset) -> None:
    assert ours.fields() == tools.fields() and len(ours) == len(tools)
    for k in tools:
        assert same_bytes(ours[k], _encode(tools[k])) or (
            ours[k].dtype.kind == "S" and np.array_equal(ours[k], _encode(tools[k]))), k


GEN = settings(max_examples=40, deadline=None,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@GEN
@given(cols=tables())
def test_generated_tables_interop_with_cryosparc_tools(tmp_path, cols):
    ours, tools = Dataset(cols), ToolsDataset(cols)
    _same_values(ours, tools)
    ours.save(tmp_path / "ours.cs")
    _same_values(ours, ToolsDataset.load(tmp_path / "ours.cs"))
    if len(ours):  # cryosparc-tools cannot write a 0-row string column
        tools.save(tmp_path / "tools.cs")
        assert (tmp_path / "ours.cs").read_bytes() == (tmp_path / "tools.cs").read_bytes()
    _same_values(Dataset.load(tmp_path / "ours.cs"), tools)


@GEN
@given(cols=tables(), data=st.data())
def test_generated_subsets_match_cryosparc_tools(tmp_path, cols, data):
    tools = ToolsDataset(cols)
    n = len(tools)
    Dataset(cols).save(tmp_path / "t.cs")
    for ours in (Dataset(cols), Dataset.load(tmp_path / "t.cs")):
        idx = data.draw(st.lists(st.integers(-n, n - 1), max_size=12)) if n else []
        _same_values(ours.take(idx), tools.take(np.array(idx, dtype=np.int64)))
        m = np.array(data.draw(st.lists(st.booleans(), min_size=n, max_size=n)), dtype=bool)
        _same_values(ours.mask(m), tools.mask(m))
        start, stop = data.draw(st.integers(-5, 35)), data.draw(st.none() | st.integers(-5, 35))
        step = data.draw(st.integers(1, 4))
        _same_values(ours.slice(start, stop, step), tools.slice(start, stop, step))
        # subsets of subsets
        sub = ours.slice(start, stop, step)
        k = len(sub)
        idx2 = data.draw(st.lists(st.integers(0, k - 1), max_size=5)) if k else []
        _same_values(sub.take(idx2), tools.slice(start, stop, step).take(np.array(idx2, int)))


def test_decode_names_the_field_of_invalid_utf8():
    ds = Dataset({"uid": np.array([1, 2], dtype=np.uint64),
                  "blob/path": np.array([b"ok.mrc", b"\xff\xfe.mrc"], dtype="S8")})
    with pytest.raises(csfast.CsFieldError, match="'blob/path'.*not UTF-8"):
        ds.decode("blob/path")
    assert ds.view("blob/path")[1] == b"\xff\xfe.mrc"
    with pytest.raises(csfast.CsFieldError, match="not UTF-8"):
        ds["blob/path"][1]  # an element reads as str


def test_from_columns_takes_the_arrays_without_a_copy():
    x = np.arange(4, dtype=np.float32)
    frozen = np.arange(4, dtype=np.int16)
    frozen.flags.writeable = False
    ds = Dataset.from_columns({"a/x": x, "a/y": frozen})
    assert ds.fields() == ["uid", "a/x", "a/y"] and len(np.unique(ds["uid"])) == 4
    assert np.shares_memory(ds["a/x"], x)          # taken as it is
    ds["a/y"][0] = 7                                # a read-only column is copied first
    assert frozen[0] == 0 and ds["a/y"][0] == 7
    uid = np.array([5, 6, 7, 8], dtype=np.int64)
    assert Dataset.from_columns({"uid": uid})["uid"].tolist() == [5, 6, 7, 8]
    assert len(Dataset.from_columns({}, rows=3)) == 3
    with pytest.raises(CsUidError, match="non-negative"):
        Dataset.from_columns({"uid": np.array([-1, 2])})
    with pytest.raises(CsFieldError, match="different lengths"):
        Dataset.from_columns({"a": np.zeros(2), "b": np.zeros(3)})
    with pytest.raises(CsFieldError, match="different lengths"):
        Dataset.from_columns({"a": np.zeros(2)}, rows=3)
    with pytest.raises(CsFieldError, match="numpy array"):
        Dataset.from_columns({"a": [1, 2]})


def test_load_results_and_its_cryosparc_tools_name_prefixes(tmp_path):
    ds = Dataset({"a/x": np.arange(3.0), "b/y": np.arange(3), "c/z": np.zeros(3)})
    ds.save(tmp_path / "t.cs")
    by_results = Dataset.load(tmp_path / "t.cs", results=["a", "c"])
    by_prefixes = Dataset.load(tmp_path / "t.cs", prefixes=["a", "c"])
    assert by_results.fields() == by_prefixes.fields() == ["uid", "a/x", "c/z"]
    with pytest.raises(TypeError, match="not both"):
        Dataset.load(tmp_path / "t.cs", results=["a"], prefixes=["a"])
    with pytest.raises(csfast.CsResultError, match="no results"):  # a CsFieldError too
        Dataset.load(tmp_path / "t.cs", results=["d"])
