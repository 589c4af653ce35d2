"""The supervisor's wire protocol with the agent: one JSON object per line (docs/PROTOCOL.md §3.6).

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
The stop signal (SIGTERM, or the one the supervisor was started with,
``--stop-signal N``) and the kill grace are the supervisor's for its whole
life, not per message: every stop of every turn starts with that signal.
``how`` is ``exited`` (on its own), ``fenced`` (deadline), ``stopped`` (the
agent asked, ``reason`` says why; ``shutdown`` and ``terminated`` are the
supervisor's own reasons) or ``agent-gone``. A ``spawn_failed`` with
``how: "fenced"`` and no exit code means the deadline left no time to run.

Guarantees: the field checks accept exactly the JSON types above (a boolean
is no integer, a deadline is finite) and raise ``TypeError``/``ValueError``
otherwise; an encoded event is one line; the events pipe is never waited
on, so a frozen agent cannot stop the supervisor from keeping the deadline.
Not here: what the supervisor does with a message (``enqueue.supervisor``).
Not guaranteed: that a slow agent reads every event (a broken pipe drops
them; the last ones get a bounded time to be read).
"""

from __future__ import annotations

import json
import math
import os
import select
import signal

# Not typing.TYPE_CHECKING: importing typing costs the supervisor about 1 MB of resident memory.
TYPE_CHECKING = False
if TYPE_CHECKING:  # the supervisor starts on every agent start: keep its imports few
    from typing import Any, Callable, Dict, List, Optional, Tuple


def expect_int(value: Any) -> int:
    """``value`` if it is a JSON integer (not a boolean); TypeError otherwise."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected an integer, got {value!r}")
    return value


def expect_float(value: Any) -> float:
    """``value`` as a float if it is a finite JSON number (not a boolean); TypeError/ValueError otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"expected a number, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"expected a finite number, got {value!r}")
    return float(value)


def expect_str_list(value: Any) -> List[str]:
    """``value`` if it is a list of strings (an argv); TypeError otherwise."""
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise TypeError("argv must be a list of strings")
    return value


def expect_str_dict(value: Any) -> Dict[str, str]:
    """``value`` if it maps strings to strings (environment additions); TypeError otherwise."""
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise TypeError("env must map strings to strings")
    return value


def encode_event(fields: Dict[str, Any]) -> bytes:
    """One event as the line the agent reads."""
    return (json.dumps(fields, separators=(",", ":")) + "\n").encode()


class EventPipe:
    """The events pipe to the agent (a non-blocking fd), written without ever waiting on it."""

    def __init__(self, fd: int, monotonic: Callable[[], float]) -> None:
        self._fd = fd
        self._now = monotonic
        self._out = b""
        self._broken = False

    @property
    def pending(self) -> bool:
        """Events are waiting for room in the pipe."""
        return bool(self._out) and not self._broken

    def emit(self, fields: Dict[str, Any]) -> None:
        """Queue one event and write what the pipe takes now; dropped once the pipe is broken."""
        if self._broken:
            return
        self._out += encode_event(fields)
        self.flush()

    def flush(self) -> None:
        """Write what the pipe takes now; never block (a frozen agent must not
        stop the supervisor from keeping the deadline)."""
        while self._out and not self._broken:
            try:
                written = os.write(self._fd, self._out)
            except BlockingIOError:
                return
            except OSError:
                self._broken = True
                self._out = b""
                return
            self._out = self._out[written:]

    def final_flush(self, seconds: float) -> None:
        """Give a slow agent a bounded chance (``seconds``) to read the last events."""
        deadline = self._now() + seconds
        while self._out and not self._broken:
            left = deadline - self._now()
            if left <= 0:
                return
            select.select([], [self._fd], [], left)
            self.flush()


def signal_name(number: int) -> str:
    """``SIGTERM`` for 15; ``signal N`` for a number without a name."""
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def shell_exit_code(status: int) -> Tuple[int, Optional[str]]:
    """A wait status as the shell reports it: ``(code, None)``, or ``(128 + N, name)`` when killed by signal N."""
    code = os.waitstatus_to_exitcode(status)
    if code < 0:
        return 128 - code, signal_name(-code)
    return code, None
