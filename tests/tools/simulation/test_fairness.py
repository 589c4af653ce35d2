"""Without faults, the real agents take turns in alphabetical order, with consecutive fencing tokens.

Kept from the simplified protocol model the simulation replaced; now about the real agent.
"""

from __future__ import annotations

import pytest

from enqueue import documents as docs
from enqueue.rotation import next_after

from tools.simulation.simulation import SITE_NAMES, Options, Simulation


@pytest.mark.parametrize("sites", [1, 2, 5])
@pytest.mark.parametrize("seed", [1, 2])
def test_turns_go_round_in_alphabetical_order(seed: int, sites: int) -> None:
    sim = Simulation(seed, Options(sites=sites, steps=1200, faults=frozenset()))
    result = sim.run()
    assert result.violations == []
    starts = sorted(sim.ledger.commands, key=lambda c: c.start)
    assert len(starts) >= 10
    # No turn lost: every grant confirmed and run, one after the other.
    assert [c.turn for c in starts] == list(range(1, len(starts) + 1))
    names = SITE_NAMES[:sites]
    # Once every site is in, strictly alphabetical, wrapping around.
    joined = max(starts.index(next(c for c in starts if c.site == s)) for s in names)
    for prev, cur in zip(starts[joined:], starts[joined + 1:]):
        assert cur.site == next_after(prev.site, names), [c.site for c in starts]
    # Every turn ended on its own and says so.
    for raw in sim.store.list_prefix(docs.TURN_PREFIX):
        rec, _ = docs.parse_turn_record(raw)
        assert rec is not None and rec.how == "exited", raw
