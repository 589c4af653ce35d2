"""Document ids: turn record ids sort by turn number and never grow wider; every document set has its own ids."""

from __future__ import annotations

import itertools

import pytest

from enqueue.config import DEFAULT_LEADER_DOC
from enqueue.documents.ids import (
    HEARTBEAT_PREFIX,
    MAX_TURN,
    TURN_PREFIX,
    heartbeat_id,
    heartbeat_prefix,
    heartbeat_site,
    turn_prefix,
    turn_record_id,
)
from enqueue.set_names import set_name_problem

#: Leader doc names of sets that may share one database (each one ``set_name_problem`` lets through).
SET_NAMES = (DEFAULT_LEADER_DOC, "test_leader", "test", "enqueue", "enqueue_leader2", "a:b", "a", "a:heart",
             "a:heartbeats", "a:turnip:b", "enqueue_heart", "enqueue_turnstile", "enqueue_heartbeats", "prod.leader",
             "x:tur", "heartbeat", "turn", ":heart", "a::b")


def test_turn_record_ids_sort_by_number() -> None:
    turns = [1, 2, 9, 10, 11, 99, 100, 101, 999, 1000, 123456, 9_999_999_999]
    ids = [turn_record_id(t) for t in turns]
    assert sorted(ids) == ids
    assert sorted(reversed(ids)) == ids
    assert all(i.startswith(TURN_PREFIX) for i in ids)
    assert len(set(ids)) == len(ids)
    assert len({len(i) for i in ids}) == 1  # one width


@pytest.mark.parametrize("turn", [MAX_TURN + 1, 12_345_678_901, -1])
def test_a_turn_beyond_the_id_width_is_refused_not_printed_wider(turn: int) -> None:
    with pytest.raises(ValueError, match="10 digits"):
        turn_record_id(turn)


def test_the_default_sets_heartbeat_ids_are_as_they_always_were() -> None:
    assert heartbeat_prefix() == heartbeat_prefix(DEFAULT_LEADER_DOC) == HEARTBEAT_PREFIX == "enqueue_heartbeat:"
    assert heartbeat_id("bravo") == heartbeat_id("bravo", DEFAULT_LEADER_DOC) == "enqueue_heartbeat:bravo"
    assert heartbeat_site("enqueue_heartbeat:bravo") == "bravo"


def test_another_set_has_heartbeat_ids_of_its_own() -> None:
    assert heartbeat_id("bravo", "test_leader") == "test_leader:heartbeat:bravo"
    assert heartbeat_site("test_leader:heartbeat:bravo", "test_leader") == "bravo"
    assert heartbeat_site("test_leader:heartbeat:bravo") is None
    assert heartbeat_site("enqueue_heartbeat:bravo", "test_leader") is None


def test_no_sets_prefix_starts_another_sets() -> None:
    """Neither heartbeat nor record prefixes: a listing by prefix never takes in another set's documents."""
    assert [name for name in SET_NAMES if set_name_problem(name)] == []
    prefixes = [(name, kind(name)) for name in SET_NAMES for kind in (heartbeat_prefix, turn_prefix)]
    assert len({p for _, p in prefixes}) == len(prefixes)
    overlapping = [(a, b) for a, b in itertools.permutations(prefixes, 2) if b[1].startswith(a[1])]
    assert overlapping == []


def test_a_site_name_never_holds_the_colon_that_would_make_a_heartbeat_id_ambiguous() -> None:
    assert heartbeat_site("a:heartbeat:heartbeat:bravo", "a") is None
    assert heartbeat_site("a:heartbeat:", "a") is None
