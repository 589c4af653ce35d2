"""``enqueue run --repeat --between/--between-every/--ready`` against the real server.

Persistent agents run their monitoring step outside their turns and check
readiness before they wait: they rotate, keep monitoring through a pause and
a drain, and ``status`` shows ``between`` / ``not ready: ...`` at the right
moments. Every test ends by checking the commands' own history: no two ran
at once.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import psutil

from enqueue import documents as docs
from tests.support.agents import Sites, sites, wait_until  # noqa: F401  (fixture: sites)
from tests.support.commands import enqueue_cli  # noqa: F401  (fixture: enqueue_cli)

NAMES = ("alpha", "bravo", "charlie")


def between_line(workdir: Path) -> str:
    """Log each run's start, hold while ``hold-SITE`` exists, exit 3."""
    return (f'echo "$(date +%s.%N) $$" >> {workdir}/between-$ENQUEUE_SITE.log; '
            f"while [ -e {workdir}/hold-$ENQUEUE_SITE ]; do sleep 0.05; done; exit 3")


def between_runs(workdir: Path, site: str) -> int:
    path = workdir / f"between-{site}.log"
    return len(path.read_text().splitlines()) if path.exists() else 0


def status(enqueue_cli) -> dict:
    result = enqueue_cli("status", "--json")
    assert result.code == 0, result.err
    return json.loads(result.out)


def site_row(enqueue_cli, site: str) -> dict:
    return next(row for row in status(enqueue_cli)["sites"] if row["name"] == site)


def turns_of(sites: Sites, site: str) -> int:
    return sum(1 for run in sites.report().runs if run.site == site)


def no_overlap(sites: Sites) -> None:
    report = sites.report()
    assert report.overlaps == [], report.overlaps


def test_three_sites_rotate_and_a_site_between_is_offered_no_turn(sites, enqueue_cli, tmp_path):
    for name in NAMES:
        sites.start(name, sleep_s=0.05, extra=["--between", between_line(tmp_path)])
    report = sites.wait_runs(9)
    ring = list(NAMES)
    order = report.order
    for prev, nxt in zip(order[-6:], order[-5:]):
        assert nxt == ring[(ring.index(prev) + 1) % 3], order
    for name in NAMES:
        # Once at the start, then after every turn (the last one may still be starting).
        assert between_runs(tmp_path, name) >= turns_of(sites, name), name

    (tmp_path / "hold-bravo").touch()
    held_from = wait_until("bravo between and held", lambda: site_row(enqueue_cli, "bravo")["state"] == docs.BETWEEN
                           and (tmp_path / "hold-bravo").exists() and turns_of(sites, "bravo"))
    assert held_from
    bravo_turns = turns_of(sites, "bravo")
    before = len(sites.report().runs)
    sites.wait_runs(before + 6)
    row = site_row(enqueue_cli, "bravo")
    assert row["state"] == docs.BETWEEN and row["liveness"] == "alive", row
    assert "bravo" not in status(enqueue_cli)["rotation"]
    [bravo_line] = [line for line in enqueue_cli("status").out.splitlines() if line.startswith("bravo ")]
    assert bravo_line.split()[2] == "between", bravo_line
    assert turns_of(sites, "bravo") <= bravo_turns + 1, "no turn while between (one may have been granted before)"
    (tmp_path / "hold-bravo").unlink()
    wait_until("bravo's turns again", lambda: turns_of(sites, "bravo") >= bravo_turns + 2)
    assert "the between command exited with code 3" in sites.agents["alpha"].log()
    no_overlap(sites)


def test_monitoring_goes_on_through_a_pause_and_a_drain(sites, enqueue_cli, tmp_path):
    for name in NAMES:
        sites.start(name, sleep_s=0.05, extra=["--between", between_line(tmp_path), "--between-every", "1s"])
    sites.wait_runs(3)
    assert enqueue_cli("pause", "--reason", "test").code == 0
    wait_until("the pause in force", lambda: status(enqueue_cli)["turn"]["state"] == "done")
    runs_paused = len(sites.report().runs)
    counts = {name: between_runs(tmp_path, name) for name in NAMES}
    wait_until("two more monitoring runs on every site while paused",
               lambda: all(between_runs(tmp_path, n) >= counts[n] + 2 for n in NAMES), timeout_s=30)
    assert len(sites.report().runs) == runs_paused, "no turn while paused"
    assert {row["liveness"] for row in status(enqueue_cli)["sites"]} == {"alive"}
    assert status(enqueue_cli)["leader"] in NAMES, "leadership stays while monitoring"

    assert enqueue_cli("sites", "drain", "alpha", "--reason", "test").code == 0
    assert enqueue_cli("resume").code == 0
    alpha_turns, alpha_runs = turns_of(sites, "alpha"), between_runs(tmp_path, "alpha")
    before = len(sites.report().runs)
    sites.wait_runs(before + 4)
    wait_until("alpha monitoring while drained", lambda: between_runs(tmp_path, "alpha") >= alpha_runs + 2,
               timeout_s=30)
    assert turns_of(sites, "alpha") <= alpha_turns + 1, "a drained site takes no new turn"
    no_overlap(sites)


def test_a_failing_ready_check_keeps_the_site_out_until_it_passes(sites, enqueue_cli, tmp_path):
    ready = (f"test -e {tmp_path}/ready-$ENQUEUE_SITE || "
             "{ echo \"control master for $ENQUEUE_SITE expired\"; echo second line; exit 255; }")
    (tmp_path / "ready-alpha").touch()
    (tmp_path / "ready-charlie").touch()
    for name in NAMES:
        sites.start(name, sleep_s=0.05, extra=["--ready", ready])
    sites.wait_runs(6)
    row = wait_until("bravo not ready in status", lambda: (lambda r: r if r["state"] == docs.NOT_READY and
                                                           r["message"] else None)(site_row(enqueue_cli, "bravo")))
    assert row["message"] == "not ready: control master for bravo expired", row
    assert "not ready: control master for bravo expired" in enqueue_cli("status").out
    assert turns_of(sites, "bravo") == 0
    assert "bravo" not in status(enqueue_cli)["rotation"]
    (tmp_path / "ready-bravo").touch()
    wait_until("bravo's turns", lambda: turns_of(sites, "bravo") >= 2)
    assert site_row(enqueue_cli, "bravo")["state"] in (docs.WAITING, docs.RUNNING)
    assert "not ready: the ready command exited with code 255" in sites.agents["bravo"].log()
    no_overlap(sites)


def test_the_between_command_gets_no_connection_settings_and_stops_with_the_agent(sites, enqueue_cli, tmp_path):
    printed = tmp_path / "between.env"
    (tmp_path / "hold-alpha").touch()
    line = f"env > {printed}; " + between_line(tmp_path)
    agent = sites.start("alpha", extra=["--between", line],
                        env={"ENQUEUE_COUCHDB_EXTRA": "loop-secret", "ENQUEUE_TEST_INHERITED": "kept"})
    wait_until("the between command", lambda: between_runs(tmp_path, "alpha") == 1)
    seen = printed.read_text()
    assert "ENQUEUE_COUCHDB" not in seen and "loop-secret" not in seen
    assert "ENQUEUE_TEST_INHERITED=kept" in seen.splitlines() and "ENQUEUE_SITE=alpha" in seen.splitlines()
    shell = int((tmp_path / "between-alpha.log").read_text().split()[1])
    assert os.getpgid(shell) == shell != os.getpgid(agent.proc.pid), "its own process group"
    wait_until("alpha between in status", lambda: site_row(enqueue_cli, "alpha")["state"] == docs.BETWEEN)
    agent.signal(signal.SIGTERM)
    assert agent.wait() == 128 + signal.SIGTERM
    assert not psutil.pid_exists(shell) or psutil.Process(shell).status() == psutil.STATUS_ZOMBIE
    assert "stopping the between command" in agent.log()
    assert site_row(enqueue_cli, "alpha")["state"] == docs.LEFT
