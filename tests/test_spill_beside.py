"""Where spills go: beside the output of the commands and of the functions
that write files (``spill_folder``), never into a full TMPDIR.

The commands run as subprocesses under a 64 kB budget, with TMPDIR on a
1 MB tmpfs filled but for 32 kB: a spill into TMPDIR (hundreds of kB) fails
there with ENOSPC. Their outputs must equal, byte for byte, those of runs with the
index in memory. A stale spill folder planted beside each output (a dead
process's) must be gone after the command: only a spill in that folder
removes it, so this also proves each command spilled.
"""

from __future__ import annotations

import errno
import gc
import os
import re
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np
import pytest
from test_spill import dead_pid, spill_folders

from csfast import Dataset, spill, spill_folder, tasks, write_output

BUDGET = "64K"  # 20k-row tables need about 1 MB of index: every match spills


@pytest.fixture(scope="module")
def tables(table_files) -> dict[str, str]:
    """The tables of conftest's table_files (a, b and c share part of their
    uids, d shares none), and a result group."""
    paths = {k: str(p) for k, p in table_files.items()}
    tmp = table_files["a"].parent
    rng = np.random.default_rng(7)
    # A result group of two files (a's rows, and a passthrough in another
    # order): loading it joins them on uid.
    a = Dataset.load(paths["a"])
    carried = Dataset({"uid": rng.permutation(a["uid"]), "blob/idx": np.arange(len(a))})
    paths["csg"] = write_output(tmp, "J1", "particles", a, "particle", ["p"], carried).path
    return paths


@pytest.fixture
def full_tmpdir(tiny_fs):
    """A TMPDIR without room for a spill: a 1 MB tmpfs filled up, then 32 kB
    freed (a TMPDIR where not even a byte can be written is skipped by
    Python's ``tempfile.gettempdir``, which would then choose /tmp)."""
    fd = os.open(tiny_fs / "filler", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        with pytest.raises(OSError) as err:
            while True:
                os.write(fd, bytes(4096))
        assert err.value.errno == errno.ENOSPC
        os.ftruncate(fd, os.fstat(fd).st_size - (32 << 10))
    finally:
        os.close(fd)
    return tiny_fs


def environment(**changes: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("CSFAST_MEMORY_LIMIT", spill.DIR_ENV)}
    env.update({k: v for k, v in changes.items() if v is not None})
    return env


def csfast(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return csfast_all([list(args)], env)[0]


def csfast_all(argvs: list[list[str]], env: dict[str, str]) -> list[subprocess.CompletedProcess]:
    """Run the commands at once (most of each is starting Python)."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "csfast", *a],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for a in argvs
    ]
    out = []
    for a, p in zip(argvs, procs, strict=True):
        stdout, stderr = p.communicate(timeout=300)
        out.append(subprocess.CompletedProcess(a, p.returncode, stdout, stderr))
    return out


def plant_stale(folder: Path) -> Path:
    """A spill folder of a process that has exited, as a killed run leaves it."""
    pid = dead_pid()
    stale = folder / f"{spill.PREFIX}{pid}-planted"
    stale.mkdir()
    (stale / "owner").write_text(f"{os.uname().nodename}\n{pid}\n1\n")
    (stale / "part-0000").write_bytes(bytes(16))
    return stale


def output(argv: list[str], path: Path) -> list[str]:
    """The output's arguments: convert takes it as its second operand."""
    return [str(path)] if argv[0] == "convert" else ["-o", str(path)]


def output_bytes(path: Path) -> dict[str, bytes]:
    """The file, or every file of the folder, by name."""
    if path.is_dir():
        return {p.name: p.read_bytes() for p in sorted(path.iterdir())}
    return {path.name: path.read_bytes()}


def test_commands_spill_beside_their_output(tables, tmp_path, full_tmpdir):
    a, b, c, d = (tables[k] for k in "abcd")
    commands = {
        "join.cs": ["join", a, b],
        "join3.cs": ["join", a, b, c],
        "append.cs": ["append", a, d],  # the uid check spills
        "dedupe.cs": ["append", "--dedupe", a, c],
        "union.cs": ["union", c, a, b],
        "filter.cs": ["filter", c, "--uids", a],
        "sets": ["sets", a, c, "--both"],  # a folder the command makes
        "load.cs": ["load", tables["csg"]],
        "convert.cs": ["convert", tables["csg"]],
    }
    limited = environment(CSFAST_MEMORY_LIMIT=BUDGET, TMPDIR=str(full_tmpdir))
    # The budget does spill, and a spill into this TMPDIR fails.
    r = csfast("join", a, b, env=limited)
    assert r.returncode == 1 and "No space left on device" in r.stderr, r.stderr
    # Each command in a folder of its own, holding its output and a stale folder.
    want = {n: tmp_path / "memory" / n / n for n in commands}
    got = {n: tmp_path / "spilled" / n / n for n in commands}
    for n in commands:
        want[n].parent.mkdir(parents=True)
        got[n].parent.mkdir(parents=True)
    stale = {n: plant_stale(got[n].parent) for n in commands}
    runs = csfast_all(
        [[*argv, *output(argv, want[n])] for n, argv in commands.items()], environment()
    )
    assert [r.returncode for r in runs] == [0] * len(runs), [r.stderr for r in runs]
    runs = csfast_all([[*argv, *output(argv, got[n])] for n, argv in commands.items()], limited)
    for name, r in zip(commands, runs, strict=True):
        assert r.returncode == 0, (name, r.stderr)
        assert not stale[name].exists(), f"{name}: did not spill beside its output"
        assert spill_folders(got[name].parent) == [], name
        assert output_bytes(got[name]) == output_bytes(want[name]), name
    assert sorted(os.listdir(full_tmpdir)) == ["filler"]


def test_a_failed_command_leaves_no_spill_folder(tables, tmp_path, full_tmpdir):
    """append of tables that share uids: the uid check (spilled) refuses them;
    the stale folder is gone, the command's own too, and no output written."""
    out = tmp_path / "out"
    out.mkdir()
    stale = plant_stale(out)
    limited = environment(CSFAST_MEMORY_LIMIT=BUDGET, TMPDIR=str(full_tmpdir))
    r = csfast("append", tables["a"], tables["c"], "-o", str(out / "ac.cs"), env=limited)
    assert r.returncode == 1
    assert "10000 rows repeat the uid" in r.stderr, r.stderr  # a and c share 10k uids
    assert not stale.exists()
    assert os.listdir(out) == []


def test_tasks_spill_beside_their_output(tables, tmp_path, monkeypatch):
    """The Python functions that write files spill beside them too (no command
    around them): the stale folder beside each output goes."""
    monkeypatch.setenv("CSFAST_MEMORY_LIMIT", BUDGET)
    monkeypatch.setenv(spill.DIR_ENV, str(tmp_path / "missing"))  # a spill there would fail
    out = tmp_path / "out"
    out.mkdir()
    stale = plant_stale(out)
    r = tasks.union_files([tables["a"], tables["c"]], out / "union.cs")
    assert r.rows == 30_000 and not stale.exists()
    stale = plant_stale(out)
    tasks.sets_files(tables["a"], tables["c"], out, ["intersect"])
    assert not stale.exists()
    # A job's output: its passthrough rows are matched on uid.
    stale = plant_stale(out)
    a = Dataset.load(tables["a"])
    rng = np.random.default_rng(8)
    carried = Dataset({"uid": rng.permutation(a["uid"]), "blob/idx": np.arange(len(a))})
    with spill_folder(tmp_path):  # the output's folder wins over an outer block
        group = write_output(out, "J2", "particles", a, "particle", ["p"], passthrough=carried)
    assert not stale.exists()
    with spill_folder(tmp_path):
        loaded = group.load()
    order = np.argsort(carried["uid"])
    want = carried["blob/idx"][order[np.searchsorted(carried["uid"], a["uid"], sorter=order)]]
    assert np.array_equal(loaded["blob/idx"], want)
    assert spill_folders(out) == [] and spill_folders(tmp_path) == []


# ------------------------------------------------------ spill_folder


def spilled_in(*candidates: Path, folder: Path | None = None) -> list[Path]:
    """Which of the candidate folders a spilled join's result files were made in."""
    a = np.arange(5000, dtype=np.uint64)
    out = spill.join_index([a, a[::-1]], budget=1 << 14, folder=folder)  # 64 partitions
    maps = Path("/proc/self/maps").read_text()
    found = set(re.findall(r"(\S+)/" + re.escape(spill.PREFIX), maps))
    del out
    gc.collect()
    return [c for c in candidates if str(c) in found]


def test_spill_folder_precedence(tmp_path, monkeypatch):
    explicit, outer, inner, env = (tmp_path / n for n in ("explicit", "outer", "inner", "env"))
    for f in (explicit, outer, inner, env):
        f.mkdir()
    every = (explicit, outer, inner, env)
    monkeypatch.delenv(spill.DIR_ENV, raising=False)
    assert spill.spill_parent() == Path(tempfile.gettempdir())
    monkeypatch.setenv(spill.DIR_ENV, str(env))
    assert spilled_in(*every) == [env]
    with spill_folder(outer):
        assert spilled_in(*every) == [outer]
        assert spilled_in(*every, folder=explicit) == [explicit]
        with spill_folder(inner):
            assert spilled_in(*every) == [inner]
            assert spilled_in(*every, folder=explicit) == [explicit]
        assert spilled_in(*every) == [outer]  # restored
        with spill_folder(None):
            assert spilled_in(*every) == [env]
        assert spilled_in(*every) == [outer]
    assert spilled_in(*every) == [env]
    with pytest.raises(KeyError), spill_folder(outer):
        raise KeyError("in the block")
    assert spill.spill_parent() == env  # restored after an exception too


def test_spill_folder_is_per_thread(tmp_path, monkeypatch):
    monkeypatch.delenv(spill.DIR_ENV, raising=False)
    both = threading.Barrier(2)
    seen: dict[str, Path] = {}

    def work(name: str) -> None:
        with spill_folder(tmp_path / name):
            both.wait()  # each thread is inside its own block
            seen[name] = spill.spill_parent()
            both.wait()

    with spill_folder(tmp_path / "main"):
        threads = [threading.Thread(target=work, args=(n,)) for n in ("x", "y")]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert spill.spill_parent() == tmp_path / "main"
    assert seen == {"x": tmp_path / "x", "y": tmp_path / "y"}


def test_beside(tmp_path):
    (tmp_path / "made").mkdir()
    assert spill.beside(tmp_path / "out.cs") == tmp_path
    assert spill.beside(tmp_path / "made") == tmp_path / "made"
    assert spill.beside(tmp_path / "new-folder") == tmp_path
    assert spill.beside(tmp_path / "missing" / "out.cs") is None
    assert spill.beside(None) is None
