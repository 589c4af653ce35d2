"""``enqueue history``: the turn records, newest first, as a table or JSON."""

from __future__ import annotations

import json

from enqueue import documents as docs
from tests.support.commands import enqueue_cli, put_record  # noqa: F401  (fixture)

JSON_KEYS = {"turn", "site", "host", "leader", "how", "exit_code", "started_at", "ended_at", "duration_s", "note",
             "runner_report"}


def stage(database) -> None:
    put_record(database.store, 1, "alpha", duration_s=61.5)
    put_record(database.store, 2, "bravo", exit_code=3, duration_s=5.25)
    put_record(database.store, 3, "alpha", how="revoked", exit_code=None, duration_s=None,
               note="took turn 3 from alpha: it is stale")
    put_record(database.store, 4, "bravo", how="skipped", exit_code=143, duration_s=3700)
    database.store.put({"_id": docs.turn_record_id(5), "site": "alpha"})  # does not parse


def test_history_is_a_table_newest_first(enqueue_cli, database):
    stage(database)
    result = enqueue_cli("history")
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert lines[0].split() == ["TURN", "SITE", "HOST", "STARTED", "(UTC)", "ENDED", "(UTC)", "DURATION", "EXIT",
                                "HOW", "NOTE"]
    assert [line.split()[0] for line in lines[1:]] == ["4", "3", "2", "1"]
    assert lines[1].split()[1:3] == ["bravo", "bravo-host"] and "1 h 1 min" in lines[1] and " 143 " in lines[1]
    assert "skipped" in lines[1]
    assert " revoked " in lines[2] and lines[2].endswith("took turn 3 from alpha: it is stale")
    assert "5.2 s" in lines[3] and "1 min 2 s" in lines[4]
    assert "turn record enqueue_turn:0000000005 does not parse" in result.err


def test_history_filters_by_site_and_limits(enqueue_cli, database):
    stage(database)
    result = enqueue_cli("history", "--site", "alpha")
    assert [line.split()[0] for line in result.out.splitlines()[1:]] == ["3", "1"]
    result = enqueue_cli("history", "--limit", "2")
    assert [line.split()[0] for line in result.out.splitlines()[1:]] == ["4", "3"]
    result = enqueue_cli("history", "--site", "bravo", "--limit", "1")
    assert [line.split()[0] for line in result.out.splitlines()[1:]] == ["4"]
    result = enqueue_cli("history", "--site", "zulu")
    assert (result.code, result.out) == (0, "no turn records for site zulu\n")


def test_history_json_has_the_documented_keys(enqueue_cli, database):
    stage(database)
    data = json.loads(enqueue_cli("history", "--json", "--limit", "0").out)
    assert set(data) == {"turns"}
    assert [t["turn"] for t in data["turns"]] == [4, 3, 2, 1]
    assert all(set(t) == JSON_KEYS for t in data["turns"])
    assert data["turns"][0]["how"] == "skipped" and data["turns"][0]["duration_s"] == 3700
    assert data["turns"][1]["exit_code"] is None and data["turns"][2]["exit_code"] == 3


def test_history_of_an_empty_database(enqueue_cli, database):
    result = enqueue_cli("history")
    assert (result.code, result.out) == (0, "no turn records\n")
    assert json.loads(enqueue_cli("history", "--json").out) == {"turns": []}


def test_history_usage_errors(enqueue_cli, database):
    for args in (("--limit", "-1"), ("--limit", "x")):
        result = enqueue_cli("history", *args)
        assert result.code == 2 and result.err.count("\n") == 1, args


def test_history_help_is_accurate(enqueue_cli):
    text = enqueue_cli.help_text("history")
    for expected in ("usage: enqueue history", "CONFIG", "--site SITE", "--limit N", "(default: 20; 0: all)",
                     "--json", "newest first", "--log-level"):
        assert expected in text, expected
