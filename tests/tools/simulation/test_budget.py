"""The default budget: 200 seeds of the real agents under faults, every invariant after every step."""

from __future__ import annotations

import os
from collections import Counter

from tools.simulation.cli import results
from tools.simulation.faults import parse_faults
from tools.simulation.simulation import DEFAULT_FAULTS, Options

SEEDS = range(1, 201)
STEPS = 800
JOBS = min(2, os.cpu_count() or 1)


def test_every_invariant_holds_on_the_default_budget() -> None:
    options = Options(steps=STEPS, faults=parse_faults(DEFAULT_FAULTS))
    failed, faults, commands = [], Counter(), 0
    for result in results(list(SEEDS), options, JOBS):
        seed = result.seed
        if not result.ok:
            failed.append((seed, result.violations[0].splitlines()[0]))
        faults.update(result.fault_counts)
        commands += result.commands
    assert failed == [], \
        f"{failed}; replay with: scripts/simulate --seed {failed[0][0]} --steps {STEPS} --faults '{DEFAULT_FAULTS}'"
    # Not vacuous: every enabled fault struck, and turns kept going.
    assert set(options.faults) - {"clock-rate"} <= set(faults), sorted(set(options.faults) - set(faults))
    assert commands > 10 * len(SEEDS)
