"""The simulation catches deliberately broken variants of the real agent, and not the real agent itself.

The claim is the one each variant is kept for: the default budget catches it, that is one of the seeds
1..BUDGET of the default options, run under the variant's faults, trips one of the invariants the variant
breaks; and the real agent trips none of them on any seed up to that one.

How this is shown without running every seed up to the catch twice. A run is deterministic by seed
(``scripts/simulate --seed S`` replays it exactly, in any process), so a seed that catches the variant
when run alone catches it in a search from seed 1 too. ``Variant.first_caught`` records the seed where
that search stopped; the test runs the variant on it alone, and checks that it lies within the budget.
The seeds before it are not run under the variant: a search asserted nothing of them but that they did
not catch it. The real agent still runs on every seed from 1 to the catch, as it always did: once per
fault set, on two processes, and judged for every variant of that fault set.

When a change moves the catch, the recorded seed stops catching the variant: the test then searches
from seed 1 as it used to (slower, the same proof) and warns with the seed to record. It does not notice
a catch that moved to an earlier seed (the recorded one still catches): the claim holds, and the real
agent's replay covers more seeds than needed.
"""

from __future__ import annotations

import os
import warnings
from typing import Dict, FrozenSet, Optional

import pytest

from tools.simulation.cli import results
from tools.simulation.faults import parse_faults
from tools.simulation.simulation import Options, Simulation
from tools.simulation.variants import VARIANTS, Variant

BUDGET = 200
JOBS = min(2, os.cpu_count() or 1)

# The kinds of violation the real agent tripped, by fault set and seed: shared by the variants of a set.
_REAL: Dict[str, Dict[int, FrozenSet[str]]] = {}


def _options(variant: Variant) -> Options:
    return Options(faults=parse_faults(variant.faults))


def _catches(variant: Variant, seed: int) -> bool:
    with variant.patch():
        return bool(Simulation(seed, _options(variant)).run().kinds() & variant.trips)


def _search(variant: Variant) -> Optional[int]:
    """The first seed of the budget that catches ``variant``, as a search from seed 1 finds it."""
    return next((seed for seed in range(1, BUDGET + 1) if _catches(variant, seed)), None)


def _first_caught(name: str, variant: Variant) -> Optional[int]:
    recorded = variant.first_caught
    if recorded is not None:
        assert 1 <= recorded <= BUDGET, f"{name}: first_caught {recorded} is outside the budget 1..{BUDGET}"
        if _catches(variant, recorded):
            return recorded
    caught = _search(variant)
    if caught is not None:
        stale = "no seed is recorded" if recorded is None else f"seed {recorded} no longer catches it"
        warnings.warn(f"{name}: {stale}; seed {caught} is the first that does: "
                      f"record first_caught={caught} in tools/simulation/variants.py")
    return caught


def _real_kinds(variant: Variant, last: int) -> Dict[int, FrozenSet[str]]:
    """What the real agent tripped on seeds 1..last under ``variant``'s faults (each seed run once per set)."""
    seen = _REAL.setdefault(variant.faults, {})
    missing = [seed for seed in range(1, last + 1) if seed not in seen]
    for result in results(missing, _options(variant), JOBS):
        seen[result.seed] = result.kinds()
    return {seed: seen[seed] for seed in range(1, last + 1)}


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_the_broken_variant_is_caught_and_the_real_agent_is_not(name: str) -> None:
    variant = VARIANTS[name]
    caught = _first_caught(name, variant)
    assert caught is not None, f"{name} was not caught within {BUDGET} seeds"
    real = [seed for seed, kinds in _real_kinds(variant, caught).items() if kinds & variant.trips]
    assert real == [], f"the real agent trips {sorted(variant.trips)} too, on seeds {real}"
