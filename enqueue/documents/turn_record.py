"""A turn record: one finished turn, written once when it ends (docs/PROTOCOL.md §2).

Guarantees: ``parse_turn_record`` never raises and refuses (``None``) a
record whose turn or site is unusable; ``render_turn_record`` gives the one
stored form, under the record id of its turn. Not here: when a record is
written or how an outcome is read from it (``enqueue.records``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from enqueue.documents.fields import Fields, document_parser
from enqueue.documents.ids import MAX_TURN, SCHEMA_VERSION, TURN_PREFIX, turn_record_id


@dataclass(frozen=True)
class TurnRecord:
    """One finished turn, written once when it ends.

    ``copied_by`` names the site that stored it from the result the leader
    doc carried (``LeaderDoc.last_record``), when that is not the site
    whose turn it was: the copy says only what the runner wrote there.
    """

    turn: int
    site: str
    how: str
    exit_code: int | None = None
    host: str | None = None
    leader: str | None = None
    started_at: str | None = None
    ended_at: str | None = None
    duration_s: float | None = None
    note: str | None = None
    copied_by: str | None = None


@document_parser
def parse_turn_record(raw: Mapping[str, Any] | None) -> tuple[TurnRecord | None, list[str]]:
    """Parse a turn record (for history); ``None`` when turn or site is unusable."""
    f = Fields(raw)
    duration = raw.get("duration_s")
    if duration is not None and (isinstance(duration, bool) or not isinstance(duration, (int, float))):
        f.problems.append(f"field 'duration_s' should be a number, not {duration!r:.60}")
        duration = None
    rec = TurnRecord(
        turn=f.integer("turn", required=True, maximum=MAX_TURN) or 0,
        site=f.site("site", required=True) or "",
        how=f.text("how") or "unknown",
        exit_code=f.integer("exit_code", None, minimum=-(2**31)),
        host=f.text("host"),
        leader=f.text("leader"),
        started_at=f.text("started_at"),
        ended_at=f.text("ended_at"),
        duration_s=float(duration) if duration is not None else None,
        note=f.text("note"),
        copied_by=f.site("copied_by"),
    )
    if f.fatal:
        return None, f.problems
    return rec, f.problems


def render_turn_record(rec: TurnRecord, prefix: str = TURN_PREFIX) -> dict[str, Any]:
    """The stored form of a turn record (created once, never updated by the protocol), under ``prefix``."""
    return {"_id": turn_record_id(rec.turn, prefix), "type": "enqueue_turn", "schema": SCHEMA_VERSION,
            **record_fields(rec)}


def record_fields(rec: TurnRecord) -> dict[str, Any]:
    """What a record says, without its id: also the form a leader doc carries it in (``last_record``)."""
    out = {
        "turn": rec.turn,
        "site": rec.site,
        "how": rec.how,
        "exit_code": rec.exit_code,
        "host": rec.host,
        "leader": rec.leader,
        "started_at": rec.started_at,
        "ended_at": rec.ended_at,
        "duration_s": None if rec.duration_s is None else round(rec.duration_s, 3),
        "note": rec.note,
    }
    if rec.copied_by is not None:
        out["copied_by"] = rec.copied_by
    return out
