"""``enqueue.run`` and ``enqueue.turn`` against the real server, driven from threads of the test process."""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any, Callable

import pytest

import enqueue
from enqueue import documents as docs
from enqueue.documents import WAITING
from enqueue.errors import Conflict, Unreachable
from enqueue.lease import Lease
from tests.support.agents import STALE_S, wait_until
from tests.support.commands import enqueue_cli  # noqa: F401  (fixture)

FAST: dict[str, Any] = dict(heartbeat_delay=0.5, heartbeat_stale="2s", conflict_delay="0.2s", kill_grace=0.3)
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
# Touches argv[1], then blocks reading the FIFO argv[2] until the test opens and closes it; exits argv[3].
WAITER = "import pathlib, sys; pathlib.Path(sys.argv[1]).touch(); open(sys.argv[2]).read(); sys.exit(int(sys.argv[3]))"


def handlers() -> dict[int, object]:
    return {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}


def leader(database) -> docs.LeaderDoc:
    parsed, _ = docs.parse_leader(database.store.get("enqueue_leader"), "enqueue_leader")
    assert parsed is not None
    return parsed


def heartbeat_state(database, site: str) -> str | None:
    raw = database.store.get(docs.heartbeat_id(site))
    hb, _ = docs.parse_heartbeat(raw, site) if raw is not None else (None, None)
    return None if hb is None else hb.state


def record(database, turn: int) -> dict:
    body = database.store.get(docs.turn_record_id(turn))
    assert body is not None, f"no record of turn {turn}"
    return body


class Waiter:
    """A command that says it started and then waits for the test; the test's view of it."""

    def __init__(self, tmp_path: Path, exit_code: int) -> None:
        self.started = tmp_path / "started"
        self.release = tmp_path / "release"
        os.mkfifo(self.release)
        self.argv = [sys.executable, "-c", WAITER, str(self.started), str(self.release), str(exit_code)]

    def wait_started(self) -> None:
        wait_until("the command to start", self.started.exists, timeout_s=30)

    def let_go(self) -> None:
        with open(self.release, "w"):
            pass


def in_thread(target: Callable[[], object]) -> tuple[threading.Thread, dict[str, object]]:
    """``target`` running in a new thread; the dict gets its ``result`` or its ``error``."""
    out: dict[str, object] = {}

    def body() -> None:
        try:
            out["result"] = target()
        except BaseException as exc:  # noqa: BLE001 - handed to the test's thread
            out["error"] = exc

    thread = threading.Thread(target=body, name="test-caller")
    thread.start()
    return thread, out


def test_run_from_a_thread_returns_the_commands_exit_code_and_installs_no_signal_handler(config_file, database,
                                                                                         tmp_path):
    before = handlers()
    command = Waiter(tmp_path, exit_code=7)
    stop = threading.Event()
    thread, out = in_thread(lambda: enqueue.run(config_file, "alpha", command.argv, stop=stop, **FAST))
    try:
        command.wait_started()
    except BaseException:
        stop.set()
        raise
    finally:
        during = handlers()
        if command.started.exists():
            command.let_go()
        thread.join(timeout=60)
    assert not thread.is_alive()
    assert "error" not in out, out.get("error")
    assert out["result"] == 7
    assert during == before and handlers() == before
    turn = leader(database).turn
    assert (record(database, turn)["how"], record(database, turn)["exit_code"]) == ("exited", 7)


@pytest.mark.parametrize("handle_signals", [False, True])
def test_run_in_the_main_thread_touches_signal_handlers_only_when_asked(config_file, tmp_path, handle_signals):
    before = handlers()
    command = Waiter(tmp_path, exit_code=3)
    seen: dict[str, object] = {}

    def watch() -> None:
        command.wait_started()
        seen["during"] = handlers()
        command.let_go()

    watcher, out = in_thread(watch)
    try:
        code = enqueue.run(config_file, "alpha", command.argv, handle_signals=handle_signals, **FAST)
    finally:
        watcher.join(timeout=60)
    assert "error" not in out, out.get("error")
    assert code == 3
    assert (seen["during"] != before) is handle_signals
    assert handlers() == before


def test_a_stop_event_set_from_another_thread_stops_the_command_and_returns_143(config_file, database, tmp_path):
    command = Waiter(tmp_path, exit_code=0)
    stop = threading.Event()
    thread, out = in_thread(lambda: enqueue.run(config_file, "alpha", command.argv, stop=stop, **FAST))
    try:
        command.wait_started()
    finally:
        stop.set()
        thread.join(timeout=60)
    assert not thread.is_alive()
    assert out.get("result") == 128 + signal.SIGTERM, out
    rec = record(database, leader(database).turn)
    assert rec["how"] == "stopped" and rec["exit_code"] == 128 + signal.SIGTERM


def test_two_sites_holding_turns_in_threads_never_overlap_and_get_increasing_numbers(config_file, database):
    lock = threading.Lock()
    holding: list[str] = []
    overlaps: list[tuple[str, list[str]]] = []
    ended_early: list[tuple] = []  # the leader doc said the turn was over while its block still ran
    taken: list[tuple[str, int]] = []
    done = {site: threading.Event() for site in ("alpha", "bravo")}

    def other_waits(other: str) -> bool:
        return done[other].is_set() or heartbeat_state(database, other) == WAITING

    def take_turns(site: str, other: str) -> None:
        try:
            for _ in range(3):
                with enqueue.turn(config_file, site, **FAST) as t:
                    with lock:
                        if holding:
                            overlaps.append((site, list(holding)))
                        holding.append(site)
                        taken.append((site, t.number))
                    # Hold the turn until the other site's agent waits for one, so the two contend.
                    wait_until(f"{other} waiting", lambda: other_waits(other), timeout_s=30)
                    t.check()
                    doc = leader(database)
                    # Running, or granted to this agent, which started on the grant alone (PROTOCOL §3.5.7).
                    if not (doc.holds(site, t.number) and doc.may_run):
                        ended_early.append((site, t.number, doc.running, doc.turn, doc.status))
                    with lock:
                        holding.remove(site)
        finally:
            done[site].set()

    threads = [in_thread(lambda s=site, o=other: take_turns(s, o)) for site, other in
               (("alpha", "bravo"), ("bravo", "alpha"))]
    for thread, _ in threads:
        thread.join(timeout=120)
    assert all(not thread.is_alive() for thread, _ in threads)
    assert [out.get("error") for _, out in threads] == [None, None]
    assert overlaps == [] and ended_early == []
    numbers = [number for _, number in taken]
    assert len(taken) == 6 and numbers == sorted(set(numbers)), taken
    for site, number in taken:
        rec = record(database, number)
        assert (rec["site"], rec["how"], rec["exit_code"]) == (site, "exited", 0)


def test_a_skipped_turn_is_lost_check_raises_and_the_record_says_skipped(config_file, database, enqueue_cli):
    with pytest.raises(enqueue.TurnLost) as raised:
        with enqueue.turn(config_file, "alpha", **FAST) as t:
            assert not t.lost.is_set() and t.reason is None
            t.check()
            number = t.number
            assert leader(database).running == "alpha" and leader(database).turn == number
            assert enqueue_cli("skip", "--turn", number).code == 0
            assert t.lost.wait(timeout=20)
            assert t.reason == "skipped"
            t.check()
    assert f"turn {number} of site alpha" in str(raised.value)
    rec = record(database, number)
    assert (rec["site"], rec["how"], rec["exit_code"]) == ("alpha", "skipped", 1)
    assert "TurnLost" in rec["note"]
    doc = leader(database)
    assert doc.turn == number and doc.status == docs.DONE


def test_a_lease_that_cannot_be_renewed_sets_lost_and_the_turn_is_recorded_fenced(config_file, database,
                                                                                   monkeypatch):
    beats_fail = threading.Event()
    real_beat = Lease.beat

    def beat(self: Lease, **kwargs: Any):
        if beats_fail.is_set():
            raise Unreachable("the heartbeat does not get through")
        return real_beat(self, **kwargs)

    monkeypatch.setattr(Lease, "beat", beat)
    with enqueue.turn(config_file, "alpha", **FAST) as t:
        beats_fail.set()
        assert t.lost.wait(timeout=STALE_S * 5)
        assert t.reason == "fenced"
        with pytest.raises(enqueue.TurnLost):
            t.check()
        beats_fail.clear()
    rec = record(database, t.number)
    assert rec["how"].startswith("fenced") and rec["exit_code"] == 0


def test_a_stop_while_waiting_for_the_turn_raises_turn_lost_and_leaves(config_file, database):
    stop = threading.Event()

    def alpha_waits() -> None:
        with enqueue.turn(config_file, "alpha", stop=stop, **FAST):
            pytest.fail("the block ran without a turn")

    with enqueue.turn(config_file, "bravo", **FAST) as held:
        thread, out = in_thread(alpha_waits)
        try:
            wait_until("alpha waiting", lambda: heartbeat_state(database, "alpha") == WAITING, timeout_s=30)
        finally:
            stop.set()
            thread.join(timeout=60)
        held.check()
    assert not thread.is_alive()
    assert isinstance(out.get("error"), enqueue.TurnLost), out
    assert "ended before its turn began (exit code 143" in str(out["error"])
    assert heartbeat_state(database, "alpha") == docs.LEFT


def test_a_turn_the_leader_takes_away_is_lost_and_recorded_as_revoked(config_file, database):
    with enqueue.turn(config_file, "alpha", **FAST) as t:
        # What a leader writes when it takes the turn back and grants the next one (a compare-and-swap:
        # the agent may write the leader doc in between, then read and write again).
        while True:
            body = database.store.get("enqueue_leader")
            body.update(turn=t.number + 1, running="bravo", status=docs.GRANTED)
            try:
                database.store.put(body)
                break
            except Conflict:
                continue
        assert t.lost.wait(timeout=20)
        assert t.reason == "revoked"
        with pytest.raises(enqueue.TurnLost, match=r"\(revoked\)"):
            t.check()
    rec = record(database, t.number)
    assert rec["site"] == "alpha" and rec["how"].startswith("revoked"), rec
    assert leader(database).turn == t.number + 1
