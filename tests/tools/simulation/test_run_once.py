"""Run-once agents in site loops: every invariant holds, and a leaving leader hands its leadership on.

docs/PROTOCOL.md §3.3.5: a run-once agent that leads names an heir in the
write that ends its turn, so no election follows every turn; an heir that
dies is taken over by an election, as any dead leader.
"""

from __future__ import annotations

import os
import re

from tools.simulation.cli import results
from tools.simulation.faults import parse_faults
from tools.simulation.simulation import DEFAULT_FAULTS, Options, Simulation

SEEDS = range(1, 101)
STEPS = 800
JOBS = min(2, os.cpu_count() or 1)

_HANDED = re.compile(r"handed the leadership to (\w+)")
_TAKEN_OVER = re.compile(r"elected leader \(term \d+\): leader (\w+) (?:is stale|left)")


def test_every_invariant_holds_with_run_once_sites_under_every_default_fault() -> None:
    options = Options(steps=STEPS, faults=parse_faults(DEFAULT_FAULTS), run_once=2)
    failed, handoffs, heirs_taken_over = [], 0, 0
    for result in results(list(SEEDS), options, JOBS, traces=True):
        seed = result.seed
        if not result.ok:
            failed.append((seed, result.violations[0].splitlines()[0]))
        heirs: set[str] = set()
        for line in result.trace:
            handed = _HANDED.search(line)
            if handed:
                handoffs += 1
                heirs.add(handed.group(1))
            taken = _TAKEN_OVER.search(line)
            if taken and taken.group(1) in heirs:
                heirs_taken_over += 1
    assert failed == [], f"{failed}; replay with: scripts/simulate --seed {failed[0][0]} --steps {STEPS} " \
                         f"--run-once 2 --faults '{DEFAULT_FAULTS}'"
    # Not vacuous: leaders handed on, and heirs that died or left were taken over by an election.
    assert handoffs > len(SEEDS), handoffs
    assert heirs_taken_over > 0, handoffs


def test_a_loop_of_run_once_sites_needs_no_election_after_every_turn() -> None:
    for seed in (1, 2, 3):
        result = Simulation(seed, Options(steps=1500, faults=parse_faults("none"), sites=4, run_once=4)).run()
        assert result.ok, result.violations
        elections = sum("elected leader" in line for line in result.trace)
        assert result.turns > 20
        assert elections <= 1, f"seed {seed}: {elections} elections in {result.turns} turns"
