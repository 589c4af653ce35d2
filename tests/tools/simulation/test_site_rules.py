"""The simulated database's rules for site accounts agree with validate_doc_update.js on the repair path."""

from __future__ import annotations

import pytest

from enqueue import documents as docs
from enqueue import repair
from tests.unit.test_security_rules import NODE, SECURITY, run_validator, site
from tools.simulation import site_rules
from tools.simulation.watched_store import WatchedStore

LEADER = "enqueue_leader"
NOW = "2026-01-01 00:00:00"


def _store() -> WatchedStore:
    return WatchedStore(1, lambda doc_id, body: None)


@pytest.mark.skipif(NODE is None, reason="node is needed to run the validation function")
def test_the_simulated_rules_refuse_what_the_real_ones_refuse_on_the_repair_path() -> None:
    cases = []  # (old as the server hands it to the function, new, the simulated database's verdict)
    deleted = _store()
    deleted.put(docs.render_leader(docs.new_leader_doc(LEADER)))
    deleted.delete(deleted.get(LEADER))
    for turn in (0, 2, 40):
        new = docs.render_leader(repair.rebuilt_leader_doc(LEADER, None, turn, "alpha", "alpha", NOW))
        cases.append((None, new, site_rules.refusal(deleted, new)))
    garbling = _store()
    garbling.put(docs.render_leader(docs.new_leader_doc(LEADER)))
    garbling.put({"_id": LEADER, "_rev": garbling.get(LEADER)["_rev"], "turn": "x", "edited": "by hand"})
    garbled = garbling.get(LEADER)
    count = repair.revision_count(garbled["_rev"])
    for turn in (0, count - 1, count, count + 1):
        new = docs.render_leader(repair.rebuilt_leader_doc(LEADER, garbled, turn, "alpha", "alpha", NOW))
        cases.append((garbled, new, site_rules.refusal(garbling, new)))
    real = run_validator([(new, old, site("alpha"), SECURITY) for old, new, _ in cases])
    for (old, new, simulated), verdict in zip(cases, real):
        assert ("forbidden" in verdict) == (simulated is not None), (new["turn"], verdict, simulated)
    assert [simulated is None for _, _, simulated in cases] == [False, False, False, False, False, True, False]
