"""The server's rules for a site account's write of the leader doc, as the simulated database applies them.

With the ``site-accounts`` fault the sites write under site accounts, and
the database refuses them what ``enqueue/validate_doc_update.js`` refuses on
the path the simulation explores: creating the leader doc (missing, or
deleted: only an admin creates it), and a rewrite of one that does not parse
at any turn but the one its repair resumes at (the higher of its valid old
turn and its revision count). Every other write a protocol-following agent
makes passes the rules (tests/unit/test_security_rules.py), so it passes here.
"""

from __future__ import annotations

from typing import Optional

from enqueue import documents as docs
from enqueue import repair
from enqueue import security
from enqueue.config import DEFAULT_LEADER_DOC

from tools.simulation.watched_store import WatchedStore


def refusal(store: WatchedStore, doc: dict) -> Optional[str]:
    """Why the rules refuse a site this write, in their words; None when they let it through."""
    if doc.get("_id") != DEFAULT_LEADER_DOC:
        return None
    current = store.get(DEFAULT_LEADER_DOC)
    if doc.get("_rev") != (current or {}).get("_rev"):
        return None  # a lost race: the database answers 409 (the store reports a refused lost race so too)
    token = security.refusal_token(security.ADMIN_REBUILDS_TOKEN)
    if current is None:
        return f"enqueue: only an admin creates the leader document {token}"
    parsed, _ = docs.parse_leader(current, DEFAULT_LEADER_DOC)
    if parsed is not None:
        return None
    old_turn = current.get("turn")
    valid = old_turn if isinstance(old_turn, int) and not isinstance(old_turn, bool) and old_turn >= 0 else 0
    resume = max(valid, repair.revision_count(current.get("_rev")))
    if doc.get("turn") != resume:
        return f"enqueue: rewriting a leader document must resume at turn {resume} {token}"
    return None
