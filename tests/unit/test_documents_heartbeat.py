"""Heartbeat docs: tolerant parsing, what a site wants, the lease it announces."""

from __future__ import annotations

import pytest

from enqueue.documents.heartbeat import (LEFT_MAX_WAIT, LEFT_STOPPED, LEFT_TURN_DONE, Heartbeat, parse_heartbeat,
                                         render_heartbeat)
from enqueue.documents.ids import IDLE, LEFT, RUNNING, WAITING, heartbeat_id
from tests.support.documents import stored

HEARTBEATS = [
    Heartbeat(site="alpha"),
    Heartbeat(
        site="alpha",
        state=WAITING,
        repeat=True,
        host="h1.example",
        pid=1234,
        instance="abc",
        beat=17,
        time="2026-01-01 00:00:00",
        turn=4,
        message="hello",
        rev="3-h",
        heartbeat_delay_s=600.0,
        heartbeat_stale_s=1800.0,
    ),
    Heartbeat(site="b.site", state=LEFT, beat=0, rev="1-a"),
    Heartbeat(site="c", state=RUNNING, repeat=False, turn=9, pid=1),
]


@pytest.mark.parametrize("hb", HEARTBEATS, ids=range(len(HEARTBEATS)))
def test_heartbeat_round_trip(hb: Heartbeat) -> None:
    body = stored(render_heartbeat(hb))
    assert body["_id"] == heartbeat_id(hb.site)
    parsed, problems = parse_heartbeat(body, hb.site)
    assert problems == []
    assert parsed == hb


def test_heartbeat_extra_fields_are_written() -> None:
    body = render_heartbeat(Heartbeat(site="a", state=IDLE), {"last_exit_code": 3})
    assert body["last_exit_code"] == 3
    parsed, problems = parse_heartbeat(body, "a")
    assert problems == [] and parsed is not None and parsed.state == IDLE


@pytest.mark.parametrize(
    "state, repeat, wants",
    [
        (WAITING, False, True),
        (WAITING, True, True),
        (RUNNING, True, True),
        (RUNNING, False, False),
        (IDLE, True, False),
        (LEFT, True, False),
        (None, True, False),
    ],
)
def test_heartbeat_wants_turn(state, repeat: bool, wants: bool) -> None:
    assert Heartbeat(site="a", state=state, repeat=repeat).wants_turn is wants


@pytest.mark.parametrize("state", ["maybe", "WAITING", 3, ["waiting"], True, ""])
def test_heartbeat_with_bad_state_wants_no_turn(state) -> None:
    hb, problems = parse_heartbeat({"state": state, "repeat": True, "beat": 5}, "alpha")
    assert hb is not None
    assert hb.state is None
    assert not hb.wants_turn
    assert any("'state'" in p for p in problems)
    assert hb.beat == 5


@pytest.mark.parametrize(
    "field, bad, attr, default",
    [
        ("repeat", "yes", "repeat", False),
        ("pid", "1234", "pid", None),
        ("pid", -1, "pid", None),
        ("beat", "x", "beat", 0),
        ("turn", 1.5, "turn", None),
        ("host", 5, "host", None),
        ("heartbeat_stale_s", "30", "heartbeat_stale_s", None),
        ("heartbeat_stale_s", 0, "heartbeat_stale_s", None),
        ("heartbeat_stale_s", -5.0, "heartbeat_stale_s", None),
        ("heartbeat_stale_s", True, "heartbeat_stale_s", None),
        ("heartbeat_delay_s", float("inf"), "heartbeat_delay_s", None),
    ],
)
def test_heartbeat_bad_optional_fields_fall_back(field: str, bad, attr: str, default) -> None:
    hb, problems = parse_heartbeat({"state": WAITING, field: bad}, "alpha")
    assert hb is not None
    assert getattr(hb, attr) == default
    assert hb.state == WAITING
    assert any(f"'{field}'" in p for p in problems)


@pytest.mark.parametrize(
    "delay_s, stale_s, lease_s",
    [(600.0, 1800.0, 1200.0), (0.5, 2.0, 1.5), (None, 2.0, None), (0.5, None, None)],
)
def test_heartbeat_lease_is_stale_minus_delay_when_both_are_announced(delay_s, stale_s, lease_s) -> None:
    hb, problems = parse_heartbeat({"state": WAITING, "heartbeat_delay_s": delay_s, "heartbeat_stale_s": stale_s}, "a")
    assert problems == [] and hb is not None
    assert hb.lease_s == lease_s


def test_heartbeat_not_an_object_and_absent() -> None:
    assert parse_heartbeat(["x"], "a") == (None, ["document is not an object"])
    assert parse_heartbeat(None, "a") == (None, [])


def test_heartbeat_repeat_with_bad_type_makes_a_runner_want_nothing() -> None:
    hb, _ = parse_heartbeat({"state": RUNNING, "repeat": "true"}, "a")
    assert hb is not None and not hb.wants_turn


@pytest.mark.parametrize("why", [LEFT_TURN_DONE, LEFT_MAX_WAIT, LEFT_STOPPED])
def test_heartbeat_says_why_its_agent_left_and_renders_it_back(why) -> None:
    hb = Heartbeat("a", state=LEFT, left_because=why, rev="1-x")
    assert parse_heartbeat(render_heartbeat(hb), "a") == (hb, [])


def test_heartbeat_without_or_with_a_garbled_reason_to_leave() -> None:
    hb, problems = parse_heartbeat({"state": LEFT}, "a")
    assert problems == [] and hb is not None and hb.left_because is None
    assert "left_because" not in render_heartbeat(hb)
    hb, problems = parse_heartbeat({"state": LEFT, "left_because": "bored"}, "a")
    assert hb is not None and hb.left_because is None and "left_because" in problems[0]
