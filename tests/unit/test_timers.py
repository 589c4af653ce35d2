"""Timers: named moments; the next wake-up is the earliest one still ahead."""

from __future__ import annotations

from enqueue.timers import Timers


def test_the_next_wake_is_the_earliest_moment_ahead_within_the_horizon() -> None:
    t = Timers()
    assert t.next_wake(10.0, 60.0) == 70.0
    t.set("heartbeat", 12.0)
    t.set("retry", 11.0)
    assert t.next_wake(10.0, 60.0) == 11.0
    assert t.next_wake(10.0, 0.5) == 10.5


def test_a_passed_moment_wakes_nobody_again() -> None:
    t = Timers()
    t.set("campaign", 5.0)
    t.set("heartbeat", 12.0)
    assert t.due("campaign", 10.0) and not t.pending("campaign", 10.0)
    assert t.next_wake(10.0, 60.0) == 12.0


def test_none_clears_and_a_group_is_replaced_whole() -> None:
    t = Timers()
    t.set("repair", 3.0)
    t.set("repair", None)
    assert t.get("repair") is None
    t.replace_group("stale ", {"a": 4.0, "b": 5.0})
    t.replace_group("stale ", {"b": 6.0, "c": None})
    assert dict(t.items()) == {"stale b": 6.0}
