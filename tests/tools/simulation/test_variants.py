"""The simulation catches deliberately broken variants of the real agent, and not the real agent itself."""

from __future__ import annotations

import pytest

from tools.simulation.faults import parse_faults
from tools.simulation.simulation import Options, Simulation
from tools.simulation.variants import VARIANTS

BUDGET = 200


def _first_tripped(name: str) -> int | None:
    variant = VARIANTS[name]
    options = Options(faults=parse_faults(variant.faults))
    for seed in range(1, BUDGET + 1):
        if Simulation(seed, options).run().kinds() & variant.trips:
            return seed
    return None


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_the_broken_variant_is_caught_and_the_real_agent_is_not(name: str) -> None:
    variant = VARIANTS[name]
    with variant.patch():
        caught = _first_tripped(name)
    assert caught is not None, f"{name} was not caught within {BUDGET} seeds"
    options = Options(faults=parse_faults(variant.faults))
    real = [seed for seed in range(1, caught + 1) if Simulation(seed, options).run().kinds() & variant.trips]
    assert real == [], f"the real agent trips {sorted(variant.trips)} too, on seeds {real}"
