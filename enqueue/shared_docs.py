"""Reading and writing the shared documents: the I/O between the store and the agent's ``View``.

Every write to a shared document is a compare-and-swap on the revision the
agent last read. A 409 means the view is old: the document is re-read and
the caller decides again from scratch.

Guarantees
----------
* What is read or written lands in the view at once (``absorb``); a write
  that lost its compare-and-swap leaves the view with the server's current
  revision of that document. A deletion the feed tells of is taken in only
  from the read it calls for (the feed gives no revision to order it by).
* ``watched_ids`` is what the changes feed must follow. When it gains a
  document, a full read is due (``need_full_read``): the feed only delivers
  changes made after it follows a document.
* Taking a document in costs no sort and no walk over the followed ids
  unless it changed whom the view follows, so a full read is linear in the
  number of documents read.
* After a failure (``Outage.note``) the database is tried again no sooner
  than ``retry_s`` later; the outage is logged once when it starts and once
  when it ends.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Callable, Mapping

from enqueue import documents as docs
from enqueue.documents import Heartbeat, LeaderDoc
from enqueue.errors import ClusterRefused, Conflict, Forbidden

if TYPE_CHECKING:
    from enqueue.clock import Clock
    from enqueue.store import Store
    from enqueue.view import View

log = logging.getLogger("enqueue.agent")

_RETRY_MIN_S = 0.2


def refuse_cluster(store: Store, allowed: bool) -> None:
    """Raise ClusterRefused for a database that keeps several copies, unless the operator allowed it."""
    store.check()
    copies = store.copies()
    if copies > 1 and not allowed:
        raise ClusterRefused(
            f"{store.describe()} keeps {copies} copies (n={copies}); on a cluster a 409 is no "
            "compare-and-swap, so two sites could both win a turn. Use a database with one copy in one shard "
            f"(PUT /{store.database}?n=1&q=1, as 'enqueue init' creates it) or see docs/GUARANTEES.md section 5"
        )


class Outage:
    """Whether the database is out of reach, since when, and when to try it again."""

    def __init__(self, heartbeat_delay_s: float) -> None:
        self.retry_s = max(_RETRY_MIN_S, min(heartbeat_delay_s / 4, 5.0))
        self.since: float | None = None
        self.retry_at = 0.0

    def note(self, exc: Exception, now: float) -> None:
        """A request failed at ``now``: wait ``retry_s`` before the next try."""
        if self.since is None:
            self.since = now
            log.warning("%s; retrying", exc)
        self.retry_at = now + self.retry_s

    def over(self, now: float) -> None:
        """A step went through: the outage, if there was one, is over."""
        if self.since is not None:
            log.info("database reachable again after %.1f s", now - self.since)
            self.since = None


class SharedDocs:
    """Site ``me``'s reads and compare-and-swap writes of the leader doc, the registry and heartbeats."""

    def __init__(self, store: Store, view: View, clock: Clock,
                 on_own_heartbeat: Callable[[Mapping[str, Any], Heartbeat | None, float], None],
                 on_leader_read: Callable[[str | None, float], None] | None = None) -> None:
        self.store = store
        self.view = view
        self.clock = clock
        self.me = view.me
        self._on_own_heartbeat = on_own_heartbeat
        self._on_leader_read = on_leader_read
        self.need_full_read = False
        self.watched_ids: tuple[str, ...] = ()

    def read_all(self) -> None:
        """Read every document I follow, and the holder's heartbeat, in one request.

        Read again when what I read changed whom I follow (I became leader,
        the registry named new sites); a new holder waits for the next read.
        """
        for _ in range(3):
            followed = self.view.watched_ids()
            ids = self.view.read_ids()
            issued = self.clock.monotonic()
            found = self.store.get_many(list(ids))
            self._leader_read(found.get(self.view.leader_doc), issued)
            for doc_id in ids:
                self.absorb(doc_id, found.get(doc_id))
            if self.view.watched_ids() == followed:
                break
        self.need_full_read = False

    def absorb(self, doc_id: str, raw: Mapping[str, Any] | None, *, from_feed: bool = False) -> None:
        """Take one document's current content into the view (a feed's stale news excepted).

        The feed tells of a deletion without its revision, so news of one
        cannot be told from a late delivery (a backlog a frozen agent finds
        when it thaws, after the document was made again): a read settles it.
        A missing leader doc is known by its tombstone's revision, so that a
        repair waits from its last change.
        """
        if from_feed and raw is None:
            self.need_full_read = True
            return
        deleted_rev = self.store.deleted_rev(doc_id) if raw is None and doc_id == self.view.leader_doc else None
        now = self.clock.monotonic()
        if not self.view.absorb(doc_id, raw, now, from_feed=from_feed, deleted_rev=deleted_rev):
            return
        if doc_id == docs.heartbeat_id(self.me, self.view.leader_doc) and raw is not None:
            self._on_own_heartbeat(raw, self.view.heartbeats.get(self.me), now)
        self._follow_watched()

    def _follow_watched(self) -> None:
        """Take up what the view now follows; a document newly followed calls for a full read."""
        watched = self.view.watched_ids()
        if watched is not self.watched_ids:
            if watched != self.watched_ids and not set(watched) <= set(self.watched_ids):
                self.need_full_read = True
            self.watched_ids = watched

    def reread(self, doc_id: str) -> None:
        """Read one document again, now."""
        issued = self.clock.monotonic()
        raw = self.store.get(doc_id)
        if doc_id == self.view.leader_doc:
            self._leader_read(raw, issued)
        self.absorb(doc_id, raw)

    def _leader_read(self, raw: Mapping[str, Any] | None, issued: float) -> None:
        """Tell who asked which revision a read of the leader doc, sent at ``issued``, answered with."""
        if self._on_leader_read is not None and raw is not None:
            self._on_leader_read(raw.get("_rev"), issued)

    def create_if_absent(self, body: dict, *, admins_only: bool = False) -> None:
        """Create a document unless it exists (whatever it holds).

        ``admins_only``: the rules may refuse this account the creation (the
        leader doc is an admin's to create); then the document stays missing
        and the repair says so (``Leadership.repair``).
        """
        try:
            self.store.put(body)
            log.info("created %s", body["_id"])
        except Conflict:
            pass
        except Forbidden:
            if not admins_only:
                raise

    def cas_leader(self, new: LeaderDoc) -> bool:
        """Write ``new`` over the leader doc revision it came from; on 409 re-read and return False."""
        body = docs.render_leader(new)
        try:
            rev = self.store.put(body)
        except Conflict:
            self.reread(self.view.leader_doc)
            return False
        body["_rev"] = rev
        self.view.own_leader_write(new, body, self.clock.monotonic())
        self._follow_watched()
        return True

    def cas_own_entry(self, entry: Mapping[str, Any]) -> bool:
        """Write my registry ``entry`` over the registry revision the view holds; on 409 re-read and return False."""
        assert self.view.registry is not None
        body = docs.render_sites(self.view.registry, {self.me: entry})
        try:
            body["_rev"] = self.store.put(body)
        except Conflict:
            self.reread(self.view.sites_doc)
            return False
        self.absorb(self.view.sites_doc, body)
        return True

    def register(self, now_text: str) -> None:
        """Add me to the registry (rewriting one that does not parse), until the view shows me in it."""
        sites_doc = self.view.sites_doc
        while self.view.registry is None or self.me not in self.view.registry.sites:
            current = self.view.registry or docs.new_sites_doc(sites_doc)
            entry = {"heartbeat_doc": docs.heartbeat_id(self.me, self.view.leader_doc), "drained": False,
                     "added_at": now_text}
            body = docs.render_sites(current, {self.me: entry})
            if self.view.registry is None:
                raw = self.store.get(sites_doc)
                if raw is not None:
                    # The registry does not parse: keep what it held for the admin, start a clean one.
                    body = docs.render_sites(docs.new_sites_doc(sites_doc), {self.me: entry})
                    body["_rev"] = raw["_rev"]
                    body["repaired_from"] = {k: v for k, v in raw.items() if not k.startswith("_")}
                    log.warning("rewrote registry %s, which did not parse; its old content is kept under "
                                "'repaired_from'", sites_doc)
            try:
                body["_rev"] = self.store.put(body)
                self.absorb(sites_doc, body)
                log.info("added site %s to the registry", self.me)
            except Conflict:
                self.reread(sites_doc)
