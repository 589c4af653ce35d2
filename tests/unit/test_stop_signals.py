"""Which signals may start a command's stop, and how they are named on the command line."""

from __future__ import annotations

import signal

import pytest

from enqueue.stop_signals import is_stop_signal, parse_stop_signal, stop_signal_name


@pytest.mark.parametrize("text, number", [
    ("INT", signal.SIGINT), ("sigint", signal.SIGINT), ("SIGHUP", signal.SIGHUP), ("usr1", signal.SIGUSR1),
    ("2", signal.SIGINT), ("15", signal.SIGTERM), (" TERM ", signal.SIGTERM), (str(int(signal.SIGRTMIN)),
                                                                             int(signal.SIGRTMIN)),
])
def test_names_and_numbers_are_read(text: str, number: int) -> None:
    assert parse_stop_signal(text) == number
    assert is_stop_signal(number)


@pytest.mark.parametrize("text, reason", [
    ("KILL", "SIGKILL cannot start a stop (SIGKILL already follows after the kill grace)"),
    ("9", "SIGKILL cannot start a stop"),
    ("STOP", "SIGSTOP cannot start a stop (it pauses the command instead of ending it)"),
    ("tstp", "SIGTSTP cannot start a stop"),
    ("CHLD", "SIGCHLD cannot start a stop (it does not end a process)"),
    ("0", "0 is not a signal number on this system"),
    ("4096", "4096 is not a signal number on this system"),
    ("TERMINATE", "'TERMINATE' is not a signal name"),
    ("SIG_DFL", "'SIG_DFL' is not a signal name"),
    ("", "'' is not a signal name"),
    ("-2", "'-2' is not a signal name"),
])
def test_what_cannot_start_a_stop_is_refused_with_what_to_give(text: str, reason: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_stop_signal(text)
    message = str(caught.value)
    assert message.startswith(reason) and "give a signal such as TERM, INT" in message and "\n" not in message


def test_refused_numbers_are_no_stop_signals() -> None:
    assert not any(is_stop_signal(n) for n in (0, signal.SIGKILL, signal.SIGSTOP, signal.SIGCONT, 4096))


def test_names() -> None:
    assert stop_signal_name(signal.SIGINT) == "SIGINT"
    assert stop_signal_name(int(signal.SIGRTMIN) + 1) == f"signal {int(signal.SIGRTMIN) + 1}"
