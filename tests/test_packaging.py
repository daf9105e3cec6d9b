"""What the installed package promises about itself: one version, light imports."""

import importlib.metadata
import re
import subprocess
import sys
from pathlib import Path

import csfast

MESON_BUILD = Path(__file__).resolve().parents[1] / "meson.build"


def meson_version() -> str:
    """The version in meson.build's project(...) call, read as text."""
    project = re.search(r"\bproject\((.*?)\n\)", MESON_BUILD.read_text(), re.S)
    assert project, "meson.build has no project(...) call"
    found = re.findall(r"\bversion\s*:\s*'([^']+)'", project.group(1))
    assert len(found) == 1, f"project(...) names {len(found)} versions"
    return found[0]


def test_version_has_one_source():
    assert csfast.__version__ == importlib.metadata.version("csfast") == meson_version()


def test_import_loads_no_optional_dependency():
    """``import csfast`` costs numpy and PyYAML only: the extras load on first use."""
    heavy = ["pandas", "pyarrow", "starfile", "cryosparc", "polars", "duckdb", "scipy", "tqdm"]
    code = ("import sys, csfast; "
            f"print(' '.join(m for m in {heavy!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.split() == []
