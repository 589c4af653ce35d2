"""The agent as an operating-system process: the driver around ``enqueue.agent.Agent``.

The ``Agent`` is a state machine; this module gives it the world. It owns
the changes-feed thread (enqueue.feed), the command's supervisor
(enqueue.runner), the stop signals and one inbox they all report into, and
turns them into ``Agent.handle`` and ``Agent.step`` calls:

    start -> [step -> wait for an event or the agent's next wake-up -> handle every event] until Left

Guarantees
----------
* Signal handlers only do async-signal-safe work: the interpreter's C
  handler writes a byte to the inbox's wake-up pipe (``signal.set_wakeup_fd``)
  and the Python handler appends the signal number to a deque; no lock is
  taken, so a second signal arriving inside the first cannot deadlock.
* Threads (the feed, the runner's reader) append to the same inbox and
  write a byte to the same pipe; the driver waits on the pipe alone.
* Whatever happens, the feed is stopped and the runner closed (which stops
  any command with the grace policy), and so is the runner of the side
  commands (``--between``, ``--ready``), before ``run`` returns or raises.
* ``run`` touches signal handlers only when asked (``catch_signals``, the
  main thread only), so it can run in any thread; a ``stop`` Event set from
  any thread stops the agent as SIGTERM would.
"""

from __future__ import annotations

import collections
import logging
import os
import random
import select
import signal
import socket
import threading
import uuid
from contextlib import contextmanager, nullcontext
from typing import TYPE_CHECKING, Any, Callable, Iterator, Protocol

from enqueue.agent import Agent
from enqueue.clock import Clock, SystemClock
from enqueue.events import (CommandEnded, CommandStarted, Event, RunnerReport, StartFailed, StopRequested,
                            SupervisorDied)
from enqueue.feed import FeedWatcher
from enqueue.lease import Identity
from enqueue.leaving import Left
from enqueue.outcomes import Outcome
from enqueue.own_turn import CommandRunner
from enqueue.runner import Runner, RunnerEvent
from enqueue.side_command import SideCommandRunner

if TYPE_CHECKING:
    from enqueue.config import AgentSettings
    from enqueue.store import Store

log = logging.getLogger("enqueue.agent")

_FEED_HEARTBEAT_S = 1.0
_KEEPER_LAG_MAX_S = 1.0
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
# How soon a stop Event set from another thread reaches the agent (an Event cannot wake a select).
_STOP_POLL_S = 0.1


def report_of(ev: RunnerEvent) -> RunnerReport | None:
    """The typed event for what the supervisor reported; None for a kind the agent does not know."""
    if ev.kind == "started" and ev.turn is not None:
        return CommandStarted(ev.turn, ev.pid)
    if ev.kind == "exited" and ev.turn is not None:
        return CommandEnded(ev.turn, ev.exit_code, ev.how or Outcome.EXITED, ev.reason, ev.error, ev.duration_s,
                            ev.signal)
    if ev.kind == "spawn_failed" and ev.turn is not None:
        return StartFailed(ev.turn, ev.exit_code, ev.error, ev.how)
    if ev.kind == "supervisor_died":
        return SupervisorDied(ev.turn, ev.error)
    return None


class DrivenRunner(CommandRunner, Protocol):
    """A ``CommandRunner`` the driver can (re)open: at the start, and after its supervisor died."""

    def open(self) -> None:
        """Be ready to start commands; raises EnqueueError when it cannot."""


class SupervisedRunner:
    """The agent's ``CommandRunner`` on a real supervisor, replaced by a fresh one after it died."""

    def __init__(self, kill_grace_s: float, keeper_lag_s: float, deliver: Callable[[Event], None],
                 stop_signal: int = signal.SIGTERM) -> None:
        self._grace = kill_grace_s
        self._stop_signal = stop_signal
        self._keeper_lag_s = keeper_lag_s
        self._deliver = deliver
        self._runner: Runner | None = None

    def open(self) -> None:
        """Start a supervisor (again, after the last one died); raises RunnerError if it does not come up."""
        self._runner = Runner(kill_grace_s=self._grace, on_event=self._on_event, keeper_lag_s=self._keeper_lag_s,
                              stop_signal=self._stop_signal)

    def _on_event(self, ev: RunnerEvent) -> None:
        report = report_of(ev)
        if report is not None:
            self._deliver(report)

    def _live(self) -> Runner:
        if self._runner is None:
            self.open()
        assert self._runner is not None
        return self._runner

    def start(self, turn: int, argv: list[str], env: dict[str, str], deadline: float) -> None:
        self._live().start(turn, argv, env, deadline)

    def extend(self, deadline: float) -> None:
        if self._runner is not None:
            self._runner.extend(deadline)

    def stop(self, reason: str) -> None:
        if self._runner is not None:
            self._runner.stop(reason)

    def close(self) -> None:
        if self._runner is not None:
            self._runner.close()


class Inbox:
    """Events from threads and signals, and the one pipe the driver waits on."""

    def __init__(self) -> None:
        self._events: collections.deque[Event] = collections.deque()
        self._signals: collections.deque[int] = collections.deque()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._lock = threading.Lock()
        self._closed = False

    def put(self, event: Event) -> None:
        """Hand an event to the driver (from any thread, never from a signal handler); dropped once closed."""
        with self._lock:
            if self._closed:
                return
            self._events.append(event)
            try:
                os.write(self._wake_w, b"\0")
            except BlockingIOError:
                pass  # the pipe is full of wake-ups already

    def _on_signal(self, signum: int, _frame: Any) -> None:
        # Async-signal-safe: no lock; the wake-up byte was written by the interpreter's C handler.
        self._signals.append(signum)

    @contextmanager
    def catching_signals(self) -> Iterator[None]:
        """Route SIGTERM and SIGINT here while the block runs; restore what was there before."""
        previous_fd = signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)
        previous = {sig: signal.signal(sig, self._on_signal) for sig in _STOP_SIGNALS}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            signal.set_wakeup_fd(previous_fd)

    @contextmanager
    def relaying(self, stop: threading.Event | None) -> Iterator[None]:
        """While the block runs, ``stop`` being set (from any thread) arrives as ``StopRequested(SIGTERM)``."""
        if stop is None:
            yield
            return
        done = threading.Event()

        def watch() -> None:
            while not done.is_set():
                if stop.wait(_STOP_POLL_S):
                    self.put(StopRequested(signal.SIGTERM))
                    return

        watcher = threading.Thread(target=watch, name="enqueue-stop", daemon=True)
        watcher.start()
        try:
            yield
        finally:
            done.set()
            watcher.join()

    def wait(self, timeout_s: float) -> list[Event]:
        """Every event there is, waiting up to ``timeout_s`` for the first one."""
        if not self._events and not self._signals:
            try:
                select.select([self._wake_r], [], [], timeout_s)
            except InterruptedError:
                pass
        try:
            while os.read(self._wake_r, 4096):
                pass
        except BlockingIOError:
            pass
        got: list[Event] = []
        while self._signals:
            got.append(StopRequested(self._signals.popleft()))
        while self._events:
            got.append(self._events.popleft())
        return got

    def close(self) -> None:
        """Take nothing more; release the pipe."""
        with self._lock:
            self._closed = True
            os.close(self._wake_r)
            os.close(self._wake_w)


def _agent_alive(pid: int) -> bool:
    """Process ``pid`` on this host is alive and an enqueue agent."""
    import psutil  # only when a heartbeat of this site names this host: about 1.3 MB an agent need not carry

    try:
        other = psutil.Process(pid)
        return other.is_running() and any("enqueue" in part for part in other.cmdline())
    except (psutil.Error, OSError):
        return False


def local_identity() -> Identity:
    """This process's identity: a fresh instance id, the host name and pid."""
    return Identity(instance=uuid.uuid4().hex[:12], host=socket.gethostname(), pid=os.getpid(),
                    agent_alive=_agent_alive)


def keeper_lag_s(heartbeat_delay_s: float) -> float:
    """How long after the deadline the agent's process kills a command its supervisor has not reported ended.

    The supervisor's own SIGKILL at the deadline is reported within
    milliseconds; the leader may take the turn away no sooner than a
    heartbeat after the deadline, so the lag stays well below that.
    """
    return min(_KEEPER_LAG_MAX_S, heartbeat_delay_s / 4)


def drive(agent: Agent, inbox: Inbox, feed: FeedWatcher, runner: DrivenRunner, clock: Clock) -> Left:
    """Step and feed the started agent until it has left; returns how it left."""
    while True:
        left = agent.step(clock.monotonic())
        if left is not None:
            return left
        feed.follow(agent.watched_ids)
        for event in inbox.wait(max(0.0, agent.next_wake() - clock.monotonic())):
            agent.handle(event)
            if isinstance(event, SupervisorDied):
                runner.open()
        feed.follow(agent.watched_ids)


class _Opening:
    """The supervisor coming up on a thread of its own while the agent registers: both mostly wait on others.

    A run-once agent's start-up is on the path of its loop's handoffs; the
    supervisor's start no longer adds to it. ``join`` always returns; then
    ``raise_error`` raises what opening it raised, if anything.
    """

    def __init__(self, runner: DrivenRunner) -> None:
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._open, args=(runner,), name="enqueue-runner-open", daemon=True)
        self._thread.start()

    def _open(self, runner: DrivenRunner) -> None:
        try:
            runner.open()
        except BaseException as exc:  # handed to the main thread by raise_error
            self.error = exc

    def join(self) -> None:
        self._thread.join()

    def raise_error(self) -> None:
        if self.error is not None:
            raise self.error


def run(settings: AgentSettings, store: Store, clock: Clock | None = None, rng: random.Random | None = None, *,
        catch_signals: bool = True, stop: threading.Event | None = None,
        make_runner: Callable[[Callable[[Event], None]], DrivenRunner] | None = None) -> int:
    """Run a site's agent on ``store`` until it is done; returns the exit code (errors raise EnqueueError).

    ``catch_signals``: SIGTERM and SIGINT stop the agent while it runs (main
    thread only; the previous handlers are put back). ``stop``: once set, the
    agent stops as on SIGTERM (exit code 143). ``make_runner``: the runner,
    made from the inbox's ``put`` (default: the real supervisor).
    """
    clock = clock or SystemClock(settings.wall_clock_offset_s)
    inbox = Inbox()
    if make_runner is None:
        def make_runner(put: Callable[[Event], None]) -> DrivenRunner:
            return SupervisedRunner(settings.timing.kill_grace_s, keeper_lag_s(settings.timing.heartbeat_delay_s), put,
                                    stop_signal=settings.stop_signal)
    runner = make_runner(inbox.put)
    side_runner = SideCommandRunner(settings.timing.kill_grace_s, inbox.put) if settings.between or settings.ready \
        else None
    agent = Agent(settings, store, clock, runner, rng or random.Random(), local_identity(), side_runner)
    feed = FeedWatcher(store, beat_s=min(settings.timing.heartbeat_delay_s, _FEED_HEARTBEAT_S),
                       retry_s=agent.outage.retry_s, deliver=inbox.put)
    try:
        with inbox.catching_signals() if catch_signals else nullcontext(), inbox.relaying(stop):
            try:
                opening = _Opening(runner)
                try:
                    agent.start(clock.monotonic())
                finally:
                    opening.join()
                opening.raise_error()
                feed.follow(agent.watched_ids)
                feed.start(agent.feed_since)
                left = drive(agent, inbox, feed, runner, clock)
            finally:
                feed.stop()
                runner.close()
                if side_runner is not None:
                    side_runner.close()
    finally:
        inbox.close()
    if left.error is not None:
        raise left.error
    return left.exit_code


def run_agent(settings: AgentSettings, **options: Any) -> int:
    """Run a site's agent until it is done; returns the exit code (errors raise EnqueueError).

    ``options`` are ``run``'s keywords (``catch_signals``, ``stop``, ``make_runner``).
    """
    from enqueue.couchdb_store import open_store  # the CouchDB client loads only when an agent runs

    store = open_store(settings.connection)
    try:
        return run(settings, store, **options)
    finally:
        store.close()
