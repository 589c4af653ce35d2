"""``enqueue status`` against the real server: the picture, --json, --watch, and no writes at all."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys

import pytest

from enqueue import documents as docs
from enqueue.commands import status
from tests.support.agents import wait_until
from tests.support.commands import (  # noqa: F401  (fixture)
    enqueue_cli,
    put_heartbeat,
    put_leader,
    put_record,
    put_sites,
    time_text,
)
from tests.support.processes import reap

SITE_KEYS = {
    "name", "registered", "host", "state", "liveness", "liveness_from", "beat_time", "beat_age_s", "beat",
    "observed_age_s", "observed_change", "drained", "drained_reason", "last_turn", "last_how", "last_exit_code",
    "last_duration_s", "turns_taken", "role", "message", "heartbeat_delay_s", "heartbeat_stale_s",
    "left_because",
}
TOP_KEYS = {
    "format", "database", "server", "checked_at", "heartbeat_stale_s", "leader", "leader_term", "paused",
    "paused_reason", "paused_by", "paused_at", "turn", "rotation", "sites", "problems", "watched_s", "placement",
    "nodes",
}
TURN_KEYS = {"number", "site", "state", "since", "for_s", "skip_requested", "last_exit_code", "last_how", "handoff_s"}


def stage_production(store) -> None:
    """alpha leads and waits, bravo runs turn 9 (paused meanwhile), charlie is stale and drained,
    delta left, echo never beat."""
    put_sites(store, {"alpha": {}, "bravo": {}, "charlie": {"drained": True, "drained_reason": "disk full"},
                      "delta": {}, "echo": {}})
    put_heartbeat(store, "alpha", seconds_ago=3, extra={"last_exit_code": 0, "turns_done": 2})
    put_heartbeat(store, "bravo", seconds_ago=1, state=docs.RUNNING, turn=9)
    put_heartbeat(store, "charlie", seconds_ago=7200)
    put_heartbeat(store, "delta", seconds_ago=300, state=docs.LEFT)
    for turn, site, code in ((5, "alpha", 0), (6, "bravo", 3), (7, "alpha", 0), (8, "delta", 1)):
        put_record(store, turn, site, exit_code=code, duration_s=60.0 + turn)
    put_leader(store, leader="alpha", leader_term=4, running="bravo", status=docs.RUNNING, turn=9,
               rotation=("alpha", "bravo"), paused=True, paused_reason="maintenance",
               granted_at=time_text(75), started_at=time_text(74))


def test_status_of_a_fresh_database(enqueue_cli, database):
    assert enqueue_cli("init").code == 0
    result = enqueue_cli("status")
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert lines[0].startswith(f"enqueue status of database '{database.name}' at ")
    assert lines[1:5] == ["leader:   none", "paused:   no", "turn:     none granted yet", "rotation: nobody"]
    assert lines[5].startswith("database: ")
    if database.store.shards() is None:
        assert lines[5] == "database: one node (the server reports no shards: not a CouchDB cluster)"
    else:
        assert lines[5].startswith("database: held by node ") and lines[5].endswith(" (n=1, q=1)")
    data = json.loads(enqueue_cli("status", "--json").out)
    assert data["placement"] == lines[5][len("database: "):]
    assert (data["nodes"] == []) == (database.store.shards() is None)
    assert "no sites registered" in result.out


def test_status_shows_leader_pause_turn_and_every_site(enqueue_cli, database):
    stage_production(database.store)
    result = enqueue_cli("status")
    assert result.code == 0, result.err
    out = result.out
    assert "leader:   alpha (term 4)" in out
    assert "paused:   yes" in out and "(reason: maintenance)" in out
    turn_line = next(line for line in out.splitlines() if line.startswith("turn:"))
    assert turn_line.startswith("turn:     9, bravo, running since ") and " UTC (1 min 1" in turn_line
    assert "rotation: alpha, bravo" in out
    rows = {line.split()[0]: line for line in out.splitlines() if line.split()[:1] and line.split()[0] in
            ("alpha", "bravo", "charlie", "delta", "echo", "SITE")}
    assert list(rows) == ["SITE", "alpha", "bravo", "charlie", "delta", "echo"]  # sorted by name
    assert rows["SITE"].split() == ["SITE", "HOST", "STATE", "HEARTBEAT", "DRAINED", "LAST", "EXIT", "DURATION",
                                    "TURNS", "NOTE"]
    assert "alpha-host" in rows["alpha"] and re.search(r"alive, \d+(\.\d)? s ago", rows["alpha"])
    assert " 1 min 7 s " in rows["alpha"] and rows["alpha"].split()[-2:] == ["2", "leader"]  # turn 7 took 67 s
    assert "running turn 9" in rows["bravo"] and "alive, " in rows["bravo"] and " 3 " in rows["bravo"]
    assert "stale, 2 h ago" in rows["charlie"] and " yes " in rows["charlie"] and "drained: disk full" in rows["charlie"]
    assert "left, 5 min" in rows["delta"]
    assert "no heartbeat" in rows["echo"]
    assert "Heartbeat ages compare each site's clock with this host's" in out


def test_status_json_has_the_documented_keys(enqueue_cli, database):
    stage_production(database.store)
    result = enqueue_cli("status", "--json")
    assert result.code == 0, result.err
    data = json.loads(result.out)
    assert set(data) == TOP_KEYS
    assert data["format"] == 1 and data["database"] == database.name
    assert set(data["turn"]) == TURN_KEYS
    assert data["turn"]["number"] == 9 and data["turn"]["state"] == "running" and 60 < data["turn"]["for_s"] < 120
    assert data["paused"] is True and data["paused_reason"] == "maintenance"
    sites = {s["name"]: s for s in data["sites"]}
    assert [s["name"] for s in data["sites"]] == ["alpha", "bravo", "charlie", "delta", "echo"]
    for site in data["sites"]:
        assert set(site) == SITE_KEYS
    assert sites["alpha"]["liveness"] == "alive" and sites["alpha"]["turns_taken"] == 2
    assert sites["alpha"]["last_turn"] == 7 and sites["alpha"]["last_duration_s"] == 67.0
    assert sites["bravo"]["last_exit_code"] == 3 and sites["bravo"]["role"] == "running turn 9"
    assert sites["charlie"]["liveness"] == "stale" and sites["charlie"]["drained"] is True
    assert sites["delta"]["liveness"] == "left" and sites["echo"]["liveness"] == "missing"
    assert sites["echo"]["turns_taken"] == 0 and data["problems"] == []
    assert data["watched_s"] is None and sites["alpha"]["liveness_from"] == "beat time"


def test_status_names_documents_that_do_not_parse(enqueue_cli, database):
    database.store.put({"_id": "enqueue_leader", "turn": "seven"})
    database.store.put({"_id": "enqueue_sites", "sites": {"alpha": {}}})
    database.store.put({"_id": docs.turn_record_id(3), "site": "alpha"})
    result = enqueue_cli("status")
    assert result.code == 0
    problems = [line for line in result.out.splitlines() if line.startswith("problem: ")]
    assert any("leader doc enqueue_leader does not parse" in p for p in problems)
    assert any("turn record enqueue_turn:0000000003 does not parse" in p for p in problems)


def test_status_of_a_missing_database_is_one_line_and_exit_5(enqueue_cli, database):
    database.store.delete_database()
    result = enqueue_cli("status")
    assert result.code == 5
    assert result.out == "" and result.err.count("\n") == 1 and "does not exist" in result.err
    database.store.create_database()  # for the fixture's teardown


def test_status_history_and_sites_list_never_write(enqueue_cli, database):
    stage_production(database.store)
    before = database.store.current_seq()
    for args in (("status",), ("status", "--json"), ("history",), ("history", "--json"), ("sites", "list")):
        assert enqueue_cli(*args).code == 0, args
    assert database.store.current_seq() == before


def test_watch_redraws_and_shows_observed_changes_then_ends_with_0_on_ctrl_c(enqueue_cli, database, monkeypatch):
    stage_production(database.store)
    waits = []

    def one_change_then_ctrl_c(store, ids, since, interval_s, clock):
        waits.append((list(ids), interval_s))
        if len(waits) == 1:
            put_heartbeat(database.store, "alpha", seconds_ago=0)  # alpha beats between two frames
            return
        raise KeyboardInterrupt

    monkeypatch.setattr(status, "wait_for_change", one_change_then_ctrl_c)
    result = enqueue_cli("status", "--watch", "5s")
    assert result.code == 0, result.err
    frames = [f for f in result.out.split("enqueue status of database")[1:]]
    assert len(frames) == 2
    assert "OBSERVED" in frames[0] and "no change yet" in frames[0]
    alpha = next(line for line in frames[1].splitlines() if line.startswith("alpha "))
    bravo = next(line for line in frames[1].splitlines() if line.startswith("bravo "))
    assert "changed 0" in alpha and "no change" in bravo
    assert "(redrawn on change and every 5 s; Ctrl-C to stop)" in frames[0]
    assert waits[0][1] == 5.0 and "enqueue_heartbeat:echo" in waits[0][0] and "enqueue_leader" in waits[0][0]


def test_watch_json_prints_one_object_per_redraw(enqueue_cli, database, monkeypatch):
    stage_production(database.store)
    calls = []

    def twice(store, ids, since, interval_s, clock):
        calls.append(1)
        if len(calls) > 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(status, "wait_for_change", twice)
    result = enqueue_cli("status", "--json", "--watch")
    assert result.code == 0
    objects = [json.loads(line) for line in result.out.splitlines()]
    assert len(objects) == 2 and all(set(o) == TOP_KEYS for o in objects)
    assert objects[1]["watched_s"] >= objects[0]["watched_s"] >= 0.0


def test_watch_as_a_process_redraws_until_sigint_and_exits_0(config_file, database):
    stage_production(database.store)
    proc = subprocess.Popen([sys.executable, "-m", "enqueue", "status", str(config_file), "--watch", "0.2s"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        frames = []
        # A heartbeat change wakes the watch at once; a second frame proves it keeps redrawing.
        def second_frame():
            line = proc.stdout.readline()
            if line.startswith("(redrawn on change"):
                frames.append(line)
            return len(frames) >= 2
        wait_until("two frames of status --watch", second_frame, timeout_s=30)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
        assert "Traceback" not in proc.stderr.read()
    finally:
        reap(proc)


def test_wait_for_change_returns_on_a_change_and_on_the_interval(database):
    store = database.store
    put_leader(store)
    since = store.current_seq()
    from enqueue.clock import SystemClock

    clock = SystemClock()
    started = clock.monotonic()
    status.wait_for_change(store, ["enqueue_leader"], since, 0.3, clock)
    assert 0.25 <= clock.monotonic() - started < 5
    put_leader(store, turn=1, running="alpha", status=docs.DONE)
    started = clock.monotonic()
    status.wait_for_change(store, ["enqueue_leader"], since, 30, clock)
    assert clock.monotonic() - started < 10


def test_status_help_is_accurate(enqueue_cli):
    text = enqueue_cli.help_text("status")
    for expected in ("usage: enqueue status", "CONFIG", "--json", "--prometheus", "--watch [DURATION]",
                     "(default 2 s; 30s, 2m)", "Ctrl-C",
                     "--leader-doc", "--sites-doc", "--time-format", "--log-level", "--log-file", "--log-format",
                     "read-only", "5 database missing"):
        assert expected in text, expected


@pytest.mark.parametrize("given, seconds", [("30s", 30.0), ("2m", 120.0), ("1.5s", 1.5)])
def test_watch_takes_a_duration_like_every_other_option(enqueue_cli, database, monkeypatch, given, seconds):
    stage_production(database.store)
    waits = []

    def ctrl_c(store, ids, since, interval_s, clock):
        waits.append(interval_s)
        raise KeyboardInterrupt

    monkeypatch.setattr(status, "wait_for_change", ctrl_c)
    result = enqueue_cli("status", "--watch", given)
    assert result.code == 0, result.err
    assert waits == [seconds]


@pytest.mark.parametrize("given, says", [("5", "'5' has no unit: write 5s for seconds or 5m for minutes"),
                                         ("0s", "must be more than 0"), ("soon", "is not a duration")])
def test_watch_refuses_a_bare_number_or_a_bad_duration_in_one_line(enqueue_cli, database, given, says):
    result = enqueue_cli("status", "--watch", given)
    assert result.code == 2 and result.err.count("\n") == 1 and says in result.err, result.err


def _families(text: str) -> dict:
    from prometheus_client.parser import text_string_to_metric_families

    return {family.name: family for family in text_string_to_metric_families(text)}


def test_prometheus_prints_the_text_format_from_the_real_documents(enqueue_cli, database):
    stage_production(database.store)
    result = enqueue_cli("status", "--prometheus")
    assert result.code == 0, result.err
    families = _families(result.out)

    def value(name: str, **labels: str) -> float:
        samples = [s for s in families[name].samples
                   if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]
        assert len(samples) == 1, (name, labels, families[name].samples)
        return samples[0].value

    db = database.name
    assert value("enqueue_turn", database=db) == 9
    assert 70 <= value("enqueue_seconds_since_handoff", database=db) < 140
    assert value("enqueue_paused", database=db) == 1
    assert value("enqueue_site_alive", database=db, site="alpha") == 1
    assert value("enqueue_site_alive", database=db, site="charlie") == 0
    assert value("enqueue_site_state", database=db, site="bravo", enqueue_site_state="running") == 1
    assert value("enqueue_site_state", database=db, site="bravo", enqueue_site_state="waiting") == 0
    assert value("enqueue_site_drained", database=db, site="charlie") == 1
    assert value("enqueue_site_turns_taken", database=db, site="alpha") == 2
    assert value("enqueue_site_last_exit_code", database=db, site="bravo") == 3
    assert 7000 < value("enqueue_site_seconds_since_beat", database=db, site="charlie") < 7400
    # Unknown is left out, not written as 0: echo never beat.
    assert not [s for s in families["enqueue_site_seconds_since_beat"].samples if s.labels["site"] == "echo"]
    assert families["enqueue_turn"].type == "gauge" and families["enqueue_site_state"].type == "gauge"


def test_prometheus_without_the_library_is_one_line_and_exit_2(enqueue_cli, database, monkeypatch):
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    monkeypatch.setitem(sys.modules, "prometheus_client.core", None)
    result = enqueue_cli("status", "--prometheus")
    assert result.code == 2 and result.out == ""
    assert result.err == ("enqueue: --prometheus needs the prometheus_client library: pip install "
                          "'enqueue[metrics]' (or pip install prometheus_client)\n")


def test_prometheus_prints_once(enqueue_cli, database):
    result = enqueue_cli("status", "--prometheus", "--watch")
    assert result.code == 2 and "prints once" in result.err
    result = enqueue_cli("status", "--prometheus", "--json")
    assert result.code == 2 and "not allowed with argument" in result.err


def test_json_and_text_agree_on_heartbeat_stale(enqueue_cli, database):
    """The sites announce 1 min while this configuration says 30 min: both forms say what the table judged by."""
    put_sites(database.store, {"alpha": {}, "bravo": {}})
    for site in ("alpha", "bravo"):
        put_heartbeat(database.store, site, seconds_ago=2, heartbeat_delay_s=20.0, heartbeat_stale_s=60.0)
    text = enqueue_cli("status").out
    data = json.loads(enqueue_cli("status", "--json").out)
    assert "Stale: no beat for 1 min." in text
    assert data["heartbeat_stale_s"] == 60.0
