"""The short chaos run: every default kind of fault once, and the new kinds today's agent
passes (a heartbeat's or the feed's answer lost, the supervisor frozen alone), judged by the verdict.

``scripts/chaos.py`` runs as a subprocess with short timings (heartbeat
0.5 s, stale 2.5 s) and its own embedded server on disk. The stall bound
carries a margin of 2.5 s on top of stale + delay: it has to absorb agent
and command start-up on a busy CI machine, not protocol delays. Each
invariant is a test of its own, so a failure names the invariant.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, Iterator

import pytest

REPO = Path(__file__).resolve().parents[2]
KINDS = {"kill-leader", "kill-runner", "kill-supervisor", "stop-agent", "restart-server", "partition", "clock-offset",
         "slow-server", "lost-answer-heartbeat", "lost-answer-feed", "stop-supervisor"}


def _run(argv: list, report_path: Path) -> Dict[str, Any]:
    """Run the chaos harness; its JSON report, with its exit code and output added."""
    result = subprocess.run(argv, capture_output=True, text=True, timeout=300, cwd=str(REPO))
    assert report_path.exists(), f"no report (exit {result.returncode}):\n{result.stdout}\n{result.stderr}"
    report = json.loads(report_path.read_text())
    report["_exit"] = result.returncode
    report["_output"] = result.stdout + result.stderr
    return report


@pytest.fixture(scope="module")
def chaos(tmp_path_factory) -> Iterator[Dict[str, Any]]:
    workdir = tmp_path_factory.mktemp("chaos")
    report_path = workdir / "report.json"
    argv = [sys.executable, str(REPO / "scripts" / "chaos.py"), "--seed", "7", "--duration", "15",
            "--agents", "4", "--delay", "0.5", "--stale", "2.5", "--margin", "2.5", "--gap", "0.3,1.0",
            "--kill-after-handoff", "1", "--faults", ",".join(sorted(KINDS)), "--workdir", str(workdir / "run"),
            "--report", str(report_path), "--quiet"]
    report = _run(argv, report_path)
    yield report


def other_violations(report: Dict[str, Any], *about: str) -> list:
    return [v for v in report["violations"] if any(a in v for a in about)]


def test_the_exit_status_follows_the_verdict(chaos):
    assert chaos["_exit"] == (0 if chaos["ok"] else 1), chaos["_output"]
    assert ("PASSED" if chaos["ok"] else "FAILED") in chaos["_output"]


def test_every_kind_of_fault_was_injected(chaos):
    assert {f["kind"] for f in chaos["faults"]} == KINDS, chaos["_output"]


def test_no_two_commands_ever_ran_at_once(chaos):
    assert chaos["overlaps"] == [] and other_violations(chaos, "overlap") == [], chaos["_output"]


def test_every_command_ran_under_its_own_increasing_turn(chaos):
    assert other_violations(chaos, "started twice", "went back", "without a turn number") == [], chaos["_output"]
    assert chaos["fencing"]["started_twice"] == [] and chaos["fencing"]["went_back"] == [], chaos["_output"]


def test_progress_resumed_within_the_bound_after_every_fault(chaos):
    assert other_violations(chaos, "stalled", "no command started after") == [], chaos["_output"]
    assert all(f["within_bound"] is not False for f in chaos["faults"])


def test_no_agent_crashed_and_every_document_parses(chaos):
    assert chaos["agent_problems"] == [], chaos["_output"]
    assert other_violations(chaos, "does not parse", "names", "holds turn") == [], chaos["_output"]


def test_turns_were_granted_run_and_recorded(chaos):
    turns = chaos["turns"]
    assert chaos["commands"]["started"] >= 15
    assert turns["granted"] >= chaos["commands"]["started"]
    assert turns["completed"] > 0 and turns["revoked"] > 0
    assert sum(turns["by_how"].values()) == turns["recorded"]
    assert len(chaos["commands"]["per_site"]) == 4


def test_every_turn_that_is_over_is_recorded(chaos):
    assert chaos["turns"]["missing"] == [], chaos["_output"]


@pytest.fixture(scope="module")
def site_accounts(tmp_path_factory) -> Iterator[Dict[str, Any]]:
    """A short run under site accounts: the runner killed, then the leader doc deleted and rebuilt by the admin."""
    workdir = tmp_path_factory.mktemp("chaos-accounts")
    report_path = workdir / "report.json"
    argv = [sys.executable, str(REPO / "scripts" / "chaos.py"), "--site-accounts", "--seed", "11", "--duration", "1",
            "--agents", "3", "--delay", "0.5", "--stale", "2.5", "--margin", "2.5", "--gap", "0.3,1.0",
            "--faults", "delete-leader,kill-runner", "--workdir", str(workdir / "run"),
            "--report", str(report_path), "--quiet"]
    report = _run(argv, report_path)
    report["_workdir"] = workdir / "run"
    yield report


def test_under_site_accounts_the_admin_rebuilds_every_deleted_leader_doc_and_the_verdict_holds(site_accounts):
    report = site_accounts
    assert report["_exit"] == 0 and report["ok"], report["_output"]
    deletions = [f for f in report["faults"] if f["kind"] == "delete-leader"]
    assert deletions and report["repairs"]["run"] == len(deletions) == report["repairs"]["rebuilt_by_admin"]
    for fault in deletions:
        repair = fault["repair"]
        assert repair["rebuild_by"].startswith("admin:") and repair["repaired_from"], repair
        assert repair["said_in_log"], repair  # written when its rebuild is refused, before the admin's
        assert fault["bound_s"] == report["limits"]["bound_s"] + 2 * 0.5 + 2.5
        output = Path(repair["output_file"]).read_text()
        assert f"rebuilt leader doc enqueue_leader at turn {repair['rebuilt_turn']}" in output, output
    assert report["overlaps"] == [] and report["turns"]["missing"] == [], report["_output"]


def test_under_site_accounts_each_agent_logs_in_as_its_site_with_its_password_in_a_private_file(site_accounts):
    config = site_accounts["_workdir"] / "config"
    for site in ("alpha", "bravo", "charlie"):
        text = (config / f"{site}.ini").read_text()
        assert f"username = {site}\n" in text and "password =" not in text, text
        assert (config / f"{site}.password").stat().st_mode & 0o777 == 0o600
