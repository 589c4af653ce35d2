"""The supervisor's command line, read without argparse (which it does not import: enqueue.supervisor)."""

from __future__ import annotations

import signal

import pytest

from enqueue.supervisor import UsageError, main, parse_command_line

BASE = ["--control-fd", "3", "--events-fd", "4", "--kill-grace", "0.5"]


def test_the_flags_as_values_with_sigterm_by_default() -> None:
    assert parse_command_line(BASE) == {"--control-fd": 3, "--events-fd": 4, "--kill-grace": 0.5,
                                        "--stop-signal": int(signal.SIGTERM)}
    assert parse_command_line(["--stop-signal=2", *BASE])["--stop-signal"] == 2


@pytest.mark.parametrize("argv, says", [
    ([*BASE, "--bogus", "1"], "unknown argument '--bogus'"),
    ([*BASE, "--stop-signal"], "--stop-signal needs a value"),
    (BASE[2:], "--control-fd is required"),
    ([*BASE[:4], "--kill-grace", "soon"], "--kill-grace: not a number: 'soon'"),
    ([*BASE[:4], "--kill-grace", "-1"], "--kill-grace must be a finite number of seconds, not negative"),
    ([*BASE[:4], "--kill-grace", "inf"], "--kill-grace must be a finite number of seconds, not negative"),
    ([*BASE, "--stop-signal", str(int(signal.SIGKILL))], "is not a signal that can start a stop"),
])
def test_a_bad_command_line_says_what_is_wrong(argv: list[str], says: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_command_line(argv)
    assert says in str(caught.value)


def test_a_bad_command_line_exits_2_with_one_line_and_the_usage(capfd: pytest.CaptureFixture[str]) -> None:
    assert main([*BASE, "--bogus"]) == 2
    err = capfd.readouterr().err.splitlines()
    assert err == ["enqueue supervisor: unknown argument '--bogus'",
                   "usage: python -m enqueue.supervisor --control-fd N --events-fd M --kill-grace SECONDS "
                   "[--stop-signal N]"]
