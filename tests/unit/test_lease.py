"""enqueue.lease's run of heartbeats and its floor: when a grant may be started on without a confirm
(docs/PROTOCOL.md §3.5.7)."""

from __future__ import annotations

from enqueue import documents as docs
from enqueue.clock import FakeClock
from enqueue.lease import Identity, Lease
from enqueue.memory_store import MemoryStore
from tests.unit.test_agent_steps import TIMING


def _lease(instance: str = "alpha-2") -> tuple[Lease, FakeClock]:
    clock = FakeClock()
    identity = Identity(instance=instance, host="hostA", pid=100, agent_alive=lambda pid: False)
    return Lease("alpha", TIMING, MemoryStore("enqueue"), clock, identity), clock


def _beat(lease: Lease, repeat: bool = True) -> None:
    lease.beat(repeat=repeat, turn=None, now_text="2026-01-01 00:00:00", extra={})


def test_a_read_after_the_runs_first_beat_is_its_floor_and_only_later_revisions_may_be_started_on() -> None:
    lease, clock = _lease()
    lease.saw_leader_read("4-a", clock.monotonic())
    assert lease.floor is None, "no run yet: no floor"
    _beat(lease)
    issued = clock.monotonic()
    clock.advance(0.1)
    lease.saw_leader_read("5-b", issued)
    assert lease.floor == 5
    assert not lease.may_start_on_grant("5-b", "alpha-2"), "the revision the floor read saw may predate the run"
    assert lease.may_start_on_grant("6-c", "alpha-2")
    assert not lease.may_start_on_grant("6-c", "alpha-1"), "a grant for another agent of the site"
    assert not lease.may_start_on_grant("6-c", None), "a grant that names nobody needs a confirm"
    lease.saw_leader_read("9-d", clock.monotonic())
    assert lease.floor == 5, "a later read does not raise the floor"


def test_a_read_sent_before_the_run_began_sets_no_floor() -> None:
    lease, clock = _lease()
    issued = clock.monotonic()
    clock.advance(0.01)
    _beat(lease)
    lease.saw_leader_read("5-b", issued)
    assert lease.floor is None


def test_an_acknowledgement_after_the_lease_of_the_beat_before_ends_the_run() -> None:
    lease, clock = _lease()
    _beat(lease)
    lease.saw_leader_read("5-b", clock.monotonic())
    clock.advance(TIMING.heartbeat_delay_s)
    _beat(lease)
    assert lease.floor == 5, "acknowledged inside the lease: the run goes on"
    clock.advance(TIMING.heartbeat_stale_s)  # frozen past the lease
    _beat(lease)
    assert lease.floor is None and not lease.may_start_on_grant("9-x", "alpha-2")
    lease.saw_leader_read("9-x", clock.monotonic())
    assert lease.floor == 9 and lease.may_start_on_grant("10-y", "alpha-2")


def test_a_beat_that_wants_no_turn_ends_the_run_even_when_its_answer_is_lost() -> None:
    lease, clock = _lease()
    _beat(lease)
    lease.saw_leader_read("5-b", clock.monotonic())
    lease.state = docs.IDLE

    def lost(doc: dict) -> str:
        raise ConnectionError("answer lost")

    lease.store.put = lost  # type: ignore[method-assign]
    try:
        _beat(lease)
    except ConnectionError:
        pass
    assert lease.floor is None and lease.run_from is None


def test_a_grant_naming_the_agent_before_me_that_said_left_is_mine_only_after_my_floor() -> None:
    lease, clock = _lease("alpha-2")
    lease.wait_out_previous(docs.Heartbeat(site="alpha", state=docs.LEFT, instance="alpha-1"), clock.monotonic())
    assert lease.predecessor_left == "alpha-1"
    assert not lease.grant_is_mine("3-a", "alpha-1"), "no floor yet: alpha-1 may have acted on it"
    _beat(lease)
    lease.saw_leader_read("3-a", clock.monotonic())
    assert not lease.grant_is_mine("3-a", "alpha-1")
    assert lease.grant_is_mine("4-b", "alpha-1") and lease.may_start_on_grant("4-b", "alpha-1")
    crashed, _ = _lease("alpha-2")
    crashed.wait_out_previous(docs.Heartbeat(site="alpha", state=docs.WAITING, instance="alpha-1"), 0.0)
    assert crashed.predecessor_left is None, "an agent that did not say it left may still act"
