"""The order of the side commands outside a turn, and the state they make a site say (pure)."""

from __future__ import annotations

from enqueue.documents import BETWEEN, NOT_READY, RUNNING, WAITING, wants_turn
from enqueue.side_steps import BETWEEN_COMMAND, READY_COMMAND, SidePlan, SideSteps


def test_nothing_configured_means_waiting_and_nothing_due() -> None:
    side = SideSteps(SidePlan())
    assert not side.plan.any
    assert side.state() == WAITING and side.state_after_turn() == WAITING
    assert side.due(0.0) is None and side.next_due_at() is None


def test_between_runs_first_then_the_site_waits_and_again_after_every_turn() -> None:
    side = SideSteps(SidePlan(between="check-jobs"))
    assert side.state() == BETWEEN and side.due(0.0) == BETWEEN_COMMAND
    side.started(BETWEEN_COMMAND, 0.0)
    assert side.state() == BETWEEN and side.due(1.0) is None, "one side command at a time"
    side.ended(BETWEEN_COMMAND, 3, None)
    assert side.state() == WAITING and side.due(1000.0) is None, "without --between-every it runs once per wait"
    assert side.state_after_turn() == BETWEEN
    side.turn_ended()
    assert side.state() == BETWEEN and side.due(1001.0) == BETWEEN_COMMAND


def test_between_every_runs_it_again_while_waiting_measured_from_its_last_start() -> None:
    side = SideSteps(SidePlan(between="check-jobs", between_every_s=60.0))
    side.started(BETWEEN_COMMAND, 10.0)
    assert side.next_due_at() is None, "not while it runs"
    side.ended(BETWEEN_COMMAND, 0, None)
    assert side.next_due_at() == 70.0
    assert side.due(69.9) is None and side.state() == WAITING
    assert side.due(70.0) == BETWEEN_COMMAND


def test_ready_is_checked_after_between_and_again_at_its_interval_while_it_fails() -> None:
    side = SideSteps(SidePlan(between="check-jobs", ready="ssh -O check host", ready_every_s=30.0))
    side.started(BETWEEN_COMMAND, 0.0)
    assert side.due(0.0) is None
    side.ended(BETWEEN_COMMAND, 0, None)
    assert side.state() == NOT_READY and side.due(5.0) == READY_COMMAND
    side.started(READY_COMMAND, 5.0)
    side.ended(READY_COMMAND, 255, "Control socket connect(/tmp/cm): No such file or directory")
    assert side.state() == NOT_READY
    assert side.not_ready_line == "Control socket connect(/tmp/cm): No such file or directory"
    assert side.next_due_at() == 35.0 and side.due(34.0) is None and side.due(35.0) == READY_COMMAND
    side.started(READY_COMMAND, 35.0)
    side.ended(READY_COMMAND, 0, "Master running")
    assert side.state() == WAITING and side.not_ready_line is None and side.next_due_at() is None


def test_a_failed_check_without_output_says_its_exit_code() -> None:
    side = SideSteps(SidePlan(ready="false"))
    assert side.state() == NOT_READY and side.state_after_turn() == NOT_READY
    side.started(READY_COMMAND, 0.0)
    side.ended(READY_COMMAND, 1, None)
    assert side.not_ready_line == "exit code 1"


def test_a_between_run_owes_a_fresh_readiness_check() -> None:
    side = SideSteps(SidePlan(between="m", between_every_s=10.0, ready="r"))
    side.started(BETWEEN_COMMAND, 0.0)
    side.ended(BETWEEN_COMMAND, 0, None)
    side.started(READY_COMMAND, 1.0)
    side.ended(READY_COMMAND, 0, None)
    assert side.state() == WAITING
    assert side.due(10.0) == BETWEEN_COMMAND
    side.started(BETWEEN_COMMAND, 10.0)
    side.ended(BETWEEN_COMMAND, 0, None)
    assert side.state() == NOT_READY and side.due(10.5) == READY_COMMAND


def test_a_report_for_a_command_that_is_not_running_is_ignored() -> None:
    side = SideSteps(SidePlan(between="m", ready="r"))
    side.started(BETWEEN_COMMAND, 0.0)
    side.ended(READY_COMMAND, 0, None)
    assert side.running == BETWEEN_COMMAND and side.state() == BETWEEN


def test_only_waiting_or_running_with_repeat_asks_for_a_turn() -> None:
    assert wants_turn(WAITING, False) and wants_turn(RUNNING, True)
    for state in (BETWEEN, NOT_READY, "idle", "left", None):
        assert not wants_turn(state, True), state
    assert not wants_turn(RUNNING, False)
