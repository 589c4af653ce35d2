"""The command's supervisor: the one process that spawns, signals and kills (docs/PROTOCOL.md §3.6).

The agent starts one supervisor at start-up (``enqueue.runner.Runner``) and
keeps it for its whole life; every turn's command is a child of the
supervisor, never of the agent. The supervisor keeps the turn's deadline on
its own clock, so a frozen (SIGSTOP, VM pause) or dead (SIGKILL) agent cannot
keep a command running past the lease it ran under.

Guarantees
----------
* A command runs in its own session and process group; "the command" means
  that whole group. The stop signal (SIGTERM, or the one ``--stop-signal``
  names, for launchers that forward only that one to remote work) goes to
  the group at ``deadline - kill_grace``, and whenever the agent asks for a
  stop; SIGKILL at ``deadline``, or a grace after the stop signal. Once the SIGTERM moment has passed, the fence is
  final: no ``extend`` revives the turn. Deadlines only move forward.
* A command is never started once its SIGTERM moment has passed.
* When the command's main process exits, whatever is left of its group is
  SIGKILLed, and ``exited`` is reported once the group is empty (or, if
  something in it will not die, ``kill_grace`` later).
* If the supervisor itself is SIGKILLed, the kernel SIGKILLs the command's
  main process (Linux ``PR_SET_PDEATHSIG``); the agent's runner then kills
  the rest of the group. If the supervisor fails on a bug, it SIGKILLs the
  group itself before it exits.
* EOF on the control pipe (the agent is gone), ``shutdown``, or SIGTERM to
  the supervisor stop the command with the grace policy, then the supervisor
  exits. SIGINT, SIGQUIT and SIGHUP are ignored (a terminal sends them to the
  whole foreground group; the agent decides), and so are the job-control
  stops (Ctrl-Z must not freeze the fence along with the agent).
* The command inherits stdin/stdout/stderr, the supervisor's environment
  (the agent's minus enqueue's connection settings, see
  ``enqueue.runner.command_environment``) plus the additions, and the signal
  dispositions the agent had; it inherits no other file descriptor.

Not guaranteed
--------------
* Processes of the command that leave its process group (``setsid``, or a
  shell with job control putting jobs in groups of their own) are outside
  the fence. Processes stuck in uninterruptible sleep die when the kernel
  lets them.
* A stopped or killed supervisor keeps no deadline; with SIGKILL the command
  dies at once (no grace); with SIGSTOP the agent's runner, the second
  keeper, kills the group a little after the deadline (enqueue.runner), and
  nothing can help if the agent is gone too. If agent and supervisor are
  SIGKILLed together, only the command's main process is killed with them.

Besides the command, the supervisor keeps one idle child while no command
runs: a fork of itself that has done everything but exec
(``enqueue.command_spawn``). The deadline arithmetic is
``enqueue.fenced_turn``; the messages on the two pipes are
``enqueue.supervisor_protocol``.

Run as ``python -m enqueue.supervisor --control-fd N --events-fd M --kill-grace S [--stop-signal N]``.
"""


from __future__ import annotations

import errno
import json
import math
import os
import select
import signal
import sys
import time

from enqueue.command_spawn import (
    PR_SET_CHILD_SUBREAPER, Spawner, load_prctl, take_over_terminal_signals,
)
from enqueue.errors import EXIT_NOT_EXECUTABLE, EXIT_NOT_FOUND, EXIT_USAGE
from enqueue.fenced_turn import FencedTurn, past_sigterm_moment
from enqueue.outcomes import SHUTDOWN, TERMINATED, Outcome
from enqueue.stop_signals import is_stop_signal
from enqueue.supervisor_protocol import (
    EventPipe, expect_float, expect_int, expect_str_dict, expect_str_list, shell_exit_code, signal_name,
)

_FINAL_FLUSH_S = 1.0
# A fork just after writing an event delays the agent's wake-up by about the
# fork's own duration (the scheduler tends to put the woken reader on our CPU).
_SPARE_DELAY_S = 0.005
# select() refuses huge timeouts; waking up now and then to re-check is free.
_MAX_WAIT_S = 3600.0

# Not typing.TYPE_CHECKING: importing typing costs the supervisor about 1 MB of resident memory.
TYPE_CHECKING = False
if TYPE_CHECKING:  # the supervisor starts on every agent start: keep its imports few
    from typing import Any, Callable, Dict, List, Optional


def _log(message: str) -> None:
    """One line on stderr; never raises (stderr may be gone with the agent)."""
    try:
        os.write(2, f"enqueue supervisor: {message}\n".encode("utf-8", "replace"))
    except OSError:
        pass


class Supervisor:
    """One supervisor process's state and loop; see the module docstring."""

    def __init__(
        self,
        control_fd: int,
        events_fd: int,
        kill_grace_s: float,
        monotonic: Callable[[], float] = time.monotonic,
        stop_signal: int = signal.SIGTERM,
    ) -> None:
        self._control = control_fd
        self._events = events_fd
        self._grace = kill_grace_s
        self._stop_signal = stop_signal
        self._now = monotonic
        self._prctl = load_prctl()
        self._turn: Optional[FencedTurn] = None
        self._in = b""
        self._pipe = EventPipe(events_fd, monotonic)
        self._control_open = True
        self._closing = False
        self._terminate_requested = False
        self._wake_r = -1
        self._wake_w = -1
        self._spawner = Spawner(self._prctl, _log)
        self._spare_due: Optional[float] = None

    # -- set-up -------------------------------------------------------------

    def _install_signals(self) -> None:
        """Record the dispositions the command should inherit, then take over
        the signals the supervisor handles itself."""
        inherited = take_over_terminal_signals()

        # Both handlers only need to wake the select loop: the wakeup fd gets a
        # byte for every signal, the loop then looks at children and the flag.
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)
        signal.signal(signal.SIGCHLD, lambda _s, _f: None)
        signal.signal(signal.SIGTERM, self._on_sigterm)
        self._spawner.set_up_children((self._control, self._events, self._wake_r, self._wake_w), inherited)

    def _on_sigterm(self, _signum: int, _frame: Any) -> None:
        self._terminate_requested = True

    # -- the loop -----------------------------------------------------------

    def run(self) -> int:
        """Serve control messages until told to go (or the agent is gone) and
        no command is left; returns the process exit code."""
        for fd in (self._control, self._events):
            os.set_inheritable(fd, False)
        os.set_blocking(self._control, False)
        os.set_blocking(self._events, False)
        if self._prctl is not None:
            try:
                # Orphans of the command come to us, so we can reap them even
                # where the init process does not.
                self._prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
            except OSError as exc:
                _log(f"cannot become a subreaper: {exc.strerror}")
        self._install_signals()
        self._refill_spare()
        self._emit(kind="ready", pid=os.getpid())
        try:
            self._serve()
        except BaseException:
            # A bug must not leave the command running without its fence.
            if self._turn is not None:
                self._killpg(self._turn.pid, signal.SIGKILL)
            raise
        self._spawner.discard()
        self._pipe.final_flush(_FINAL_FLUSH_S)
        return 0

    def _serve(self) -> None:
        """The loop: returns once closing and no command is left."""
        while True:
            # 1. Children first, so a command that exited on its own just as a
            #    timer fell due is reported as exited, not fenced.
            self._reap()
            if self._terminate_requested and not self._closing:
                self._closing = True
                self._stop(Outcome.STOPPED, TERMINATED)
            # 2. Timers before control messages: an extend read after the
            #    SIGTERM moment must find the fence already final.
            now = self._now()
            self._apply_timers(now)
            if self._closing and self._turn is None:
                break
            if self._spare_due is not None and now >= self._spare_due:
                self._spare_due = None
                self._refill_spare()
            readable = [self._wake_r] + ([self._control] if self._control_open else [])
            writable = [self._events] if self._pipe.pending else []
            ready_r, ready_w, _ = select.select(readable, writable, [], self._timeout(now))
            if self._wake_r in ready_r:
                self._drain_wakeups()
            if self._events in ready_w:
                self._pipe.flush()
            if self._control in ready_r:
                self._read_control()

    def _timeout(self, now: float) -> Optional[float]:
        """Seconds until the next timed action is due, None when none is."""
        due = [] if self._spare_due is None else [self._spare_due]
        turn_due = None if self._turn is None else self._turn.next_due()
        if turn_due is not None:
            due.append(turn_due)
        return min(_MAX_WAIT_S, max(0.0, min(due) - now)) if due else None

    def _drain_wakeups(self) -> None:
        try:
            while os.read(self._wake_r, 512):
                pass
        except BlockingIOError:
            pass

    # -- control messages ---------------------------------------------------

    def _read_control(self) -> None:
        try:
            data = os.read(self._control, 65536)
        except BlockingIOError:
            return
        if not data:
            self._control_open = False
            if not self._closing:
                self._closing = True
                self._stop(Outcome.AGENT_GONE, None)
            return
        self._in += data
        *lines, self._in = self._in.split(b"\n")
        for line in lines:
            if line.strip():
                self._handle(line)

    def _handle(self, line: bytes) -> None:
        """Act on one control line. A bad line is logged and ignored, except
        that a start that names its turn is answered, so no agent waits on it."""
        message: Any = None
        try:
            message = json.loads(line)
            op = message["op"]
            if op == "start":
                self._start(
                    expect_int(message["turn"]),
                    expect_str_list(message["argv"]),
                    expect_str_dict(message.get("env", {})),
                    expect_float(message["deadline"]),
                )
            elif op == "extend":
                self._extend(expect_int(message["turn"]), expect_float(message["deadline"]))
            elif op == "stop":
                turn = self._turn
                if turn is not None and turn.turn == expect_int(message["turn"]):
                    self._stop(Outcome.STOPPED, str(message.get("reason", Outcome.STOPPED.value)))
            elif op == "shutdown":
                self._closing = True
                self._stop(Outcome.STOPPED, SHUTDOWN)
            else:
                raise ValueError(f"unknown op {op!r}")
        except (ValueError, KeyError, TypeError) as exc:
            _log(f"ignoring a bad control message ({exc}): {line[:200]!r}")
            if isinstance(message, dict) and message.get("op") == "start":
                turn = message.get("turn")
                if isinstance(turn, int) and not isinstance(turn, bool):
                    self._emit(kind="spawn_failed", turn=turn, exit_code=None, how=None,
                               error=f"not started: bad start message ({exc})")

    def _start(self, turn: int, argv: List[str], env: Dict[str, str], deadline: float) -> None:
        """Run ``argv`` if no command is running and its SIGTERM moment is
        still ahead. Answers with exactly one event: ``started`` or
        ``spawn_failed``."""
        if not argv:
            self._emit(kind="spawn_failed", turn=turn, exit_code=EXIT_NOT_FOUND, how=None,
                       error="cannot run an empty command")
            return
        if self._closing:
            self._emit(kind="spawn_failed", turn=turn, exit_code=None, how=None,
                       error="not started: the supervisor is shutting down")
            return
        if self._turn is not None:
            self._emit(kind="spawn_failed", turn=turn, exit_code=None, how=None,
                       error=f"not started: turn {self._turn.turn} is still running")
            return
        started_at = self._now()
        if past_sigterm_moment(started_at, deadline, self._grace):
            self._emit(kind="spawn_failed", turn=turn, exit_code=None, how=Outcome.FENCED.value,
                       error=f"not started: {argv[0]!r} would be past its SIGTERM moment")
            return
        try:
            self._spare_due = None
            pid = self._spawner.spawn(argv, env)
        except OSError as exc:
            code = EXIT_NOT_FOUND if exc.errno == errno.ENOENT else EXIT_NOT_EXECUTABLE
            reason = exc.strerror or str(exc)
            self._emit(kind="spawn_failed", turn=turn, exit_code=code, how=None,
                       error=f"cannot run {argv[0]!r}: {reason}")
            self._spare_due = self._now() + _SPARE_DELAY_S
            return
        self._turn = FencedTurn(turn=turn, pid=pid, started_at=started_at, deadline=deadline, grace=self._grace,
                                stop_signal=self._stop_signal)
        self._emit(kind="started", turn=turn, pid=pid)

    def _extend(self, turn_number: int, deadline: float) -> None:
        """Move the deadline later, unless the fence is already final."""
        turn = self._turn
        if turn is not None and turn.turn == turn_number:
            turn.extend(deadline, self._now())

    def _stop(self, how: str, reason: Optional[str]) -> None:
        """Send the command the stop signal now and SIGKILL it a grace period later (or at
        the deadline, if that comes first). The first cause to end a turn is
        the one reported."""
        turn = self._turn
        if turn is None or turn.status is not None:
            return
        now = self._now()
        turn.stop(how, reason, now)
        self._apply_timers(now)

    # -- signals and children -----------------------------------------------

    def _apply_timers(self, now: float) -> None:
        """Send what is due: the stop signal to the group at ``term_at``, SIGKILL at
        ``kill_at``, each at most once."""
        turn = self._turn
        if turn is None:
            return
        for sig in turn.due_signals(now):
            self._killpg(turn.pid, sig)

    @staticmethod
    def _killpg(pgid: int, sig: int) -> None:
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            pass
        except PermissionError:
            _log(f"not allowed to send {signal_name(sig)} to process group {pgid}")

    def _reap(self) -> None:
        """Reap every exited child, then report the turn if it is over.

        The command's main process is first only peeked at: while it is an
        unreaped zombie its pid cannot be reused, so SIGKILL to its group
        reaches the command's leftovers and nothing else. Leftovers whose
        parent dies are reparented to us (we are a subreaper) and reaped here
        too; the group id stays reserved while any of them exists."""
        while True:
            try:
                info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                break
            if info is None or info.si_pid == 0:
                break
            pid = info.si_pid
            turn = self._turn
            if turn is not None and pid == turn.pid and turn.status is None:
                self._killpg(pid, signal.SIGKILL)
                _, status = os.waitpid(pid, 0)
                turn.exited(status, self._now())
            elif self._spawner.is_spare(pid):
                if not self._closing:
                    _log(f"spare child {pid} died; another is forked when needed")
                self._spawner.discard()
            else:
                os.waitpid(pid, 0)
        turn = self._turn
        if turn is not None and turn.status is not None:
            if not self._group_exists(turn.pid) or self._now() >= turn.drain_until:
                self._report_exit(turn, turn.status)

    @staticmethod
    def _group_exists(pgid: int) -> bool:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def _report_exit(self, turn: FencedTurn, status: int) -> None:
        self._turn = None
        if self._group_exists(turn.pid):
            _log(f"turn {turn.turn}: process group {turn.pid} still not empty after SIGKILL")
        code, signame = shell_exit_code(status)
        self._emit(kind="exited", turn=turn.turn, pid=turn.pid, exit_code=code, signal=signame,
                   how=turn.how or Outcome.EXITED.value, reason=turn.reason,
                   duration_s=round(self._now() - turn.started_at, 6))
        self._spare_due = self._now() + _SPARE_DELAY_S

    def _refill_spare(self) -> None:
        """Have a spare child ready for the next start, unless closing."""
        if not self._closing:
            self._spawner.refill()

    def _emit(self, **fields: Any) -> None:
        self._pipe.emit(fields)


_USAGE = ("usage: python -m enqueue.supervisor --control-fd N --events-fd M --kill-grace SECONDS "
          "[--stop-signal N]")
_FLAGS = {"--control-fd": int, "--events-fd": int, "--kill-grace": float, "--stop-signal": int}


class UsageError(ValueError):
    """A supervisor command line that cannot be run; the text says what is wrong."""


def parse_command_line(argv: List[str]) -> Dict[str, Any]:
    """The flags of ``argv`` as values (``--stop-signal`` defaults to SIGTERM); UsageError otherwise.

    By hand, not with argparse: the agent alone starts supervisors, and argparse
    (with gettext and re) is about 1 MB of every supervisor's resident memory.
    """
    values: Dict[str, Any] = {"--stop-signal": int(signal.SIGTERM)}
    words = iter(argv)
    for word in words:
        flag, has_value, value = word.partition("=")
        if flag not in _FLAGS:
            raise UsageError(f"unknown argument {word!r}")
        if not has_value:
            value = next(words, None)
            if value is None:
                raise UsageError(f"{flag} needs a value")
        try:
            values[flag] = _FLAGS[flag](value)
        except ValueError:
            raise UsageError(f"{flag}: not a number: {value!r}") from None
    missing = [flag for flag in _FLAGS if flag not in values]
    if missing:
        raise UsageError(f"{missing[0]} is required")
    if not 0 <= values["--kill-grace"] < math.inf:
        raise UsageError("--kill-grace must be a finite number of seconds, not negative")
    if not is_stop_signal(values["--stop-signal"]):
        raise UsageError(f"--stop-signal {values['--stop-signal']} is not a signal that can start a stop")
    return values


def main(argv: Optional[List[str]] = None) -> int:
    """Parse the command line and run one supervisor; returns the exit code (2 for a bad command line)."""
    try:
        args = parse_command_line(sys.argv[1:] if argv is None else argv)
    except UsageError as exc:
        _log(f"{exc}\n{_USAGE}")
        return EXIT_USAGE
    try:
        # The agent's numbers may be high; select() needs them below FD_SETSIZE,
        # and the copies are close-on-exec, so no command inherits them.
        control, events = os.dup(args["--control-fd"]), os.dup(args["--events-fd"])
    except OSError as exc:
        _log(f"bad file descriptor: {exc.strerror}")
        return EXIT_USAGE
    os.close(args["--control-fd"])
    os.close(args["--events-fd"])
    return Supervisor(control, events, args["--kill-grace"], stop_signal=args["--stop-signal"]).run()


if __name__ == "__main__":
    sys.exit(main())
