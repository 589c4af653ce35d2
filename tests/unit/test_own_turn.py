"""enqueue.own_turn's grants: started on the grant alone, given back, or ended as an earlier agent's
(docs/PROTOCOL.md §3.4.4, §3.5.7, §3.12.1); and its finish, which carries the turn's record (§3.8.2);
driven through a real agent on a MemoryStore."""

from __future__ import annotations

from enqueue import documents as docs
from enqueue.clock import FakeClock
from enqueue.errors import Unreachable
from enqueue.events import CommandEnded, CommandStarted, DocChanged
from enqueue.memory_store import MemoryStore
from tests.unit.test_agent_steps import TIMING, leader, make_agent

ENTRY = {"heartbeat_doc": docs.heartbeat_id("bravo"), "drained": False, "added_at": "-"}


def _world(store: MemoryStore, *, drained: bool = False, grantee: str | None, predecessor: str | None = None) -> None:
    """Registry with bravo; turn 3 granted to bravo for agent ``grantee``; a dead leader; bravo's earlier agent."""
    store.put(docs.render_sites(docs.new_sites_doc("enqueue_sites"), {"bravo": dict(ENTRY, drained=drained)}))
    store.put(docs.render_leader(docs.LeaderDoc("enqueue_leader", leader="alpha", leader_term=1, running="bravo",
                                                status=docs.GRANTED, turn=3, rotation=("bravo",), grantee=grantee)))
    if predecessor is not None:
        state = docs.LEFT if predecessor.endswith("left") else docs.WAITING
        store.put(docs.render_heartbeat(docs.Heartbeat(site="bravo", state=state, instance=predecessor,
                                                       heartbeat_delay_s=TIMING.heartbeat_delay_s,
                                                       heartbeat_stale_s=TIMING.heartbeat_stale_s)))


def _bravo_after_one_step(**world):
    """Bravo's agent (bravo-1), started on the world ``_world(**world)`` makes, after its first step."""
    store, clock = MemoryStore("enqueue"), FakeClock()
    _world(store, **world)
    bravo, runner = make_agent(store, clock, "bravo", repeat=True)
    bravo.start(clock.monotonic())
    bravo.step(clock.monotonic())
    return store, clock, bravo, runner


def test_a_drained_site_hands_back_a_grant_that_names_it_and_records_it_not_started() -> None:
    store, _, _, runner = _bravo_after_one_step(drained=True, grantee="bravo-1")
    assert runner.named("start") == []
    doc = leader(store)
    assert (doc.turn, doc.status, doc.last_how) == (3, docs.DONE, "not started")
    record, _ = docs.parse_turn_record(store.get(docs.turn_record_id(3)))
    assert record is not None and (record.site, record.how) == ("bravo", "not started")


def test_a_grant_that_names_an_earlier_agent_of_the_site_is_ended_as_an_orphan_once_its_lease_ran_out() -> None:
    store, clock, bravo, runner = _bravo_after_one_step(grantee="bravo-0", predecessor="bravo-0")
    assert runner.named("start") == [] and leader(store).holds("bravo", 3), "bravo-0 may still run it"
    clock.advance(TIMING.heartbeat_stale_s)
    bravo.step(clock.monotonic())
    assert 3 not in [c[1] for c in runner.named("start")], "the token of turn 3 is never used again"
    record, _ = docs.parse_turn_record(store.get(docs.turn_record_id(3)))
    assert record is not None and record.how == "abandoned" and "granted to an earlier agent" in (record.note or "")


def test_the_next_agent_of_a_loop_starts_on_a_grant_naming_the_agent_that_left_if_written_after_its_floor() -> None:
    store, clock, bravo, runner = _bravo_after_one_step(grantee="bravo-0left", predecessor="bravo-0left")
    assert 3 not in [c[1] for c in runner.named("start")], "turn 3 was granted before bravo-1's run began"
    assert bravo.lease.floor is not None
    # A later grant for the agent that left: only bravo-1 can act on it now.
    raw = store.get("enqueue_leader")
    raw.update(status=docs.GRANTED, running="bravo", turn=raw["turn"] + 1, grantee="bravo-0left")
    store.put(raw)
    bravo.handle(DocChanged("enqueue_leader", store.get("enqueue_leader")))
    bravo.step(clock.monotonic())
    assert runner.named("start")[-1][1] == raw["turn"]
    assert leader(store).status == docs.GRANTED, "started on the grant alone: no confirm written"


class _OrderedStore(MemoryStore):
    """A memory store that notes, in order, its leader-doc writes and its turn-record writes and reads."""

    def __init__(self) -> None:
        super().__init__("enqueue")
        self.calls: list[str] = []

    def get(self, doc_id: str) -> dict | None:
        if doc_id.startswith(docs.TURN_PREFIX):
            self.calls.append(f"get {doc_id}")
        return super().get(doc_id)

    def put(self, doc: dict) -> str:
        if doc["_id"] == "enqueue_leader" or doc["_id"].startswith(docs.TURN_PREFIX):
            self.calls.append(f"put {doc['_id']}")
        return super().put(doc)


def _lone_repeating_alpha_through_turn_1():
    store, clock = _OrderedStore(), FakeClock()
    alpha, runner = make_agent(store, clock, "alpha", repeat=True)
    alpha.start(clock.monotonic())
    alpha.step(clock.monotonic())
    alpha.handle(CommandStarted(1, 4242))
    store.calls.clear()
    alpha.handle(CommandEnded(1, 3, "exited", duration_s=0.2))
    alpha.step(clock.monotonic())
    return store, alpha


def test_the_finishing_write_carries_the_record_and_comes_before_it_is_stored() -> None:
    """One write hands the turn over (docs/PROTOCOL.md §3.8.2): the record is stored after it, off the handoff."""
    store, _ = _lone_repeating_alpha_through_turn_1()
    record_id = docs.turn_record_id(1)
    assert store.calls[:2] == ["put enqueue_leader", f"put {record_id}"]
    doc = leader(store)
    assert doc.turn == 2 and doc.last_record is not None
    assert (doc.last_record.turn, doc.last_record.site, doc.last_record.exit_code) == (1, "alpha", 3)
    stored, _ = docs.parse_turn_record(store.get(record_id))
    assert stored == doc.last_record


def test_a_record_the_leader_doc_carries_is_stored_before_a_write_replaces_it() -> None:
    """Alpha's record of turn 1 is lost with its answer; the write that finishes turn 2 must store it first."""
    store, clock = _OrderedStore(), FakeClock()
    alpha, runner = make_agent(store, clock, "alpha", repeat=True)
    alpha.start(clock.monotonic())
    alpha.step(clock.monotonic())
    alpha.handle(CommandEnded(1, 0, "exited", duration_s=0.2))
    real_put = store.put
    losing = [True]

    def put_losing_records(doc: dict) -> str:
        if losing[0] and doc["_id"] == docs.turn_record_id(1):
            raise Unreachable("simulated: the record's request is lost")
        return real_put(doc)

    store.put = put_losing_records  # type: ignore[method-assign]
    alpha.step(clock.monotonic())
    assert store.get(docs.turn_record_id(1)) is None and leader(store).last_record is not None
    alpha.records.pending.clear()  # as if the agent that owed it died: only the leader doc has it now
    losing[0] = False
    store.calls.clear()
    for _ in range(3):
        if [c[1] for c in runner.named("start")] == [1, 2]:
            break
        clock.advance(TIMING.heartbeat_delay_s)
        alpha.step(clock.monotonic())
    assert [c[1] for c in runner.named("start")] == [1, 2]
    alpha.handle(CommandStarted(2, 4243))
    alpha.handle(CommandEnded(2, 0, "exited", duration_s=0.2))
    alpha.step(clock.monotonic())
    finishing = len(store.calls) - 1 - store.calls[::-1].index("put enqueue_leader")
    assert f"put {docs.turn_record_id(1)}" in store.calls[:finishing], store.calls
    assert leader(store).last_record.turn == 2 and store.get(docs.turn_record_id(1)) is not None
