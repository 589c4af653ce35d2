"""Election: when leadership is open, claiming it, stepping down, backing off (docs/PROTOCOL.md §3.3)."""

from __future__ import annotations

import random

import pytest

from enqueue.documents import DONE, IDLE, LEFT, RUNNING, WAITING, Heartbeat, LeaderDoc, new_leader_doc
from enqueue.election import claim, conflict_wait, resign, vacancy

LEADER_ID = "enqueue_leader"


def doc(leader: str | None, term: int = 3) -> LeaderDoc:
    return LeaderDoc(doc_id=LEADER_ID, rev="5-x", leader=leader, leader_term=term, running="b", status=RUNNING, turn=9)


@pytest.mark.parametrize(
    "leader, beat, stale, open_because",
    [
        (None, None, {}, "no leader"),
        ("a", Heartbeat(site="a", state=LEFT), {"a": False}, "left"),
        ("a", Heartbeat(site="a", state=WAITING), {"a": True}, "stale"),
        ("a", None, {"a": True}, "stale"),  # its heartbeat doc is gone and was watched long enough
        ("a", Heartbeat(site="a", state=WAITING), {"a": False}, None),
        ("a", Heartbeat(site="a", state=IDLE), {"a": False}, None),
        ("a", Heartbeat(site="a", state=RUNNING), {"a": False}, None),
        ("a", Heartbeat(site="a", state=None), {"a": False}, None),  # bad state: still beating
        ("a", None, {"a": False}, None),  # missing doc not yet watched for long
        ("a", Heartbeat(site="a", state=WAITING), {}, None),  # never observed: not stale yet
        ("a", Heartbeat(site="a", state=WAITING), {"b": True}, None),  # somebody else's staleness
    ],
)
def test_vacancy(leader, beat, stale, open_because) -> None:
    heartbeats = {} if beat is None else {"a": beat}
    why = vacancy(doc(leader), heartbeats, stale)
    if open_because is None:
        assert why is None
    else:
        assert why is not None and open_because in why


def test_vacancy_names_the_leader() -> None:
    why = vacancy(doc("alpha"), {}, {"alpha": True})
    assert why is not None and "alpha" in why


@pytest.mark.parametrize("term", [0, 1, 41])
def test_claim_increments_term_and_keeps_the_turn(term: int) -> None:
    before = doc("a", term)
    after = claim(before, "b", "now")
    assert after.leader == "b"
    assert after.leader_term == term + 1
    assert (after.updated_by, after.updated_at) == ("b", "now")
    assert (after.running, after.status, after.turn, after.rev) == (before.running, before.status, before.turn, before.rev)


def test_claim_on_a_new_doc() -> None:
    after = claim(new_leader_doc(LEADER_ID), "x", "t")
    assert (after.leader, after.leader_term, after.status, after.turn) == ("x", 1, DONE, 0)


def test_resign_only_by_the_leader() -> None:
    d = doc("a", 4)
    assert resign(d, "b", "now") is None
    assert resign(doc(None), "a", "now") is None
    out = resign(d, "a", "now")
    assert out is not None
    assert out.leader is None
    assert out.leader_term == 4, "stepping down does not start a term"
    assert (out.updated_by, out.running, out.turn, out.status) == ("a", "b", 9, RUNNING)
    assert vacancy(out, {}, {}) == "no leader"


@pytest.mark.parametrize("seed", range(20))
@pytest.mark.parametrize("delay", [0.1, 1.0, 60.0])
def test_conflict_wait_within_bounds(seed: int, delay: float) -> None:
    rng = random.Random(seed)
    waits = [conflict_wait(delay, rng) for _ in range(200)]
    assert all(0.5 * delay <= w <= 1.5 * delay for w in waits)
    # Jittered, so two losers do not collide again in lockstep.
    assert len(set(waits)) > 150
    assert min(waits) < 0.7 * delay and max(waits) > 1.3 * delay


def test_conflict_wait_is_deterministic_for_a_seed() -> None:
    assert conflict_wait(2.0, random.Random(7)) == conflict_wait(2.0, random.Random(7))
