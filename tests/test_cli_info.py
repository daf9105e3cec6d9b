"""`csfast info`: what it prints, and how it fails."""

import os
import subprocess
import sys

import numpy as np
import pytest
from npyfiles import numpy_save, write_array

from csfast.cli import main

DTYPE = np.dtype(
    [
        ("uid", "<u8"),
        ("blob/path", "S20"),
        ("blob/shape", "<u4", (2,)),
        ("ctf/df1_A", "<f4"),
        ("ctf/anisomag", "<f4", (2, 2)),
        ("alignments3D/pose", "<f4", (3,)),
        ("extra", "<i2"),
    ]
)


@pytest.fixture
def table(tmp_path):
    arr = np.zeros(1234, DTYPE)
    return numpy_save(tmp_path / "J42_005_particles.cs", arr), arr


def _run(capsys, *argv):
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def test_info_prints_header_facts(table, capsys):
    path, arr = table
    status, out, err = _run(capsys, "info", str(path))
    assert status == 0 and err == ""
    lines = out.splitlines()
    assert lines[0] == str(path)
    size = path.stat().st_size
    offset = size - arr.nbytes
    summary = lines[1]
    for part in (
        "1,234 rows",
        f"{len(DTYPE.names)} fields",
        f"{DTYPE.itemsize} bytes/row",
        f"{size / 1024:.1f} KiB",
        "npy 1.0",
        f"data at byte {offset}",
    ):
        assert part in summary, part
    # one line per field, grouped by result: the result name once, then its fields
    body = lines[2:]
    assert len(body) == len(DTYPE.names)
    expect = [
        ("uid", "<u8", ""),
        ("path", "|S20", ""),
        ("shape", "<u4", "(2,)"),
        ("df1_A", "<f4", ""),
        ("anisomag", "<f4", "(2, 2)"),
        ("pose", "<f4", "(3,)"),
        ("extra", "<i2", ""),
    ]
    for line, (name, dt, shape) in zip(body, expect, strict=True):
        assert name in line and dt in line and line.rstrip().endswith(shape or dt)
    assert [line.split()[0] for line in body if "/" in line] == ["blob/", "ctf/", "alignments3D/"]
    assert sum("blob/" in line for line in body) == 1


def test_info_several_files_and_quirks(tmp_path, capsys):
    wide = np.dtype(
        [("uid", "<u8")] + [(f"alignments_class_{k}/error", "<f4") for k in range(3000)]
    )
    a = numpy_save(tmp_path / "wide.cs", np.zeros(2, wide))
    b = write_array(
        tmp_path / "v3.cs",
        np.zeros(0, [("uid", "<u8"), ("€/x", ">f8")]),
        version=(3, 0),
        pad_to=4096,
    )
    status, out, err = _run(capsys, "info", str(a), str(b))
    assert status == 0 and err == ""
    first, second = out.split("\n\n")
    assert "2 rows x 3001 fields" in first and "npy 2.0" in first
    assert "alignments_class_2999/" in first
    assert second.splitlines()[0] == str(b)
    assert "0 rows x 2 fields" in second and "npy 3.0" in second
    assert "data at byte 4096" in second and "4.0 KiB" in second
    assert "€/" in second and ">f8" in second


def test_info_errors_name_the_file(table, tmp_path, capsys):
    path, _ = table
    missing = tmp_path / "missing.cs"
    corrupt = tmp_path / "corrupt.cs"
    corrupt.write_bytes(b"not a numpy file at all")
    truncated = tmp_path / "truncated.cs"
    truncated.write_bytes(path.read_bytes()[:-10])
    status, out, err = _run(
        capsys, "info", str(missing), str(path), str(corrupt), str(truncated), str(tmp_path)
    )
    assert status == 1
    assert out.splitlines()[0] == str(path)  # the good file is still shown
    errors = err.splitlines()
    assert len(errors) == 4  # one line per bad file
    assert errors[0].startswith("csfast info: ") and str(missing) in errors[0]
    assert "No such file" in errors[0]
    assert str(corrupt) in errors[1] and "magic" in errors[1]
    assert str(truncated) in errors[2] and "truncated" in errors[2]
    assert str(tmp_path) in errors[3] and "directory" in errors[3].lower()
    assert "Traceback" not in err


def test_help(capsys):
    for argv in (["--help"], ["info", "--help"]):
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 0
        out = capsys.readouterr().out
        assert "info" in out and "usage: csfast" in out
    with pytest.raises(SystemExit) as e:
        main(["info"])  # a file is required
    assert e.value.code != 0
    assert "FILE" in capsys.readouterr().err


def test_python_dash_m_subprocess(table, tmp_path):
    path, _ = table
    bad = tmp_path / "bad.cs"
    bad.write_bytes(b"\x93NUMPY\x01\x00\x05\x00{'a'}")
    env = {**os.environ, "PYTHONWARNINGS": "error"}
    run = subprocess.run(
        [sys.executable, "-m", "csfast", "info", str(path), str(bad)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert run.returncode == 1
    assert run.stdout.splitlines()[0] == str(path) and "1,234 rows" in run.stdout
    assert run.stderr.count("\n") == 1 and str(bad) in run.stderr
    assert "header" in run.stderr


def test_info_reads_a_csdat_stream_header(tmp_path, capsys):
    cryosparc_dataset = pytest.importorskip("cryosparc.dataset")
    ref = cryosparc_dataset.Dataset(
        [
            ("uid", np.array([1, 2**64 - 1], dtype=np.uint64)),
            ("blob/path", ["a.mrc", "b.mrc"]),
            ("alignments3D/pose", np.zeros((2, 3), np.float32)),
        ]
    )
    path = tmp_path / "stream.csdat"
    ref.save(path, format=cryosparc_dataset.CSDAT_FORMAT)
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "2 rows x 3 fields" in out
    assert "CSDAT stream (compression: lz4)" in out
    assert "path" in out and "string" in out
    assert "<f4 (3,)" in out
