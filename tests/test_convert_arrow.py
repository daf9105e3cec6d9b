"""Arrow / Parquet specifics: types, copies, dictionary paths, foreign tables,
queries with DuckDB and Polars (the README example), and the pandas layout."""

import numpy as np
import pytest

import csfast
from csfast.convert import files
from csfast.errors import CsFieldError
from csfast.synthetic import particles

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")


@pytest.fixture(scope="module")
def table_path(tmp_path_factory):
    ds = particles(3000, results=("blob", "ctf", "alignments3D"), seed=11, classes=5)
    folder = tmp_path_factory.mktemp("arrow")
    ds.save(folder / "J42_005_particles.cs")
    files.convert(folder / "J42_005_particles.cs", folder / "particles.parquet")
    return folder


def test_arrow_types(table_path):
    schema = pq.read_schema(table_path / "particles.parquet")
    assert schema.field("uid").type == pa.uint64()
    assert schema.field("ctf/df1_A").type == pa.float32()
    assert schema.field("blob/idx").type == pa.uint32()
    assert schema.field("alignments3D/pose").type == pa.list_(pa.float32(), 3)
    assert pa.types.is_dictionary(schema.field("blob/path").type)
    assert schema.field("blob/path").type.value_type == pa.string()
    assert b"csfast" in schema.metadata


def test_numeric_columns_are_not_copied():
    ds = particles(1000, results=("ctf", "alignments3D"), seed=1)
    table = ds.to_arrow()
    df1 = table.column("ctf/df1_A").chunk(0)
    assert df1.buffers()[1].address == ds["ctf/df1_A"].ctypes.data
    pose = table.column("alignments3D/pose").chunk(0)
    assert pose.values.buffers()[1].address == ds["alignments3D/pose"].ctypes.data
    back = csfast.Dataset.from_arrow(table)
    assert back.view("ctf/df1_A").ctypes.data == ds["ctf/df1_A"].ctypes.data
    assert not back.view("ctf/df1_A").flags.writeable  # Arrow memory is shared read-only
    assert back["ctf/df1_A"].ctypes.data != ds["ctf/df1_A"].ctypes.data  # an edit copies
    back["ctf/df1_A"] = 0.0  # assigning replaces it with an owned copy
    assert ds["ctf/df1_A"].any()


def test_mapped_columns_are_copied_once_and_read_correctly(tmp_path):
    ds = particles(500, results=("blob", "alignments3D"), seed=2)
    ds.save(tmp_path / "m.cs")
    mapped = csfast.Dataset.load(tmp_path / "m.cs")
    assert not mapped["blob/idx"].flags.c_contiguous  # interleaved rows in the file
    table = mapped.to_arrow()
    ref = np.load(tmp_path / "m.cs")
    assert table.column("blob/idx").to_pylist() == ref["blob/idx"].tolist()
    assert table.column("alignments3D/pose").to_pylist() == ref["alignments3D/pose"].tolist()


def test_ipc_file_is_mapped_without_copies(tmp_path):
    ds = particles(2000, results=("ctf",), seed=3)
    files.write_arrow(ds, tmp_path / "t.arrow")
    back = files.read_arrow(tmp_path / "t.arrow")
    assert back == ds
    col = back.view("ctf/df1_A")
    assert not col.flags.owndata and not col.flags.writeable
    back["ctf/df1_A"] += 1  # an edit copies the column: the Arrow memory stays as it was
    assert np.array_equal(col, ds["ctf/df1_A"])


def test_duckdb_query_of_a_converted_file(table_path):
    import duckdb

    # README example: which particle stacks hold the most particles, and their defocus
    rows = duckdb.sql(f"""
        SELECT "blob/path" AS stack, count(*) AS n, avg("ctf/df1_A") AS mean_df1
        FROM '{table_path / "particles.parquet"}'
        GROUP BY stack ORDER BY n DESC, stack LIMIT 5
    """).fetchall()
    ref = np.load(table_path / "J42_005_particles.cs")
    paths, counts = np.unique(ref["blob/path"], return_counts=True)
    order = sorted(range(len(paths)), key=lambda i: (-counts[i], paths[i]))[:5]
    assert [(r[0], r[1]) for r in rows] == [(paths[i].decode(), counts[i]) for i in order]
    for (_, _, mean), i in zip(rows, order, strict=True):
        assert mean == pytest.approx(ref["ctf/df1_A"][ref["blob/path"] == paths[i]]
                                     .astype(np.float64).mean(), rel=1e-9)
    big = duckdb.sql(f"""SELECT max(uid) FROM '{table_path / "particles.parquet"}'""").fetchall()
    assert big[0][0] == int(ref["uid"].max())  # uids above 2**63 stay unsigned


def test_polars_query_of_a_converted_file(table_path):
    import polars as pl

    df = pl.read_parquet(table_path / "particles.parquet")
    assert df.schema["uid"] == pl.UInt64
    out = (df.filter(pl.col("alignments3D/class") == 3)
             .select("uid", pl.col("alignments3D/pose").arr.get(2).alias("pose_z")))
    ref = np.load(table_path / "J42_005_particles.cs")
    keep = ref["alignments3D/class"] == 3
    assert out["uid"].to_list() == ref["uid"][keep].tolist()
    assert out["pose_z"].to_list() == ref["alignments3D/pose"][keep, 2].tolist()
    # and a table written by polars reads back into a dataset
    out.write_parquet(table_path / "from_polars.parquet")
    back = files.read_parquet(table_path / "from_polars.parquet")
    assert back["uid"].tolist() == ref["uid"][keep].tolist()
    assert back["pose_z"].dtype == np.float32


def test_foreign_tables_nulls_and_lists():
    t = pa.table({"uid": pa.array([1, 2], pa.int64()),
                  "p": pa.array(["a", "bcd"]),
                  "v": pa.array([[1.0, 2.0], [3.0, 4.0]], pa.list_(pa.float64()))})
    ds = csfast.Dataset.from_arrow(t)
    assert ds["uid"].dtype == np.uint64 and ds["p"].dtype == np.dtype("S4")
    assert ds["v"].shape == (2, 2) and ds["v"].tolist() == [[1.0, 2.0], [3.0, 4.0]]
    with pytest.raises(CsFieldError, match="'x'.*null"):
        csfast.Dataset.from_arrow(pa.table({"x": pa.array([1.0, None])}))
    with pytest.raises(CsFieldError, match="different lengths"):
        csfast.Dataset.from_arrow(pa.table({"v": pa.array([[1], [2, 3]])}))
    chunked = pa.concat_tables([t, t])
    assert csfast.Dataset.from_arrow(chunked)["p"].tolist() == [b"a", b"bcd"] * 2
    pairs = pa.array([[1, 2], [3, 4]], pa.list_(pa.uint64(), 2))  # was taken as 2 uids a row
    with pytest.raises(CsFieldError, match=r"uid column of uint64 with shape \(2,\)"):
        csfast.Dataset.from_arrow(pa.table({"uid": pairs}))


def test_pandas_layout_and_views():
    ds = particles(200, results=("blob", "alignments3D"), seed=5)
    df = ds.to_pandas()
    assert [c for c in df.columns if c.startswith("alignments3D/pose/")] == [
        "alignments3D/pose/0", "alignments3D/pose/1", "alignments3D/pose/2"]
    assert df["uid"].dtype == np.uint64
    assert df["blob/path"].iloc[0] == ds.view("blob/path")[0]  # bytes
    assert not np.shares_memory(df["alignments3D/error"].to_numpy(), ds.view("alignments3D/error"))
    shared = ds.to_pandas(copy=False)
    assert np.shares_memory(shared["alignments3D/error"].to_numpy(), ds.view("alignments3D/error"))
    back = csfast.Dataset.from_pandas(df)
    assert back == ds
    with pytest.raises(ValueError):
        ds.to_pandas(strings="latin1")


def _with_record(table: pa.Table, edit) -> pa.Table:
    import json

    rec = json.loads(table.schema.metadata[b"csfast"])
    edit({f[0]: f for f in rec["fields"]})
    return table.replace_schema_metadata({b"csfast": json.dumps(rec).encode()})


def test_schema_record_cannot_widen_strings_or_disagree(tmp_path):
    from csfast.errors import CsFormatError

    # 100k rows of one short path: a few kB of Parquet. A record claiming
    # |S100000000 once asked for 93 GiB; the data's longest value decides.
    n = 100_000
    ds = csfast.Dataset({"uid": np.zeros(n, dtype=np.uint64),
                         "blob/path": np.full(n, b"J1/a.mrc", dtype="S20"),
                         "x": np.zeros((n, 2), np.float32)})
    table = ds.to_arrow()
    bomb = _with_record(table, lambda f: f["blob/path"].__setitem__(1, "|S100000000"))
    pq.write_table(bomb, tmp_path / "bomb.parquet")
    assert (tmp_path / "bomb.parquet").stat().st_size < 20_000
    back = files.read_parquet(tmp_path / "bomb.parquet")
    assert back["blob/path"].dtype == np.dtype("S9")  # longest + 1
    assert (back["blob/path"] == b"J1/a.mrc").all()
    # A recorded width with modest padding is kept (exact round trips).
    assert files.read_parquet(_write(tmp_path, table))["blob/path"].dtype == np.dtype("S20")
    edits = {"says <f8": lambda f: f["x"].__setitem__(1, "<f8"),
             "says |S4": lambda f: f["x"].__setitem__(1, "|S4"),
             "says <f4": lambda f: f["blob/path"].__setitem__(1, "<f4"),
             r"shape \(3,\)": lambda f: f["x"].__setitem__(2, [3]),
             r"shape \(2,\)": lambda f: f["uid"].__setitem__(2, [2])}
    for message, edit in edits.items():
        path = _write(tmp_path, _with_record(table, edit))
        with pytest.raises(CsFormatError, match=f"{path}: field .*{message}"):
            files.read_parquet(path)
    # Unreadable records are ignored (the Arrow types decide), never raised on.
    for junk in (b"[" * 100_000, b'{"fields": [["x", "(2,)f4,", []]]}', b"{}",
                 b'{"fields": [["x", "<f4", [2147483648]]]}'):
        t = table.replace_schema_metadata({b"csfast": junk})
        assert files.read_parquet(_write(tmp_path, t))["x"].dtype == np.float32


def _write(folder, table: pa.Table):
    path = folder / "t.parquet"
    pq.write_table(table, path)
    return path


def test_string_budget_bounds_dictionary_columns(tmp_path):
    from csfast.errors import CsFormatError

    # One 60 kB value named by 300k rows: 18 GB as a fixed-width column from
    # a 1.3 MB Arrow table (int32 indices).
    n = 300_000
    arr = pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, np.int32)),
                                         pa.array(["a" * 60_000]))
    table = pa.table({"uid": pa.array(np.arange(n, dtype=np.uint64)), "s": arr})
    with pytest.raises(CsFormatError, match="<arrow table>: field 's'.*would take"):
        csfast.Dataset.from_arrow(table)
    with pytest.raises(CsFormatError, match="a string of 70000 bytes"):
        csfast.Dataset.from_arrow(pa.table({"s": ["b" * 70_000]}))
    path = tmp_path / "junk.parquet"
    path.write_bytes(b"PAR1" + b"x" * 100 + b"PAR1")
    with pytest.raises(CsFormatError, match=str(path)):
        files.read_parquet(path)


@pytest.mark.parametrize("mapped", [True, False])
def test_editing_a_frame_never_changes_the_dataset(tmp_path, mapped):
    ds = particles(300, results=("blob", "alignments3D"), seed=6)
    ds.save(tmp_path / "p.cs")
    ds = csfast.Dataset.load(tmp_path / "p.cs", mmap=mapped)
    before = {k: np.array(ds[k], copy=True) for k in ds.fields()}
    df = ds.to_pandas()
    df.loc[0, "uid"] = 12345
    df.loc[1, "alignments3D/error"] = -1.0
    df.loc[2, "alignments3D/pose/1"] = 9.0
    df["blob/idx"] += 1
    df.iloc[3, df.columns.get_loc("alignments3D/class")] = 77
    for k in ds.fields():
        assert np.array_equal(ds[k], before[k]), k
    assert df.loc[0, "uid"] == 12345 and df.loc[2, "alignments3D/pose/1"] == 9.0
    # The dataset made from the frame does not follow later edits of it either.
    back = csfast.Dataset.from_pandas(df)
    snapshot = {k: np.array(back[k], copy=True) for k in back.fields()}
    df.loc[4, "uid"] = 1
    df.loc[4, "alignments3D/error"] = 5.0
    df.loc[4, "alignments3D/pose/0"] = 5.0
    for k in back.fields():
        assert np.array_equal(back[k], snapshot[k]), k
    # copy=False shares read-only: pandas refuses in-place edits.
    shared = ds.to_pandas(copy=False)
    with pytest.raises(ValueError, match="read-only"):
        shared.loc[0, "uid"] = 1
    with pytest.raises(ValueError, match="read-only"):
        shared.loc[0, "alignments3D/pose/2"] = 1.0
    for k in ds.fields():
        assert np.array_equal(ds[k], before[k]), k


def test_frame_record_cannot_widen_strings():
    import json

    n = 50_000
    ds = csfast.Dataset({"uid": np.arange(n, dtype=np.uint64),
                         "p": np.full(n, b"ab", dtype="S3"),
                         "q": np.full(n, b"xyz", dtype="S40")})
    for strings in ("bytes", "str"):
        df = ds.to_pandas(strings=strings)
        rec = json.loads(df.attrs["csfast"])
        rec["fields"][1][1] = rec["fields"][2][1] = "|S100000000"
        df.attrs["csfast"] = json.dumps(rec)
        back = csfast.Dataset.from_pandas(df)
        assert back["p"].dtype == np.dtype("S3") and back["q"].dtype == np.dtype("S4")
        assert back["p"].tolist() == [b"ab"] * n and back["q"].tolist() == [b"xyz"] * n
    # A numpy bytes column in the frame goes through the same rule.
    df = ds.to_pandas()
    df["p"] = np.full(n, b"ab", dtype="S3")
    rec = json.loads(df.attrs["csfast"])
    rec["fields"][1][1] = "|S100000000"
    df.attrs["csfast"] = json.dumps(rec)
    assert csfast.Dataset.from_pandas(df)["p"].dtype == np.dtype("S3")
