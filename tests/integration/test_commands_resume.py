"""``enqueue resume``: clears the pause and its own fields, by CAS. (Against agents: test_commands_pause.)"""

from __future__ import annotations

from enqueue import documents as docs
from tests.support.commands import enqueue_cli, put_leader, race  # noqa: F401  (fixture)


def raw_leader(database) -> dict:
    return database.store.get("enqueue_leader")


def test_resume_clears_the_pause_and_says_how_long_it_was(enqueue_cli, database):
    put_leader(database.store, leader="alpha", leader_term=1)
    assert enqueue_cli("pause", "--reason", "upgrade").code == 0
    paused = raw_leader(database)
    result = enqueue_cli("resume")
    assert result.code == 0, result.err
    assert result.out == (f"resumed: turns are granted again (it was paused since {paused['paused_at']} "
                          f"by {paused['paused_by']} (reason: upgrade))\n")
    doc = raw_leader(database)
    assert doc["paused"] is False and doc["paused_reason"] is None
    assert "paused_by" not in doc and "paused_at" not in doc
    assert doc["updated_by"].startswith("admin:")


def test_resume_when_not_paused_changes_nothing(enqueue_cli, database):
    put_leader(database.store)
    rev = raw_leader(database)["_rev"]
    result = enqueue_cli("resume")
    assert (result.code, result.out) == (0, "not paused; nothing changed\n")
    assert raw_leader(database)["_rev"] == rev


def test_resume_without_a_leader_doc_changes_nothing(enqueue_cli, database):
    result = enqueue_cli("resume")
    assert (result.code, result.out) == (0, "not paused; nothing changed\n")
    assert raw_leader(database) is None


def test_resume_says_when_nobody_leads(enqueue_cli, database):
    put_leader(database.store, paused=True)
    result = enqueue_cli("resume")
    assert result.out.splitlines()[1].startswith("no site leads right now")


def test_a_turn_ending_between_read_and_write_is_kept_and_the_resume_applied(enqueue_cli, database, monkeypatch):
    put_leader(database.store, leader="alpha", leader_term=1, running="alpha", status=docs.RUNNING, turn=3,
               paused=True)

    def the_turn_ends():
        body = raw_leader(database)
        body.update(status="done", last_exit_code=0, last_how="exited")
        database.store.put(body)

    racing = race(monkeypatch, database.store, "enqueue_leader", the_turn_ends)
    assert enqueue_cli("resume").code == 0
    assert racing.writes == 2
    doc = raw_leader(database)
    assert doc["paused"] is False and doc["status"] == "done" and doc["last_how"] == "exited"


def test_resume_help_is_accurate(enqueue_cli):
    text = enqueue_cli.help_text("resume")
    for expected in ("usage: enqueue resume", "CONFIG", "after 'enqueue pause'", "--leader-doc", "--log-level",
                     "0 resumed (or was not paused)"):
        assert expected in text, expected
