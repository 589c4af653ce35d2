"""``enqueue history``: the turn records, newest first, as a table or JSON."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import replace

from enqueue import documents as docs
from tests.support.agents import CONFLICT, DELAY, GRACE, STALE
from tests.support.commands import enqueue_cli, put_record, put_sites  # noqa: F401  (fixture)

JSON_KEYS = {"turn", "site", "host", "leader", "how", "exit_code", "started_at", "ended_at", "duration_s", "note",
             "runner_report", "revoker_report", "outcome", "gap_before_s", "carried_in_leader_doc"}
NS = {"s": "http://www.w3.org/2000/svg"}


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
    assert lines[0].split() == ["TURN", "SITE", "HOST", "GAP", "STARTED", "(UTC)", "ENDED", "(UTC)", "DURATION",
                                "EXIT", "HOW", "NOTE"]
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
    put_sites(database.store, {"alpha": {}, "bravo": {}, "delta": {}})
    result = enqueue_cli("history", "--site", "delta")
    assert (result.code, result.out) == (0, "no turn records for site delta\n")


def test_history_of_a_site_that_never_existed_says_so(enqueue_cli, database):
    stage(database)
    put_sites(database.store, {"alpha": {}, "bravo": {}})
    result = enqueue_cli("history", "--site", "zulu")
    assert result.code == 1 and result.out == ""
    assert result.err.splitlines()[-1] == ("enqueue: site 'zulu' never took a turn and is not registered in "
                                           "enqueue_sites (registered: alpha, bravo); check the name")
    # A site that was removed from the registry still has its history.
    put_sites(database.store, {"bravo": {}})
    assert [line.split()[0] for line in enqueue_cli("history", "--site", "alpha").out.splitlines()[1:]] == ["3", "1"]


def test_history_shows_the_gap_before_each_turn(enqueue_cli, database):
    for turn, start, end in ((1, "2026-05-01 12:00:00", "2026-05-01 12:00:10"),
                             (2, "2026-05-01 12:00:12", "2026-05-01 12:00:20"),
                             (3, "2026-05-01 12:01:20", "2026-05-01 12:01:30")):
        database.store.put(docs.render_turn_record(docs.TurnRecord(
            turn=turn, site="alpha", how="exited", exit_code=0, started_at=start, ended_at=end,
            duration_s=(int(end[-2:]) - int(start[-2:])) % 60 or 10.0)))
    lines = enqueue_cli("history", "--limit", "2").out.splitlines()
    column = lines[0].split().index("GAP")
    assert [" ".join(line.split()[column:column + 2]) for line in lines[1:]] == ["1 min", "2 s"]
    turns = json.loads(enqueue_cli("history", "--json").out)["turns"]
    assert [t["gap_before_s"] for t in turns] == [60.0, 2.0, None]


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
    for expected in ("usage: enqueue history", "CONFIG", "--site SITE", "--limit N",
                     "(default: 20, all for --timeline; 0: all)", "--timeline FILE",
                     "--json", "newest first", "--log-level"):
        assert expected in text, expected


def _run_once(config, site: str, command: str) -> int:
    argv = [sys.executable, "-m", "enqueue", "run", str(config), site, "-d", DELAY, "-s", STALE, "-c", CONFLICT,
            "--kill-grace", GRACE, "--", "sh", "-c", command]
    return subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=60).returncode


def test_timeline_of_real_turns_is_an_svg_with_a_lane_per_site(enqueue_cli, database, config_file, tmp_path):
    for site, command, code in (("alpha", "exit 0", 0), ("bravo", "exit 3", 3), ("alpha", "sleep 0.3", 0)):
        assert _run_once(config_file, site, command) == code
    svg_path = tmp_path / "turns.svg"
    result = enqueue_cli("history", "--timeline", svg_path)
    assert result.code == 0, result.err
    assert result.out == f"wrote the timeline of 3 turns to {svg_path}\n"
    root = ET.parse(svg_path).getroot()
    lanes = {g.get("data-site"): [r for r in g.findall("s:rect", NS) if "bar" in (r.get("class") or "").split()]
             for g in root.iter(f"{{{NS['s']}}}g") if g.get("class") == "lane"}
    assert sorted(lanes) == ["alpha", "bravo"]
    assert [r.get("class") for r in lanes["alpha"]] == ["bar exited-0", "bar exited-0"]
    assert [r.get("class") for r in lanes["bravo"]] == ["bar failed"]
    assert lanes["bravo"][0].find("s:title", NS).text.startswith("turn 2, bravo: exited, exit code 3; started ")

    assert not [r for r in root.iter(f"{{{NS['s']}}}rect") if r.get("class") == "pause"]
    assert enqueue_cli("pause", "--reason", "maintenance").code == 0
    assert enqueue_cli("history", "--timeline", svg_path).code == 0
    shaded = [r for r in ET.parse(svg_path).getroot().iter(f"{{{NS['s']}}}rect") if r.get("class") == "pause"]
    assert len(shaded) == 1
    assert shaded[0].find("s:title", NS).text.endswith(" UTC (reason: maintenance), still paused")

    html_path = tmp_path / "turns.html"
    assert enqueue_cli("history", "--timeline", html_path, "--site", "bravo").code == 0
    page = html_path.read_text()
    assert page.startswith("<!DOCTYPE html>") and 'data-site="bravo"' in page and 'data-site="alpha"' not in page


def test_timeline_file_name_and_place_errors_are_one_line(enqueue_cli, database, tmp_path):
    result = enqueue_cli("history", "--timeline", tmp_path / "turns.png")
    assert result.code == 2 and result.err.count("\n") == 1 and "must end in .svg" in result.err
    result = enqueue_cli("history", "--timeline", tmp_path / "no-such-dir" / "turns.svg")
    assert result.code == 2 and result.err.count("\n") == 1 and "cannot write there" in result.err
    result = enqueue_cli("history", "--timeline", tmp_path / "t.svg", "--json")
    assert result.code == 2 and "not allowed with argument" in result.err


def test_history_says_when_the_command_ended_by_its_runners_report(enqueue_cli, database):
    # The leader took turn 6 away, by its own clock (hours off); the runner reported when its command ended.
    body = put_record(database.store, 6, "bravo", how="revoked", exit_code=None, duration_s=None)
    body.update(ended_at="2026-11-22 09:00:00", _rev=database.store.get(docs.turn_record_id(6))["_rev"],
                runner_report={"site": "bravo", "how": "exited after revocation", "exit_code": 0,
                               "ended_at": "2026-11-22 04:14:59", "duration_s": 7.0})
    database.store.put(body)
    [line] = enqueue_cli("history").out.splitlines()[1:]
    assert "2026-11-22 04:14:59" in line and "09:00:00" not in line and " 7 s " in line, line
    assert "exited after revocation" in line
    [turn] = json.loads(enqueue_cli("history", "--json").out)["turns"]
    assert turn["ended_at"] == "2026-11-22 09:00:00", "the record's own fields stay as stored"
    assert (turn["outcome"]["ended_at"], turn["outcome"]["duration_s"]) == ("2026-11-22 04:14:59", 7.0)


def test_history_takes_a_revokers_word_over_a_dead_leaders_not_started(enqueue_cli, database):
    # Alpha recorded turn 8 'not started' and died before its write; bravo ran it, and charlie took it back.
    body = put_record(database.store, 8, "bravo", how="not started", exit_code=None, duration_s=None)
    body.update(leader="alpha", _rev=database.store.get(docs.turn_record_id(8))["_rev"],
                revoker_report={"leader": "charlie", "how": "revoked", "started_at": "2026-11-22 04:00:00",
                                "ended_at": "2026-11-22 04:01:00", "note": "bravo is stale"})
    database.store.put(body)
    [line] = enqueue_cli("history").out.splitlines()[1:]
    assert " revoked " in line and "not started" not in line.split("revoked")[0], line
    assert "charlie found it started" in line and "2026-11-22 04:01:00" in line
    [turn] = json.loads(enqueue_cli("history", "--json").out)["turns"]
    assert turn["how"] == "not started" and turn["revoker_report"]["leader"] == "charlie"
    assert (turn["outcome"]["how"], turn["outcome"]["ended_at"]) == ("revoked", "2026-11-22 04:01:00")
    assert "alpha" in turn["outcome"]["note"]


def test_history_shows_the_record_the_leader_doc_carries_until_one_is_stored(enqueue_cli, database):
    """The write that finished turn 6 carried its record; nobody has stored it yet (docs/PROTOCOL.md §3.8.2)."""
    stage(database)
    raw = database.store.get("enqueue_leader") or {"_id": "enqueue_leader"}
    doc, _ = docs.parse_leader(dict(raw, status=raw.get("status", "done"), turn=raw.get("turn", 6),
                                    leader_term=raw.get("leader_term", 0)), "enqueue_leader")
    carried = docs.TurnRecord(turn=6, site="bravo", how="exited", exit_code=0, host="bravo-host",
                              started_at="2026-01-01 10:00:00", ended_at="2026-01-01 10:00:02", duration_s=2.0)
    database.store.put(docs.render_leader(replace(doc, turn=7, status="granted", running="alpha",
                                                  last_record=carried)))
    data = json.loads(enqueue_cli("history", "--json", "--limit", "0").out)
    assert [t["turn"] for t in data["turns"]] == [6, 4, 3, 2, 1]
    assert data["turns"][0]["carried_in_leader_doc"] is True and data["turns"][0]["site"] == "bravo"
    assert not any(t["carried_in_leader_doc"] for t in data["turns"][1:])
    put_record(database.store, 6, "bravo", duration_s=2.0)
    data = json.loads(enqueue_cli("history", "--json", "--limit", "0").out)
    assert [t["turn"] for t in data["turns"]] == [6, 4, 3, 2, 1]
    assert data["turns"][0]["carried_in_leader_doc"] is False
