"""Where a repaired leader doc resumes its turn numbers (the fencing token), from what may be trusted.

An agent rewrites a leader doc that is missing or does not parse (only an
admin can make it so). The new doc must not hand out a turn number that
already ran (docs/PROTOCOL.md §3.11, §5.2), and no number a site account can
write (a turn record, a heartbeat) may decide where it resumes.

The bound: the revision count of the revision being replaced, the broken
document's or the tombstone an admin's deletion left (a deletion is a
revision too, and re-creating a deleted document continues its count). Every
write the protocol makes to the leader doc raises ``turn`` by one at most
and adds one revision, a fresh document starts at turn 0, and a repair
writes at most the count of the revision it replaces, one below the count
of its own: so ``turn`` is below the revision count of every revision, and
no turn that ran is beyond the count of the revision that ended it. The
repair resumes at that count (or higher, at a turn it trusts): never a
token handed out twice, even for a turn in progress that no record and no
heartbeat names, whose agent died. The price is numbering pushed ahead by the
writes that granted nothing (elections, rotation changes, confirms, ends).
A site account adds revisions only by writing the leader doc, one
compare-and-swap at a time: it can push the numbering ahead no faster than
the server takes writes of one document.

Trusted beside the bound: the highest turn this agent saw in the leader doc
while it parsed, and the broken document's own ``turn`` when it is a valid
number (an admin wrote it). Only when no revision is known at all (the
document was purged, or never written under this name) do the claims count,
in full: one above the newest turn record and the turns heartbeats name
(safety first; a limit, docs/SECURITY.md).

Who writes the rebuild: an agent whose account may (an admin's, or a
site's over a document that does not parse, which the server's rules hold
to exactly this resume turn), or an admin (``enqueue repair``) where the
rules leave a missing document to admins. Both build it here
(``rebuilt_leader_doc``, ``displaced_record``) after the same wait.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Optional

from enqueue import documents as docs
from enqueue.documents import MAX_TURN, LeaderDoc, TurnRecord
from enqueue.outcomes import Outcome
from enqueue.site_names import is_site_name

if TYPE_CHECKING:
    from enqueue.store import Store

#: The heartbeat field that carries the highest turn number its agent has seen.
TURN_SEEN = "turn_seen"


def _valid_turn(value: Any) -> int:
    ok = isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_TURN
    return value if ok else 0


def revision_count(rev: Optional[str]) -> int:
    """How many revisions a document has had at revision ``rev`` (the number before the dash); 0 if unknown."""
    head = rev.split("-", 1)[0] if isinstance(rev, str) else ""
    return int(head) if head.isdigit() else 0


def resume_turn(seen: int, old: Optional[Mapping[str, Any]], replaced_rev: Optional[str],
                newest_record_turn: Optional[int], heartbeat_turns: Iterable[int] = ()) -> int:
    """The turn a rewritten leader doc starts at: at or above every turn that can have run.

    ``seen`` is the highest turn the agent saw, ``old`` the broken leader doc
    being replaced (None when missing), ``replaced_rev`` the revision the
    rewrite replaces (the broken document's, or the tombstone's; None when
    the document has none), ``newest_record_turn`` the highest turn record's
    number (None when there is none), ``heartbeat_turns`` the turns the
    heartbeats name. The validation function refuses a site's rewrite above
    the same bound.
    """
    trusted = max(_valid_turn(seen), _valid_turn(old.get("turn")) if isinstance(old, Mapping) else 0)
    bound = min(revision_count(replaced_rev), MAX_TURN)
    if bound > 0:
        return max(trusted, bound)
    claims = [_valid_turn(n) for n in heartbeat_turns]
    if newest_record_turn is not None and newest_record_turn >= 0:
        claims.append(min(newest_record_turn + 1, MAX_TURN))
    return max(trusted, *claims) if claims else trusted


def _number(value: object) -> Optional[int]:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def highest_turn_known(store: Store, seen: int, leader_raw: Optional[Mapping[str, Any]], replaced_rev: Optional[str],
                       prefix: str = docs.TURN_PREFIX, heartbeat_prefix: str = docs.HEARTBEAT_PREFIX) -> int:
    """The turn a rewritten leader doc starts from: ``resume_turn``'s rule, read from the database.

    ``prefix`` and ``heartbeat_prefix`` are the document set's (``docs.turn_prefix``, ``docs.heartbeat_prefix``).

    What the writer saw and the old document's own turn, and the revision
    count of the revision the rewrite replaces (the broken document's or the
    tombstone's). Only when the document has no revision at all do the newest
    turn record of this document set and the heartbeats (the turn a site
    runs, the highest its agent saw) count.
    """
    if revision_count(replaced_rev) > 0:
        return resume_turn(seen, leader_raw, replaced_rev, None)
    newest = None
    for rec in store.list_prefix(prefix, limit=1, descending=True):
        parsed, _ = docs.parse_turn_record(rec)
        newest = parsed.turn if parsed is not None else None
    heartbeats = store.list_prefix(heartbeat_prefix)
    claims = [n for raw in heartbeats for n in (_number(raw.get("turn")), _number(raw.get(TURN_SEEN))) if n is not None]
    return resume_turn(seen, leader_raw, replaced_rev, newest, claims)


def rebuilt_leader_doc(doc_id: str, old: Optional[Mapping[str, Any]], turn: int, leader: Optional[str],
                       by: str, now_text: str) -> LeaderDoc:
    """The rewrite of a leader doc that is missing (``old`` None) or does not parse, at ``turn``, written ``by``.

    ``leader`` leads it (the repairing site) or nobody does (None: an
    admin's rebuild); no turn is active; an admin's pause survives (a pause
    flag that does not parse reads as set); the old content is kept under
    ``repaired_from``.
    """
    raw = old or {}
    paused = "paused" in raw and raw["paused"] is not False and raw["paused"] is not None
    reason = raw.get("paused_reason") if isinstance(raw.get("paused_reason"), str) else None
    return replace(
        docs.new_leader_doc(doc_id),
        rev=raw.get("_rev"),
        leader=leader,
        turn=turn,
        paused=paused,
        paused_reason=reason,
        last_how=Outcome.REPAIRED,
        updated_by=by,
        updated_at=now_text,
        raw={"repaired_from": {k: v for k, v in raw.items() if not k.startswith("_")}},
    )


def displaced_record(last_valid: Optional[LeaderDoc], doc_id: str, by: str, now_text: str) -> Optional[TurnRecord]:
    """The record of the turn the writer's own last reading of the leader doc showed active, or None.

    Only the leader doc says who holds a turn: a writer that never read one
    that parsed, or saw no active turn, knows of none. ``repaired``, never
    ``not started``: a turn last seen granted may have been confirmed since.
    """
    if last_valid is None or last_valid.status not in (docs.GRANTED, docs.RUNNING) or \
            not is_site_name(last_valid.running):
        return None
    note = f"the leader doc {doc_id} was missing or did not parse; it was rewritten after heartbeat_stale"
    started = last_valid.started_at if last_valid.status == docs.RUNNING else None
    return TurnRecord(turn=last_valid.turn, site=last_valid.running, how=Outcome.REPAIRED, leader=by,
                      started_at=started, ended_at=now_text, note=note)
