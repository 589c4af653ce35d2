"""Rotation: alphabetical turns among eligible sites (docs/PROTOCOL.md §3.4)."""

from __future__ import annotations

import pytest

from enqueue.documents import IDLE, LEFT, RUNNING, WAITING, Heartbeat, SiteEntry, heartbeat_id
from enqueue.rotation import eligible_sites, next_after, rotation_after_finish, successor


@pytest.mark.parametrize(
    "last, eligible, expected",
    [
        (None, ["b", "a", "c"], "a"),
        ("a", ["a", "b", "c"], "b"),
        ("b", ["a", "b", "c"], "c"),
        ("c", ["a", "b", "c"], "a"),  # wraps around
        ("z", ["a", "b", "c"], "a"),  # last runner no longer listed
        ("bb", ["a", "b", "c"], "c"),
        ("0", ["a", "b"], "a"),
        ("a", ["a"], "a"),  # sole site: itself
        ("b", ["a"], "a"),
        ("a", ["c", "c", "b"], "b"),  # duplicates do not matter
        ("a", [], None),
        (None, [], None),
        ("B", ["a", "C"], "C"),  # plain code-point order: "C" < "a"
        ("D", ["a", "C"], "a"),
    ],
)
def test_next_after(last, eligible, expected) -> None:
    assert next_after(last, eligible) == expected


def test_next_after_takes_any_iterable() -> None:
    assert next_after("a", iter(("c", "b"))) == "b"
    assert next_after("a", {"c", "b"}) == "b"


def test_next_after_last_comes_last() -> None:
    sites = ["a", "b", "c", "d"]
    seen, last = [], "b"
    for _ in range(8):
        last = next_after(last, sites)
        seen.append(last)
    assert seen == ["c", "d", "a", "b", "c", "d", "a", "b"]


def entry(name: str, drained: bool = False) -> SiteEntry:
    return SiteEntry(name=name, heartbeat_doc=heartbeat_id(name), drained=drained)


def hb(name: str, state, repeat: bool = False) -> Heartbeat:
    return Heartbeat(site=name, state=state, repeat=repeat)


@pytest.mark.parametrize(
    "case, registered, beat, stale, drained, eligible",
    [
        ("waiting", True, hb("x", WAITING), False, False, True),
        ("waiting, repeat", True, hb("x", WAITING, True), False, False, True),
        ("running + repeat", True, hb("x", RUNNING, True), False, False, True),
        ("running once", True, hb("x", RUNNING, False), False, False, False),
        ("idle", True, hb("x", IDLE, True), False, False, False),
        ("left", True, hb("x", LEFT, True), False, False, False),
        ("bad state", True, hb("x", None, True), False, False, False),
        ("stale", True, hb("x", WAITING), True, False, False),
        ("never observed", True, hb("x", WAITING), None, False, False),
        ("drained", True, hb("x", WAITING), False, True, False),
        ("no heartbeat doc", True, None, False, False, False),
        ("not registered", False, hb("x", WAITING), False, False, False),
    ],
)
def test_eligibility(case, registered, beat, stale, drained, eligible) -> None:
    registry = {"a": entry("a")}
    heartbeats = {"a": hb("a", WAITING), "x": beat}
    verdicts = {"a": False}
    if registered:
        registry["x"] = entry("x", drained)
    if stale is not None:
        verdicts["x"] = stale
    got = eligible_sites(registry, heartbeats, verdicts)
    assert got == (("a", "x") if eligible else ("a",)), case


def test_eligible_sites_sorted() -> None:
    names = ["delta", "alpha", "charlie", "bravo"]
    registry = {n: entry(n) for n in names}
    heartbeats = {n: hb(n, WAITING) for n in names}
    assert eligible_sites(registry, heartbeats, {n: False for n in names}) == ("alpha", "bravo", "charlie", "delta")
    assert eligible_sites({}, heartbeats, {n: False for n in names}) == ()


@pytest.mark.parametrize(
    "me, rotation, repeat, after, nxt",
    [
        ("b", ("a", "b", "c"), False, ("a", "c"), "c"),
        ("b", ("a", "b", "c"), True, ("a", "b", "c"), "c"),
        ("c", ("a", "b", "c"), False, ("a", "b"), "a"),
        ("c", ("a", "b", "c"), True, ("a", "b", "c"), "a"),
        ("a", ("a",), True, ("a",), "a"),  # a lone repeating site goes again
        ("a", ("a",), False, (), None),  # a lone site that runs once: nobody
        ("a", (), False, (), None),
        ("b", ("a", "c"), False, ("a", "c"), "c"),  # I was not in it: others keep their order
    ],
)
def test_finish_rotation_and_successor(me, rotation, repeat, after, nxt) -> None:
    assert rotation_after_finish(me, rotation, repeat) == after
    assert successor(me, rotation, repeat) == nxt


@pytest.mark.parametrize(
    "me, rotation, nxt",
    [
        ("a", (), None),  # the leader found nobody eligible: not even me
        ("b", ("a", "c"), "c"),  # drained or unregistered by the leader: I do not put myself back
        ("c", ("a",), "a"),
    ],
)
def test_repeating_site_left_out_by_the_leader_stays_out(me, rotation, nxt) -> None:
    """The leader decides who is in the rotation: --repeat keeps me in, it does not add me."""
    assert me not in rotation_after_finish(me, rotation, True)
    assert successor(me, rotation, True) == nxt
