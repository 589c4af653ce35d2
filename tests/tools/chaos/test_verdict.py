"""The chaos verdict: each invariant fails on the history that breaks it, and only then."""

from __future__ import annotations

from typing import Any, Dict, List, Optional

import pytest

from enqueue import documents as docs
from tools.chaos.verdict import Fault, Limits, judge, summary
from tools.chaos.checker import Report, Run

S = 1_000_000_000  # one second in ns
LIMITS = Limits(heartbeat_delay_s=1.0, heartbeat_stale_s=4.0, margin_s=1.0)  # bound 6 s


def run(site: str, turn: int, start_s: float, end_s: Optional[float]) -> Run:
    return Run(site=site, turn=str(turn), pid=1000 + turn, start_ns=int(start_s * S),
               end_ns=None if end_s is None else int(end_s * S), how="exited")


def history(*runs: Run, overlaps: List[str] = ()) -> Report:
    report = Report(runs=list(runs), overlaps=list(overlaps))
    ordered = sorted(report.runs, key=lambda r: r.start_ns)
    report.gaps_s = [(b.start_ns - a.end_ns) / S for a, b in zip(ordered, ordered[1:]) if a.end_ns is not None]
    return report


def leader(turn: int, status: str = docs.DONE) -> Dict[str, Any]:
    return docs.render_leader(docs.LeaderDoc(doc_id="enqueue_leader", turn=turn, status=status,
                                             running="alpha", leader="alpha", rev="9-x"))


def records(*turns: int, site: str = "alpha", how: str = "exited") -> List[Dict[str, Any]]:
    return [docs.render_turn_record(docs.TurnRecord(turn=t, site=site, how=how)) for t in turns]


def clean() -> Report:
    return history(run("alpha", 1, 0, 1), run("bravo", 2, 1.1, 2), run("alpha", 3, 2.1, 3))


def test_a_clean_run_passes_and_counts():
    report = judge(clean(), [], leader(3), records(1, 3) + records(2, site="bravo"), LIMITS, 10 * S)
    assert report["ok"], report["violations"]
    assert report["turns"]["granted"] == 3 and report["turns"]["recorded"] == 3
    assert report["turns"]["completed"] == 3 and report["turns"]["missing"] == []
    assert report["commands"]["per_site"] == {"alpha": 2, "bravo": 1}
    assert "PASSED" in summary(report)


def test_an_overlap_fails():
    h = clean()
    h.overlaps.append("site bravo turn 2 (pid 7) started while another command still ran")
    report = judge(h, [], leader(3), records(1, 3) + records(2, site="bravo"), LIMITS, 10 * S)
    assert not report["ok"] and any(v.startswith("overlap") for v in report["violations"])
    assert "FAILED" in summary(report)


@pytest.mark.parametrize(
    "runs, needle",
    [
        ([run("alpha", 1, 0, 1), run("bravo", 1, 1.5, 2)], "ran twice"),
        ([run("alpha", 2, 0, 1), run("bravo", 1, 1.5, 2)], "went back"),
    ],
    ids=["duplicate", "regression"],
)
def test_fencing_tokens_must_be_unique_and_increase(runs, needle):
    report = judge(history(*runs), [], leader(2), records(1, 2), LIMITS, 10 * S)
    assert any(needle in v for v in report["violations"]), report["violations"]


@pytest.mark.parametrize(
    "status, recorded, missing",
    [
        (docs.DONE, (1, 2), [3]),           # the last turn is done: it needs a record too
        (docs.RUNNING, (1, 2), []),         # the last turn still runs: no record expected yet
        (docs.GRANTED, (1,), [2]),
        (docs.DONE, (), [1, 2, 3]),
    ],
)
def test_every_turn_that_is_over_has_a_record(status, recorded, missing):
    report = judge(history(), [], leader(3, status), records(*recorded), LIMITS, 10 * S)
    assert report["turns"]["missing"] == missing
    assert report["ok"] == (missing == [])


def test_a_record_that_names_another_site_or_does_not_parse_fails():
    raw = records(1, site="bravo") + [{"_id": docs.turn_record_id(2), "turn": "two"}]
    report = judge(history(run("alpha", 1, 0, 1)), [], leader(2, docs.RUNNING), raw, LIMITS, 10 * S)
    assert any("its record names bravo" in v for v in report["violations"])
    assert any("does not parse" in v for v in report["violations"])


def test_a_leader_doc_that_does_not_parse_at_the_end_fails():
    report = judge(clean(), [], {"_id": "enqueue_leader", "turn": "x"}, records(1, 2, 3), LIMITS, 10 * S)
    assert any("leader doc does not parse" in v for v in report["violations"])


def test_a_stall_is_the_longest_idle_stretch_from_the_fault_until_a_start_after_its_heal():
    h = history(run("alpha", 1, 0, 1), run("bravo", 2, 4, 5), run("charlie", 3, 5.5, 6))
    fault = Fault("stop-agent", "alpha", start_ns=int(0.5 * S), heal_ns=int(4.5 * S))
    report = judge(h, [fault], leader(3), records(1, 3) + records(2, site="bravo"), LIMITS, 10 * S)
    row = report["faults"][0]
    # Idle 1 -> 4 (3 s) and 5 -> 5.5 (0.5 s), both before the first start after the heal (5.5).
    assert row["stall_s"] == 3.0 and row["resumed_after_heal_s"] == 1.0 and row["within_bound"] is True


def test_a_stall_over_the_bound_fails():
    h = history(run("alpha", 1, 0, 1), run("bravo", 2, 8, 9))
    fault = Fault("partition", "alpha", start_ns=int(0.5 * S), heal_ns=int(2 * S))
    report = judge(h, [fault], leader(2), records(1) + records(2, site="bravo"), LIMITS, 20 * S)
    assert report["faults"][0]["stall_s"] == 7.0
    assert any("stalled 7.0 s, bound 6 s" in v for v in report["violations"])


def test_a_whole_system_outage_counts_from_its_heal():
    h = history(run("alpha", 1, 0, 1), run("bravo", 2, 12, 13))
    outage = Fault("restart-server", None, start_ns=1 * S, heal_ns=10 * S, from_heal=True)
    report = judge(h, [outage], leader(2), records(1) + records(2, site="bravo"), LIMITS, 20 * S)
    row = report["faults"][0]
    assert row["stall_s"] == 2.0 and row["stall_from_start_s"] == 11.0 and report["ok"], report["violations"]


def test_no_start_after_a_heal_fails_once_the_bound_has_passed_and_is_unjudged_before():
    h = history(run("alpha", 1, 0, 1))
    fault = Fault("kill-leader", "alpha", start_ns=2 * S, heal_ns=2 * S)
    late = judge(h, [fault], leader(1), records(1), LIMITS, 20 * S)
    assert any("no command started after it healed" in v for v in late["violations"])
    early = judge(h, [fault], leader(1), records(1), LIMITS, 3 * S)
    assert early["faults"][0]["within_bound"] is None and early["ok"]


def test_a_command_killed_without_an_end_line_ends_at_the_fault_that_killed_it():
    h = history(run("alpha", 1, 0, None), run("bravo", 2, 5, 6))
    fault = Fault("kill-supervisor", "alpha", start_ns=3 * S, heal_ns=3 * S)
    report = judge(h, [fault], leader(2), records(1) + records(2, site="bravo"), LIMITS, 10 * S)
    assert report["commands"]["killed_without_end_line"] == 1
    assert report["faults"][0]["stall_s"] == 2.0


def test_agent_problems_are_violations():
    report = judge(clean(), [], leader(3), records(1, 3) + records(2, site="bravo"), LIMITS, 10 * S,
                   agent_problems=["agent bravo exited on its own with code 1"])
    assert report["violations"] == ["agent bravo exited on its own with code 1"]


def test_missing_turns_are_shown_as_ranges():
    report = judge(history(), [], leader(9), records(2, 6), LIMITS, 10 * S)
    assert any("1, 3-5, 7-9" in v for v in report["violations"]), report["violations"]
