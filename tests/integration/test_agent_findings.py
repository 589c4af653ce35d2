"""Faults found by fault injection, each pinned down as a test that keeps them fixed.

Each docstring gives the scenario, what went wrong and how it is now handled.
A fault not fixed yet is marked ``xfail(strict=True)`` and its docstring
proposes a fix: the fix makes the test pass, which strict mode reports
until the marker is removed.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import psutil
import pytest

from enqueue import documents as docs
from enqueue.errors import EXIT_SITE_IN_USE
from tests.support.agents import STALE_S, AgentProcess, Sites, sites, wait_until  # noqa: F401  (fixture: sites)
from tools.chaos import probe


def test_a_turn_finished_just_before_a_sigkill_is_still_recorded(sites, database):
    """SIGKILL of the runner right after it marked its turn done.

    Found: the runner CASed the leader doc to ``done`` (granting the next
    turn in the same write) and wrote the turn record 50 ms later; an agent
    killed in that window took the record with it, and nobody else ever
    wrote it, against docs/PROTOCOL.md §5.3 (every ended turn has a record).

    Now: the write that marks the turn done carries the record
    (``last_record``), and the next holder stores it while its command
    starts, if the runner did not (docs/PROTOCOL.md §3.8.2).
    """
    sites.start("bravo", sleep_s=0.3)
    alpha = sites.start("alpha", sleep_s=0.3)

    def finished_by_alpha():
        doc = database.store.get("enqueue_leader")
        if doc and doc.get("updated_by") == "alpha" and doc.get("last_how") == "exited" \
                and doc.get("running") != "alpha":
            return doc
        return None

    doc = wait_until("alpha marking its turn done", finished_by_alpha, timeout_s=30, every_s=0.001)
    alpha.signal(signal.SIGKILL)
    alpha.wait()
    turn = doc["turn"] - 1
    # Longer than heartbeat_stale: after any agent would have written what it was going to write.
    time.sleep(1.5 * STALE_S)
    wait_until("bravo taking turns", lambda: "bravo" in sites.report().order)
    assert database.store.get(docs.turn_record_id(turn)) is not None, f"turn {turn} has no record"


def _put_retrying(store, doc_id, change):
    """Apply ``change`` to the current body of ``doc_id`` (None: deleted) and write it, as an admin would."""
    for _ in range(50):
        raw = store.get(doc_id)
        new = change(dict(raw) if raw is not None else {"_id": doc_id})
        try:
            if new is None:
                if raw is not None:
                    store.delete(raw)
            else:
                store.put(new)
            return
        except Exception:  # noqa: BLE001 - a 409 from a concurrent agent write: read again
            time.sleep(0.01)
    raise AssertionError(f"could not edit {doc_id}")


@pytest.mark.parametrize("edit", ["garbage", "deleted"])
def test_a_broken_registry_does_not_crash_the_agents(sites, database, edit):
    """An admin breaks the sites doc while agents run.

    Found: the leader asserted that the registry parsed; a registry that
    did not (``"sites": "garbage"``) or was deleted made it exit with
    ``enqueue: internal error: AssertionError``, then the next leader the
    same way, until every agent had crashed.

    Now: a site whose registry is broken, deleted or lacks it registers
    again (a registry that does not parse is rewritten, its old content
    kept under ``repaired_from``).
    """
    for name in ("alpha", "bravo"):
        sites.start(name, sleep_s=0.2)
    before = len(sites.wait_runs(2).runs)

    def garbage(raw):
        raw["sites"] = "garbage"
        return raw

    _put_retrying(database.store, "enqueue_sites", garbage if edit == "garbage" else (lambda raw: None))
    time.sleep(2 * STALE_S)  # a crash would show at once (the leader) and after heartbeat_stale (the next)
    crashed = {name: a.proc.poll() for name, a in sites.agents.items() if a.proc.poll() is not None}
    assert crashed == {}, f"agents exited: {crashed}"
    sites.wait_runs(before + 3, timeout_s=10)
    parsed, problems = docs.parse_sites(database.store.get("enqueue_sites"), "enqueue_sites")
    assert parsed is not None, problems


def test_a_garbage_record_in_the_way_of_a_new_one_is_reported_and_replaced(sites, database):
    """An admin (or an old tool) left a document that does not parse at ``enqueue_turn:<n>`` for a turn
    not yet run.

    Found: when turn n ended, the runner got 409 and added its report to
    the existing document without a word, so the turn's record still did not
    parse and no log said so.

    Now: such a document is replaced with a warning naming it, its old
    content kept under ``replaced``.
    """
    garbage_turn = 3
    database.store.put({"_id": docs.turn_record_id(garbage_turn), "turn": "x", "site": None})
    for name in ("alpha", "bravo"):
        sites.start(name, sleep_s=0.1)
    sites.wait_runs(garbage_turn + 1)
    wait_until("the agents to write what they write", lambda: database.store.get(docs.turn_record_id(garbage_turn + 1)))
    logs = "".join(a.log() for a in sites.agents.values())
    record, problems = docs.parse_turn_record(database.store.get(docs.turn_record_id(garbage_turn)))
    assert record is not None and record.turn == garbage_turn, problems
    assert docs.turn_record_id(garbage_turn) in logs


def test_a_second_agent_of_a_site_on_the_same_host_is_refused(sites, database):
    """The same site started twice on one host (two tmux sessions, a copied systemd unit).

    Found: both agents kept the one heartbeat doc alive, and the second one
    ended the first one's running turn as if a crash had left it behind and
    passed it on, while the first one's command still ran under a renewed
    lease: a command slow to die on SIGTERM overlapped the next site's.

    Now: the second agent sees the first one's pid alive on this host and
    refuses to start, exit 7 with one line; the first one's turn goes on.
    """
    command = [sys.executable, probe.PATH, str(sites.probe_log), "--sleep", "30"]
    sites.start("alpha", command=command)
    run = wait_until("alpha's command running", lambda: next(iter(sites.report().runs), None))
    sites.agents["alpha-first"] = sites.agents["alpha"]
    twin = sites.start("alpha", command=command)
    assert twin.wait(timeout_s=30) == EXIT_SITE_IN_USE
    lines = [line for line in twin.log().splitlines() if line.startswith("enqueue: ")]
    assert len(lines) == 1 and "already has an agent on this host" in lines[0], twin.log()
    assert sites.agents["alpha-first"].proc.poll() is None
    assert next(r for r in sites.report().runs if r.pid == run.pid).end_ns is None


def _other_host_argv(argv: list) -> list:
    """``argv`` run under another host name (a UTS namespace of its own), or skip when that is impossible."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("a second host name needs root and unshare")
    trial = subprocess.run(["unshare", "--uts", "true"], capture_output=True)
    if trial.returncode != 0:
        pytest.skip("cannot create a UTS namespace here")
    return ["unshare", "--uts", "sh", "-c", 'hostname "$0" && exec "$@"', "twin-host", *argv]


def test_a_twin_on_another_host_never_ends_the_first_ones_turn(sites, database, config_file, tmp_path):
    """The same site started on two hosts.

    Now: the second agent cannot see the first one's process, so it runs,
    but it notices another instance writing its heartbeat doc, says so
    loudly, and does not end a turn it did not start while the other one
    beats. The first one's command, which ignores SIGTERM, runs on alone.
    """
    command = [sys.executable, probe.PATH, str(sites.probe_log), "--sleep", "30", "--ignore-term"]
    timing = ["-s", "3s", "--kill-grace", "1s"]
    first = sites.start("alpha", command=command, extra=timing)
    run = wait_until("alpha's command running", lambda: next(iter(sites.report().runs), None))
    bravo = sites.start("bravo", sleep_s=0.2, extra=timing)
    wait_until("bravo registered", lambda: "registered as site" in bravo.log())
    argv = [sys.executable, "-m", "enqueue", "run", str(config_file), "alpha", "-d", "0.5s", "-c", "0.2s",
            *timing, "--repeat", "--", *command]
    log_path = tmp_path / "agent-alpha-twin.log"
    with open(log_path, "ab") as out:
        proc = subprocess.Popen(_other_host_argv(argv), stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT)
    sites.agents["alpha-first"] = first
    sites.agents["alpha"] = AgentProcess("alpha", proc, log_path)
    wait_until("the twin noticing the first one", lambda: "another agent runs as site alpha" in log_path.read_text(),
               timeout_s=30)
    # Longer than the orphan wait (heartbeat_stale - heartbeat_delay from the twin's start) and the grace.
    time.sleep(3.0 + 1.0)
    assert sites.report().overlaps == [], sites.report().overlaps
    assert next(r for r in sites.report().runs if r.pid == run.pid).end_ns is None
    assert "bravo" not in sites.report().order


def test_a_command_longer_than_a_heartbeat_is_not_fenced_with_the_default_kill_grace(config_file):
    """``enqueue run CFG alpha -d 0.5s -s 2s -- sleep 3`` (no --kill-grace).

    Found: the kill grace fitted by default was the largest ``Timing``
    allowed, ``heartbeat_stale - 2 x heartbeat_delay``, which put the SIGTERM
    moment exactly one heartbeat after the last acknowledged beat was sent:
    when the next beat is sent, before it can be acknowledged. Every command
    longer than about one heartbeat was fenced ("finished turn 1: fenced,
    exit code 143" after well under a second). The documented defaults (10
    and 30 minutes) hid it; ``-d 10s -s 30s`` showed it.

    Now: the grace may be at most half of that, which leaves half the slack
    for the beat's round trip, and the default is fitted to it.
    """
    result = subprocess.run(
        [sys.executable, "-m", "enqueue", "run", str(config_file), "alpha", "-d", "0.5s", "-s", "2s", "--",
         "sleep", "3"],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr[-800:]


def test_stopping_the_agents_job_does_not_unfence_its_command(sites, config_file, tmp_path):
    """``kill -STOP %1`` in the shell (or ``kill -STOP -- -PGID``) on a running agent.

    Found: the supervisor ran in the agent's process group, so a stop signal
    sent to the agent's job froze agent *and* supervisor, while the command,
    in a session of its own, ran on with nobody keeping its deadline: the
    next site's command started next to it. (Ctrl-Z was always safe: SIGTSTP
    is ignored by the supervisor; SIGSTOP cannot be.)

    Now: the supervisor runs in a process group of its own.
    """
    command = [sys.executable, probe.PATH, str(sites.probe_log), "--sleep", "30"]
    timing = ["-d", "0.5s", "-s", "4s", "--kill-grace", "0.3s"]
    bravo = sites.start("bravo", sleep_s=0.2, extra=timing)
    wait_until("bravo registered", lambda: "registered as site" in bravo.log(), timeout_s=30)
    argv = [sys.executable, "-m", "enqueue", "run", str(config_file), "alpha", *timing, "--repeat", "--", *command]
    with open(tmp_path / "agent-alpha-own-group.log", "wb") as out:
        alpha = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                 start_new_session=True)
    try:
        run = wait_until("alpha's command running",
                         lambda: next((r for r in sites.report().runs if r.site == "alpha"), None), timeout_s=30)
        time.sleep(0.5)
        os.killpg(alpha.pid, signal.SIGSTOP)
        assert next(r for r in sites.report().runs if r.pid == run.pid).end_ns is None, "fenced too early to tell"
        # A probe that finds another's lock held writes "overlap" and then waits for the lock.
        wait_until("bravo's next turn", lambda: sites.report().overlaps or any(
            r.site == "bravo" and r.start_ns > run.start_ns for r in sites.report().runs), timeout_s=30)
        time.sleep(0.5)
        assert sites.report().overlaps == [], sites.report().overlaps
    finally:
        family = [alpha.pid] + [p.pid for p in psutil.Process(alpha.pid).children(recursive=True)]
        os.killpg(alpha.pid, signal.SIGCONT)
        for pid in family:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        alpha.wait(timeout=10)
        psutil.wait_procs([p for p in map(_process, family) if p is not None], timeout=5)


def _process(pid: int):
    try:
        return psutil.Process(pid)
    except psutil.NoSuchProcess:
        return None


def test_a_slow_server_does_not_waste_turns(sites, database, tmp_path):
    """Every request of alpha's takes about half a heartbeat (a slow CouchDB, docs/PROTOCOL.md §6.1).

    Found: the agent (``OwnTurn.confirm_and_start`` now) beat first only when the lease's
    SIGTERM moment had already passed, then confirmed (one round trip) and
    started the command under the lease it had. When the lease had a little
    time left, the confirm's round trip used it up: the supervisor refused to
    start a command past its SIGTERM moment, the turn was recorded ``failed
    to start`` (exit code None) and passed on, and a run-once agent exited 1
    without having run its command. With requests taking 0.2 s each way and a
    0.5 s heartbeat most of alpha's turns were lost this way; the same
    happened to agents starved of CPU.

    Now: the agent beats before the confirm unless the lease outlasts three
    heartbeat round trips (as last measured). Renewing *after* the confirm
    would not be safe: a heartbeat that lands after the leader took the turn
    away for silence must not start a command.
    """
    from tools.chaos.network import BlackholeProxy

    port = int(database.server.url.rsplit(":", 1)[1])
    proxy = BlackholeProxy(port)
    proxy.set_latency(0.2)
    try:
        slow = Sites(config=database.config_file(tmp_path / "slow"), workdir=tmp_path)
        config = tmp_path / "slow" / "enqueue.ini"
        config.write_text(config.read_text().replace(database.server.url, f"http://127.0.0.1:{proxy.port}"))
        sites.start("bravo", sleep_s=0.1)
        alpha = slow.start("alpha", sleep_s=0.1)
        sites.agents["alpha"] = alpha
        wait_until("three turns of alpha's", lambda: alpha.log().count("finished turn") >= 3, timeout_s=60)
        assert "failed to start" not in alpha.log(), alpha.log()[-1500:]
    finally:
        sites.stop_all()
        proxy.close()


def test_a_frozen_supervisor_of_an_agent_cut_off_from_the_server_does_not_let_its_command_outlive_its_lease(
        sites, database, tmp_path):
    """The command's supervisor stopped alone (``kill -STOP`` of that one process, or starved of CPU), then its
    agent cut off from the server.

    Found: the supervisor keeps the deadline, and a frozen one keeps none;
    the agent, alive, knowing the command's process group and its deadline,
    never killed it. Its beats failed, the leader took the turn away after
    ``heartbeat_stale`` of silence, and the next site's command started
    while the old one still ran.

    Now: the agent is the deadline's second keeper. Once the deadline has
    passed (by a quarter heartbeat) without word from the supervisor that
    the command ended, it kills the group itself, still a heartbeat before
    the leader may give the turn away.
    """
    from tools.chaos.network import BlackholeProxy

    port = int(database.server.url.rsplit(":", 1)[1])
    proxy = BlackholeProxy(port)
    supervisor = None
    try:
        cut = Sites(config=database.config_file(tmp_path / "cut"), workdir=tmp_path)
        config = tmp_path / "cut" / "enqueue.ini"
        config.write_text(config.read_text().replace(database.server.url, f"http://127.0.0.1:{proxy.port}"))
        bravo = sites.start("bravo", sleep_s=0.1)
        wait_until("bravo leading", lambda: (database.store.get("enqueue_leader") or {}).get("leader") == "bravo")
        alpha = cut.start("alpha", sleep_s=30)
        sites.agents["alpha"] = alpha
        run = wait_until("alpha's command running",
                         lambda: next((r for r in sites.report().runs if r.site == "alpha"), None), timeout_s=30)
        supervisor = next(p for p in psutil.Process(alpha.proc.pid).children()
                          if any("enqueue.supervisor" in part for part in p.cmdline()))
        supervisor.suspend()
        proxy.cut()
        # A probe that finds another's lock held writes "overlap" and then waits for the lock.
        report = wait_until("bravo's next turn", lambda: (lambda rep: rep if rep.overlaps or any(
            r.site == "bravo" and r.start_ns > run.start_ns for r in rep.runs) else None)(sites.report()),
            timeout_s=30)
        assert report.overlaps == [], report.overlaps
        assert "killed its process group" in alpha.log(), alpha.log()[-2000:]
        assert bravo.proc.poll() is None
    finally:
        if supervisor is not None:
            try:
                supervisor.resume()
            except psutil.NoSuchProcess:
                pass
        proxy.heal()
        sites.stop_all()
        proxy.close()
