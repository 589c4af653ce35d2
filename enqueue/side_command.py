"""Running a side command (``--between``, ``--ready``): spawn it, pass its output on, report how it ended.

One side command at a time, as ``sh -c COMMAND_LINE`` in a session (and
process group) of its own, with the environment the turn's command gets
(this process's minus every ``ENQUEUE_COUCHDB_*`` variable, so no password
or URL with credentials) plus the additions it is started with, stdin from
/dev/null. Its stdout and stderr, merged, are copied to the agent's stdout
as they come; the first line is kept for the report.

Guarantees
----------
* Every ``start`` is answered by exactly one ``SideCommandEnded`` handed to
  ``deliver`` (from a thread of its own), also when ``sh`` could not be
  started (exit code 127 then); the exit code follows the shell (128 +
  signal number when a signal killed it).
* ``stop`` sends SIGTERM to the command's process group and SIGKILL
  ``kill_grace`` later if the command is still there; ``close`` does the
  same and waits for the command to end, so none outlives a clean stop of
  the agent. Not guaranteed: stopping it when the agent is SIGKILLed, nor
  anything it put in other process groups.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from typing import IO, Callable, Mapping

from enqueue.events import Event, SideCommandEnded
from enqueue.runner import command_environment

log = logging.getLogger("enqueue.agent")

FIRST_LINE_MAX = 200
_SHELL = "/bin/sh"
_CLOSE_MARGIN_S = 5.0
# How long the report waits, after the command exited, for the rest of its output.
_OUTPUT_DRAIN_S = 0.5


def exit_code_of(returncode: int) -> int:
    """The shell's exit code for a ``Popen.returncode`` (negative: killed by that signal)."""
    return 128 - returncode if returncode < 0 else returncode


def first_line_of(data: bytes) -> str | None:
    """The first non-empty line of ``data``, decoded, trimmed to ``FIRST_LINE_MAX`` characters; None if none."""
    for raw in data.splitlines():
        line = raw.decode("utf-8", "replace").strip()
        if line:
            return line[:FIRST_LINE_MAX]
    return None


class SideCommandRunner:
    """The real ``SideRunner`` (enqueue.side_steps): one side command at a time."""

    def __init__(self, kill_grace_s: float, deliver: Callable[[Event], None],
                 environ: Mapping[str, str] = os.environ, output: IO[bytes] | None = None) -> None:
        self._grace = kill_grace_s
        self._deliver = deliver
        self._environ = environ
        self._output = output
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._thread: threading.Thread | None = None
        self._killer: threading.Timer | None = None

    def start(self, name: str, command_line: str, env: dict[str, str]) -> None:
        """Start ``command_line``; its end comes back as ``SideCommandEnded(name, ...)``."""
        environment = command_environment(self._environ)
        environment.update(env)
        started = time.monotonic()
        try:
            proc = subprocess.Popen([_SHELL, "-c", command_line], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, env=environment, start_new_session=True)
        except OSError as exc:
            self._deliver(SideCommandEnded(name, 127, f"cannot start {_SHELL}: {exc.strerror or exc}", 0.0))
            return
        with self._lock:
            self._proc = proc
        self._thread = threading.Thread(target=self._follow, args=(name, proc, started),
                                        name=f"enqueue-{name}", daemon=True)
        self._thread.start()

    def _follow(self, name: str, proc: subprocess.Popen[bytes], started: float) -> None:
        head = bytearray()
        # A process the command left behind may hold its output open: the end is the command's own exit.
        reader = threading.Thread(target=self._copy_output, args=(proc, head), name=f"enqueue-{name}-output",
                                  daemon=True)
        reader.start()
        code = exit_code_of(proc.wait())
        reader.join(_OUTPUT_DRAIN_S)
        with self._lock:
            if self._proc is proc:
                self._proc = None
            if self._killer is not None:
                self._killer.cancel()
                self._killer = None
        self._deliver(SideCommandEnded(name, code, first_line_of(bytes(head)), time.monotonic() - started))

    def _copy_output(self, proc: subprocess.Popen[bytes], head: bytearray) -> None:
        assert proc.stdout is not None
        out = self._output if self._output is not None else sys.stdout.buffer
        with proc.stdout:
            for chunk in iter(lambda: proc.stdout.read1(65536), b""):  # type: ignore[union-attr]
                if len(head) < 4 * FIRST_LINE_MAX:
                    head.extend(chunk[:4 * FIRST_LINE_MAX])
                try:
                    out.write(chunk)
                    out.flush()
                except (OSError, ValueError):
                    pass  # the agent's stdout is gone: the command's output is lost, not the command

    def _signal(self, proc: subprocess.Popen[bytes], signum: int) -> None:
        try:
            os.killpg(proc.pid, signum)
        except (ProcessLookupError, PermissionError):
            pass

    def stop(self) -> None:
        """SIGTERM to the running side command's group now, SIGKILL after the kill grace."""
        with self._lock:
            proc = self._proc
            if proc is None or self._killer is not None:
                return
            self._signal(proc, signal.SIGTERM)
            self._killer = threading.Timer(self._grace, self._signal, args=(proc, signal.SIGKILL))
            self._killer.daemon = True
            self._killer.start()

    def close(self) -> None:
        """Stop the running side command (as ``stop``) and wait until it has ended."""
        self.stop()
        thread = self._thread
        if thread is not None:
            thread.join(self._grace + _CLOSE_MARGIN_S)
            with self._lock:
                proc = self._proc
            if proc is not None:
                self._signal(proc, signal.SIGKILL)
            thread.join(_CLOSE_MARGIN_S)
        with self._lock:
            if self._killer is not None:
                self._killer.cancel()
                self._killer = None
