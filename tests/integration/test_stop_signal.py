"""``enqueue run --stop-signal SIG``: the stop of the command starts with SIG, for launchers that forward only it.

The command is a fake launcher (tests/support/fake_launcher.py) that starts
its work in a process group of its own, out of the fence's reach, and
forwards one signal to it, as srun, mpirun or ``ssh -tt`` do. With
``--stop-signal`` naming that signal, a skipped turn's work gets it and
ends before SIGKILL comes to the launcher (the launcher exits with the
work's own exit code); with the default SIGTERM the launcher dies and the
work runs on, untouched. Nothing here waits a fixed time: the test follows
the files the launcher and the work write, and the records the agent writes.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import psutil
import pytest

from enqueue import documents as docs
from tests.support import fake_launcher
from tests.support.agents import Sites, sites, wait_until  # noqa: F401  (fixture)
from tests.support.commands import enqueue_cli  # noqa: F401  (fixture)

# A kill grace far longer than the forwarding takes, so the launcher's exit code tells "stopped" from "killed".
TIMING = ["-s", "6s", "--kill-grace", "2s"]


def _start_launcher(sites: Sites, work_dir: Path, extra: list[str]) -> int:
    """alpha runs the fake launcher (forwarding SIGINT) once; returns the work's pid once both are ready."""
    work_dir.mkdir()
    sites.start("alpha", repeat=False, extra=TIMING + extra,
                command=[sys.executable, fake_launcher.PATH, "INT", str(work_dir)])
    wait_until("the launcher and its work to be ready",
               lambda: (work_dir / "work.pid").exists() and (work_dir / "launcher.ready").exists(), timeout_s=30)
    return int((work_dir / "work.pid").read_text())


def _running_turn(database) -> int:
    def running():
        parsed, _ = docs.parse_leader(database.store.get("enqueue_leader"), "enqueue_leader")
        return parsed is not None and parsed.turn_active and parsed.may_run and parsed.running == "alpha" and \
            parsed.turn
    return wait_until("alpha's turn to be running", running, timeout_s=15)  # type: ignore[return-value]


def _record(database, turn: int) -> dict:
    return wait_until(f"the record of turn {turn}", lambda: database.store.get(docs.turn_record_id(turn)),
                      timeout_s=15)  # type: ignore[return-value]


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _kill_work(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    wait_until("the leftover work to die", lambda: not _alive(pid), timeout_s=10)


def test_with_the_launchers_signal_a_skipped_turns_remote_work_stops_before_the_kill(
        sites, enqueue_cli, database, tmp_path):
    work_dir = tmp_path / "work"
    pid = None
    try:
        pid = _start_launcher(sites, work_dir, ["--stop-signal", "INT"])
        turn = _running_turn(database)
        assert enqueue_cli("skip", "--turn", turn).code == 0
        record = _record(database, turn)
        assert (work_dir / "work.stopped").read_text() == "SIGINT"
        # The launcher ended on its own, with the work's code: the stop came before SIGKILL.
        assert (record["how"], record["exit_code"]) == ("skipped", fake_launcher.WORK_STOPPED_EXIT)
        wait_until("the work to be gone", lambda: not _alive(pid), timeout_s=10)
        assert sites.agents["alpha"].wait() == fake_launcher.WORK_STOPPED_EXIT
    finally:
        if pid is not None:
            _kill_work(pid)


def test_with_the_default_signal_the_launcher_dies_and_its_remote_work_runs_on(
        sites, enqueue_cli, database, tmp_path):
    work_dir = tmp_path / "work"
    pid = None
    try:
        pid = _start_launcher(sites, work_dir, [])
        turn = _running_turn(database)
        assert enqueue_cli("skip", "--turn", turn).code == 0
        record = _record(database, turn)
        assert (record["how"], record["exit_code"]) == ("skipped", 128 + signal.SIGTERM)
        assert sites.agents["alpha"].wait() == 128 + signal.SIGTERM
        # The turn is over and recorded, the agent gone: nothing will signal the work any more.
        assert _alive(pid)
        assert not (work_dir / "work.stopped").exists()
    finally:
        if pid is not None:
            _kill_work(pid)


def test_a_stopped_agent_starts_its_commands_stop_with_the_stop_signal(sites, database, tmp_path):
    work_dir = tmp_path / "work"
    pid = None
    try:
        pid = _start_launcher(sites, work_dir, ["--stop-signal", "2"])
        turn = _running_turn(database)
        sites.agents["alpha"].signal(signal.SIGTERM)
        record = _record(database, turn)
        assert (work_dir / "work.stopped").read_text() == "SIGINT"
        assert (record["how"], record["exit_code"]) == ("stopped", fake_launcher.WORK_STOPPED_EXIT)
        wait_until("the work to be gone", lambda: not _alive(pid), timeout_s=10)
        sites.agents["alpha"].wait()
    finally:
        if pid is not None:
            _kill_work(pid)


@pytest.mark.parametrize("given, expected", [
    ("KILL", "argument --stop-signal: SIGKILL cannot start a stop (SIGKILL already follows after the kill grace)"),
    ("STOP", "argument --stop-signal: SIGSTOP cannot start a stop (it pauses the command instead of ending it)"),
    ("BOGUS", "argument --stop-signal: 'BOGUS' is not a signal name"),
    ("0", "argument --stop-signal: 0 is not a signal number on this system"),
])
def test_a_bad_stop_signal_is_one_line_and_exit_2(enqueue_cli, given, expected):
    result = enqueue_cli.bare("run", enqueue_cli.config, "alpha", "--stop-signal", given, "true")
    assert result.code == 2
    assert result.err.startswith("enqueue: " + expected) and result.err.count("\n") == 1, result.err
