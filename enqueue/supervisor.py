"""The command's supervisor: the one process that spawns, signals and kills.

The agent starts one supervisor at start-up (``enqueue.runner.Runner``) and
keeps it for its whole life; every turn's command is a child of the
supervisor, never of the agent. The supervisor keeps the turn's deadline on
its own clock, so a frozen (SIGSTOP, VM pause) or dead (SIGKILL) agent cannot
keep a command running past the lease it ran under.

Guarantees
----------
* A command runs in its own session and process group; "the command" means
  that whole group. SIGTERM goes to the group at ``deadline - kill_grace``,
  SIGKILL at ``deadline``. Once the SIGTERM moment has passed, the fence is
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
* The command inherits stdin/stdout/stderr, the agent's environment plus the
  additions, and the signal dispositions the agent had; it inherits no other
  file descriptor.

Not guaranteed
--------------
* Processes of the command that leave its process group (``setsid``, or a
  shell with job control putting jobs in groups of their own) are outside
  the fence. Processes stuck in uninterruptible sleep die when the kernel
  lets them.
* A stopped or killed supervisor keeps no deadline; with SIGKILL the command
  dies at once (no grace), with SIGSTOP nothing can help. If agent and
  supervisor are SIGKILLed together, only the command's main process is
  killed with them.

Besides the command, the supervisor keeps one idle child while no command
runs: a fork of itself that has done everything but exec (see spawning).

Protocol (one JSON object per line)
-----------------------------------
Control, agent to supervisor::

    {"op": "start", "turn": 7, "argv": ["cmd", "arg"], "env": {"K": "V"}, "deadline": 1234.5}
    {"op": "extend", "turn": 7, "deadline": 1240.0}
    {"op": "stop", "turn": 7, "reason": "revoked"}
    {"op": "shutdown"}

``deadline`` is a ``time.monotonic()`` value: when the command must be dead.
``extend`` and ``stop`` for a turn that is not running are ignored.

Events, supervisor to agent::

    {"kind": "ready", "pid": 4242}
    {"kind": "started", "turn": 7, "pid": 4243}
    {"kind": "exited", "turn": 7, "pid": 4243, "exit_code": 143, "signal": "SIGTERM",
     "how": "fenced", "reason": null, "duration_s": 12.5}
    {"kind": "spawn_failed", "turn": 7, "exit_code": 127, "how": null,
     "error": "cannot run 'cmd': No such file or directory"}

``exit_code`` follows the shell: the code, or 128 + the signal number.
``how`` is ``exited`` (on its own), ``fenced`` (deadline), ``stopped`` (the
agent asked, ``reason`` says why; ``shutdown`` and ``terminated`` are the
supervisor's own reasons) or ``agent-gone``. A ``spawn_failed`` with
``how: "fenced"`` and no exit code means the deadline left no time to run.

Run as ``python -m enqueue.supervisor --control-fd N --events-fd M --kill-grace S``.
"""

from __future__ import annotations

import argparse
import errno
import gc
import json
import math
import os
import select
import signal
import sys
from typing import TYPE_CHECKING

from enqueue.clock import SystemClock
from enqueue.errors import EXIT_NOT_EXECUTABLE, EXIT_NOT_FOUND, EXIT_USAGE
from enqueue.outcomes import SHUTDOWN, TERMINATED, Outcome

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36

# The terminal sends these to the whole foreground group, agent included.
_AGENT_DECIDES = (signal.SIGINT, signal.SIGQUIT, signal.SIGHUP)
# A stopped supervisor would keep no deadline.
_NEVER_STOP = (signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU)
# Python ignores these at start-up; a command expects them at their default.
_PYTHON_IGNORES = (signal.SIGPIPE, signal.SIGXFSZ)

_FINAL_FLUSH_S = 1.0
# A fork just after writing an event delays the agent's wake-up by about the
# fork's own duration (the scheduler tends to put the woken reader on our CPU).
_SPARE_DELAY_S = 0.005
# select() refuses huge timeouts; waking up now and then to re-check is free.
_MAX_WAIT_S = 3600.0

if TYPE_CHECKING:  # the supervisor starts on every agent start: keep its imports few
    from typing import Any, Callable, Dict, List, Optional, Tuple

    Prctl = Callable[[int, int, int, int, int], int]


def _load_prctl() -> Optional[Prctl]:
    """Return libc's prctl on Linux, else None (no parent-death signal there)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
        prctl.argtypes = [ctypes.c_int] + [ctypes.c_ulong] * 4
        prctl.restype = ctypes.c_int
    except (OSError, AttributeError):
        return None

    def call(option: int, a: int, b: int, c: int, d: int) -> int:
        if prctl(option, a, b, c, d) != 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code))
        return 0

    return call


def _log(message: str) -> None:
    """One line on stderr; never raises (stderr may be gone with the agent)."""
    try:
        os.write(2, f"enqueue supervisor: {message}\n".encode("utf-8", "replace"))
    except OSError:
        pass


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


class _Turn:
    """The running command (and, once ``status`` is set, its leftovers).

    Invariant: the times move later only through ``extend`` and only while
    ``term_sent`` is false; once set, ``term_sent``/``kill_sent`` stay set.
    The turn is over (reported) only when its process group is empty or
    ``drain_until`` has passed.
    """

    __slots__ = ("turn", "pid", "started_at", "term_at", "kill_at", "term_sent", "kill_sent",
                 "how", "reason", "status", "drain_until")

    def __init__(self, turn: int, pid: int, started_at: float, term_at: float, kill_at: float) -> None:
        self.turn = turn
        self.pid = pid
        self.started_at = started_at
        self.term_at = term_at
        self.kill_at = kill_at
        self.term_sent = False
        self.kill_sent = False
        self.how: Optional[str] = None
        self.reason: Optional[str] = None
        self.status: Optional[int] = None
        self.drain_until = 0.0


class _Spare:
    """A forked child waiting for a command on ``go_w``. It writes ``+`` to
    ``err_r`` when it has the command, then either execs (the close-on-exec
    pipe ends) or writes ``errno:text`` and exits."""

    __slots__ = ("pid", "go_w", "err_r")

    def __init__(self, pid: int, go_w: int, err_r: int) -> None:
        self.pid = pid
        self.go_w = go_w
        self.err_r = err_r


class Supervisor:
    """One supervisor process's state and loop; see the module docstring."""

    def __init__(
        self,
        control_fd: int,
        events_fd: int,
        kill_grace_s: float,
        monotonic: Callable[[], float] = SystemClock().monotonic,
    ) -> None:
        self._control = control_fd
        self._events = events_fd
        self._grace = kill_grace_s
        self._now = monotonic
        self._prctl = _load_prctl()
        self._turn: Optional[_Turn] = None
        self._in = b""
        self._out = b""
        self._events_broken = False
        self._control_open = True
        self._closing = False
        self._terminate_requested = False
        self._inherited: List[Tuple[int, Any]] = []
        self._wake_r = -1
        self._wake_w = -1
        self._spare: Optional[_Spare] = None
        self._spare_due: Optional[float] = None

    # -- set-up -------------------------------------------------------------

    def _install_signals(self) -> None:
        """Record the dispositions the command should inherit, then take over
        the signals the supervisor handles itself."""
        for sig in _AGENT_DECIDES + _NEVER_STOP:
            current = signal.getsignal(sig)
            inherited = signal.SIG_IGN if current == signal.SIG_IGN else signal.SIG_DFL
            self._inherited.append((sig, inherited))
            signal.signal(sig, signal.SIG_IGN)
        for sig in _PYTHON_IGNORES + (signal.SIGTERM, signal.SIGCHLD):
            self._inherited.append((sig, signal.SIG_DFL))

        # Both handlers only need to wake the select loop: the wakeup fd gets a
        # byte for every signal, the loop then looks at children and the flag.
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)
        signal.signal(signal.SIGCHLD, lambda _s, _f: None)
        signal.signal(signal.SIGTERM, self._on_sigterm)

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
        self._discard_spare()
        self._final_flush()
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
            writable = [self._events] if self._out and not self._events_broken else []
            ready_r, ready_w, _ = select.select(readable, writable, [], self._timeout(now))
            if self._wake_r in ready_r:
                self._drain_wakeups()
            if self._events in ready_w:
                self._flush()
            if self._control in ready_r:
                self._read_control()

    def _timeout(self, now: float) -> Optional[float]:
        """Seconds until the next timed action is due, None when none is."""
        due = [] if self._spare_due is None else [self._spare_due]
        turn = self._turn
        if turn is not None and turn.status is not None:
            due.append(turn.drain_until)
        elif turn is not None:
            due += [t for t, sent in ((turn.term_at, turn.term_sent), (turn.kill_at, turn.kill_sent)) if not sent]
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
                    _int(message["turn"]),
                    _str_list(message["argv"]),
                    _str_dict(message.get("env", {})),
                    _float(message["deadline"]),
                )
            elif op == "extend":
                self._extend(_int(message["turn"]), _float(message["deadline"]))
            elif op == "stop":
                turn = self._turn
                if turn is not None and turn.turn == _int(message["turn"]):
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
        if started_at >= deadline - self._grace:
            self._emit(kind="spawn_failed", turn=turn, exit_code=None, how=Outcome.FENCED.value,
                       error=f"not started: {argv[0]!r} would be past its SIGTERM moment")
            return
        environment = dict(os.environ)
        environment.update(env)
        try:
            pid = self._spawn(argv, environment)
        except OSError as exc:
            code = EXIT_NOT_FOUND if exc.errno == errno.ENOENT else EXIT_NOT_EXECUTABLE
            reason = exc.strerror or str(exc)
            self._emit(kind="spawn_failed", turn=turn, exit_code=code, how=None,
                       error=f"cannot run {argv[0]!r}: {reason}")
            self._spare_due = self._now() + _SPARE_DELAY_S
            return
        self._turn = _Turn(turn=turn, pid=pid, started_at=started_at,
                           term_at=deadline - self._grace, kill_at=deadline)
        self._emit(kind="started", turn=turn, pid=pid)

    def _extend(self, turn_number: int, deadline: float) -> None:
        """Move the deadline later, unless the fence is already final."""
        turn = self._turn
        if turn is None or turn.turn != turn_number or turn.status is not None:
            return
        if turn.term_sent or self._now() >= turn.term_at:
            return
        if deadline <= turn.kill_at:
            return
        turn.kill_at = deadline
        turn.term_at = deadline - self._grace

    def _stop(self, how: str, reason: Optional[str]) -> None:
        """SIGTERM the command now and SIGKILL it a grace period later (or at
        the deadline, if that comes first). The first cause to end a turn is
        the one reported."""
        turn = self._turn
        if turn is None or turn.status is not None:
            return
        now = self._now()
        if turn.how is None:
            turn.how, turn.reason = how, reason
        if not turn.term_sent:
            turn.term_at = now
        turn.kill_at = min(turn.kill_at, now + self._grace)
        self._apply_timers(now)

    # -- signals and children -----------------------------------------------

    def _apply_timers(self, now: float) -> None:
        """Send what is due: SIGTERM to the group at ``term_at``, SIGKILL at
        ``kill_at``, each at most once."""
        turn = self._turn
        if turn is None or turn.status is not None:
            return
        if not turn.term_sent and now >= turn.term_at:
            turn.term_sent = True
            turn.how = turn.how or Outcome.FENCED.value
            self._killpg(turn.pid, signal.SIGTERM)
        if not turn.kill_sent and now >= turn.kill_at:
            turn.kill_sent = True
            turn.how = turn.how or Outcome.FENCED.value
            self._killpg(turn.pid, signal.SIGKILL)

    @staticmethod
    def _killpg(pgid: int, sig: int) -> None:
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            pass
        except PermissionError:
            _log(f"not allowed to send {_signal_name(sig)} to process group {pgid}")

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
                _, turn.status = os.waitpid(pid, 0)
                turn.drain_until = self._now() + self._grace
            elif self._spare is not None and pid == self._spare.pid:
                if not self._closing:
                    _log(f"spare child {pid} died; another is forked when needed")
                self._discard_spare()
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

    def _report_exit(self, turn: _Turn, status: int) -> None:
        self._turn = None
        if self._group_exists(turn.pid):
            _log(f"turn {turn.turn}: process group {turn.pid} still not empty after SIGKILL")
        code = os.waitstatus_to_exitcode(status)
        signame = None
        if code < 0:
            signame = _signal_name(-code)
            code = 128 - code
        self._emit(kind="exited", turn=turn.turn, pid=turn.pid, exit_code=code, signal=signame,
                   how=turn.how or Outcome.EXITED.value, reason=turn.reason,
                   duration_s=round(self._now() - turn.started_at, 6))
        self._spare_due = self._now() + _SPARE_DELAY_S

    # -- spawning -----------------------------------------------------------
    #
    # Forking a Python process and running Python in the child before exec
    # costs over a millisecond (copy-on-write faults). So a spare child is
    # forked ahead of time, does everything but exec (signals, session,
    # parent-death signal), and waits for its argv on a pipe: starting a
    # command is then one write and one exec. The spare is forked only while
    # no command runs (at start-up and shortly after each turn), so the fork
    # competes with neither a command's start nor the report of its end.

    def _prepare_spare(self) -> _Spare:
        """Fork a spare child that is ready to exec; it exits quietly if its
        pipe closes without a command."""
        go_r, go_w = os.pipe()
        err_r, err_w = os.pipe()
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child, until exec
            try:
                os.close(go_w)
                os.close(err_r)
                self._become_command(parent)
                # Take the copy-on-write faults of decoding a command now,
                # while idle, rather than on the start path; and let no
                # garbage collection touch every page before exec.
                gc.disable()
                json.loads(json.dumps({"argv": [""], "env": dict(os.environ)}))
                job = b""
                while True:
                    chunk = os.read(go_r, 65536)
                    if not chunk:
                        break
                    job += chunk
                if not job:
                    os._exit(0)
                os.write(err_w, b"+")
                command = json.loads(job)
                os.execvpe(command["argv"][0], command["argv"], command["env"])
            except BaseException as exc:  # noqa: B902 - anything must reach the parent
                code = exc.errno if isinstance(exc, OSError) and exc.errno else 0
                text = exc.strerror if isinstance(exc, OSError) and exc.strerror else repr(exc)
                try:
                    os.write(err_w, f"{code}:{text}".encode("utf-8", "replace"))
                except OSError:
                    pass
            finally:
                os._exit(EXIT_NOT_FOUND)
        os.close(go_r)
        os.close(err_w)
        return _Spare(pid=pid, go_w=go_w, err_r=err_r)

    def _become_command(self, parent: int) -> None:  # pragma: no cover - child
        """In a forked child: let go of the supervisor's fds and signal set-up,
        start a session, and arrange to die with the supervisor."""
        signal.set_wakeup_fd(-1)
        for fd in (self._control, self._events, self._wake_r, self._wake_w):
            os.close(fd)
        for sig, disposition in self._inherited:
            signal.signal(sig, disposition)
        signal.pthread_sigmask(signal.SIG_SETMASK, ())
        os.setsid()
        if self._prctl is not None:
            self._prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
            if os.getppid() != parent:  # the supervisor died before prctl took hold
                os._exit(128 + signal.SIGKILL)

    def _spawn(self, argv: List[str], environment: Dict[str, str]) -> int:
        """Exec ``argv`` in the spare child; return its pid once exec has
        succeeded, or raise the OSError that made it fail (the child is then
        reaped). A spare that died before taking the command is replaced once."""
        job = json.dumps({"argv": argv, "env": environment}).encode()
        self._spare_due = None
        for _attempt in range(2):
            spare, self._spare = self._spare or self._prepare_spare(), None
            report = b""
            try:
                view = memoryview(job)
                while view:
                    view = view[os.write(spare.go_w, view):]
            except BrokenPipeError:
                pass
            finally:
                os.close(spare.go_w)
            try:
                while True:
                    chunk = os.read(spare.err_r, 4096)
                    if not chunk:
                        break
                    report += chunk
            finally:
                os.close(spare.err_r)
            if report == b"+":  # took the command, then close-on-exec ended the pipe
                return spare.pid
            os.waitpid(spare.pid, 0)
            if report.startswith(b"+"):
                code_text, _, text = report[1:].decode("utf-8", "replace").partition(":")
                code = int(code_text) if code_text.isdigit() else 0
                raise OSError(code or errno.EPERM, text.splitlines()[0] if text else "failed")
            _log(f"spare child {spare.pid} was gone before it got a command; forking another")
        raise OSError(errno.EAGAIN, "could not get a child process to run the command")

    def _refill_spare(self) -> None:
        """Have a spare child ready for the next start, if the system lets us
        fork now (otherwise the next start forks one itself)."""
        if self._spare is not None or self._closing:
            return
        try:
            self._spare = self._prepare_spare()
        except OSError as exc:
            _log(f"cannot fork a spare child: {exc.strerror}")

    def _discard_spare(self) -> None:
        """Let the spare child exit (its pipe closes) and reap it."""
        spare, self._spare = self._spare, None
        if spare is None:
            return
        os.close(spare.go_w)
        os.close(spare.err_r)
        try:
            os.waitpid(spare.pid, 0)
        except ChildProcessError:
            pass

    # -- events -------------------------------------------------------------

    def _emit(self, **fields: Any) -> None:
        if self._events_broken:
            return
        self._out += (json.dumps(fields, separators=(",", ":")) + "\n").encode()
        self._flush()

    def _flush(self) -> None:
        """Write what the pipe takes now; never block (a frozen agent must not
        stop the supervisor from keeping the deadline)."""
        while self._out and not self._events_broken:
            try:
                written = os.write(self._events, self._out)
            except BlockingIOError:
                return
            except OSError:
                self._events_broken = True
                self._out = b""
                return
            self._out = self._out[written:]

    def _final_flush(self) -> None:
        """Give a slow agent a bounded chance to read the last events."""
        deadline = self._now() + _FINAL_FLUSH_S
        while self._out and not self._events_broken:
            left = deadline - self._now()
            if left <= 0:
                return
            select.select([], [self._events], [], left)
            self._flush()


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected an integer, got {value!r}")
    return value


def _float(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"expected a number, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"expected a finite number, got {value!r}")
    return float(value)


def _str_list(value: Any) -> List[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise TypeError("argv must be a list of strings")
    return value


def _str_dict(value: Any) -> Dict[str, str]:
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise TypeError("env must map strings to strings")
    return value


def main(argv: Optional[List[str]] = None) -> int:
    """Parse the command line and run one supervisor; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m enqueue.supervisor", description=__doc__.splitlines()[0])
    parser.add_argument("--control-fd", type=int, required=True, help="read control messages from this fd")
    parser.add_argument("--events-fd", type=int, required=True, help="write events to this fd")
    parser.add_argument("--kill-grace", type=float, required=True, metavar="SECONDS",
                        help="time between SIGTERM and SIGKILL")
    args = parser.parse_args(argv)
    if args.kill_grace < 0:
        parser.error("--kill-grace must not be negative")
    try:
        # The agent's numbers may be high; select() needs them below FD_SETSIZE,
        # and the copies are close-on-exec, so no command inherits them.
        control, events = os.dup(args.control_fd), os.dup(args.events_fd)
    except OSError as exc:
        _log(f"bad file descriptor: {exc.strerror}")
        return EXIT_USAGE
    os.close(args.control_fd)
    os.close(args.events_fd)
    return Supervisor(control, events, args.kill_grace).run()


if __name__ == "__main__":
    sys.exit(main())
