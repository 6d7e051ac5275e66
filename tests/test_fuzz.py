"""Property-based fuzzing of every input surface (Hypothesis; seeded, so a run is repeatable, and
bounded, so all of it takes about two minutes). The surfaces and the property are in fuzzing.py:
one-line EdgepackError with a documented exit status, or success; never another exception, never
a partial output folder, never a file written outside it. benchmarks/fuzz.py runs the same
surfaces with random seeds for as long as it is given."""

from __future__ import annotations

import pytest
from fuzzing import SURFACES, Materials, by_name, check
from hypothesis import HealthCheck, given, settings

#: inputs per surface: a few hundred where each takes milliseconds, a dozen where each starts a runtime
FAST, SLOW = 250, 8


@pytest.fixture(scope="module")
def materials(built, tmp_path_factory):
    bundle, _ = built
    return Materials.make(bundle, tmp_path_factory.mktemp("fuzz"))


@pytest.mark.parametrize("name", [s.name for s in SURFACES])
def test_fuzz(name, materials):
    surface = by_name(name)
    surface.outcomes.clear()

    @settings(max_examples=SLOW if surface.slow else FAST, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(surface.strategy(materials))
    def prop(value):
        check(surface, value, materials)

    prop()
    total = sum(surface.outcomes.values())
    assert total >= (SLOW if surface.slow else FAST) // 2, surface.outcomes  # the inputs were run, not all filtered out
    refused = sum(v for k, v in surface.outcomes.items() if k != "ok")
    assert refused, f"{name}: no input was refused; the strategy does not reach the checks ({surface.outcomes})"
