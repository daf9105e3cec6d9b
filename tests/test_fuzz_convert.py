"""Mutated CSDAT streams, STAR files and Arrow schema records: every outcome
is a consistent read within the memory bound of docs/formats.md, or a CsError
naming the input.

Seeded and bounded in time (a few seconds each); benchmarks/fuzz_convert.py
runs the same cases longer (benchmarks/README.md has the figures of a run).
"""

import pytest
from fuzz_convert import run

SECONDS = 3.0


@pytest.mark.parametrize("kind", ["csdat", "star", "record"])
def test_mutated_inputs_read_or_raise_cs_errors(tmp_path, kind):
    # STAR files are read with pandas, and the record is Arrow's schema metadata.
    for module in {"csdat": [], "star": ["pandas", "starfile"], "record": ["pyarrow"]}[kind]:
        pytest.importorskip(module)
    outcomes, done, slowest = run(kind, cases=5000, seed=20261201, folder=tmp_path,
                                  seconds=SECONDS)
    assert done >= 50, f"only {done} cases in {SECONDS} s"
    # Both kinds of outcome are common: the mutations neither always break
    # the input nor never do (a mutator that did nothing would fail here).
    assert outcomes["read"] >= done // 20, outcomes
    assert outcomes["CsFormatError"] >= done // 10, outcomes
    assert slowest < 2.0, f"one case took {slowest:.2f} s"
