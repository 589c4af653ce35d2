"""``enqueue sites``: list, drain, undrain, remove -- CAS writes that say who and when."""

from __future__ import annotations

import json
import re
import signal

import pytest

from enqueue import documents as docs
from tests.support.agents import Sites, wait_until
from tests.support.commands import (  # noqa: F401  (fixture)
    enqueue_cli,
    put_heartbeat,
    put_leader,
    put_sites,
    race,
)


def registry(database) -> dict:
    return database.store.get("enqueue_sites")["sites"]


def stage(database) -> None:
    put_sites(database.store, {"alpha": {}, "bravo": {}, "charlie": {"drained": True, "drained_reason": "disk"}})
    put_heartbeat(database.store, "alpha", seconds_ago=2)
    put_heartbeat(database.store, "bravo", seconds_ago=5, state=docs.RUNNING)
    put_leader(database.store, leader="alpha", leader_term=1, running="bravo", status=docs.RUNNING, turn=4)


def test_list_shows_every_site_with_its_flags_and_heartbeat(enqueue_cli, database):
    stage(database)
    result = enqueue_cli("sites", "list")
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert lines[0].split() == ["SITE", "DRAINED", "STATE", "HOST", "LAST", "BEAT", "ADDED"]
    assert [line.split()[0] for line in lines[1:]] == ["alpha", "bravo", "charlie"]
    assert "waiting" in lines[1] and "alpha-host" in lines[1] and " s ago" in lines[1]
    assert lines[3].split()[1:3] == ["yes:", "disk"] and "no heartbeat" in lines[3]

    data = json.loads(enqueue_cli("sites", "list", "--json").out)
    assert [s["name"] for s in data["sites"]] == ["alpha", "bravo", "charlie"]
    assert set(data["sites"][0]) == {"name", "drained", "drained_reason", "drained_by", "drained_at",
                                     "drained_exit_code", "added_at", "heartbeat_doc", "state", "host", "beat_time", "beat_age_s"}
    assert data["sites"][2]["drained_reason"] == "disk" and data["sites"][1]["state"] == "running"


def test_list_without_a_registry_is_refused_with_a_hint(enqueue_cli, database):
    result = enqueue_cli("sites", "list")
    assert result.code == 1
    assert "sites doc enqueue_sites does not exist" in result.err and "enqueue init" in result.err


def test_drain_and_undrain_record_who_and_when(enqueue_cli, database):
    stage(database)
    result = enqueue_cli("sites", "drain", "alpha", "--reason", "kernel update")
    assert result.code == 0, result.err
    assert result.out.startswith("drained alpha: it gets no new turn until 'enqueue sites ")
    entry = registry(database)["alpha"]
    assert entry["drained"] is True and entry["drained_reason"] == "kernel update"
    assert entry["drained_by"].startswith("admin:") and "@" in entry["drained_by"] and entry["drained_at"]
    assert entry["updated_by"] == entry["drained_by"] and entry["heartbeat_doc"] == "enqueue_heartbeat:alpha"
    assert entry["added_at"]  # what the agent wrote is kept
    assert database.store.get("enqueue_sites")["updated_by"] == entry["drained_by"]

    again = enqueue_cli("sites", "drain", "alpha")
    assert (again.code, again.out) == (0, "alpha is already drained; nothing changed\n")

    result = enqueue_cli("sites", "undrain", "alpha")
    assert (result.code, result.out) == (0, "undrained alpha: it takes turns again\n")
    entry = registry(database)["alpha"]
    assert entry["drained"] is False and "drained_reason" not in entry and entry["updated_by"].startswith("admin:")
    again = enqueue_cli("sites", "undrain", "alpha")
    assert (again.code, again.out) == (0, "alpha is not drained; nothing changed\n")


def test_draining_the_running_site_lets_its_turn_finish(enqueue_cli, database):
    stage(database)
    result = enqueue_cli("sites", "drain", "bravo")
    assert result.code == 0
    assert "its turn 4 is running and goes on to its end" in result.out
    leader = database.store.get("enqueue_leader")
    assert (leader["running"], leader["status"], leader["turn"]) == ("bravo", "running", 4)


@pytest.mark.parametrize("action", ["drain", "undrain", "remove"])
def test_unknown_sites_are_refused_naming_the_known_ones(enqueue_cli, database, action):
    stage(database)
    before = database.store.get("enqueue_sites")["_rev"]
    result = enqueue_cli("sites", action, "zulu")
    assert result.code == 1
    assert result.err == "enqueue: unknown site 'zulu': the registry enqueue_sites knows alpha, bravo, charlie\n"
    assert database.store.get("enqueue_sites")["_rev"] == before


def test_remove_refuses_the_site_holding_the_turn(enqueue_cli, database):
    stage(database)
    result = enqueue_cli("sites", "remove", "bravo")
    assert result.code == 1
    assert "bravo holds turn 4 (running); drain it first" in result.err and "enqueue skip" in result.err
    assert "bravo" in registry(database)


def test_remove_force_deletes_the_entry_and_the_heartbeat_and_warns_of_a_live_agent(enqueue_cli, database):
    stage(database)
    result = enqueue_cli("sites", "remove", "alpha", "--force")
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert lines[0] == "removed alpha from the registry enqueue_sites"
    assert lines[1] == "deleted its heartbeat document enqueue_heartbeat:alpha"
    assert lines[2].startswith("warning: alpha's agent may still run (state waiting, last beat ")
    assert "systemctl stop enqueue@alpha" in lines[2]
    assert "alpha" not in registry(database) and set(registry(database)) == {"bravo", "charlie"}
    assert database.store.get("enqueue_heartbeat:alpha") is None

    result = enqueue_cli("sites", "remove", "charlie")  # never beat: no heartbeat, no warning
    assert result.out == "removed charlie from the registry enqueue_sites\n"


def test_remove_refuses_a_site_whose_agent_is_alive_unless_forced(enqueue_cli, database, config_file, tmp_path):
    sites = Sites(config=config_file, workdir=tmp_path)
    try:
        agent = sites.start("alpha", sleep_s=0.1)
        wait_until("alpha registered", lambda: "registered as site alpha" in agent.log())
        sites.start("bravo", sleep_s=0.1)
        sites.wait_runs(2)
        assert enqueue_cli("sites", "drain", "alpha").code == 0
        wait_until("alpha holding no turn", lambda: not docs.parse_leader(
            database.store.get("enqueue_leader"), "enqueue_leader")[0].holds("alpha"))

        result = enqueue_cli("sites", "remove", "alpha")
        assert result.code == 7, result.err
        assert result.out == "watching alpha's heartbeat for up to 0.8 s to tell whether its agent runs " \
                             "(--force skips this)\n"
        lines = result.err.splitlines()
        assert len(lines) == 1 and lines[0].startswith("enqueue: alpha's agent is alive (its heartbeat changed ")
        assert "stop it first (for example 'systemctl stop enqueue@alpha'), or remove it anyway with --force" \
            in lines[0]
        assert "alpha" in registry(database)

        result = enqueue_cli("sites", "remove", "alpha", "--force")
        assert result.code == 0, result.err
        assert result.out.startswith("removed alpha from the registry enqueue_sites\n")
        assert "warning: alpha's agent may still run" in result.out
    finally:
        sites.stop_all()


def test_remove_of_a_site_whose_agent_left_needs_no_watching(enqueue_cli, database, config_file, tmp_path):
    sites = Sites(config=config_file, workdir=tmp_path)
    agent = sites.start("alpha", sleep_s=0.1)
    try:
        sites.wait_runs(1)
        agent.signal(signal.SIGTERM)
        agent.wait()
    finally:
        sites.stop_all()
    hb, _ = docs.parse_heartbeat(database.store.get(docs.heartbeat_id("alpha")), "alpha")
    assert hb is not None and hb.state == docs.LEFT
    result = enqueue_cli("sites", "remove", "alpha")
    assert result.code == 0, result.err
    assert result.err == ""
    assert result.out == "removed alpha from the registry enqueue_sites\n" \
                         "deleted its heartbeat document enqueue_heartbeat:alpha\n"


def test_remove_of_a_site_whose_heartbeat_stopped_changing_goes_ahead(enqueue_cli, database):
    """A crashed agent leaves a heartbeat that says 'waiting' and never changes again."""
    put_sites(database.store, {"alpha": {}, "bravo": {}})
    put_heartbeat(database.store, "alpha", seconds_ago=0.2, heartbeat_delay_s=0.2, heartbeat_stale_s=1.0)
    result = enqueue_cli("sites", "remove", "alpha")
    assert result.code == 0, result.err
    assert result.err == ""
    lines = result.out.splitlines()
    assert lines.pop(0) == "watching alpha's heartbeat for up to 0.3 s to tell whether its agent runs " \
                           "(--force skips this)"
    assert re.fullmatch(r"alpha's agent did not beat for 0\.\d s \(it beats every 0\.2 s at the longest\): "
                        r"it is not running", lines[0]), lines[0]
    assert lines[1:] == ["removed alpha from the registry enqueue_sites",
                         "deleted its heartbeat document enqueue_heartbeat:alpha"]
    assert set(registry(database)) == {"bravo"}


def test_a_registry_change_between_read_and_write_is_kept_and_the_drain_applied(enqueue_cli, database, monkeypatch):
    stage(database)

    def an_agent_registers():
        body = database.store.get("enqueue_sites")
        body["sites"]["delta"] = {"heartbeat_doc": "enqueue_heartbeat:delta", "drained": False}
        database.store.put(body)

    racing = race(monkeypatch, database.store, "enqueue_sites", an_agent_registers)
    result = enqueue_cli("sites", "drain", "alpha")
    assert result.code == 0, result.err
    assert racing.writes == 2  # lost the first swap, re-read, re-applied
    sites = registry(database)
    assert sites["alpha"]["drained"] is True and "delta" in sites


def test_sites_usage_errors_exit_2(enqueue_cli, database):
    for args in (("drain",), ("list", "alpha"), ("undrain", "alpha", "--reason", "x"), ("drain", "alpha", "--json"),
                 ("rename", "alpha"), ("drain", "alpha", "--force")):
        result = enqueue_cli("sites", *args)
        assert result.code == 2, args
        assert result.err.startswith("enqueue: ") and result.err.count("\n") == 1


def test_a_drained_site_gets_no_more_turns_while_the_others_go_on(enqueue_cli, database, config_file, tmp_path):
    sites = Sites(config=config_file, workdir=tmp_path)
    try:
        for name in ("alpha", "bravo"):
            sites.start(name, sleep_s=0.1)
        sites.wait_runs(2)
        assert enqueue_cli("sites", "drain", "alpha").code == 0
        drained_at = len(sites.report().runs)
        # A grant made just before the drain landed may still run; after that only bravo.
        report = sites.wait_runs(drained_at + 4)
        assert set(report.order[drained_at + 2:]) == {"bravo"}, report.order
        assert enqueue_cli("sites", "undrain", "alpha").code == 0
        undrained_at = len(sites.report().runs)
        wait_until("alpha's turn after undrain",
                   lambda: "alpha" in [r.site for r in sites.report().runs[undrained_at:]])
        assert sites.report().overlaps == []
    finally:
        sites.stop_all()


def test_sites_help_is_accurate(enqueue_cli):
    text = enqueue_cli.help_text("sites")
    for expected in ("CONFIG {list | drain SITE | undrain SITE | remove SITE}", "--reason", "--json",
                     "refused while it holds the turn", "--log-level", "1 refused (unknown site", "--force",
                     "7 remove refused: the site's agent is alive"):
        assert expected in text, expected
