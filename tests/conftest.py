"""Shared test setup: makes the helper modules in tests/ importable.

With --import-mode=importlib pytest does not put tests/ on sys.path, so the
hand-written-file helpers (npyfiles.py) would not import otherwise.
"""

import os
import subprocess
import sys
from pathlib import Path

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
