"""The agent as a state machine: driven by hand on the in-memory store under a fake clock.

No thread, no process, no real time: each test calls ``start``, ``step``
and ``handle`` itself, plays the runner's part, and checks the documents the
agent left in the store and the calls it made to its runner.
"""

from __future__ import annotations

import logging
import random
import signal
from dataclasses import dataclass, field
from typing import Callable

import pytest

from enqueue import documents as docs
from enqueue.agent import Agent
from enqueue.clock import FakeClock
from enqueue.config import AgentSettings, Connection, Timing
from enqueue.errors import Forbidden, SiteLockedOut, Unreachable
from enqueue.events import CommandEnded, CommandStarted, DocChanged, SideCommandEnded, StopRequested
from enqueue.lease import Identity
from enqueue.leaving import Left
from enqueue.memory_store import MemoryStore

TIMING = Timing(heartbeat_delay_s=0.5, heartbeat_stale_s=2.0, conflict_delay_s=0.2, kill_grace_s=0.3)


@dataclass
class FakeRunner:
    """Records what the agent asks; the test answers through ``Agent.handle``."""

    calls: list[tuple] = field(default_factory=list)

    def start(self, turn: int, argv: list[str], env: dict[str, str], deadline: float) -> None:
        self.calls.append(("start", turn, tuple(argv), env["ENQUEUE_TURN"], deadline))

    def extend(self, deadline: float) -> None:
        self.calls.append(("extend", deadline))

    def stop(self, reason: str) -> None:
        self.calls.append(("stop", reason))

    def close(self) -> None:
        self.calls.append(("close",))

    def named(self, name: str) -> list[tuple]:
        return [c for c in self.calls if c[0] == name]


class AnswerLosingStore(MemoryStore):
    """A memory store that, once armed, applies the next put ``lose`` picks and loses its answer.

    ``meanwhile(doc)``, when set, runs before every put (another writer's move); deletions are counted.
    """

    lose: Callable[[dict], bool] | None = None
    meanwhile: Callable[[dict], None] | None = None

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.deleted: list[str] = []

    def delete(self, doc: dict) -> None:
        if self.meanwhile is not None:
            self.meanwhile(dict(doc, _deleted=True))
        super().delete(doc)
        self.deleted.append(doc["_id"])

    def put(self, doc: dict) -> str:
        if self.meanwhile is not None:
            self.meanwhile(doc)
        rev = super().put(doc)
        if self.lose is not None and self.lose(doc):
            self.lose = None
            raise Unreachable(f"put {doc.get('_id')}: answer lost (test)")
        return rev


def the_leader_doc(doc: dict) -> bool:
    return doc.get("_id") == "enqueue_leader"


def make_agent(store: MemoryStore, clock: FakeClock, site: str = "alpha", *, repeat: bool = False,
               runner: FakeRunner | None = None, side_runner: FakeSideRunner | None = None,
               max_failures: int | None = None, **side: object) -> tuple[Agent, FakeRunner]:
    settings = AgentSettings(site=site, command=["work", "--hard"], connection=Connection("http://127.0.0.1:9", "x"),
                             timing=TIMING, repeat=repeat, max_failures=max_failures,
                             **side)  # type: ignore[arg-type]
    runner = runner or FakeRunner()
    identity = Identity(instance=f"{site}-1", host="hostA", pid=100, agent_alive=lambda pid: False)
    return Agent(settings, store, clock, runner, random.Random(7), identity, side_runner), runner


@dataclass
class FakeSideRunner:
    """Records the side commands the agent asks for; the test answers with ``SideCommandEnded``."""

    calls: list[tuple] = field(default_factory=list)

    def start(self, name: str, command_line: str, env: dict[str, str]) -> None:
        self.calls.append(("start", name, command_line, dict(env)))

    def stop(self) -> None:
        self.calls.append(("stop",))

    def named(self, name: str) -> list[tuple]:
        return [c for c in self.calls if c[0] == name]


def leader(store: MemoryStore) -> docs.LeaderDoc:
    parsed, _ = docs.parse_leader(store.get("enqueue_leader"), "enqueue_leader")
    assert parsed is not None
    return parsed


@pytest.fixture
def store() -> AnswerLosingStore:
    return AnswerLosingStore("enqueue")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def test_a_lone_agent_elects_itself_runs_one_turn_under_its_lease_records_it_and_leaves(store, clock) -> None:
    agent, runner = make_agent(store, clock)
    agent.start(clock.monotonic())
    assert "enqueue_leader" in agent.watched_ids
    assert agent.step(clock.monotonic()) is None
    [start] = runner.named("start")
    assert start[1:4] == (1, ("work", "--hard"), "1")
    assert start[4] == agent.lease.deadline() == agent.lease.last_ack_sent + 2.0 - 0.5
    doc = leader(store)
    # Its own grant names it and came after its first read: it starts on the grant alone (PROTOCOL §3.5.7).
    assert (doc.leader, doc.running, doc.status, doc.turn, doc.grantee) == ("alpha", "alpha", docs.GRANTED, 1,
                                                                            "alpha-1")
    agent.handle(CommandStarted(1, 4242))
    clock.advance(0.1)
    agent.handle(CommandEnded(1, 0, "exited", duration_s=0.1))
    left = agent.step(clock.monotonic())
    assert left == Left(0)
    record, _ = docs.parse_turn_record(store.get(docs.turn_record_id(1)))
    assert record is not None and (record.site, record.how, record.exit_code) == ("alpha", "exited", 0)
    assert leader(store).status == docs.DONE
    hb, _ = docs.parse_heartbeat(store.get(docs.heartbeat_id("alpha")), "alpha")
    assert hb is not None and hb.state == docs.LEFT


def test_every_acknowledged_heartbeat_extends_the_running_commands_deadline(store, clock) -> None:
    agent, runner = make_agent(store, clock, repeat=True)
    agent.start(clock.monotonic())
    agent.step(clock.monotonic())
    assert runner.named("start")
    wake = agent.next_wake()
    assert wake == agent.lease.next_beat_at
    clock.advance(wake - clock.monotonic())
    agent.step(clock.monotonic())
    [extend] = runner.named("extend")
    assert extend[1] == agent.lease.deadline() == clock.monotonic() + 1.5


def test_a_stop_request_stops_the_command_then_the_agent_leaves_with_128_plus_the_signal(store, clock) -> None:
    agent, runner = make_agent(store, clock, repeat=True)
    agent.start(clock.monotonic())
    agent.step(clock.monotonic())
    agent.handle(CommandStarted(1, 4242))
    agent.handle(StopRequested(signal.SIGINT))
    agent.handle(StopRequested(signal.SIGTERM))
    assert runner.named("stop") == [("stop", "stopped")]
    assert agent.step(clock.monotonic()) is None, "the command has not been reported ended yet"
    agent.handle(CommandEnded(1, 143, "stopped", reason="stopped"))
    assert agent.step(clock.monotonic()) == Left(128 + signal.SIGTERM)
    record, _ = docs.parse_turn_record(store.get(docs.turn_record_id(1)))
    assert record is not None and record.how == "stopped"
    assert leader(store).leader is None, "a leaving leader steps down"


def test_two_agents_on_one_store_take_turns_in_order_under_a_fake_clock(store, clock) -> None:
    """A small deterministic drive: the runner ends each command 0.1 s after it started.

    No feed delivers changes here, so bravo, started first, learns of alpha
    at its next heartbeat's read and may take a few turns alone before that.
    """
    agents = {}
    ends: dict[str, tuple[float, int]] = {}
    for site in ("bravo", "alpha"):
        agent, runner = make_agent(store, clock, site, repeat=True)
        agent.start(clock.monotonic())
        agents[site] = (agent, runner)
    order: list[str] = []
    for _ in range(400):
        now = clock.monotonic()
        for site, (agent, runner) in agents.items():
            if site in ends and ends[site][0] <= now:
                agent.handle(CommandEnded(ends.pop(site)[1], 0, "exited", duration_s=0.1))
            before = len(runner.named("start"))
            assert agent.step(now) is None
            for call in runner.named("start")[before:]:
                assert not ends, f"{site} started turn {call[1]} while another command ran"
                order.append(site)
                ends[site] = (now + 0.1, call[1])
        moments = [a.next_wake() for a, _ in agents.values()] + [at for at, _ in ends.values()]
        clock.advance(max(0.0, min(moments) - clock.monotonic()))
        if "alpha" in order and len(order) - order.index("alpha") >= 6:
            break
    first = order.index("alpha")
    assert order[first:first + 6] == ["alpha", "bravo"] * 3, order
    assert leader(store).turn == len(order)


def heartbeat(store: MemoryStore, site: str = "alpha") -> docs.Heartbeat:
    hb, _ = docs.parse_heartbeat(store.get(docs.heartbeat_id(site)), site)
    assert hb is not None
    return hb


def test_between_runs_before_each_wait_and_no_turn_starts_while_it_runs(store, clock) -> None:
    side = FakeSideRunner()
    agent, runner = make_agent(store, clock, repeat=True, side_runner=side, between="check-jobs")
    agent.start(clock.monotonic())
    assert heartbeat(store).state == docs.BETWEEN, "the first beat already says it"
    agent.step(clock.monotonic())
    assert side.named("start") == [("start", "between", "check-jobs", {"ENQUEUE_SITE": "alpha"})]
    assert leader(store).leader == "alpha", "it leads while between"
    assert runner.named("start") == [] and leader(store).turn == 0, "no turn is offered to a site between"
    clock.advance(1.0)
    agent.step(clock.monotonic())
    assert heartbeat(store).beat >= 2 and heartbeat(store).state == docs.BETWEEN, "it keeps beating"
    agent.handle(SideCommandEnded("between", 3, None, 1.0))
    agent.step(clock.monotonic())
    assert [c[1] for c in runner.named("start")] == [1]
    agent.handle(CommandEnded(1, 0, "exited", duration_s=0.1))
    agent.step(clock.monotonic())
    doc = leader(store)
    assert (doc.status, doc.turn) == (docs.DONE, 1), "a lone site going between passes no turn to itself"
    assert heartbeat(store).state == docs.BETWEEN
    assert len(side.named("start")) == 2, "between runs again after the turn"


def test_a_grant_that_arrives_while_between_is_not_started(store, clock) -> None:
    side = FakeSideRunner()
    agent, runner = make_agent(store, clock, "bravo", repeat=True, side_runner=side, between="check-jobs")
    agent.start(clock.monotonic())
    agent.step(clock.monotonic())
    doc = store.get("enqueue_leader")
    doc.update(turn=doc["turn"] + 1, running="bravo", status=docs.GRANTED, leader="zulu")
    store.put(doc)
    agent.step(clock.monotonic())
    assert runner.named("start") == [] and leader(store).status == docs.GRANTED
    agent.handle(SideCommandEnded("between", 0, None, 0.1))
    agent.step(clock.monotonic())
    assert len(runner.named("start")) == 1, "once waiting again, a grant that still stands is taken"


def test_between_every_runs_it_again_while_waiting_paused(store, clock) -> None:
    side = FakeSideRunner()
    agent, runner = make_agent(store, clock, repeat=True, side_runner=side, between="check-jobs",
                               between_every_s=5.0)
    started = clock.monotonic()
    agent.start(started)
    doc = store.get("enqueue_leader")
    doc["paused"] = True
    store.put(doc)
    agent.step(clock.monotonic())
    agent.handle(SideCommandEnded("between", 0, None, 0.1))
    agent.step(clock.monotonic())
    assert heartbeat(store).state == docs.WAITING and len(side.named("start")) == 1
    assert agent.next_wake() <= started + 5.0
    clock.advance(started + 5.0 - clock.monotonic())
    agent.step(clock.monotonic())
    assert len(side.named("start")) == 2 and heartbeat(store).state == docs.BETWEEN, "written at once"
    assert runner.named("start") == []


def test_a_failing_ready_check_says_not_ready_with_its_first_line_until_it_passes(store, clock) -> None:
    side = FakeSideRunner()
    agent, runner = make_agent(store, clock, repeat=True, side_runner=side, ready="ssh -O check host")
    agent.start(clock.monotonic())
    agent.step(clock.monotonic())
    assert side.named("start")[0][1:3] == ("ready", "ssh -O check host")
    agent.handle(SideCommandEnded("ready", 255, "Control socket connect: No such file", 0.1))
    clock.advance(0.5)
    agent.step(clock.monotonic())
    hb = heartbeat(store)
    assert (hb.state, hb.not_ready) == (docs.NOT_READY, "Control socket connect: No such file")
    assert runner.named("start") == [] and leader(store).turn == 0
    assert len(side.named("start")) == 2, "checked again after the ready interval (the heartbeat delay here)"
    agent.handle(SideCommandEnded("ready", 0, "Master running", 0.1))
    agent.step(clock.monotonic())
    assert heartbeat(store).state in (docs.WAITING, docs.RUNNING) and heartbeat(store).not_ready is None
    assert len(runner.named("start")) == 1


def test_a_stop_request_stops_the_side_command_and_the_agent_leaves(store, clock) -> None:
    side = FakeSideRunner()
    agent, runner = make_agent(store, clock, repeat=True, side_runner=side, between="check-jobs")
    agent.start(clock.monotonic())
    agent.step(clock.monotonic())
    agent.handle(StopRequested(signal.SIGTERM))
    assert side.named("stop") == [("stop",)]
    assert agent.step(clock.monotonic()) == Left(128 + signal.SIGTERM)
    assert heartbeat(store).state == docs.LEFT and len(side.named("start")) == 1


def _entry(store: MemoryStore, site: str) -> dict:
    return store.get("enqueue_sites")["sites"][site]


def _run_turn(agent: Agent, runner: FakeRunner, clock: FakeClock, exit_code: int) -> int:
    """Let the agent start its next command, end it with ``exit_code``; returns the turn."""
    turn = runner.named("start")[-1][1]
    agent.handle(CommandStarted(turn, 4242))
    clock.advance(0.1)
    agent.handle(CommandEnded(turn, exit_code, "exited", duration_s=0.1))
    return turn


def test_a_site_whose_command_failed_max_failures_turns_in_a_row_drains_itself_until_undrained(store, clock) -> None:
    agent, runner = make_agent(store, clock, repeat=True, max_failures=2)
    agent.start(clock.monotonic())
    agent.step(clock.monotonic())
    _run_turn(agent, runner, clock, 1)
    agent.step(clock.monotonic())
    assert len(runner.named("start")) == 2 and "drained_by" not in _entry(store, "alpha")
    last = _run_turn(agent, runner, clock, 3)
    agent.step(clock.monotonic())
    entry = _entry(store, "alpha")
    assert entry["drained"] is True and entry["drained_by"] == "alpha"
    assert (entry["drained_failures"], entry["drained_exit_code"]) == (2, 3)
    assert entry["drained_reason"] == f"its command failed 2 turns in a row (last: turn {last}, exit code 3)"
    assert len(runner.named("start")) == 2, "a drained site starts nothing"
    doc = leader(store)
    # Alone, it had passed the next turn to itself in its finishing write: it takes that back, unstarted.
    assert (doc.turn, doc.status, doc.last_how, doc.rotation) == (last + 1, docs.DONE, "not started", ())
    # An admin undrains it: it takes turns again, and one more failure does not drain it at once.
    sites = store.get("enqueue_sites")
    sites["sites"]["alpha"] = {k: v for k, v in entry.items() if not k.startswith("drained")}
    store.put(sites)
    agent.handle(DocChanged("enqueue_sites", store.get("enqueue_sites")))
    clock.advance(agent.next_wake() - clock.monotonic())
    agent.step(clock.monotonic())
    assert len(runner.named("start")) == 3
    _run_turn(agent, runner, clock, 1)
    agent.step(clock.monotonic())
    assert len(runner.named("start")) == 4 and "drained_by" not in _entry(store, "alpha")


def test_the_failures_of_a_run_once_loop_add_up_across_its_agents(store, clock) -> None:
    first, runner = make_agent(store, clock, max_failures=2)
    first.start(clock.monotonic())
    first.step(clock.monotonic())
    _run_turn(first, runner, clock, 5)
    assert first.step(clock.monotonic()) == Left(5)
    hb = store.get(docs.heartbeat_id("alpha"))
    assert (hb["failed_in_a_row"], hb["last_failed_exit_code"]) == (1, 5)
    assert "drained_by" not in _entry(store, "alpha")
    clock.advance(1.0)
    second, runner = make_agent(store, clock, max_failures=2)
    second.start(clock.monotonic())
    second.step(clock.monotonic())
    _run_turn(second, runner, clock, 6)
    assert second.step(clock.monotonic()) == Left(6)
    entry = _entry(store, "alpha")
    assert (entry["drained"], entry["drained_by"], entry["drained_failures"], entry["drained_exit_code"]) == \
        (True, "alpha", 2, 6)
    assert store.get(docs.heartbeat_id("alpha"))["failed_in_a_row"] == 0


def test_without_max_failures_a_failing_site_keeps_taking_turns(store, clock) -> None:
    agent, runner = make_agent(store, clock, repeat=True)
    agent.start(clock.monotonic())
    agent.step(clock.monotonic())
    for _ in range(4):
        _run_turn(agent, runner, clock, 1)
        agent.step(clock.monotonic())
    assert len(runner.named("start")) == 5 and _entry(store, "alpha")["drained"] is False


class _OldRules(MemoryStore):
    """A store whose access rules predate a site's drain of itself: they refuse any change to its own entry."""

    def put(self, doc: dict) -> str:
        current = self.get("enqueue_sites")
        if doc["_id"] == "enqueue_sites" and current is not None and "alpha" in current["sites"] and \
                doc["sites"].get("alpha") != current["sites"]["alpha"]:
            raise Forbidden("document 'enqueue_sites': write: forbidden (403 forbidden: enqueue: a site may not "
                            "change its registry entry)")
        return super().put(doc)


def test_a_site_whose_drain_the_rules_refuse_leaves_with_exit_4_instead_of_taking_more_turns(clock) -> None:
    store = _OldRules("enqueue")
    agent, runner = make_agent(store, clock, repeat=True, max_failures=1)
    agent.start(clock.monotonic())
    agent.step(clock.monotonic())
    _run_turn(agent, runner, clock, 2)
    with pytest.raises(SiteLockedOut, match="site alpha must drain itself .* update them with 'enqueue init'"):
        agent.step(clock.monotonic())
    assert len(runner.named("start")) == 1
    assert store.get(docs.heartbeat_id("alpha"))["state"] == docs.LEFT
    assert store.get("enqueue_sites")["sites"]["alpha"]["drained"] is False


def _run_to_the_first_command_end(agent: Agent, runner: FakeRunner, clock: FakeClock) -> None:
    agent.start(clock.monotonic())
    agent.step(clock.monotonic())
    [start] = runner.named("start")
    agent.handle(CommandStarted(start[1], 4242))
    clock.advance(0.1)
    agent.handle(CommandEnded(start[1], 0, "exited", duration_s=0.1))


def test_a_lost_answer_to_the_finishing_write_is_read_as_finished_not_as_a_revocation(store, clock, caplog) -> None:
    agent, runner = make_agent(store, clock, repeat=True)
    _run_to_the_first_command_end(agent, runner, clock)
    store.lose = the_leader_doc
    with caplog.at_level(logging.INFO, logger="enqueue"):
        assert agent.step(clock.monotonic()) is None
        assert store.lose is None, "the finishing write was not made"
        assert (leader(store).turn, leader(store).last_how) == (2, "exited"), "the write went through"
        clock.advance(agent.outage.retry_s)
        agent.step(clock.monotonic())
        clock.advance(agent.lease.next_beat_at - clock.monotonic())
        agent.step(clock.monotonic())
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == []
    assert any("shows it went through" in r.getMessage() for r in caplog.records)
    hb = store.get(docs.heartbeat_id("alpha"))
    assert hb is not None and hb.get("message") is None, hb
    assert [c[1] for c in runner.named("start")] == [1, 2], "the next turn it granted itself runs"
    record, _ = docs.parse_turn_record(store.get(docs.turn_record_id(1)))
    assert record is not None and (record.how, record.exit_code) == ("exited", 0)


def test_a_finishing_write_with_a_lost_answer_that_did_not_go_through_is_read_as_taken_away(store, clock,
                                                                                        caplog) -> None:
    agent, runner = make_agent(store, clock, repeat=True)
    _run_to_the_first_command_end(agent, runner, clock)
    store.lose = the_leader_doc
    agent.step(clock.monotonic())
    # Before the agent reads again, another leader takes turn 1 back and grants turn 2 to bravo.
    raw = store.get("enqueue_leader")
    raw.update(leader="bravo", status="granted", turn=2, running="bravo", last_how="revoked", last_exit_code=None,
               ended_at="2026-01-01 00:00:09", updated_by="bravo")
    store.put(raw)
    clock.advance(agent.outage.retry_s)
    with caplog.at_level(logging.INFO, logger="enqueue"):
        agent.step(clock.monotonic())
    assert any("was taken away" in r.getMessage() for r in caplog.records if r.levelno == logging.ERROR)
    assert agent.lease.message == "turn 1 was revoked while running"


def _alpha_confirms_turn_1_and_hears_nothing(store: AnswerLosingStore, clock: FakeClock) -> tuple[Agent, FakeRunner]:
    """Bravo granted alpha turn 1; alpha's confirm goes through and its answer is lost."""
    store.put(docs.render_leader(docs.LeaderDoc("enqueue_leader", leader="bravo", running="alpha", status="granted",
                                                turn=1, rotation=("alpha", "bravo"))))
    agent, runner = make_agent(store, clock)
    agent.start(clock.monotonic())
    store.lose = the_leader_doc
    agent.step(clock.monotonic())
    return agent, runner


def test_a_lost_answer_to_a_confirm_runs_the_turn_though_the_leader_wrote_the_doc_since(store, clock) -> None:
    agent, runner = _alpha_confirms_turn_1_and_hears_nothing(store, clock)
    assert store.lose is None and leader(store).status == docs.RUNNING, "the confirm went through"
    assert runner.named("start") == []
    # The leader publishes a new rotation over the confirmed turn before the agent reads again.
    raw = store.get("enqueue_leader")
    raw.update(rotation=["alpha"], updated_by="bravo")
    store.put(raw)
    for _ in range(8):
        clock.advance(0.2)
        agent.step(clock.monotonic())
    assert [c[1] for c in runner.named("start")] == [1]
    assert store.get(docs.turn_record_id(1)) is None, "not recorded as abandoned"
    assert leader(store).status == docs.RUNNING


def test_a_lost_confirm_tried_again_on_the_old_view_is_still_known_when_the_second_try_hears_nothing(
        store, clock) -> None:
    """The confirm went through unheard; the agent, still seeing the grant, confirms again: that try loses its
    race and the read after it loses its answer. The doc then shows the first try's started_at: the agent runs
    the turn it confirmed, rather than ending it as an earlier agent's orphan (simulation seed 2702)."""
    agent, runner = _alpha_confirms_turn_1_and_hears_nothing(store, clock)
    assert leader(store).status == docs.RUNNING, "the first confirm went through"
    first_started_at = leader(store).started_at
    clock.advance(1.5)  # the second try writes another started_at
    lost_reads = []
    real_get = store.get

    def get_losing_one_answer(doc_id: str):  # type: ignore[no-untyped-def]
        doc = real_get(doc_id)
        if doc_id == "enqueue_leader" and not lost_reads:
            lost_reads.append(doc_id)
            raise Unreachable("get enqueue_leader: answer lost (test)")
        return doc
    store.get = get_losing_one_answer  # type: ignore[method-assign]
    agent.step(clock.monotonic())
    assert lost_reads, "the second try's read lost its answer"
    store.get = real_get  # type: ignore[method-assign]
    for _ in range(8):
        clock.advance(0.2)
        agent.step(clock.monotonic())
    assert [c[1] for c in runner.named("start")] == [1]
    assert store.get(docs.turn_record_id(1)) is None, "not recorded as abandoned"
    assert leader(store).holds("alpha", 1) and leader(store).started_at == first_started_at


def test_a_deletion_the_feed_tells_of_late_stops_no_command_but_a_real_one_does(store, clock) -> None:
    agent, runner = make_agent(store, clock, repeat=True)
    agent.start(clock.monotonic())
    agent.step(clock.monotonic())
    assert runner.named("start")
    # News of a deletion from before the document's current revision (a thawed agent's feed backlog).
    agent.handle(DocChanged("enqueue_leader", None))
    agent.step(clock.monotonic())
    assert runner.named("stop") == []
    assert leader(store).holds("alpha", 1)
    store.delete(store.get("enqueue_leader"))
    agent.handle(DocChanged("enqueue_leader", None))
    agent.step(clock.monotonic())
    assert runner.named("stop") == [("stop", "revoked")]


def _leading_alpha_with_a_grant_to_a_site_that_left(store: AnswerLosingStore, clock: FakeClock) -> Agent:
    """Alpha leads; turn 6 is granted to bravo, which has no heartbeat: alpha takes it back at its first step."""
    store.put(docs.render_sites(docs.new_sites_doc("enqueue_sites"), {
        "bravo": {"heartbeat_doc": docs.heartbeat_id("bravo"), "drained": False, "added_at": "-"}}))
    store.put(docs.render_leader(docs.LeaderDoc("enqueue_leader", leader="alpha", leader_term=1, running="bravo",
                                                status="granted", turn=6, rotation=("alpha", "bravo"))))
    agent, _ = make_agent(store, clock, repeat=True)
    agent.start(clock.monotonic())
    return agent


def _once_before_the_leader_doc_is_written(store: AnswerLosingStore, change: dict) -> None:
    def meanwhile(doc: dict) -> None:
        if doc.get("_id") == "enqueue_leader":
            store.meanwhile = None
            raw = store.get("enqueue_leader")
            raw.update(change)
            store.put(raw)
    store.meanwhile = meanwhile


def test_a_revocation_that_lost_its_race_to_another_leaders_keeps_the_record_that_one_relied_on(store,
                                                                                               clock) -> None:
    agent = _leading_alpha_with_a_grant_to_a_site_that_left(store, clock)
    # Another leader takes turn 6 back first; its own record write found alpha's and added nothing.
    _once_before_the_leader_doc_is_written(store, {"leader": "echo", "status": "done", "last_how": "not started",
                                                   "updated_by": "echo"})
    agent.step(clock.monotonic())
    assert leader(store).leader == "echo" and leader(store).status == docs.DONE
    record, _ = docs.parse_turn_record(store.get(docs.turn_record_id(6)))
    assert record is not None and (record.site, record.how) == ("bravo", "not started"), "turn 6 ended: recorded"
    assert docs.turn_record_id(6) not in store.deleted


def test_a_revocation_that_lost_its_race_while_the_turn_goes_on_withdraws_its_record(store, clock) -> None:
    agent = _leading_alpha_with_a_grant_to_a_site_that_left(store, clock)
    # The write in between leaves turn 6 granted to bravo: alpha's record of ending it is false.
    _once_before_the_leader_doc_is_written(store, {"paused": True, "updated_by": "admin"})
    agent.step(clock.monotonic())
    assert store.deleted[:1] == [docs.turn_record_id(6)]


def test_a_withdrawn_record_is_written_back_when_another_leader_ended_the_turn_meanwhile(store, clock) -> None:
    """Alpha's write loses to echo's election; while alpha withdraws its record, echo takes turn 6 back,
    relying on that record (echo's own record write found it)."""
    agent = _leading_alpha_with_a_grant_to_a_site_that_left(store, clock)

    def meanwhile(doc: dict) -> None:
        store.meanwhile = None  # echo's own writes go straight through
        raw = store.get("enqueue_leader")
        if doc.get("_id") == "enqueue_leader" and raw["leader"] == "alpha":
            raw.update(leader="echo", leader_term=2, updated_by="echo")  # elected: turn 6 still granted
            store.put(raw)
        elif doc.get("_id") == docs.turn_record_id(6) and raw["leader"] == "echo" and "_deleted" in doc:
            raw.update(status="done", last_how="not started", updated_by="echo")
            store.put(raw)
            return
        store.meanwhile = meanwhile

    store.meanwhile = meanwhile
    agent.step(clock.monotonic())
    assert store.deleted == [docs.turn_record_id(6)], "alpha withdrew its record"
    assert leader(store).status == docs.DONE and leader(store).leader == "echo"
    record, _ = docs.parse_turn_record(store.get(docs.turn_record_id(6)))
    assert record is not None and (record.site, record.how) == ("bravo", "not started")


class CallLoggingStore(MemoryStore):
    """A memory store that logs its full reads and its leader doc writes, in order."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.calls: list[str] = []

    def get_many(self, doc_ids: list[str]) -> dict:
        self.calls.append("full read")
        return super().get_many(doc_ids)

    def put(self, doc: dict) -> str:
        if doc.get("_id") == "enqueue_leader":
            self.calls.append(f"leader doc {doc.get('status')} {doc.get('turn')}")
        return super().put(doc)


def deliver_watched(agent: Agent, store: MemoryStore) -> None:
    """Play the changes feed: hand the agent the current content of every document it follows."""
    for doc_id in agent.watched_ids:
        agent.handle(DocChanged(doc_id, store.get(doc_id)))


def test_an_heir_confirms_its_granted_turn_before_its_first_full_read_as_leader(clock) -> None:
    """Run-once alpha leads, runs turn 1 and hands bravo turn 2 with the leadership (PROTOCOL §3.3.5).

    Bravo hears of it from the feed: the grant names bravo's agent, but
    bravo has read nothing since its run of beats began, so it cannot tell
    the grant came after (PROTOCOL §3.5.7): its first write is the confirm,
    and only then does it read what it follows as leader; it leads from there.
    """
    store = CallLoggingStore("enqueue")
    alpha, alpha_runner = make_agent(store, clock, "alpha")
    bravo, bravo_runner = make_agent(store, clock, "bravo")
    alpha.start(clock.monotonic())
    bravo.start(clock.monotonic())
    deliver_watched(alpha, store)
    alpha.step(clock.monotonic())
    assert [c[1] for c in alpha_runner.named("start")] == [1]
    deliver_watched(alpha, store)
    alpha.handle(CommandEnded(1, 0, "exited", duration_s=0.1))
    assert alpha.step(clock.monotonic()) == Left(0)
    doc = leader(store)
    assert (doc.leader, doc.running, doc.status, doc.turn, doc.grantee) == ("bravo", "bravo", docs.GRANTED, 2,
                                                                            "bravo-1")
    assert bravo.lease.floor is None
    store.calls.clear()
    bravo.handle(DocChanged("enqueue_leader", store.get("enqueue_leader")))
    assert bravo.shared.need_full_read, "as leader, bravo follows more than it has read"
    bravo.step(clock.monotonic())
    assert [c[1] for c in bravo_runner.named("start")] == [2]
    assert store.calls[0] == "leader doc running 2", store.calls
    assert "full read" in store.calls, "the read follows the confirm within the same step"
    assert not bravo.shared.need_full_read
