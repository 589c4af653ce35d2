"""sites/enqueue-loop.sh against the real server: monitor, enqueued submission, pause, logged exit codes, clean stop."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from enqueue import documents as docs
from tests.support import servers
from tests.support.agents import DELAY, GRACE, STALE, Sites, wait_until
from tools.chaos import probe

LOOP = Path(__file__).resolve().parents[2] / "sites" / "enqueue-loop.sh"
LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ enqueue-loop alpha: (.*)$")


def loop(config: Path, workdir: Path, *options: str, sleep_s: float = 0.1, exit_code: int = 0,
         new_session: bool = False) -> subprocess.Popen:
    command = [sys.executable, probe.PATH, str(workdir / "probe.log"), "--sleep", str(sleep_s),
               "--exit", str(exit_code)]
    argv = ["bash", str(LOOP), "--run-once", "--enqueue", f"{sys.executable} -m enqueue",
            "--log", str(workdir / "loop.log"), "-o", f"--heartbeat-delay={DELAY}", "-o", f"--heartbeat-stale={STALE}", "-o", f"--kill-grace={GRACE}",
            *options, str(config), "alpha", "--", *command]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=new_session)


def messages(workdir: Path) -> list[str]:
    path = workdir / "loop.log"
    lines = path.read_text().splitlines() if path.exists() else []
    found = [LINE.match(line) for line in lines]
    assert all(found), lines
    return [m.group(1) for m in found]


def submission_started(workdir: Path) -> bool:
    """The probe wrote its start line (the file exists a moment earlier: a stop in between leaves it empty)."""
    path = workdir / "probe.log"
    return path.exists() and "start alpha" in path.read_text()


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
    wait_until("the submission to start", lambda: submission_started(tmp_path), timeout_s=30)
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
    wait_until("the submission to start", lambda: submission_started(tmp_path), timeout_s=30)
    os.killpg(proc.pid, signal.SIGINT)
    assert proc.wait(timeout=30) == 0
    lines = messages(tmp_path)
    # The agent gets SIGINT from the terminal and SIGTERM from the loop; it exits 128 + the last one.
    assert re.fullmatch(r"iteration 1: submission exit (130|143) \(\d+ s\)", lines[-2])
    assert lines[-1] == "stopped by SIGINT after 1 iterations"
    record = database.store.list_prefix(docs.TURN_PREFIX)[0]
    assert record["site"] == "alpha" and record["how"] == "stopped"


def test_the_monitor_runs_without_enqueues_connection_settings(config_file, database, tmp_path, finish):
    # As a systemd EnvironmentFile would hand them to the loop.
    env = dict(os.environ, ENQUEUE_COUCHDB_PASSWORD_FILE="", ENQUEUE_COUCHDB_EXTRA="loop-secret",
               ENQUEUE_TEST_INHERITED="kept")
    printed = tmp_path / "monitor.env"
    argv = ["bash", str(LOOP), "--run-once", "--enqueue", f"{sys.executable} -m enqueue",
            "--log", str(tmp_path / "loop.log"), "--monitor", f"env > {printed}", "--iterations", "1", "-o", f"--heartbeat-delay={DELAY}",
            "-o", f"--heartbeat-stale={STALE}", "-o", f"--kill-grace={GRACE}", str(config_file), "alpha", "--", "true"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    finish(proc)
    assert proc.wait(timeout=60) == 0, proc.stdout.read()
    seen = printed.read_text()
    assert "ENQUEUE_COUCHDB" not in seen and "loop-secret" not in seen
    assert "ENQUEUE_TEST_INHERITED=kept" in seen.splitlines()


def test_usage_errors_exit_2(tmp_path):
    for argv in ([], ["cfg", "alpha"], ["--pause", "soon", "cfg", "alpha", "true"], ["--bogus", "cfg", "a", "b"],
                 ["--iterations", "2", "cfg", "alpha", "true"]):
        result = subprocess.run(["bash", str(LOOP), *argv], capture_output=True, text=True, timeout=10)
        assert result.returncode == 2, argv
        assert result.stderr.startswith("enqueue-loop.sh: ") and "(see --help)" in result.stderr
    help_text = subprocess.run(["bash", str(LOOP), "--help"], capture_output=True, text=True, timeout=10).stdout
    for expected in ("usage: enqueue-loop.sh [options] CONFIG SITE [--] SUBMIT_CMD", "--monitor", "--pause",
                     "--log", "--enqueue", "--run-option", "--iterations", "ENQUEUE_LOOP_PAUSE", "--run-once",
                     "--between MONITOR --between-every PAUSE"):
        assert expected in help_text, expected


def test_the_pause_and_the_back_off_take_durations(tmp_path):
    fake = tmp_path / "fake-enqueue"
    fake.write_text("#!/bin/sh\nexit 2\n")
    fake.chmod(0o755)
    result = subprocess.run(["bash", str(LOOP), "--run-once", "--enqueue", str(fake), "--log", str(tmp_path / "loop.log"),
                             "--pause", "1.5m", "--retry-delay", "2m", "--retry-max", "1h", "cfg.ini", "alpha", "--",
                             "true"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 2, result.stdout + result.stderr
    assert messages(tmp_path)[0].startswith("started: config cfg.ini, pause 90 s"), messages(tmp_path)
    for option in ("--pause", "--retry-delay", "--retry-max"):
        bad = subprocess.run(["bash", str(LOOP), option, "2 min", "cfg.ini", "alpha", "true"],
                             capture_output=True, text=True, timeout=10)
        assert bad.returncode == 2 and f"{option} must be a duration such as 30s" in bad.stderr, bad.stderr


# --------------------------------------------------------------------------- enqueue run's own exit codes


def unfixable(iteration: int, code: int, reason: str) -> str:
    return (f"iteration {iteration}: enqueue run exit {code} before the submission started ({reason}): "
            f"retrying cannot fix that, stopping with exit code {code}")


def ran_probe(workdir: Path) -> bool:
    return (workdir / "probe.log").exists()


def write_atomically(path: Path, text: str) -> None:
    scratch = path.with_suffix(".new")
    scratch.write_text(text)
    scratch.replace(path)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_configuration_error_stops_the_loop_with_exit_2(tmp_path, finish):
    config = tmp_path / "bad.ini"
    config.write_text("[couchdb]\nurl = http://127.0.0.1:5984\ndatabase = db\n[enqueue]\nheartbeat_dealy = 1\n")
    proc = loop(config, tmp_path, "--pause", "0")
    finish(proc)
    assert proc.wait(timeout=60) == 2, proc.stdout.read()
    assert messages(tmp_path)[1:] == [unfixable(1, 2, "usage or configuration error")]
    assert not ran_probe(tmp_path)


def test_a_missing_database_stops_the_loop_with_exit_5(couch_server, tmp_path, finish):
    name = servers.DATABASE_PREFIX + "missing_" + os.urandom(4).hex()
    database = servers.Database(name, couch_server, couch_server.store(name))
    try:
        proc = loop(database.config_file(tmp_path / "config"), tmp_path, "--pause", "0")
        finish(proc)
        assert proc.wait(timeout=60) == 5, proc.stdout.read()
    finally:
        database.store.close()
    assert messages(tmp_path)[1:] == [unfixable(1, 5, "the database does not exist")]
    assert not ran_probe(tmp_path)


@pytest.fixture
def admin_server(couch_server) -> Iterator[servers.CouchServer]:
    """A server that checks passwords: the session's if it does, else an embedded one of our own."""
    with servers.with_admin(couch_server) as server:
        yield server


def test_refused_credentials_stop_the_loop_with_exit_4(admin_server, tmp_path, finish):
    # An account nobody has: a real CouchDB locks out a name after a few wrong passwords, and the admin's
    # must stay usable.
    database = servers.create_database(admin_server)
    try:
        password_file = tmp_path / "password"
        password_file.write_text("wrong-" + os.urandom(6).hex() + "\n")
        password_file.chmod(0o600)
        config = tmp_path / "auth.ini"
        config.write_text(f"[couchdb]\nurl = {admin_server.url}\ndatabase = {database.name}\n"
                          f"username = nobody_{os.urandom(3).hex()}\npassword_file = {password_file}\n")
        proc = loop(config, tmp_path, "--pause", "0")
        finish(proc)
        assert proc.wait(timeout=60) == 4, proc.stdout.read()
    finally:
        database.drop()
    assert messages(tmp_path)[1:] == [unfixable(1, 4, "credentials refused or not allowed")]
    assert not ran_probe(tmp_path)


def test_another_agent_of_the_site_on_this_host_stops_the_loop_with_exit_7(config_file, database, tmp_path, finish):
    sites = Sites(config_file, tmp_path / "agents")
    sites.workdir.mkdir()
    try:
        running = sites.start("alpha", sleep_s=0.1)
        wait_until("alpha registered", lambda: "registered as site alpha" in running.log())
        proc = loop(config_file, tmp_path, "--pause", "0")
        finish(proc)
        assert proc.wait(timeout=60) == 7, proc.stdout.read()
        assert running.proc.poll() is None  # the agent that was there first runs on
    finally:
        sites.stop_all()
    assert messages(tmp_path)[1:] == [unfixable(1, 7, "an agent of this site already runs on this host")]
    assert not ran_probe(tmp_path)


@pytest.mark.parametrize("code", [2, 4, 5, 6, 7])
def test_a_submission_that_itself_exits_with_such_a_code_does_not_stop_the_loop(
        config_file, database, tmp_path, finish, code):
    proc = loop(config_file, tmp_path, "--pause", "0", "--iterations", "2", exit_code=code)
    finish(proc)
    assert proc.wait(timeout=60) == 0, proc.stdout.read()
    lines = messages(tmp_path)
    assert [re.sub(r"\(\d+ s\)", "(N s)", line) for line in lines[1:]] == [
        f"iteration 1: submission exit {code} (N s)", f"iteration 2: submission exit {code} (N s)",
        "done after 2 iterations",
    ]


def test_an_unreachable_database_backs_off_growing_capped_and_resets_after_a_success(
        config_file, database, tmp_path, finish):
    config = tmp_path / "loop.ini"
    down = f"[couchdb]\nurl = http://127.0.0.1:{closed_port()}\ndatabase = {database.name}\n"
    write_atomically(config, down)
    proc = loop(config, tmp_path, "--pause", "0", "--retry-delay", "0.1", "--retry-max", "0.4")
    finish(proc)

    def unreachable(lines: list[str]) -> list[str]:
        return [m for m in lines if "before the submission started (database unreachable)" in m]

    def split_at_first_success() -> tuple[list[str], list[str]]:
        lines = messages(tmp_path)
        first = next((i for i, m in enumerate(lines) if "submission exit 0" in m), len(lines))
        return lines[:first], lines[first:]

    wait_until("four tries", lambda: len(unreachable(messages(tmp_path))) >= 4, timeout_s=60)
    write_atomically(config, config_file.read_text())
    wait_until("a submission", lambda: split_at_first_success()[1], timeout_s=60)
    write_atomically(config, down)
    wait_until("a try after the success", lambda: unreachable(split_at_first_success()[1]), timeout_s=60)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0, proc.stdout.read()

    before, after = split_at_first_success()
    waits = [re.search(r"next try in (\S+) s$", m).group(1) for m in unreachable(before)]
    assert waits[:4] == ["0.1", "0.2", "0.4", "0.4"] and set(waits[4:]) <= {"0.4"}
    assert unreachable(after)[0].endswith("next try in 0.1 s")
    assert after[-1].startswith("stopped by SIGTERM")


def test_enqueue_runs_own_codes_are_told_from_the_commands_even_for_a_clustered_database(tmp_path):
    """Exit 6 needs a CouchDB cluster; an 'enqueue' that fails like one shows the loop's side of it."""
    fake = tmp_path / "fake-enqueue"
    fake.write_text("#!/bin/sh\necho 'enqueue: database keeps 3 copies' >&2\nexit 6\n")
    fake.chmod(0o755)
    for mode, stopped in (["--run-once"], unfixable(1, 6, "the database keeps several copies (n > 1)")), \
            ([], "enqueue run exit 6 (the database keeps several copies (n > 1)): retrying cannot fix that, "
                 "stopping with exit code 6"):
        (tmp_path / "loop.log").unlink(missing_ok=True)
        result = subprocess.run(["bash", str(LOOP), *mode, "--enqueue", str(fake), "--log", str(tmp_path / "loop.log"),
                                 "cfg.ini", "alpha", "--", "true"], capture_output=True, text=True, timeout=30)
        assert result.returncode == 6, result.stdout + result.stderr
        assert messages(tmp_path)[1:] == [stopped]


def test_the_unit_restarts_on_failure_except_for_the_codes_the_loop_stops_with():
    unit = (LOOP.parent / "enqueue@.service").read_text()
    settings = dict(line.split("=", 1) for line in unit.splitlines() if re.match(r"^[A-Z]\w*=", line))
    stops_with = set(re.findall(r"^\s+(\d)\) echo ", LOOP.read_text(), flags=re.MULTILINE))
    assert stops_with == {"2", "4", "5", "6", "7"}
    assert settings["Restart"] == "on-failure"
    assert set(settings["RestartPreventExitStatus"].split()) == stops_with


# --------------------------------------------------------------------------- the persistent agent (the default)


def persistent(config: Path, workdir: Path, site: str, *options: str) -> subprocess.Popen:
    command = [sys.executable, probe.PATH, str(workdir / "probe.log"), "--sleep", "0.05"]
    argv = ["bash", str(LOOP), "--enqueue", f"{sys.executable} -m enqueue", "--log", str(workdir / f"loop-{site}.log"),
            "-o", f"--heartbeat-delay={DELAY}", "-o", f"--heartbeat-stale={STALE}", "-o", f"--kill-grace={GRACE}",
            "-o", f"--log-file={workdir / f'agent-{site}.log'}", *options, str(config), site, "--", *command]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_the_persistent_loop_and_a_kept_run_once_loop_take_turns_together(config_file, database, tmp_path, finish):
    """alpha and charlie run the loop as shipped; bravo keeps a seed-style script: monitor, one turn, again."""
    monitored = tmp_path / "monitor.log"
    monitor = f"echo \"$ENQUEUE_SITE 'quoted'\" >> {monitored}"
    loops = {site: persistent(config_file, tmp_path, site, "--monitor", monitor, "--pause", "1s")
             for site in ("alpha", "charlie")}
    for proc in loops.values():
        finish(proc)
    seed = (f"while true; do echo bravo >> {monitored}; {sys.executable} -m enqueue run {config_file} bravo "
            f"-d {DELAY} -s {STALE} --kill-grace {GRACE} --no-repeat -- {sys.executable} {probe.PATH} "
            f"{tmp_path / 'probe.log'} --sleep 0.05 || exit; done")
    kept = subprocess.Popen(["bash", "-c", seed], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        sites = Sites(config_file, tmp_path)
        report = wait_until("every site's turns", lambda: (lambda r: r if all(r.order.count(s) >= 3 for s in
                            ("alpha", "bravo", "charlie")) else None)(sites.report()), timeout_s=60)
        assert report.overlaps == [], report.overlaps
        lines = monitored.read_text().splitlines()
        assert lines.count("alpha 'quoted'") >= report.order.count("alpha"), "bash quoting kept, before every wait"
        assert lines.count("bravo") >= report.order.count("bravo")
        hb = database.store.get(docs.heartbeat_id("alpha"))
        assert hb["state"] in (docs.WAITING, docs.RUNNING, docs.BETWEEN) and hb["repeat"] is True
        assert "the between command exited with code 0" in (tmp_path / "agent-alpha.log").read_text()
    finally:
        os.killpg(kept.pid, signal.SIGTERM)
        kept.wait(timeout=30)
        kept.stdout.close()
    for site, proc in loops.items():
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, proc.stdout.read()
        lines = (tmp_path / f"loop-{site}.log").read_text().splitlines()
        assert lines[0].endswith(f"enqueue-loop {site}: started: config {config_file}, persistent agent, "
                                 f"monitoring every 1 s while waiting, submission: {sys.executable} {probe.PATH} "
                                 f"{tmp_path / 'probe.log'} --sleep 0.05"), lines
        assert lines[-1].endswith("stopped by SIGTERM") and len(lines) == 2, lines
        assert database.store.get(docs.heartbeat_id(site))["state"] == docs.LEFT
