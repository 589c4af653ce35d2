"""The fence of one turn's command: when SIGTERM and SIGKILL are due (docs/PROTOCOL.md §3.6)."""

from __future__ import annotations

import signal

from enqueue.fenced_turn import FencedTurn, past_sigterm_moment

GRACE = 2.0


def turn_until(deadline: float) -> FencedTurn:
    return FencedTurn(turn=7, pid=4242, started_at=0.0, deadline=deadline, grace=GRACE)


def test_sigterm_is_due_a_grace_before_the_deadline_and_sigkill_at_it() -> None:
    turn = turn_until(10.0)
    assert turn.next_due() == 8.0
    assert turn.due_signals(7.9) == []
    assert turn.due_signals(8.0) == [signal.SIGTERM]
    assert turn.next_due() == 10.0
    assert turn.due_signals(9.0) == []
    assert turn.due_signals(10.0) == [signal.SIGKILL]
    assert turn.due_signals(11.0) == []
    assert turn.next_due() is None
    assert turn.how == "fenced"


def test_both_signals_fall_due_together_in_order() -> None:
    assert turn_until(10.0).due_signals(12.0) == [signal.SIGTERM, signal.SIGKILL]


def test_extend_moves_the_deadline_only_later_and_only_before_the_sigterm_moment() -> None:
    turn = turn_until(10.0)
    turn.extend(9.0, now=1.0)
    assert (turn.term_at, turn.kill_at) == (8.0, 10.0)
    turn.extend(20.0, now=1.0)
    assert (turn.term_at, turn.kill_at) == (18.0, 20.0)
    turn.extend(30.0, now=18.0)  # the SIGTERM moment has come: the fence is final
    assert (turn.term_at, turn.kill_at) == (18.0, 20.0)


def test_extend_after_sigterm_was_sent_is_ignored() -> None:
    turn = turn_until(10.0)
    turn.due_signals(8.5)
    turn.extend(30.0, now=0.0)
    assert turn.kill_at == 10.0


def test_stop_makes_sigterm_due_now_and_sigkill_a_grace_later_but_no_later_than_the_deadline() -> None:
    turn = turn_until(10.0)
    turn.stop("stopped", "revoked", now=3.0)
    assert (turn.term_at, turn.kill_at) == (3.0, 5.0)
    late = turn_until(10.0)
    late.stop("stopped", "revoked", now=9.0)
    assert late.kill_at == 10.0


def test_the_first_cause_to_end_a_turn_is_kept() -> None:
    turn = turn_until(10.0)
    turn.stop("agent-gone", None, now=3.0)
    turn.stop("stopped", "shutdown", now=3.5)
    assert turn.due_signals(3.5) == [signal.SIGTERM]
    assert (turn.how, turn.reason) == ("agent-gone", None)


def test_an_exited_command_gets_a_grace_to_drain_and_no_more_signals() -> None:
    turn = turn_until(10.0)
    turn.exited(0, now=4.0)
    assert turn.next_due() == 4.0 + GRACE
    assert turn.due_signals(20.0) == []
    turn.stop("stopped", "revoked", now=5.0)
    turn.extend(30.0, now=5.0)
    assert (turn.how, turn.kill_at) == (None, 10.0)


def test_a_start_is_past_its_sigterm_moment_from_deadline_minus_grace_on() -> None:
    assert not past_sigterm_moment(7.9, 10.0, GRACE)
    assert past_sigterm_moment(8.0, 10.0, GRACE)


def test_the_stop_signal_takes_sigterms_place_at_the_sigterm_moment_and_on_a_stop() -> None:
    fenced = FencedTurn(turn=7, pid=4242, started_at=0.0, deadline=10.0, grace=GRACE, stop_signal=signal.SIGINT)
    assert fenced.due_signals(8.0) == [signal.SIGINT]
    assert fenced.due_signals(10.0) == [signal.SIGKILL]
    stopped = FencedTurn(turn=7, pid=4242, started_at=0.0, deadline=10.0, grace=GRACE, stop_signal=signal.SIGHUP)
    stopped.stop("stopped", "skipped", now=1.0)
    assert stopped.due_signals(1.0) == [signal.SIGHUP]
    assert stopped.due_signals(1.0 + GRACE) == [signal.SIGKILL]
