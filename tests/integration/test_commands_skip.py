"""``enqueue skip``: ends the turn in progress; the running agent stops its command and records "skipped"."""

from __future__ import annotations

import sys

from enqueue import documents as docs
from tests.support.agents import Sites, wait_until
from tests.support.commands import enqueue_cli, put_leader, race  # noqa: F401  (fixture)
from tools.chaos import probe


def leader(database) -> docs.LeaderDoc:
    parsed, _ = docs.parse_leader(database.store.get("enqueue_leader"), "enqueue_leader")
    assert parsed is not None
    return parsed


def test_skip_marks_the_running_turn(enqueue_cli, database):
    put_leader(database.store, leader="alpha", leader_term=1, running="bravo", status=docs.RUNNING, turn=12)
    result = enqueue_cli("skip")
    assert result.code == 0, result.err
    assert result.out == ("asked bravo to stop turn 12: its command gets SIGTERM, or its --stop-signal "
                          "(SIGKILL after the kill grace), the turn is recorded as skipped\n")
    doc = leader(database)
    assert doc.skip_turn == 12 and doc.updated_by.startswith("admin:")
    assert (doc.running, doc.status, doc.turn) == ("bravo", docs.RUNNING, 12)
    again = enqueue_cli("skip")
    assert (again.code, again.out) == (0, "skip of turn 12 was already asked; nothing changed\n")


def test_skip_of_a_granted_turn_says_it_stops_as_soon_as_it_starts(enqueue_cli, database):
    put_leader(database.store, leader="alpha", leader_term=1, running="bravo", status=docs.GRANTED, turn=12)
    result = enqueue_cli("skip")
    assert result.code == 0
    assert result.out.startswith("turn 12 of bravo is granted but not started: bravo stops its command as soon")


def test_skip_refuses_without_a_turn_in_progress(enqueue_cli, database):
    put_leader(database.store, leader="alpha", leader_term=1, running="bravo", status=docs.DONE, turn=12)
    result = enqueue_cli("skip")
    assert result.code == 1
    assert result.err == "enqueue: no turn in progress to skip (turn 12 of bravo ended)\n"
    database.store.delete(database.store.get("enqueue_leader"))
    result = enqueue_cli("skip")
    assert result.code == 1 and "leader doc enqueue_leader does not exist" in result.err


def test_skip_with_turn_refuses_another_turn(enqueue_cli, database):
    put_leader(database.store, leader="alpha", leader_term=1, running="bravo", status=docs.RUNNING, turn=12)
    result = enqueue_cli("skip", "--turn", "11")
    assert result.code == 1
    assert result.err == "enqueue: turn 11 is not in progress: turn 12 of bravo is (running); nothing changed\n"
    assert leader(database).skip_turn is None
    assert enqueue_cli("skip", "--turn", "12").code == 0


def test_a_handoff_between_read_and_write_is_judged_again(enqueue_cli, database, monkeypatch):
    put_leader(database.store, leader="alpha", leader_term=1, running="bravo", status=docs.RUNNING, turn=12)

    def the_turn_passes_on():
        body = database.store.get("enqueue_leader")
        body.update(turn=13, running="charlie", status="granted")
        database.store.put(body)

    racing = race(monkeypatch, database.store, "enqueue_leader", the_turn_passes_on)
    result = enqueue_cli("skip", "--turn", "12")
    assert result.code == 1 and "turn 12 is not in progress: turn 13 of charlie is (granted)" in result.err
    assert racing.writes == 1 and leader(database).skip_turn is None


def test_a_skipped_command_is_stopped_and_its_turn_recorded_as_skipped(enqueue_cli, database, config_file, tmp_path):
    sites = Sites(config=config_file, workdir=tmp_path)
    try:
        sites.start("alpha", repeat=False,
                    command=[sys.executable, probe.PATH, str(sites.probe_log), "--sleep", "60"])
        wait_until("alpha's command to start", lambda: sites.report().runs, timeout_s=30)
        turn = leader(database).turn
        result = enqueue_cli("skip", "--turn", turn)
        assert result.code == 0, result.err
        record = wait_until("the turn record", lambda: database.store.get(docs.turn_record_id(turn)), timeout_s=15)
        assert record["how"] == "skipped" and record["site"] == "alpha"
        run = sites.report().runs[0]
        assert run.how == "terminated" and run.end_ns is not None
        # The write that ends the turn carries the record, stored right after: the two in either order here.
        wait_until("the leader doc's end of the turn", lambda: leader(database).last_how == "skipped", timeout_s=15)
        assert sites.agents["alpha"].wait() == record["exit_code"]  # run-once: the command's exit code
    finally:
        sites.stop_all()


def test_skip_help_is_accurate(enqueue_cli):
    text = enqueue_cli.help_text("skip")
    for expected in ("usage: enqueue skip", "CONFIG", "--turn N", "records the turn as skipped", "--leader-doc",
                     "--log-level", "1 refused (no turn in progress"):
        assert expected in text, expected
