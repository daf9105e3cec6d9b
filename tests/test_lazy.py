"""Lazy datasets over maps and streamed writes, against numpy references.

Joins, appends, unions and row subsets of mapped datasets hold row indices
into their sources (``Rows``); a column is gathered when read, and writers
gather chunk by chunk. Every result here is compared with numpy doing the
same work on ``np.load`` of the same files, never with csfast's own output.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import csfast.dataset as dsmod
from csfast import Dataset
from csfast.column import Rows

N = 2_000


def _table(n: int, seed: int, prefix: str, uids: np.ndarray) -> np.ndarray:
    rng = np.random.default_rng(seed)
    words = np.array([b"", b"a", b"stack_00.mrc", b"J12/extract/some_longer_name.mrc"])
    a = np.zeros(
        n,
        dtype=[
            ("uid", "<u8"),
            (f"{prefix}/x", "<f4"),
            (f"{prefix}/v", "<f4", (3,)),
            (f"{prefix}/path", "S40"),
            (f"{prefix}/k", "<i2"),
        ],
    )
    a["uid"] = uids
    a[f"{prefix}/x"] = rng.random(n)
    a[f"{prefix}/v"] = rng.random((n, 3))
    a[f"{prefix}/path"] = words[rng.integers(0, 3 if seed % 2 else 4, n)]
    a[f"{prefix}/k"] = rng.integers(-5, 5, n)
    return a


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lazy")
    rng = np.random.default_rng(0)
    uids = np.unique(rng.integers(0, 2**64, size=N + 50, dtype=np.uint64, endpoint=False))
    uids = rng.permutation(uids)[:N]
    a = _table(N, 1, "p", uids)
    b = _table(N, 2, "q", rng.permutation(uids))[: N * 3 // 4]
    paths = {}
    for name, arr in (("a", a), ("b", b)):
        paths[name] = tmp / f"{name}.cs"
        np.save(paths[name], arr)  # np.save appends .npy to a name without it
        Path(f"{paths[name]}.npy").rename(paths[name])
    return tmp, paths, a, b


def _lazy_fields(ds: Dataset) -> list[str]:
    return [k for k, c in ds._cols.items() if isinstance(c, Rows)]


def saved_like_csfast(rec: np.ndarray) -> np.ndarray:
    """rec with uid first and every string field S<longest + 1>, as save documents."""
    names = ["uid"] + [k for k in rec.dtype.names if k != "uid"]
    descr = []
    for k in names:
        dt, shape = rec.dtype[k].base, rec.dtype[k].shape
        if dt.kind == "S":
            longest = max((len(v) for v in rec[k].reshape(-1).tolist()), default=0)
            dt = np.dtype(f"S{longest + 1}")
        descr.append((k, dt, shape))
    out = np.empty(len(rec), dtype=descr)
    for k in names:
        out[k] = rec[k]
    return out


def npy_bytes(rec: np.ndarray, tmp: Path) -> bytes:
    path = tmp / "ref.npy"
    with open(path, "wb") as f:
        np.save(f, rec)
    return path.read_bytes()


def join_reference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Inner join of a and b on uid in a's order, by a Python dict."""
    row_of = {int(u): i for i, u in enumerate(b["uid"].tolist())}
    ia = [i for i, u in enumerate(a["uid"].tolist()) if int(u) in row_of]
    ib = [row_of[int(a["uid"][i])] for i in ia]
    names = list(a.dtype.names) + [k for k in b.dtype.names if k not in a.dtype.names]
    out = np.empty(len(ia), dtype=[(k, (a if k in a.dtype.names else b).dtype[k]) for k in names])
    for k in a.dtype.names:
        out[k] = a[k][ia]
    for k in b.dtype.names:
        if k != "uid":
            out[k] = b[k][ib]
    return out


def test_join_is_lazy_and_saves_the_bytes_numpy_saves(files, tmp_path):
    _, paths, a, b = files
    joined = Dataset.load(paths["a"]).innerjoin(Dataset.load(paths["b"]))
    ref = join_reference(a, b)
    # Lazy: every field but uid (read to hash) holds row indices into its source.
    assert set(_lazy_fields(joined)) >= set(ref.dtype.names) - {"uid"}
    assert len(joined) == len(ref)
    assert joined.fields() == list(ref.dtype.names)
    out = tmp_path / "j.cs"
    joined.save(out)
    assert out.read_bytes() == npy_bytes(saved_like_csfast(ref), tmp_path)
    assert _lazy_fields(joined)  # saving gathered nothing into the dataset


def test_append_union_subset_are_lazy_and_save_exactly(files, tmp_path):
    _, paths, a, b = files
    da, db = Dataset.load(paths["a"]), Dataset.load(paths["b"])
    half = da.slice(0, N // 2)
    rest = da.slice(N // 2)
    appended = Dataset.append_many(rest, half)
    ref = np.concatenate([a[N // 2 :], a[: N // 2]])
    assert set(_lazy_fields(appended)) == set(a.dtype.names)
    appended.save(tmp_path / "app.cs")
    assert (tmp_path / "app.cs").read_bytes() == npy_bytes(saved_like_csfast(ref), tmp_path)

    # union: the first row of each uid wins; a and b share uids but not fields.
    both = da.filter_fields(["uid"], copy=True).union(db.filter_fields(["uid"], copy=True))
    seen: set[int] = set()
    first = [u for u in a["uid"].tolist() + b["uid"].tolist() if not (u in seen or seen.add(u))]
    assert both["uid"].tolist() == first

    wanted = b["uid"][::3]
    sub = appended.subset_uids(wanted)  # a subset of a two-piece lazy column
    keep = np.isin(ref["uid"], wanted)
    assert _lazy_fields(sub)
    sub.save(tmp_path / "sub.cs")
    assert (tmp_path / "sub.cs").read_bytes() == npy_bytes(saved_like_csfast(ref[keep]), tmp_path)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_chained_lazy_operations_match_numpy(files, data):
    """Random chains of take/mask/slice/append/query over a mapped dataset equal
    numpy fancy indexing of the same rows."""
    _, paths, a, _ = files
    ds, ref = Dataset.load(paths["a"]), a
    for _ in range(data.draw(st.integers(1, 4))):
        n = len(ref)
        op = data.draw(st.sampled_from(["take", "mask", "slice", "append", "query"]))
        if op == "take" and n:
            idx = np.array(data.draw(st.lists(st.integers(-n, n - 1), max_size=30)), dtype=np.intp)
            ds, ref = ds.take(idx), ref[idx]
        elif op == "mask":
            m = np.array(data.draw(st.lists(st.booleans(), min_size=n, max_size=n)), dtype=bool)
            ds, ref = ds.mask(m), ref[m]
        elif op == "slice":
            start = data.draw(st.integers(-n - 2, n + 2))
            stop = data.draw(st.integers(-n - 2, n + 2))
            step = data.draw(st.sampled_from([1, 2, 3, -1, -2]))
            ds, ref = ds.slice(start, stop, step), ref[start:stop:step]
        elif op == "append":
            cut = data.draw(st.integers(0, n))
            ds = Dataset.append_many(ds.slice(cut), ds.slice(0, cut), repeat_allowed=True)
            ref = np.concatenate([ref[cut:], ref[:cut]])
        elif op == "query":
            ks = data.draw(st.lists(st.integers(-5, 4), max_size=4))
            ds, ref = ds.query({"p/k": ks}), ref[np.isin(ref["p/k"], ks)]
    assert len(ds) == len(ref)
    for k in a.dtype.names:
        assert np.array_equal(ds.view(k), ref[k]), k


def test_len_fields_descr_and_uids_gather_nothing_else(files, monkeypatch):
    _, paths, a, b = files
    da, db = Dataset.load(paths["a"]), Dataset.load(paths["b"])
    core = dsmod._core
    real, real_many = core.gather, core.gather_many
    read: list[str] = []
    monkeypatch.setattr(
        core, "gather", lambda s, i, o, **kw: (read.append(s.dtype.str), real(s, i, o, **kw))
    )
    monkeypatch.setattr(
        core,
        "gather_many",
        lambda s, i, o, **kw: (read.extend(x.dtype.str for x in s), real_many(s, i, o, **kw)),
    )
    joined = da.innerjoin(db)
    assert read == []  # mapped uid columns are hashed in place
    assert len(joined) == len(join_reference(a, b))
    assert [f[0] for f in joined.descr()] == joined.fields()
    assert joined["uid"].tolist() == join_reference(a, b)["uid"].tolist()
    assert read == ["<u8"]  # the uid column, nothing else


def test_edits_of_a_source_after_a_lazy_join_do_not_reach_the_result(files):
    _, paths, a, b = files
    da, db = Dataset.load(paths["a"]), Dataset.load(paths["b"])
    joined = da.innerjoin(db)
    da["p/x"][:] = -1  # in place, on da's copy (its map is shared now)
    da["p/k"] += 100
    ref = join_reference(a, b)
    assert np.array_equal(joined.view("p/x"), ref["p/x"])
    assert np.array_equal(joined.view("p/k"), ref["p/k"])
    assert np.array_equal(Dataset.load(paths["a"]).view("p/x"), a["p/x"])  # file unchanged


def test_owned_inputs_are_copied_not_held(files):
    _, paths, a, _ = files
    owned = Dataset(a)  # writable arrays
    joined = owned.innerjoin(Dataset.load(paths["b"]))
    assert not any(k.startswith("p/") for k in _lazy_fields(joined))
    before = joined.view("p/x").copy()
    owned["p/x"][:] = 7
    assert np.array_equal(joined.view("p/x"), before)


def test_csdat_of_a_lazy_dataset_reads_back_equal(files, tmp_path):
    _, paths, a, b = files
    joined = Dataset.load(paths["a"]).innerjoin(Dataset.load(paths["b"]))
    joined.save(tmp_path / "j.csdat", format=dsmod.CSDAT_FORMAT)
    back = Dataset.load(tmp_path / "j.csdat")
    ref = join_reference(a, b)
    for k in ref.dtype.names:
        assert np.array_equal(back.view(k), ref[k]), k


def test_parquet_in_row_groups_keeps_one_schema(tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    from csfast.convert.files import read_parquet, write_parquet

    n = 3000
    paths = np.array([b"ok/%d.mrc" % (i % 7) for i in range(n)], dtype="S12")
    paths[-1] = b"\xff\xfe bad"  # not UTF-8, in the last group only: every group is binary
    arr = np.zeros(n, dtype=[("uid", "<u8"), ("blob/path", "S12"), ("blob/v", "<f4", (2,))])
    arr["uid"] = np.arange(1, n + 1)
    arr["blob/path"] = paths
    arr["blob/v"] = np.arange(2 * n).reshape(n, 2)
    src = tmp_path / "s.cs"
    Dataset(arr).save(src)
    ds = Dataset.load(src).take(np.arange(n)[::-1])  # lazy
    write_parquet(ds, tmp_path / "s.parquet", row_group_bytes=10_000)
    meta = pq.ParquetFile(tmp_path / "s.parquet").metadata
    assert meta.num_row_groups > 5
    back = read_parquet(tmp_path / "s.parquet")
    for k in arr.dtype.names:
        assert np.array_equal(back.view(k), arr[k][::-1]), k


SCRIPT = textwrap.dedent(
    """
    import json, sys, threading, time
    from csfast import Dataset

    peak = 0
    done = False

    def sample():
        global peak
        while not done:
            with open("/proc/self/status") as f:
                for line in f:
                    if line.startswith("RssAnon:"):
                        peak = max(peak, int(line.split()[1]) * 1024)
            time.sleep(0.002)

    t = threading.Thread(target=sample)
    t.start()
    a, b, out = sys.argv[1:4]
    Dataset.load(a).innerjoin(Dataset.load(b)).save(out, fsync=False)
    done = True
    t.join()
    print(json.dumps({"peak": peak}))
    """
)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc (Linux)")
def test_join_to_file_holds_no_output_sized_buffer(tmp_path):
    """A mapped join saved to a file: anonymous memory grows by the uid index and
    a chunk buffer, far less than the output (the output is 300 MB here)."""
    n = 1_000_000
    rng = np.random.default_rng(5)
    uids = rng.permutation(np.arange(1, n + 1, dtype=np.uint64))
    a = np.zeros(n, dtype=[("uid", "<u8"), ("p/blob", "<f4", (60,))])
    a["uid"] = uids
    b = np.zeros(n, dtype=[("uid", "<u8"), ("q/blob", "<f4", (14,))])
    b["uid"] = uids[::-1]
    Dataset(a).save(tmp_path / "a.cs", fsync=False)
    Dataset(b).save(tmp_path / "b.cs", fsync=False)
    del a, b
    base = subprocess.run(
        [sys.executable, "-c", "import csfast, numpy; print(open('/proc/self/status').read())"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    floor = next(int(x.split()[1]) * 1024 for x in base.splitlines() if x.startswith("RssAnon:"))
    out = tmp_path / "j.cs"
    run = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "a.cs"), str(tmp_path / "b.cs"), str(out)],
        capture_output=True,
        text=True,
        check=True,
    )
    grown = json.loads(run.stdout)["peak"] - floor
    output = out.stat().st_size
    assert output > 290e6
    # uid index (hash of 1M uids + two 8 MB row indexes) and an 8 MB chunk: < 100 MB.
    assert grown < 100e6, (
        f"anonymous memory grew {grown / 1e6:.0f} MB for a {output / 1e6:.0f} MB output"
    )
    back = np.load(out, mmap_mode="r")
    assert np.array_equal(back["uid"], uids)


def test_append_of_files_of_one_layout_writes_their_rows_as_they_lie(files, tmp_path, monkeypatch):
    """Files of one layout appended and saved: the file rows are written as they
    lie (no gather); other layouts are gathered. Both equal numpy's bytes."""
    _, paths, a, _ = files
    ds = Dataset.load(paths["a"])
    parts = [ds.slice(0, 700), ds.slice(1500), ds.slice(700, 1500)]
    # A copy of the file whose path column is wider than its longest value + 1
    # (S40 for values up to 32 bytes): its layout is not the output's.
    wide = a.astype([(k, "S60" if k == "p/path" else a.dtype[k]) for k in a.dtype.names])
    np.save(tmp_path / "wide.npy", wide[:100])
    calls: list[int] = []
    real = dsmod._core.gather_many
    monkeypatch.setattr(
        dsmod._core, "gather_many", lambda *x, **kw: (calls.append(1), real(*x, **kw))
    )
    appended = Dataset.append_many(*parts)
    ref = np.concatenate([a[:700], a[1500:], a[700:1500]])
    ref_bytes = npy_bytes(saved_like_csfast(ref), tmp_path)
    # The test file's path field is S40 but its longest value is 32 bytes: save
    # writes S33, another layout. A file saved by csfast has save's layout.
    Dataset.load(paths["a"]).save(tmp_path / "a33.cs")
    calls.clear()
    appended.save(tmp_path / "gathered.cs")
    assert calls  # another layout: gathered
    assert (tmp_path / "gathered.cs").read_bytes() == ref_bytes
    same = Dataset.load(tmp_path / "a33.cs")
    again = Dataset.append_many(same.slice(0, 700), same.slice(1500), same.slice(700, 1500))
    calls.clear()
    again.save(tmp_path / "runs.cs")
    assert calls == []  # written from the map, row runs as they lie
    assert (tmp_path / "runs.cs").read_bytes() == ref_bytes
    mixed = Dataset.append_many(same.slice(0, 50), Dataset.load(tmp_path / "wide.npy").slice(50))
    mixed.save(tmp_path / "mixed.cs")
    expect = npy_bytes(
        saved_like_csfast(np.concatenate([a[:50], wide[50:100].astype(a.dtype)])), tmp_path
    )
    assert (tmp_path / "mixed.cs").read_bytes() == expect


def test_save_asks_read_ahead_for_in_order_sources_only(files, tmp_path, monkeypatch):
    """Read-ahead (madvise sequential) for the sources a save reads in row order;
    none for a join's shuffled rows, where it would only cost."""
    _, paths, a, b = files
    advised: list[int] = []
    real = dsmod.advise_scan
    monkeypatch.setattr(dsmod, "advise_scan", lambda t: (advised.append(len(t)), real(t)))
    Dataset.load(paths["a"]).subset_uids(b["uid"][::2]).save(tmp_path / "s.cs")
    assert advised == [len(a)]  # an increasing subset: in order
    advised.clear()
    shuffled = Dataset.load(paths["b"]).take(np.random.default_rng(1).permutation(len(b)))
    shuffled.save(tmp_path / "t.cs")
    assert advised == []
    assert np.array_equal(np.load(tmp_path / "t.cs")["uid"], shuffled.view("uid"))
