"""Faults found by fault injection, each pinned down as a test that keeps them fixed.

Each docstring gives the scenario, what went wrong and how it is now handled.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from enqueue import documents as docs
from tests.support.agents import STALE_S, Sites, wait_until


@pytest.fixture
def sites(config_file, tmp_path):
    s = Sites(config=config_file, workdir=tmp_path)
    yield s
    s.stop_all()


def test_a_turn_finished_just_before_a_sigkill_is_still_recorded(sites, database):
    """SIGKILL of the runner right after it marked its turn done.

    ``Agent._finish`` CASes the leader doc to ``done`` (granting the next
    turn in the same write) and only queues the turn record, which
    ``_flush_records`` writes ``_RECORD_DEFER_S`` (50 ms) later. An agent
    killed in that window takes the record with it: nobody else ever
    writes it (the leader only records turns it revokes), so the finished
    turn has no ``enqueue_turn:<n>`` document, against DESIGN §4 ("every
    finished turn recorded").

    Proposed fix: write the record before the CAS that marks the turn done
    (one extra write on the handoff path, and the record can never be
    missing for a turn marked done), or keep the deferral and have the
    leader write a record from the leader doc's ``last_*`` fields for any
    finished turn whose record has not appeared a heartbeat later.
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

    ``Agent._lead`` starts with ``assert self.registry is not None``; a
    registry that does not parse (``"sites": "garbage"``) or was deleted makes
    ``parse_sites`` return None, so the leader dies with ``enqueue: internal
    error: AssertionError`` (exit 1) and its command is stopped. The next site
    to be elected dies the same way: within a few ``heartbeat_stale`` every
    agent has crashed.

    Proposed fix: never assert on document content. When the registry is
    None, re-register (``_register`` already rewrites a registry that does
    not parse, keeping the old content under ``repaired_from``) and skip
    ``_lead`` until the registry parses again.
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

    When turn n ends, ``Agent._write_record`` gets 409 and adds its report as
    ``runner_report`` to the existing document, without a word: the turn's
    record still does not parse (``history`` cannot show it) and nothing in
    any log says so.

    Proposed fix: on 409, parse the existing record; when it does not parse
    (or names another turn), log a warning with its id and overwrite it with
    this turn's record, keeping the old content under ``replaced``.
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


def test_two_agents_with_one_site_name_never_overlap(sites, database):
    """The same site started twice (two tmux sessions, a copied systemd unit).

    Both agents overwrite the one heartbeat doc (``_beat`` resolves a 409 by
    overwriting) and so keep it alive. The second agent reads a leader doc
    saying its site runs a turn it did not start, waits ``heartbeat_stale -
    heartbeat_delay`` from its own start (``_end_orphaned_turn``), marks the
    turn ``abandoned`` and passes it on, although the first agent's command
    still runs under a lease its heartbeats keep renewing. The first agent
    then sees the turn taken away and stops its command, but only with the
    grace policy: a command that takes its grace to die (here one that
    ignores SIGTERM) overlaps with the next site's.

    Proposed fix: make a twin visible and refuse it. The heartbeat doc has an
    ``instance`` field: an agent whose heartbeat write meets another live
    instance (a 409 whose current document names another instance that is
    not ``left``) should log an error naming the other host and pid and stop
    (or at least never end a turn as orphaned while another instance of its
    site has beaten within ``heartbeat_stale``).
    """
    command = [sys.executable, "-m", "enqueue.probe", str(sites.probe_log), "--sleep", "30", "--ignore-term"]
    timing = ["-s", "3s", "--kill-grace", "1s"]
    first = sites.start("alpha", command=command, extra=timing)
    wait_until("alpha's command running", lambda: any(r.site == "alpha" for r in sites.report().runs))
    bravo = sites.start("bravo", sleep_s=0.2, extra=timing)
    wait_until("bravo registered", lambda: "registered as site" in bravo.log())
    sites.agents["alpha-first"] = first
    sites.start("alpha", command=command, extra=timing)
    wait_until("bravo's first turn", lambda: sites.report().overlaps or "bravo" in sites.report().order,
               timeout_s=30)
    time.sleep(1.5)
    assert sites.report().overlaps == [], sites.report().overlaps


def test_a_command_longer_than_a_heartbeat_is_not_fenced_with_the_default_kill_grace(config_file):
    """``enqueue run CFG alpha -d 0.5s -s 2s -- sleep 3`` (no --kill-grace).

    When kill_grace is not set, ``load_agent_settings`` fits it to
    ``min(30 s, heartbeat_stale - 2 x heartbeat_delay)``, the largest value
    ``Timing`` allows. Then ``self_fence_after_s`` = stale - delay - grace =
    delay exactly: the supervisor sends SIGTERM one heartbeat period after
    the last acknowledged beat was *sent*, which is exactly when the next
    beat is sent, before it can be acknowledged. Every command that runs
    longer than about one heartbeat is fenced (here: "finished turn 1:
    fenced, exit code 143" after well under a second). With the documented
    defaults (10 and 30 minutes) the grace is 30 s and nothing shows; with
    ``-d 10s -s 30s`` or the compat example ``-d 1 -s 2.5`` it bites.

    Proposed fix (enqueue/config.py): keep at least one heartbeat of slack
    for the beat's round trip, as the Timing docstring intends ("one late
    heartbeat must not make a running site stop its command"): require
    ``kill_grace <= heartbeat_stale - 2 x heartbeat_delay`` *strictly less*
    by a margin (e.g. ``self_fence_after_s >= 1.5 x heartbeat_delay``) and
    fit the default to ``min(30 s, (heartbeat_stale - 2 x heartbeat_delay) / 2)``.
    """
    result = subprocess.run(
        [sys.executable, "-m", "enqueue", "run", str(config_file), "alpha", "-d", "0.5s", "-s", "2s", "--",
         "sleep", "3"],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr[-800:]


def test_stopping_the_agents_job_does_not_unfence_its_command(sites, config_file, tmp_path):
    """``kill -STOP %1`` in the shell (or ``kill -STOP -- -PGID``) on a running agent.

    The supervisor is started by ``Runner`` in the agent's process group, so
    a stop signal sent to the agent's job freezes agent *and* supervisor,
    while the command, in a session of its own, runs on. Nobody keeps its
    deadline: the leader takes the turn away after ``heartbeat_stale`` and
    the next site's command starts next to it. (Ctrl-Z is safe: it sends
    SIGTSTP, which the supervisor ignores. SIGSTOP cannot be ignored.)

    Proposed fix (enqueue/runner.py): start the supervisor in a process
    group of its own (``start_new_session=True``, or ``setpgid`` in the
    child); it already ignores the terminal's SIGINT/SIGQUIT/SIGHUP and
    follows the agent through the control pipe, so nothing else changes.
    """
    import os

    import psutil

    command = [sys.executable, "-m", "enqueue.probe", str(sites.probe_log), "--sleep", "30"]
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
    import psutil

    try:
        return psutil.Process(pid)
    except psutil.NoSuchProcess:
        return None
