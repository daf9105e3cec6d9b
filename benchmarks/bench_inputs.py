"""Input groups on the scenario: check() (headers and uid columns only) and load().

The refinement's case: a group (alignments3D in particles.cs, blob, ctf,
location and pick_stats passed through in passthrough_particles.cs) whose blob
slot is overridden from another group's result in the same passthrough file,
so check() compares the uid columns of two files of n rows.
"""

from __future__ import annotations

import pytest
from scenario import materialize, nbytes

from csfast import Input, InputSpec, Result, ResultGroup


@pytest.fixture
def refinement_input(scenario):
    pt, main = str(scenario.passthrough), str(scenario.particles)
    n = scenario.rows
    own = {"alignments3D": Result("alignments3D", "particle", {5: main}, num_items=n)}
    own |= {
        r: Result(r, "particle", {0: pt}, num_items=n, passthrough=True)
        for r in ("blob", "ctf", "location", "pick_stats")
    }
    refined = ResultGroup("particles", "particle", own, job="J42")
    extracted = ResultGroup(
        "particles",
        "particle",
        {"blob": Result("blob", "particle", {0: pt}, num_items=n)},
        job="J2",
    )

    def build():
        inp = Input(InputSpec("particle", ["blob", "alignments3D"], name="particles"))
        inp.connect(refined)
        inp.override(0, "blob", extracted["blob"])
        return inp

    return build


def test_input_check(run, scenario, refinement_input):
    inp = refinement_input()
    assert inp.check() == []
    run(inp.check, group="input check (headers + uid columns)")


def test_input_load(run, scenario, refinement_input):
    def load():
        return materialize(refinement_input().load())

    out = load()
    out_bytes = nbytes(out)
    assert len(out) == scenario.rows
    del out
    run(load, group="input load (join, all columns)", nbytes=out_bytes)
