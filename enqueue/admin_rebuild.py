"""An admin's rebuild of a leader doc that is missing or does not parse (``enqueue repair``), as safe as an agent's.

Site accounts may not create the leader doc (docs/SECURITY.md): after an
admin deleted it, an admin rebuilds it, under the agents' own rule
(docs/PROTOCOL.md §3.11) and with their arithmetic (``enqueue.repair``).

Guarantees
----------
* A leader doc that parses is never written.
* The rebuild is written only once the document's current revision (a
  deletion's tombstone included) has stayed the same for ``stale_s`` by this
  rebuilder's own observation, confirmed on a read right before the write: a
  change starts the wait again. ``stale_s`` is the longest ``heartbeat_stale``
  of the configuration and of every heartbeat, so every command started
  under the old content is dead by then (its site stopped it, or its lease
  ran out).
* The rebuilt doc resumes at ``repair.highest_turn_known`` (the revision
  count of what it replaces, never a number a site wrote), nobody leads, no
  turn is active, an admin's pause is kept and the old content is kept under
  ``repaired_from``. The write is a compare-and-swap on what was read; one
  that loses is read again and decided again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Mapping, Optional

from enqueue import documents as docs
from enqueue import repair
from enqueue.errors import Conflict

if TYPE_CHECKING:
    from enqueue.store import Store


class AdminRebuild:
    """One admin's rebuild of ``leader_doc``: ``look`` says when it is due, ``write`` makes it then."""

    def __init__(self, store: Store, leader_doc: str, stale_s: float, by: str, now_text: Callable[[], str]) -> None:
        self.store = store
        self.leader_doc = leader_doc
        self.base_stale_s = stale_s
        self.stale_s = stale_s
        self.by = by
        self.now_text = now_text
        self.raw: Optional[Mapping[str, Any]] = None
        self.rev: Optional[str] = None
        self.since: Optional[float] = None

    def look(self, now: float) -> Optional[float]:
        """Read the leader doc at ``now``: the moment the rebuild is due, or None when it parses (nothing to do).

        The wait runs from the first read that showed the current revision.
        """
        raw = self.store.get(self.leader_doc)
        parsed, _ = docs.parse_leader(raw, self.leader_doc)
        if parsed is not None:
            self.since = None
            return None
        rev = raw.get("_rev") if raw is not None else self.store.deleted_rev(self.leader_doc)
        rev = rev if isinstance(rev, str) else None
        if self.since is None or rev != self.rev:
            self.since, self.rev = now, rev
        self.raw = raw
        self.stale_s = max([self.base_stale_s, *self._heartbeats_stale_s()])
        return self.since + self.stale_s

    def _heartbeats_stale_s(self) -> list[float]:
        out = []
        for raw in self.store.list_prefix(docs.heartbeat_prefix(self.leader_doc)):
            value = raw.get("heartbeat_stale_s")
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
                out.append(float(value))
        return out

    def write(self, now: float) -> Optional[int]:
        """Write the rebuild if it is due at ``now`` on a fresh read; the turn it resumes at, or None (not due, or
        the document changed: ``look`` again)."""
        due = self.look(now)
        if due is None or now < due:
            return None
        turn = repair.highest_turn_known(self.store, 0, self.raw, self.rev, docs.turn_prefix(self.leader_doc),
                                         docs.heartbeat_prefix(self.leader_doc))
        doc = repair.rebuilt_leader_doc(self.leader_doc, self.raw, turn, None, self.by, self.now_text())
        try:
            self.store.put(docs.render_leader(doc))
        except Conflict:
            return None
        return turn
