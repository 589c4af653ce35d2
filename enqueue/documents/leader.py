"""The leader doc: who leads, whose turn it is, and in which state the turn is (docs/PROTOCOL.md §2).

Guarantees: ``parse_leader`` never raises (``None`` plus problems when the
core fields are unusable: a missing ``turn`` is never read as 0, which would
hand the fencing token out again); ``render_leader`` keeps every stored
field it does not know and parses back to an equal value, carrying the
``_rev`` it was parsed from. Not here: what a leader does with it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from enqueue.documents.fields import Fields, document_parser
from enqueue.documents.ids import DONE, GRANTED, MAX_TURN, RUNNING, SCHEMA_VERSION, TURN_STATES
from enqueue.documents.turn_record import TurnRecord, parse_turn_record, record_fields
from enqueue.site_names import is_site_name


@dataclass(frozen=True)
class LeaderDoc:
    """Who leads, whose turn it is, and in which state the turn is.

    ``turn`` is the fencing token: it grows by one on every grant. ``running``
    names the site of the current (or, when ``status`` is done, the last) turn.
    ``rotation`` is the leader's published list of sites eligible for a turn,
    so a finishing site can pass the turn on in the same write that marks its
    own turn done (the leader still decides who is in it). ``grantee`` is
    the agent instance a grant was written for: that agent may start the
    turn on the grant alone, without a confirm (docs/PROTOCOL.md §3.5.7), so
    a grant that names one is taken back only the way a running turn is.
    ``last_record`` is the record of the last turn its own site finished,
    carried by the write that finished it: that site (or the next holder)
    stores it after the handoff, and no write replaces it before it is
    stored (docs/PROTOCOL.md §3.8.2).
    """

    doc_id: str
    rev: str | None = None
    leader: str | None = None
    leader_term: int = 0
    running: str | None = None
    status: str | None = None
    turn: int = 0
    rotation: tuple[str, ...] = ()
    paused: bool = False
    paused_reason: str | None = None
    skip_turn: int | None = None
    last_exit_code: int | None = None
    last_how: str | None = None
    grantee: str | None = None
    granted_at: str | None = None
    started_at: str | None = None
    ended_at: str | None = None
    updated_by: str | None = None
    updated_at: str | None = None
    last_record: TurnRecord | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def startable_grant(self) -> bool:
        """The turn is granted to a named agent instance, which may have started it without a confirm."""
        return self.status == GRANTED and self.grantee is not None

    @property
    def may_run(self) -> bool:
        """A command may run under the active turn: it is running, or granted to an instance that starts on it."""
        return self.status == RUNNING or self.startable_grant

    @property
    def turn_active(self) -> bool:
        """A turn is granted or running (somebody holds it)."""
        return self.running is not None and self.status in (GRANTED, RUNNING)

    def holds(self, site: str, turn: int | None = None) -> bool:
        """``site`` holds the active turn (optionally: that very turn number)."""
        return self.turn_active and self.running == site and (turn is None or self.turn == turn)


@document_parser
def parse_leader(raw: Mapping[str, Any] | None, doc_id: str) -> tuple[LeaderDoc | None, list[str]]:
    """Parse a leader doc; ``(None, problems)`` when its core fields are unusable."""
    f = Fields(raw)
    rotation_raw = raw.get("rotation", [])
    rotation: tuple[str, ...] = ()
    if isinstance(rotation_raw, list) and all(is_site_name(s) for s in rotation_raw):
        rotation = tuple(sorted(set(rotation_raw)))
    elif rotation_raw is not None:
        f.problems.append(f"field 'rotation' should be a list of site names, not {rotation_raw!r:.60}")
    doc = LeaderDoc(
        doc_id=doc_id,
        rev=raw.get("_rev"),
        leader=f.site("leader"),
        leader_term=f.integer("leader_term", required=True),
        running=f.site("running"),
        status=f.choice("status", TURN_STATES, required=True),
        turn=f.integer("turn", required=True, maximum=MAX_TURN),
        rotation=rotation,
        paused=f.flag("paused", if_malformed=True),
        paused_reason=f.text("paused_reason"),
        skip_turn=f.integer("skip_turn", None),
        last_exit_code=f.integer("last_exit_code", None, minimum=-(2**31)),
        last_how=f.text("last_how"),
        grantee=f.text("grantee"),
        granted_at=f.text("granted_at"),
        started_at=f.text("started_at"),
        ended_at=f.text("ended_at"),
        updated_by=f.text("updated_by"),
        updated_at=f.text("updated_at"),
        last_record=_carried_record(raw.get("last_record"), f.problems),
        raw=dict(raw),
    )
    if doc.status in (GRANTED, RUNNING) and doc.running is None:
        f.problems.append(f"status is {doc.status} but no site is named in 'running'")
        f.fatal = True
    if f.fatal:
        return None, f.problems
    return doc, f.problems


def _carried_record(raw: object, problems: list[str]) -> TurnRecord | None:
    if raw is None:
        return None
    rec, found = parse_turn_record(raw)
    if rec is None:
        problems.append(f"field 'last_record' is no turn record ({'; '.join(found)}); ignored")
    return rec


def new_leader_doc(doc_id: str) -> LeaderDoc:
    """The leader doc as first created: nobody leads, no turn was ever granted."""
    return LeaderDoc(doc_id=doc_id, status=DONE)


def render_leader(doc: LeaderDoc) -> dict[str, Any]:
    """The stored form of ``doc``: its raw fields overlaid with the parsed ones."""
    out = {k: v for k, v in doc.raw.items()}
    out.update(
        {
            "_id": doc.doc_id,
            "type": "enqueue_leader",
            "schema": SCHEMA_VERSION,
            "leader": doc.leader,
            "leader_term": doc.leader_term,
            "running": doc.running,
            "status": doc.status,
            "turn": doc.turn,
            "rotation": list(doc.rotation),
            "paused": doc.paused,
            "paused_reason": doc.paused_reason,
            "skip_turn": doc.skip_turn,
            "last_exit_code": doc.last_exit_code,
            "last_how": doc.last_how,
            "grantee": doc.grantee,
            "granted_at": doc.granted_at,
            "started_at": doc.started_at,
            "ended_at": doc.ended_at,
            "updated_by": doc.updated_by,
            "updated_at": doc.updated_at,
            "last_record": None if doc.last_record is None else record_fields(doc.last_record),
        }
    )
    if doc.rev is not None:
        out["_rev"] = doc.rev
    else:
        out.pop("_rev", None)
    return out
