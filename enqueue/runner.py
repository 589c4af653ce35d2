"""The agent's handle on its command supervisor.

``Runner`` starts one supervisor process (``enqueue.supervisor``) when it is
created and keeps it until ``close()``. Starting a turn's command is then one
message down a pipe: no interpreter is spawned per turn. Outcomes come back as
``RunnerEvent`` values, delivered from a reader thread to ``on_event`` (the
agent passes a queue's ``put``), in the order the supervisor reported them.

Guarantees
----------
* Every ``start()`` is answered by ``spawn_failed``, or by ``started`` and
  then ``exited``, or (with or without ``started``) by ``supervisor_died``.
* ``busy`` is true from ``start()`` until that answer has been handed to
  ``on_event`` (it is cleared just before), so a second turn cannot be started
  on top of the first.
* The deadline is kept by the supervisor: the command is dead by ``deadline``
  even if this process is frozen or killed (see ``enqueue.supervisor``).
* The deadline has a second keeper here, on the reader thread, so it holds
  while the agent's own thread waits on the database: if the command's
  group is not reported ended ``keeper_lag_s`` after the deadline (the
  supervisor frozen or starved), the runner SIGKILLs the group itself, once.
  It tracks the deadline as the supervisor does (``extend`` is final once
  the SIGTERM moment has passed), so it never acts before the supervisor
  would have; the command's end is then reported as ``fenced``.
* ``supervisor_died`` is reported once if the supervisor goes away without
  ``close()``. A command it ran is then dead: the kernel kills its main
  process with the supervisor, the runner SIGKILLs the rest of its group.
  The runner cannot be used again; make a new one.

Not delivered: the supervisor's ``ready`` handshake (``__init__`` waits for
it), and nothing at all after ``close()`` has returned.
"""

from __future__ import annotations

import json
import logging
import math
import os
import select
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional

from enqueue.connection import CONNECTION_ENV_PREFIX
from enqueue.errors import EnqueueError
from enqueue.outcomes import SHUTDOWN, Outcome

log = logging.getLogger(__name__)

_READY_TIMEOUT_S = 30.0
_CLOSE_MARGIN_S = 5.0

# ``-I -S`` keep the supervisor's import path free of the current directory,
# PYTHON* variables and site-packages (it needs only the standard library, and
# skipping site halves its start-up); the package root is put first by hand,
# so the command's own environment needs no PYTHONPATH.
_BOOTSTRAP = (
    "import sys; sys.path.insert(0, sys.argv.pop(1)); "
    "from enqueue.supervisor import main; sys.exit(main(sys.argv[1:]))"
)


def command_environment(environ: Mapping[str, str]) -> Dict[str, str]:
    """The environment the supervisor, and so every command, starts from: ``environ`` minus enqueue's own
    connection settings (every ``ENQUEUE_COUCHDB_*`` variable: a password, a URL with credentials in it)."""
    return {k: v for k, v in environ.items() if not k.startswith(CONNECTION_ENV_PREFIX)}


class RunnerError(EnqueueError):
    """runner: the supervisor could not be started, or is gone."""


@dataclass(frozen=True)
class RunnerEvent:
    """One outcome reported by the supervisor.

    ``kind`` is ``started``, ``exited``, ``spawn_failed`` or
    ``supervisor_died``. ``exit_code`` follows the shell (128 + signal number
    when killed by a signal); ``how`` is an ``Outcome`` value: ``exited``,
    ``fenced``, ``stopped`` (``reason`` gives the agent's reason) or
    ``agent-gone``.
    """

    kind: str
    turn: Optional[int] = None
    pid: Optional[int] = None
    exit_code: Optional[int] = None
    signal: Optional[str] = None
    how: Optional[str] = None
    error: Optional[str] = None
    duration_s: Optional[float] = None
    reason: Optional[str] = None


def _package_root() -> str:
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Runner:
    """Runs one command at a time under a long-lived supervisor process."""

    def __init__(
        self,
        kill_grace_s: float,
        on_event: Callable[[RunnerEvent], None],
        python: str = sys.executable,
        keeper_lag_s: float = 1.0,
        stop_signal: int = signal.SIGTERM,
    ) -> None:
        """Start the supervisor and wait until it answers; raises RunnerError
        if it does not come up. ``stop_signal`` starts every stop of a command
        (``enqueue.stop_signals``), SIGKILL follows ``kill_grace_s`` later."""
        if kill_grace_s < 0:
            raise ValueError("kill_grace_s must not be negative")
        if keeper_lag_s < 0:
            raise ValueError("keeper_lag_s must not be negative")
        self.kill_grace_s = kill_grace_s
        self.keeper_lag_s = keeper_lag_s
        self._deadline: Optional[float] = None
        self._killed_turn: Optional[int] = None
        self._on_event = on_event
        self._lock = threading.Lock()
        self._close_lock = threading.Lock()
        self._busy = False
        self._turn: Optional[int] = None
        self._pid: Optional[int] = None
        self._closed = False
        self._gone = False
        self._ready = threading.Event()

        control_r, control_w = os.pipe()
        events_r, events_w = os.pipe()
        try:
            self._proc = subprocess.Popen(
                [python, "-I", "-S", "-c", _BOOTSTRAP, _package_root(),
                 "--control-fd", str(control_r), "--events-fd", str(events_w),
                 "--kill-grace", repr(float(kill_grace_s)), "--stop-signal", str(int(stop_signal))],
                pass_fds=(control_r, events_w),
                env=command_environment(os.environ),
                # A group of its own: a stop signal sent to the agent's job
                # (kill -STOP -PGID) must not freeze the fence with the agent.
                # The supervisor follows the agent through the control pipe.
                start_new_session=True,
            )
        except BaseException:
            os.close(control_w)
            os.close(events_r)
            raise
        finally:
            os.close(control_r)
            os.close(events_w)
        self._control = control_w
        self._reader = threading.Thread(
            target=self._read_events, args=(events_r,), name="enqueue-runner-events", daemon=True
        )
        self._reader.start()
        if not self._ready.wait(_READY_TIMEOUT_S) or self._gone:
            self.close()
            raise RunnerError(f"runner: the supervisor did not start ({python})")
        log.debug("supervisor %d ready", self._proc.pid)

    @property
    def supervisor_pid(self) -> int:
        """The supervisor's process id (for diagnostics)."""
        return self._proc.pid

    @property
    def busy(self) -> bool:
        """A command was started and its outcome is not yet delivered."""
        with self._lock:
            return self._busy

    def start(self, turn: int, argv: List[str], env: Dict[str, str], deadline: float) -> None:
        """Ask for ``argv`` to run as ``turn`` until ``deadline`` (a
        ``time.monotonic()`` value: when the command must be dead) with ``env``
        added to the environment. Returns at once. Raises RunnerError when busy
        or closed; with the supervisor gone, the answer is a ``spawn_failed``
        event (delivered from this thread)."""
        if not argv:
            raise ValueError("runner: empty command")
        if not math.isfinite(deadline):
            raise ValueError(f"runner: deadline must be finite, got {deadline!r}")
        with self._lock:
            if self._closed:
                raise RunnerError("runner: closed")
            if self._busy:
                raise RunnerError(f"runner: turn {self._turn} is still running")
            gone = self._gone
            if not gone:
                self._busy = True
                self._turn = turn
                self._deadline = deadline
                self._send({"op": "start", "turn": turn, "argv": list(argv), "env": dict(env),
                            "deadline": deadline})
        if gone:
            self._deliver(RunnerEvent(kind="spawn_failed", turn=turn,
                                      error="not started: the command supervisor is gone"))

    def extend(self, deadline: float) -> None:
        """Move the running turn's deadline later. Ignored by the supervisor
        once the SIGTERM moment has passed, and if it is not later."""
        if not math.isfinite(deadline):
            raise ValueError(f"runner: deadline must be finite, got {deadline!r}")
        with self._lock:
            if self._busy and not self._gone:
                self._send({"op": "extend", "turn": self._turn, "deadline": deadline})
                # As the supervisor does: later only, and final once the SIGTERM moment has passed.
                current = self._deadline
                if current is not None and deadline > current and time.monotonic() < current - self.kill_grace_s:
                    self._deadline = deadline

    def stop(self, reason: str) -> None:
        """End the running turn now (the stop signal, SIGKILL after the grace period);
        ``reason`` comes back in the ``exited`` event. No-op when idle."""
        with self._lock:
            if self._busy and not self._gone:
                self._send({"op": "stop", "turn": self._turn, "reason": reason})

    def close(self) -> None:
        """Stop any command with the grace policy, shut the supervisor down and
        join the reader thread. Idempotent; safe to call from ``on_event``
        (the reader is then not joined)."""
        with self._close_lock:
            with self._lock:
                if self._closed:
                    return
                self._closed = True
                self._send({"op": SHUTDOWN})
                os.close(self._control)
            try:
                self._proc.wait(self.kill_grace_s + _CLOSE_MARGIN_S)
            except subprocess.TimeoutExpired:
                log.warning("supervisor %d did not shut down; killing it", self._proc.pid)
                self._proc.kill()
                self._proc.wait()
            if threading.current_thread() is not self._reader:
                self._reader.join()

    def __enter__(self) -> "Runner":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def _send(self, message: Dict[str, Any]) -> None:
        """Write one control line; caller holds ``_lock``. A dead supervisor
        is reported by the reader thread, not here."""
        data = (json.dumps(message, separators=(",", ":")) + "\n").encode()
        try:
            while data:
                data = data[os.write(self._control, data):]
        except OSError as exc:
            log.debug("control pipe: %s", exc)

    # -- reader thread ------------------------------------------------------

    def _keeper_at(self) -> Optional[float]:
        """When the running command is killed from here unless reported ended; None when nothing to keep."""
        with self._lock:
            if not self._busy or self._pid is None or self._deadline is None or self._killed_turn == self._turn:
                return None
            return self._deadline + self.keeper_lag_s

    def _keep_deadline(self) -> None:
        """The deadline's second keeper: SIGKILL a group whose end is overdue (the supervisor did not act)."""
        with self._lock:
            if not self._busy or self._pid is None or self._deadline is None or self._killed_turn == self._turn:
                return
            late = time.monotonic() - self._deadline
            if late < self.keeper_lag_s:
                return
            self._killed_turn, pgid = self._turn, self._pid
            try:
                os.killpg(pgid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        log.error("runner: turn %s outlived its deadline by %.1f s with no word from the supervisor; killed its "
                  "process group %d from the agent", self._killed_turn, late, pgid)

    def _read_events(self, fd: int) -> None:
        buffer = b""
        try:
            while True:
                keeper_at = self._keeper_at()
                wait = None if keeper_at is None else max(0.0, keeper_at - time.monotonic())
                if not select.select([fd], [], [], wait)[0]:
                    self._keep_deadline()
                    continue
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    if line.strip():
                        self._dispatch(line)
        finally:
            os.close(fd)
            self._supervisor_gone()

    def _dispatch(self, line: bytes) -> None:
        try:
            fields = json.loads(line)
            kind = fields["kind"]
        except (ValueError, KeyError, TypeError):
            log.error("runner: unreadable event from the supervisor: %r", line[:200])
            return
        if kind == "ready":
            self._ready.set()
            return
        how = fields.get("how")
        if kind == "exited" and how == Outcome.EXITED and fields.get("turn") == self._killed_turn:
            how = Outcome.FENCED.value  # the second keeper killed it at its deadline
        event = RunnerEvent(
            kind=kind,
            turn=fields.get("turn"),
            pid=fields.get("pid"),
            exit_code=fields.get("exit_code"),
            signal=fields.get("signal"),
            how=how,
            error=fields.get("error"),
            duration_s=fields.get("duration_s"),
            reason=fields.get("reason"),
        )
        with self._lock:
            if event.turn == self._turn:
                if kind == "started":
                    self._pid = event.pid
                elif kind in ("exited", "spawn_failed"):
                    self._busy = False
                    self._pid = None
        self._deliver(event)

    def _supervisor_gone(self) -> None:
        rc = self._proc.wait()
        with self._lock:
            self._gone = True
            expected = self._closed
            turn = self._turn if self._busy else None
            pgid, self._pid = self._pid, None
            self._busy = False
        self._ready.set()
        if pgid is not None:
            # The kernel killed the command's main process with the supervisor
            # (parent-death signal), but not the rest of its process group.
            try:
                os.killpg(pgid, signal.SIGKILL)
            except OSError:
                pass
        if expected:
            return
        cause = f"killed by signal {-rc}" if rc < 0 else f"exit code {rc}"
        log.error("runner: the supervisor died (%s)", cause)
        self._deliver(RunnerEvent(kind="supervisor_died", turn=turn, error=f"supervisor died ({cause})"))

    def _deliver(self, event: RunnerEvent) -> None:
        try:
            self._on_event(event)
        except Exception:  # noqa: BLE001 - a bad callback must not stop event delivery
            log.exception("runner: on_event failed for %s", event)
