"""A site's own turn: confirm, finish with fast-path handoff, notice losing it (docs/PROTOCOL.md §3.5, §3.8)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from enqueue.documents import (
    DONE,
    GRANTED,
    RUNNING,
    WAITING,
    Heartbeat,
    LeaderDoc,
    SiteEntry,
    heartbeat_id,
    parse_leader,
    render_leader,
)
from enqueue.scheduler import plan
from enqueue.turns import confirm, finish, granted_to_me, hand_leadership, holds_running, lost_reason, still_mine

LEADER_ID = "enqueue_leader"


def leader_doc(running="b", status=GRANTED, turn=7, rotation=("a", "b", "c"), **kw) -> LeaderDoc:
    return LeaderDoc(
        doc_id=LEADER_ID,
        rev="3-r",
        leader="a",
        leader_term=2,
        running=running,
        status=status,
        turn=turn,
        rotation=tuple(rotation),
        **kw,
    )


@pytest.mark.parametrize(
    "doc, me, expected",
    [
        (leader_doc(), "b", True),
        (leader_doc(), "a", False),
        (leader_doc(status=RUNNING), "b", False),
        (leader_doc(status=DONE), "b", False),
        (None, "b", False),
    ],
)
def test_granted_to_me(doc, me, expected) -> None:
    assert granted_to_me(doc, me) is expected


@pytest.mark.parametrize(
    "doc, me, expected",
    [
        (leader_doc(status=RUNNING), "b", True),
        (leader_doc(status=RUNNING), "a", False),
        (leader_doc(), "b", False),  # granted, not running yet
        (leader_doc(status=DONE), "b", False),
        (None, "b", False),
    ],
)
def test_holds_running(doc, me, expected) -> None:
    assert holds_running(doc, me) is expected


def test_confirm() -> None:
    before = leader_doc()
    after = confirm(before, "b", "t1")
    assert (after.status, after.running, after.turn, after.started_at) == (RUNNING, "b", 7, "t1")
    assert (after.updated_by, after.updated_at) == ("b", "t1")
    assert after.rev == before.rev, "a confirm is a CAS on the revision read"
    assert (after.leader, after.leader_term, after.rotation) == (before.leader, before.leader_term, before.rotation)
    assert still_mine(after, "b", 7)
    assert lost_reason(after, "b", 7) is None


@pytest.mark.parametrize("doc", [leader_doc(running="c"), leader_doc(status=RUNNING), leader_doc(status=DONE)])
def test_confirm_refuses_a_turn_that_is_not_granted_to_me(doc) -> None:
    with pytest.raises(AssertionError):
        confirm(doc, "b", "t")


@pytest.mark.parametrize(
    "me, rotation, repeat, nxt, rotation_after",
    [
        ("b", ("a", "b", "c"), False, "c", ("a", "c")),
        ("b", ("a", "b", "c"), True, "c", ("a", "b", "c")),
        ("c", ("a", "b", "c"), False, "a", ("a", "b")),
        ("c", ("a", "b", "c"), True, "a", ("a", "b", "c")),
        ("c", ("c",), True, "c", ("c",)),  # a lone repeating site passes to itself
        ("b", ("a", "c"), False, "c", ("a", "c")),
    ],
)
def test_finish_passes_along_the_rotation(me, rotation, repeat, nxt, rotation_after) -> None:
    before = leader_doc(running=me, status=RUNNING, turn=7, rotation=rotation, skip_turn=7)
    after, to = finish(before, me, 0, "exited", repeat, "t2")
    assert to == nxt
    assert (after.running, after.status, after.turn) == (nxt, GRANTED, 8)
    assert after.rotation == rotation_after
    assert (after.last_exit_code, after.last_how, after.ended_at) == (0, "exited", "t2")
    assert (after.granted_at, after.started_at, after.skip_turn) == ("t2", None, None)
    assert after.rev == before.rev, "the handoff is the same CAS as marking the turn done"
    assert (after.leader, after.leader_term) == (before.leader, before.leader_term)
    parsed, problems = parse_leader(render_leader(after), LEADER_ID)
    assert problems == [] and parsed == after
    assert lost_reason(after, me, 7) == "revoked"
    assert granted_to_me(after, nxt)


@pytest.mark.parametrize(
    "rotation, repeat, paused",
    [
        (("a", "b", "c"), False, True),
        (("a", "b", "c"), True, True),
        (("b",), False, False),  # only me and I run once
        ((), False, False),
        ((), True, False),  # the leader left everyone out, me included
    ],
)
def test_finish_without_handoff(rotation, repeat, paused) -> None:
    before = leader_doc(running="b", status=RUNNING, turn=7, rotation=rotation, paused=paused)
    after, to = finish(before, "b", 3, "exited", repeat, "t2")
    assert to is None
    assert (after.running, after.status, after.turn) == ("b", DONE, 7)
    assert (after.last_exit_code, after.last_how) == (3, "exited")
    assert after.paused == paused


def test_finish_with_no_exit_code() -> None:
    after, _ = finish(leader_doc(status=RUNNING), "b", None, "stopped", False, "t")
    assert after.last_exit_code is None and after.last_how == "stopped"


def test_drained_repeating_runner_does_not_pass_the_turn_to_itself() -> None:
    """A lone site drained while it runs: the leader drops it from the rotation, and the
    fast path must not give it turn after turn (its confirm would race the leader's revocation)."""
    registry = {"b": SiteEntry(name="b", heartbeat_doc=heartbeat_id("b"), drained=True)}
    heartbeats = {"b": Heartbeat(site="b", state=RUNNING, repeat=True)}
    running = leader_doc(running="b", status=RUNNING, rotation=("b",))
    p = plan(running, registry, heartbeats, {"b": False}, "a", "t")
    assert p is not None and p.doc.rotation == () and p.doc.status == RUNNING
    after, to = finish(p.doc, "b", 0, "exited", True, "t2")
    assert to is None
    assert after.status == DONE


@pytest.mark.parametrize(
    "doc, me, turn, reason",
    [
        (leader_doc(status=RUNNING), "b", 7, None),
        (leader_doc(status=RUNNING, skip_turn=6), "b", 7, None),
        (leader_doc(status=RUNNING, skip_turn=7), "b", 7, "skipped"),
        (leader_doc(status=RUNNING, running="c"), "b", 7, "revoked"),
        (leader_doc(status=RUNNING, turn=8), "b", 7, "revoked"),  # a later turn, even mine
        (leader_doc(status=GRANTED, turn=8), "b", 7, "revoked"),
        (leader_doc(status=GRANTED, turn=7), "b", 7, "revoked"),
        (leader_doc(status=DONE), "b", 7, "revoked"),
        (None, "b", 7, "revoked"),  # a leader doc that does not parse vouches for nobody
    ],
)
def test_lost_reason(doc, me, turn, reason) -> None:
    assert lost_reason(doc, me, turn) == reason


@pytest.mark.parametrize(
    "doc, expected",
    [
        (leader_doc(status=RUNNING), True),
        (leader_doc(status=RUNNING, skip_turn=7), True),  # skipped: still mine to mark done
        (leader_doc(status=GRANTED), False),
        (leader_doc(status=DONE), False),
        (leader_doc(status=RUNNING, turn=8), False),
        (leader_doc(status=RUNNING, running="c"), False),
        (None, False),
    ],
)
def test_still_mine(doc, expected) -> None:
    assert still_mine(doc, "b", 7) is expected


def test_full_cycle_grant_confirm_finish_grant() -> None:
    sites = ("a", "b", "c")
    registry = {s: SiteEntry(name=s, heartbeat_doc=heartbeat_id(s)) for s in sites}
    heartbeats = {s: Heartbeat(site=s, state=WAITING, repeat=True) for s in sites}
    stale = {s: False for s in sites}
    doc = LeaderDoc(doc_id=LEADER_ID, leader="a", leader_term=1, status=DONE)
    p = plan(doc, registry, heartbeats, stale, "a", "t")
    assert p is not None and p.granted == "a"
    doc = p.doc
    order = []
    for _ in range(7):
        me = doc.running
        order.append((me, doc.turn))
        doc = confirm(doc, me, "t")
        assert plan(doc, registry, heartbeats, stale, "a", "t") is None
        doc, nxt = finish(doc, me, 0, "exited", True, "t")
        assert plan(doc, registry, heartbeats, stale, "a", "t") is None, "the leader has nothing to add"
    assert order == [("a", 1), ("b", 2), ("c", 3), ("a", 4), ("b", 5), ("c", 6), ("a", 7)]


# --- a leaving leader hands its leadership on in the write that ends its turn (docs/PROTOCOL.md §3.3.5)


def led_by(me: str, status=RUNNING, **kw) -> LeaderDoc:
    return replace(leader_doc(running=me, status=status, **kw), leader=me)


def test_a_leaving_leader_hands_the_leadership_to_the_site_it_grants_the_next_turn() -> None:
    new, nxt = finish(led_by("a"), "a", 0, "exited", False, "t", heirs=("b", "c"))
    assert (nxt, new.running, new.status) == ("b", "b", GRANTED)
    assert (new.leader, new.leader_term) == ("b", 3)


def test_the_heir_is_the_next_eligible_site_when_the_grantee_is_not_seen_alive_and_waiting() -> None:
    new, nxt = finish(led_by("a"), "a", 0, "exited", False, "t", heirs=("a", "c"))
    assert nxt == "b"
    assert (new.leader, new.leader_term) == ("c", 3)


def test_a_paused_leader_still_hands_the_leadership_on() -> None:
    new, nxt = finish(led_by("b", paused=True), "b", 0, "exited", False, "t", heirs=("a", "c"))
    assert nxt is None and new.status == DONE
    assert (new.leader, new.leader_term) == ("c", 3)


@pytest.mark.parametrize("heirs", [(), ("a",)])
def test_without_an_heir_the_leader_keeps_the_leadership_for_its_step_down(heirs) -> None:
    new, _ = finish(led_by("a"), "a", 0, "exited", False, "t", heirs=heirs)
    assert (new.leader, new.leader_term) == ("a", 2)


def test_a_site_that_does_not_lead_hands_nothing_on() -> None:
    new, _ = finish(leader_doc(running="b", status=RUNNING), "b", 0, "exited", False, "t", heirs=("c",))
    assert (new.leader, new.leader_term) == ("a", 2)


def test_hand_leadership_keeps_every_turn_field() -> None:
    doc = led_by("a", status=DONE)
    handed = hand_leadership(doc, "a", None, ("c",))
    assert replace(handed, leader="a", leader_term=2) == doc
