"""What an admin does to the shared documents, with the admin commands' own pure edits.

Each action reads the document, applies the edit that ``enqueue pause``,
``resume``, ``skip``, ``sites drain``/``undrain``, ``prune``, ``init`` or
``repair`` applies (imported from those commands, not copied), and writes it by
compare-and-swap straight to the database (an admin's requests do not go
through the agents' faults). Hand edits gone wrong (a document deleted, or
replaced by one that does not parse) have no command: they are written as
such. Every action returns one line for the trace, or None when it found
nothing to do.
"""

from __future__ import annotations

import random
from dataclasses import replace
from typing import Callable, Dict, List, Optional, Set

from enqueue import documents as docs
from enqueue.admin_rebuild import AdminRebuild
from enqueue.commands import init as init_command
from enqueue.commands.pause import paused
from enqueue.commands.prune import delete_record
from enqueue.commands.resume import resumed
from enqueue.commands.sites import drained, undrained
from enqueue.commands.skip import skipping
from enqueue.config import DEFAULT_LEADER_DOC, DEFAULT_SITES_DOC
from enqueue.errors import Conflict

from tools.simulation.watched_store import WatchedStore

ADMIN = "admin"
PRUNE_KEEP = 3


class Admin:
    """An admin at the console of the shared database."""

    def __init__(self, store: WatchedStore, rng: random.Random, now_text: Callable[[], str]) -> None:
        self.store = store
        self.rng = rng
        self.now_text = now_text
        # Turns whose record an admin deleted (by hand or by prune): the record check leaves them out.
        self.records_removed: Set[int] = set()

    def _leader(self) -> Optional[docs.LeaderDoc]:
        doc, _ = docs.parse_leader(self.store.get(DEFAULT_LEADER_DOC), DEFAULT_LEADER_DOC)
        return doc

    def _put(self, body: Dict) -> bool:
        try:
            self.store.put(body)
            return True
        except Conflict:
            return False

    def act(self, name: str, sites: List[str]) -> Optional[str]:
        return getattr(self, name.replace("-", "_"))(sites)

    # -- with the admin commands' edits ------------------------------------------

    def pause(self, sites: List[str]) -> Optional[str]:
        doc = self._leader()
        if doc is None:
            return None
        if doc.paused:
            return "resume" if self._put(docs.render_leader(resumed(doc, ADMIN, self.now_text()))) else None
        return "pause" if self._put(docs.render_leader(paused(doc, "simulated", ADMIN, self.now_text()))) else None

    def resume(self, sites: List[str]) -> Optional[str]:
        doc = self._leader()
        if doc is None or not doc.paused:
            return None
        return "resume" if self._put(docs.render_leader(resumed(doc, ADMIN, self.now_text()))) else None

    def skip(self, sites: List[str]) -> Optional[str]:
        doc = self._leader()
        if doc is None or not doc.turn_active:
            return None
        new = skipping(doc, doc.turn, ADMIN, self.now_text())
        return f"skip turn {doc.turn}" if new is not None and self._put(docs.render_leader(new)) else None

    def _registry(self) -> Optional[docs.SitesDoc]:
        parsed, _ = docs.parse_sites(self.store.get(DEFAULT_SITES_DOC), DEFAULT_SITES_DOC)
        return parsed

    def drain(self, sites: List[str]) -> Optional[str]:
        registry = self._registry()
        site = self.rng.choice(sites)
        if registry is None or site not in registry.sites:
            return None
        if registry.sites[site].drained:
            body = undrained(registry, site, ADMIN, self.now_text())
            return f"undrain {site}" if body is not None and self._put(body) else None
        body = drained(registry, site, "simulated", ADMIN, self.now_text())
        return f"drain {site}" if body is not None and self._put(body) else None

    def undrain_all(self) -> None:
        registry = self._registry()
        for site, entry in (registry.sites.items() if registry else ()):
            if entry.drained:
                body = undrained(registry, site, ADMIN, self.now_text())
                if body is not None and self._put(body):
                    registry = self._registry()
                    if registry is None:
                        return

    def prune(self, sites: List[str]) -> Optional[str]:
        records = sorted(self.store.list_prefix(docs.TURN_PREFIX), key=lambda d: d["_id"])
        old = records[:max(0, len(records) - PRUNE_KEEP)]
        for doc in old:
            self._removed(doc)
            delete_record(self.store, doc)
        return f"prune {len(old)} records" if old else None

    def rebuilder(self, stale_s: float) -> AdminRebuild:
        """``enqueue repair``'s rebuild of the leader doc, waiting ``stale_s`` (driven by the simulation)."""
        return AdminRebuild(self.store, DEFAULT_LEADER_DOC, stale_s, ADMIN, self.now_text)  # type: ignore[arg-type]

    def init(self, sites: List[str]) -> Optional[str]:
        leader = replace(docs.new_leader_doc(DEFAULT_LEADER_DOC), updated_by=ADMIN, updated_at=self.now_text())
        registry = docs.render_sites(docs.new_sites_doc(DEFAULT_SITES_DOC))
        bodies = [("registry", registry)]
        if init_command.may_create_leader_doc(self.store, DEFAULT_LEADER_DOC):
            bodies.insert(0, ("leader doc", docs.render_leader(leader)))
        made = [what for what, body in bodies if init_command.create_document(self.store, body)]
        return f"init created {' and '.join(made)}" if made else None

    # -- by hand ----------------------------------------------------------------------

    def _delete(self, doc_id: str) -> bool:
        raw = self.store.get(doc_id)
        if raw is None:
            return False
        try:
            self.store.delete(raw)
            return True
        except Conflict:
            return False

    def _garble(self, doc_id: str) -> bool:
        raw = self.store.get(doc_id)
        if raw is None:
            return False
        body = {"_id": doc_id, "_rev": raw["_rev"], "edited": "by hand", "turn": "forty-two", "sites": "none"}
        return self._put(body)

    def delete_leader(self, sites: List[str]) -> Optional[str]:
        return "delete the leader doc" if self._delete(DEFAULT_LEADER_DOC) else None

    def garble_leader(self, sites: List[str]) -> Optional[str]:
        return "garble the leader doc" if self._garble(DEFAULT_LEADER_DOC) else None

    def delete_registry(self, sites: List[str]) -> Optional[str]:
        return "delete the registry" if self._delete(DEFAULT_SITES_DOC) else None

    def garble_registry(self, sites: List[str]) -> Optional[str]:
        return "garble the registry" if self._garble(DEFAULT_SITES_DOC) else None

    def delete_record(self, sites: List[str]) -> Optional[str]:
        records = self.store.list_prefix(docs.TURN_PREFIX)
        if not records:
            return None
        doc = self.rng.choice(records)
        self._removed(doc)
        return f"delete record {doc['_id']}" if delete_record(self.store, doc) else None

    def _removed(self, doc: Dict) -> None:
        turn = doc.get("turn")
        if isinstance(turn, int):
            self.records_removed.add(turn)
