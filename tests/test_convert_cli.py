"""`csfast convert IN OUT`: formats by extension, flags, messages."""

import numpy as np
import pytest

from csfast.cli import main
from csfast.synthetic import particles

starfile = pytest.importorskip("starfile")
CsDataset = pytest.importorskip("cryosparc.dataset").Dataset


def test_convert_by_extension_round_trips(tmp_path, capsys):
    particles(300, results=("blob", "ctf", "alignments3D"), seed=9).save(tmp_path / "a.cs")
    ref = np.load(tmp_path / "a.cs")
    for ext in ("parquet", "arrow", "csdat"):
        assert main(["convert", str(tmp_path / "a.cs"), str(tmp_path / f"b.{ext}")]) == 0
        assert main(["convert", str(tmp_path / f"b.{ext}"), str(tmp_path / f"c_{ext}.cs")]) == 0
        back = np.load(tmp_path / f"c_{ext}.cs")
        assert back.dtype == ref.dtype and (back == ref).all(), ext
    out = capsys.readouterr().out
    assert "read 300 rows" in out and "(parquet)" in out


def test_convert_csdat_flag_and_no_compress(tmp_path):
    particles(50, results=("blob",), seed=1).save(tmp_path / "a.cs")
    assert main(["convert", str(tmp_path / "a.cs"), str(tmp_path / "s.cs"), "--csdat",
                 "--no-compress"]) == 0
    assert (tmp_path / "s.cs").read_bytes()[:6] == b"\x95CSDAT"
    header = CsDataset.inspect(tmp_path / "s.cs")
    assert header["compression"] is None and header["length"] == 50
    assert np.array_equal(CsDataset.load(tmp_path / "s.cs")["blob/idx"],
                          np.load(tmp_path / "a.cs")["blob/idx"])


def test_convert_to_star_reports_fields_and_warnings(tmp_path, capsys):
    particles(40, results=("blob", "ctf", "alignments3D"), seed=2).save(tmp_path / "a.cs")
    assert main(["convert", str(tmp_path / "a.cs"), str(tmp_path / "a.star")]) == 0
    err = capsys.readouterr().err
    assert "not written" in err and "uid" in err and "alignments3D/error" in err
    assert "warning: blob/psize_A varies within optics group" in err
    assert len(starfile.read(tmp_path / "a.star", always_dict=True)["particles"]) == 40


def test_convert_unknown_extension_is_an_error(tmp_path, capsys):
    particles(5, results=("blob",), seed=1).save(tmp_path / "a.cs")
    assert main(["convert", str(tmp_path / "a.cs"), str(tmp_path / "a.xlsx")]) == 1
    assert "unknown extension '.xlsx'" in capsys.readouterr().err


def test_micrograph_shape_only_for_star_input(tmp_path, capsys):
    src = tmp_path / "p.cs"
    particles(10).save(src)
    status = main(["convert", str(src), str(tmp_path / "p.parquet"),
                   "--micrograph-shape", "10", "10"])
    assert status == 1
    assert "--micrograph-shape applies to .star input only" in capsys.readouterr().err
    assert not (tmp_path / "p.parquet").exists()
