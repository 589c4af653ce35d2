"""Documents: tolerant parsing, rendering that round-trips and keeps what it does not know."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from enqueue import documents as docs
from enqueue.documents import (
    DONE,
    GRANTED,
    IDLE,
    LEFT,
    RUNNING,
    WAITING,
    Heartbeat,
    LeaderDoc,
    TurnRecord,
    heartbeat_id,
    new_leader_doc,
    new_sites_doc,
    parse_heartbeat,
    parse_leader,
    parse_sites,
    parse_turn_record,
    render_heartbeat,
    render_leader,
    render_sites,
    render_turn_record,
    turn_record_id,
)

LEADER_ID = "enqueue_leader"
SITES_ID = "enqueue_sites"


def stored(body: dict) -> dict:
    """What a document looks like after a trip through JSON (as CouchDB returns it)."""
    return json.loads(json.dumps(body))


def good_leader_raw(**changes) -> dict:
    raw = {
        "_id": LEADER_ID,
        "_rev": "7-abc",
        "type": "enqueue_leader",
        "schema": 1,
        "leader": "alpha",
        "leader_term": 3,
        "running": "beta",
        "status": RUNNING,
        "turn": 12,
        "rotation": ["alpha", "beta", "gamma"],
        "paused": False,
        "paused_reason": None,
        "skip_turn": None,
        "last_exit_code": 0,
        "last_how": "exited",
        "granted_at": "2026-01-01 00:00:00",
        "started_at": "2026-01-01 00:00:01",
        "ended_at": None,
        "updated_by": "beta",
        "updated_at": "2026-01-01 00:00:01",
    }
    raw.update(changes)
    return raw


# ---------------------------------------------------------------- leader doc


LEADER_DOCS = [
    new_leader_doc(LEADER_ID),
    LeaderDoc(doc_id=LEADER_ID, rev="3-x", leader="alpha", leader_term=2, status=DONE, turn=5),
    LeaderDoc(
        doc_id=LEADER_ID,
        rev="9-y",
        leader="alpha",
        leader_term=4,
        running="beta",
        status=GRANTED,
        turn=8,
        rotation=("alpha", "beta"),
        paused=True,
        paused_reason="maintenance",
        skip_turn=8,
        last_exit_code=-15,
        last_how="revoked",
        granted_at="g",
        started_at=None,
        ended_at="e",
        updated_by="alpha",
        updated_at="u",
    ),
    LeaderDoc(doc_id=LEADER_ID, leader=None, running="c-1.x_y", status=RUNNING, turn=2**40, last_exit_code=255),
]


@pytest.mark.parametrize("doc", LEADER_DOCS, ids=range(len(LEADER_DOCS)))
def test_leader_round_trip(doc: LeaderDoc) -> None:
    body = stored(render_leader(doc))
    parsed, problems = parse_leader(body, LEADER_ID)
    assert problems == []
    assert parsed == doc
    assert body["_id"] == LEADER_ID
    if doc.rev is None:
        assert "_rev" not in body
    else:
        assert body["_rev"] == doc.rev
    # And once more: rendering what was parsed changes nothing.
    assert stored(render_leader(parsed)) == body


def test_leader_parse_of_good_raw_has_no_problems() -> None:
    doc, problems = parse_leader(good_leader_raw(), LEADER_ID)
    assert problems == []
    assert doc is not None
    assert (doc.leader, doc.leader_term, doc.running, doc.status, doc.turn) == ("alpha", 3, "beta", RUNNING, 12)
    assert doc.rotation == ("alpha", "beta", "gamma")
    assert doc.rev == "7-abc"
    assert doc.holds("beta") and doc.holds("beta", 12)
    assert not doc.holds("beta", 11) and not doc.holds("alpha")


def test_leader_render_keeps_unknown_fields() -> None:
    raw = good_leader_raw(admin_note="do not touch", future_field={"a": [1, 2]})
    doc, _ = parse_leader(raw, LEADER_ID)
    assert doc is not None
    new = replace(doc, status=DONE, last_exit_code=3)
    body = render_leader(new)
    assert body["admin_note"] == "do not touch"
    assert body["future_field"] == {"a": [1, 2]}
    assert body["status"] == DONE and body["last_exit_code"] == 3
    assert body["_rev"] == "7-abc"


def test_leader_render_does_not_alias_the_raw_document() -> None:
    raw = good_leader_raw()
    doc, _ = parse_leader(raw, LEADER_ID)
    assert doc is not None
    body = render_leader(replace(doc, turn=13))
    assert raw["turn"] == 12 and body["turn"] == 13


def test_leader_render_without_rev_drops_a_stale_one() -> None:
    doc, _ = parse_leader(good_leader_raw(), LEADER_ID)
    assert doc is not None
    assert "_rev" not in render_leader(replace(doc, rev=None))


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"turn": "abc"}, "turn"),
        ({"turn": 1.5}, "turn"),
        ({"turn": True}, "turn"),
        ({"turn": -3}, "turn"),
        ({"turn": None}, "turn"),
        ({"status": "maybe"}, "status"),
        ({"status": 1}, "status"),
        ({"status": None}, "status"),
        ({"running": 42}, "running"),
        ({"running": "not a site!"}, "running"),
        ({"running": ["beta"]}, "running"),
        ({"leader_term": -1}, "leader_term"),
        ({"leader_term": "3"}, "leader_term"),
        ({"status": RUNNING, "running": None}, "running"),
        ({"status": GRANTED, "running": None}, "running"),
    ],
)
def test_leader_garbage_is_rejected_with_the_field_named(changes: dict, field: str) -> None:
    doc, problems = parse_leader(good_leader_raw(**changes), LEADER_ID)
    assert doc is None
    assert problems
    assert any(f"'{field}'" in p for p in problems), problems


@pytest.mark.parametrize("field", ["turn", "status", "leader_term"])
def test_leader_missing_core_field_is_rejected(field: str) -> None:
    raw = good_leader_raw()
    del raw[field]
    doc, problems = parse_leader(raw, LEADER_ID)
    assert doc is None
    assert any(f"'{field}'" in p and "missing" in p for p in problems), problems


@pytest.mark.parametrize("raw", [["a", "list"], "text", 42, True])
def test_leader_not_an_object(raw) -> None:
    doc, problems = parse_leader(raw, LEADER_ID)
    assert doc is None
    assert problems == ["document is not an object"]


def test_leader_absent_is_none_without_problems() -> None:
    assert parse_leader(None, LEADER_ID) == (None, [])


def test_leader_running_garbage_when_done_only_loses_the_last_runner() -> None:
    # ``running`` names the last runner once a turn is done: optional, so a bad
    # value falls back to "nobody" and is reported, not fatal.
    doc, problems = parse_leader(good_leader_raw(status=DONE, running=42), LEADER_ID)
    assert doc is not None
    assert doc.running is None and not doc.turn_active
    assert any("'running'" in p for p in problems)


@pytest.mark.parametrize(
    "field, bad, attr, default",
    [
        # A flag that does not parse errs on the safe side: paused.
        ("paused", "yes", "paused", True),
        ("paused", 1, "paused", True),
        ("paused_reason", 5, "paused_reason", None),
        ("skip_turn", "7", "skip_turn", None),
        ("skip_turn", -1, "skip_turn", None),
        ("last_exit_code", "0", "last_exit_code", None),
        ("last_exit_code", 1.0, "last_exit_code", None),
        ("last_how", ["x"], "last_how", None),
        ("leader", 7, "leader", None),
        ("leader", "bad name", "leader", None),
        ("granted_at", 12345, "granted_at", None),
        ("updated_by", {"a": 1}, "updated_by", None),
        ("rotation", "alpha,beta", "rotation", ()),
        ("rotation", ["alpha", 3], "rotation", ()),
        ("rotation", ["alpha", "bad name"], "rotation", ()),
    ],
)
def test_leader_optional_field_with_wrong_type_falls_back(field: str, bad, attr: str, default) -> None:
    doc, problems = parse_leader(good_leader_raw(**{field: bad}), LEADER_ID)
    assert doc is not None
    assert getattr(doc, attr) == default
    assert any(f"'{field}'" in p for p in problems), problems
    # The other fields are untouched.
    assert (doc.turn, doc.status, doc.running) == (12, RUNNING, "beta")


def test_leader_optional_fields_may_be_absent() -> None:
    raw = {"_id": LEADER_ID, "_rev": "1-a", "leader_term": 0, "status": DONE, "turn": 0}
    doc, problems = parse_leader(raw, LEADER_ID)
    assert problems == []
    assert doc == replace(new_leader_doc(LEADER_ID), rev="1-a")


def test_leader_rotation_is_sorted_and_deduplicated() -> None:
    doc, problems = parse_leader(good_leader_raw(rotation=["gamma", "alpha", "gamma"]), LEADER_ID)
    assert problems == [] and doc is not None
    assert doc.rotation == ("alpha", "gamma")


def test_leader_problem_text_is_short_for_huge_values() -> None:
    _, problems = parse_leader(good_leader_raw(turn="x" * 10_000), LEADER_ID)
    assert problems and all(len(p) < 200 for p in problems)


# ---------------------------------------------------------------- sites doc


def good_sites_raw() -> dict:
    return {
        "_id": SITES_ID,
        "_rev": "4-s",
        "type": "enqueue_sites",
        "schema": 1,
        "admin_note": "keep me",
        "sites": {
            "alpha": {"heartbeat_doc": heartbeat_id("alpha"), "drained": False, "added_at": "x"},
            "beta": {"heartbeat_doc": "custom:beta", "drained": True},
            "gamma": {},
        },
    }


def test_sites_parse() -> None:
    doc, problems = parse_sites(good_sites_raw(), SITES_ID)
    assert problems == [] and doc is not None
    assert sorted(doc.sites) == ["alpha", "beta", "gamma"]
    assert doc.sites["beta"].heartbeat_doc == "custom:beta" and doc.sites["beta"].drained
    assert doc.sites["gamma"].heartbeat_doc == heartbeat_id("gamma") and not doc.sites["gamma"].drained
    assert doc.rev == "4-s"


@pytest.mark.parametrize("raw", [good_sites_raw(), docs.render_sites(new_sites_doc(SITES_ID))], ids=["full", "new"])
def test_sites_round_trip(raw: dict) -> None:
    doc, _ = parse_sites(raw, SITES_ID)
    assert doc is not None
    body = stored(render_sites(doc))
    again, problems = parse_sites(body, SITES_ID)
    assert problems == []
    assert again == doc
    assert body.get("_rev") == doc.rev


def test_names_the_server_refuses_are_ignored() -> None:
    """A trailing newline passes a ``^...$`` pattern in Python but not the server's rule."""
    raw = good_sites_raw()
    raw["sites"]["delta\n"] = {}
    doc, problems = parse_sites(raw, SITES_ID)
    assert doc is not None and sorted(doc.sites) == ["alpha", "beta", "gamma"]
    assert problems == ["site name 'delta\\n' is not valid; entry ignored"]
    leader, problems = parse_leader(good_leader_raw(leader="alpha\n", rotation=["alpha", "beta\n"]), LEADER_ID)
    assert leader is not None and leader.leader is None and leader.rotation == ()
    assert any("field 'leader' is not a site name" in p for p in problems), problems


def test_sites_render_keeps_unknown_fields() -> None:
    doc, _ = parse_sites(good_sites_raw(), SITES_ID)
    assert doc is not None
    body = render_sites(doc, {"delta": {"heartbeat_doc": heartbeat_id("delta")}})
    assert body["admin_note"] == "keep me"
    assert body["sites"]["alpha"]["added_at"] == "x"
    parsed, _ = parse_sites(body, SITES_ID)
    assert parsed is not None and sorted(parsed.sites) == ["alpha", "beta", "delta", "gamma"]


def test_sites_changes_and_removal() -> None:
    doc, _ = parse_sites(good_sites_raw(), SITES_ID)
    assert doc is not None
    body = render_sites(doc, {"beta": {"heartbeat_doc": "custom:beta", "drained": False}, "gamma": None})
    parsed, _ = parse_sites(body, SITES_ID)
    assert parsed is not None
    assert sorted(parsed.sites) == ["alpha", "beta"]
    assert not parsed.sites["beta"].drained
    assert render_sites(doc)["sites"] == good_sites_raw()["sites"], "rendering must not change the parsed doc's raw"


@pytest.mark.parametrize(
    "name, entry, problem",
    [
        ("bad name", {"heartbeat_doc": "x"}, "not valid"),
        ("-dash", {}, "not valid"),
        ("delta", "not an object", "not an object"),
        ("delta", ["x"], "not an object"),
    ],
)
def test_sites_bad_entry_is_skipped_and_kept_on_render(name: str, entry, problem: str) -> None:
    raw = good_sites_raw()
    raw["sites"][name] = entry
    doc, problems = parse_sites(raw, SITES_ID)
    assert doc is not None
    assert name not in doc.sites
    assert sorted(doc.sites) == ["alpha", "beta", "gamma"]
    assert any(problem in p for p in problems), problems
    body = render_sites(doc, {"alpha": {"heartbeat_doc": heartbeat_id("alpha"), "drained": True}})
    assert body["sites"][name] == entry, "another site's write must leave the bad entry as it was"
    assert body["sites"]["alpha"]["drained"] is True
    assert body["sites"]["beta"] == raw["sites"]["beta"]


@pytest.mark.parametrize(
    "entry, field, attr, default",
    [
        ({"heartbeat_doc": 5}, "heartbeat_doc", "heartbeat_doc", heartbeat_id("delta")),
        ({"drained": "yes"}, "drained", "drained", True),
        ({"drained": 1}, "drained", "drained", True),
    ],
)
def test_sites_entry_field_with_wrong_type_falls_back(entry: dict, field: str, attr: str, default) -> None:
    raw = good_sites_raw()
    raw["sites"]["delta"] = entry
    doc, problems = parse_sites(raw, SITES_ID)
    assert doc is not None
    assert getattr(doc.sites["delta"], attr) == default
    assert any("delta" in p and f"'{field}'" in p for p in problems), problems
    body = render_sites(doc, {"alpha": {"heartbeat_doc": heartbeat_id("alpha")}})
    assert body["sites"]["delta"] == entry


@pytest.mark.parametrize("sites", [None, [], "alpha", 3])
def test_sites_without_an_object_of_entries_does_not_parse(sites) -> None:
    raw = good_sites_raw()
    raw["sites"] = sites
    doc, problems = parse_sites(raw, SITES_ID)
    assert doc is None
    assert any("'sites'" in p for p in problems)


@pytest.mark.parametrize("raw", [[1, 2], "x"])
def test_sites_not_an_object(raw) -> None:
    assert parse_sites(raw, SITES_ID) == (None, ["document is not an object"])


def test_sites_absent() -> None:
    assert parse_sites(None, SITES_ID) == (None, [])


# ---------------------------------------------------------------- heartbeats


HEARTBEATS = [
    Heartbeat(site="alpha"),
    Heartbeat(
        site="alpha",
        state=WAITING,
        repeat=True,
        host="h1.example",
        pid=1234,
        instance="abc",
        beat=17,
        time="2026-01-01 00:00:00",
        turn=4,
        message="hello",
        rev="3-h",
        heartbeat_delay_s=600.0,
        heartbeat_stale_s=1800.0,
    ),
    Heartbeat(site="b.site", state=LEFT, beat=0, rev="1-a"),
    Heartbeat(site="c", state=RUNNING, repeat=False, turn=9, pid=1),
]


@pytest.mark.parametrize("hb", HEARTBEATS, ids=range(len(HEARTBEATS)))
def test_heartbeat_round_trip(hb: Heartbeat) -> None:
    body = stored(render_heartbeat(hb))
    assert body["_id"] == heartbeat_id(hb.site)
    parsed, problems = parse_heartbeat(body, hb.site)
    assert problems == []
    assert parsed == hb


def test_heartbeat_extra_fields_are_written() -> None:
    body = render_heartbeat(Heartbeat(site="a", state=IDLE), {"last_exit_code": 3})
    assert body["last_exit_code"] == 3
    parsed, problems = parse_heartbeat(body, "a")
    assert problems == [] and parsed is not None and parsed.state == IDLE


@pytest.mark.parametrize(
    "state, repeat, wants",
    [
        (WAITING, False, True),
        (WAITING, True, True),
        (RUNNING, True, True),
        (RUNNING, False, False),
        (IDLE, True, False),
        (LEFT, True, False),
        (None, True, False),
    ],
)
def test_heartbeat_wants_turn(state, repeat: bool, wants: bool) -> None:
    assert Heartbeat(site="a", state=state, repeat=repeat).wants_turn is wants


@pytest.mark.parametrize("state", ["maybe", "WAITING", 3, ["waiting"], True, ""])
def test_heartbeat_with_bad_state_wants_no_turn(state) -> None:
    hb, problems = parse_heartbeat({"state": state, "repeat": True, "beat": 5}, "alpha")
    assert hb is not None
    assert hb.state is None
    assert not hb.wants_turn
    assert any("'state'" in p for p in problems)
    assert hb.beat == 5


@pytest.mark.parametrize(
    "field, bad, attr, default",
    [
        ("repeat", "yes", "repeat", False),
        ("pid", "1234", "pid", None),
        ("pid", -1, "pid", None),
        ("beat", "x", "beat", 0),
        ("turn", 1.5, "turn", None),
        ("host", 5, "host", None),
        ("heartbeat_stale_s", "30", "heartbeat_stale_s", None),
        ("heartbeat_stale_s", 0, "heartbeat_stale_s", None),
        ("heartbeat_stale_s", -5.0, "heartbeat_stale_s", None),
        ("heartbeat_stale_s", True, "heartbeat_stale_s", None),
        ("heartbeat_delay_s", float("inf"), "heartbeat_delay_s", None),
    ],
)
def test_heartbeat_bad_optional_fields_fall_back(field: str, bad, attr: str, default) -> None:
    hb, problems = parse_heartbeat({"state": WAITING, field: bad}, "alpha")
    assert hb is not None
    assert getattr(hb, attr) == default
    assert hb.state == WAITING
    assert any(f"'{field}'" in p for p in problems)


@pytest.mark.parametrize(
    "delay_s, stale_s, lease_s",
    [(600.0, 1800.0, 1200.0), (0.5, 2.0, 1.5), (None, 2.0, None), (0.5, None, None)],
)
def test_heartbeat_lease_is_stale_minus_delay_when_both_are_announced(delay_s, stale_s, lease_s) -> None:
    hb, problems = parse_heartbeat({"state": WAITING, "heartbeat_delay_s": delay_s, "heartbeat_stale_s": stale_s}, "a")
    assert problems == [] and hb is not None
    assert hb.lease_s == lease_s


def test_heartbeat_not_an_object_and_absent() -> None:
    assert parse_heartbeat(["x"], "a") == (None, ["document is not an object"])
    assert parse_heartbeat(None, "a") == (None, [])


def test_heartbeat_repeat_with_bad_type_makes_a_runner_want_nothing() -> None:
    hb, _ = parse_heartbeat({"state": RUNNING, "repeat": "true"}, "a")
    assert hb is not None and not hb.wants_turn


# ---------------------------------------------------------------- turn records


RECORDS = [
    TurnRecord(turn=1, site="alpha", how="exited", exit_code=0),
    TurnRecord(
        turn=123,
        site="beta",
        how="revoked",
        exit_code=-9,
        host="h",
        leader="alpha",
        started_at="s",
        ended_at="e",
        duration_s=12.5,
        note="n",
    ),
    TurnRecord(turn=0, site="c", how="not started", duration_s=0.0),
]


@pytest.mark.parametrize("rec", RECORDS, ids=range(len(RECORDS)))
def test_turn_record_round_trip(rec: TurnRecord) -> None:
    body = stored(render_turn_record(rec))
    assert body["_id"] == turn_record_id(rec.turn)
    parsed, problems = parse_turn_record(body)
    assert problems == []
    assert parsed == rec


def test_turn_record_duration_is_rounded_once() -> None:
    body = render_turn_record(TurnRecord(turn=1, site="a", how="exited", duration_s=1.23456))
    assert body["duration_s"] == 1.235
    parsed, _ = parse_turn_record(body)
    assert parsed is not None and render_turn_record(parsed) == body


@pytest.mark.parametrize(
    "raw, field",
    [
        ({"site": "a"}, "turn"),
        ({"turn": "1", "site": "a"}, "turn"),
        ({"turn": -1, "site": "a"}, "turn"),
        ({"turn": 1}, "site"),
        ({"turn": 1, "site": "bad name"}, "site"),
        ({"turn": 1, "site": 3}, "site"),
    ],
)
def test_turn_record_unusable(raw: dict, field: str) -> None:
    rec, problems = parse_turn_record(raw)
    assert rec is None
    assert any(f"'{field}'" in p for p in problems), problems


@pytest.mark.parametrize(
    "raw, attr, default, field",
    [
        ({"turn": 1, "site": "a", "duration_s": "5"}, "duration_s", None, "duration_s"),
        ({"turn": 1, "site": "a", "duration_s": True}, "duration_s", None, "duration_s"),
        ({"turn": 1, "site": "a", "exit_code": "0"}, "exit_code", None, "exit_code"),
        ({"turn": 1, "site": "a", "how": 5}, "how", "unknown", "how"),
    ],
)
def test_turn_record_optional_garbage(raw: dict, attr: str, default, field: str) -> None:
    rec, problems = parse_turn_record(raw)
    assert rec is not None and getattr(rec, attr) == default
    assert any(f"'{field}'" in p for p in problems)


def test_turn_record_not_an_object() -> None:
    assert parse_turn_record([1]) == (None, ["document is not an object"])
    assert parse_turn_record(None) == (None, [])


def test_turn_record_ids_sort_by_number() -> None:
    turns = [1, 2, 9, 10, 11, 99, 100, 101, 999, 1000, 123456, 9_999_999_999]
    ids = [turn_record_id(t) for t in turns]
    assert sorted(ids) == ids
    assert sorted(reversed(ids)) == ids
    assert all(i.startswith(docs.TURN_PREFIX) for i in ids)
    assert len(set(ids)) == len(ids)
