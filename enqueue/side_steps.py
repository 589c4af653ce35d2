"""The site's side commands outside its turns: ``--between`` (monitoring) and ``--ready`` (a readiness check).

Outside any turn of the site, in this order:

* the between command runs before each wait for a turn (when the agent
  starts, and after every turn of the site), and again whenever
  ``between_every`` has passed since it last started, also while the site
  waits (paused, drained, others' turns): monitoring goes on for days;
* then the readiness check runs, and again every ``ready_every`` while it
  fails; a between run owes a fresh check, since the site waits again after it;
* only then does the site wait for a turn.

One side command at a time, never during the site's own turn. What the site
says meanwhile (``state``) is ``between`` while a between run is running or
owed, ``not_ready`` while the check has not passed, else ``waiting``: only
``waiting`` asks for a turn (``enqueue.documents.heartbeat.wants_turn``), so
the leader offers none and the agent starts no granted turn meanwhile.

Pure: ``SideSteps`` keeps what happened (monotonic seconds handed in) and
answers what to start next, what to say and when to look again. It runs
nothing; the agent asks a ``SideRunner`` (enqueue.side_command is the real one).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from enqueue.documents import BETWEEN, NOT_READY, WAITING

BETWEEN_COMMAND = "between"
READY_COMMAND = "ready"

#: How often a failing readiness check runs again (or every heartbeat delay, when that is shorter).
READY_RETRY_S = 30.0

_OWED, _FAILED, _PASSED = "owed", "failed", "passed"


class SideRunner(Protocol):
    """What the agent asks of the runner of its side commands.

    Every ``start`` is answered by one ``SideCommandEnded`` event handed to
    ``Agent.handle`` (also when the command could not be started).
    """

    def start(self, name: str, command_line: str, env: dict[str, str]) -> None:
        """Run ``command_line`` with ``sh -c`` in a process group of its own (``env`` added). Returns at once."""

    def stop(self) -> None:
        """Stop the running side command: SIGTERM to its group, SIGKILL after the kill grace."""


@dataclass(frozen=True)
class SidePlan:
    """The side commands a site was started with (None: not given)."""

    between: str | None = None
    between_every_s: float | None = None
    ready: str | None = None
    ready_every_s: float = READY_RETRY_S

    @property
    def any(self) -> bool:
        """Some side command is configured."""
        return self.between is not None or self.ready is not None


class SideSteps:
    """Which side command is due, and what the site says meanwhile; see the module docstring."""

    def __init__(self, plan: SidePlan) -> None:
        self.plan = plan
        self.running: str | None = None
        self.between_owed = plan.between is not None
        self.between_started_at: float | None = None
        self.ready = _PASSED if plan.ready is None else _OWED
        self.ready_checked_at: float | None = None
        self.not_ready_line: str | None = None

    def state(self) -> str:
        """What the site says outside a turn: ``between``, ``not_ready`` or ``waiting``."""
        if self.running == BETWEEN_COMMAND or self.between_owed:
            return BETWEEN
        if self.ready != _PASSED:
            return NOT_READY
        return WAITING

    def state_after_turn(self) -> str:
        """What the site says right after a turn of its own (``turn_ended`` makes it so)."""
        if self.plan.between is not None:
            return BETWEEN
        return NOT_READY if self.plan.ready is not None else WAITING

    def due(self, now: float) -> str | None:
        """The side command to start at ``now`` (``between`` first, then ``ready``), or None."""
        if self.running is not None:
            return None
        if self._between_due(now):
            return BETWEEN_COMMAND
        if self.ready == _OWED or (self.ready == _FAILED and now >= self._ready_again_at()):
            return READY_COMMAND
        return None

    def next_due_at(self) -> float | None:
        """The monotonic moment a side command falls due by time alone; None when none will."""
        if self.running is not None:
            return None
        moments = []
        if self.plan.between_every_s is not None and self.between_started_at is not None:
            moments.append(self.between_started_at + self.plan.between_every_s)
        if self.ready == _FAILED:
            moments.append(self._ready_again_at())
        return min(moments, default=None)

    def command_line(self, name: str) -> str:
        """The command line of side command ``name``."""
        line = self.plan.between if name == BETWEEN_COMMAND else self.plan.ready
        assert line is not None
        return line

    def started(self, name: str, now: float) -> None:
        """Side command ``name`` was started at ``now``."""
        self.running = name
        if name == BETWEEN_COMMAND:
            self.between_owed = False
            self.between_started_at = now
        else:
            self.ready_checked_at = now

    def ended(self, name: str, exit_code: int | None, first_line: str | None) -> None:
        """Side command ``name`` ended; a report for one that is not running is ignored."""
        if name != self.running:
            return
        self.running = None
        if name == BETWEEN_COMMAND:
            if self.plan.ready is not None:
                self.ready = _OWED
            return
        if exit_code == 0:
            self.ready, self.not_ready_line = _PASSED, None
        else:
            self.ready = _FAILED
            self.not_ready_line = first_line or f"exit code {exit_code}"

    def turn_ended(self) -> None:
        """A turn of the site ended: the between command and the readiness check come again before the next wait."""
        self.between_owed = self.plan.between is not None
        if self.plan.ready is not None:
            self.ready = _OWED

    def _between_due(self, now: float) -> bool:
        if self.plan.between is None:
            return False
        if self.between_owed:
            return True
        every, last = self.plan.between_every_s, self.between_started_at
        return every is not None and last is not None and now >= last + every

    def _ready_again_at(self) -> float:
        assert self.ready_checked_at is not None
        return self.ready_checked_at + self.plan.ready_every_s
