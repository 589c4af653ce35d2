"""The admin of a site-accounts chaos run: its reaction, the bound it adds, and what its repair must show."""

from __future__ import annotations

import importlib.util
import random
import sys
from pathlib import Path
from typing import Any, Dict, List

import pytest

from enqueue import documents as docs
from tools.chaos import admin
from tools.chaos.checker import Report, Run
from tools.chaos.verdict import Fault, Limits, judge, summary

S = 1_000_000_000
LIMITS = Limits(heartbeat_delay_s=1.0, heartbeat_stale_s=4.0, margin_s=1.0)  # bound 6 s, allowance 2 + 4 s
REPO = Path(__file__).resolve().parents[3]


def good_repair(**changes: Any) -> admin.Repair:
    fields: Dict[str, Any] = dict(reaction_s=1.5, output_file="repair-1.log", exit_code=0, rebuilt_turn=24,
                                  rebuild_by="admin:admin@host", repaired_from=True, missing_s=6.0,
                                  said_in_heartbeat=["alpha"], said_in_log=["alpha", "bravo"])
    fields.update(changes)
    return admin.Repair(**fields)


def test_the_reaction_stays_within_two_heartbeat_delays_and_the_allowance_adds_it_to_the_repairs_wait():
    rng = random.Random(5)
    drawn = [admin.reaction_s(rng, 0.5) for _ in range(200)]
    assert 0.0 <= min(drawn) and max(drawn) <= 1.0 and max(drawn) > 0.9
    assert admin.allowance_s(0.5, 2.5) == 1.0 + 2.5


@pytest.mark.parametrize("output, turn", [
    ("leader doc enqueue_leader is missing (revision 24-ab): waiting 4 s for any running turn's lease to run out\n"
     "rebuilt leader doc enqueue_leader at turn 24 (nobody leads; the agents elect a leader)\n", 24),
    ("leader doc enqueue_leader parses (turn 30): nothing to repair\n", None),
    ("", None),
])
def test_the_rebuilt_turn_is_read_from_the_repairs_output(output: str, turn: Any):
    assert admin.rebuilt_turn(output) == turn


def test_the_repair_runs_enqueue_repair_on_the_admins_config():
    assert admin.repair_argv("/x/admin.ini")[1:] == ["-m", "enqueue", "repair", "/x/admin.ini"]


@pytest.mark.parametrize("changes, needle", [
    ({}, None),
    ({"exit_code": 4}, "exited with code 4"),
    ({"exit_code": None}, "did not finish"),
    ({"rebuilt_turn": None}, "somebody else rebuilt it"),
    ({"rebuild_by": "bravo"}, "names bravo"),
    ({"repaired_from": False}, "without repaired_from"),
    ({"said_in_heartbeat": [], "said_in_log": [], "missing_s": 7.5}, "no site said so"),
    # Missing no longer than the agents need to try and say so: saying nothing is no finding.
    ({"said_in_heartbeat": [], "said_in_log": [], "missing_s": 6.5}, None),
    ({"said_in_heartbeat": [], "missing_s": 20.0}, None),
])
def test_a_repair_is_a_finding_unless_the_admin_rebuilt_it_and_the_sites_said_they_waited(changes, needle):
    found = admin.violations(good_repair(**changes), "delete-leader at 3 s (alpha)", 1.0, 4.0, 1.0)
    if needle is None:
        assert found == []
    else:
        assert len(found) == 1 and needle in found[0] and found[0].startswith("delete-leader at 3 s (alpha)")


def history(*runs: Run) -> Report:
    return Report(runs=list(runs))


def run(site: str, turn: int, start_s: float, end_s: float) -> Run:
    return Run(site=site, turn=str(turn), pid=1000 + turn, start_ns=int(start_s * S), end_ns=int(end_s * S),
               how="exited")


def records(*turns: int) -> List[Dict[str, Any]]:
    return [docs.render_turn_record(docs.TurnRecord(turn=t, site="alpha", how="exited")) for t in turns]


def final_leader(turn: int) -> Dict[str, Any]:
    return docs.render_leader(docs.LeaderDoc(doc_id="enqueue_leader", turn=turn, status=docs.DONE,
                                             running="alpha", leader="alpha", rev="30-x"))


def deletion(**fields: Any) -> Fault:
    return Fault("delete-leader", "bravo", start_ns=2 * S, heal_ns=3 * S, from_heal=True, turn=1, **fields)


def test_a_deletion_the_admin_repairs_may_stall_by_the_allowance_more_and_no_longer():
    # Idle from 1 s to 14 s: 11 s from the heal at 3 s; bound 6 s, plus 2 x 1 + 4 s while the admin repairs.
    h = history(run("alpha", 1, 0, 1), run("alpha", 25, 14, 15))
    extra = admin.allowance_s(1.0, 4.0)
    within = judge(h, [deletion(extra_bound_s=extra, repair=good_repair())], final_leader(25), records(1, 25),
                   LIMITS, 20 * S)
    assert within["ok"], within["violations"]
    assert within["faults"][0]["bound_s"] == 12.0 and within["faults"][0]["within_bound"] is True
    assert within["repairs"] == {"run": 1, "rebuilt_by_admin": 1, "said_in_heartbeat": 1, "said_in_log": 1,
                                 "longest_missing_s": 6.0}
    text = summary(within)
    assert "stall bound 6 s (12 s after a deletion the admin repairs)" in text
    assert "repairs by the admin: 1 of 1 rebuilt the leader doc" in text
    alone = judge(h, [deletion()], final_leader(25), records(1, 25), LIMITS, 20 * S)
    assert any("stalled 11.0 s, bound 6 s" in v for v in alone["violations"]), alone["violations"]
    late = judge(history(run("alpha", 1, 0, 1), run("alpha", 25, 16, 17)),
                 [deletion(extra_bound_s=extra, repair=good_repair())], final_leader(25), records(1, 25), LIMITS,
                 20 * S)
    assert any("stalled 13.0 s, bound 12 s" in v for v in late["violations"]), late["violations"]


def test_a_repair_that_an_agent_beat_fails_the_verdict():
    h = history(run("alpha", 1, 0, 1), run("alpha", 25, 5, 6))
    report = judge(h, [deletion(extra_bound_s=6.0, repair=good_repair(rebuilt_turn=None))], final_leader(25),
                   records(1, 25), LIMITS, 20 * S)
    assert not report["ok"] and report["repairs"]["rebuilt_by_admin"] == 0
    assert any("somebody else rebuilt it" in v for v in report["violations"])


def _chaos_script() -> Any:
    spec = importlib.util.spec_from_file_location("chaos_script", REPO / "scripts" / "chaos.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    return module


def test_site_accounts_is_an_option_whose_help_says_what_it_adds_to_the_bound(capsys):
    chaos = _chaos_script()
    assert chaos.parse_args(["--site-accounts"]).site_accounts is True
    assert chaos.parse_args([]).site_accounts is False
    with pytest.raises(SystemExit):
        chaos.parse_args(["--help"])
    shown = " ".join(capsys.readouterr().out.split())
    assert "'enqueue repair'" in shown and "2 x delay + stale" in shown


def test_a_password_in_an_agents_or_the_admins_log_is_a_finding(tmp_path):
    chaos = _chaos_script()
    harness = chaos.Harness(chaos.parse_args(["--site-accounts", "--agents", "2"]), None, tmp_path)
    for i, name in enumerate(chaos.site_names(2), start=1):
        harness.sites[name] = chaos.Site(name, i)
        (tmp_path / "config" / f"{name}.password").write_text(f"secret-of-{name}\n")
    (tmp_path / "admin").mkdir()
    (tmp_path / "admin" / "admin.password").write_text("secret-of-admin\n")
    (tmp_path / "admin" / "repair-1.log").write_text("rebuilt leader doc enqueue_leader at turn 3\n")
    (tmp_path / "agents" / "alpha.log").write_text("registered as site alpha\n")
    (tmp_path / "agents" / "bravo.log").write_text("registered as site bravo\n")
    harness.scan_logs()
    assert harness.problems == []
    (tmp_path / "agents" / "bravo.log").write_text("connecting with secret-of-bravo\n")
    (tmp_path / "admin" / "repair-1.log").write_text("as admin:secret-of-admin\n")
    harness.scan_logs()
    assert harness.problems == ["repair-1.log: holds the password of the account admin",
                                "bravo.log: holds the password of the account bravo"]
