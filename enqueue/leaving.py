"""Leaving: a stop request, the bounded time for the last writes, and the exit code.

A stopping agent ends its command first (the runner's grace policy bounds
that), then writes what it still owes (the end of its turn, its records, a
step-down, ``left``). Those writes get ``heartbeat_stale``, at most
``STOP_WRITES_MAX_S``, from the moment nothing runs any more: a service
manager's stop timeout must not run out while the database is away.

Leaving without them is safe: the command is dead, and the leader doc still
names the turn, which the leader takes back (and records) after
``heartbeat_stale`` of this site's silence, exactly as after a crash.

Exit code: ``128 + signal`` when stopped by a signal, else the last
command's exit code (``EXIT_FAILURE`` when no command ran to its end),
handed to the driver in ``Left``, what the agent's ``step`` returns once done.
"""

from __future__ import annotations

import logging
import signal
from dataclasses import dataclass

from enqueue.errors import EXIT_FAILURE, EnqueueError

log = logging.getLogger("enqueue.agent")

# The longest a stopping agent retries its last writes once its command is gone.
STOP_WRITES_MAX_S = 30.0


@dataclass(frozen=True)
class Left:
    """The agent is done; the process exits with ``exit_code`` (``error``: said in one line, then exits)."""

    exit_code: int
    error: EnqueueError | None = None


class Leaving:
    """Whether the agent was told to stop, and how long its last writes may take."""

    def __init__(self, heartbeat_stale_s: float) -> None:
        self._window_s = min(STOP_WRITES_MAX_S, heartbeat_stale_s)
        self.signum: int | None = None
        self.give_up_at: float | None = None

    @property
    def stopping(self) -> bool:
        """A stop was requested."""
        return self.signum is not None

    def request(self, signum: int) -> None:
        """Stop on ``signum`` (the last signal decides the exit code)."""
        if self.signum is None:
            log.info("stopping on %s", signal.Signals(signum).name)
        self.signum = signum

    def writes_overdue(self, now: float, command_may_run: bool) -> bool:
        """Stopping, the command gone, and the last writes have been tried for the whole window."""
        if self.signum is None or command_may_run:
            return False
        if self.give_up_at is None:
            self.give_up_at = now + self._window_s
        return now >= self.give_up_at

    def exit_code(self, last_exit_code: int | None) -> int:
        """The process's exit code."""
        if self.signum is not None:
            return 128 + self.signum
        return EXIT_FAILURE if last_exit_code is None else last_exit_code

    @staticmethod
    def say_unwritten(turn: int | None, record_turns: list[int]) -> None:
        """Log what a stop leaves unwritten because the database is out of reach."""
        missing = []
        if turn is not None:
            missing.append(f"the end of turn {turn}")
        if record_turns:
            missing.append("the record of turn " + ", ".join(str(t) for t in record_turns))
        log.error("stopping without writing %s: the database is out of reach; the leader takes the turn back "
                  "after heartbeat_stale and records it", " and ".join(missing) or "'left'")
