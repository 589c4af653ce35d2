"""Several agent processes against the real server, with short timings.

Every test ends by checking the commands' own history: no two ever ran at once.
"""

from __future__ import annotations

import signal
import sys
import time

import psutil
import pytest

from enqueue import documents as docs
from tests.support.agents import DELAY_S, STALE_S, Sites, wait_until
from tools.chaos import probe


@pytest.fixture
def sites(config_file, tmp_path):
    s = Sites(config=config_file, workdir=tmp_path)
    yield s
    s.stop_all()


def leader_doc(database) -> docs.LeaderDoc:
    parsed, _ = docs.parse_leader(database.store.get("enqueue_leader"), "enqueue_leader")
    assert parsed is not None
    return parsed


def assert_alphabetical(order: list[str], names: list[str]) -> None:
    """Each turn goes to the next site after the previous one, alphabetically, wrapping around."""
    ring = sorted(names)
    for prev, nxt in zip(order, order[1:]):
        assert nxt == ring[(ring.index(prev) + 1) % len(ring)], order


def bravo_after(sites: Sites, start_ns: int):
    """The history, once bravo has started a command after ``start_ns``."""
    report = sites.report()
    return report if any(r.site == "bravo" and r.start_ns > start_ns for r in report.runs) else None


def no_overlap(sites: Sites) -> None:
    report = sites.report()
    assert report.overlaps == [], report.overlaps


def test_three_sites_take_turns_alphabetically(sites):
    for name in ("charlie", "alpha", "bravo"):
        sites.start(name, sleep_s=0.1)
    report = sites.wait_runs(12)
    assert_alphabetical(report.order[-7:], ["alpha", "bravo", "charlie"])
    no_overlap(sites)


def test_a_joining_site_takes_its_alphabetical_place_and_a_leaving_one_is_skipped(sites, database):
    for name in ("alpha", "charlie"):
        sites.start(name, sleep_s=0.1)
    sites.wait_runs(2)
    sites.start("bravo", sleep_s=0.1)
    wait_until("bravo's first turn", lambda: "bravo" in sites.report().order)
    after = len(sites.report().runs)
    report = sites.wait_runs(after + 6)
    assert_alphabetical(report.order[after:], ["alpha", "bravo", "charlie"])

    sites.agents["bravo"].signal(signal.SIGTERM)
    assert sites.agents["bravo"].wait() == 128 + signal.SIGTERM
    hb, _ = docs.parse_heartbeat(database.store.get(docs.heartbeat_id("bravo")), "bravo")
    assert hb is not None and hb.state == docs.LEFT
    left_at = len(sites.report().runs)
    report = sites.wait_runs(left_at + 4, timeout_s=STALE_S * 2)
    assert "bravo" not in report.order[left_at + 1:]
    no_overlap(sites)


def test_a_new_leader_takes_over_within_stale_plus_a_delay_after_the_leader_is_killed(sites, database):
    for name in ("alpha", "bravo", "charlie"):
        sites.start(name, sleep_s=0.1)
    sites.wait_runs(3)
    old = leader_doc(database).leader
    assert old is not None
    sites.agents[old].signal(signal.SIGKILL)
    sites.agents[old].wait()
    killed = time.monotonic()
    wait_until("a new leader", lambda: leader_doc(database).leader not in (None, old), timeout_s=STALE_S + 3 * DELAY_S + 2)
    took = time.monotonic() - killed
    assert took <= STALE_S + DELAY_S + 1.0, f"new leader after {took:.2f} s"
    before = len(sites.report().runs)
    report = sites.wait_runs(before + 4, timeout_s=30)
    assert set(report.order[before:]) <= {"alpha", "bravo", "charlie"} - {old}
    no_overlap(sites)


def test_a_killed_runner_command_dies_with_its_lease_and_the_next_starts_after_stale(sites, database):
    sites.start("alpha", sleep_s=30)
    sites.start("bravo", sleep_s=0.1)
    wait_until("alpha running", lambda: any(r.site == "alpha" for r in sites.report().runs))
    run = next(r for r in sites.report().runs if r.site == "alpha")
    sites.agents["alpha"].signal(signal.SIGKILL)
    sites.agents["alpha"].wait()
    wait_until("alpha's command gone", lambda: not psutil.pid_exists(run.pid) or
               psutil.Process(run.pid).status() == psutil.STATUS_ZOMBIE, timeout_s=STALE_S)
    report = wait_until("bravo's next turn", lambda: bravo_after(sites, run.start_ns), timeout_s=STALE_S * 4)
    bravo = next(r for r in report.runs if r.site == "bravo" and r.start_ns > run.start_ns)
    assert bravo.start_ns - run.start_ns >= (STALE_S - DELAY_S) * 1e9
    no_overlap(sites)


def test_a_frozen_runner_is_fenced_before_the_next_starts_and_then_waits_again(sites, database):
    alpha = sites.start("alpha", sleep_s=30)
    sites.start("bravo", sleep_s=0.1)
    wait_until("alpha running", lambda: any(r.site == "alpha" for r in sites.report().runs))
    first = next(r for r in sites.report().runs if r.site == "alpha")
    alpha.signal(signal.SIGSTOP)
    try:
        report = wait_until("bravo's next turn", lambda: bravo_after(sites, first.start_ns), timeout_s=STALE_S * 4)
    finally:
        alpha.signal(signal.SIGCONT)
    fenced = next(r for r in report.runs if r.pid == first.pid)
    bravo = next(r for r in report.runs if r.site == "bravo" and r.start_ns > first.start_ns)
    assert fenced.end_ns is not None and fenced.end_ns <= bravo.start_ns
    wait_until("alpha noticing it lost its turn", lambda: "no longer mine" in alpha.log()
               or "taken away" in alpha.log(), timeout_s=STALE_S * 2)
    wait_until("alpha taking a turn again",
               lambda: any(r.site == "alpha" and r.start_ns > bravo.start_ns for r in sites.report().runs), timeout_s=30)
    no_overlap(sites)


def test_a_leader_waits_out_the_longer_lease_of_a_runner_configured_otherwise(sites, database):
    """bravo runs with twice the leader's heartbeat_stale; frozen mid-turn, its command
    lives for bravo's lease, and the leader must not start another before it is dead."""
    long_stale = 2 * STALE_S
    sites.start("alpha", sleep_s=0.1)
    wait_until("alpha leading", lambda: database.store.get("enqueue_leader") and leader_doc(database).leader == "alpha")
    bravo = sites.start("bravo", sleep_s=30, extra=["-s", f"{long_stale}s"])
    wait_until("bravo running", lambda: any(r.site == "bravo" for r in sites.report().runs))
    first = next(r for r in sites.report().runs if r.site == "bravo")
    bravo.signal(signal.SIGSTOP)
    try:
        report = wait_until("alpha's turn after bravo's",
                            lambda: (lambda rep: rep if any(r.site == "alpha" and r.start_ns > first.start_ns
                                                            for r in rep.runs) else None)(sites.report()),
                            timeout_s=long_stale * 4)
    finally:
        bravo.signal(signal.SIGCONT)
    fenced = next(r for r in report.runs if r.pid == first.pid)
    after = next(r for r in report.runs if r.site == "alpha" and r.start_ns > first.start_ns)
    assert fenced.end_ns is not None and fenced.end_ns <= after.start_ns
    assert after.start_ns - first.start_ns >= (long_stale - DELAY_S) * 1e9
    no_overlap(sites)


def test_a_wall_clock_hours_off_changes_nothing(sites):
    sites.start("alpha", sleep_s=0.1, extra=["--wall-clock-offset", str(-5 * 3600)])
    sites.start("bravo", sleep_s=0.1, extra=["--wall-clock-offset", str(7 * 3600)])
    sites.start("charlie", sleep_s=0.1)
    report = sites.wait_runs(12)
    assert_alphabetical(report.order[-7:], ["alpha", "bravo", "charlie"])
    no_overlap(sites)


def test_twenty_agents_started_at_once_elect_one_leader_and_never_overlap(sites, database):
    names = [f"site{i:02d}" for i in range(20)]
    for name in names:
        sites.start(name, sleep_s=0.05)
    report = sites.wait_runs(25, timeout_s=60)
    doc = leader_doc(database)
    assert doc.leader in names
    assert doc.leader_term == 1, "more than one site won an election"
    no_overlap(sites)
    assert len(report.runs) >= 25


def test_run_once_returns_the_command_exit_code(sites):
    agent = sites.start("alpha", repeat=False,
                        command=[sys.executable, probe.PATH, str(sites.probe_log), "--exit", "7"])
    assert agent.wait() == 7
    assert sites.report().order == ["alpha"]


def test_a_missing_command_gives_a_clear_error_and_releases_the_turn(sites, database):
    agent = sites.start("alpha", repeat=False, command=["no-such-command-enqueue-test"])
    assert agent.wait() == 127
    assert "no-such-command-enqueue-test" in agent.log()
    doc = leader_doc(database)
    assert doc.status == docs.DONE and doc.last_exit_code == 127
    sites.start("bravo", sleep_s=0.1)
    sites.wait_runs(1)


def test_a_turn_spanning_a_server_restart_completes_and_is_recorded(disk_server, tmp_path):
    from tests.support import servers

    db = servers.create_database(disk_server)
    try:
        s = Sites(config=db.config_file(tmp_path / "config"), workdir=tmp_path)
        try:
            s.start("alpha", sleep_s=1.5)
            first = wait_until("a command running", lambda: next(iter(s.report().runs), None))
            disk_server.restart()
            restarted_ns = time.time_ns()
            s.start("bravo", sleep_s=0.1)
            # The command that ran across the restart ends normally and its turn is recorded.
            wait_until(f"turn {first.turn} recorded", lambda: db.store.get(docs.turn_record_id(int(first.turn))),
                       timeout_s=20)
            record, _ = docs.parse_turn_record(db.store.get(docs.turn_record_id(int(first.turn))))
            assert record is not None and record.site == "alpha" and record.how == "exited"
            ended = next(r for r in s.report().runs if r.pid == first.pid)
            assert ended.end_ns is not None and ended.end_ns > restarted_ns, "the restart did not fall inside the turn"
            before = len(s.report().runs)
            s.wait_runs(before + 2, timeout_s=30)
            assert s.report().overlaps == []
        finally:
            s.stop_all()
    finally:
        db.drop()
