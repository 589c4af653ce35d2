"""Where a repaired leader doc resumes its turn numbers (the fencing token), from what may be trusted.

An agent rewrites a leader doc that is missing or does not parse (only an
admin can make it so). The new doc must not hand out a turn number that
already ran (docs/PROTOCOL.md §3.10); and, as far as anything bounds them,
numbers a site account can write (a turn record, a heartbeat) must not push
the numbering further than could have run: a site could otherwise pick the
next fencing token, or push it past the widest turn an id holds and stop
the rotation.

What counts:

* trusted: the highest turn this agent saw in the leader doc while it
  parsed, and the old doc's own ``turn`` when it is a valid number (an admin
  wrote it);
* claimed: one above the newest turn record (every turn has its record
  before the write that ends it, so only the turn in progress when the doc
  was lost can lack one), and the turns heartbeats name.

A claim counts up to the old doc's revision count when the doc is still
there: a site's write raises ``turn`` by one at most and adds one revision,
so no turn that ran is beyond that count unless an admin set it (and then
the old ``turn`` says so). A missing doc leaves no revision count to go by:
there claims count in full (up to the widest turn an id holds), because a
fencing token handed out twice is worse than numbering pushed ahead. That is
a limit: after an admin deletes the leader doc, a site account's forged
record or heartbeat can move the numbering forward (docs/SECURITY.md).
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Optional

from enqueue.documents import MAX_TURN


def _valid_turn(value: Any) -> int:
    ok = isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_TURN
    return value if ok else 0


def revision_count(raw: Optional[Mapping[str, Any]]) -> int:
    """How many revisions the document ``raw`` has had (the number before the dash of ``_rev``); 0 if unknown."""
    rev = raw.get("_rev") if isinstance(raw, Mapping) else None
    head = rev.split("-", 1)[0] if isinstance(rev, str) else ""
    return int(head) if head.isdigit() else 0


def resume_turn(seen: int, old: Optional[Mapping[str, Any]], newest_record_turn: Optional[int],
                heartbeat_turns: Iterable[int] = ()) -> int:
    """The turn a rewritten leader doc starts at: never below what ran, never above what could have run.

    ``seen`` is the highest turn the agent saw, ``old`` the leader doc being
    replaced (None when missing), ``newest_record_turn`` the highest turn
    record's number (None when there is none), ``heartbeat_turns`` the turns
    the heartbeats name. The validation function refuses a site's rewrite
    above the same bound.
    """
    trusted = max(_valid_turn(seen), _valid_turn(old.get("turn")) if isinstance(old, Mapping) else 0)
    claims = [_valid_turn(n) for n in heartbeat_turns]
    if newest_record_turn is not None and newest_record_turn >= 0:
        claims.append(min(newest_record_turn + 1, MAX_TURN))
    claimed = max(claims, default=0)
    bound = max(trusted, min(revision_count(old), MAX_TURN)) if isinstance(old, Mapping) and old else MAX_TURN
    return max(trusted, min(claimed, bound))
