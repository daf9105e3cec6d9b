"""Every example of the README runs as printed on the demo's output.

The README's python blocks run in order, in one namespace, in the folder
`csfast demo --dir` wrote (the README says so); its `csfast ...` command
lines (not the install commands) run through the CLI, in order with them.
Blocks needing an optional extra that is not installed are skipped by name.
"""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

import numpy as np
import pytest

from csfast import Dataset, Project
from csfast.cli import main

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCK = re.compile(r"^```(\w+)\n(.*?)^```", re.S | re.M)


def _blocks() -> list[tuple[str, str]]:
    return [(m.group(1), m.group(2)) for m in BLOCK.finditer(README.read_text())]


def test_readme_has_examples():
    kinds = [k for k, _ in _blocks()]
    assert kinds.count("python") >= 4


# The modules `csfast convert` needs to write each optional format.
_EXTRAS = {".star": ("pandas", "starfile"), ".parquet": ("pyarrow",), ".arrow": ("pyarrow",)}


# The synthetic CTF varies within an exposure group, which to_star reports (as
# documented) with a StarWarning: a warning, not a failure of the example.
@pytest.mark.filterwarnings("ignore::csfast.StarWarning")
def test_readme_examples_run_on_the_demo(tmp_path, monkeypatch, capsys):
    folder = tmp_path / "demo"
    assert main(["demo", "--rows", "2000", "--dir", str(folder), "--quiet"]) == 0
    capsys.readouterr()
    monkeypatch.chdir(folder)
    namespace: dict = {}
    ran = 0
    for kind, code in _blocks():
        if kind == "bash":
            for line in code.splitlines():
                if line.startswith("csfast "):
                    args = shlex.split(line)[1:]
                    if args[0] == "convert":  # the output's format may be an optional extra
                        for module in _EXTRAS.get(Path(args[2]).suffix, ()):
                            pytest.importorskip(module)
                    assert main(args) == 0, line
            continue
        if kind != "python":
            continue
        try:
            exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102
        except ModuleNotFoundError as e:  # an optional extra this environment lacks
            pytest.skip(f"README example needs {e.name}")
        ran += 1
    assert ran >= 4
    # What the examples claim, checked against the files (numpy) and the project.
    j6 = np.load(folder / "J6" / "J6_005_particles.cs")
    assert namespace["ds"].fields()[:4] == ["uid", "blob/path", "blob/idx", "blob/shape"]
    assert namespace["ds"].prefixes() == ["blob", "ctf", "alignments3D"]
    assert len(namespace["stack"]) == len(j6)
    assert namespace["project"].jobs() == [f"J{i}" for i in range(1, 11)]  # J10 written since
    assert (namespace["j6"].type, namespace["j6"].status) == ("homo_refine_new", "completed")
    assert namespace["j6"].inputs["particles"].check() == []
    # J10, written by the result-group example, reads back as a job of the project.
    assert Project(folder).jobs()[-1] == "J10"
    j10 = Project(folder).job("J10")
    written = Dataset.load(folder / "J10" / "J10_005_particles.cs")
    assert set(np.asarray(written["ctf/bfactor"]).tolist()) == {50.0}
    back = j10.inputs["particles"].load()
    assert sorted(np.asarray(back["uid"]).tolist()) == sorted(j6["uid"].tolist())
    assert os.path.exists(folder / "particles.parquet")
    # The chores: the filter's rows as numpy selects them; subtract and union give them back.
    good = np.load(folder / "good.cs")
    ref = j6[np.isin(j6["alignments3D/class"], [0, 3]) & (j6["ctf/df1_A"] < 20000)]
    assert 0 < len(good) < len(j6) and np.array_equal(good["uid"], ref["uid"])
    rest = np.load(folder / "rest" / "A_minus_B.cs")
    assert sorted(np.load(folder / "all.cs")["uid"].tolist()) == sorted(j6["uid"].tolist())
    assert len(rest) == len(j6) - len(good)
    assert sum(len(np.load(folder / "batches" / f)) for f in os.listdir(folder / "batches")
               if f.endswith(".cs")) == len(good)
