"""What one agent knows of the shared documents, and what it observed of them.

A ``View`` keeps the latest revision this agent has of the leader doc, the
registry and the heartbeats it follows, parsed, with this host's
observations of when each heartbeat changed (``Liveness``). Documents come
in through ``absorb``, from a read or from the changes feed; the agent does
the I/O and decides from the view.

Guarantees
----------
* The view never goes back: a revision the feed delivers late (an older
  generation than the one held, typically this agent's own write coming
  back) is dropped. A read answers with the current state and is always
  taken.
* A document that does not parse is held as ``None`` (invalid) and its
  problems are logged once per revision, never raised.
* ``invalid_leader_since`` is when this observer first saw the current
  revision of a leader doc that does not parse (or is missing: then the
  revision is the deletion's tombstone, ``leader_deleted_rev``, so a second
  deletion is a change like any other): a repair waits ``heartbeat_stale``
  from then. ``last_valid_leader`` is the last revision that parsed.

Not kept: documents the agent does not follow; anything about time but this
host's monotonic clock.
"""

from __future__ import annotations

import bisect
import logging
from dataclasses import dataclass, replace
from typing import Any, Mapping

from enqueue import documents as docs
from enqueue.documents import Heartbeat, LeaderDoc, SitesDoc
from enqueue.liveness import Liveness, followed_sites, read_sites, silence_to_revoke_s
from enqueue.observed import Revisions, revision_of
from enqueue.timers import Moments

log = logging.getLogger("enqueue.agent")


@dataclass(frozen=True)
class _Whom:
    """Whom a view follows and reads, and what it was worked out from (the registry by identity)."""

    registry: SitesDoc | None
    leader: str | None
    running: str | None
    rotation: tuple[str, ...]
    followed: frozenset[str]
    watched: tuple[str, ...]
    read: frozenset[str]
    read_ids: tuple[str, ...]


def _with_holder(watched: tuple[str, ...], extra: frozenset[str], leader_doc: str) -> tuple[str, ...]:
    """``watched`` (two named docs, then heartbeat ids in order) with the heartbeats of ``extra`` put in place."""
    if not extra:
        return watched
    head, beats = list(watched[:2]), list(watched[2:])
    for site in extra:
        bisect.insort(beats, docs.heartbeat_id(site, leader_doc))
    return (*head, *beats)


class View:
    """The shared documents as this agent last read them, for site ``me``."""

    def __init__(self, me: str, leader_doc: str, sites_doc: str, stale_s: float) -> None:
        self.me = me
        self.leader_doc = leader_doc
        self.sites_doc = sites_doc
        self.stale_s = stale_s
        self.leader: LeaderDoc | None = None
        self.leader_raw: Mapping[str, Any] | None = None
        self.invalid_leader_since: float | None = None
        self.leader_deleted_rev: str | None = None
        self.last_valid_leader: LeaderDoc | None = None
        self.registry: SitesDoc | None = None
        self.heartbeats: dict[str, Heartbeat | None] = {}
        self.liveness = Liveness(stale_s)
        self.max_turn_seen = 0
        self.revisions = Revisions()
        self._reported: dict[str, str] = {}
        self._whom_cache: _Whom | None = None
        #: When each followed site turns stale unless it beats (``stale_at``), kept up to date as documents
        #: come in, so the next wake-up costs no walk over the followed sites.
        self.stale_moments = Moments()

    # ------------------------------------------------------------------ whom to follow

    def _registered(self) -> Any:
        return self.registry.sites if self.registry else ()

    def _whom(self) -> _Whom:
        """Whom I follow and read, worked out again only when the leader, the holder, the rotation or the registry
        changed.

        A heartbeat never changes whom I follow: taking one in (from a read
        or the feed) costs no sort, so a full read stays linear in the
        number of documents it reads.
        """
        leader = self.leader.leader if self.leader is not None else None
        running = self.leader.running if self.leader is not None else None
        rotation = self.leader.rotation if self.leader is not None else ()
        whom = self._whom_cache
        if whom is None or whom.registry is not self.registry or \
                (whom.leader, whom.running, whom.rotation) != (leader, running, rotation):
            if whom is None or whom.registry is not self.registry or whom.leader != leader:
                followed = frozenset(followed_sites(self.leader, self._registered(), self.me))
                if whom is None or followed != whom.followed:
                    beats = (docs.heartbeat_id(s, self.leader_doc) for s in sorted(followed))
                    watched = (self.leader_doc, self.sites_doc, *beats)
                    self.stale_moments.replace({s: self.stale_at(s) for s in followed})
                else:
                    watched = whom.watched
            else:
                followed, watched = whom.followed, whom.watched
            read = frozenset(read_sites(self.leader, self._registered(), self.me))
            whom = _Whom(self.registry, leader, running, rotation, followed, watched, read,
                         _with_holder(watched, read - followed, self.leader_doc))
            self._whom_cache = whom
        return whom

    def followed(self) -> frozenset[str]:
        """The sites whose heartbeats I follow on the changes feed."""
        return self._whom().followed

    def read(self) -> frozenset[str]:
        """The sites whose heartbeats a full read takes in (those followed and the turn holder)."""
        return self._whom().read

    def watched_ids(self) -> tuple[str, ...]:
        """The documents I follow on the changes feed (the same tuple object until it changes)."""
        return self._whom().watched

    def read_ids(self) -> tuple[str, ...]:
        """The documents a full read takes in."""
        return self._whom().read_ids

    # ------------------------------------------------------------------ staleness

    def stale_after_s(self, site: str) -> float:
        """The silence that makes ``site`` stale: for the holder of a turn that may run, long enough to outlast its
        lease."""
        if self.leader is not None and self.leader.may_run and self.leader.running == site:
            return silence_to_revoke_s(self.stale_s, self.heartbeats.get(site))
        return self.stale_s

    def stale_map(self, now: float) -> dict[str, bool]:
        """The staleness verdict, at ``now``, on every site whose heartbeat I read."""
        return {s: self.liveness.is_stale(s, now, self.stale_after_s(s)) for s in self.read()}

    def stale_at(self, site: str) -> float | None:
        """When ``site`` turns stale unless it beats; None if never observed."""
        return self.liveness.stale_at(site, self.stale_after_s(site))

    def next_stale_after(self, now: float) -> float | None:
        """The first moment after ``now`` at which a followed site turns stale unless it beats first.

        Equal to the earliest ``stale_at`` ahead of ``now`` over ``followed()``:
        every change to what that depends on (a followed site's heartbeat, the
        running holder, whom I follow) updates ``stale_moments`` as it comes in.
        ``now`` never goes back from one call to the next.
        """
        self._whom()
        return self.stale_moments.next_after(now)

    def _restale(self, site: str | None) -> None:
        """``site``'s stale moment changed (it beat, or became or stopped being the running holder)."""
        if site is not None and site in self._whom().followed:
            self.stale_moments.set(site, self.stale_at(site))

    # ------------------------------------------------------------------ taking documents in

    def absorb(self, doc_id: str, raw: Mapping[str, Any] | None, now: float, *, from_feed: bool = False,
               deleted_rev: str | None = None) -> bool:
        """Take one document's current content into the view; False when it brought nothing new: a feed's
        stale news, or the revision the view already holds (a revision names one content, already parsed).

        ``deleted_rev`` is the tombstone's revision of a document that reads as absent (None if none).
        """
        rev = revision_of(raw) if raw is not None else deleted_rev
        if from_feed and self.revisions.is_older(doc_id, rev):
            return False
        if raw is not None and rev is not None and rev == self.revisions.rev(doc_id):
            # The feed's echo of my own write, or a full read of what did not change: parsing it again would
            # give what the view holds (and a new registry object would make whom I follow be worked out again).
            return False
        self.revisions.observe(doc_id, rev, now)
        if doc_id == self.leader_doc:
            self.leader_deleted_rev = deleted_rev if raw is None else None
            self._absorb_leader(raw, now)
        elif doc_id == self.sites_doc:
            parsed, problems = docs.parse_sites(raw, doc_id, self.leader_doc)
            self._report(doc_id, raw, problems, parsed is None)
            self.registry = parsed
        elif (site := docs.heartbeat_site(doc_id, self.leader_doc)) is not None:
            hb, problems = docs.parse_heartbeat(raw, site)
            self._report(doc_id, raw, problems, hb is None and raw is not None)
            self.heartbeats[site] = hb
            self.liveness.observe(site, None if raw is None else raw.get("_rev"), now)
            self._restale(site)
        return True

    def own_beat(self, hb: Heartbeat, rev: str, now: float) -> None:
        """Take in my own heartbeat, just written as revision ``rev``."""
        self.revisions.observe(docs.heartbeat_id(self.me, self.leader_doc), rev, now)
        self.heartbeats[self.me] = hb
        self.liveness.observe(self.me, rev, now)
        self._restale(self.me)

    def own_leader_write(self, doc: LeaderDoc, body: Mapping[str, Any], now: float) -> None:
        """Take in the leader doc I just wrote: ``body`` is ``render_leader(doc)`` stored as ``body["_rev"]``.

        Not parsed again: ``render_leader`` parses back to an equal value, so
        the view holds what a read of that revision would give.
        """
        rev = str(body["_rev"])
        self.revisions.observe(self.leader_doc, rev, now)
        self.leader_deleted_rev = None
        self._set_leader(replace(doc, rev=rev, raw=dict(body)), body)

    def _absorb_leader(self, raw: Mapping[str, Any] | None, now: float) -> None:
        parsed, problems = docs.parse_leader(raw, self.leader_doc)
        self._report(self.leader_doc, raw, problems, parsed is None and raw is not None)
        if parsed is None:
            if raw is None and self.leader_raw is not None:
                log.warning("leader doc %s is missing", self.leader_doc)
            self.invalid_leader_since = self.revisions.since(self.leader_doc)
        self._set_leader(parsed, raw)

    def _set_leader(self, parsed: LeaderDoc | None, raw: Mapping[str, Any] | None) -> None:
        if parsed is not None:
            self.invalid_leader_since = None
        before = self.leader
        self.leader = parsed
        self.leader_raw = raw
        if parsed is not None:
            self.max_turn_seen = max(self.max_turn_seen, parsed.turn)
            self.last_valid_leader = parsed
        # The running holder's silence to outlast is its own: its stale moment and its predecessor's move.
        for doc in (before, parsed):
            if doc is not None and doc.running is not None:
                self._restale(doc.running)

    def _report(self, doc_id: str, raw: Mapping[str, Any] | None, problems: list[str], invalid: bool) -> None:
        """Log a document's problems once per revision."""
        if not problems:
            return
        rev = str(raw.get("_rev")) if isinstance(raw, Mapping) else ""
        if self._reported.get(doc_id) == rev:
            return
        self._reported[doc_id] = rev
        what = "does not parse, treated as invalid" if invalid else "has problems"
        log.warning("document %s (rev %s) %s: %s", doc_id, rev or "?", what, "; ".join(problems))
