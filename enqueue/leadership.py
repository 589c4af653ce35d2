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
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Callable, Mapping

from enqueue import documents as docs
from enqueue import election, repair, scheduler
from enqueue.documents import TurnRecord
from enqueue.errors import Conflict
from enqueue.outcomes import Outcome
from enqueue.records import has_report
from enqueue.site_names import is_site_name

if TYPE_CHECKING:
    from enqueue.records import RecordQueue
    from enqueue.shared_docs import SharedDocs
    from enqueue.store import Store
    from enqueue.timing import Timing

log = logging.getLogger("enqueue.agent")

#: The heartbeat field that carries the highest turn number its agent has seen.
TURN_SEEN = "turn_seen"


def never_used(store: Store, leader_doc: str) -> bool:
    """No turn was ever granted in the database: no heartbeat, no turn record, no deleted leader doc ``leader_doc``."""
    return not store.list_prefix(docs.HEARTBEAT_PREFIX, limit=1) and \
        not store.list_prefix(docs.TURN_PREFIX, limit=1) and store.deleted_rev(leader_doc) is None


def _number(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def highest_turn_known(store: Store, seen: int, leader_raw: Mapping[str, Any] | None, replaced_rev: str | None,
                       prefix: str = docs.TURN_PREFIX) -> int:
    """The turn a rewritten leader doc starts from: ``repair.resume_turn``'s rule.

    What this agent saw and the old document's own turn, and the revision
    count of the revision the rewrite replaces (the broken document's or the
    tombstone's). Only when the document has no revision at all do the newest
    turn record of this document set and the heartbeats (the turn a site
    runs, the highest its agent saw) count.
    """
    if repair.revision_count(replaced_rev) > 0:
        return repair.resume_turn(seen, leader_raw, replaced_rev, None)
    newest = None
    for rec in store.list_prefix(prefix, limit=1, descending=True):
        parsed, _ = docs.parse_turn_record(rec)
        newest = parsed.turn if parsed is not None else None
    heartbeats = store.list_prefix(docs.HEARTBEAT_PREFIX)
    claims = [n for raw in heartbeats for n in (_number(raw.get("turn")), _number(raw.get(TURN_SEEN))) if n is not None]
    return repair.resume_turn(seen, leader_raw, replaced_rev, newest, claims)


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
            self.shared.reread(docs.heartbeat_id(self.view.leader.leader))
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
        if p.revoked_running:
            # Taking a running turn away rests on silence: confirm it on a fresh read.
            before = self.view.liveness.rev(p.revoked_site)
            self.shared.reread(docs.heartbeat_id(p.revoked_site))
            if self.view.liveness.rev(p.revoked_site) != before:
                return True
        record = None
        if p.revoked_site is not None:
            # The record goes before the write that ends the turn: a lost answer or a crash in between
            # cannot leave the turn over without one.
            record = TurnRecord(
                turn=p.revoked_turn,
                site=p.revoked_site,
                how=Outcome.REVOKED if p.revoked_running else Outcome.NOT_STARTED,
                leader=self.me,
                # What backs my word over a dead leader's "not started" of this turn (records.write_once).
                started_at=self.view.leader.started_at if p.revoked_running else None,
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
        """When a missing or broken leader doc may be rewritten; None while it parses."""
        since = self.view.invalid_leader_since
        return None if since is None else since + self.t.heartbeat_stale_s

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
        raw = self.view.leader_raw or {}
        replaced = raw.get("_rev") if raw else self.view.leader_deleted_rev
        prefix = docs.turn_prefix(doc_id)
        known = highest_turn_known(self.store, self.view.max_turn_seen, self.view.leader_raw,
                                   replaced if isinstance(replaced, str) else None, prefix)
        self._record_displaced(prefix)
        # An admin's pause survives the repair; a pause flag that does not parse reads as set.
        paused = "paused" in raw and raw["paused"] is not False and raw["paused"] is not None
        reason = raw.get("paused_reason") if isinstance(raw.get("paused_reason"), str) else None
        fresh = replace(
            docs.new_leader_doc(doc_id),
            rev=raw.get("_rev"),
            leader=self.me,
            turn=known,
            paused=paused,
            paused_reason=reason,
            last_how=Outcome.REPAIRED,
            updated_by=self.me,
            updated_at=self._now_text(),
            raw={"repaired_from": {k: v for k, v in raw.items() if not k.startswith("_")}},
        )
        if self.shared.cas_leader(fresh):
            log.warning(
                "rewrote leader doc %s, which was missing or did not parse, at turn %d; old content kept under "
                "'repaired_from'",
                doc_id,
                known,
            )
        return True

    def _record_displaced(self, prefix: str) -> None:
        """Record the turn my last reading of the leader doc showed active, if it has no record yet.

        Only the leader doc says who holds a turn: when I never read one that
        parsed, or it showed no active turn, I know of no turn to record.
        """
        last = self.view.last_valid_leader
        if last is None or last.status not in (docs.GRANTED, docs.RUNNING) or not is_site_name(last.running):
            return
        started = last.started_at if last.status == docs.RUNNING else None
        # A record there already stands, unless it says "not started" of the turn I read as started.
        if self.store.get(docs.turn_record_id(last.turn, prefix)) is not None and \
                (started is None or last.running == self.me):
            return
        # "repaired", never "not started": a turn I last saw granted may have been confirmed since.
        how = Outcome.REPAIRED
        note = f"the leader doc {self.view.leader_doc} was missing or did not parse; it was rewritten after " \
               "heartbeat_stale"
        self.records.write_now(TurnRecord(turn=last.turn, site=last.running, how=how, leader=self.me,
                                          started_at=started, ended_at=self._now_text(), note=note))

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
