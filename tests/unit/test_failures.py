"""Failed turns in a row: what counts, what ends the run, and the registry entry of a site that drained itself."""

from __future__ import annotations

import pytest

from enqueue import documents as docs
from enqueue.failures import (FAILED_IN_A_ROW, LAST_FAILED_EXIT_CODE, SELF_DRAIN_FIELDS, FailureRun, after_turn,
                              drain_due, drain_reason, self_drained_entry)
from enqueue.outcomes import Outcome, after_revocation

THREE = FailureRun(3, 2, 41)


@pytest.mark.parametrize("how, code", [
    (Outcome.EXITED, 1), (Outcome.EXITED, 137), (Outcome.FAILED_TO_START, 127), (Outcome.FAILED_TO_START, 126),
])
def test_a_command_that_failed_by_itself_counts(how, code) -> None:
    assert after_turn(THREE, how, code, 42) == FailureRun(4, code, 42)


def test_a_command_that_exited_0_ends_the_run() -> None:
    assert after_turn(THREE, Outcome.EXITED, 0, 42) == FailureRun()


@pytest.mark.parametrize("how, code", [
    (Outcome.FENCED, 143), (Outcome.REVOKED, 143), (Outcome.SKIPPED, 143), (Outcome.STOPPED, 130),
    (Outcome.NOT_STARTED, None), (Outcome.ABANDONED, None), (Outcome.SUPERVISOR_DIED, None),
    (Outcome.FAILED_TO_START, None),  # refused for want of lease time: nothing about the command
    (after_revocation(Outcome.EXITED), 1), (after_revocation(Outcome.EXITED), 0),
])
def test_endings_about_the_site_or_an_operator_neither_count_nor_end_the_run(how, code) -> None:
    assert after_turn(THREE, how, code, 42) == THREE


def test_the_drain_is_due_once_the_run_reaches_the_limit_and_never_without_one() -> None:
    assert not drain_due(FailureRun(2, 1, 5), 3)
    assert drain_due(FailureRun(3, 1, 5), 3) and drain_due(FailureRun(4, 1, 5), 3)
    assert not drain_due(FailureRun(100, 1, 5), None)


def test_the_drained_entry_keeps_every_other_field_and_says_why() -> None:
    entry = {"heartbeat_doc": docs.heartbeat_id("bravo"), "drained": False, "added_at": "then", "note": "admin's"}
    drained = self_drained_entry(entry, "bravo", THREE, "now")
    assert drained == dict(entry, drained=True, drained_by="bravo", drained_at="now", drained_exit_code=2,
                           drained_failures=3, drained_reason="its command failed 3 turns in a row "
                                                              "(last: turn 41, exit code 2)")
    assert set(drained) - set(entry) <= set(SELF_DRAIN_FIELDS)
    assert entry["drained"] is False  # not changed in place


def test_the_reason_without_an_exit_code_or_a_turn() -> None:
    assert drain_reason(FailureRun(2)) == "its command failed 2 turns in a row (last: no exit code)"


def test_the_run_is_read_back_from_the_heartbeat_under_the_names_the_agent_writes() -> None:
    raw = dict(docs.render_heartbeat(docs.Heartbeat(site="bravo")), **{FAILED_IN_A_ROW: 2, LAST_FAILED_EXIT_CODE: 9})
    hb, problems = docs.parse_heartbeat(raw, "bravo")
    assert hb is not None and (hb.failed_in_a_row, hb.last_failed_exit_code) == (2, 9) and problems == []
    old, _ = docs.parse_heartbeat(docs.render_heartbeat(docs.Heartbeat(site="bravo")), "bravo")
    assert old is not None and (old.failed_in_a_row, old.last_failed_exit_code) == (0, None)
