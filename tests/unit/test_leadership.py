"""enqueue.leadership's repair of a missing leader doc, driven through real agents on a MemoryStore
(docs/PROTOCOL.md §3.11, §5.2): the wait runs from the last change of the doc's revision, a deletion
included; the rewrite resumes above every turn that can have run; it names no holder it does not know."""

from __future__ import annotations

from dataclasses import replace

import pytest

from enqueue import documents as docs
from enqueue import records, repair
from enqueue.admin_rebuild import AdminRebuild
from enqueue.clock import FakeClock
from enqueue.errors import Forbidden
from enqueue.events import CommandEnded, CommandStarted
from enqueue.leadership import never_used
from enqueue.memory_store import MemoryStore
from tests.unit.test_agent_steps import TIMING, AnswerLosingStore, leader, make_agent

STALE = TIMING.heartbeat_stale_s


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore("enqueue")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def _delete_leader(store) -> None:
    store.delete(store.get("enqueue_leader"))


def _alpha_runs_turn_1_then_the_doc_is_deleted(store, clock):
    agent, runner = make_agent(store, clock, "alpha", repeat=True)
    agent.start(clock.monotonic())
    agent.step(clock.monotonic())
    agent.handle(CommandStarted(1, 4242))
    _delete_leader(store)
    clock.advance(TIMING.heartbeat_delay_s)
    agent.step(clock.monotonic())
    assert runner.named("stop"), "the holder stops its command on finding the leader doc gone"
    agent.handle(CommandEnded(1, 143, "stopped", reason="stopped"))
    agent.step(clock.monotonic())
    return agent, runner


def test_an_agent_frozen_across_a_repair_and_a_second_deletion_waits_again_before_rebuilding(store, clock) -> None:
    # Seed 181 of the simulation: the wait had run from when the agent first saw the doc missing.
    agent, _ = _alpha_runs_turn_1_then_the_doc_is_deleted(store, clock)
    assert store.get("enqueue_leader") is None
    # While alpha is frozen, another agent rebuilds the doc and an admin deletes it again.
    store.put(docs.render_leader(docs.new_leader_doc("enqueue_leader")))
    _delete_leader(store)
    clock.advance(STALE + 0.1)
    agent.step(clock.monotonic())
    assert store.get("enqueue_leader") is None, "rebuilt at once, though the doc changed moments ago"
    for _ in range(20):
        clock.advance(max(0.0, agent.next_wake() - clock.monotonic()))
        agent.step(clock.monotonic())
        if store.get("enqueue_leader") is not None:
            break
    assert store.get("enqueue_leader") is not None, "rebuilt once the new tombstone was heartbeat_stale old"


def test_a_repair_resumes_above_a_turn_whose_agent_died_leaving_no_trace(store, clock) -> None:
    # Seed 98 of the simulation: bravo ran turn 1 and died; no record and no heartbeat named the turn.
    bravo, _ = make_agent(store, clock, "bravo", repeat=True)
    bravo.start(clock.monotonic())
    bravo.step(clock.monotonic())
    assert leader(store).turn == 1
    _delete_leader(store)
    for doc_id in [d["_id"] for d in store.list_prefix(docs.HEARTBEAT_PREFIX)]:
        store.put({**store.get(doc_id), "turn": None, "turn_seen": 0})
    alpha, runner = make_agent(store, clock, "alpha", repeat=True)
    alpha.start(clock.monotonic())
    for _ in range(40):
        clock.advance(max(0.0, alpha.next_wake() - clock.monotonic()))
        alpha.step(clock.monotonic())
        if runner.named("start"):
            break
    [start] = runner.named("start")
    assert start[1] > 1, f"fencing token {start[1]} handed out again"


def _bravo_runs_turn_1_and_alpha_reads_it(store, clock):
    # A grant that names no agent: bravo confirms it, and the leader doc shows it running.
    store.put(docs.render_leader(replace(docs.new_leader_doc("enqueue_leader"), status=docs.GRANTED, running="bravo",
                                         turn=1, rotation=("bravo",))))
    bravo, _ = make_agent(store, clock, "bravo", repeat=True)
    bravo.start(clock.monotonic())
    bravo.step(clock.monotonic())
    bravo.handle(CommandStarted(1, 4242))
    alpha, _ = make_agent(store, clock, "alpha", repeat=True)
    alpha.start(clock.monotonic())
    alpha.step(clock.monotonic())
    assert (leader(store).running, leader(store).turn, leader(store).status) == ("bravo", 1, docs.RUNNING)
    return bravo, alpha


def test_the_repairs_record_names_the_holder_its_own_reading_of_the_leader_doc_showed(store, clock) -> None:
    # Issue 10: the record of the turn in progress named a site from the heartbeats, not the one that ran it.
    bravo, alpha = _bravo_runs_turn_1_and_alpha_reads_it(store, clock)
    store.put({"_id": docs.heartbeat_id("delta"), "type": "enqueue_heartbeat", "schema": 1, "site": "delta",
               "state": "running", "turn": 1})
    _delete_leader(store)
    for _ in range(40):  # bravo is frozen meanwhile: alpha alone repairs
        clock.advance(max(0.0, alpha.next_wake() - clock.monotonic()))
        alpha.step(clock.monotonic())
        if store.get("enqueue_leader") is not None:
            break
    assert store.get("enqueue_leader") is not None
    record, _ = docs.parse_turn_record(store.get(docs.turn_record_id(1)))
    assert record is not None and (record.site, record.how) == ("bravo", "repaired")
    # bravo wakes, stops its command on finding its turn gone, and its own report completes the record.
    bravo.step(clock.monotonic())
    bravo.handle(CommandEnded(1, 143, "stopped", reason="stopped"))
    bravo.step(clock.monotonic())
    raw = store.get(docs.turn_record_id(1))
    record, _ = docs.parse_turn_record(raw)
    said = records.outcome(record, raw)
    assert (said.site, said.exit_code, said.dispute) == ("bravo", 143, None), raw
    assert raw["runner_report"]["site"] == "bravo"


def test_a_database_whose_leader_doc_was_deleted_was_used(store) -> None:
    assert never_used(store, "enqueue_leader") is True
    store.put({"_id": "enqueue_leader"})
    _delete_leader(store)
    assert never_used(store, "enqueue_leader") is False
    assert never_used(store, "other_leader") is True


class _Died(BaseException):
    """The agent dies here (kill -9): no ``except Exception`` catches it."""


def _steps_until(agent, clock, done, limit: int = 400) -> None:
    for _ in range(limit):
        if done():
            return
        clock.advance(max(0.0, agent.next_wake() - clock.monotonic()))
        agent.step(clock.monotonic())
    assert done(), "the agent never got there"


def test_a_turn_that_ran_after_a_dead_leaders_not_started_record_reads_as_revoked(clock) -> None:
    """Seed 50 of the simulation (§5.4.1): alpha writes its 'not started' record of bravo's granted turn and
    dies before its compare-and-swap; bravo confirms and runs the turn, and dies too; charlie, leading next,
    takes the running turn back after bravo's silence and finds that record."""
    store = AnswerLosingStore("enqueue")
    store.put(docs.render_sites(docs.new_sites_doc("enqueue_sites"), {
        "bravo": {"heartbeat_doc": docs.heartbeat_id("bravo"), "drained": False, "added_at": "-"}}))
    store.put(docs.render_leader(docs.LeaderDoc("enqueue_leader", leader="alpha", leader_term=1, running="bravo",
                                                status="granted", turn=6, rotation=("alpha", "bravo"))))
    alpha, _ = make_agent(store, clock, "alpha", repeat=True)
    alpha.start(clock.monotonic())

    def dies_before_the_leader_doc_write(doc: dict) -> None:
        if doc.get("_id") == "enqueue_leader":
            store.meanwhile = None
            raise _Died()
    store.meanwhile = dies_before_the_leader_doc_write
    with pytest.raises(_Died):
        alpha.step(clock.monotonic())  # bravo has no heartbeat yet: its grant is taken back
    assert store.get(docs.turn_record_id(6))["how"] == "not started"
    assert leader(store).holds("bravo", 6) and leader(store).status == docs.GRANTED

    bravo, bravo_runner = make_agent(store, clock, "bravo", repeat=True)
    bravo.start(clock.monotonic())
    _steps_until(bravo, clock, lambda: bool(bravo_runner.named("start")))
    assert [c[1] for c in bravo_runner.named("start")] == [6]
    bravo.handle(CommandStarted(6, 4242))
    started_at = leader(store).started_at
    assert started_at is not None and leader(store).status == docs.RUNNING
    # bravo's agent dies here, its command under way: nobody will hear from bravo again.

    charlie, _ = make_agent(store, clock, "charlie", repeat=True)
    charlie.start(clock.monotonic())
    _steps_until(charlie, clock, lambda: not leader(store).holds("bravo", 6))
    assert leader(store).leader == "charlie"
    raw = store.get(docs.turn_record_id(6))
    rec, _ = docs.parse_turn_record(raw)
    said = records.outcome(rec, raw)
    assert said.how == "revoked", raw
    assert (said.site, said.exit_code, said.dispute) == ("bravo", None, None)
    assert raw["how"] == "not started" and raw["leader"] == "alpha", "alpha's record stays in alpha's name"
    assert raw["revoker_report"]["leader"] == "charlie" and raw["revoker_report"]["started_at"] == started_at


def test_a_repair_that_read_the_turn_running_adds_its_word_to_a_dead_leaders_not_started_record(store,
                                                                                                 clock) -> None:
    _, alpha = _bravo_runs_turn_1_and_alpha_reads_it(store, clock)
    started_at = leader(store).started_at
    # The record a leader left that wrote it while turn 1 was only granted, and died before its write.
    store.put(docs.render_turn_record(docs.TurnRecord(turn=1, site="bravo", how="not started", leader="echo")))
    _delete_leader(store)
    _steps_until(alpha, clock, lambda: store.get("enqueue_leader") is not None)  # bravo is frozen meanwhile
    raw = store.get(docs.turn_record_id(1))
    assert raw["how"] == "not started" and raw["revoker_report"]["leader"] == "alpha"
    rec, _ = docs.parse_turn_record(raw)
    said = records.outcome(rec, raw)
    assert (said.site, said.how) == ("bravo", "repaired")
    assert raw["revoker_report"]["started_at"] == started_at


class SiteAccountStore(MemoryStore):
    """A database whose rules leave the leader doc's creation to admins, as validate_doc_update.js does."""

    def __init__(self) -> None:
        super().__init__("enqueue")
        self.refused = 0
        self.admin_writes = False  # the admin's own requests, past the rules

    def put(self, doc: dict) -> str:
        if not self.admin_writes and doc.get("_id") == "enqueue_leader" and self.get("enqueue_leader") is None \
                and "_rev" not in doc:
            self.refused += 1
            raise Forbidden("document 'enqueue_leader': write: forbidden (403 forbidden: enqueue: only an admin "
                            "creates the leader document [enqueue:admin-rebuilds-leader-doc])")
        return super().put(doc)


def test_an_agent_refused_the_rebuild_says_so_once_waits_without_retrying_and_goes_on_once_an_admin_rebuilt_it(
        clock, caplog) -> None:
    store = SiteAccountStore()
    store.admin_writes = True
    store.put(docs.render_leader(docs.new_leader_doc("enqueue_leader")))  # as 'enqueue init' does
    store.admin_writes = False
    agent, runner = _alpha_runs_turn_1_then_the_doc_is_deleted(store, clock)
    tombstone = store.deleted_rev("enqueue_leader")
    for _ in range(40):
        clock.advance(max(0.0, agent.next_wake() - clock.monotonic()))
        assert agent.step(clock.monotonic()) is None, "the agent must not leave"
        if store.refused:
            break
    assert store.refused == 1
    for _ in range(20):  # heartbeats go on; no more tries, and no wake-up for one
        clock.advance(max(0.0, agent.next_wake() - clock.monotonic()))
        assert agent.step(clock.monotonic()) is None
    assert store.refused == 1, "retried the refused rebuild"
    assert agent.leadership.repair_due_at() is None
    said = store.get(docs.heartbeat_id("alpha"))[docs.PROBLEM_FIELD]
    assert "leader doc enqueue_leader is missing" in said and "an admin must run 'enqueue repair CONFIG'" in said
    assert caplog.text.count("an admin must run 'enqueue repair CONFIG'") == 1
    rebuilder = AdminRebuild(store, "enqueue_leader", STALE, "admin:ops@h", lambda: "2026-01-01 00:00:00")
    assert rebuilder.look(clock.monotonic()) is not None
    clock.advance(STALE)
    store.admin_writes = True
    assert rebuilder.write(clock.monotonic()) == repair.revision_count(tombstone)
    store.admin_writes = False
    agent.shared.reread("enqueue_leader")  # what the feed delivers
    for _ in range(20):
        clock.advance(max(0.0, agent.next_wake() - clock.monotonic()))
        agent.step(clock.monotonic())
        if len(runner.named("start")) > 1:
            break
    assert runner.named("start")[-1][1] > repair.revision_count(tombstone)
    assert docs.PROBLEM_FIELD not in store.get(docs.heartbeat_id("alpha"))


def test_a_leader_taking_back_a_grant_its_grantee_may_have_started_on_adds_its_word_to_a_dead_leaders_record(
        clock) -> None:
    """Bravo's agent may have started turn 6 on its grant alone (no confirm, so no started_at); a dead leader
    had recorded the turn 'not started'. Charlie takes it back after bravo's silence: the turn reads revoked."""
    store = AnswerLosingStore("enqueue")
    store.put(docs.render_sites(docs.new_sites_doc("enqueue_sites"), {
        "bravo": {"heartbeat_doc": docs.heartbeat_id("bravo"), "drained": False, "added_at": "-"}}))
    store.put(docs.render_leader(docs.LeaderDoc("enqueue_leader", leader="alpha", leader_term=1, running="bravo",
                                                status="granted", turn=6, rotation=("alpha", "bravo"),
                                                grantee="bravo-1", granted_at="2026-01-01 00:00:00")))
    store.put(docs.render_heartbeat(docs.Heartbeat(site="bravo", state=docs.WAITING, instance="bravo-1")))
    store.put(docs.render_turn_record(docs.TurnRecord(turn=6, site="bravo", how="not started", leader="alpha")))
    charlie, _ = make_agent(store, clock, "charlie", repeat=True)
    charlie.start(clock.monotonic())
    _steps_until(charlie, clock, lambda: not leader(store).holds("bravo", 6))
    raw = store.get(docs.turn_record_id(6))
    rec, _ = docs.parse_turn_record(raw)
    assert records.outcome(rec, raw).how == "revoked", raw
    assert raw["revoker_report"]["leader"] == "charlie"
    assert raw["revoker_report"]["started_at"] == "2026-01-01 00:00:00"
