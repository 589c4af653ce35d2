"""sites/enqueue-loop.sh against the real server: monitor, enqueued submission, pause, logged exit codes, clean stop."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from enqueue import documents as docs
from tests.support.agents import DELAY, GRACE, STALE, wait_until
from tools.chaos import probe

LOOP = Path(__file__).resolve().parents[2] / "sites" / "enqueue-loop.sh"
LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ enqueue-loop alpha: (.*)$")


def loop(config: Path, workdir: Path, *options: str, sleep_s: float = 0.1, exit_code: int = 0,
         new_session: bool = False) -> subprocess.Popen:
    command = [sys.executable, probe.PATH, str(workdir / "probe.log"), "--sleep", str(sleep_s),
               "--exit", str(exit_code)]
    argv = ["bash", str(LOOP), "--enqueue", f"{sys.executable} -m enqueue", "--log", str(workdir / "loop.log"),
            "-o", f"--heartbeat-delay={DELAY}", "-o", f"--heartbeat-stale={STALE}", "-o", f"--kill-grace={GRACE}",
            *options, str(config), "alpha", "--", *command]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=new_session)


def messages(workdir: Path) -> list[str]:
    path = workdir / "loop.log"
    lines = path.read_text().splitlines() if path.exists() else []
    found = [LINE.match(line) for line in lines]
    assert all(found), lines
    return [m.group(1) for m in found]


@pytest.fixture
def finish():
    procs = []
    yield procs.append
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        proc.stdout.close()


def test_each_iteration_monitors_submits_once_and_logs_exit_codes(config_file, database, tmp_path, finish):
    monitor = f"echo checked >> {tmp_path / 'monitor.out'}; exit 4"
    proc = loop(config_file, tmp_path, "--monitor", monitor, "--pause", "0.2", "--iterations", "2", exit_code=3)
    finish(proc)
    assert proc.wait(timeout=60) == 0, proc.stdout.read()
    lines = messages(tmp_path)
    assert lines[0].startswith("started: config ")
    assert lines[1:] == [
        "iteration 1: monitor exit 4",
        lines[2], "iteration 2: monitor exit 4", lines[4], "done after 2 iterations",
    ]
    assert re.fullmatch(r"iteration 1: submission exit 3 \(\d+ s\)", lines[2])
    assert re.fullmatch(r"iteration 2: submission exit 3 \(\d+ s\)", lines[4])
    assert (tmp_path / "monitor.out").read_text() == "checked\nchecked\n"
    starts = [line for line in (tmp_path / "probe.log").read_text().splitlines() if line.startswith("start ")]
    assert len(starts) == 2 and all(" alpha " in s for s in starts)  # each submission ran as alpha's turn
    assert len(database.store.list_prefix(docs.TURN_PREFIX)) == 2


def test_sigterm_stops_the_submission_in_progress_and_the_loop_cleanly(config_file, database, tmp_path, finish):
    proc = loop(config_file, tmp_path, "--pause", "600", sleep_s=60)
    finish(proc)
    wait_until("the submission to start", lambda: (tmp_path / "probe.log").exists(), timeout_s=30)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    lines = messages(tmp_path)
    assert lines[-2] == "iteration 1: submission exit 143 (" + lines[-2].split("(")[1]
    assert lines[-1] == "stopped by SIGTERM after 1 iterations"
    probe = (tmp_path / "probe.log").read_text()
    assert "end alpha" in probe and probe.rstrip().endswith("terminated")
    hb, _ = docs.parse_heartbeat(database.store.get(docs.heartbeat_id("alpha")), "alpha")
    assert hb is not None and hb.state == docs.LEFT


def test_ctrl_c_in_a_terminal_stops_the_submission_and_the_loop_cleanly(config_file, database, tmp_path, finish):
    # A terminal's Ctrl-C sends SIGINT to the whole foreground process group: the loop and the agent.
    proc = loop(config_file, tmp_path, "--pause", "600", sleep_s=60, new_session=True)
    finish(proc)
    wait_until("the submission to start", lambda: (tmp_path / "probe.log").exists(), timeout_s=30)
    os.killpg(proc.pid, signal.SIGINT)
    assert proc.wait(timeout=30) == 0
    lines = messages(tmp_path)
    # The agent gets SIGINT from the terminal and SIGTERM from the loop; it exits 128 + the last one.
    assert re.fullmatch(r"iteration 1: submission exit (130|143) \(\d+ s\)", lines[-2])
    assert lines[-1] == "stopped by SIGINT after 1 iterations"
    record = database.store.list_prefix(docs.TURN_PREFIX)[0]
    assert record["site"] == "alpha" and record["how"] == "stopped"


def test_usage_errors_exit_2(tmp_path):
    for argv in ([], ["cfg", "alpha"], ["--pause", "soon", "cfg", "alpha", "true"], ["--bogus", "cfg", "a", "b"]):
        result = subprocess.run(["bash", str(LOOP), *argv], capture_output=True, text=True, timeout=10)
        assert result.returncode == 2, argv
        assert result.stderr.startswith("enqueue-loop.sh: ") and "(see --help)" in result.stderr
    help_text = subprocess.run(["bash", str(LOOP), "--help"], capture_output=True, text=True, timeout=10).stdout
    for expected in ("usage: enqueue-loop.sh [options] CONFIG SITE [--] SUBMIT_CMD", "--monitor", "--pause",
                     "--log", "--enqueue", "--run-option", "--iterations", "ENQUEUE_LOOP_PAUSE"):
        assert expected in help_text, expected
