"""The site agent as a state machine: ``start``, then ``handle`` events and ``step`` at the moments it asks for.

The agent owns no thread, queue, signal handler or process: everything it
needs from the world comes in through its constructor (a store, a clock, a
command runner, a random source, its identity) and its events
(enqueue.events). The driver (enqueue.agent_process) feeds it the changes
feed, the runner's reports and stop signals; a simulation can drive many
agents in one process under a fake clock the same way.

The concepts live in their own modules, each with its state: lease
(heartbeat, and the run a grant may be started on), own_turn, leadership,
shared_docs (reads and compare-and-swap writes into the ``View`` of view),
records (still owed), timers, side_duties and side_steps (side commands),
self_drain, max_wait and write_refusal. This module decides what is due, in
order: my own turn first (finishing it hands over), then the side commands,
then the registry, then leadership, then whether to leave.

Guarantees
----------
* ``handle`` never touches the store; it may ask the runner to stop the
  command (a stop request, or nothing else).
* ``step`` does what is due at ``now``: at most one heartbeat, reads, the
  writes its decisions call for (each a compare-and-swap; a 409 makes it
  re-read and decide again), up to ``_STEPS_PER_CALL`` decisions. A
  ``StoreError`` is an outage: the agent retries after ``retry_s``.
* ``step`` returns ``Left`` once, when the agent is done (its command dead,
  its last writes made or given up on); it must not be called again then.
"""

from __future__ import annotations

import logging
import random
from typing import TYPE_CHECKING

from enqueue import documents as docs
from enqueue import leadership, turns
from enqueue.clock import format_time
from enqueue.documents import LEFT, LEFT_MAX_WAIT, LEFT_STOPPED, LEFT_TURN_DONE
from enqueue.errors import EXIT_NO_TURN, AuthFailed, Conflict, EnqueueError, Forbidden, StoreError
from enqueue.events import DocChanged, Event, FeedFailed, FeedResumed, SideCommandEnded, StopRequested
from enqueue.leadership import Leadership
from enqueue.lease import Identity, Lease
from enqueue.leaving import Left, Leaving
from enqueue.max_wait import MaxWait
from enqueue.outcomes import Outcome
from enqueue.own_turn import CommandRunner, OwnTurn
from enqueue.records import RecordQueue
from enqueue.self_drain import SelfDrain
from enqueue.shared_docs import Outage, SharedDocs, refuse_cluster
from enqueue.side_duties import SideDuties
from enqueue.side_steps import SideRunner
from enqueue.timers import Timers
from enqueue.view import View
from enqueue.write_refusal import WriteRefusal

if TYPE_CHECKING:
    from enqueue.clock import Clock
    from enqueue.config import AgentSettings
    from enqueue.store import Seq, Store

log = logging.getLogger("enqueue.agent")

_MAX_WAIT_S = 60.0
_STEPS_PER_CALL = 50


class Agent:
    """One site's agent; see the module docstring for how it is driven."""

    def __init__(self, settings: AgentSettings, store: Store, clock: Clock, runner: CommandRunner,
                 rng: random.Random, identity: Identity, side_runner: SideRunner | None = None) -> None:
        self.s = settings
        self.t = settings.timing
        self.me = settings.site
        self.store = store
        self.clock = clock
        self.view = View(self.me, settings.leader_doc, settings.sites_doc, self.t.heartbeat_stale_s)
        self.timers = Timers()
        self.lease = Lease(self.me, self.t, store, clock, identity, settings.leader_doc)
        self.shared = SharedDocs(store, self.view, clock, self.lease.saw_own_doc, self.lease.saw_leader_read)
        self.records = RecordQueue(store, self.me, docs.turn_prefix(settings.leader_doc))
        self.own = OwnTurn(settings, self.shared, self.records, runner, clock, self.lease,
                           set_state=self._set_state, beat=self._beat, now_text=self._now_text)
        self.leadership = Leadership(self.me, self.t, self.shared, self.records, store, rng, self._now_text)
        self.leaving = Leaving(self.t.heartbeat_stale_s)
        self.outage = Outage(self.t.heartbeat_delay_s)
        self.refusal = WriteRefusal(self.me, self.lease)
        self.feed_since: Seq | None = None
        self.side = SideDuties(settings, self.lease, side_runner)
        self.drain = SelfDrain(settings, self.view, self.shared, self.own, self._now_text)
        self.max_wait = MaxWait(self.me, settings.max_wait_s, self.own, self.view)

    # ------------------------------------------------------------------ the public face

    @property
    def watched_ids(self) -> tuple[str, ...]:
        """The documents the changes feed must deliver (``DocChanged``) from now on."""
        return self.shared.watched_ids

    def start(self, now: float) -> None:
        """Check the database, create the shared documents if missing, read them, register and beat once.

        Raises EnqueueError on a database it must not use (ClusterRefused),
        a twin on this host (SiteInUse), or a database out of reach.
        ``feed_since`` is then the feed position to follow from.
        """
        refuse_cluster(self.store, self.s.allow_cluster)
        # Only a database that never held a turn gets a fresh leader doc here; anywhere else a missing
        # one is rebuilt by the repair, once every lease it could have granted has run out.
        if leadership.never_used(self.store, self.s.leader_doc):
            self.shared.create_if_absent(docs.render_leader(docs.new_leader_doc(self.s.leader_doc)), admins_only=True)
        self.shared.create_if_absent(docs.render_sites(docs.new_sites_doc(self.s.sites_doc)))
        # Take the feed position before reading, so no change falls between the two.
        self.feed_since = self.store.current_seq()
        self.shared.read_all()
        previous = self.view.heartbeats.get(self.me)
        self.drain.carry_on(previous)
        self.lease.refuse_local_twin(previous)
        self.lease.wait_out_previous(previous, self.clock.monotonic())
        self.shared.register(self._now_text())
        # Say from the first beat that a side command comes before any turn.
        self.lease.state, self.lease.not_ready = self.side.state()
        self._beat()
        self.max_wait.begin(self.clock.monotonic())
        log.info("registered as site %s on %s (pid %d), %s", self.me, self.lease.identity.host,
                 self.lease.identity.pid, "taking turns until stopped" if self.s.repeat else "waiting for one turn")

    def handle(self, event: Event) -> None:
        """Take in one event; never touches the store."""
        if isinstance(event, DocChanged):
            log.debug("changed: %s", event.doc_id)
            self.shared.absorb(event.doc_id, event.doc, from_feed=True)
        elif isinstance(event, FeedFailed):
            self.outage.note(event.error, self.clock.monotonic())
            self.shared.need_full_read = True
        elif isinstance(event, FeedResumed):
            self.shared.need_full_read = True
        elif isinstance(event, StopRequested):
            self.leaving.request(event.signum)
            if self.own.command_may_run:
                self.own.stop_command(Outcome.STOPPED)
            self.side.stop()
        elif isinstance(event, SideCommandEnded):
            self.side.ended(event)
        else:
            self.own.on_runner(event)

    def step(self, now: float) -> Left | None:
        """Do everything due at ``now``; ``Left`` when the agent is done."""
        for _ in range(_STEPS_PER_CALL):
            result = self._step_once(now)
            if isinstance(result, Left):
                return result
            if not result:
                break
            now = self.clock.monotonic()
        return None

    def next_wake(self) -> float:
        """The monotonic moment by which ``step`` must be called again (events may call for it sooner)."""
        now = self.clock.monotonic()
        t = self.timers
        t.set("heartbeat", self.lease.next_beat_at)
        t.set("retry", self.outage.retry_at)
        t.set("campaign", self.leadership.campaign_not_before)
        t.set("orphans", self.lease.orphans_safe_at)
        t.set("give up", self.leaving.give_up_at)
        t.set("max wait", self.max_wait.wake_at())
        t.set("repair", self.leadership.repair_due_at())
        t.set("side", self.side.next_due_at(stopping=self.leaving.stopping, turns_done=self.own.turns_done))
        if now >= self.lease.next_beat_at and now >= self.outage.retry_at:
            return now
        stale = self.view.next_stale_after(now)
        wake = t.next_wake(now, _MAX_WAIT_S)
        return wake if stale is None else min(wake, stale)

    # ------------------------------------------------------------------ one decision

    def _step_once(self, now: float) -> bool | Left:
        """Do the next due thing. True when the view changed and the step should run again."""
        if self.leaving.writes_overdue(now, self.own.command_may_run):
            cur = self.own.current
            self.leaving.say_unwritten(None if cur is None else cur.turn, [r.turn for r in self.records.pending])
            return Left(self.leaving.exit_code(self.own.last_exit_code))
        if now < self.outage.retry_at:
            return self._leave() if self.leaving.stopping and self.own.current is None else False
        try:
            again = self._decide(now)
            if not isinstance(again, Left):
                self.outage.over(now)
                self.refusal.over()
            return again
        except Conflict:
            return True
        except StoreError as exc:
            if isinstance(exc, (Forbidden, AuthFailed)):
                self.refusal.refused(exc)
            self.outage.note(exc, self.clock.monotonic())
            self.shared.need_full_read = True
            return self._leave() if self.leaving.stopping and self.own.current is None else False

    def _decide(self, now: float) -> bool | Left:
        if now >= self.lease.next_beat_at:
            self._beat()
            self.shared.need_full_read = True  # the feed is the fast path; a read per heartbeat the safety net
        # A grant is taken before a full read: a confirm is safe on any view, a start on the grant rests on my beats.
        if self.shared.need_full_read and not self._takes_grant():
            self.shared.read_all()
        self.records.flush()
        view, own = self.view, self.own
        # 1. My own turn first: finishing it hands over, which is the fast path.
        if own.current is not None and own.current.ending is not None:
            again = own.finish(repeat=self._repeat(), next_state=self.side.steps.state_after_turn())
            if own.current is None:
                self.side.steps.turn_ended()
            return again
        if own.current is not None:
            own.check_still_mine()
        elif turns.holds_running(view.leader, self.me):
            return own.adopt_own_confirm() or own.end_orphaned(now)
        elif turns.granted_to_me(view.leader, self.me) and (decided := own.on_grant(
                now, takes=self._takes_grant(), drained=self.drain.holds_me_out())) is not None:
            return decided or self.shared.need_full_read
        # 1b. Outside a turn: the side commands (--between, --ready), with the state they make me say.
        if own.current is None and self.side.go_on(stopping=self.leaving.stopping, turns_done=own.turns_done):
            self.side.step(now, self._set_state)
        # 2. The registry: a site missing from it (broken, deleted, or an entry removed) registers again.
        if not self.leaving.stopping and (view.registry is None or self.me not in view.registry.sites):
            log.warning("site %s is not in the registry %s: registering again (to retire a site, stop its agent "
                        "before removing it)", self.me, self.s.sites_doc)
            self.shared.register(self._now_text())
            return True
        if self.drain.due():
            return self.drain.drain(self._leave)
        # 3. Leadership.
        if view.leader is None:
            return not self.leaving.stopping and self.leadership.repair(now)
        if not self.leaving.stopping and self.leadership.may_campaign(now):
            return self.leadership.campaign(now)
        if view.leader.leader == self.me and view.registry is not None and self.leadership.lead(now):
            return True
        # 4. Done?
        if own.current is None and (self.leaving.stopping or (not self.s.repeat and own.turns_done > 0)):
            return self._leave()
        if self.max_wait.over(now):
            return self._leave(gave_up=True)
        return False

    # ------------------------------------------------------------------ heartbeat and state

    def _takes_grant(self) -> bool:
        """The view grants me a turn that is mine, and I take it now: none of mine goes on, I want one, undrained."""
        return self.own.current is None and turns.granted_to_me(self.view.leader, self.me) and \
            self.own.grant_is_mine() and not self.drain.holds_me_out() and \
            self.side.wants_turn_now(stopping=self.leaving.stopping, repeat=self._repeat())

    def _repeat(self) -> bool:
        return bool(self.s.repeat) and not self.leaving.stopping

    def _now_text(self) -> str:
        return format_time(self.clock.now(), self.s.time_format)

    def _beat(self) -> None:
        """Write my heartbeat; on success, extend my command's deadline from the moment it was sent."""
        cur = self.own.current
        hb = self.lease.beat(repeat=self._repeat(), turn=None if cur is None else cur.turn, now_text=self._now_text(),
                             extra={"last_exit_code": self.own.last_exit_code, "turns_done": self.own.turns_done,
                                    **self.leadership.heartbeat_fields(), **self.drain.heartbeat_fields()})
        assert hb.rev is not None
        self.view.own_beat(hb, hb.rev, self.clock.monotonic())
        self.shared.need_full_read |= self.lease.run_from is not None and self.lease.floor is None  # the run's floor
        self.own.extend(self.lease.deadline())

    def _set_state(self, state: str) -> None:
        """Change what I say I want; write it at once only when the leader must know now (``Lease.set_state``)."""
        if self.lease.set_state(state, self._repeat()):
            self._beat()

    # ------------------------------------------------------------------ leaving

    def _leave(self, *, gave_up: bool = False) -> Left:
        """Step down, say ``left`` (and why), and be done. Each write is tried once: we are going."""
        self.lease.left_because = LEFT_STOPPED if self.leaving.stopping else \
            LEFT_MAX_WAIT if gave_up else LEFT_TURN_DONE
        try:
            self.records.flush()
        except EnqueueError as exc:
            log.error("could not write %d turn record(s): %s", len(self.records.pending), exc)
        try:
            self.leadership.resign()
            self.lease.state = LEFT
            self._beat()
            log.info("left")
        except EnqueueError as exc:
            log.warning("could not say goodbye cleanly: %s", exc)
        if gave_up:
            return Left(EXIT_NO_TURN, self.max_wait.error())
        return Left(self.leaving.exit_code(self.own.last_exit_code))
