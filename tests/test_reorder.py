"""Saving rows read in shuffled order from a table larger than the memory budget.

A join's rows of a mapped table larger than the budget are staged by output
range in a spill folder beside the output (csfast.reorder), never read one
random row at a time. The budget is made tiny here (CSFAST_MEMORY_LIMIT) so
that tables of a few thousand rows take that path, with many blocks and
ranges; each result is compared with numpy doing the join on ``np.load`` of
the same files, and with the bytes of the same save under no limit.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from csfast import Dataset, reorder
from csfast.column import Rows

N = 20_000
SMALL = "64K"  # a budget of 64 KiB: blocks of ~40 table rows, ranges of ~40 output rows


def _tables(tmp: Path, n: int = N, repeats: int = 300) -> tuple[Path, Path, Path]:
    """passthrough (wide, strings), particles (its uids shuffled, some twice),
    and a third table of a shuffled subset of the uids."""
    rng = np.random.default_rng(7)
    uids = rng.permutation(np.arange(1, n + 1, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15))
    words = np.array([b"", b"a", b"J7/extract/stack_001.mrc", b"J12/extract/some_longer.mrc"])
    wide = np.zeros(n, [("uid", "<u8"), ("blob/path", "S48"), ("blob/shape", "<u4", (2,)),
                        ("ctf/df", "<f4", (2,)), ("x/k", "<i2")])  # fmt: skip
    wide["uid"] = uids
    wide["blob/path"] = words[rng.integers(0, len(words), n)]
    wide["blob/shape"] = rng.integers(0, 500, (n, 2))
    wide["ctf/df"] = rng.random((n, 2))
    wide["x/k"] = rng.integers(-9, 9, n)
    first = rng.permutation(uids)[: n - 1000]
    # The longest path is on a row no join keeps: the output's width ignores it.
    wide["blob/path"][np.flatnonzero(~np.isin(uids, first))[0]] = b"x" * 47
    first = np.concatenate([first, first[:repeats]])  # repeated uids: rows read twice
    narrow = np.zeros(len(first), [("uid", "<u8"), ("pose", "<f4", (3,)), ("x/k", "<i2")])
    narrow["uid"] = first
    narrow["pose"] = rng.random((len(first), 3))
    narrow["x/k"] = rng.integers(100, 200, len(first))
    third = np.zeros(n - 3000, [("uid", "<u8"), ("class", "<u4")])
    third["uid"] = rng.permutation(uids)[: n - 3000]
    third["class"] = rng.integers(0, 50, n - 3000)
    paths = tmp / "wide.cs", tmp / "narrow.cs", tmp / "third.cs"
    for path, a in zip(paths, (wide, narrow, third), strict=True):
        with open(path, "wb") as f:  # a path would get ".npy" appended
            np.save(f, a)
    return paths


def _numpy_join(first: np.ndarray, *others: np.ndarray) -> dict[str, np.ndarray]:
    """The inner join by numpy and dicts: rows in first's order, a field of
    several tables from the last one."""
    where = [{u: i for i, u in enumerate(t["uid"].tolist())} for t in others]
    keep = [i for i, u in enumerate(first["uid"].tolist()) if all(u in w for w in where)]
    out = {k: first[k][keep] for k in first.dtype.names}
    for t, w in zip(others, where, strict=True):
        rows = [w[u] for u in first["uid"][keep].tolist()]
        out.update({k: t[k][rows] for k in t.dtype.names})
    return out


def _spill_folders(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob(".csfast-spill-*"))


@pytest.mark.parametrize("order", ["two", "three"])
def test_staged_join_equals_numpy_and_the_unlimited_save(tmp_path, monkeypatch, order):
    wide, narrow, third = _tables(tmp_path)
    files = [narrow, wide] if order == "two" else [narrow, wide, third]
    joined = Dataset.innerjoin_many(*(Dataset.load(p) for p in files))
    joined.save(tmp_path / "unlimited.cs")
    monkeypatch.setenv("CSFAST_MEMORY_LIMIT", SMALL)
    # The wide table (and the third) are read in shuffled order and exceed the budget.
    assert len(reorder.far_groups(joined._cols, 64 << 10)) == len(files) - 1
    joined.save(tmp_path / "staged.cs")
    got = np.load(tmp_path / "staged.cs")
    want = _numpy_join(*(np.load(p) for p in files))
    assert list(got.dtype.names) == ["uid", *[k for k in want if k != "uid"]]
    assert got.dtype["blob/path"] == np.dtype("S28")  # the longest kept path, plus a NUL
    for k, v in want.items():
        np.testing.assert_array_equal(got[k], v, err_msg=k)
    assert (tmp_path / "staged.cs").read_bytes() == (tmp_path / "unlimited.cs").read_bytes()
    assert _spill_folders(tmp_path) == []


def test_only_shuffled_reads_of_large_tables_are_staged(tmp_path, monkeypatch):
    wide, narrow, _ = _tables(tmp_path)
    a, b = Dataset.load(wide), Dataset.load(narrow)
    # Rows in the table's own order (a subset by uid) are read in order: no staging.
    subset = a.subset_uids(np.load(narrow)["uid"])
    assert reorder.far_groups(subset._cols, 1) == []
    # A budget larger than the table: no staging.
    joined = b.innerjoin(a)
    assert reorder.far_groups(joined._cols, wide.stat().st_size) == []


def test_pieces_of_an_append_of_joins_are_staged_each(tmp_path, monkeypatch):
    """An input group of several connections: an append of joins, whose
    columns have a piece per join; output ranges straddle the pieces."""
    wide, narrow, _ = _tables(tmp_path)
    a, b = Dataset.load(wide), Dataset.load(narrow)
    joined = b.innerjoin(a)
    head = b.take(np.arange(500)).innerjoin(a)  # a second piece, of other rows
    both = Dataset.append(joined, head, joined, repeat_allowed=True)
    assert any(isinstance(c, Rows) and len(c.pieces) == 3 for c in both._cols.values())
    groups = reorder.far_groups(both._cols, 64 << 10)
    assert sorted(g.offset for g in groups) == [0, len(joined), len(joined) + len(head)]
    monkeypatch.setenv("CSFAST_MEMORY_LIMIT", SMALL)
    both.save(tmp_path / "both.cs")
    got = np.load(tmp_path / "both.cs")
    want = _numpy_join(np.load(narrow), np.load(wide))
    first = np.load(narrow)[:500]
    want_head = _numpy_join(first, np.load(wide))
    for k, v in want.items():
        np.testing.assert_array_equal(got[k], np.concatenate([v, want_head[k], v]), err_msg=k)
    assert _spill_folders(tmp_path) == []


def test_a_full_disk_fails_the_staged_save_and_leaves_the_old_file(tmp_path, tiny_fs, monkeypatch):
    """The staging spills beside the output: on a 1 MB disk it fails with ENOSPC,
    the old output is untouched and no spill folder is left."""
    wide, narrow, _ = _tables(tmp_path)
    joined = Dataset.load(narrow).innerjoin(Dataset.load(wide))
    out = tiny_fs / "out.cs"
    out.write_bytes(b"old contents")
    monkeypatch.setenv("CSFAST_MEMORY_LIMIT", SMALL)
    with pytest.raises(OSError) as e:
        joined.save(out)
    assert e.value.errno == 28  # ENOSPC
    assert out.read_bytes() == b"old contents"
    assert sorted(p.name for p in tiny_fs.iterdir()) == ["out.cs"]


SAVER = textwrap.dedent(
    """
    import sys
    from csfast import Dataset
    joined = Dataset.load(sys.argv[1]).innerjoin(Dataset.load(sys.argv[2]))
    joined.save(sys.argv[3])
    """
)


def test_a_killed_staged_save_is_cleaned_by_the_next(tmp_path):
    """kill -9 in the middle of a staged save leaves its spill folder; the next
    staged save in that folder removes it, and writes the right file."""
    wide, narrow, _ = _tables(tmp_path, n=200_000, repeats=0)
    out = tmp_path / "out" / "joined.cs"
    out.parent.mkdir()
    env = dict(os.environ, CSFAST_MEMORY_LIMIT="16K")
    proc = subprocess.Popen([sys.executable, "-c", SAVER, narrow, wide, out], env=env)
    deadline = time.monotonic() + 60
    while not _spill_folders(out.parent) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    left = _spill_folders(out.parent)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    if not left:
        pytest.skip("the save ended before its spill folder could be seen")
    assert _spill_folders(out.parent) == left
    assert not out.exists()
    subprocess.run([sys.executable, "-c", SAVER, narrow, wide, out], env=env, check=True)
    assert _spill_folders(out.parent) == []
    got = np.load(out)
    for k, v in _numpy_join(np.load(narrow), np.load(wide)).items():
        np.testing.assert_array_equal(got[k], v, err_msg=k)
