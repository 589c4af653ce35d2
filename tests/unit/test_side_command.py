"""The runner of side commands on real processes: environment, first line, exit codes, stopping its group."""

from __future__ import annotations

import io
import os
import queue
import threading

import psutil
import pytest

from enqueue.events import Event, SideCommandEnded
from enqueue.side_command import SideCommandRunner, exit_code_of, first_line_of
from tests.support.agents import wait_until


class Output(io.RawIOBase):
    """A thread-safe stand-in for the agent's stdout."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.lock = threading.Lock()

    def writable(self) -> bool:
        return True

    def write(self, chunk) -> int:  # type: ignore[override]
        with self.lock:
            self.data.extend(chunk)
        return len(chunk)


@pytest.fixture
def runner():
    ended: queue.Queue[Event] = queue.Queue()
    out = Output()
    environ = {"PATH": os.environ["PATH"], "ENQUEUE_COUCHDB_PASSWORD": "s3cret", "ENQUEUE_COUCHDB_URL": "http://u:p@h",
               "KEEP_ME": "yes"}
    r = SideCommandRunner(0.3, ended.put, environ=environ, output=out)  # type: ignore[arg-type]
    r.ended, r.out = ended, out  # type: ignore[attr-defined]
    yield r
    r.close()


def test_first_line_and_exit_codes() -> None:
    assert first_line_of(b"\n  \nfirst one \nsecond\n") == "first one"
    assert first_line_of(b"") is None
    assert first_line_of(b"x" * 500) == "x" * 200
    assert exit_code_of(3) == 3 and exit_code_of(-15) == 143


def test_it_reports_exit_code_and_first_line_and_passes_the_output_on(runner) -> None:
    runner.start("ready", "echo; echo 'Control socket connect: No such file' >&2; echo more; exit 255",
                 {"ENQUEUE_SITE": "alpha"})
    ev = runner.ended.get(timeout=10)
    assert isinstance(ev, SideCommandEnded)
    assert (ev.name, ev.exit_code, ev.first_line) == ("ready", 255, "Control socket connect: No such file")
    assert b"more\n" in runner.out.data


def test_its_environment_has_no_connection_settings_and_its_own_process_group(runner) -> None:
    runner.start("between", 'echo "$ENQUEUE_SITE ${KEEP_ME} ${ENQUEUE_COUCHDB_PASSWORD:-none} '
                            '${ENQUEUE_COUCHDB_URL:-none}"; ps -o pgid= -p $$', {"ENQUEUE_SITE": "alpha"})
    ev = runner.ended.get(timeout=10)
    assert ev.exit_code == 0 and ev.first_line == "alpha yes none none"
    pgid = int(bytes(runner.out.data).splitlines()[1])
    assert pgid != os.getpgrp()
    assert b"s3cret" not in runner.out.data


def test_stop_sends_sigterm_to_the_group_and_sigkill_after_the_grace(runner) -> None:
    runner.start("between", "trap '' TERM; sleep 60 & echo $!; wait", {})
    child = int(wait_until("the child's pid", lambda: bytes(runner.out.data).split()[:1])[0])
    runner.stop()
    ev = runner.ended.get(timeout=10)
    assert ev.exit_code == 128 + 9, "the shell ignores SIGTERM: SIGKILL after the grace"
    psutil.wait_procs([psutil.Process(child)] if psutil.pid_exists(child) else [], timeout=5)
    assert not psutil.pid_exists(child) or psutil.Process(child).status() == psutil.STATUS_ZOMBIE


def test_close_stops_a_running_command_and_waits_for_it(runner) -> None:
    runner.start("between", "sleep 60", {})
    runner.close()
    ev = runner.ended.get(timeout=1)
    assert ev.exit_code == 128 + 15


def test_a_shell_that_cannot_start_is_reported_as_127(runner, monkeypatch) -> None:
    monkeypatch.setattr("enqueue.side_command._SHELL", "/nonexistent/sh")
    runner.start("ready", "true", {})
    ev = runner.ended.get(timeout=1)
    assert ev.exit_code == 127 and "cannot start /nonexistent/sh" in ev.first_line
