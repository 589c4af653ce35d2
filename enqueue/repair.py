"""Where a repaired leader doc resumes its turn numbers (the fencing token), from what may be trusted.

An agent rewrites a leader doc that is missing or does not parse (only an
admin can make it so). The new doc must not hand out a turn number that
already ran, and no number a site account can write (a turn record, a
heartbeat) may push the numbering further than the agents have seen: a
site could otherwise pick the next fencing token, or push it past the
widest turn an id holds and stop the rotation.

What counts:

* the highest turn this agent saw in the leader doc while it parsed;
* the old doc's own ``turn`` when it is a valid number: an admin wrote it;
* the newest turn record, but only up to the old doc's revision count. A
  site's write to the leader doc raises ``turn`` by one at most and adds
  one revision, so no turn that ran is beyond that count unless an admin
  set it (and then the old ``turn`` says so). A missing doc has no
  revisions to go by: records do not count, and numbering resumes at what
  the agents saw.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

from enqueue.documents import MAX_TURN


def _valid_turn(value: Any) -> int:
    ok = isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_TURN
    return value if ok else 0


def revision_count(raw: Optional[Mapping[str, Any]]) -> int:
    """How many revisions the document ``raw`` has had (the number before the dash of ``_rev``); 0 if unknown."""
    rev = raw.get("_rev") if isinstance(raw, Mapping) else None
    head = rev.split("-", 1)[0] if isinstance(rev, str) else ""
    return int(head) if head.isdigit() else 0


def resume_turn(seen: int, old: Optional[Mapping[str, Any]], newest_record_turn: Optional[int]) -> int:
    """The turn a rewritten leader doc starts at: never below what was trusted, never above what could have run.

    ``seen`` is the highest turn the agent saw, ``old`` the leader doc being
    replaced (None when missing), ``newest_record_turn`` the highest turn
    record's number (None when there is none). The validation function
    refuses a site's rewrite above the same bound.
    """
    trusted = max(_valid_turn(seen), _valid_turn(old.get("turn")) if isinstance(old, Mapping) else 0)
    bound = max(trusted, min(revision_count(old), MAX_TURN))
    return max(trusted, min(_valid_turn(newest_record_turn), bound))
