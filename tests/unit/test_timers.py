"""Timers: named moments; the next wake-up is the earliest one still ahead."""

from __future__ import annotations

import random

from enqueue.timers import Moments, Timers


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


def test_moments_give_the_earliest_moment_ahead_and_follow_every_change() -> None:
    m = Moments()
    assert m.next_after(0.0) is None
    m.set("a", 5.0)
    m.set("b", 3.0)
    assert m.next_after(0.0) == 3.0
    m.set("b", 7.0)  # b beat: its old moment is gone
    assert m.next_after(0.0) == 5.0
    m.set("a", None)
    assert m.next_after(0.0) == 7.0 and m.get("a") is None
    assert m.next_after(7.0) is None  # a passed moment wakes nobody again
    m.set("b", 7.0)
    assert m.next_after(6.0) is None  # ... not even when set to the same value again
    m.replace({"c": 9.0, "d": None})
    assert m.next_after(0.0) == 9.0 and m.get("b") is None


def test_moments_agree_with_a_walk_over_every_key_and_stay_small() -> None:
    rng = random.Random(7)
    m, plain = Moments(), Timers()
    now = 0.0
    for _ in range(5000):
        key = f"s{rng.randrange(40)}"
        at = None if rng.random() < 0.1 else now + rng.uniform(0.0, 5.0)
        m.set(key, at)
        plain.set(key, at)
        now += rng.uniform(0.0, 0.05)
        expected = plain.next_wake(now, 1e9)
        assert m.next_after(now) == (None if expected == now + 1e9 else expected)
    assert len(m._heap) <= 2 * 40 + 65
