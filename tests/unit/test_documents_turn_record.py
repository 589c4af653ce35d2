"""Turn records: tolerant parsing and the one stored form."""

from __future__ import annotations

import pytest

from enqueue.documents.ids import turn_record_id
from enqueue.documents.turn_record import TurnRecord, parse_turn_record, render_turn_record
from tests.support.documents import stored

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
        ({"turn": 10_000_000_000, "site": "a"}, "turn"),
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
