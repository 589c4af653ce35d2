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
    assert report["fencing"]["distinct"] == 3 and report["fencing"]["started_twice"] == []
    assert "fencing tokens: 3 distinct in 3 starts, 0 started twice, 0 out of order" in summary(report)
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
        ([run("alpha", 1, 0, 1), run("bravo", 1, 1.5, 2)], "fencing token 1 started twice"),
        ([run("alpha", 1, 0, 1), run("bravo", 3, 1.5, 2), run("alpha", 2, 2.5, 3)], "went back"),
        ([run("alpha", 2, 0, 1), run("bravo", 1, 1.5, 2)], "went back"),
    ],
    ids=["duplicate", "regression", "lower-than-the-one-before"],
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


def test_a_turn_that_ran_must_not_read_as_not_started():
    h = history(run("alpha", 1, 0, 1), run("bravo", 2, 1.1, 2))
    raw = records(1) + records(2, site="bravo", how="not started")
    report = judge(h, [], leader(2), raw, LIMITS, 10 * S)
    assert any("turn(s) 2 ran, but their records read as 'not started'" in v for v in report["violations"])
    # A revoker's word that the turn had started, added to that record, is what a reader takes.
    raw[1]["revoker_report"] = {"leader": "charlie", "how": "revoked", "started_at": "2026-01-01 00:00:01"}
    report = judge(h, [], leader(2), raw, LIMITS, 10 * S)
    assert report["ok"], report["violations"]
    assert report["turns"]["with_revoker_report"] == 1 and "1 by revokers" in summary(report)


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


def test_a_token_started_twice_fails_and_names_the_fault_before_its_second_start():
    h = history(run("alpha", 1, 0, 1), run("bravo", 2, 1.1, 2), run("charlie", 3, 2.1, 3), run("delta", 4, 3.1, 4))
    # An admin deletes the leader doc and the numbering starts again: 1 and 2 are handed out a second time.
    h.runs += [run("echo", 1, 5, 6), run("alpha", 2, 6.1, 7)]
    h.runs[-2].pid, h.runs[-1].pid = 2001, 2002
    faults = [Fault("kill-leader", "alpha", 0.5 * S, 0.6 * S), Fault("delete-leader", "echo", 4.5 * S, 4.8 * S)]
    raw = records(1) + records(2, site="bravo") + records(3, site="charlie") + records(4, site="delta")
    report = judge(h, faults, leader(2), raw, LIMITS, 10 * S)
    assert not report["ok"]
    twice = report["fencing"]["started_twice"]
    assert [row["turn"] for row in twice] == [1, 2]
    assert [s["site"] for s in twice[0]["starts"]] == ["alpha", "echo"]
    assert twice[0]["after"].startswith("delete-leader at 4.50 s (echo)")
    # One reset: the numbering went back once (4 -> 1), then climbed again under the old tokens.
    assert [(row["turn"], row["previous"]) for row in report["fencing"]["went_back"]] == [(1, 4)]
    assert twice[1]["after"] == twice[0]["after"]
    assert report["fencing"]["leader_turn_below"] == {"leader_turn": 2, "highest_known": 4}
    text = summary(report)
    assert "fencing tokens: 4 distinct in 6 starts, 2 started twice, 1 out of order" in text
    assert any(v.startswith("fencing tokens 1-2 started twice (2 repeated starts; the first: 1 at alpha (0.00 s) "
                            "and again at echo (5.00 s)) (after delete-leader at 4.50 s (echo)")
               for v in report["violations"]), \
        report["violations"]
    assert sum("started twice" in v for v in report["violations"]) == 1
    # The records of the repeated turns name the first runners: one line, put down to the same fault.
    (misnamed,) = [v for v in report["violations"] if "its record names" in v]
    assert misnamed.startswith("turn 1 ran at echo but its record names alpha, turn 2 ran at alpha but its record "
                               "names bravo (after delete-leader at 4.50 s (echo)"), misnamed
    assert any("below turn 4 that ran or was recorded" in v for v in report["violations"])
    assert "FAILED" in text


def test_a_token_started_twice_at_the_same_site_fails_too():
    h = history(run("alpha", 1, 0, 1), run("alpha", 1, 1.5, 2))
    h.runs[1].pid = 77
    report = judge(h, [], leader(1), records(1), LIMITS, 10 * S)
    assert len(report["fencing"]["started_twice"]) == 1 and not report["ok"]


def test_an_overlap_names_the_fault_it_followed():
    h = clean()
    h.overlaps.append("site bravo turn 2 (pid 7) started while another command still ran")
    h.overlap_at_ns.append(int(1.1 * S))
    fault = Fault("stop-supervisor-partition", "alpha", start_ns=int(0.5 * S), heal_ns=int(0.9 * S))
    report = judge(h, [fault], leader(3), records(1, 3) + records(2, site="bravo"), LIMITS, 10 * S)
    assert report["overlap_detail"][0]["after"] == "stop-supervisor-partition at 0.50 s (alpha), healed 0.20 s before"
    assert any(v.startswith("overlap:") and "after stop-supervisor-partition" in v for v in report["violations"])


def test_a_turn_without_a_record_names_the_faults_around_it():
    h = history(run("alpha", 1, 0, 1), run("bravo", 3, 6, 7))
    lost = Fault("lost-answer-leader", "charlie", start_ns=2 * S, heal_ns=4 * S)
    far = Fault("partition", "alpha", start_ns=8 * S, heal_ns=9 * S)
    report = judge(h, [lost, far], leader(3, docs.RUNNING), records(1) + records(3, site="bravo"), LIMITS, 10 * S)
    assert report["turns"]["missing"] == [2]
    assert report["turns"]["missing_detail"] == [{"turn": 2, "around": ["lost-answer-leader at 2.00 s (charlie)"]}]
    assert any(v == "1 turn(s) without a record: 2 (around lost-answer-leader at 2.00 s (charlie))"
               for v in report["violations"]), report["violations"]


def test_a_turn_that_ran_above_the_leader_docs_turn_needs_a_record():
    h = history(run("alpha", 1, 0, 1), run("bravo", 2, 1.1, 2), run("alpha", 1, 3, 4))
    h.runs[-1].pid = 3000
    report = judge(h, [], leader(1, docs.RUNNING), records(1), LIMITS, 10 * S)
    assert report["turns"]["missing"] == [2]


def test_each_reset_of_the_numbering_is_put_down_to_its_own_fault():
    h = history(run("alpha", 1, 0, 1), run("bravo", 2, 1.1, 2), run("charlie", 3, 2.1, 3))
    h.runs += [run("alpha", 1, 5, 6), run("bravo", 2, 6.1, 7), run("charlie", 1, 9, 9.5), run("alpha", 2, 9.6, 10)]
    for i, r in enumerate(h.runs):
        r.pid = 100 + i
    faults = [Fault("delete-leader", "alpha", 4 * S, 4.5 * S), Fault("delete-leader", "charlie", 8 * S, 8.5 * S)]
    report = judge(h, faults, leader(2, docs.RUNNING), records(1) + records(2, site="bravo") + records(3, site="charlie"),
                   LIMITS, 12 * S)
    lines = [v for v in report["violations"] if "started twice" in v]
    assert len(lines) == 2, report["violations"]
    assert "(after delete-leader at 4.00 s (alpha)" in lines[0] and "(after delete-leader at 8.00 s (charlie)" in lines[1]
    assert [s["after"] is None for s in report["fencing"]["started_twice"][0]["starts"]] == [True, False, False]
    assert len(report["fencing"]["went_back"]) == 2


def test_a_command_killed_without_an_end_line_that_held_the_next_ones_lock_ran_until_that_start():
    # A frozen fence: alpha's long command outlived the fault that began after it and was SIGKILLed at 9 s;
    # bravo found its lock held at 4 s and started when the kernel freed it.
    h = history(run("alpha", 1, 0, None), run("bravo", 2, 9, 10))
    h.runs[1].overlap_ns = 4 * S
    h.overlaps.append("site bravo turn 2 (pid 1002) started while another command still ran")
    h.overlap_at_ns.append(4 * S)
    fault = Fault("stop-supervisor-partition", "alpha", start_ns=1 * S, heal_ns=8 * S)
    report = judge(h, [fault], leader(2), records(1) + records(2, site="bravo"), LIMITS, 12 * S)
    assert report["commands"]["killed_without_end_line"] == 1
    assert report["faults"][0]["stall_s"] == 0.0  # busy all along: no stall, an overlap
    assert len(report["overlaps"]) == 1 and not report["ok"]
    assert report["overlap_detail"][0]["waited_s"] == 5.0


def test_the_numbers_a_repair_skips_after_a_deletion_need_no_record_but_a_turn_that_ran_does():
    # The repair resumes at the deleted doc's revision count (docs/PROTOCOL.md §3.11): 4 to 8 were never granted.
    h = history(run("alpha", 1, 0, 1), run("bravo", 2, 1.1, 2), run("charlie", 3, 2.1, 3),
                run("alpha", 9, 6, 7), run("bravo", 10, 7.1, 8))
    faults = [Fault("delete-leader", "charlie", int(3.5 * S), int(3.8 * S), turn=3)]
    raw = records(1, 9) + records(2, 10, site="bravo") + records(3, site="charlie")
    report = judge(h, faults, leader(10), raw, LIMITS, 10 * S)
    assert report["turns"]["missing"] == [] and report["ok"], report["violations"]
    assert report["turns"]["skipped_by_repairs"] == 5
    assert "(5 skipped by repairs)" in summary(report)
    report = judge(h, faults, leader(10), records(1, 9) + records(2, site="bravo") + records(3, site="charlie"),
                   LIMITS, 10 * S)
    assert report["turns"]["missing"] == [10]
