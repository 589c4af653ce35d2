"""The document-set name rule: which leader doc names may lead a set, so that no set's id prefix starts another's.

Every document set's heartbeat and turn-record ids derive from its leader
doc's name (``documents.ids``): the default set's are the fixed
``enqueue_heartbeat:`` and ``enqueue_turn:``, another set's
``<leader doc>:heartbeat:`` and ``<leader doc>:turn:``. One such prefix
starts another exactly when a leader doc name holds ``:heartbeat`` or
``:turn`` followed by ``:`` or its end, or is, or starts before a ``:``
with, ``enqueue_heartbeat`` or ``enqueue_turn``; ``set_name_problem`` refuses
those names, so a listing by one set's prefix never takes in another set's
documents.
"""

from __future__ import annotations

from typing import Optional

__all__ = ["HEARTBEAT_PREFIX", "TURN_PREFIX", "HEARTBEAT_MARK", "TURN_MARK", "set_name_problem"]

#: The default set's prefixes (databases made before named sets had their own ids keep them).
HEARTBEAT_PREFIX = "enqueue_heartbeat:"
TURN_PREFIX = "enqueue_turn:"
#: What follows another set's leader doc name in its prefixes.
HEARTBEAT_MARK = ":heartbeat:"
TURN_MARK = ":turn:"


def set_name_problem(leader_doc: str) -> Optional[str]:
    """Why ``leader_doc`` cannot lead a document set (its ids could be another set's), or None."""
    for mark in (HEARTBEAT_MARK, TURN_MARK):
        if mark in leader_doc or leader_doc.endswith(mark[:-1]):
            return f"{leader_doc!r} holds {mark[:-1]!r}, so its documents' ids could be another document set's"
    for prefix in (HEARTBEAT_PREFIX, TURN_PREFIX):
        if leader_doc == prefix[:-1] or leader_doc.startswith(prefix):
            return f"{leader_doc!r} starts with {prefix[:-1]!r}, so its documents' ids could be the default set's"
    return None
