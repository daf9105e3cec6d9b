"""Files that are not what they claim: FIFOs and devices, hostile .csg
documents, and what the `csfast` command prints for every kind of bad file."""

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from npyfiles import npy_bytes, numpy_save

import csfast
from csfast import CsError, CsFormatError, Dataset, csdat
from csfast.cli import main
from csfast.convert import files
from csfast.groups import (
    MAX_CSG_BYTES,
    MAX_CSG_DEPTH,
    MAX_CSG_NODES,
    ResultGroup,
    write_output,
)
from csfast.project import Project

GOOD = np.zeros(3, [("uid", "<u8"), ("a/x", "<f4")])


# ----------------------------------------------------------- special files


@pytest.fixture
def fifo(tmp_path):
    """A FIFO with no writer. Should a reader block on it (the bug this guards
    against), a writer comes after 3 s and leaves at once: the reader sees
    end of file, and the test fails instead of hanging."""
    path = tmp_path / "pipe"
    os.mkfifo(path)
    stop = threading.Event()

    def unblock():
        while not stop.wait(3.0):
            try:  # succeeds only while a reader has the FIFO open
                os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:
                pass

    watchdog = threading.Thread(target=unblock, daemon=True)
    watchdog.start()
    yield path
    stop.set()
    watchdog.join()


def _readers():
    pytest.importorskip("pyarrow")
    pytest.importorskip("starfile")
    return {
        "cs": [
            csfast.inspect,
            Dataset.load,
            lambda p: Dataset.load(p, mmap=False),
            csfast.format.map_array,
            files.read,
        ],
        "csdat": [
            csdat.read_header,
            csdat.read,
            lambda p: csdat.read(p, mmap=False),
            csfast.inspect,
            files.read,
        ],
        "csg": [ResultGroup.from_csg],
        "parquet": [files.read],
        "arrow": [files.read],
        "star": [files.read],
    }


@pytest.mark.parametrize("ext", ["cs", "csdat", "csg", "parquet", "arrow", "star"])
def test_fifo_is_refused_by_every_reader(fifo, tmp_path, ext):
    link = tmp_path / f"J1_particles.{ext}"
    link.symlink_to(fifo)
    for read in _readers()[ext]:
        start = time.monotonic()
        with pytest.raises(CsFormatError, match=f"{link}: is a FIFO"):
            read(link)
        assert time.monotonic() - start < 2


@pytest.mark.parametrize(
    "device, kind", [("/dev/null", "character device"), ("/dev/zero", "character device")]
)
@pytest.mark.parametrize("ext", ["cs", "csdat", "csg", "star", "parquet"])
def test_devices_are_refused(tmp_path, device, kind, ext):
    if not os.path.exists(device):
        pytest.skip(f"no {device} here")
    link = tmp_path / f"J1_x.{ext}"
    link.symlink_to(device)
    for read in _readers()[ext]:
        with pytest.raises(CsFormatError, match=kind):
            read(link)


def test_directory_is_an_is_a_directory_error(tmp_path):
    for ext, readers in _readers().items():
        folder = tmp_path / f"J1_particles.{ext}"
        folder.mkdir()
        for read in readers:
            with pytest.raises(IsADirectoryError):
                read(folder)


# ----------------------------------------------------------- hostile .csg

GROUP = "group:\n  name: particles\n  type: particle\n"


def _result(**fields) -> str:
    entry = {"metafile": "'>J1_000_particles.cs'", **fields}
    return "results:\n  blob:\n" + "".join(f"    {k}: {v}\n" for k, v in entry.items())


LAUGHS = (
    "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
    + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]\n" for i in range(9)
    )
    + GROUP
    + "results:\n  blob: {metafile: *j, num_items: 1}\n"
)


@pytest.mark.parametrize(
    "text, match",
    [
        (LAUGHS, "aliases .* not allowed .* at line 2"),
        (GROUP + "results: {blob: &r {metafile: x.cs}, ctf: *r}\n", "aliases"),
        ("a: " + "[" * 100_000 + "]" * 100_000 + "\n", f"nested deeper than {MAX_CSG_DEPTH}"),
        ("a: " + "{b: " * 40 + "1" + "}" * 40 + "\n", "nested deeper"),
        ("created: 2024-13-45 12:00:00\n" + GROUP + _result(), "out of range .*month"),
        ("created: 2024-02-30\n" + GROUP + _result(), "out of range .*day"),
        ("a: [" + "0," * MAX_CSG_NODES + "]\n", f"more than {MAX_CSG_NODES} values"),
        (GROUP + _result(versions="{.inf: x.cs}"), "version inf is not a non-negative"),
        (GROUP + _result(versions="{.nan: x.cs}"), "version nan"),
        (GROUP + _result(versions="{-1: x.cs}"), "version -1"),
        (GROUP + _result(versions="{1.5: x.cs}"), "version 1.5"),
        (GROUP + _result(versions="{true: x.cs}"), "version True"),
        (GROUP + _result(versions="{2024-01-01: x.cs}"), "version datetime.date"),
        (GROUP + _result(versions="{'1e999': x.cs}"), "version '1e999'"),
        (GROUP + _result(versions="{1: [x.cs]}"), "metafile of version 1 is not a path"),
        (GROUP + _result(versions="[x.cs]"), "versions must be a mapping"),
        (GROUP + _result(num_items=-1), "num_items -1 is not a non-negative 64-bit integer"),
        (GROUP + _result(num_items=1.5), "num_items 1.5"),
        (GROUP + _result(num_items=".inf"), "num_items inf"),
        (GROUP + _result(num_items="true"), "num_items True"),
        (GROUP + _result(num_items="[1]"), r"num_items \[1\]"),
        (GROUP + _result(num_items=2**63), "num_items 9223372036854775808 is not"),
        (GROUP + _result(num_items=10**30), "integer '100000000000000000000000000000' beyond 64"),
        (GROUP + _result(num_items="1" * 5000), "integer '111111111111111111111111111111' beyond"),
        (
            GROUP
            + _result(
                versions="{" + ", ".join(f"{k * (2**61 - 1)}: x.cs" for k in range(1, 40_000)) + "}"
            ),
            "integer '20752587082923245559' beyond 64 bits",
        ),
        (GROUP + _result(passthrough=3), "passthrough 3 is not true or false"),
        (GROUP + _result(type="[a, b]"), "type must be text, not a list"),
        (GROUP + "results:\n  blob: {metafile: {a: 1}}\n", "metafile must be text, not a mapping"),
        (GROUP + "results:\n  blob: {metafile: ''}\n", "empty metafile"),
        ("group: {name: [p], type: particle}\nresults: {}\n", "group: name must be text"),
        (
            GROUP + "results:\n  blob: !!python/object/apply:os.system ['touch pwned']\n",
            "could not determine a constructor",
        ),
        (GROUP + "results: {}\n---\n" + GROUP + "results: {}\n", "expected a single document"),
        (GROUP + "results: {}\n\x00", "characters are not allowed at byte"),
        ("\xff\xfe\x00junk", "not a valid .csg"),
        ("results: {}\n", "'group' and 'results' mappings"),
    ],
    ids=lambda v: v[:30] if isinstance(v, str) else None,
)
@pytest.mark.parametrize("loader", ["default", "python"])
def test_hostile_csg_is_a_format_error_naming_the_file(tmp_path, monkeypatch, text, match, loader):
    if loader == "python":  # what runs where PyYAML was built without libyaml
        if len(text) > 500_000:
            pytest.skip("1 MB takes PyYAML's Python parser 4 s of CPU, whatever it holds")
        monkeypatch.setattr(csfast.groups, "_CsgLoader", csfast.groups._PyCsgLoader)
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "J1_particles.csg"
    path.write_bytes(
        text.encode("utf-8", "surrogateescape") if "\xff" not in text else text.encode("latin1")
    )
    start = time.process_time()
    with pytest.raises(CsFormatError, match=f"{path}: .*{match}"):
        ResultGroup.from_csg(path)
    # billion laughs took 37 s, then MemoryError; 40,000 colliding keys 16 s
    # (PyYAML's Python parser takes 3 s for the 100,000 values allowed)
    # (the 100,000 values take libyaml about 1 s of CPU, 2 s on a busy machine)
    assert time.process_time() - start < (4 if loader == "default" else 8)
    assert not (tmp_path / "pwned").exists()


def test_csg_beyond_the_size_cap(tmp_path):
    path = tmp_path / "J1_particles.csg"
    body = GROUP + _result()
    path.write_text(body + "#" * (MAX_CSG_BYTES - len(body)))
    assert ResultGroup.from_csg(path).name == "particles"  # exactly at the cap: read
    path.write_text(body + "#" * (MAX_CSG_BYTES - len(body) + 1))
    with pytest.raises(CsFormatError, match=f"{path}: larger than {MAX_CSG_BYTES} bytes"):
        ResultGroup.from_csg(path)


def test_quoted_versions_and_absent_counts_still_read(tmp_path):
    # What YAML writers other than csfast's may produce: quoted version keys,
    # a null count, anchors without aliases.
    path = tmp_path / "J1_particles.csg"
    path.write_text(
        GROUP.replace("particles", "&n particles")
        + _result(
            versions="{'3': '>J1_003_particles.cs', 7: '>J1_007_particles.cs'}", num_items="null"
        )
    )
    blob = ResultGroup.from_csg(path)["blob"]
    assert sorted(blob.versions) == [0, 3, 7] and blob.num_items == 0


def test_metafile_name_with_a_huge_number_is_not_a_version(tmp_path):
    # J1_<5,000 digits>_particles.cs: int() of it raised ValueError
    path = tmp_path / "J1_particles.csg"
    path.write_text(GROUP + "results:\n  blob: {metafile: '>J1_" + "7" * 5000 + "_particles.cs'}\n")
    assert ResultGroup.from_csg(path)["blob"].version == 0


@pytest.mark.parametrize(
    "text, match",
    [
        ("[" * 100_000 + "]" * 100_000, "nested too deep"),
        ('{"spec": ' + "1" * 5000 + "}", "4300 digits"),
        ("\xff{}", "not a valid JSON document"),
    ],
)
def test_malformed_job_document_is_a_format_error(tmp_path, text, match):
    (tmp_path / "J1").mkdir()
    (tmp_path / "J1" / "job.json").write_bytes(text.encode("latin1"))
    with pytest.raises(CsFormatError, match=f"job J1 .*job.json.*{match}"):
        Project(tmp_path).job("J1")


def test_job_document_that_is_a_fifo(tmp_path, fifo):
    (tmp_path / "J1").mkdir()
    (tmp_path / "J1" / "job.json").symlink_to(fifo)
    with pytest.raises(CsError, match="no job 'J1'"):  # not a regular file: no job there
        Project(tmp_path).job("J1")
    with pytest.raises(CsFormatError, match="is a FIFO"):  # and if it became one meanwhile
        csfast.project.open_regular(tmp_path / "J1" / "job.json")


# ----------------------------------------------------------- the command


def _csfast_commands() -> list[list[str]]:
    script = Path(sys.executable).parent / "csfast"
    return [[sys.executable, "-m", "csfast"]] + ([[str(script)]] if script.exists() else [])


@pytest.fixture
def bad_files(tmp_path, fifo):
    pytest.importorskip("pyarrow")
    pytest.importorskip("starfile")
    good = numpy_save(tmp_path / "good.cs", GOOD)
    (tmp_path / "junk.cs").write_bytes(b"PK\x03\x04 a zip file")
    (tmp_path / "cut.cs").write_bytes(good.read_bytes()[:-5])
    (tmp_path / "header.cs").write_bytes(npy_bytes(None, b"", text="{'descr': [(1, 2)]}"))
    (tmp_path / "junk.parquet").write_bytes(os.urandom(300))
    (tmp_path / "junk.arrow").write_bytes(os.urandom(300))
    (tmp_path / "junk.csdat").write_bytes(b"\x95CSDAT\xff\xff\xff\x00{")
    (tmp_path / "junk.star").write_bytes(b"data_optics\nloop_\n_rlnX #1\n1\n")
    (tmp_path / "laughs.csg").write_text(LAUGHS)
    (tmp_path / "inf.csg").write_text(GROUP + _result(versions="{.inf: x.cs}"))
    (tmp_path / "J1_missing.csg").write_text(GROUP + _result())
    (tmp_path / "empty.npy").write_bytes(b"")
    (tmp_path / "fifo.cs").symlink_to(fifo)
    (tmp_path / "fifo.csg").symlink_to(fifo)
    group = write_output(tmp_path, "J2", "particles", Dataset(GOOD), "particle", ["a"])
    return tmp_path, group.path


CASES = [
    ("info", ["junk.cs"], "junk.cs: not a .cs file"),
    ("info", ["fifo.cs"], "fifo.cs: is a FIFO"),
    ("info", ["header.cs"], "header.cs: "),
    ("info", ["missing.cs"], "missing.cs: No such file"),
    ("load", ["laughs.csg"], "laughs.csg: not a valid .csg (YAML) file: aliases"),
    ("load", ["inf.csg"], "inf.csg: result 'blob': version inf"),
    ("load", ["J1_missing.csg"], "J1_000_particles.cs: No such file"),
    ("load", ["fifo.csg"], "fifo.csg: is a FIFO"),
    ("load", ["{group}", "--version", "5"], "has no version 5"),
    ("project", ["good.cs"], "good.cs: not a folder"),
    ("join", ["good.cs", "cut.cs"], "cut.cs: truncated"),
    ("join", ["good.cs", "fifo.cs"], "fifo.cs: is a FIFO"),
    ("append", ["good.cs", "header.cs"], "header.cs: "),
    ("append", ["good.cs", "good.cs"], "uid"),
    ("convert", ["junk.parquet", "out.cs"], "junk.parquet: Could not open Parquet"),
    ("convert", ["junk.arrow", "out.cs"], "junk.arrow: Not an Arrow file"),
    ("convert", ["junk.csdat", "out.cs"], "junk.csdat: "),
    ("convert", ["junk.star", "out.cs"], "junk.star: "),
    ("convert", ["fifo.cs", "out.parquet"], "fifo.cs: is a FIFO"),
    ("convert", ["good.cs", "no/such/folder/out.parquet"], "No such file or directory"),
    ("convert", ["good.cs", "out.txt"], "unknown extension '.txt'"),
    ("demo", ["--rows", "10", "--dir", "good.cs"], "good.cs"),
    ("info", ["laughs.csg"], "laughs.csg: not a valid .csg (YAML) file: aliases"),
    ("union", ["good.cs", "fifo.cs", "-o", "u.cs"], "fifo.cs: is a FIFO"),
    ("filter", ["header.cs", "-o", "f.cs", "--where", "a/x < 1"], "header.cs: "),
    ("fields", ["cut.cs", "-o", "f.cs", "--keep", "a"], "cut.cs: truncated"),
    ("split", ["junk.cs", "-o", "parts", "--batches", "2"], "junk.cs: not a .cs file"),
    ("sets", ["good.cs", "inf.csg", "-o", "sets", "--intersect"], "inf.csg: result 'blob'"),
    ("filter", ["good.cs", "-o", "f.cs", "--uids", "empty.npy"], "empty.npy: not a plain"),
    ("filter", ["good.cs", "-o", "f.cs", "--uids", "fifo.cs"], "fifo.cs: is a FIFO"),
]


def _check_one_line(command: str, status: int, err: str, message: str) -> None:
    shown = f"{command}: status {status}, stderr {err!r}"
    assert status == 1, shown
    assert "Traceback" not in err and err.count("\n") == 1, shown
    assert err.startswith(f"csfast {command}: ") and message in err, shown


@pytest.mark.parametrize("command, args, message", CASES)
def test_every_command_reports_bad_files_in_one_line(
    bad_files, monkeypatch, capsys, command, args, message
):
    folder, group = bad_files
    monkeypatch.chdir(folder)
    status = main([command] + [a.replace("{group}", group) for a in args])
    _check_one_line(command, status, capsys.readouterr().err, message)


def test_installed_command_reports_bad_files_in_one_line(bad_files):
    # The entry points themselves (console script and python -m), a case each.
    folder, group = bad_files
    runs = []
    for k, base in enumerate(_csfast_commands()):
        for command, args, message in CASES[k::7]:
            argv = base + [command] + [a.replace("{group}", group) for a in args]
            runs.append(
                (
                    command,
                    message,
                    subprocess.Popen(
                        argv, cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
                    ),
                )
            )
    assert len(runs) >= 3
    done = []
    for command, message, proc in runs:  # every process waited for, then checked
        _, err = proc.communicate(timeout=120)
        done.append((command, proc.returncode, err, message))
    for command, status, err, message in done:
        _check_one_line(command, status, err, message)
