"""The leader's plan: grants, revocations, rotation updates (docs/PROTOCOL.md §3.4)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from enqueue.documents import (
    DONE,
    GRANTED,
    IDLE,
    LEFT,
    RUNNING,
    WAITING,
    Heartbeat,
    LeaderDoc,
    SiteEntry,
    heartbeat_id,
    parse_leader,
    render_leader,
)
from enqueue.scheduler import Plan, grant, plan

LEADER_ID = "enqueue_leader"
ME = "leader-site"
NOW = "2026-01-01 00:00:00"
SITES = ("a", "b", "c", "d")


class World:
    """Registry, heartbeats and verdicts for a plan; every site waiting, alive, registered."""

    def __init__(self, sites=SITES) -> None:
        self.registry = {s: SiteEntry(name=s, heartbeat_doc=heartbeat_id(s)) for s in sites}
        self.heartbeats: dict[str, Heartbeat | None] = {s: Heartbeat(site=s, state=WAITING) for s in sites}
        self.stale = {s: False for s in sites}

    def state(self, site: str, state, repeat: bool = False) -> "World":
        self.heartbeats[site] = Heartbeat(site=site, state=state, repeat=repeat)
        return self

    def drain(self, site: str) -> "World":
        self.registry[site] = replace(self.registry[site], drained=True)
        return self

    def unregister(self, site: str) -> "World":
        del self.registry[site]
        return self

    def make_stale(self, site: str) -> "World":
        self.stale[site] = True
        return self

    def no_heartbeat(self, site: str) -> "World":
        self.heartbeats[site] = None
        return self

    def plan(self, doc: LeaderDoc) -> Plan | None:
        return plan(doc, self.registry, self.heartbeats, self.stale, ME, NOW)


def leader_doc(running=None, status=DONE, turn=10, rotation=(), paused=False, **kw) -> LeaderDoc:
    return LeaderDoc(
        doc_id=LEADER_ID,
        rev="4-x",
        leader=ME,
        leader_term=2,
        running=running,
        status=status,
        turn=turn,
        rotation=tuple(rotation),
        paused=paused,
        **kw,
    )


def check_grant(p: Plan | None, before: LeaderDoc, site: str) -> LeaderDoc:
    assert p is not None
    d = p.doc
    assert p.granted == site
    assert (d.running, d.status, d.turn) == (site, GRANTED, before.turn + 1)
    assert (d.granted_at, d.started_at, d.skip_turn) == (NOW, None, None)
    assert (d.updated_by, d.updated_at) == (ME, NOW)
    assert (d.leader, d.leader_term, d.rev) == (before.leader, before.leader_term, before.rev)
    # What the leader writes parses back to the same thing.
    parsed, problems = parse_leader(render_leader(d), LEADER_ID)
    assert problems == [] and parsed == d
    return d


# ---------------------------------------------------------------- granting


@pytest.mark.parametrize(
    "last, expected",
    [(None, "a"), ("a", "b"), ("b", "c"), ("c", "d"), ("d", "a"), ("zz", "a"), ("bb", "c")],
)
def test_grant_after_last_runner_alphabetically(last, expected) -> None:
    before = leader_doc(running=last, status=DONE)
    d = check_grant(World().plan(before), before, expected)
    assert d.rotation == SITES


@pytest.mark.parametrize(
    "excluded, how, last, expected",
    [
        ("b", "stale", "a", "c"),
        ("b", "drained", "a", "c"),
        ("b", "left", "a", "c"),
        ("b", "idle", "a", "c"),
        ("b", "unregistered", "a", "c"),
        ("b", "no heartbeat", "a", "c"),
        ("a", "drained", "d", "b"),
    ],
)
def test_grant_skips_ineligible(excluded, how, last, expected) -> None:
    w = World()
    {
        "stale": lambda: w.make_stale(excluded),
        "drained": lambda: w.drain(excluded),
        "left": lambda: w.state(excluded, LEFT),
        "idle": lambda: w.state(excluded, IDLE),
        "unregistered": lambda: w.unregister(excluded),
        "no heartbeat": lambda: w.no_heartbeat(excluded),
    }[how]()
    before = leader_doc(running=last)
    d = check_grant(w.plan(before), before, expected)
    assert excluded not in d.rotation


def test_lone_repeating_site_gets_turn_after_turn() -> None:
    w = World(("a",)).state("a", WAITING, repeat=True)
    before = leader_doc(running="a", status=DONE, rotation=("a",))
    check_grant(w.plan(before), before, "a")


def test_nobody_eligible_nothing_granted() -> None:
    w = World(("a", "b")).state("a", IDLE).state("b", LEFT)
    assert w.plan(leader_doc(running="a", rotation=())) is None


@pytest.mark.parametrize("status", [DONE])
def test_nothing_granted_while_paused(status) -> None:
    w = World()
    assert w.plan(leader_doc(running="a", status=status, rotation=SITES, paused=True)) is None
    p = w.plan(leader_doc(running="a", status=status, rotation=("a",), paused=True))
    assert p is not None and p.granted is None
    assert p.doc.status == DONE and p.doc.turn == 10 and p.doc.rotation == SITES


@pytest.mark.parametrize(
    "status, state, repeat, rotation",
    [
        (GRANTED, WAITING, False, SITES),
        (RUNNING, RUNNING, False, ("a", "c", "d")),
        (RUNNING, RUNNING, True, SITES),
    ],
)
def test_active_turn_held_by_healthy_site_is_left_alone(status, state, repeat, rotation) -> None:
    w = World().state("b", state, repeat)
    assert w.plan(leader_doc(running="b", status=status, rotation=rotation)) is None


def test_turn_grows_by_exactly_one_per_grant() -> None:
    w = World()
    doc = leader_doc(running=None, status=DONE, turn=0)
    holders = []
    for _ in range(9):
        p = w.plan(doc)
        assert p is not None and p.granted is not None
        assert p.doc.turn == doc.turn + 1
        holders.append(p.granted)
        doc = replace(p.doc, status=DONE)  # the holder ran and finished
    assert holders == ["a", "b", "c", "d", "a", "b", "c", "d", "a"]
    assert doc.turn == 9


def test_grant_helper() -> None:
    before = leader_doc(running="a", turn=3, skip_turn=3, started_at="s")
    d = grant(before, "b", ("a", "b"), ME, NOW)
    assert (d.turn, d.running, d.status, d.rotation, d.skip_turn, d.started_at) == (4, "b", GRANTED, ("a", "b"), None, None)


# ---------------------------------------------------------------- rotation updates


def test_rotation_updated_only_when_it_differs() -> None:
    w = World().state("b", RUNNING, repeat=True)
    doc = leader_doc(running="b", status=RUNNING, rotation=("a", "c"))
    p = w.plan(doc)
    assert p is not None and p.reason == "updated rotation"
    assert p.doc.rotation == SITES
    assert (p.doc.turn, p.doc.status, p.doc.running) == (doc.turn, RUNNING, "b")
    assert p.granted is None and p.revoked_site is None
    assert w.plan(p.doc) is None


def test_rotation_drops_a_drained_runner() -> None:
    w = World().state("b", RUNNING, repeat=True).drain("b")
    p = w.plan(leader_doc(running="b", status=RUNNING, rotation=SITES))
    assert p is not None and p.doc.rotation == ("a", "c", "d")
    assert p.doc.status == RUNNING and p.revoked_site is None


# ---------------------------------------------------------------- a granted turn whose holder is gone


@pytest.mark.parametrize(
    "how, why",
    [
        ("stale", "stale"),
        ("left", "left"),
        ("no heartbeat", "left"),
        ("drained", "drained"),
        ("unregistered", "not registered"),
        ("idle", "no longer wants"),
        ("running once", "no longer wants"),
        ("never observed", "stale"),
    ],
)
def test_granted_turn_regranted_at_once(how, why) -> None:
    w = World()
    if how == "stale":
        w.make_stale("b")
    elif how == "left":
        w.state("b", LEFT)
    elif how == "no heartbeat":
        w.no_heartbeat("b")
    elif how == "drained":
        w.drain("b")
    elif how == "unregistered":
        w.unregister("b")
    elif how == "idle":
        w.state("b", IDLE)
    elif how == "running once":
        w.state("b", RUNNING, repeat=False)
    elif how == "never observed":
        del w.stale["b"]
    before = leader_doc(running="b", status=GRANTED, turn=10, rotation=SITES)
    p = w.plan(before)
    d = check_grant(p, before, "c")
    assert d.turn == 11
    assert p.revoked_site == "b" and p.revoked_turn == 10 and p.revoked_may_have_run is False
    assert d.last_how == "not started" and d.ended_at == NOW
    assert why in p.reason
    assert "b" not in d.rotation


def test_granted_turn_of_gone_holder_while_paused_is_ended_without_grant() -> None:
    w = World().state("b", LEFT)
    p = w.plan(leader_doc(running="b", status=GRANTED, rotation=SITES, paused=True))
    assert p is not None and p.granted is None
    assert (p.doc.status, p.doc.turn, p.doc.running) == (DONE, 10, "b")
    assert p.revoked_site == "b" and not p.revoked_may_have_run


# ---------------------------------------------------------------- a running turn


@pytest.mark.parametrize(
    "how",
    ["left", "drained", "unregistered", "idle", "running once", "no heartbeat", "never observed"],
)
def test_running_turn_not_revoked_without_observed_silence(how) -> None:
    """Only silence proves the command is gone; saying 'left' or being drained does not."""
    w = World().state("b", RUNNING)
    if how == "left":
        w.state("b", LEFT)
    elif how == "drained":
        w.drain("b")
    elif how == "unregistered":
        w.unregister("b")
        del w.stale["b"]  # a leader that watches the registry only has no verdict for it
    elif how == "idle":
        w.state("b", IDLE)
    elif how == "no heartbeat":
        w.no_heartbeat("b")
    elif how == "never observed":
        del w.stale["b"]
    doc = leader_doc(running="b", status=RUNNING, rotation=w.plan(leader_doc(running="z")).doc.rotation)
    p = w.plan(doc)
    if p is not None:
        assert p.reason == "updated rotation"
        assert (p.doc.running, p.doc.status, p.doc.turn) == ("b", RUNNING, 10)
        assert p.revoked_site is None


@pytest.mark.parametrize("paused", [False, True])
def test_stale_runner_is_revoked(paused: bool) -> None:
    w = World().state("b", RUNNING).make_stale("b")
    before = leader_doc(running="b", status=RUNNING, turn=10, rotation=SITES, paused=paused, last_exit_code=4)
    p = w.plan(before)
    assert p is not None
    assert p.revoked_site == "b" and p.revoked_turn == 10 and p.revoked_may_have_run is True
    assert "stale" in p.reason
    if paused:
        assert p.granted is None
        assert (p.doc.status, p.doc.turn, p.doc.running) == (DONE, 10, "b")
        assert p.doc.last_how == "revoked" and p.doc.last_exit_code is None
        assert p.doc.rotation == ("a", "c", "d")
    else:
        d = check_grant(p, before, "c")
        assert d.turn == 11 and d.last_how == "revoked" and d.last_exit_code is None


def test_stale_runner_with_nobody_waiting() -> None:
    w = World(("a", "b")).state("a", IDLE).state("b", RUNNING, repeat=True).make_stale("b")
    p = w.plan(leader_doc(running="b", status=RUNNING, rotation=("b",)))
    assert p is not None and p.granted is None and p.revoked_may_have_run
    assert (p.doc.status, p.doc.turn, p.doc.rotation) == (DONE, 10, ())
    # Next round: nothing more to do.
    assert w.plan(p.doc) is None


def test_stale_lone_runner_is_not_regranted_to_itself() -> None:
    w = World(("b",)).state("b", RUNNING, repeat=True).make_stale("b")
    p = w.plan(leader_doc(running="b", status=RUNNING, rotation=("b",)))
    assert p is not None and p.granted is None and p.doc.status == DONE


def test_revocation_order_continues_after_the_revoked_site() -> None:
    w = World().state("d", RUNNING).make_stale("d")
    before = leader_doc(running="d", status=RUNNING, rotation=SITES)
    check_grant(w.plan(before), before, "a")


# ---------------------------------------------------------------- a grant that names its agent (PROTOCOL §3.5.7)


def _named(world: World, site: str, instance: str, **fields) -> World:
    world.heartbeats[site] = Heartbeat(site=site, instance=instance, **fields)
    return world


def test_a_grant_names_the_instance_whose_heartbeat_the_leader_holds() -> None:
    w = _named(World(), "c", "c-7", state=WAITING)
    p = w.plan(leader_doc(running="b", status=DONE, rotation=SITES))
    assert p is not None and p.granted == "c" and p.doc.grantee == "c-7"
    # Without a heartbeat the grant names nobody: the grantee must confirm it.
    assert grant(leader_doc(status=DONE), "b", SITES, ME, NOW).grantee is None


@pytest.mark.parametrize("how", ["left", "drained", "unregistered", "idle", "no heartbeat", "never observed",
                                 "another agent of the site says idle"])
def test_a_named_grant_is_not_taken_back_without_silence_unless_its_agent_declines(how) -> None:
    """A named grant may have started on the grant alone: as a running turn, only silence takes it back."""
    w = _named(World(), "b", "b-1", state=WAITING)
    if how == "left":
        _named(w, "b", "b-2", state=LEFT)  # another agent of the site: b-1 may still run the turn
    elif how == "drained":
        w.drain("b")
    elif how == "unregistered":
        w.unregister("b")
        del w.stale["b"]
    elif how == "idle":
        _named(w, "b", "b-2", state=IDLE)
    elif how == "no heartbeat":
        w.no_heartbeat("b")
    elif how == "never observed":
        del w.stale["b"]
    elif how == "another agent of the site says idle":
        _named(w, "b", "b-9", state=IDLE, turn=None)
    doc = replace(leader_doc(running="b", status=GRANTED, turn=10), grantee="b-1")
    p = w.plan(replace(doc, rotation=w.plan(leader_doc(running="z")).doc.rotation))
    assert p is None or (p.reason == "updated rotation" and p.revoked_site is None), p


def test_a_named_grant_of_a_stale_holder_is_taken_back_as_a_running_turn() -> None:
    w = _named(World(), "b", "b-1", state=WAITING).make_stale("b")
    before = replace(leader_doc(running="b", status=GRANTED, turn=10, rotation=SITES), grantee="b-1")
    p = w.plan(before)
    d = check_grant(p, before, "c")
    assert p.revoked_may_have_run is True and d.last_how == "revoked"


@pytest.mark.parametrize("state, repeat, turn, declined", [
    (IDLE, False, None, True),
    (LEFT, False, None, True),
    (RUNNING, False, 10, False),  # it runs this very turn, started on the grant
    (RUNNING, True, 10, False),
    (WAITING, False, None, False),
])
def test_a_named_grant_goes_back_at_once_when_that_agent_wants_no_turn_and_runs_none(state, repeat, turn,
                                                                                   declined) -> None:
    w = _named(World(), "b", "b-1", state=state, repeat=repeat, turn=turn)
    before = replace(leader_doc(running="b", status=GRANTED, turn=10, rotation=SITES), grantee="b-1")
    p = w.plan(before)
    if declined:
        d = check_grant(p, before, "c")
        assert p.revoked_may_have_run is False and d.last_how == "not started"
        assert p.reread_first, "the word it rests on is read again first: a view may hold an older beat"
    else:
        assert p is None or p.revoked_site is None, p
