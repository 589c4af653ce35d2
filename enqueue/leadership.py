"""Leadership as one agent practises it: campaign, lead (grant, revoke, publish the rotation), repair, resign.

The decisions are the pure functions of enqueue.election and
enqueue.scheduler; this module does their I/O through ``SharedDocs``.

Guarantees
----------
* A campaign looks at the leader's heartbeat itself (and the leader doc)
  before it calls the leader stale: a cached view may lag.
* A running turn is taken away only after its holder's silence is confirmed
  on a fresh read of its heartbeat; the record of a turn taken away is
  written before the write that ends it, and withdrawn after that write
  lost its race only while the leader doc shows the turn still going on
  (written back if it ended meanwhile); once that write went through, the
  record is written again if it is missing (another leader withdrew the
  one this write relied on).
* A leader doc that is missing or does not parse is rewritten only once its
  current revision (a deletion's tombstone included) has been so for
  ``heartbeat_stale`` by this agent's observation, confirmed on a fresh read
  (every command started under its old content is dead by then), at the
  revision count of the revision it replaces or above (``repair``), keeping
  an admin's pause and the old content under ``repaired_from``. A fresh
  leader doc (turn 0) is only ever created on a database that never held a
  heartbeat, a turn record or a deleted leader doc (``never_used``).
* A repair records the turn it displaces (``repaired``) only when this
  agent's own last reading of the leader doc said who held it, before the
  rewrite; it never guesses a holder, nor whether the command started. The
  runner's own report completes that record.
"""

from __future__ import annotations

import logging
import random
from typing import TYPE_CHECKING, Any, Callable

from enqueue import documents as docs
from enqueue import election, repair, scheduler
from enqueue.documents import TurnRecord
from enqueue.errors import Conflict, Forbidden
from enqueue.outcomes import Outcome
from enqueue.records import has_report

if TYPE_CHECKING:
    from enqueue.records import RecordQueue
    from enqueue.shared_docs import SharedDocs
    from enqueue.store import Store
    from enqueue.timing import Timing

log = logging.getLogger("enqueue.agent")

#: The heartbeat field that carries the highest turn number its agent has seen.
TURN_SEEN = repair.TURN_SEEN
_NOT_REFUSED = object()


def never_used(store: Store, leader_doc: str) -> bool:
    """No turn of the set ``leader_doc`` leads was ever granted: none of its heartbeats or turn records, and no
    deleted leader doc ``leader_doc`` (each set has its own ids, docs.heartbeat_prefix and docs.turn_prefix)."""
    return not store.list_prefix(docs.heartbeat_prefix(leader_doc), limit=1) and \
        not store.list_prefix(docs.turn_prefix(leader_doc), limit=1) and store.deleted_rev(leader_doc) is None


class Leadership:
    """Site ``me``'s part in electing a leader and, while it leads, in running the rotation."""

    def __init__(self, me: str, timing: Timing, shared: SharedDocs, records: RecordQueue, store: Store,
                 rng: random.Random, now_text: Callable[[], str]) -> None:
        self.me = me
        self.t = timing
        self.shared = shared
        self.view = shared.view
        self.records = records
        self.store = store
        self.rng = rng
        self._now_text = now_text
        self.campaign_not_before = 0.0
        self._refused_rev: object = _NOT_REFUSED

    def vacancy(self, now: float) -> str | None:
        """Why the leadership is open by my view at ``now``, or None while a live leader holds it."""
        assert self.view.leader is not None
        return election.vacancy(self.view.leader, self.view.heartbeats, self.view.stale_map(now))

    def may_campaign(self, now: float) -> bool:
        """Another site leads (or nobody does), I may try again by now, and the leadership is open."""
        assert self.view.leader is not None
        return self.view.leader.leader != self.me and now >= self.campaign_not_before and \
            self.vacancy(now) is not None

    def campaign(self, now: float) -> bool:
        """Claim the leadership by compare-and-swap; on losing, wait ``conflict_delay`` (jittered)."""
        assert self.view.leader is not None
        if self.view.leader.leader is not None:
            self.shared.reread(docs.heartbeat_id(self.view.leader.leader, self.view.leader_doc))
            self.shared.reread(self.view.leader_doc)
            if self.view.leader is None or self.vacancy(now) is None:
                return True
        why = self.vacancy(now)
        if self.shared.cas_leader(election.claim(self.view.leader, self.me, self._now_text())):
            log.info("elected leader (term %d): %s", self.view.leader.leader_term, why)
            return True
        self.campaign_not_before = now + election.conflict_wait(self.t.conflict_delay_s, self.rng)
        return True

    def lead(self, now: float) -> bool:
        """Make the leader doc what the scheduler says it should be; True when something was written."""
        assert self.view.leader is not None and self.view.registry is not None
        if self.shared.need_full_read:
            # A new leader (or a new site) has heartbeats not read yet: read them before judging anyone.
            return True
        view = self.view
        p = scheduler.plan(view.leader, view.registry.sites, view.heartbeats, view.stale_map(now), self.me,
                           self._now_text())
        if p is None:
            return False
        if p.reread_first:
            # Taking away a turn that may run rests on what the holder's heartbeat says: confirm it on a fresh read.
            before = self.view.liveness.rev(p.revoked_site)
            self.shared.reread(docs.heartbeat_id(p.revoked_site, self.view.leader_doc))
            if self.view.liveness.rev(p.revoked_site) != before:
                return True
        record = None
        if p.revoked_site is not None:
            # The record goes before the write that ends the turn: a lost answer or a crash in between
            # cannot leave the turn over without one.
            record = TurnRecord(
                turn=p.revoked_turn,
                site=p.revoked_site,
                how=Outcome.REVOKED if p.revoked_may_have_run else Outcome.NOT_STARTED,
                leader=self.me,
                # What backs my word over a dead leader's "not started" of this turn (records.write_once); a
                # turn started on its grant alone wrote no start: the grant's time is the earliest it may have.
                started_at=(self.view.leader.started_at or self.view.leader.granted_at) if p.revoked_may_have_run
                else None,
                ended_at=self._now_text(),
                note=p.reason,
            )
            self.records.write_now(record)
        if not self.shared.cas_leader(p.doc):
            if record is not None:
                self._withdraw_record(record)
            return True
        if record is not None:
            # Another leader's record may be the one this turn has (mine found it and added nothing), and
            # that leader withdraws it when its own write lost: make sure, now that the turn is over, that
            # one stands.
            self.records.write_now(record)
        log.info("%s", p.reason)
        return True

    def _withdraw_record(self, record: TurnRecord) -> None:
        """Delete my record of taking a turn away, written before a write that then lost its race, if the
        turn goes on (the leader doc I now hold still gives it to its site).

        Another leader may have ended the turn meanwhile, relying on this very
        record (its own write found it and added nothing): so after the
        delete the leader doc is read again, and the record written back if
        the turn is over by then; that leader also writes its record again
        once its write went through. Best effort: a record left behind (this
        agent dies first, the delete fails) is completed by the site's own
        report when it ends the turn.
        """
        fresh = self.view.leader
        if fresh is None or not fresh.holds(record.site, record.turn):
            return
        raw = self.store.get(docs.turn_record_id(record.turn, docs.turn_prefix(self.view.leader_doc)))
        if raw is None or raw.get("leader") != self.me or raw.get("host") is not None or has_report(raw):
            return
        try:
            self.store.delete(raw)
        except Conflict:
            return
        self.shared.reread(self.view.leader_doc)
        again = self.view.leader
        if again is None or not again.holds(record.site, record.turn):
            self.records.write_now(record)

    def repair_due_at(self) -> float | None:
        """When a missing or broken leader doc may be rewritten; None while it parses, or while the rules refuse
        me its rewrite (until it changes)."""
        since = self.view.invalid_leader_since
        return None if since is None or self.repair_refused() else since + self.t.heartbeat_stale_s

    def repair_refused(self) -> bool:
        """The rules refused my rewrite of the leader doc's current revision (missing: an admin's to rebuild)."""
        return self.view.leader is None and self._refused_rev is not _NOT_REFUSED and \
            self._refused_rev == self.view.revisions.rev(self.view.leader_doc)

    def heartbeat_fields(self) -> dict[str, Any]:
        """What my heartbeat says of the leader doc: the highest turn I saw, and the problem while I wait on an
        admin's rebuild."""
        fields: dict[str, Any] = {TURN_SEEN: self.view.max_turn_seen}
        if self.repair_refused():
            fields[docs.PROBLEM_FIELD] = self._problem()
        return fields

    def _problem(self) -> str:
        what = "is missing" if self.view.leader_raw is None else "does not parse"
        return (f"leader doc {self.view.leader_doc} {what} and this site's account may not rebuild it: an admin "
                f"must run 'enqueue repair CONFIG'")

    def repair(self, now: float) -> bool:
        """Rewrite a leader doc that does not parse, once its revision has been so for ``heartbeat_stale``."""
        due = self.repair_due_at()
        if due is None or now < due:
            return False
        # The wait counts from the last change of the revision I saw: confirm on a fresh read that it is
        # still that one (an agent frozen across a repair and another deletion would otherwise rebuild at once).
        doc_id = self.view.leader_doc
        before = self.view.revisions.rev(doc_id)
        self.shared.reread(doc_id)
        if self.view.revisions.rev(doc_id) != before or self.repair_due_at() != due:
            return True
        raw = self.view.leader_raw
        replaced = raw.get("_rev") if raw else self.view.leader_deleted_rev
        prefix = docs.turn_prefix(doc_id)
        known = repair.highest_turn_known(self.store, self.view.max_turn_seen, raw,
                                          replaced if isinstance(replaced, str) else None, prefix,
                                          docs.heartbeat_prefix(doc_id))
        displaced = repair.displaced_record(self.view.last_valid_leader, doc_id, self.me, self._now_text())
        # A record there already stands, unless it says "not started" of a turn I read as started (§2.4).
        if displaced is not None and (self.store.get(docs.turn_record_id(displaced.turn, prefix)) is None or
                                      (displaced.started_at is not None and displaced.site != self.me)):
            self.records.write_now(displaced)
        # The rebuilt doc carries no record: store the one the last doc I read carried (§3.8.2).
        self.records.store_carried(self.view.last_valid_leader)
        fresh = repair.rebuilt_leader_doc(doc_id, raw, known, self.me, self.me, self._now_text())
        try:
            written = self.shared.cas_leader(fresh)
        except Forbidden as exc:
            # A site account may not create the leader doc: wait, following it, for an admin's rebuild.
            self._refused_rev = before
            log.error("%s (%s); waiting for it to come back", self._problem(), exc)
            return False
        if written:
            log.warning("rewrote leader doc %s, which was missing or did not parse, at turn %d; old content kept "
                        "under 'repaired_from'", doc_id, known)
        return True

    def resign(self) -> None:
        """Step down if I lead (one retry after a lost compare-and-swap): we are going."""
        if self.view.leader is None:
            return
        new = election.resign(self.view.leader, self.me, self._now_text())
        if new is not None and not self.shared.cas_leader(new):
            new = election.resign(self.view.leader, self.me, self._now_text()) if self.view.leader else None
            if new is not None:
                self.shared.cas_leader(new)
        if new is not None:
            log.info("stepped down as leader")
