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
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Optional

from enqueue.documents import MAX_TURN


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
