"""A turn held by code in this process: a ``CommandRunner`` that runs no process.

``enqueue.turn`` drives a real agent in a background thread with a
``BlockRunner`` in place of the supervisor. The agent "starts the command"
when it has confirmed the turn: the runner hands the turn to the waiting
caller as a ``Turn``, and the caller's ``with`` block is the command. The
block's end is the command's end (exit code 0, or 1 when it raised).

Guarantees
----------
* ``Turn.lost`` is set, once and for good, at the first of: the lease's
  SIGTERM moment (``deadline - kill_grace``, where the supervisor would
  have sent a command SIGTERM) passing without a renewal; the agent asking
  to stop the turn (revoked, skipped, stopped); the agent ending while the
  block runs. A separate watchdog thread keeps the SIGTERM moment, so a
  driver thread stuck in a store call cannot delay it.
* The agent learns of the block's end only from ``end``; ``how`` is the
  first cause, as the supervisor reports it: ``fenced`` if the SIGTERM
  moment came first, ``stopped`` (with the agent's reason) if the agent
  asked first, else ``exited``.

Not guaranteed, and not possible in-process: that the block stops. Nothing
kills it when ``lost`` is set; the block must call ``Turn.check()`` before
every step that must not happen outside its turn, and pass ``Turn.number``
(the fencing token) to systems that can refuse a stale one.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from typing import Callable

from enqueue.errors import TurnLost
from enqueue.events import CommandEnded, CommandStarted, Event, StartFailed, StopRequested
from enqueue.outcomes import Outcome

log = logging.getLogger("enqueue.api")


class Turn:
    """The site's turn while in-process code holds it (what ``with enqueue.turn(...) as t`` gives).

    ``number`` is the turn's number, the fencing token: every turn of the
    database has a higher one than the turns before it. ``lost`` is a
    ``threading.Event`` set when the turn can no longer be counted on (see
    ``check``); ``reason`` says why (``fenced``, ``revoked``, ``skipped``,
    ``stopped``, ``agent-gone``).
    """

    def __init__(self, site: str, number: int, lost: threading.Event, reason: Callable[[], str | None]) -> None:
        self.site = site
        self.number = number
        self.lost = lost
        self._reason = reason

    @property
    def reason(self) -> str | None:
        """Why the turn was lost; None while it is held."""
        return self._reason()

    def check(self) -> None:
        """Raise ``TurnLost`` if the turn is lost; call it before every irreversible step.

        Passing the check is no promise for the step after it: the lease may
        run out a moment later. Guard the step itself with ``number`` where
        the system written to can check a fencing token.
        """
        if self.lost.is_set():
            raise TurnLost(f"turn {self.number} of site {self.site} is no longer this site's ({self.reason})")

    def __repr__(self) -> str:
        return f"Turn(site={self.site!r}, number={self.number}, lost={self.lost.is_set()})"


class BlockRunner:
    """The agent's ``CommandRunner`` for one in-process turn; see the module docstring.

    ``attach`` must be called (by the driver, with its inbox's ``put``)
    before the agent starts; ``wait_for_turn`` and ``end`` are called from
    the caller's thread, the port's methods from the agent's.
    """

    def __init__(self, site: str, kill_grace_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._site = site
        self._grace = kill_grace_s
        self._clock = clock
        self._cond = threading.Condition()
        self._deliver: Callable[[Event], None] | None = None
        self._pending: collections.deque[Event] = collections.deque()
        self.lost = threading.Event()
        self._reason: str | None = None
        self._turn: int | None = None
        self._term_at = 0.0
        self._started_mono = 0.0
        self._ended = False
        self._agent_done = False
        self._refused = False
        self._watchdog: threading.Thread | None = None

    # ------------------------------------------------------------------ the driver's side

    def attach(self, deliver: Callable[[Event], None]) -> "BlockRunner":
        """Report through ``deliver`` from now on (events asked for before are handed over now)."""
        with self._cond:
            self._deliver = deliver
            while self._pending:
                deliver(self._pending.popleft())
        return self

    def open(self) -> None:
        """Nothing to start: there is no supervisor."""

    def start(self, turn: int, argv: list[str], env: dict[str, str], deadline: float) -> None:
        with self._cond:
            if self._turn is not None or self._refused:
                self._send(StartFailed(turn, None, "not started: this runner holds one turn, and its caller is "
                                                   "done with it"))
                return
            if self._clock() >= deadline - self._grace:
                # The supervisor's rule: nothing starts on a lease whose SIGTERM moment has passed.
                self._send(StartFailed(turn, None, "not started: the lease ran out before the turn began",
                                       Outcome.FENCED))
                return
            self._turn, self._term_at, self._started_mono = turn, deadline - self._grace, self._clock()
            self._watchdog = threading.Thread(target=self._keep_term_moment, name=f"enqueue-lease-{self._site}",
                                              daemon=True)
            self._watchdog.start()
            self._send(CommandStarted(turn, None))
            self._cond.notify_all()

    def extend(self, deadline: float) -> None:
        with self._cond:
            if self._turn is not None and not self.lost.is_set() and deadline - self._grace > self._term_at:
                self._term_at = deadline - self._grace
                self._cond.notify_all()

    def stop(self, reason: str) -> None:
        with self._cond:
            if self._turn is not None and not self._ended:
                self._lose(reason)

    def close(self) -> None:
        """The agent is done: a block still running has lost its turn; the watchdog goes."""
        with self._cond:
            self._agent_done = True
            if self._turn is not None and not self._ended:
                self._lose(Outcome.AGENT_GONE)
            self._cond.notify_all()
        if self._watchdog is not None:
            self._watchdog.join()

    # ------------------------------------------------------------------ the caller's side

    def wait_for_turn(self) -> Turn | None:
        """Block until the turn began (its ``Turn``) or the agent ended without one (None)."""
        with self._cond:
            self._cond.wait_for(lambda: self._turn is not None or self._agent_done)
            if self._turn is None:
                return None
            return Turn(self._site, self._turn, self.lost, lambda: self._reason)

    def agent_ended(self) -> None:
        """The agent's thread is over (also when it raised before ``close``)."""
        with self._cond:
            self._agent_done = True
            self._cond.notify_all()

    def interrupt(self, signum: int) -> None:
        """Ask the agent to stop as on signal ``signum`` (the caller was interrupted)."""
        with self._cond:
            self._send(StopRequested(signum))

    def end(self, exit_code: int, error: str | None = None) -> None:
        """The block is over: report its end to the agent, which records and hands over the turn."""
        with self._cond:
            if self._turn is None:
                self._refused = True  # a turn confirmed from now on must not wait for a block that never comes
                return
            if self._ended:
                return
            self._ended = True
            self._cond.notify_all()
            reason = self._reason
            how = reason if reason in (Outcome.FENCED, Outcome.AGENT_GONE) else Outcome.STOPPED if reason else \
                Outcome.EXITED
            self._send(CommandEnded(self._turn, exit_code, how, reason if how == Outcome.STOPPED else None, error,
                                    self._clock() - self._started_mono))

    # ------------------------------------------------------------------ inside

    def _send(self, event: Event) -> None:
        # Caller holds the lock; the inbox only queues, so this never re-enters the agent.
        if self._deliver is None:
            self._pending.append(event)
        else:
            self._deliver(event)

    def _lose(self, reason: str) -> None:
        if self.lost.is_set():
            return
        self._reason = reason
        self.lost.set()
        log.warning("turn %s of site %s is lost (%s): the block must stop at its next check", self._turn,
                    self._site, reason)

    def _keep_term_moment(self) -> None:
        with self._cond:
            while not (self._ended or self._agent_done or self.lost.is_set()):
                remaining = self._term_at - self._clock()
                if remaining <= 0:
                    self._lose(Outcome.FENCED)
                    return
                self._cond.wait(remaining)
