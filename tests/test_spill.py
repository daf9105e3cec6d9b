"""The bounded-memory uid kernels (csfast.spill) against the in-memory ones.

Every spilled result must equal ``_core``'s byte for byte. The failures are
real: a full tmpfs under the spill folder, a process killed by SIGKILL in
the middle of a spilled join, a memory cgroup in which the in-memory kernel
is killed for lack of memory.
"""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_kernels import ref_first, ref_join, uid_column, uid_lists

from csfast import _core, spill
from csfast.errors import CsArgumentError, CsUidError

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def spill_folders(parent: Path) -> list[Path]:
    return sorted(parent.glob(spill.PREFIX + "*"))


def same(got: list[np.ndarray], want: list[np.ndarray]) -> None:
    """Equal arrays, dtype and bytes alike."""
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert g.dtype == w.dtype
        assert g.shape == w.shape
        assert g.tobytes() == w.tobytes()


@pytest.fixture
def spied(monkeypatch):
    """Records the partition bits of every spill (to see that a call spilled)."""
    seen: list[int] = []
    init = spill._Partitions.__init__

    def record(self, folder, arrays, bits, chunk):
        seen.append(bits)
        init(self, folder, arrays, bits, chunk)

    monkeypatch.setattr(spill._Partitions, "__init__", record)
    return seen


# ------------------------------------------------------------ hypothesis


@SETTINGS
@given(st.lists(uid_lists, min_size=1, max_size=4), st.integers(0, 2))
def test_join_index(tmp_path_factory, keys, how):
    folder = tmp_path_factory.mktemp("spill")
    cols = [uid_column(k, how) for k in keys]
    got = spill.join_index(cols, budget=1, folder=folder)
    same(got, _core.join_index(cols))
    assert [g.tolist() for g in got] == ref_join(keys)
    assert spill_folders(folder) == []


@SETTINGS
@given(uid_lists, uid_lists, st.integers(0, 2))
def test_isin(tmp_path_factory, values, members, how):
    folder = tmp_path_factory.mktemp("spill")
    v, m = uid_column(values, how), uid_column(members, 2 - how)
    got = spill.isin(v, m, budget=1, folder=folder)
    same([got], [_core.isin(v, m)])
    assert got.tolist() == [u in set(members) for u in values]


@SETTINGS
@given(st.lists(uid_lists, min_size=1, max_size=4), st.integers(0, 2), st.integers(0, 8))
def test_repeats_and_first_occurrence(tmp_path_factory, keys, how, limit):
    folder = tmp_path_factory.mktemp("spill")
    cols = [uid_column(k, how) for k in keys]
    count, rep, first = spill.repeats(cols, limit, budget=1, folder=folder)
    want = _core.repeats(cols, limit)
    assert count == want[0]
    same([rep, first], list(want[1:]))
    masks = spill.first_occurrence(cols, budget=1, folder=folder)
    same(masks, _core.first_occurrence(cols))
    ref = ref_first(keys)
    assert [bool(x) for m in masks for x in m] == [f == r for r, f in enumerate(ref)]
    assert spill_folders(folder) == []


@SETTINGS
@given(st.lists(st.booleans(), max_size=3000), st.integers(1, 40_000))
def test_nonzero_rows(tmp_path_factory, mask, budget):
    folder = tmp_path_factory.mktemp("spill")
    m = np.array(mask, dtype=bool)
    got = spill.nonzero_rows(m, budget=budget, folder=folder)
    same([got], [np.flatnonzero(m)])
    assert isinstance(got.base, np.memmap) == (8 * int(m.sum()) > budget)
    assert spill_folders(folder) == []


def test_isin_keeps_the_values_shape(tmp_path):
    values = np.arange(24, dtype=np.uint64).reshape(4, 6)
    got = spill.isin(values, np.arange(0, 24, 5), budget=1, folder=tmp_path)
    same([got], [_core.isin(values, np.arange(0, 24, 5))])


# ---------------------------------------------------------- partition kernel


def ref_partition(uids: list[int], first_row: int, seed: int, bits: int):
    """splitmix64(uid + seed)'s top bits in Python integers, rows sorted stably."""
    mask = 2**64 - 1

    def part(u: int) -> int:
        z = (u + seed + 0x9E3779B97F4A7C15) & mask
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
        return (z ^ (z >> 31)) >> (64 - bits)

    parts = [part(u) for u in uids]
    order = sorted(range(len(uids)), key=lambda r: parts[r])
    counts = [parts.count(p) for p in range(2**bits)]
    return [(uids[r], first_row + r) for r in order], counts


@SETTINGS
@given(
    uid_lists,
    st.integers(0, 2),
    st.integers(0, 2**40),
    st.integers(0, 2**64 - 1),
    st.integers(1, 16),
    st.sampled_from([1, 2, 3]),
)
def test_partition_kernel(uids, how, first_row, seed, bits, threads):
    old = _core._threads
    _core.set_num_threads(threads)
    try:
        rec, counts = _core.partition(uid_column(uids, how), first_row, seed, bits)
    finally:
        _core.set_num_threads(old)
    want, want_counts = ref_partition(uids, first_row, seed, bits)
    assert rec.dtype == _core.RECORD
    assert list(zip(rec["uid"].tolist(), rec["row"].tolist(), strict=True)) == want
    assert counts.tolist() == want_counts


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_partition_kernel_large(threads):
    """300k rows on several threads: each partition in row order, every row once."""
    uids = np.random.default_rng(2).integers(0, 2**64 - 1, 300_000, dtype=np.uint64)
    old = _core._threads
    _core.set_num_threads(threads)
    try:
        rec, counts = _core.partition(uid_column(uids.tolist(), 1), 7, 99, 6)
    finally:
        _core.set_num_threads(old)
    ends = np.cumsum(counts)
    assert ends[-1] == len(uids)
    for lo, hi in zip([0, *ends[:-1]], ends, strict=True):
        rows = rec["row"][lo:hi]
        assert np.all(np.diff(rows) > 0)
    assert np.array_equal(np.sort(rec["row"]), np.arange(7, 7 + len(uids)))
    assert np.array_equal(rec["uid"], uids[rec["row"] - 7])
    with pytest.raises(ValueError, match="bits"):
        _core.partition(uids, 0, 0, 17)


# ------------------------------------------------------- 100k rows, many partitions


def table_uids(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Three uid columns of a 100k-row scenario: a mapped-like strided column
    with repeats, a shuffled partial match with repeats, uids near 2**64."""
    rng = np.random.default_rng(seed)
    a = rng.integers(2**64 - 4 * n, 2**64, n, dtype=np.uint64, endpoint=False)
    a[rng.integers(0, n, n // 50)] = a[rng.integers(0, n, n // 50)]
    b = rng.permutation(
        np.concatenate([a[: n * 3 // 4], rng.integers(0, 2**64 - 1, n // 4, np.uint64)])
    )
    b = np.concatenate([b, b[: n // 20]])
    c = rng.permutation(np.concatenate([a[n // 10 :], b[: n // 10]]))
    return uid_column(a.tolist(), 1), b, c


def test_100k_rows_in_many_partitions(tmp_path, monkeypatch, spied):
    a, b, c = table_uids(100_000)
    # A budget of 125 kB: chunks of 1,000 rows, partitions of about a thousand.
    monkeypatch.setenv("CSFAST_MEMORY_LIMIT", "125K")
    assert spill._chunk_rows(spill.memory_limit()) == 1000
    for keys in ([a, b], [b, a], [a, b, c], [c, a, b, a]):
        same(spill.join_index(keys, folder=tmp_path), _core.join_index(keys))
    count, rep, first = spill.repeats([a, b, c], 10**9, folder=tmp_path)
    want = _core.repeats([a, b, c], 10**9)
    assert count == want[0] > 0
    same([rep, first], list(want[1:]))
    count, rep, first = spill.repeats([a, b], 20, folder=tmp_path)
    assert count == _core.repeats([a, b], 20)[0]
    same([rep, first], list(_core.repeats([a, b], 20)[1:]))
    same(spill.first_occurrence([a, b, c], folder=tmp_path), _core.first_occurrence([a, b, c]))
    same([spill.isin(a, c, folder=tmp_path)], [_core.isin(a, c)])
    assert len(spied) == 8 and min(spied) >= 5  # at least 32 partitions each time
    assert spill_folders(tmp_path) == []


def test_one_uid_in_every_row(tmp_path, spied):
    """Hashing cannot split one uid's rows: its partition is matched whole."""
    a, b = np.full(50_000, 7, dtype=np.uint64), np.full(1000, 7, dtype=np.uint64)
    same(spill.join_index([a, b], budget=1 << 16, folder=tmp_path), _core.join_index([a, b]))
    count, rep, first = spill.repeats([a, b], 10, budget=1 << 16, folder=tmp_path)
    assert (count, rep.tolist(), first.tolist()) == (50_999, list(range(1, 11)), [0] * 10)
    assert len(spied) == 2


def test_within_budget_runs_in_memory(tmp_path, spied):
    a, b, _ = table_uids(1000)
    same(spill.join_index([a, b], budget=10**9, folder=tmp_path), _core.join_index([a, b]))
    assert spied == []


def test_spilled_results_are_mapped_files_that_outlive_the_folder(tmp_path):
    a, b, _ = table_uids(10_000)
    out = spill.join_index([a, b], budget=1, folder=tmp_path)
    assert spill_folders(tmp_path) == []
    for o in out:
        assert isinstance(o.base, np.memmap)
    maps = Path("/proc/self/maps").read_text()
    assert spill.PREFIX in maps and "(deleted)" in maps
    same(out, _core.join_index([a, b]))


# --------------------------------------------------------------- budget


@pytest.mark.parametrize(
    ("text", "size"),
    [("1000", 1000), ("2G", 2 << 30), ("512m", 512 << 20), ("1.5K", 1536), (" 3 GiB ", 3 << 30)],
)
def test_memory_limit_from_the_environment(monkeypatch, text, size):
    monkeypatch.setenv("CSFAST_MEMORY_LIMIT", text)
    assert spill.memory_limit() == size


@pytest.mark.parametrize("text", ["lots", "-1G", "0", "2X", "1e9"])
def test_memory_limit_refuses_nonsense(monkeypatch, text):
    monkeypatch.setenv("CSFAST_MEMORY_LIMIT", text)
    with pytest.raises(CsArgumentError, match="CSFAST_MEMORY_LIMIT"):
        spill.memory_limit()


def test_default_memory_limit(monkeypatch):
    monkeypatch.delenv("CSFAST_MEMORY_LIMIT", raising=False)
    total = next(
        int(line.split()[1]) * 1024
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal:")
    )
    assert 0 < spill.physical_memory() <= total
    assert spill.memory_limit() == int(spill.physical_memory() * spill.DEFAULT_FRACTION)


# ---------------------------------------------------------- spill folder


def test_spill_folder_removed_after_an_error(tmp_path, monkeypatch):
    a, b, _ = table_uids(10_000)
    calls = []

    def failing(keys):
        calls.append(len(keys))
        if len(calls) == 3:
            assert len(spill_folders(tmp_path)) == 1
            raise RuntimeError("stop in the third partition")
        return _core.join_index(keys)

    monkeypatch.setattr(spill._core, "join_index", failing)
    with pytest.raises(RuntimeError, match="third partition"):
        spill.join_index([a, b], budget=1, folder=tmp_path)
    assert spill_folders(tmp_path) == []


def test_full_disk_is_an_oserror_and_the_folder_goes(tiny_fs):
    a, b, _ = table_uids(100_000)
    with pytest.raises(OSError) as err:
        spill.join_index([a, b], budget=1 << 20, folder=tiny_fs)
    assert err.value.errno == 28  # ENOSPC, not a SIGBUS in a sparse mapped file
    assert spill_folders(tiny_fs) == []
    # With room again, the same call works there.
    out = spill.join_index([a[:5000], b[:5000]], budget=1 << 16, folder=tiny_fs)
    same(out, _core.join_index([a[:5000], b[:5000]]))
    del out, err  # the result and the traceback's frames map files of the tmpfs
    gc.collect()


KILLED = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    from csfast import _core, spill

    def stuck(keys):
        print("matching", flush=True)
        time.sleep(600)

    _core.join_index = stuck  # the first partition never ends: SIGKILL finds the folder full
    n = 20_000
    spill.join_index([np.arange(n, dtype=np.uint64)] * 2, budget=1 << 16, folder=sys.argv[1])
    """
)


def test_folder_of_a_killed_run_is_removed_by_the_next(tmp_path):
    with subprocess.Popen(
        [sys.executable, "-c", KILLED, str(tmp_path)], stdout=subprocess.PIPE, text=True
    ) as p:
        try:
            assert p.stdout.readline() == "matching\n"
        finally:
            p.send_signal(signal.SIGKILL)
    assert p.returncode == -signal.SIGKILL
    (left,) = spill_folders(tmp_path)
    assert left.name.startswith(f"{spill.PREFIX}{p.pid}-")
    assert len(list(left.glob("part-*"))) > 1
    # A live process's folder (this one's) stays.
    with spill.SpillFolder(tmp_path) as mine:
        a, b, _ = table_uids(1000)
        same(spill.join_index([a, b], budget=1, folder=tmp_path), _core.join_index([a, b]))
        assert spill_folders(tmp_path) == [mine]
    assert spill_folders(tmp_path) == []


def dead_pid() -> int:
    """The pid of a process that has exited."""
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(done.stdout)


def test_stale_folders_by_pid_and_start_time(tmp_path):
    dead = dead_pid()
    host = os.uname().nodename
    folders = {
        "dead": (dead, f"{host}\n{dead}\n1\n"),
        "reused": (os.getpid(), f"{host}\n{os.getpid()}\n1\n"),  # this pid, another start time
        "no-owner": (dead, None),
        "other-host": (dead, f"not-{host}\n{dead}\n1\n"),
        "alive": (os.getpid(), spill._owner()),
    }
    for name, (pid, owner) in folders.items():
        f = tmp_path / f"{spill.PREFIX}{pid}-{name}"
        f.mkdir()
        (f / "part-0000").write_bytes(b"x" * 16)
        if owner is not None:
            (f / "owner").write_text(owner)
    removed = spill.clean_stale(tmp_path)
    assert sorted(p.name.split("-", 3)[-1] for p in removed) == ["dead", "no-owner", "reused"]
    assert sorted(p.name.split("-", 3)[-1] for p in spill_folders(tmp_path)) == [
        "alive",
        "other-host",
    ]


# ---------------------------------------------------------- memory cgroup

CGROUP_RUN = textwrap.dedent(
    """
    import sys
    import numpy as np
    from csfast import _core, spill

    a = np.load(sys.argv[2], mmap_mode="r")
    b = np.load(sys.argv[3], mmap_mode="r")
    if sys.argv[1] == "core":
        out = _core.join_index([a, b])
    else:
        out = spill.join_index([a, b], folder=sys.argv[4])
    for k, o in enumerate(out):  # no copy: the mapped result is written out
        np.save(f"{sys.argv[5]}-{k}.npy", o)
    print(spill.memory_limit(), flush=True)
    """
)
CGROUP_LIMIT = 128 << 20


@pytest.fixture
def memory_cgroup():
    """A cgroup v1 memory cgroup limited to CGROUP_LIMIT bytes; yields a command
    prefix that runs a program inside it."""
    root = Path("/sys/fs/cgroup/memory")
    if "libasan" in os.environ.get("LD_PRELOAD", ""):
        pytest.skip("under AddressSanitizer the interpreter alone outgrows the cgroup's limit")
    if os.geteuid() != 0:
        pytest.skip("a memory cgroup needs root")
    if not (root / "cgroup.procs").exists():
        pytest.skip("no cgroup v1 memory controller at /sys/fs/cgroup/memory")
    cg = root / f"csfast-test-spill-{os.getpid()}"
    try:
        cg.mkdir()
        (cg / "memory.limit_in_bytes").write_text(str(CGROUP_LIMIT))
    except OSError as e:
        pytest.skip(f"cannot make a memory cgroup: {e}")
    try:
        yield ["sh", "-c", f'echo $$ > {cg}/cgroup.procs && exec "$@"', "sh"]
    finally:
        # Its processes have exited; an empty cgroup can be removed.
        cg.rmdir()


def test_join_in_a_memory_cgroup_spills(tmp_path, memory_cgroup):
    """4M uids: the in-memory join needs about 200 MB and is killed under a
    128 MB limit; the default budget (half the cgroup's limit) spills and works."""
    n = 4_000_000
    rng = np.random.default_rng(1)
    a = rng.permutation(np.arange(1, 2 * n, 2, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15))
    b = rng.permutation(a)[: n - 1000]
    np.save(tmp_path / "a.npy", a)
    np.save(tmp_path / "b.npy", b)
    want = _core.join_index([a, b])
    assert spill.kernel_bytes("join_index", [n, n - 1000]) > CGROUP_LIMIT
    del a, b
    env = {k: v for k, v in os.environ.items() if k != "CSFAST_MEMORY_LIMIT"}
    files = [str(tmp_path / f) for f in ("a.npy", "b.npy")]

    def run(mode: str) -> subprocess.CompletedProcess:
        out = str(tmp_path / mode)
        cmd = [sys.executable, "-c", CGROUP_RUN, mode, *files, str(tmp_path), out]
        return subprocess.run(memory_cgroup + cmd, env=env, capture_output=True, text=True)

    core = run("core")
    assert core.returncode == -signal.SIGKILL, core.stderr  # the OOM killer
    spilled = run("spill")
    assert spilled.returncode == 0, spilled.stderr
    assert int(spilled.stdout) == CGROUP_LIMIT // 2
    got = [np.load(tmp_path / f"spill-{k}.npy") for k in range(2)]
    same(got, list(want))
    assert spill_folders(tmp_path) == []


# ------------------------------------------------------------ datasets


def test_dataset_operations_in_a_tiny_budget_save_the_same_bytes(
    table_files, tmp_path, monkeypatch, spied
):
    """innerjoin (two and three tables), append (and its repeated-uid error),
    union, subset_uids, a query on uid and replace of mapped datasets, spilled under a 64 kB
    budget and in memory: the same rows, saved to byte-identical files."""
    from csfast import Dataset

    def run(out: Path) -> list[bytes]:
        a, b, c = (Dataset.load(table_files[k]) for k in "abc")
        results = [
            a.innerjoin(b),
            Dataset.innerjoin_many(a, b, c),
            Dataset.append_many(a.slice(10_000), a.slice(0, 10_000)),
            Dataset.union_many(a, c),
            c.subset_uids(a["uid"][::3]),
            a.query({"uid": c["uid"][::2]}),
            a.replace({}, c.slice(0, 5000)),
        ]
        with pytest.raises(CsUidError) as err:
            Dataset.append_many(a, c)  # the message names the first repeats
        saved = [str(err.value).encode()]
        for i, r in enumerate(results):
            r.save(out / f"{i}.cs")
            saved.append((out / f"{i}.cs").read_bytes())
        return saved

    (tmp_path / "memory").mkdir()
    (tmp_path / "spilled").mkdir()
    want = run(tmp_path / "memory")
    assert spied == []
    monkeypatch.setenv("CSFAST_MEMORY_LIMIT", "64K")
    got = run(tmp_path / "spilled")
    assert len(spied) >= 8  # each operation matched its uids through partitions
    assert [len(g) for g in got] == [len(w) for w in want]
    assert got == want
    # No output file: the spill folders were in the temporary folder, and are gone.
    mine = f"{spill.PREFIX}{os.getpid()}-*"
    assert list(Path(spill.tempfile.gettempdir()).glob(mine)) == []
