"""Holes the simulation found in the real agent, each kept as a scenario that failed before its fix.

Each test runs the real agents without random faults and aims one fault at
one moment (``Schedule.aim``, or an action when a command starts), then lets
the simulation judge: every invariant must hold.
"""

from __future__ import annotations

from typing import Callable

from enqueue import documents as docs
from enqueue.config import DEFAULT_LEADER_DOC

from tools.simulation.runner import Command
from tools.simulation.simulation import Options, Simulation

QUIET = Options(steps=1500, faults=frozenset())


def _when_a_command_starts(sim: Simulation, wanted: Callable[[Command], bool],
                           act: Callable[[Command], None]) -> list[Command]:
    """Run ``act`` once, right after the first command start that ``wanted`` accepts; returns [that command]."""
    real = sim.ledger.starting
    done: list[Command] = []

    def starting(cmd: Command, now: float) -> None:
        real(cmd, now)
        if not done and wanted(cmd):
            done.append(cmd)
            sim.world.after(0.0, lambda: act(cmd), "aimed fault")

    sim.ledger.starting = starting  # type: ignore[method-assign]
    return done


def _leader(sim: Simulation) -> docs.LeaderDoc | None:
    doc, _ = docs.parse_leader(sim.store.get(DEFAULT_LEADER_DOC), DEFAULT_LEADER_DOC)
    return doc


def _site(sim: Simulation, name: str):
    return next(s for s in sim.sites if s.name == name)


def _revoking(sim: Simulation, holder: str) -> Callable[[], bool]:
    """True while the leader doc still gives a turn that may run (running, or granted to the agent that started on
    it) to ``holder``, whose agent is dead."""
    def check() -> bool:
        doc = _leader(sim)
        proc = _site(sim, holder).process
        return doc is not None and doc.holds(holder) and doc.may_run and \
            (proc is None or not proc.alive)
    return check


def _kill_the_runner_and_aim_at_its_revocation(sim: Simulation, fault: str) -> list[Command]:
    """Kill the agent whose command runs (started again only well after the leader has taken its turn
    away) and give ``fault`` to the leader's write that takes the turn away."""
    real_ended = sim.process_ended

    def act(cmd: Command) -> None:
        doc = _leader(sim)
        assert doc is not None and doc.leader is not None and doc.leader != cmd.site
        sim.process_ended = lambda proc: sim.world.after(  # type: ignore[method-assign]
            3 * sim.timing.heartbeat_stale_s, lambda: sim._start(proc.site), "late restart")
        _site(sim, cmd.site).process.kill("aimed")
        sim.process_ended = real_ended  # type: ignore[method-assign]
        sim.schedule.aim(doc.leader, "put enqueue_leader", fault, _revoking(sim, cmd.site))

    def wanted(cmd: Command) -> bool:
        doc = _leader(sim)
        return cmd.start > 3.0 and doc is not None and doc.leader not in (None, cmd.site)

    return _when_a_command_starts(sim, wanted, act)


def _judged(sim: Simulation) -> list[str]:
    result = sim.run()
    assert result.commands > 5
    return result.violations


def test_a_lost_answer_to_the_leaders_revocation_leaves_the_turn_recorded() -> None:
    sim = Simulation(3, QUIET)
    done = _kill_the_runner_and_aim_at_its_revocation(sim, "lost-answer")
    assert _judged(sim) == []
    assert done and not sim.schedule.aimed, "the aimed fault never struck"
    assert sim.schedule.counts.get("lost-answer") == 1


def test_a_leader_dying_right_after_its_revocation_leaves_the_turn_recorded() -> None:
    sim = Simulation(3, QUIET)
    done = _kill_the_runner_and_aim_at_its_revocation(sim, "crash-after")
    assert _judged(sim) == []
    assert done and not sim.schedule.aimed, "the aimed fault never struck"
    assert sim.schedule.counts.get("crash") == 1


def test_deleting_the_leader_doc_while_a_turn_runs_and_starting_an_agent_then_reuses_no_turn() -> None:
    sim = Simulation(5, QUIET)

    def act(cmd: Command) -> None:
        raw = sim.store.get(DEFAULT_LEADER_DOC)
        sim.world.writer = "admin"
        sim.store.delete(raw)
        sim.world.writer = None
        other = next(s for s in sim.sites if s.name != cmd.site)
        other.process.kill("aimed")
        sim._start(other)

    done = _when_a_command_starts(sim, lambda cmd: cmd.start > 5.0 and cmd.natural_end - cmd.start > 1.0, act)
    assert _judged(sim) == []
    assert done
    turns = [c.turn for c in sim.ledger.commands]
    assert turns == sorted(set(turns))


def test_a_record_written_late_says_when_the_command_ended() -> None:
    sim = Simulation(4, QUIET)
    done = _when_a_command_starts(sim, lambda cmd: cmd.start > 3.0 and cmd.natural_end - cmd.start < 0.8,
                                  lambda cmd: _site(sim, cmd.site).process.freeze(3.0))
    assert _judged(sim) == []
    assert done


def test_init_after_the_leader_doc_was_deleted_while_a_turn_runs_reuses_no_turn() -> None:
    sim = Simulation(5, QUIET)

    def act(cmd: Command) -> None:
        sim.world.writer = "admin"
        sim.store.delete(sim.store.get(DEFAULT_LEADER_DOC))
        sim.admin.init([s.name for s in sim.sites])
        sim.world.writer = None

    done = _when_a_command_starts(sim, lambda cmd: cmd.start > 5.0 and cmd.natural_end - cmd.start > 1.0, act)
    assert _judged(sim) == []
    assert done
    assert sim.store.get(DEFAULT_LEADER_DOC) is not None  # rebuilt by the agents


def test_a_lost_answer_to_a_confirm_runs_the_turn_it_confirmed() -> None:
    sim = Simulation(6, QUIET)

    def confirming() -> bool:
        doc = _leader(sim)
        return sim.world.now > 3.0 and doc is not None and doc.running == "bravo" and \
            doc.status == docs.GRANTED and doc.leader != "bravo"

    sim.schedule.aim("bravo", "put enqueue_leader", "lost-answer", confirming)
    assert _judged(sim) == []
    assert not sim.schedule.aimed and sim.schedule.counts.get("lost-answer") == 1
    records = [docs.parse_turn_record(raw)[0] for raw in sim.store.list_prefix(docs.TURN_PREFIX)]
    assert all(r is not None and r.how != "abandoned" for r in records), records
