"""The supervisor process, driven through its pipes as the agent would (docs/PROTOCOL.md §3.6).

Real processes and short timings; every wait is on an event (with a timeout)
or, for processes nobody reports on, on the process disappearing.
"""

from __future__ import annotations

import fcntl
import json
import os
import queue
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import psutil
import pytest

from tests.support.processes import TIMEOUT, Fifo, no_leftovers, wait_gone  # noqa: F401  (fixture)

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux process semantics")

ROOT = Path(__file__).resolve().parents[2]
GRACE = 0.2


def read_line(fd: int, timeout: float = TIMEOUT) -> bytes:
    """One line from ``fd``, read byte by byte so nothing after it is consumed."""
    line = b""
    while not line.endswith(b"\n"):
        assert select.select([fd], [], [], timeout)[0], "no line in time"
        byte = os.read(fd, 1)
        assert byte, "EOF"
        line += byte
    return line


class Harness:
    """Plays the agent's side of the pipes."""

    def __init__(self, grace: float = GRACE, reader: bool = True) -> None:
        control_r, self.control = os.pipe()
        events_r, events_w = os.pipe()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "enqueue.supervisor", "--control-fd", str(control_r),
             "--events-fd", str(events_w), "--kill-grace", str(grace)],
            pass_fds=(control_r, events_w), cwd=ROOT,
        )
        os.close(control_r)
        os.close(events_w)
        self.events_fd = events_r
        self.events: "queue.Queue[Optional[Dict[str, Any]]]" = queue.Queue()
        self.reader = threading.Thread(target=self._read, args=(events_r,), daemon=True)
        ready = json.loads(read_line(events_r))
        assert ready["kind"] == "ready"
        self.pid = ready["pid"]
        if reader:
            self.start_reader()

    def start_reader(self) -> None:
        self.reader.start()

    def _read(self, fd: int) -> None:
        with os.fdopen(fd, "rb") as stream:
            for line in stream:
                self.events.put(json.loads(line))
        self.events.put(None)

    def send(self, **message: Any) -> None:
        os.write(self.control, (json.dumps(message) + "\n").encode())

    def start(self, turn: int, argv: List[str], deadline_in: float, env: Optional[Dict[str, str]] = None) -> float:
        deadline = time.monotonic() + deadline_in
        self.send(op="start", turn=turn, argv=argv, env=env or {}, deadline=deadline)
        return deadline

    def next(self, kind: Optional[str] = None, timeout: float = TIMEOUT) -> Dict[str, Any]:
        event = self.events.get(timeout=timeout)
        assert event is not None, "the supervisor closed its events pipe"
        if kind is not None:
            assert event["kind"] == kind, event
        return event

    def close_control(self) -> None:
        if self.control >= 0:
            os.close(self.control)
            self.control = -1

    def close(self) -> int:
        self.close_control()
        try:
            return self.proc.wait(TIMEOUT)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            if self.reader.ident is not None:
                self.reader.join(TIMEOUT)
            else:
                os.close(self.events_fd)


@pytest.fixture
def supervisor(no_leftovers: List[int]) -> Iterator[Harness]:
    harness = Harness()
    yield harness
    harness.close()


def proc_status(pid: int) -> Dict[str, str]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return fields


def test_ready_then_a_command_runs_and_exits(supervisor: Harness) -> None:
    assert psutil.Process(supervisor.pid).ppid() == os.getpid()
    supervisor.start(1, ["sh", "-c", "exit 7"], 5)
    started = supervisor.next("started")
    exited = supervisor.next("exited")
    assert (started["turn"], exited["turn"]) == (1, 1)
    assert exited["pid"] == started["pid"]
    assert (exited["exit_code"], exited["signal"], exited["how"]) == (7, None, "exited")
    assert 0 <= exited["duration_s"] < 2


def test_command_gets_only_stdio_and_default_signals() -> None:
    """Control/event pipes stay with the supervisor; the supervisor's own
    ignored signals are not passed on, the agent's ignored ones are."""
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        harness = Harness()
    finally:
        signal.signal(signal.SIGHUP, previous)
    try:
        harness.start(1, ["sleep", "30"], 30)
        pid = harness.next("started")["pid"]
        # "started" may come while the spare child is still between fork and exec, holding its
        # close-on-exec pipes, and `sleep` opens and closes files of its own (libraries, locale) before
        # it sleeps: look once it sleeps.
        def sleeping() -> bool:
            with open(f"/proc/{pid}/wchan") as f:
                return "nanosleep" in f.read()
        deadline = time.monotonic() + TIMEOUT
        while not sleeping() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert psutil.Process(pid).cmdline() == ["sleep", "30"]
        fds = sorted(int(fd) for fd in os.listdir(f"/proc/{pid}/fd"))
        assert fds == [0, 1, 2], {fd: os.readlink(f"/proc/{pid}/fd/{fd}") for fd in fds if fd > 2}
        status = proc_status(pid)
        assert int(status["SigIgn"], 16) == 1 << (signal.SIGHUP - 1)
        assert int(status["SigBlk"], 16) == 0
        process = psutil.Process(pid)
        assert os.getsid(pid) == pid and os.getpgid(pid) == pid
        assert process.ppid() == harness.pid
        harness.send(op="stop", turn=1, reason="stopped")
        assert harness.next("exited")["exit_code"] == 128 + signal.SIGTERM
    finally:
        harness.close()


def test_path_lookup_uses_the_commands_environment(supervisor: Harness, tmp_path: Path) -> None:
    program = tmp_path / "only-here"
    program.write_text("#!/bin/sh\nexit 9\n")
    program.chmod(0o755)
    supervisor.start(1, ["only-here"], 5, env={"PATH": str(tmp_path)})
    supervisor.next("started")
    assert supervisor.next("exited")["exit_code"] == 9


def test_start_past_the_sigterm_moment_is_refused(supervisor: Harness) -> None:
    supervisor.start(1, ["sleep", "30"], GRACE / 2)
    event = supervisor.next("spawn_failed")
    assert (event["turn"], event["exit_code"], event["how"]) == (1, None, "fenced")
    assert "not started" in event["error"]
    # The supervisor is still there and has no command: its only child is the spare.
    assert len(psutil.Process(supervisor.pid).children()) == 1


def test_second_start_while_busy_is_refused(supervisor: Harness) -> None:
    supervisor.start(1, ["sleep", "30"], 30)
    supervisor.next("started")
    supervisor.start(2, ["sh", "-c", "exit 0"], 30)
    refused = supervisor.next("spawn_failed")
    assert refused["turn"] == 2 and "turn 1" in refused["error"]
    supervisor.send(op="stop", turn=1, reason="stopped")
    assert supervisor.next("exited")["turn"] == 1


def test_bad_control_lines_are_ignored(supervisor: Harness) -> None:
    os.write(supervisor.control, b"not json\n{\"op\": \"dance\"}\n[1, 2]\n")
    supervisor.send(op="start", turn=3, argv="sleep 1", deadline=time.monotonic() + 5)
    bad = supervisor.next("spawn_failed")
    assert bad["turn"] == 3 and "bad start message" in bad["error"]
    supervisor.start(4, ["sh", "-c", "exit 2"], 5)
    supervisor.next("started")
    assert supervisor.next("exited")["exit_code"] == 2


def test_extend_to_an_earlier_deadline_is_ignored(supervisor: Harness) -> None:
    deadline = supervisor.start(1, ["sleep", "30"], 0.4)
    supervisor.next("started")
    supervisor.send(op="extend", turn=1, deadline=deadline - 0.3)
    exited = supervisor.next("exited")
    assert time.monotonic() >= deadline - GRACE
    assert (exited["how"], exited["exit_code"]) == ("fenced", 128 + signal.SIGTERM)


def test_extend_and_stop_for_another_turn_are_ignored(supervisor: Harness) -> None:
    deadline = supervisor.start(5, ["sleep", "30"], 0.3)
    supervisor.next("started")
    supervisor.send(op="extend", turn=4, deadline=deadline + 30)
    supervisor.send(op="stop", turn=4, reason="revoked")
    exited = supervisor.next("exited")
    assert time.monotonic() >= deadline - GRACE
    assert (exited["turn"], exited["how"], exited["reason"]) == (5, "fenced", None)


def test_agent_gone_stops_the_command_and_the_supervisor_exits(supervisor: Harness) -> None:
    supervisor.start(1, ["sleep", "30"], 30)
    pid = supervisor.next("started")["pid"]
    supervisor.close_control()
    exited = supervisor.next("exited")
    assert (exited["how"], exited["exit_code"], exited["signal"]) == ("agent-gone", 143, "SIGTERM")
    assert supervisor.proc.wait(TIMEOUT) == 0
    assert not psutil.pid_exists(pid)


def test_sigterm_to_the_supervisor_stops_the_command(supervisor: Harness) -> None:
    supervisor.start(1, ["sleep", "30"], 30)
    supervisor.next("started")
    supervisor.proc.send_signal(signal.SIGTERM)
    exited = supervisor.next("exited")
    assert (exited["how"], exited["reason"], exited["exit_code"]) == ("stopped", "terminated", 143)
    assert supervisor.proc.wait(TIMEOUT) == 0


def test_terminal_and_job_control_signals_do_not_stop_the_fence(supervisor: Harness) -> None:
    deadline = supervisor.start(1, ["sleep", "30"], 0.3)
    pid = supervisor.next("started")["pid"]
    for sig in (signal.SIGINT, signal.SIGQUIT, signal.SIGHUP, signal.SIGTSTP, signal.SIGTTOU, signal.SIGTTIN):
        supervisor.proc.send_signal(sig)
    exited = supervisor.next("exited")
    assert deadline - GRACE <= time.monotonic() < deadline + GRACE
    assert (exited["pid"], exited["how"], exited["exit_code"]) == (pid, "fenced", 143)
    assert supervisor.proc.poll() is None


def test_a_killed_supervisor_takes_its_command_along(supervisor: Harness, no_leftovers: List[int]) -> None:
    supervisor.start(1, ["sleep", "30"], 30)
    pid = supervisor.next("started")["pid"]
    children = [p.pid for p in psutil.Process(supervisor.pid).children()]
    no_leftovers.extend(children)
    supervisor.proc.kill()
    assert supervisor.proc.wait(TIMEOUT) == -signal.SIGKILL
    assert wait_gone(pid, 1.0), "the command outlived its supervisor"
    assert all(wait_gone(child, 1.0) for child in children)


def test_a_lost_spare_child_is_replaced(supervisor: Harness) -> None:
    (spare,) = psutil.Process(supervisor.pid).children()
    spare.kill()
    spare.wait(TIMEOUT)
    supervisor.start(1, ["sh", "-c", "exit 5"], 5)
    started = supervisor.next("started")
    assert started["pid"] != spare.pid
    assert supervisor.next("exited")["exit_code"] == 5


def test_an_agent_not_reading_events_does_not_delay_the_fence(tmp_path: Path) -> None:
    """Events are written without blocking: with the events pipe full and
    nobody reading, the deadline is still kept."""
    ready = Fifo(tmp_path / "ready")
    harness = Harness(reader=False)
    try:
        fcntl.fcntl(harness.events_fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), 4096)
        for turn in range(60):  # each refused start is one event; together more than 4 KiB
            harness.start(turn, ["sleep", "30"], 0)
        deadline = harness.start(100, ["sh", "-c", 'echo $$ > "$READY"; exec sleep 30'], 0.5,
                                 env={"READY": ready.path})
        pid = int(ready.line())
        assert wait_gone(pid, 0.5 + 2.0)
        gone_at = time.monotonic()
        assert deadline - GRACE <= gone_at < deadline + GRACE
        harness.start_reader()
        kinds = [harness.next()["kind"] for _ in range(60)]
        assert kinds == ["spawn_failed"] * 60
        assert harness.next("started")["pid"] == pid
        exited = harness.next("exited")
        assert (exited["turn"], exited["how"], exited["exit_code"]) == (100, "fenced", 143)
    finally:
        harness.close()
        ready.close()
