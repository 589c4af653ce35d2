"""The signal that starts a command's stop (``enqueue run --stop-signal``): which ones qualify, and their names.

A launcher such as ``srun``, ``mpirun`` or ``ssh -tt`` forwards one
particular signal to the work it started elsewhere; the supervisor sends
that one where it would send SIGTERM, and SIGKILL a kill grace later as
always (docs/LAUNCHERS.md).

Guarantees: ``parse_stop_signal`` returns only numbers ``is_stop_signal``
accepts, or raises ``ValueError`` with one line saying what was wrong and
what to give instead. SIGKILL is refused (it would skip the grace the
command is promised) and so are the signals that stop or do nothing to a
process by default (a stopped command never ends: the fence would come to
SIGKILL every time). Not here: whether the command or its launcher heeds
the signal.
"""

from __future__ import annotations

import signal

__all__ = ["is_stop_signal", "parse_stop_signal", "stop_signal_name"]

_REFUSED = {
    signal.SIGKILL: "SIGKILL already follows after the kill grace",
    signal.SIGSTOP: "it pauses the command instead of ending it",
    signal.SIGTSTP: "it pauses the command instead of ending it",
    signal.SIGTTIN: "it pauses the command instead of ending it",
    signal.SIGTTOU: "it pauses the command instead of ending it",
    signal.SIGCONT: "it does not end a process",
    signal.SIGCHLD: "it does not end a process",
    signal.SIGWINCH: "it does not end a process",
    signal.SIGURG: "it does not end a process",
}
_EXAMPLES = "TERM, INT, HUP, USR1, or a number such as 2"


def is_stop_signal(number: int) -> bool:
    """``number`` is a signal of this system that may start a command's stop."""
    return number in signal.valid_signals() and number != 0 and number not in _REFUSED


def stop_signal_name(number: int) -> str:
    """``SIGINT`` for 2; ``signal N`` for a number without a name (a real-time signal)."""
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def parse_stop_signal(text: str) -> int:
    """A signal name (``INT``, ``SIGINT``, any case) or number as its number; ``ValueError`` saying why not."""
    word = text.strip()
    if word.isdigit():
        number = int(word)
        if number not in signal.valid_signals() or number == 0:
            raise ValueError(f"{word} is not a signal number on this system; give a signal such as {_EXAMPLES}")
    else:
        name = word.upper()
        name = name if name.startswith("SIG") else "SIG" + name
        found = getattr(signal.Signals, name, None) if name.isidentifier() else None
        if not isinstance(found, signal.Signals):
            raise ValueError(f"{text!r} is not a signal name; give a signal such as {_EXAMPLES}")
        number = int(found)
    if number in _REFUSED:
        raise ValueError(f"{stop_signal_name(number)} cannot start a stop ({_REFUSED[number]}); "
                         f"give a signal such as {_EXAMPLES}")
    return number
