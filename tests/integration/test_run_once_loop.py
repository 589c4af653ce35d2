"""The original site loop, one run-once agent per iteration, against the real server.

A run-once agent that leads hands its leadership on in the write that ends
its turn (docs/PROTOCOL.md §3.3.5), so a loop needs no election per turn;
an heir that dies is taken over as any dead leader; ``--max-wait`` sends a
loop back to monitoring with exit 75.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from enqueue import documents as docs
from tests.support.agents import CONFLICT, DELAY, GRACE, STALE, STALE_S, Sites, sites, wait_until  # noqa: F401
from tools.chaos import probe

LOOP = Path(__file__).resolve().parents[2] / "sites" / "enqueue-loop.sh"
NAMES = ("alpha", "bravo", "charlie")


def leader_doc(database) -> docs.LeaderDoc:
    parsed, _ = docs.parse_leader(database.store.get("enqueue_leader"), "enqueue_leader")
    assert parsed is not None
    return parsed


def heartbeat(database, site: str) -> docs.Heartbeat:
    hb, _ = docs.parse_heartbeat(database.store.get(docs.heartbeat_id(site)), site)
    assert hb is not None
    return hb


@pytest.fixture
def loops() -> Iterator[list[subprocess.Popen]]:
    procs: list[subprocess.Popen] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        proc.stdout.close()


def start_loop(config: Path, workdir: Path, site: str, *options: str, sleep_s: float = 0.1) -> subprocess.Popen:
    command = [sys.executable, probe.PATH, str(workdir / "probe.log"), "--sleep", str(sleep_s)]
    argv = ["bash", str(LOOP), "--run-once", "--enqueue", f"{sys.executable} -m enqueue", "--log", str(workdir / f"loop-{site}.log"),
            "-o", f"--heartbeat-delay={DELAY}", "-o", f"--heartbeat-stale={STALE}", "-o", f"--kill-grace={GRACE}",
            "-o", f"--conflict-delay={CONFLICT}", "-o", f"--log-file={workdir / f'agent-{site}.log'}",
            *options, str(config), site, "--", *command]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def agent_lines(workdir: Path, pattern: str) -> list[str]:
    found = []
    for site in NAMES:
        path = workdir / f"agent-{site}.log"
        if path.exists():
            found += [line for line in path.read_text().splitlines() if re.search(pattern, line)]
    return found


def test_a_loop_of_run_once_agents_hands_the_leadership_on_instead_of_electing_every_turn(
        config_file, database, tmp_path, loops):
    # Each turn lasts long enough for the other two loops to be back and waiting when it ends (an agent
    # takes a second or more to start on a busy machine): then its leader has somebody to hand on to.
    for site in NAMES:
        loops.append(start_loop(config_file, tmp_path, site, "--pause", "0.05", "--iterations", "4", sleep_s=2.0))
    for proc in loops:
        assert proc.wait(timeout=180) == 0, proc.stdout.read()
    report = probe_report(tmp_path)
    assert report.overlaps == [] and len(report.runs) == 12
    handed = agent_lines(tmp_path, r"handed the leadership to")
    elected = agent_lines(tmp_path, r"elected leader")
    # Without the handoff, every leader's turn ends in a step-down and an election follows it.
    assert len(handed) >= 6, (handed, elected)
    assert len(elected) <= 3, (handed, elected)
    # Every heir led: it wrote the leader doc as leader before it left (it published the rotation, or ended
    # its turn) -- the term only grows by the handoffs and the few elections.
    assert leader_doc(database).leader_term <= len(handed) + len(elected)


def probe_report(workdir: Path):
    from tools.chaos import checker
    return checker.read(str(workdir / "probe.log"))


def test_an_heir_that_dies_is_taken_over_by_an_election_and_its_turn_taken_back(sites, database, tmp_path):
    gate = tmp_path / "go"
    sites.start("alpha", repeat=False, command=["bash", "-c", f"while [ ! -e {gate} ]; do sleep 0.05; done"])
    wait_until("alpha's turn", lambda: database.store.get("enqueue_leader") and
               leader_doc(database).running == "alpha" and leader_doc(database).turn_active and
               leader_doc(database).may_run)
    assert leader_doc(database).leader == "alpha"
    sites.start("bravo", repeat=False, sleep_s=60)
    sites.start("charlie", repeat=False, sleep_s=0.1)
    # Waiting, and in the rotation alpha published: alpha's finish passes the turn along that rotation.
    wait_until("bravo and charlie waiting", lambda: all(
        database.store.get(docs.heartbeat_id(s)) and heartbeat(database, s).state == docs.WAITING
        for s in ("bravo", "charlie")) and {"bravo", "charlie"} <= set(leader_doc(database).rotation))
    gate.touch()
    assert sites.agents["alpha"].wait() == 0
    handed = leader_doc(database)
    # One write ended alpha's turn, granted bravo the next and made it the leader.
    assert (handed.leader, handed.running) == ("bravo", "bravo")
    ended = database.store.get(docs.turn_record_id(handed.turn - 1))
    assert (ended["site"], ended["how"]) == ("alpha", "exited")
    wait_until("bravo's command", lambda: any(r.site == "bravo" for r in sites.report().runs))
    sites.agents["bravo"].signal(signal.SIGKILL)
    sites.agents["bravo"].wait()
    wait_until("charlie elected", lambda: leader_doc(database).leader == "charlie", timeout_s=STALE_S * 4)
    assert leader_doc(database).leader_term == handed.leader_term + 1
    assert sites.agents["charlie"].wait(timeout_s=STALE_S * 6) == 0
    record = database.store.get(docs.turn_record_id(handed.turn))
    assert record["site"] == "bravo" and record["how"] == "revoked"
    report = sites.report()
    assert [r.site for r in report.runs] == ["bravo", "charlie"] and report.overlaps == []


# --------------------------------------------------------------------------- --max-wait


def pause(config: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "enqueue", "pause", str(config), "--reason", "test"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_no_turn_within_max_wait_leaves_cleanly_and_exits_75_with_one_line(config_file, database, tmp_path):
    pause(config_file)
    argv = [sys.executable, "-m", "enqueue", "run", str(config_file), "alpha", "-d", DELAY, "-s", STALE,
            "--kill-grace", GRACE, "--max-wait", "1s", "--log-file", str(tmp_path / "agent.log"), "--", "true"]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert result.returncode == 75, result.stderr
    assert result.stderr.splitlines() == [
        "enqueue: site alpha got no turn within 1 s (--max-wait): it left the rotation (a site loop goes on with its "
        "next iteration)"]
    hb = heartbeat(database, "alpha")
    assert (hb.state, hb.left_because) == (docs.LEFT, docs.LEFT_MAX_WAIT)
    # It elected itself (nobody else runs) and stepped down as it left.
    assert leader_doc(database).leader is None
    assert database.store.list_prefix(docs.TURN_PREFIX) == []


def test_max_wait_is_refused_with_repeat(config_file):
    argv = [sys.executable, "-m", "enqueue", "run", str(config_file), "alpha", "--repeat", "--max-wait", "1s", "--",
            "true"]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1 and "--max-wait" in result.stderr


def test_a_loop_with_max_wait_keeps_monitoring_while_production_is_paused(config_file, database, tmp_path, loops):
    pause(config_file)
    monitored = tmp_path / "monitor.out"
    loops.append(start_loop(config_file, tmp_path, "alpha", "--monitor", f"echo checked >> {monitored}",
                            "--pause", "0.05", "--max-wait", "1s", "--iterations", "3"))
    assert loops[0].wait(timeout=120) == 0, loops[0].stdout.read()
    assert monitored.read_text() == "checked\n" * 3
    lines = [line.split(": ", 1)[1] for line in (tmp_path / "loop-alpha.log").read_text().splitlines()]
    assert lines[1:] == [
        "iteration 1: monitor exit 0",
        "iteration 1: no turn within --max-wait (enqueue run exit 75): going on with the next iteration",
        "iteration 2: monitor exit 0",
        "iteration 2: no turn within --max-wait (enqueue run exit 75): going on with the next iteration",
        "iteration 3: monitor exit 0",
        "iteration 3: no turn within --max-wait (enqueue run exit 75): going on with the next iteration",
        "done after 3 iterations",
    ]
    assert not (tmp_path / "probe.log").exists()


# --------------------------------------------------------------------------- status between iterations


def status_of(config: Path, site: str) -> dict:
    result = subprocess.run([sys.executable, "-m", "enqueue", "status", str(config), "--json"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return next(s for s in json.loads(result.stdout)["sites"] if s["name"] == site)


def test_status_tells_a_loop_between_iterations_from_a_stopped_site(config_file, database, tmp_path, loops):
    # A site loop counts as between iterations for its heartbeat_stale after its agent left: long here, so
    # that the status command (seconds to start on a busy machine) is sure to look within it.
    loops.append(start_loop(config_file, tmp_path, "alpha", "-o", "--heartbeat-stale=60s", "--pause", "30",
                            sleep_s=1.0))
    wait_until("alpha's first turn to end", lambda: database.store.get(docs.heartbeat_id("alpha")) and
               heartbeat(database, "alpha").state == docs.LEFT, timeout_s=60)
    between = status_of(config_file, "alpha")
    assert (between["liveness"], between["state"], between["left_because"]) == ("looping", "left", "turn done")
    loops[0].send_signal(signal.SIGTERM)
    assert loops[0].wait(timeout=60) == 0
    # A loop stopped between iterations leaves the heartbeat of its last agent: stop it during a wait instead.
    loops.append(start_loop(config_file, tmp_path, "alpha", "--pause", "30", sleep_s=60))
    wait_until("alpha's second agent running", lambda: heartbeat(database, "alpha").state == docs.RUNNING,
               timeout_s=60)
    loops[1].send_signal(signal.SIGTERM)
    assert loops[1].wait(timeout=60) == 0
    stopped = status_of(config_file, "alpha")
    assert (stopped["liveness"], stopped["state"], stopped["left_because"]) == ("left", "left", "stopped")
