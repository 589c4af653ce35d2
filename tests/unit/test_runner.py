"""The agent's view of running a command: ``enqueue.runner.Runner``.

Real processes, short timings (grace 0.2 s). Every wait is on an event with a
timeout, on a line the command writes to a named pipe, or, for processes
nobody reports on, on the process disappearing. Every test checks that no
process it started is left.
"""

from __future__ import annotations

import dataclasses
import json
import os
import queue
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional

import psutil
import pytest

from enqueue import connection
from enqueue.runner import Runner, RunnerError, RunnerEvent
from tests.support.processes import TIMEOUT, Fifo, no_leftovers, wait_gone  # noqa: F401  (fixture)

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux process semantics")

ROOT = Path(__file__).resolve().parents[2]
GRACE = 0.2

# A stand-in agent: drives a Runner from orders on stdin, prints every event
# on stdout, and reports SIGINT instead of dying of it.
AGENT = r"""
import dataclasses, json, signal, sys, threading
from enqueue.runner import Runner

lock = threading.Lock()

def say(**fields):
    with lock:
        sys.stdout.write(json.dumps(fields) + "\n")
        sys.stdout.flush()

signal.signal(signal.SIGINT, lambda signum, frame: say(kind="sigint"))
runner = Runner(float(sys.argv[1]), lambda event: say(**dataclasses.asdict(event)))
say(kind="ready", supervisor=runner.supervisor_pid)
for line in sys.stdin:
    order = json.loads(line)
    if order["op"] == "start":
        runner.start(order["turn"], order["argv"], order["env"], order["deadline"])
    elif order["op"] == "stop":
        runner.stop(order["reason"])
runner.close()
say(kind="closed")
"""

# Reports readiness (and SIGTERM) on $READY, then stays alive until SIGKILL.
TERM_REPORTER = 'trap "echo term > \\"$READY\\"" TERM; echo ready > "$READY"; while :; do sleep 1 & wait; done'


@pytest.fixture
def fifo(tmp_path: Path) -> Iterator[Fifo]:
    pipe = Fifo(tmp_path / "ready")
    yield pipe
    pipe.close()


class Driven:
    """A Runner in this process, its events on a queue."""

    def __init__(self, grace: float = GRACE) -> None:
        self.events: "queue.Queue[RunnerEvent]" = queue.Queue()
        self.runner = Runner(grace, self.events.put)

    def start(self, turn: int, argv: List[str], deadline_in: float, env: Optional[Dict[str, str]] = None) -> float:
        deadline = time.monotonic() + deadline_in
        self.runner.start(turn, argv, env or {}, deadline)
        return deadline

    def next(self, kind: Optional[str] = None, timeout: float = TIMEOUT) -> RunnerEvent:
        event = self.events.get(timeout=timeout)
        if kind is not None:
            assert event.kind == kind, event
        return event


@pytest.fixture
def make_runner(no_leftovers: List[int]) -> Iterator[Callable[..., Driven]]:
    made: List[Driven] = []

    def make(grace: float = GRACE) -> Driven:
        made.append(Driven(grace))
        return made[-1]

    yield make
    for driven in made:
        driven.runner.close()


@pytest.fixture
def driven(make_runner: Callable[..., Driven]) -> Driven:
    return make_runner()


class Agent:
    """The stand-in agent as a separate process in a process group of its own."""

    def __init__(self, grace: float = GRACE) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", AGENT, str(grace)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, start_new_session=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        self.lines: "queue.Queue[Optional[Dict[str, Any]]]" = queue.Queue()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.supervisor = self.next("ready")["supervisor"]

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(json.loads(line))
        self.lines.put(None)

    def order(self, **fields: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(fields) + "\n").encode())
        self.proc.stdin.flush()

    def start(self, turn: int, argv: List[str], deadline_in: float, env: Optional[Dict[str, str]] = None) -> float:
        deadline = time.monotonic() + deadline_in
        self.order(op="start", turn=turn, argv=argv, env=env or {}, deadline=deadline)
        return deadline

    def next(self, kind: Optional[str] = None, timeout: float = TIMEOUT) -> Dict[str, Any]:
        line = self.lines.get(timeout=timeout)
        assert line is not None, "the agent's stdout closed"
        if kind is not None:
            assert line["kind"] == kind, line
        return line

    def close(self) -> None:
        try:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGCONT)
                assert self.proc.stdin is not None
                self.proc.stdin.close()
            self.proc.wait(TIMEOUT)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            if self.proc.stdin is not None and not self.proc.stdin.closed:
                self.proc.stdin.close()
            self.reader.join(TIMEOUT)
            assert self.proc.stdout is not None
            self.proc.stdout.close()


@pytest.fixture
def agent(no_leftovers: List[int]) -> Iterator[Agent]:
    stand_in = Agent()
    no_leftovers.append(stand_in.supervisor)
    yield stand_in
    stand_in.close()


# -- what a command sees --------------------------------------------------------


EXIT_CASES = [
    ("exit 0", 0, None),
    ("exit 3", 3, None),
    ("exit 255", 255, None),
    ("kill -USR1 $$", 128 + signal.SIGUSR1, "SIGUSR1"),
]


def test_exit_codes_pass_through_turn_after_turn(driven: Driven) -> None:
    for turn, (script, exit_code, signame) in enumerate(EXIT_CASES):
        driven.start(turn, ["sh", "-c", script], 5)
        started = driven.next("started")
        exited = driven.next("exited")
        assert (exited.turn, exited.pid) == (turn, started.pid)
        assert (exited.exit_code, exited.signal, exited.how) == (exit_code, signame, "exited"), script
        assert exited.duration_s is not None and 0 <= exited.duration_s < 2
        assert not driven.runner.busy


def test_stdout_and_stderr_are_inherited(capfd: pytest.CaptureFixture[str], make_runner: Callable[..., Driven]) -> None:
    driven = make_runner()
    driven.start(1, ["sh", "-c", "echo to-stdout; echo to-stderr >&2"], 5)
    driven.next("started")
    assert driven.next("exited").exit_code == 0
    out, err = capfd.readouterr()
    assert "to-stdout" in out and "to-stderr" in err


def test_environment_is_the_agents_plus_the_additions(
    capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, make_runner: Callable[..., Driven]
) -> None:
    monkeypatch.setenv("ENQUEUE_TEST_INHERITED", "from-agent")
    monkeypatch.setenv("ENQUEUE_TEST_OVERRIDDEN", "from-agent")
    driven = make_runner()
    env = {"ENQUEUE_TURN": "7", "ENQUEUE_SITE": "site-b", "ENQUEUE_TEST_OVERRIDDEN": "from-turn"}
    driven.start(7, ["sh", "-c", 'echo "[$ENQUEUE_TURN|$ENQUEUE_SITE|$ENQUEUE_TEST_INHERITED|$ENQUEUE_TEST_OVERRIDDEN]"'], 5, env)
    driven.next("started")
    assert driven.next("exited").exit_code == 0
    assert "[7|site-b|from-agent|from-turn]" in capfd.readouterr().out


def test_the_command_gets_none_of_enqueues_connection_settings(
    monkeypatch: pytest.MonkeyPatch, make_runner: Callable[..., Driven], tmp_path: Path
) -> None:
    for name in (*connection.ENV_VARS.values(), "ENQUEUE_COUCHDB_SOMETHING_NEW"):
        monkeypatch.setenv(name, "secret-" + name)
    monkeypatch.setenv("ENQUEUE_COUCHDB_URL", "https://alpha:hunter2@couch.example.org")
    monkeypatch.setenv("ENQUEUE_TEST_INHERITED", "from-agent")
    out = tmp_path / "env.json"
    driven = make_runner()
    driven.start(3, [sys.executable, "-c", f"import json, os; json.dump(dict(os.environ), open({str(out)!r}, 'w'))"],
                 5, {"ENQUEUE_TURN": "3", "ENQUEUE_SITE": "alpha", "ENQUEUE_LEADER": "bravo"})
    driven.next("started")
    assert driven.next("exited").exit_code == 0
    seen = json.loads(out.read_text())
    assert [k for k in seen if k.startswith("ENQUEUE_COUCHDB")] == []
    assert not any("secret-" in v or "hunter2" in v for v in seen.values())
    assert (seen["ENQUEUE_TURN"], seen["ENQUEUE_SITE"], seen["ENQUEUE_LEADER"]) == ("3", "alpha", "bravo")
    assert seen["ENQUEUE_TEST_INHERITED"] == "from-agent"
    assert all(name.startswith(connection.CONNECTION_ENV_PREFIX) for name in connection.ENV_VARS.values())


def test_command_not_found_is_127(driven: Driven) -> None:
    for turn, argv in enumerate([["enqueue-test-no-such-command"], ["/nonexistent-dir/enqueue-test-cmd", "arg"]]):
        driven.start(turn, argv, 5)
        event = driven.next("spawn_failed")
        assert (event.turn, event.exit_code, event.pid) == (turn, 127, None)
        assert event.error is not None and argv[0] in event.error and "\n" not in event.error
        assert not driven.runner.busy


def test_not_executable_is_126(driven: Driven, tmp_path: Path) -> None:
    plain = tmp_path / "plain-file"
    plain.write_text("#!/bin/sh\nexit 0\n")
    plain.chmod(0o644)
    for turn, target in enumerate([plain, tmp_path]):
        driven.start(turn, [str(target)], 5)
        event = driven.next("spawn_failed")
        assert (event.turn, event.exit_code) == (turn, 126)
        assert event.error is not None and str(target) in event.error and "\n" not in event.error


def test_busy_until_the_outcome_and_a_second_start_raises(driven: Driven) -> None:
    assert not driven.runner.busy
    driven.start(1, ["sleep", "30"], 30)
    with pytest.raises(RunnerError):
        driven.start(2, ["sleep", "30"], 30)
    driven.next("started")
    assert driven.runner.busy
    driven.runner.stop("stopped")
    assert driven.next("exited").turn == 1
    assert not driven.runner.busy


# -- the deadline -----------------------------------------------------------------


def test_deadline_sends_sigterm_grace_before_it(driven: Driven) -> None:
    deadline = driven.start(1, ["sleep", "30"], 0.3)
    driven.next("started")
    exited = driven.next("exited")
    received = time.monotonic()
    assert deadline - GRACE <= received < deadline
    assert (exited.how, exited.exit_code, exited.signal) == ("fenced", 143, "SIGTERM")


def test_a_command_ignoring_sigterm_is_killed_at_the_deadline(driven: Driven, fifo: Fifo) -> None:
    script = 'trap "" TERM; echo ready > "$READY"; exec sleep 30'
    deadline = driven.start(1, ["sh", "-c", script], 0.4, {"READY": fifo.path})
    driven.next("started")
    assert fifo.line() == "ready"
    exited = driven.next("exited")
    assert time.monotonic() >= deadline
    assert (exited.how, exited.exit_code, exited.signal) == ("fenced", 137, "SIGKILL")


def test_extend_before_the_sigterm_moment_keeps_the_command(driven: Driven) -> None:
    deadline = driven.start(1, ["sleep", "30"], 0.3)
    driven.next("started")
    later = deadline + 0.2
    driven.runner.extend(later)
    exited = driven.next("exited")
    # Alive past the first SIGTERM moment (deadline - GRACE), fenced at the new one.
    assert time.monotonic() >= later - GRACE
    assert (exited.how, exited.exit_code) == ("fenced", 143)


def test_extend_after_the_sigterm_moment_does_not_revive(driven: Driven, fifo: Fifo) -> None:
    deadline = driven.start(1, ["sh", "-c", TERM_REPORTER], 0.4, {"READY": fifo.path})
    driven.next("started")
    assert fifo.line() == "ready"
    assert fifo.line() == "term"
    driven.runner.extend(time.monotonic() + 30)
    exited = driven.next("exited")
    assert deadline <= time.monotonic() < deadline + 1.0
    assert (exited.how, exited.exit_code, exited.signal) == ("fenced", 137, "SIGKILL")


# -- stopping ---------------------------------------------------------------------


def test_stop_ends_the_command_with_the_reason(driven: Driven) -> None:
    for turn, reason in enumerate(["stopped", "skipped", "revoked"]):
        driven.start(turn, ["sleep", "30"], 30)
        driven.next("started")
        driven.runner.stop(reason)
        exited = driven.next("exited")
        assert (exited.how, exited.reason, exited.exit_code, exited.signal) == ("stopped", reason, 143, "SIGTERM")
    driven.runner.stop("stopped")  # nothing running: nothing happens
    with pytest.raises(queue.Empty):
        driven.next(timeout=0.05)


def test_stop_kills_a_command_ignoring_sigterm_after_the_grace(driven: Driven, fifo: Fifo) -> None:
    driven.start(1, ["sh", "-c", TERM_REPORTER], 30, {"READY": fifo.path})
    driven.next("started")
    assert fifo.line() == "ready"
    stopped_at = time.monotonic()
    driven.runner.stop("revoked")
    assert fifo.line() == "term"
    exited = driven.next("exited")
    assert time.monotonic() >= stopped_at + GRACE
    assert (exited.how, exited.reason, exited.exit_code) == ("stopped", "revoked", 137)


def test_close_stops_a_running_command(driven: Driven) -> None:
    driven.start(1, ["sleep", "30"], 30)
    pid = driven.next("started").pid
    driven.runner.close()
    exited = driven.next("exited", timeout=0)
    assert (exited.how, exited.reason, exited.exit_code) == ("stopped", "shutdown", 143)
    assert not psutil.pid_exists(pid)
    assert not driven.runner.busy
    driven.runner.close()  # idempotent
    with pytest.raises(RunnerError):
        driven.start(2, ["true"], 5)


# -- the whole process group ------------------------------------------------------


def test_leftovers_are_killed_when_the_main_process_exits(driven: Driven, fifo: Fifo) -> None:
    driven.start(1, ["sh", "-c", 'sleep 30 & echo $! > "$READY"; exit 4'], 5, {"READY": fifo.path})
    driven.next("started")
    grandchild = int(fifo.line())
    exited = driven.next("exited")
    assert (exited.how, exited.exit_code) == ("exited", 4)
    assert not psutil.pid_exists(grandchild), "exited was reported while the group still had a process"


def test_leftovers_are_killed_when_fenced(driven: Driven, fifo: Fifo) -> None:
    # The grandchild ignores SIGTERM, so only the group's SIGKILL ends it.
    inner = 'trap "" TERM; echo $$ > "$READY"; exec sleep 30'
    deadline = driven.start(1, ["sh", "-c", 'sh -c "$INNER" & wait'], 0.4, {"READY": fifo.path, "INNER": inner})
    driven.next("started")
    grandchild = int(fifo.line())
    exited = driven.next("exited")
    assert deadline - GRACE <= time.monotonic() < deadline
    assert (exited.how, exited.exit_code) == ("fenced", 143)
    assert not psutil.pid_exists(grandchild), "exited was reported while the group still had a process"


def test_a_dead_supervisor_is_reported_and_its_command_group_killed(driven: Driven, fifo: Fifo) -> None:
    inner = 'echo $$ > "$READY"; exec sleep 30'
    driven.start(1, ["sh", "-c", 'sh -c "$INNER" & wait'], 30, {"READY": fifo.path, "INNER": inner})
    pid = driven.next("started").pid
    grandchild = int(fifo.line())
    os.kill(driven.runner.supervisor_pid, signal.SIGKILL)
    died = driven.next("supervisor_died")
    assert died.turn == 1 and "signal 9" in (died.error or "")
    assert not driven.runner.busy
    assert wait_gone(pid, 1.0) and wait_gone(grandchild, 1.0)
    driven.runner.start(2, ["true"], {}, time.monotonic() + 5)
    refused = driven.next("spawn_failed")
    assert refused.turn == 2 and "supervisor is gone" in (refused.error or "")


def test_a_frozen_supervisor_is_backed_by_the_runner_killing_the_group_past_the_deadline(
        make_runner: Callable[..., Driven]) -> None:
    """The supervisor stopped alone keeps no deadline; the runner, in the agent's process, kills the group itself."""
    driven = make_runner()
    driven.runner.keeper_lag_s = 0.1
    deadline = driven.start(1, ["sleep", "30"], 0.6)
    command = psutil.Process(driven.next("started").pid)
    os.kill(driven.runner.supervisor_pid, signal.SIGSTOP)
    try:
        # The supervisor cannot reap it: dead shows as a zombie.
        end = time.monotonic() + 0.6 + 3.0
        while command.status() != psutil.STATUS_ZOMBIE:
            assert time.monotonic() < end, "the command outlived its deadline with its supervisor frozen"
            time.sleep(0.005)
        assert time.monotonic() >= deadline + 0.1
    finally:
        os.kill(driven.runner.supervisor_pid, signal.SIGCONT)
    exited = driven.next("exited")
    assert (exited.turn, exited.how, exited.exit_code) == (1, "fenced", 137)


def test_the_second_keeper_never_acts_on_a_deadline_the_supervisor_keeps(driven: Driven) -> None:
    driven.runner.keeper_lag_s = 0.0
    driven.start(1, ["sleep", "30"], 0.5)
    driven.next("started")
    exited = driven.next("exited")
    assert (exited.how, exited.exit_code) == ("fenced", 143), "the supervisor's SIGTERM came first"


# -- the agent frozen, killed, interrupted ----------------------------------------


def test_a_killed_agent_takes_its_command_along(agent: Agent, fifo: Fifo, no_leftovers: List[int]) -> None:
    agent.start(1, ["sh", "-c", TERM_REPORTER], 30, {"READY": fifo.path})
    pid = agent.next("started")["pid"]
    no_leftovers.append(pid)
    assert fifo.line() == "ready"
    killed_at = time.monotonic()
    agent.proc.kill()
    assert fifo.line() == "term", "the command was not asked to stop first"
    assert wait_gone(pid, GRACE + 1.0), "the command outlived its agent"
    assert time.monotonic() - killed_at < GRACE + 1.0
    assert wait_gone(agent.supervisor, 1.0), "the supervisor outlived its agent"


def test_a_frozen_agent_cannot_keep_its_command_past_the_deadline(agent: Agent) -> None:
    deadline = agent.start(1, ["sleep", "30"], 0.4)
    pid = agent.next("started")["pid"]
    command = psutil.Process(pid)
    agent.proc.send_signal(signal.SIGSTOP)
    try:
        command.wait(timeout=0.4 + 2.0)
        assert psutil.Process(agent.proc.pid).status() == psutil.STATUS_STOPPED
        assert time.monotonic() >= deadline - GRACE
    finally:
        agent.proc.send_signal(signal.SIGCONT)
    exited = agent.next("exited")
    assert (exited["turn"], exited["how"], exited["exit_code"]) == (1, "fenced", 143)


def test_sigint_to_the_agents_group_leaves_supervisor_and_command_alone(agent: Agent) -> None:
    agent.start(1, ["sleep", "30"], 30)
    pid = agent.next("started")["pid"]
    os.killpg(agent.proc.pid, signal.SIGINT)
    assert agent.next("sigint")["kind"] == "sigint"
    # Both still answer: a SIGINT death would show as exit 130 or supervisor_died.
    agent.order(op="stop", reason="stopped")
    exited = agent.next("exited")
    assert (exited["pid"], exited["how"], exited["exit_code"], exited["signal"]) == (pid, "stopped", 143, "SIGTERM")
    agent.close()
    assert agent.next("closed")["kind"] == "closed"


# -- latency ----------------------------------------------------------------------


def test_start_and_exit_are_reported_within_milliseconds(driven: Driven) -> None:
    """A loose bound, far above the few milliseconds measured, that a polling
    implementation would still miss."""
    round_trips = []
    for turn in range(10):
        began = time.monotonic()
        driven.start(turn, ["true"], 5)
        driven.next("started")
        driven.next("exited")
        round_trips.append(time.monotonic() - began)
    assert statistics.median(round_trips) < 0.05, round_trips


def test_runner_event_fields() -> None:
    names = [field.name for field in dataclasses.fields(RunnerEvent)]
    assert names[:8] == ["kind", "turn", "pid", "exit_code", "signal", "how", "error", "duration_s"]
