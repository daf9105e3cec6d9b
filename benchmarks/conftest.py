"""pytest options and fixtures of the benchmark suites (pytest-benchmark).

Run from the repository root (see benchmarks/README.md):

    python -m pytest benchmarks --benchmark-only            # 1M rows
    python -m pytest benchmarks --benchmark-only --10m      # 10M rows

The default test run (testpaths = tests) never collects this folder.
"""

from __future__ import annotations

import fnmatch
import sys
from pathlib import Path

import pytest

# --import-mode=importlib does not put this folder on sys.path; the suites
# share scenario.py through it.
_HERE = Path(__file__).resolve().parent
if str(_HERE) not in sys.path:
    sys.path.insert(0, str(_HERE))

import scenario as _scenario  # noqa: E402
from operations import OPERATIONS  # noqa: E402

TEN_MILLION = 10_000_000


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("csfast benchmarks")
    group.addoption("--rows", type=int, default=1_000_000,
                    help="rows of the generated scenario (default 1,000,000)")
    group.addoption("--10m", action="store_true", dest="ten_million",
                    help="run at 10,000,000 rows (overrides --rows; ~4 GB of files)")
    group.addoption("--threads", type=int, default=None,
                    help="csfast kernel threads (default: CSFAST_NUM_THREADS, else all cores)")
    group.addoption("--bench-dir", default=None,
                    help="scenario cache root (default $CSFAST_BENCH_DIR or /tmp/csfast-bench)")
    group.addoption("--bench-rounds", type=int, default=None,
                    help="rounds of each heavy benchmark (default 5 up to 2M rows, else 3)")


def pytest_collect_file(file_path: Path, parent: pytest.Collector):
    """Collect bench_*.py as test modules (unless python_files already does)."""
    if file_path.suffix != ".py" or not file_path.name.startswith("bench_"):
        return None
    if parent.session.isinitpath(file_path) or any(
            fnmatch.fnmatch(file_path.name, pat) for pat in parent.config.getini("python_files")):
        return None
    return pytest.Module.from_parent(parent, path=file_path)


@pytest.fixture(scope="session")
def rows(pytestconfig: pytest.Config) -> int:
    """Row count of the scenario under test."""
    return TEN_MILLION if pytestconfig.getoption("ten_million") else pytestconfig.getoption("rows")


@pytest.fixture(scope="session")
def scenario(rows: int, pytestconfig: pytest.Config) -> _scenario.Scenario:
    """The scenario of docs/performance.md (generated on first use, then cached on disk)."""
    return _scenario.build(rows, root=pytestconfig.getoption("bench_dir"))


@pytest.fixture(scope="session")
def rounds(rows: int, pytestconfig: pytest.Config) -> int:
    """Rounds for benchmarks of whole-table operations (pedantic mode)."""
    return pytestconfig.getoption("bench_rounds") or (5 if rows <= 2_000_000 else 3)


@pytest.fixture(scope="session", autouse=True)
def csfast_threads(pytestconfig: pytest.Config):
    """Apply --threads to the csfast kernels for the whole session."""
    import csfast

    n = pytestconfig.getoption("threads")
    if n is not None:
        csfast.set_num_threads(n)
    yield csfast.num_threads()
    if n is not None:
        csfast.set_num_threads(0)  # back to the default


@pytest.fixture
def run(benchmark, rounds: int, csfast_threads: int):
    """Time fn in pedantic mode (fixed rounds, one call each, optional per-round setup).

    ``setup`` returns the (args, kwargs) of fn, built outside the timing.
    ``nbytes`` (bytes the operation outputs) goes into extra_info for bandwidth.
    """
    def _run(fn, *, setup=None, nbytes: int | None = None, group: str | None = None):
        if group:
            benchmark.group = group
        benchmark.extra_info["threads"] = csfast_threads
        if nbytes is not None:
            benchmark.extra_info["output_bytes"] = int(nbytes)
        return benchmark.pedantic(fn, setup=setup, rounds=rounds, iterations=1,
                                  warmup_rounds=1)
    return _run



@pytest.fixture
def run_operation(run, scenario):
    """Time a registered operation (operations.py): csfast's call, or numpy's baseline.

    Its prepare step (inputs in memory, uid lists) runs once, untimed; the
    group is the operation's label, the one compare.py prints.
    """
    def _run(key: str, side: str = "csfast"):
        op = OPERATIONS[key]
        call, prepare = (op.csfast, op.prepare) if side == "csfast" else (op.numpy,
                                                                          op.numpy_prepare)
        assert call is not None, f"{key} has no {side} call"
        state = prepare(scenario) if prepare else None
        nbytes = op.out_bytes(scenario) if op.out_bytes else None
        return run(lambda: call(scenario, state), group=op.label, nbytes=nbytes)
    return _run
