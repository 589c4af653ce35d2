"""The leader doc: tolerant parsing, rendering that round-trips and keeps what it does not know."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from enqueue.documents.ids import DONE, GRANTED, MAX_TURN, RUNNING
from enqueue.documents.leader import LeaderDoc, new_leader_doc, parse_leader, render_leader
from tests.support.documents import stored

LEADER_ID = "enqueue_leader"


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
    LeaderDoc(doc_id=LEADER_ID, leader=None, running="c-1.x_y", status=RUNNING, turn=MAX_TURN, last_exit_code=255),
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


def test_leader_names_the_server_refuses_are_ignored() -> None:
    """A trailing newline passes a ``^...$`` pattern in Python but not the server's rule."""
    leader, problems = parse_leader(good_leader_raw(leader="alpha\n", rotation=["alpha", "beta\n"]), LEADER_ID)
    assert leader is not None and leader.leader is None and leader.rotation == ()
    assert any("field 'leader' is not a site name" in p for p in problems), problems


def test_leader_turn_beyond_the_id_width_is_refused() -> None:
    assert parse_leader({"leader_term": 1, "status": DONE, "turn": MAX_TURN + 1}, LEADER_ID)[0] is None
