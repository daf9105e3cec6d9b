"""Mutated .cs and .csg files: every outcome is a consistent read or a CsError.

Seeded and bounded in time (a few seconds each); benchmarks/fuzz.py runs the
same cases longer (benchmarks/README.md has the figures of a run).
"""

import pytest
from fuzzing import run

SECONDS = 3.0


@pytest.mark.parametrize("kind", ["cs", "csg"])
def test_mutated_files_load_or_raise_cs_errors(tmp_path, kind):
    outcomes, done, slowest = run(kind, cases=5000, seed=20261201, folder=tmp_path, seconds=SECONDS)
    assert done >= 100, f"only {done} cases in {SECONDS} s"
    loaded = sum(n for k, n in outcomes.items() if k.startswith("loaded"))
    refused = outcomes["CsFormatError"]
    # Both kinds of outcome are common: the mutations neither always break
    # the file nor never do (a mutator that did nothing would fail here).
    assert loaded >= done // 20 and refused >= done // 3, outcomes
    assert slowest < 1.0, f"one case took {slowest:.2f} s"
