"""Liveness: observed staleness on this host's monotonic clock, never another host's."""

from __future__ import annotations

import datetime as dt
import inspect

import pytest

from enqueue.clock import FakeClock
from enqueue.documents import RUNNING, WAITING, Heartbeat, LeaderDoc, parse_heartbeat, render_heartbeat
from enqueue.liveness import Liveness, followed_sites, read_sites, silence_to_revoke_s

STALE = 30.0


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def live() -> Liveness:
    return Liveness(STALE)


@pytest.mark.parametrize("stale_s", [0, -1, -0.5])
def test_stale_must_be_positive(stale_s: float) -> None:
    with pytest.raises(ValueError):
        Liveness(stale_s)


def test_never_observed_is_not_stale(clock: FakeClock, live: Liveness) -> None:
    assert not live.is_stale("a", clock.monotonic())
    assert live.age("a", clock.monotonic()) is None
    assert live.stale_at("a") is None
    assert live.rev("a") is None


@pytest.mark.parametrize(
    "wait, stale",
    [(0.0, False), (1.0, False), (STALE - 0.001, False), (STALE, True), (STALE + 0.001, True), (10 * STALE, True)],
)
def test_first_sighting_gets_a_full_stale_period(clock: FakeClock, live: Liveness, wait: float, stale: bool) -> None:
    assert live.observe("a", "1-x", clock.monotonic()) is True
    clock.advance(wait)
    assert live.is_stale("a", clock.monotonic()) is stale
    assert live.age("a", clock.monotonic()) == pytest.approx(wait)


def test_new_revision_resets(clock: FakeClock, live: Liveness) -> None:
    live.observe("a", "1-x", clock.monotonic())
    clock.advance(STALE - 1)
    assert live.observe("a", "2-y", clock.monotonic()) is True
    clock.advance(STALE - 1)
    assert not live.is_stale("a", clock.monotonic())
    assert live.stale_at("a") == pytest.approx(clock.monotonic() + 1)
    clock.advance(1)
    assert live.is_stale("a", clock.monotonic())


def test_same_revision_does_not_reset(clock: FakeClock, live: Liveness) -> None:
    live.observe("a", "1-x", clock.monotonic())
    first_stale_at = live.stale_at("a")
    for _ in range(5):
        clock.advance(STALE / 5)
        assert live.observe("a", "1-x", clock.monotonic()) is False
    assert live.stale_at("a") == first_stale_at
    assert live.is_stale("a", clock.monotonic())


def test_stale_site_comes_back_on_a_new_revision(clock: FakeClock, live: Liveness) -> None:
    live.observe("a", "1-x", clock.monotonic())
    clock.advance(STALE * 3)
    assert live.is_stale("a", clock.monotonic())
    live.observe("a", "2-x", clock.monotonic())
    assert not live.is_stale("a", clock.monotonic())
    assert live.rev("a") == "2-x"


def test_missing_document_goes_stale_after_a_full_period(clock: FakeClock, live: Liveness) -> None:
    assert live.observe("a", None, clock.monotonic()) is True
    clock.advance(STALE - 0.5)
    assert live.observe("a", None, clock.monotonic()) is False
    assert not live.is_stale("a", clock.monotonic())
    clock.advance(0.5)
    assert live.is_stale("a", clock.monotonic())


def test_document_disappearing_counts_as_a_change_then_silence(clock: FakeClock, live: Liveness) -> None:
    live.observe("a", "5-x", clock.monotonic())
    clock.advance(STALE - 1)
    assert live.observe("a", None, clock.monotonic()) is True
    clock.advance(STALE - 1)
    assert not live.is_stale("a", clock.monotonic())
    clock.advance(1)
    assert live.is_stale("a", clock.monotonic())


def test_sites_are_independent(clock: FakeClock, live: Liveness) -> None:
    live.observe("a", "1", clock.monotonic())
    clock.advance(STALE / 2)
    live.observe("b", "1", clock.monotonic())
    clock.advance(STALE / 2)
    assert live.is_stale("a", clock.monotonic())
    assert not live.is_stale("b", clock.monotonic())


def test_late_observer_is_on_the_safe_side(clock: FakeClock) -> None:
    """Two observers; the one that reads later calls the site stale later, never sooner."""
    early, late = Liveness(STALE), Liveness(STALE)
    early.observe("a", "1", clock.monotonic())
    clock.advance(7)
    late.observe("a", "1", clock.monotonic())
    assert late.stale_at("a") == pytest.approx(early.stale_at("a") + 7)


def test_age_never_negative(live: Liveness) -> None:
    live.observe("a", "1", 100.0)
    assert live.age("a", 99.0) == 0.0


def test_api_takes_no_wall_time() -> None:
    """Every time Liveness is given is a monotonic number from the observer; no document time."""
    params = inspect.signature(Liveness.observe).parameters
    assert list(params) == ["self", "site", "rev", "now"]
    assert list(inspect.signature(Liveness.age).parameters) == ["self", "site", "now"]
    assert list(inspect.signature(Liveness.is_stale).parameters) == ["self", "site", "now", "stale_s"]


@pytest.mark.parametrize("offset_h", [-48, -3, 0, 3, 48])
def test_heartbeat_wall_time_is_irrelevant(clock: FakeClock, offset_h: int) -> None:
    """A heartbeat whose time is hours off changes nothing: only its revision is observed."""
    live = Liveness(STALE)
    wall = clock.now() + dt.timedelta(hours=offset_h)
    for i in range(1, 4):
        body = render_heartbeat(Heartbeat(site="a", state=WAITING, beat=i, time=wall.isoformat(), rev=f"{i}-r"))
        hb, _ = parse_heartbeat(body, "a")
        assert hb is not None
        live.observe("a", hb.rev, clock.monotonic())
        clock.advance(10)
    # Last change seen 10 s ago, whatever the beat said its time was.
    assert live.age("a", clock.monotonic()) == pytest.approx(10)
    assert not live.is_stale("a", clock.monotonic())
    clock.advance(STALE - 10)
    assert live.is_stale("a", clock.monotonic())


REGISTERED = ("alpha", "bravo", "charlie", "delta", "echo")


@pytest.mark.parametrize(
    "leader, running, me, followed, read",
    [
        # The leader follows everyone.
        ("alpha", "bravo", "alpha", set(REGISTERED), set(REGISTERED)),
        # Others follow themselves and the leader, and read the holder too.
        ("alpha", "bravo", "charlie", {"alpha", "charlie"}, {"alpha", "bravo", "charlie"}),
        ("alpha", "bravo", "bravo", {"alpha", "bravo"}, {"alpha", "bravo"}),
        ("alpha", "alpha", "delta", {"alpha", "delta"}, {"alpha", "delta"}),
        # Nobody leads.
        (None, "bravo", "echo", {"echo"}, {"bravo", "echo"}),
        (None, None, "echo", {"echo"}, {"echo"}),
        # A leader missing from the registry is followed all the same.
        ("zulu", None, "echo", {"zulu", "echo"}, {"zulu", "echo"}),
    ],
)
def test_followed_and_read_sites(leader, running, me, followed, read) -> None:
    doc = LeaderDoc(doc_id="enqueue_leader", leader=leader, running=running, status=RUNNING)
    assert followed_sites(doc, REGISTERED, me) == followed
    assert read_sites(doc, REGISTERED, me) == read


def test_without_a_leader_doc_a_site_follows_only_itself() -> None:
    assert followed_sites(None, REGISTERED, "bravo") == {"bravo"}
    assert read_sites(None, REGISTERED, "bravo") == {"bravo"}


def test_a_longer_threshold_can_be_asked_for_one_verdict(live: Liveness) -> None:
    live.observe("a", "1", 0.0)
    assert live.is_stale("a", STALE)
    assert not live.is_stale("a", STALE, stale_s=STALE * 2)
    assert live.is_stale("a", STALE * 2, stale_s=STALE * 2)
    assert live.stale_at("a", STALE * 2) == STALE * 2
    assert not live.is_stale("never-seen", 1e9, stale_s=1.0)


@pytest.mark.parametrize(
    "announced_stale_s, expected",
    [
        (None, STALE),  # announces nothing: taken to run with the leader's settings
        (STALE / 3, STALE),  # a shorter lease is outlasted by the leader's own wait anyway
        (STALE, STALE),
        (STALE * 4, STALE * 4),  # a longer lease is waited out
    ],
)
def test_silence_to_revoke_outlasts_the_holders_lease(announced_stale_s, expected) -> None:
    holder = Heartbeat(site="a", state=RUNNING, heartbeat_delay_s=1.0, heartbeat_stale_s=announced_stale_s)
    assert silence_to_revoke_s(STALE, holder) == expected
    if holder.lease_s is not None:
        assert silence_to_revoke_s(STALE, holder) > holder.lease_s


def test_silence_to_revoke_without_a_heartbeat_is_the_leaders_own() -> None:
    assert silence_to_revoke_s(STALE, None) == STALE
