"""``enqueue pause``: a CAS write that stops new grants, shown against real agents."""

from __future__ import annotations

import time

from enqueue import documents as docs
from tests.support.agents import DELAY_S, Sites, wait_until
from tests.support.commands import enqueue_cli, put_leader, race  # noqa: F401  (fixture)


def leader(database) -> docs.LeaderDoc:
    parsed, _ = docs.parse_leader(database.store.get("enqueue_leader"), "enqueue_leader")
    assert parsed is not None
    return parsed


def test_pause_sets_the_flag_says_who_and_leaves_the_turn_alone(enqueue_cli, database):
    put_leader(database.store, leader="alpha", leader_term=2, running="bravo", status=docs.RUNNING, turn=7)
    result = enqueue_cli("pause", "--reason", "grid downtime")
    assert result.code == 0, result.err
    assert result.out.splitlines() == [
        "paused: no new turn will be granted (reason: grid downtime)",
        "turn 7 of bravo is running and goes on to its end ('enqueue skip' ends it now)",
    ]
    doc = leader(database)
    assert doc.paused and doc.paused_reason == "grid downtime"
    assert (doc.running, doc.status, doc.turn) == ("bravo", docs.RUNNING, 7)
    assert doc.updated_by.startswith("admin:") and doc.raw["paused_by"] == doc.updated_by
    assert doc.raw["paused_at"] == doc.updated_at


def test_pausing_again_changes_nothing_unless_the_reason_changes(enqueue_cli, database):
    put_leader(database.store)
    assert enqueue_cli("pause").out == "paused: no new turn will be granted\n"
    rev = database.store.get("enqueue_leader")["_rev"]
    again = enqueue_cli("pause")
    assert again.code == 0
    assert again.out.startswith("already paused since ") and again.out.endswith("; nothing changed\n")
    assert database.store.get("enqueue_leader")["_rev"] == rev
    new_reason = enqueue_cli("pause", "--reason", "disk full")
    assert new_reason.out.endswith("; reason changed to: disk full\n")
    assert leader(database).paused_reason == "disk full"


def test_a_granted_turn_is_said_to_still_run(enqueue_cli, database):
    put_leader(database.store, leader="alpha", leader_term=1, running="alpha", status=docs.GRANTED, turn=3)
    result = enqueue_cli("pause")
    assert "turn 3 was granted to alpha before the pause and will still run" in result.out


def test_pause_before_any_agent_creates_the_leader_doc_paused(enqueue_cli, database):
    assert enqueue_cli("pause", "--reason", "not yet").code == 0
    doc = leader(database)
    assert doc.paused and doc.turn == 0 and doc.leader is None


def test_a_leader_doc_that_does_not_parse_is_not_written_over(enqueue_cli, database):
    database.store.put({"_id": "enqueue_leader", "turn": "seven"})
    result = enqueue_cli("pause")
    assert result.code == 1
    assert "leader doc enqueue_leader does not parse" in result.err and result.err.count("\n") == 1
    assert database.store.get("enqueue_leader")["turn"] == "seven"


def test_a_grant_between_read_and_write_is_kept_and_the_pause_applied(enqueue_cli, database, monkeypatch):
    put_leader(database.store, leader="alpha", leader_term=1, running="alpha", status=docs.DONE, turn=5)

    def the_leader_grants():
        body = database.store.get("enqueue_leader")
        body.update(turn=6, running="bravo", status="granted")
        database.store.put(body)

    racing = race(monkeypatch, database.store, "enqueue_leader", the_leader_grants)
    result = enqueue_cli("pause")
    assert result.code == 0, result.err
    assert racing.writes == 2
    doc = leader(database)
    assert doc.paused and (doc.turn, doc.running, doc.status) == (6, "bravo", docs.GRANTED)
    assert "turn 6 was granted to bravo before the pause" in result.out  # decided on what it re-read


def test_a_paused_rotation_grants_nothing_until_resumed(enqueue_cli, database, config_file, tmp_path):
    sites = Sites(config=config_file, workdir=tmp_path)
    store = database.store
    try:
        for name in ("alpha", "bravo"):
            sites.start(name, sleep_s=0.1)
        sites.wait_runs(2)
        assert enqueue_cli("pause", "--reason", "test").code == 0
        last = leader(database).turn  # the turn in progress (or granted) when the pause landed
        wait_until("the turn in progress to end", lambda: not leader(database).turn_active)
        # Follow every change of the leader doc for four heartbeats: none may grant a turn.
        since = store.current_seq()
        watch_until = time.monotonic() + 4 * DELAY_S
        while time.monotonic() < watch_until:
            batch = store.wait_changes(["enqueue_leader"], since, timeout_s=watch_until - time.monotonic())
            since = batch.last_seq
            doc = leader(database)
            assert doc.paused and doc.turn == last and not doc.turn_active, doc
        started = [r for r in sites.report().runs if r.turn.isdigit() and int(r.turn) > last]
        assert started == []
        assert enqueue_cli("resume").code == 0
        wait_until("a new turn after resume",
                   lambda: any(r.turn.isdigit() and int(r.turn) > last for r in sites.report().runs),
                   timeout_s=10)
        assert sites.report().overlaps == []
    finally:
        sites.stop_all()


def test_pause_help_is_accurate(enqueue_cli):
    text = enqueue_cli.help_text("pause")
    for expected in ("usage: enqueue pause", "CONFIG", "--reason TEXT", "runs to its end", "--leader-doc",
                     "--log-level", "1 refused"):
        assert expected in text, expected
