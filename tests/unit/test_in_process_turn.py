"""The runner of an in-process turn: what it reports to the agent, and when its turn counts as lost."""

from __future__ import annotations

import threading
import time

import pytest

from enqueue.errors import TurnLost
from enqueue.events import CommandEnded, CommandStarted, StartFailed, StopRequested
from enqueue.in_process_turn import BlockRunner

GRACE = 0.3


def runner_with_events() -> tuple[BlockRunner, list]:
    events: list = []
    return BlockRunner("alpha", GRACE).attach(events.append), events


def test_a_started_turn_is_handed_to_the_waiting_caller_and_its_end_reported() -> None:
    runner, events = runner_with_events()
    runner.start(7, ["(in-process block)"], {}, time.monotonic() + 60)
    held = runner.wait_for_turn()
    assert held is not None and (held.site, held.number) == ("alpha", 7)
    held.check()
    runner.end(0)
    runner.close()
    assert events[0] == CommandStarted(7, None)
    ended = events[1]
    assert isinstance(ended, CommandEnded) and (ended.turn, ended.exit_code, ended.how) == (7, 0, "exited")
    assert not held.lost.is_set()


def test_nothing_starts_once_the_leases_sigterm_moment_has_passed() -> None:
    runner, events = runner_with_events()
    runner.start(7, ["x"], {}, time.monotonic() + GRACE / 2)
    runner.close()
    assert len(events) == 1 and isinstance(events[0], StartFailed) and events[0].how == "fenced"
    assert runner.wait_for_turn() is None


def test_the_sigterm_moment_passing_without_renewal_loses_the_turn_and_the_end_says_fenced() -> None:
    runner, events = runner_with_events()
    start = time.monotonic()
    runner.start(7, ["x"], {}, start + GRACE + 0.5)
    held = runner.wait_for_turn()
    assert held is not None
    assert held.lost.wait(timeout=10)
    assert time.monotonic() >= start + 0.5  # never before the moment the supervisor would send SIGTERM
    assert held.reason == "fenced"
    with pytest.raises(TurnLost, match=r"turn 7 of site alpha is no longer this site's \(fenced\)"):
        held.check()
    runner.stop("revoked")  # a later cause does not change the first
    runner.end(1, "the block raised TurnLost")
    runner.close()
    ended = events[-1]
    assert (ended.how, ended.reason, ended.exit_code, ended.error) == ("fenced", None, 1, "the block raised TurnLost")


def test_a_renewal_moves_the_sigterm_moment_and_a_stop_loses_the_turn_with_its_reason() -> None:
    runner, events = runner_with_events()
    runner.start(7, ["x"], {}, time.monotonic() + GRACE + 0.3)
    runner.extend(time.monotonic() + 600)
    held = runner.wait_for_turn()
    assert held is not None
    assert not held.lost.wait(timeout=0.6)  # the first moment has passed: the renewal kept the turn
    runner.stop("skipped")
    assert held.lost.is_set() and held.reason == "skipped"
    runner.end(0)
    runner.close()
    ended = events[-1]
    assert (ended.how, ended.reason, ended.exit_code) == ("stopped", "skipped", 0)


def test_the_agent_ending_while_the_block_runs_loses_the_turn() -> None:
    runner, events = runner_with_events()
    runner.start(7, ["x"], {}, time.monotonic() + 600)
    held = runner.wait_for_turn()
    runner.close()
    assert held is not None and held.lost.is_set() and held.reason == "agent-gone"


def test_a_caller_done_before_the_turn_began_gets_no_turn_started_later() -> None:
    runner = BlockRunner("alpha", GRACE)
    runner.interrupt(2)  # asked before the driver attached: delivered on attaching
    events: list = []
    runner.attach(events.append)
    runner.end(1, "the caller stopped waiting")
    runner.start(7, ["x"], {}, time.monotonic() + 600)
    runner.close()
    assert events[0] == StopRequested(2)
    assert isinstance(events[1], StartFailed) and events[1].turn == 7


def test_a_caller_waiting_is_woken_when_the_agent_ends_without_a_turn() -> None:
    runner, _ = runner_with_events()
    got: list = []
    waiter = threading.Thread(target=lambda: got.append(runner.wait_for_turn()))
    waiter.start()
    runner.agent_ended()
    waiter.join(timeout=10)
    assert not waiter.is_alive() and got == [None]
