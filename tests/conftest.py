"""Shared test setup: makes the helper modules in tests/ importable; shared
fixtures (a tiny tmpfs, small mapped particle tables).

With --import-mode=importlib pytest does not put tests/ on sys.path, so the
hand-written-file helpers (npyfiles.py) would not import otherwise.
"""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)


@pytest.fixture
def tiny_fs(tmp_path):
    """A 1 MB tmpfs: a disk that really fills up, and a file system of its own."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], capture_output=True, text=True
    )
    if r.returncode:
        pytest.skip(f"cannot mount a 1 MB tmpfs: {r.stderr.strip()}")
    try:
        yield mnt
    finally:
        # lazy: a test's mapped datasets may still hold files of it open
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def particle_table(uids: np.ndarray, seed: int, prefix: str) -> np.ndarray:
    """Rows of these uids with random fields of result `prefix`: a scalar, a
    sub-array and a fixed-width string."""
    rng = np.random.default_rng(seed)
    n = len(uids)
    a = np.zeros(
        n,
        dtype=[
            ("uid", "<u8"),
            (f"{prefix}/x", "<f4"),
            (f"{prefix}/v", "<f4", (3,)),
            (f"{prefix}/path", "S24"),
        ],
    )
    a["uid"] = uids
    a[f"{prefix}/x"] = rng.random(n)
    a[f"{prefix}/v"] = rng.random((n, 3))
    a[f"{prefix}/path"] = np.array([b"J1/a.mrc", b"J22/extract/b.mrc", b""])[rng.integers(0, 3, n)]
    return a


@pytest.fixture(scope="module")
def table_files(tmp_path_factory):
    """Mapped .cs tables of 20k rows: a, b and c share part of their uids, d
    shares none with the others."""
    tmp = tmp_path_factory.mktemp("tables")
    n = 20_000
    rng = np.random.default_rng(5)
    uids = rng.permutation(np.arange(1, 3 * n, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15))
    tables = {
        "a": particle_table(uids[:n], 1, "p"),
        "b": particle_table(rng.permutation(uids[n // 4 : n + n // 4]), 2, "q"),
        "c": particle_table(rng.permutation(uids[n // 2 : n + n // 2]), 3, "p"),
        "d": particle_table(uids[2 * n :], 4, "p"),
    }
    paths = {}
    for name, rec in tables.items():
        paths[name] = tmp / f"{name}.cs"
        with open(paths[name], "wb") as f:
            np.save(f, rec)
    return paths
