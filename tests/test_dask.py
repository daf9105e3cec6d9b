"""csfast.dask on a 2-worker LocalCluster: each operation equals the single-machine result.

The reference is csfast's own single-machine Dataset method on the same
files (tested elsewhere against numpy and cryosparc-tools); results are
compared sorted by uid, field by field with numpy, and dtypes exactly.
"""

import os
import subprocess
import sys

import numpy as np
import pytest

dask = pytest.importorskip("dask")
distributed = pytest.importorskip("distributed")

import csfast  # noqa: E402
import csfast.dask as cd  # noqa: E402
from csfast import CsFieldError, CsUidError, Dataset  # noqa: E402
from csfast.synthetic import particles  # noqa: E402

TOP = 2**64


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(
        n_workers=2,
        processes=True,
        threads_per_worker=1,
        host="127.0.0.1",
        dashboard_address=None,
    )
    try:
        with distributed.Client(cluster) as c:
            yield c
    finally:
        cluster.close()


def table(path, uids, results=("blob", "ctf"), seed=0, path_width=96):
    """A synthetic particle table with these uids (strings and sub-arrays), saved at path."""
    ds = particles(
        len(uids),
        results=results,
        seed=seed,
        uids=np.asarray(uids, dtype=np.uint64),
        path_width=path_width,
    )
    ds.save(path)
    return str(path)


def high_uids(n, seed):
    """n distinct uids, half of them within 2 * n of 2**64 (2**64 - 1 included)."""
    rng = np.random.default_rng(seed)
    near_top = TOP - 1 - rng.permutation(2 * n)[: n // 2].astype(np.uint64)
    near_top[0] = TOP - 1
    rest = csfast.generate_uids(n - len(near_top), seed=rng)
    uids = np.concatenate([near_top, rest])
    return uids[rng.permutation(n)]


def assert_same(got, want):
    """Same fields and dtypes, and the same rows once both are sorted by uid."""
    assert isinstance(got, Dataset)
    assert len(got) == len(want)
    assert sorted(got.descr()) == sorted(want.descr())
    g = np.argsort(got.view("uid"), kind="stable")
    w = np.argsort(want.view("uid"), kind="stable")
    for k in want.fields():
        a, b = got.view(k)[g], want.view(k)[w]
        assert a.dtype == b.dtype and a.shape == b.shape, k
        assert np.array_equal(a, b), k


def load(path):
    return Dataset.load(path)


def test_import_csfast_does_not_import_dask():
    code = "import csfast, sys; assert 'dask' not in sys.modules, 'dask imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def splitmix64(x):
    """The reference finalizer in Python integers (Steele, Lea and Flood, 2014)."""
    m = TOP - 1
    z = x & m
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & m
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & m
    return z ^ (z >> 31)


def test_uid_buckets_are_seeded_splitmix64_and_even():
    counting = np.arange(50_000, dtype=np.uint64)
    uids = np.concatenate([np.uint64(TOP - 1) - counting, counting])  # near 2**64, and small
    seed = 0x9E3779B97F4A7C15
    got = cd._bucket_of(uids, 7, seed)
    for u in uids[::997].tolist():
        i = int(np.flatnonzero(uids == u)[0])
        assert got[i] == splitmix64(u + seed) % 7
    counts = np.bincount(got, minlength=7)
    assert counts.min() > 0.95 * len(uids) / 7 and counts.max() < 1.05 * len(uids) / 7
    assert not np.array_equal(got, cd._bucket_of(uids, 7, seed + 1))


def test_read_cs_partitions_and_dtypes(client, tmp_path):
    path = table(tmp_path / "a.cs", high_uids(1000, 1))
    want = load(path)
    for rows in (1, 300, 1000, 5000):
        if rows == 1:
            parts = cd.read_cs(path, 97)  # 11 partitions, the last of 30 rows
            assert parts.npartitions == 11
        else:
            parts = cd.read_cs(path, rows)
            assert parts.npartitions == -(-1000 // rows)
        assert parts.known_rows() == 1000
        got = parts.compute()
        assert got == want  # same order, fields, dtypes (S96 strings, (2,) sub-arrays)
    # The partitions are the files' row ranges, nothing else: a slice per partition.
    parts = cd.read_cs(path, 400)
    firsts = [d.view("uid")[0] for d in dask.compute(*parts.to_delayed())]
    assert firsts == [want.view("uid")[i] for i in (0, 400, 800)]


def test_read_cs_several_files_and_an_empty_one(client, tmp_path):
    a = table(tmp_path / "a.cs", high_uids(300, 2), path_width=40)
    b = table(tmp_path / "b.cs", high_uids(200, 3), results=("blob",), path_width=96)
    empty = table(tmp_path / "e.cs", [], results=("blob", "ctf", "location"))
    parts = cd.read_cs([a, empty, b], 64)
    assert parts.npartitions == 5 + 1 + 4
    want = Dataset.append_many(load(a), load(empty), load(b), repeat_allowed=True)
    got = parts.compute()
    assert got.view("blob/path").dtype == np.dtype("S96")  # the widest, as append_many
    assert_same(got, want)
    only = cd.read_cs(a, 100, results=["ctf"]).compute()
    assert_same(only, Dataset.load(a, results=["ctf"]))


def test_read_cs_csdat_is_one_partition(client, tmp_path):
    load(table(tmp_path / "a.cs", high_uids(300, 16))).save(tmp_path / "a.csdat", format=2)
    parts = cd.read_cs(tmp_path / "a.csdat", 100)
    assert parts.npartitions == 1
    assert parts.compute() == load(tmp_path / "a.csdat")


def test_innerjoin_two(client, tmp_path):
    uids = high_uids(1200, 4)
    rng = np.random.default_rng(5)
    # The first table repeats some uids (kept, in its order); the second holds
    # a shuffled 60% of them, some twice (its last row wins), and others.
    first = np.concatenate([uids[:1000], uids[:50]])
    second = np.concatenate([rng.permutation(uids[400:1100]), uids[450:470]])
    a = table(tmp_path / "a.cs", first, results=("blob", "ctf"), seed=1)
    b = table(tmp_path / "b.cs", second, results=("alignments3D", "ctf"), seed=2)
    want = load(a).innerjoin(load(b))
    for ra, rb, buckets in ((256, 100, None), (1050, 1000, 1), (100, 256, 7)):
        got = cd.read_cs(a, ra).innerjoin(cd.read_cs(b, rb), buckets=buckets).compute()
        assert_same(got, want)
        assert got == want  # the first table's order, as the single-machine join
    # the second input's partitions made by tasks (not file slices): they send the rows
    computed = cd.read_cs(b, 300).persist()
    assert not any(isinstance(p, cd._Slice) for p in computed.parts)
    assert cd.read_cs(a, 256).innerjoin(computed, buckets=3).compute() == want
    # a later input of two files holding the same uids: the last row of a uid is the
    # second file's, as for the single-machine join of their append
    twice = Dataset.append_many(
        load(b), load(c := table(tmp_path / "c.cs", second, seed=3)), repeat_allowed=True
    )
    last = cd.read_cs(a, 256).innerjoin(cd.read_cs([b, c], 128), buckets=4).compute()
    assert last == load(a).innerjoin(twice)
    assert not last == want
    # assert_no_drop: the first table's rows without a match, counted across the buckets
    with pytest.raises(CsUidError, match="innerjoin dropped 450 of 1050 rows") as err:
        cd.read_cs(a, 256).innerjoin(cd.read_cs(b, 100), assert_no_drop=True, buckets=3).compute()
    with pytest.raises(CsUidError, match="innerjoin dropped 450 of 1050 rows") as single:
        load(a).innerjoin(load(b), assert_no_drop=True)
    named = [int(u) for u in str(err.value).split("include ")[1].rstrip(", .").split(", ")]
    assert not np.isin(np.array(named, dtype=np.uint64), second).any()
    assert str(single.value).startswith(str(err.value).split(";")[0])
    kept = load(a).subset_uids(second)
    kept.save(tmp_path / "k.cs")
    every = cd.read_cs(tmp_path / "k.cs", 300).innerjoin(cd.read_cs(b, 100), assert_no_drop=True)
    assert every.compute() == kept.innerjoin(load(b))
    # ctf comes from the last input that has it
    assert np.array_equal(np.sort(got.view("ctf/df1_A")), np.sort(want.view("ctf/df1_A")))


def test_innerjoin_many_and_empty_results(client, tmp_path):
    uids = high_uids(900, 6)
    a = table(tmp_path / "a.cs", uids[:700], results=("blob",), seed=1)
    b = table(tmp_path / "b.cs", uids[200:][::-1], results=("ctf",), seed=2)
    c = table(tmp_path / "c.cs", uids[::3], results=("alignments3D", "blob"), seed=3)
    want = Dataset.innerjoin_many(load(a), load(b), load(c))
    got = cd.innerjoin(cd.read_cs(a, 150), cd.read_cs(b, 333), cd.read_cs(c, 64)).compute()
    assert got == want
    # no uid in common: no rows, every field with its dtype
    d = table(tmp_path / "d.cs", csfast.generate_uids(50, seed=99), results=("location",), seed=4)
    none = cd.innerjoin(cd.read_cs(a, 150), cd.read_cs(d, 10)).compute()
    assert len(none) == 0
    assert none.descr() == load(a).innerjoin(load(d)).descr()


def test_innerjoin_field_conflict_fails_before_running(client, tmp_path):
    a = table(tmp_path / "a.cs", high_uids(10, 7), results=("blob",))
    cols = {k: np.array(load(a).view(k)) for k in load(a).fields()}
    cols["blob/idx"] = cols["blob/idx"].astype(np.float64)
    Dataset.from_columns(cols).save(tmp_path / "b.cs")
    with pytest.raises(CsFieldError, match="blob/idx"):
        cd.read_cs(a).innerjoin(cd.read_cs(tmp_path / "b.cs"))


def test_append_and_its_uid_check(client, tmp_path):
    uids = high_uids(900, 8)
    a = table(tmp_path / "a.cs", uids[:400], seed=1, path_width=50)
    b = table(tmp_path / "b.cs", uids[400:], results=("blob", "ctf", "location"), seed=2)
    empty = table(tmp_path / "e.cs", [], results=("blob",))
    A, B, E = cd.read_cs(a, 128), cd.read_cs(b, 100), cd.read_cs(empty)
    got = cd.append(A, E, B).compute()
    assert got == Dataset.append_many(load(a), load(empty), load(b))
    # a uid of a repeated across inputs: named, with the inputs holding it
    c = table(tmp_path / "c.cs", [uids[5], uids[700], *csfast.generate_uids(30, seed=9)], seed=3)
    with pytest.raises(CsUidError, match=f"{uids[5]} \\(datasets 0 and 2\\)") as err:
        cd.append(A, B, cd.read_cs(c, 7)).compute()
    assert "2 rows repeat" in str(err.value)
    with pytest.raises(CsUidError, match="twice in dataset 0"):
        cd.read_cs([a, a], 300).append().compute()
    # the check guards every way out: writing too
    with pytest.raises(CsUidError):
        cd.append(A, cd.read_cs(c)).to_cs(tmp_path / "out")
    with pytest.raises(CsUidError):
        cd.append(A, cd.read_cs(c)).write_output(tmp_path / "job", "J1", "p", "particle", ["blob"])
    assert os.listdir(tmp_path / "job") == []  # no group, no shard left
    allowed = cd.append(A, B, cd.read_cs(c, 7), repeat_allowed=True).compute()
    assert allowed == Dataset.append_many(load(a), load(b), load(c), repeat_allowed=True)


def test_union_first_occurrence_wins(client, tmp_path):
    uids = high_uids(1000, 10)
    a = table(tmp_path / "a.cs", np.concatenate([uids[:500], uids[:20]]), seed=1)
    b = table(tmp_path / "b.cs", uids[300:800][::-1], seed=2)
    c = table(tmp_path / "c.cs", uids[700:], results=("blob", "ctf", "pick_stats"), seed=3)
    want = Dataset.union_many(load(a), load(b), load(c))
    got = cd.union(cd.read_cs(a, 111), cd.read_cs(b, 64), cd.read_cs(c, 1000), buckets=5)
    assert got.compute() == want


def test_subset_uids(client, tmp_path):
    uids = high_uids(800, 11)
    a = table(tmp_path / "a.cs", np.concatenate([uids, uids[:10]]), seed=1)
    wanted = np.concatenate([uids[::4], high_uids(20, 12)])
    want = load(a).subset_uids(wanted)
    A = cd.read_cs(a, 90)
    assert A.subset_uids(wanted).compute() == want
    assert A.subset_uids(set(wanted.tolist())).compute() == want
    b = table(tmp_path / "b.cs", wanted, results=("blob",), seed=2)
    assert A.subset_uids(cd.read_cs(b, 33)).compute() == want
    with pytest.raises(CsUidError):
        A.subset_uids([-1])


def test_operations_compose(client, tmp_path):
    uids = high_uids(600, 13)
    a = table(tmp_path / "a.cs", uids[:300], seed=1)
    b = table(tmp_path / "b.cs", uids[300:], seed=2)
    c = table(tmp_path / "c.cs", uids[::-2], results=("alignments3D",), seed=3)
    joined = cd.append(cd.read_cs(a, 150), cd.read_cs(b, 150)).innerjoin(cd.read_cs(c, 50))
    want = Dataset.append_many(load(a), load(b)).innerjoin(load(c))
    assert joined.compute() == want
    assert joined.persist().subset_uids(uids[:100]).compute() == want.subset_uids(uids[:100])


def test_writing_shards_groups_and_parquet(client, tmp_path):
    uids = high_uids(500, 14)
    a = table(tmp_path / "a.cs", uids, results=("blob", "ctf", "location"), seed=1)
    b = table(tmp_path / "b.cs", uids[::2], results=("alignments3D",), seed=2)
    joined = cd.read_cs(a, 100).innerjoin(cd.read_cs(b, 100))
    want = load(a).innerjoin(load(b))
    paths = joined.to_cs(tmp_path / "shards")
    assert len(paths) == 5 and all(os.path.exists(p) for p in paths)
    assert cd.read_cs(paths).compute() == want
    group = joined.write_output(
        tmp_path / "job", "J9", "particles", "particle", ["alignments3D", "blob", "ctf"]
    )
    listed = [f for f in os.listdir(tmp_path / "job") if not f.endswith(".lock")]
    assert sorted(listed) == ["J9_000_particles.cs", "J9_particles.csg"]  # no shard left
    loaded = csfast.ResultGroup.from_csg(group.path)
    assert_same(loaded.load(), want.filter_prefixes(["alignments3D", "blob", "ctf"], copy=True))
    # a result group reads back as a Partitioned, its results joined
    assert_same(cd.read_cs(loaded, 64).compute(), loaded.load())
    pytest.importorskip("pyarrow")
    from csfast.convert import read_parquet

    files = joined.to_parquet(tmp_path / "pq")
    back = Dataset.append_many(*[read_parquet(f) for f in files])
    assert_same(back, want)


def test_read_cs_result_group_with_passthrough(client, tmp_path):
    uids = high_uids(400, 15)
    pt = load(table(tmp_path / "pt.cs", uids, results=("blob", "location"), seed=1))
    new = load(table(tmp_path / "new.cs", uids[::3][::-1], results=("alignments3D",), seed=2))
    os.mkdir(tmp_path / "job")
    group = csfast.write_output(
        tmp_path / "job", "J3", "particles", new, "particle", ["alignments3D"], passthrough=pt
    )
    got = cd.read_cs(group, 50).compute()
    assert got == group.load()
    assert_same(
        cd.read_cs(group, 50, results=["location"]).compute(),
        group.load(["location"], passthrough=False),
    )
