"""One turn's command under its fence: when the stop signal and SIGKILL are due (docs/PROTOCOL.md §3.6).

The supervisor (``enqueue.supervisor``) keeps one ``FencedTurn`` for the
command it runs. This module is the deadline arithmetic only: times are
``time.monotonic()`` values passed in, no signal is sent here, so every rule
below is a function of the turn's state and ``now``.

Guarantees
----------
* The stop signal (SIGTERM unless ``enqueue run --stop-signal`` names
  another) is due at ``deadline - grace``, SIGKILL at ``deadline``; each is
  handed out by ``due_signals`` at most once, the stop signal first. The
  "SIGTERM moment" below is the moment the stop signal is due, whichever
  signal it is.
* Deadlines only move forward, and only through ``extend`` while the stop
  signal is neither sent nor due: once the SIGTERM moment has passed, the fence is final.
* ``stop`` makes the stop signal due now and SIGKILL a grace later, never later than
  the deadline already set; the first cause to end a turn is the one kept.

Not guaranteed: that a signal handed out reaches anything (the caller sends
it, to a group that may already be gone), nor anything about wall-clock time.
"""

from __future__ import annotations

import signal

from enqueue.outcomes import Outcome

# Not typing.TYPE_CHECKING: importing typing costs the supervisor about 1 MB of resident memory.
TYPE_CHECKING = False
if TYPE_CHECKING:  # the supervisor starts on every agent start: keep its imports few
    from typing import List, Optional


def past_sigterm_moment(now: float, deadline: float, grace: float) -> bool:
    """A command due to be dead at ``deadline`` would already be told to stop at ``now``."""
    return now >= deadline - grace


class FencedTurn:
    """The running command (and, once ``status`` is set, its leftovers).

    Invariant: the times move later only through ``extend`` and only while
    ``term_sent`` is false; once set, ``term_sent``/``kill_sent`` stay set.
    The turn is over (reported) only when its process group is empty or
    ``drain_until`` has passed.
    """

    __slots__ = ("turn", "pid", "started_at", "grace", "stop_signal", "term_at", "kill_at", "term_sent",
                 "kill_sent", "how", "reason", "status", "drain_until")

    def __init__(self, turn: int, pid: int, started_at: float, deadline: float, grace: float,
                 stop_signal: int = signal.SIGTERM) -> None:
        self.turn = turn
        self.pid = pid
        self.started_at = started_at
        self.grace = grace
        self.stop_signal = stop_signal
        self.term_at = deadline - grace
        self.kill_at = deadline
        self.term_sent = False
        self.kill_sent = False
        self.how: Optional[str] = None
        self.reason: Optional[str] = None
        self.status: Optional[int] = None
        self.drain_until = 0.0

    def extend(self, deadline: float, now: float) -> None:
        """Move the deadline later, unless the fence is already final or the command has exited."""
        if self.status is not None:
            return
        if self.term_sent or now >= self.term_at:
            return
        if deadline <= self.kill_at:
            return
        self.kill_at = deadline
        self.term_at = deadline - self.grace

    def stop(self, how: str, reason: Optional[str], now: float) -> None:
        """Make the stop signal due now and SIGKILL a grace later (or at the deadline,
        if that comes first). The first cause to end a turn is the one kept."""
        if self.status is not None:
            return
        if self.how is None:
            self.how, self.reason = how, reason
        if not self.term_sent:
            self.term_at = now
        self.kill_at = min(self.kill_at, now + self.grace)

    def due_signals(self, now: float) -> List[int]:
        """The signals to send the group now, in order, each marked sent: the stop
        signal at ``term_at``, SIGKILL at ``kill_at``. A signal due for the deadline
        makes the outcome ``fenced`` unless another cause came first."""
        if self.status is not None:
            return []
        due: List[int] = []
        if not self.term_sent and now >= self.term_at:
            self.term_sent = True
            self.how = self.how or Outcome.FENCED.value
            due.append(self.stop_signal)
        if not self.kill_sent and now >= self.kill_at:
            self.kill_sent = True
            self.how = self.how or Outcome.FENCED.value
            due.append(signal.SIGKILL)
        return due

    def exited(self, status: int, now: float) -> None:
        """The main process has exited with wait ``status``: its leftovers get a grace to go."""
        self.status = status
        self.drain_until = now + self.grace

    def next_due(self) -> Optional[float]:
        """When the next timed action falls due: the end of the drain once the
        command has exited, else the first signal not yet sent; None when none is."""
        if self.status is not None:
            return self.drain_until
        due = [t for t, sent in ((self.term_at, self.term_sent), (self.kill_at, self.kill_sent)) if not sent]
        return min(due) if due else None
