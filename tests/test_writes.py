"""Writes that lose nothing (issue 8, docs/writes.md): complete writes, result
groups that change all at once, temporary files of killed writers, symbolic
links and long names.

The faults are real: a 1 MB tmpfs filled to many levels (ENOSPC in the middle
of a write), RLIMIT_FSIZE (short writes, then EFBIG), kill -9 of writer
processes, two writer processes of one group at once. References: numpy
(``np.load``), the bytes the same writer writes on a roomy disk, and the
generation number each writer stamps into every row it writes.
"""

import errno
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import yaml

from csfast import Input, InputSpec, Result, ResultGroup, csdat, write_output
from csfast.dataset import Dataset
from csfast.format import (
    STALE_TEMP_SECONDS,
    remove_stale_temps,
    temp_files,
    write_all,
)

FAULT_LEVELS = 24


# ---------------------------------------------------------------- helpers


def records(n: int, seed: int, width: int = 24) -> np.ndarray:
    """A particle-like structured array with distinct uids."""
    rng = np.random.default_rng(seed)
    a = np.zeros(
        n,
        dtype=[
            ("uid", "<u8"),
            ("blob/path", f"S{width}"),
            ("blob/idx", "<u4"),
            ("ctf/df1_A", "<f4"),
            ("ctf/tilt_A", "<f4", (2,)),
        ],
    )
    a["uid"] = rng.permutation(np.unique(rng.integers(1, 2**64, 2 * n + 10, dtype=np.uint64)))[:n]
    a["blob/path"] = [
        f"J1/imported/{i:06d}_{rng.integers(99)}.mrc".encode()[:width] for i in range(n)
    ]
    a["blob/idx"] = rng.integers(0, 500, n)
    a["ctf/df1_A"] = rng.uniform(5000, 30000, n)
    a["ctf/tilt_A"] = rng.normal(size=(n, 2))
    return a


def assert_records(ds: Dataset | np.ndarray, ref: np.ndarray) -> None:
    names = ds.fields() if isinstance(ds, Dataset) else list(ds.dtype.names)
    assert sorted(names) == sorted(ref.dtype.names)
    for name in ref.dtype.names:
        np.testing.assert_array_equal(np.asarray(ds[name]), ref[name], err_msg=name)


def listing(folder: Path) -> list[str]:
    return sorted(f for f in os.listdir(folder) if f != "filler")


def temps(folder: Path) -> list[str]:
    return [f for f in os.listdir(folder) if f.endswith(".tmp")]


def free_bytes(folder: Path) -> int:
    st = os.statvfs(folder)
    return st.f_bavail * st.f_frsize


def empty(folder: Path) -> None:
    for f in folder.iterdir():
        shutil.rmtree(f) if f.is_dir() else f.unlink()


def run_at_free_levels(folder: Path, write_old, write_new, state) -> list[str]:
    """Write the old files, fill the disk to leave some room, write the new ones.

    At FAULT_LEVELS amounts of room from none to twice what old and new files
    take: either write_new raises OSError and state() finds the old files, or
    it returns and state() finds the new ones; never a temporary file left.
    state() asserts that the files are exactly the old or the new ones.
    """
    empty(folder)
    write_old()
    write_new()
    span = 2 * sum(f.stat().st_size for f in folder.rglob("*")) + 8192
    outcomes = []
    for level in range(FAULT_LEVELS):
        empty(folder)
        write_old()
        assert state() == "old"
        room = span * level // (FAULT_LEVELS - 1)
        with open(folder / "filler", "wb") as f:
            size = max(free_bytes(folder) - room, 0)
            if size:
                os.posix_fallocate(f.fileno(), 0, size)
        try:
            write_new()
            expected = "new"
        except OSError as e:
            assert e.errno == errno.ENOSPC, e
            expected = "old"
        assert state() == expected, f"room {room}"
        assert temps(folder) == []
        outcomes.append(expected)
    assert outcomes[0] == "old" and outcomes[-1] == "new"
    return outcomes


def same_bytes(path: Path, old: bytes, new: bytes, skip_first_line: bool = False) -> str:
    data = path.read_bytes()
    if skip_first_line:  # starfile's banner holds the time of writing
        data, old, new = (b.split(b"\n", 1)[1] for b in (data, old, new))
    assert data in (old, new), f"{path} is neither the old nor the new file"
    return "old" if data == old else "new"


# ---------------------------------------------------------------- single files at every level


def _cs(ds, path):
    ds.save(path)


def _csdat(ds, path):
    csdat.write(path, ds.cols(), len(ds), compression=None)


def _csdat_lz4(ds, path):
    csdat.write(path, ds.cols(), len(ds), compression="lz4")


def _parquet(ds, path):
    pytest.importorskip("pyarrow")
    from csfast.convert.files import write_parquet

    write_parquet(ds, path)


def _arrow(ds, path):
    pytest.importorskip("pyarrow")
    from csfast.convert.files import write_arrow

    write_arrow(ds, path)


def _star(ds, path):
    pytest.importorskip("starfile")
    from csfast import to_star

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # optics that vary within a group: not the point here
        to_star(ds, path)


WRITERS = {
    "cs": _cs,
    "csdat": _csdat,
    "csdat-lz4": _csdat_lz4,
    "parquet": _parquet,
    "arrow": _arrow,
    "star": _star,
}


@pytest.mark.parametrize("kind", list(WRITERS))
def test_single_file_writers_on_a_full_disk(tiny_fs, tmp_path, kind):
    write = WRITERS[kind]
    if kind == "star":
        from csfast.synthetic import particles

        old_ds = particles(500, results=("blob", "ctf", "location"), seed=1)
        new_ds = particles(800, results=("blob", "ctf", "location"), seed=2)
    else:
        old_rec, new_rec = records(2000, 1), records(3500, 2, width=40)
        old_ds, new_ds = Dataset(old_rec), Dataset(new_rec)
    ref_old, ref_new = tmp_path / "old", tmp_path / "new"
    write(old_ds, ref_old)
    write(new_ds, ref_new)
    old, new = ref_old.read_bytes(), ref_new.read_bytes()
    assert old != new
    path = tiny_fs / f"table.{kind}"

    def state():
        assert listing(tiny_fs) == [path.name]
        got = same_bytes(path, old, new, skip_first_line=kind == "star")
        if kind == "cs":  # and numpy reads it as the table it was
            assert_records(np.load(path), old_rec if got == "old" else new_rec)
        return got

    run_at_free_levels(tiny_fs, lambda: write(old_ds, path), lambda: write(new_ds, path), state)


def test_write_job_on_a_full_disk(tiny_fs, tmp_path):
    from csfast import write_job

    old_text, new_text = "old", "a much longer title " * 3000
    old = Path(write_job(tmp_path, "J20", "homo_refine_new", title=old_text)).read_bytes()
    new = Path(write_job(tmp_path / "n", "J20", "homo_refine_new", title=new_text)).read_bytes()
    path = tiny_fs / "J20" / "job.json"

    def state():
        assert sorted(os.listdir(path.parent)) == ["job.json"]
        return same_bytes(path, old, new)

    run_at_free_levels(
        tiny_fs,
        lambda: write_job(tiny_fs, "J20", "homo_refine_new", title=old_text),
        lambda: write_job(tiny_fs, "J20", "homo_refine_new", title=new_text),
        state,
    )


def csg_group(folder: Path, n_results: int, description: str) -> ResultGroup:
    results = {
        f"r{i}": Result(
            f"r{i}",
            "particle",
            {0: str(folder / f"J5_{i:03d}_p.cs"), 7: str(folder / f"J5_{i + 7:03d}_p.cs")},
            num_items=1000 + i,
        )
        for i in range(n_results)
    }
    return ResultGroup("particles", "particle", results, description=description, job="J5")


def csg_state(path: Path, old: ResultGroup, new: ResultGroup) -> str:
    doc = yaml.safe_load(path.read_text())
    got = {r: (m["metafile"], m["num_items"]) for r, m in doc["results"].items()}
    for label, g in (("old", old), ("new", new)):
        if doc["group"]["description"] == g.description:
            assert got == {
                n: (">" + Path(r.metafile).name, r.num_items) for n, r in g.results.items()
            }
            return label
    raise AssertionError(f"{path}: neither the old nor the new group")


def test_save_csg_on_a_full_disk(tiny_fs):
    path = tiny_fs / "J5_particles.csg"
    old = csg_group(tiny_fs, 10, "old")
    new = csg_group(tiny_fs, 60, "new " * 200)

    def state():
        assert listing(tiny_fs) == [path.name]
        return csg_state(path, old, new)

    run_at_free_levels(tiny_fs, lambda: old.save_csg(path), lambda: new.save_csg(path), state)


# ---------------------------------------------------------------- write_output at every level


def stamped(pool: np.ndarray, gen: int, half: bool) -> tuple[np.ndarray, np.ndarray]:
    """A version's main rows (half of the pool, or all) and its passthrough rows
    (the whole pool), every value stamped with the generation that wrote it."""
    u = pool[: len(pool) // 2] if half else pool
    main = np.zeros(
        len(u),
        dtype=[
            ("uid", "<u8"),
            ("blob/idx", "<u4"),
            ("blob/path", "S16"),
            ("blob/shape", "<u4", (2,)),
        ],
    )
    main["uid"] = u
    main["blob/idx"] = gen
    main["blob/path"] = f"gen{gen}".encode()
    main["blob/shape"] = gen
    pt = np.zeros(
        len(pool),
        dtype=[
            ("uid", "<u8"),
            ("location/micrograph_uid", "<u8"),
            ("location/center_x_frac", "<f4"),
        ],
    )
    pt["uid"] = pool
    pt["location/micrograph_uid"] = gen
    pt["location/center_x_frac"] = gen / 7
    return main, pt


def write_gen(folder, pool, gen, version, half=None):
    main, pt = stamped(pool, gen, gen % 2 == 1 if half is None else half)
    return write_output(
        folder,
        "J9",
        "particles",
        Dataset(main),
        "particle",
        ["blob"],
        passthrough=Dataset(pt),
        version=version,
        validate=False,
    )


def check_group(folder: Path, pool: np.ndarray) -> dict[int, int]:
    """{version: generation}: every version loads as one generation, whole
    (its main rows and its passthrough rows from the same writer), and the
    folder holds nothing the .csg does not name but the lock file."""
    g = ResultGroup.from_csg(folder / "J9_particles.csg")
    gens = {}
    for v in sorted({v for r in g.results.values() if not r.passthrough for v in r.versions}):
        ds = g.load(version=v)
        gen = int(ds["blob/idx"][0])
        main, pt = stamped(pool, gen, gen % 2 == 1)
        np.testing.assert_array_equal(ds["uid"], main["uid"])
        for name in ("blob/idx", "blob/path", "blob/shape"):
            np.testing.assert_array_equal(ds[name], main[name])
        np.testing.assert_array_equal(
            ds["location/micrograph_uid"],
            np.full(len(main), gen, np.uint64),
            err_msg=f"version {v}",
        )
        np.testing.assert_array_equal(
            ds["location/center_x_frac"], np.full(len(main), gen / 7, np.float32)
        )
        gens[v] = gen
    return gens


def group_files(folder: Path) -> set[str]:
    g = ResultGroup.from_csg(folder / "J9_particles.csg")
    named = {os.path.basename(m) for r in g.results.values() for m in r.versions.values()}
    return named | {"J9_particles.csg"}


@pytest.mark.parametrize("new_version", [1, 2])
def test_write_output_on_a_full_disk(tiny_fs, new_version):
    """Version 1 rewritten with half the items, or version 2 added: the group is
    the old one or the new one, whole, and version 0 never changes."""
    pool = records(3000, 3)["uid"]

    def write_old():
        write_gen(tiny_fs, pool, 0, 0)
        write_gen(tiny_fs, pool, 2, 1)

    def state():
        gens = check_group(tiny_fs, pool)
        assert set(listing(tiny_fs)) - group_files(tiny_fs) == {
            f for f in listing(tiny_fs) if f.endswith(".lock")
        }
        if gens == {0: 0, 1: 2}:
            return "old"
        assert gens == ({0: 0, 1: 3} if new_version == 1 else {0: 0, 1: 2, 2: 3}), gens
        return "new"

    run_at_free_levels(tiny_fs, write_old, lambda: write_gen(tiny_fs, pool, 3, new_version), state)


# ---------------------------------------------------------------- short writes (RLIMIT_FSIZE)


SHORT_TABLES = {"old": (2000, 1, 24), "new": (3000, 2, 40)}  # rows, seed, string width


def write_case(kind: str, folder: Path, which: str) -> Path:
    """Write the old or the new file of a short-write case; returns its path."""
    if kind == "csg":
        g = csg_group(folder, 10, "old") if which == "old" else csg_group(folder, 60, "new " * 200)
        return Path(g.save_csg(folder / "J5_particles.csg"))
    if kind == "cs-header":  # no rows: the header is the whole file, one write
        fields = 20 if which == "old" else 400
        path = folder / "t.cs"
        Dataset(header_only(fields)).save(path)
        return path
    ds = Dataset(records(*SHORT_TABLES[which]))
    path = folder / f"t.{kind}"
    if kind == "cs":
        ds.save(path)
    else:
        csdat.write(path, ds.cols(), len(ds), compression=None)
    return path


def header_only(fields: int) -> np.ndarray:
    return np.zeros(0, dtype=[("uid", "<u8")] + [(f"r{i}/field_{i}", "<f4") for i in range(fields)])


SHORT_WRITER = textwrap.dedent("""
    import resource, shutil, signal, sys
    from pathlib import Path
    sys.path.insert(0, {tests!r})
    from test_writes import temps, write_case
    kind, folder, limits = sys.argv[1], Path(sys.argv[2]), [int(x) for x in sys.argv[3:]]
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # then write() comes back short, or EFBIG
    unlimited = (resource.RLIM_INFINITY, resource.RLIM_INFINITY)
    for i, limit in enumerate(limits):
        path = write_case(kind, folder, "old")
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
        try:
            write_case(kind, folder, "new")
            outcome = "new 0"
        except OSError as e:
            outcome = f"old {{e.errno}}"
        finally:
            resource.setrlimit(resource.RLIMIT_FSIZE, unlimited)
        shutil.copyfile(path, folder / f"result{{i}}")
        print(outcome, len(temps(folder)), flush=True)
""")


@pytest.mark.parametrize("kind", ["cs", "cs-header", "csdat", "csg"])
def test_short_writes_are_completed_or_raise(tmp_path, kind):
    """A file size limit (RLIMIT_FSIZE) makes write() write part of a buffer, then
    fail: the old file stays whole or the new one is complete; never a cut file."""
    script = SHORT_WRITER.format(tests=str(Path(__file__).resolve().parent))
    size = write_case(kind, tmp_path, "new").stat().st_size
    limits = [1, 100, 4095, 4097, 5000, 8191] + [size * k // 8 for k in range(1, 12)]
    r = subprocess.run(
        [sys.executable, "-c", script, kind, str(tmp_path), *map(str, limits)],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == len(limits)
    for i, line in enumerate(lines):
        outcome, err, left = line.split()
        assert int(left) == 0  # no temporary file left
        assert outcome == ("new" if limits[i] >= size else "old"), (limits[i], size)
        if outcome == "old":
            assert int(err) == errno.EFBIG
        result = tmp_path / f"result{i}"
        if kind == "csg":
            assert (
                csg_state(
                    result, csg_group(tmp_path, 10, "old"), csg_group(tmp_path, 60, "new " * 200)
                )
                == outcome
            )
        elif kind == "cs-header":
            assert_records(
                np.load(result, max_header_size=1 << 20),
                header_only(20 if outcome == "old" else 400),
            )
        else:
            expected = records(*SHORT_TABLES[outcome])
            assert_records(Dataset.load(result), expected)
            if kind == "cs":
                assert_records(np.load(result), expected)


def test_write_all_finishes_partial_writes():
    """A raw write that takes at most 7 bytes a call: every byte arrives, in order."""
    out = bytearray()

    def write(view):
        out.extend(view[:7])
        return min(7, len(view))

    data = np.arange(1000, dtype="<u4")
    assert write_all(write, data) == 4000
    assert bytes(out) == data.tobytes()
    with pytest.raises(OSError, match="wrote nothing"):
        write_all(lambda view: 0, b"abc")


# ---------------------------------------------------------------- kill -9 and concurrency


GROUP_WRITER = textwrap.dedent("""
    import sys
    sys.path.insert(0, {tests!r})
    from test_writes import records, write_gen
    pool = records(int(sys.argv[1]), 3)["uid"]
    print("ready", flush=True)
    for line in sys.stdin:  # folder first last versions: one batch of writes
        folder, first, last, versions = line.split()
        for gen in range(int(first), int(last)):
            write_gen(folder, pool, gen, gen % int(versions))
        print("done", flush=True)
""")


def start_writer(n: int) -> subprocess.Popen:
    """A writer process: send it "folder first last versions" lines; it writes
    generations first..last-1 as versions gen % versions, then says done."""
    script = GROUP_WRITER.format(tests=str(Path(__file__).resolve().parent))
    p = subprocess.Popen(
        [sys.executable, "-c", script, str(n)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert p.stdout.readline().strip() == "ready", p.stderr.read()
    return p


def send(p: subprocess.Popen, line: str) -> None:
    p.stdin.write(line + "\n")
    p.stdin.flush()


KILL_RUNS = 8
CONCURRENT_RUNS = 12


def test_kill_9_during_write_output(tmp_path):
    """Writers killed at random moments: the group always loads whole, each
    version as one writer wrote it; the next writer removes what was left
    (the killed writer's files and temporary files)."""
    rng = np.random.default_rng(11)
    pool = records(20000, 3)["uid"]
    write_gen(tmp_path, pool, 0, 0)
    left_behind = 0
    for run in range(KILL_RUNS):
        p = start_writer(len(pool))
        send(p, f"{tmp_path} {1 + 100 * run} {100 * (run + 1)} 3")
        time.sleep(rng.uniform(0.02, 0.5))
        p.kill()
        p.communicate()
        gens = check_group(tmp_path, pool)
        assert all(g % 3 == v for v, g in gens.items())
        left_behind += bool(
            temps(tmp_path)
            or set(listing(tmp_path))
            - group_files(tmp_path)
            - {f for f in listing(tmp_path) if f.endswith(".lock")}
        )
        # the next writer, of a version the killed one may not have touched
        write_gen(tmp_path, pool, 3 * (100 * run + 99) + 2, 2)
        assert temps(tmp_path) == []
        extra = set(listing(tmp_path)) - group_files(tmp_path)
        assert len(extra) == 1 and extra.pop().endswith(".lock")
        check_group(tmp_path, pool)
    assert left_behind  # some kills did land in the middle of a write


SAVER = textwrap.dedent("""
    import sys
    import numpy as np
    from csfast.dataset import Dataset
    a = np.zeros(300_000, dtype=[("uid", "<u8"), ("blob/idx", "<u4"), ("ctf/tilt_A", "<f8", (8,))])
    a["uid"] = np.arange(1, len(a) + 1)
    print("ready", flush=True)
    for gen in range(1, 10**6):
        a["blob/idx"] = gen
        Dataset(a).save(sys.argv[1])
""")


def test_kill_9_during_save_then_the_next_save_removes_the_temporary(tmp_path):
    """A save killed mid-write leaves its temporary file; once it is older than
    STALE_TEMP_SECONDS the next save of the same file removes it."""
    rng = np.random.default_rng(12)
    path = tmp_path / "t.cs"
    left = 0
    # A kill may land between two saves (no temporary then): kill until at
    # least two have landed mid-write, within a bounded number of tries.
    for _ in range(20):
        if left >= 2:
            break
        p = subprocess.Popen(
            [sys.executable, "-c", SAVER, str(path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert p.stdout.readline().strip() == "ready", p.stderr.read()
        time.sleep(rng.uniform(0.2, 0.6))
        p.kill()
        p.communicate()
        saved = np.load(path) if path.exists() else None
        if saved is not None and len(saved) > 10:  # the saver's, whole: one generation
            assert len(set(saved["blob/idx"].tolist())) == 1
        left = len(temps(tmp_path))
        Dataset(records(10, 1)).save(path)  # too young to be removed
        assert len(temps(tmp_path)) == left
    assert left
    long_ago = time.time() - STALE_TEMP_SECONDS - 60
    for f in temps(tmp_path):
        os.utime(tmp_path / f, (long_ago, long_ago))
    Dataset(records(10, 2)).save(path)
    assert temps(tmp_path) == []
    assert_records(np.load(path), records(10, 2))


def test_concurrent_writers_of_one_group(tmp_path):
    """Two processes write versions of one group at once, three versions in
    common: no version is lost, none is mixed from the two writers."""
    pool = records(2000, 3)["uid"]
    a, b = start_writer(len(pool)), start_writer(len(pool))
    try:
        for run in range(CONCURRENT_RUNS):
            folder = tmp_path / f"run{run}"
            folder.mkdir()
            # writer A: versions 0..5 (generations 10..15); B: versions 3..8 (23..28)
            send(a, f"{folder} 10 16 10")
            send(b, f"{folder} 23 29 10")
            for p in (a, b):
                assert p.stdout.readline().strip() == "done"
            gens = check_group(folder, pool)
            assert sorted(gens) == list(range(9))
            for v, g in gens.items():
                assert g in (10 + v, 20 + v)
            assert set(listing(folder)) - group_files(folder) == {
                f for f in listing(folder) if f.endswith(".lock")
            }
            assert temps(folder) == []
    finally:
        for p in (a, b):
            p.stdin.close()
            assert p.wait() == 0, p.stderr.read()
            p.stdout.close()
            p.stderr.close()


def test_threads_writing_one_group_take_turns(tmp_path):
    """The lock is per open file, so threads of one process take turns too."""
    import threading

    pool = records(500, 3)["uid"]
    errors = []

    def writer(first):
        try:
            for gen in range(first, first + 5):
                write_gen(tmp_path, pool, gen, gen % 10)
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(first,)) for first in (10, 25)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert check_group(tmp_path, pool) == {v: (10 + v if v < 5 else 20 + v) for v in range(10)}


def test_a_journal_never_removes_files_outside_the_group(tmp_path):
    """Names in the lock file's journal that the .csg does not name are removed,
    but only plain names in the group's folder."""
    pool = records(20, 3)["uid"]
    write_gen(tmp_path, pool, 0, 0)
    (tmp_path / "sub").mkdir()
    keep = [tmp_path / "sub" / "x.cs", tmp_path.parent / f"{tmp_path.name}_outside.cs"]
    for p in keep:
        p.write_bytes(b"keep")
    orphan = tmp_path / "J9_004_particles.cs"
    orphan.write_bytes(b"a killed writer's file")
    lock = next(f for f in os.listdir(tmp_path) if f.endswith(".lock"))
    (tmp_path / lock).write_text(
        f"sub/x.cs\n../{keep[1].name}\n..\n.\n{orphan.name}\nJ9_000_particles.cs\n"
    )
    write_gen(tmp_path, pool, 2, 2)
    assert all(p.read_bytes() == b"keep" for p in keep)
    assert not orphan.exists()
    assert check_group(tmp_path, pool) == {0: 0, 2: 2}
    assert (tmp_path / lock).read_text() == ""


# ---------------------------------------------------------------- versions stay apart


def test_writing_a_version_leaves_other_versions_alone(tmp_path):
    pool = records(400, 4)["uid"]
    write_gen(tmp_path, pool, 0, 1, half=False)
    write_gen(tmp_path, pool, 2, 2, half=False)
    g = ResultGroup.from_csg(tmp_path / "J9_particles.csg")
    before = {v: g.load(version=v).to_records() for v in (1, 2)}
    # version 3 with half the items and its own passthrough; then version 2
    # again with half; then version 4 without passthrough
    write_gen(tmp_path, pool, 3, 3)
    for v in (1, 2):
        assert_records(
            ResultGroup.from_csg(tmp_path / "J9_particles.csg").load(version=v), before[v]
        )
    write_gen(tmp_path, pool, 5, 2)
    g = ResultGroup.from_csg(tmp_path / "J9_particles.csg")
    assert_records(g.load(version=1), before[1])
    assert check_group(tmp_path, pool) == {1: 0, 2: 5, 3: 3}
    main, _ = stamped(pool, 6, True)
    write_output(
        tmp_path, "J9", "particles", Dataset(main), "particle", ["blob"], version=4, validate=False
    )
    g = ResultGroup.from_csg(tmp_path / "J9_particles.csg")
    assert_records(g.load(version=1), before[1])
    four = g.load(version=4)  # the passthrough of the final version before it: generation 3
    np.testing.assert_array_equal(four["uid"], main["uid"])
    assert set(four["location/micrograph_uid"].tolist()) == {3}
    assert g.load().fields() == four.fields()


def test_passthrough_only_in_some_versions(tmp_path):
    """A passthrough result a later version does not carry stays in the versions
    that have it and is not part of the others."""
    pool = records(50, 5)["uid"]
    main, pt = stamped(pool, 0, False)
    both = np.zeros(len(pool), dtype=pt.dtype.descr + [("ctf/df1_A", "<f4")])
    for name in pt.dtype.names:
        both[name] = pt[name]
    both["ctf/df1_A"] = 1.5
    write_output(
        tmp_path,
        "J9",
        "particles",
        Dataset(main),
        "particle",
        ["blob"],
        passthrough=Dataset(both),
        version=1,
        validate=False,
    )
    write_output(
        tmp_path,
        "J9",
        "particles",
        Dataset(main),
        "particle",
        ["blob"],
        passthrough=Dataset(pt),
        version=2,
        validate=False,
    )
    g = ResultGroup.from_csg(tmp_path / "J9_particles.csg")
    assert "ctf/df1_A" in g.load(version=1).fields()
    assert "ctf/df1_A" not in g.load(version=2).fields()
    assert "ctf/df1_A" not in g.load().fields()
    with pytest.raises(Exception, match="not part of version 2"):
        g.load(slots=["ctf"], version=2)
    inp = Input(InputSpec("particle", ["blob"]))  # an input takes the final version
    inp.connect(g)
    assert "ctf/df1_A" not in inp.load().fields()
    assert "location/micrograph_uid" in inp.load().fields()


def test_csfast_010_and_cryosparc_passthrough_serves_every_version(tmp_path):
    """A .csg without passthrough versions (csfast 0.1.0, cryoSPARC): its one
    passthrough file goes with every version."""
    pool = records(30, 6)["uid"]
    m0, pt = stamped(pool, 0, False)
    m3, _ = stamped(pool, 3, True)
    for name, arr in (
        ("J9_000_particles.cs", m0),
        ("J9_003_particles.cs", m3),
        ("J9_passthrough_particles.cs", pt),
    ):
        Dataset(arr).save(tmp_path / name)
    (tmp_path / "J9_particles.csg").write_text(
        textwrap.dedent("""\
        created: 2026-01-01 00:00:00
        group: {name: particles, title: Particles, type: particle, description: ''}
        results:
          blob:
            metafile: '>J9_003_particles.cs'
            num_items: 15
            type: particle.blob
            versions: {0: '>J9_000_particles.cs', 3: '>J9_003_particles.cs'}
          location:
            metafile: '>J9_passthrough_particles.cs'
            num_items: 30
            type: particle.location
            passthrough: true
        version: csfast-0.1.0
        """)
    )
    g = ResultGroup.from_csg(tmp_path / "J9_particles.csg")
    for v, main in ((0, m0), (3, m3), (None, m3)):
        ds = g.load(version=v)
        np.testing.assert_array_equal(ds["uid"], main["uid"])
        np.testing.assert_array_equal(ds["location/micrograph_uid"], np.zeros(len(main)))
    # a new version, with its own passthrough, keeps the old ones whole
    before = {v: g.load(version=v).to_records() for v in (0, 3)}
    write_gen(tmp_path, pool, 7, 5)
    g = ResultGroup.from_csg(tmp_path / "J9_particles.csg")
    for v in (0, 3):
        assert_records(g.load(version=v), before[v])
    ds = g.load()
    np.testing.assert_array_equal(ds["uid"], pool[:15])
    assert set(ds["location/micrograph_uid"].tolist()) == {7}


# ---------------------------------------------------------------- temporary files


def test_stale_temporaries_of_a_target_are_removed(tmp_path):
    target = tmp_path / "t.cs"
    Dataset(records(10, 1)).save(target)
    prefix = ".t.cs." + hashlib.blake2b(b"t.cs", digest_size=4).hexdigest() + "."
    stale, fresh, locked, old_style, other = (
        tmp_path / f"{prefix}abcd1234.tmp",
        tmp_path / f"{prefix}fresh123.tmp",
        tmp_path / f"{prefix}locked12.tmp",
        tmp_path / ".t.cs.oldstyle.tmp",
        tmp_path / ".u.cs.abcd1234.tmp",
    )
    for p in (stale, fresh, locked, old_style, other):
        p.write_bytes(b"x" * 100)
    long_ago = time.time() - STALE_TEMP_SECONDS - 10
    for p in (stale, locked, old_style, other):
        os.utime(p, (long_ago, long_ago))
    assert sorted(temp_files(target)) == sorted([stale, fresh, locked, old_style])
    with open(locked, "rb") as held:  # a live writer holds its temporary locked
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        Dataset(records(10, 2)).save(target)
        assert sorted(temps(tmp_path)) == sorted([fresh.name, locked.name, other.name])
    assert remove_stale_temps(target) == 1  # the lock is gone: so is the file
    assert sorted(temps(tmp_path)) == sorted([fresh.name, other.name])
    assert_records(Dataset.load(target), records(10, 2))


# ---------------------------------------------------------------- symlinks and long names


def test_saving_through_a_symlink_writes_its_target(tmp_path):
    real = tmp_path / "data" / "t.cs"
    real.parent.mkdir()
    Dataset(records(10, 1)).save(real)
    link = tmp_path / "link.cs"
    link.symlink_to(Path("data") / "t.cs")
    Dataset(records(20, 2)).save(link)
    assert link.is_symlink() and os.readlink(link) == os.path.join("data", "t.cs")
    assert_records(np.load(real), records(20, 2))
    assert temps(tmp_path) == [] and temps(real.parent) == []
    g = csg_group(tmp_path, 2, "through a link")
    (tmp_path / "J5_particles.csg").symlink_to(real.parent / "J5_real.csg")
    g.save_csg(tmp_path / "J5_particles.csg")
    assert (tmp_path / "J5_particles.csg").is_symlink()
    assert (real.parent / "J5_real.csg").read_text().startswith("created")


@pytest.mark.parametrize("length", [242, 250, 255])
def test_names_up_to_255_characters(tmp_path, length):
    rec = records(20, 1)
    for ext, write in ((".cs", _cs), (".csdat", _csdat)):
        path = tmp_path / ("x" * (length - len(ext)) + ext)
        write(Dataset(rec), path)
        write(Dataset(rec[:5]), path)  # and over an existing file
        assert_records(Dataset.load(path), rec[:5])
    g = csg_group(tmp_path, 2, "long")
    g.save_csg(tmp_path / ("J5_" + "p" * (length - 7) + ".csg"))
    # a group whose longest file name (<job>_<version>_<name>.1.cs) is `length` long
    name = "p" * (length - len("J9_000_.1.cs"))
    pool = rec["uid"]
    main, pt = stamped(pool, 0, False)
    for version in (0, 0, 1):
        write_output(
            tmp_path,
            "J9",
            name,
            Dataset(main),
            "particle",
            ["blob"],
            version=version,
            validate=False,
        )
    assert temps(tmp_path) == []
    assert len(ResultGroup.from_csg(tmp_path / f"J9_{name}.csg").load(version=0)) == 20


def test_replacing_a_file_frees_the_old_one_in_the_background(tmp_path):
    """The replaced file's descriptor (held so that freeing its pages leaves the
    saving thread) is closed soon after: no descriptor leaks, and a reader of
    the old file keeps the old bytes."""
    import threading

    path = tmp_path / "t.cs"
    Dataset(records(1000, 1)).save(path)
    old = np.load(path, mmap_mode="r")  # a reader of the old file
    fds = len(os.listdir("/proc/self/fd"))
    for gen in range(2, 6):
        Dataset(records(1000, gen)).save(path)
    for t in threading.enumerate():
        if t.name == "csfast-release":
            t.join(timeout=10)
    assert len(os.listdir("/proc/self/fd")) == fds
    assert_records(np.load(path), records(1000, 5))
    assert_records(np.asarray(old), records(1000, 1))
