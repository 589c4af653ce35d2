"""What the agent does about its side commands (``--between``, ``--ready``): runs them, says their state, takes turns.

``enqueue.side_steps`` decides which side command is due and what the site
says meanwhile; this module acts on it for the agent: it starts the due
command through the ``SideRunner``, takes in its end, stops it on a stop
request, and says the state that follows in the heartbeat (``Lease``).

Guarantees
----------
* One side command at a time, and only while the site takes part: never
  during its own turn (the agent asks only outside one), not once stopping,
  not after a run-once agent's turn (``go_on``).
* A turn granted to the site is taken only when its heartbeat says it wants
  one (``wants_turn_now``: ``enqueue.documents.heartbeat.wants_turn``), so
  never while a side command runs or is owed, nor while the check fails.
* ``ended`` writes nothing: the next heartbeat carries the ``not_ready`` line.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Callable

from enqueue import documents as docs
from enqueue.documents import NOT_READY
from enqueue.durations import format_duration
from enqueue.events import SideCommandEnded
from enqueue.side_steps import READY_COMMAND, READY_RETRY_S, SidePlan, SideRunner, SideSteps

if TYPE_CHECKING:
    from enqueue.config import AgentSettings
    from enqueue.lease import Lease

log = logging.getLogger("enqueue.agent")


class SideDuties:
    """The side commands of one agent; see the module docstring."""

    def __init__(self, settings: AgentSettings, lease: Lease, runner: SideRunner | None) -> None:
        self.me = settings.site
        self.repeat = bool(settings.repeat)
        self.lease = lease
        self.steps = SideSteps(SidePlan(settings.between, settings.between_every_s, settings.ready,
                                        min(READY_RETRY_S, settings.timing.heartbeat_delay_s)))
        self.runner = runner
        if self.steps.plan.any and runner is None:
            raise ValueError("--between and --ready need a side runner")

    def go_on(self, *, stopping: bool, turns_done: int) -> bool:
        """Side commands run while I take part: not once stopping, nor after a run-once agent's turn."""
        return self.steps.plan.any and not stopping and (self.repeat or turns_done == 0)

    def next_due_at(self, *, stopping: bool, turns_done: int) -> float | None:
        """The moment a side command falls due by time alone, while they go on; else None."""
        return self.steps.next_due_at() if self.go_on(stopping=stopping, turns_done=turns_done) else None

    def wants_turn_now(self, *, stopping: bool, repeat: bool) -> bool:
        """Whether I take a turn granted to me now: the one rule (``wants_turn``) on what my heartbeat says."""
        return not stopping and docs.wants_turn(self.lease.state, repeat)

    def state(self) -> tuple[str, str | None]:
        """The state I say outside a turn, and the ``not_ready`` line that goes with it."""
        state = self.steps.state()
        return state, (self.steps.not_ready_line or "checking") if state == NOT_READY else None

    def step(self, now: float, set_state: Callable[[str], None]) -> None:
        """Start the side command that is due, if any, and say the state that follows."""
        name = self.steps.due(now)
        if name is not None:
            assert self.runner is not None
            self.steps.started(name, now)
            log.info("running the %s command: %s", name, self.steps.command_line(name))
            self.runner.start(name, self.steps.command_line(name), {"ENQUEUE_SITE": self.me})
        state, self.lease.not_ready = self.state()
        set_state(state)

    def ended(self, ev: SideCommandEnded) -> None:
        """Take in the end of a side command; the next step says the state that follows."""
        if ev.name != self.steps.running:
            return
        took = "" if ev.duration_s is None else f" after {ev.duration_s:.1f} s"
        if ev.name != READY_COMMAND:
            log.info("the %s command exited with code %s%s", ev.name, ev.exit_code, took)
        elif ev.exit_code == 0:
            log.info("ready: the ready command exited with code 0%s", took)
        else:
            log.warning("not ready: the ready command exited with code %s%s: %s; checking again in %s",
                        ev.exit_code, took, ev.first_line or "(no output)",
                        format_duration(self.steps.plan.ready_every_s))
        self.steps.ended(ev.name, ev.exit_code, ev.first_line)
        # Only the field: the next heartbeat carries it (``handle`` writes nothing).
        self.lease.not_ready = self.state()[1]

    def stop(self) -> None:
        """Stop the running side command, if any (a stop request)."""
        if self.steps.running is not None and self.runner is not None:
            log.info("stopping the %s command", self.steps.running)
            self.runner.stop()
