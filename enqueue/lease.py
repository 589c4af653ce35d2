"""The site's heartbeat and the lease it holds, in the manner of etcd's session.

Every acknowledged heartbeat renews the site's lease: a command started (or
still running) under it must be dead ``heartbeat_stale - heartbeat_delay``
after that heartbeat was *sent* (``deadline``). Measuring from the sending,
not the answer, keeps the deadline on the safe side of the leader's
observation: the leader can have seen the new revision no earlier than it
was sent, and takes a running turn away only after ``heartbeat_stale`` of
observed silence.

Also here, because they are all about who else holds or held this site's
heartbeat:

* twin detection: another agent (another ``instance``) writing this site's
  heartbeat doc after this one started beating;
* refusing to start while an agent of this site still runs on this host;
* waiting out a previous agent's lease: a turn it left running may be ended
  only once its lease, as it announced it, has run out;
* the run a grant may be started on without a confirm (docs/PROTOCOL.md
  §3.5.7): the beats since the run began all asked for a turn, each was
  acknowledged before the lease of the one before it ran out, and a read of
  the leader doc after the run began saw revision ``floor``: a grant of a
  later revision was written after the run began, and the leader cannot
  take it back for silence while the run lasts.

Guarantees
----------
* ``deadline()`` only ever grows, and only with an acknowledged beat.
* A beat that fails (StoreError) changes neither the lease nor the deadline;
  only the next beat's moment moves (the caller retries on its own pause).
* A beat that asks for no turn ends the run when it is sent (its answer may
  be lost after it was stored); an acknowledgement later than the lease of
  the beat before ends it too, and a new run begins with that beat.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Callable, Mapping

from enqueue import documents as docs
from enqueue.config import DEFAULT_LEADER_DOC
from enqueue.documents import IDLE, LEFT, WAITING, Heartbeat
from enqueue.errors import Conflict, SiteInUse
from enqueue.observed import generation

if TYPE_CHECKING:
    from enqueue.clock import Clock
    from enqueue.store import Store
    from enqueue.timing import Timing

log = logging.getLogger("enqueue.agent")

# How many heartbeat round trips of lease must be left to confirm a turn and start its command on it.
START_ROUND_TRIPS = 3


@dataclass(frozen=True)
class Identity:
    """Who this agent is: what its heartbeat says, and how to tell whether a pid here is a live agent.

    ``agent_alive(pid)`` answers whether process ``pid`` on this host is an
    enqueue agent that still runs (the real one asks the process table; a
    simulation answers from its own agents).
    """

    instance: str
    host: str
    pid: int
    agent_alive: Callable[[int], bool]


class Lease:
    """Site ``me``'s heartbeat doc, the lease it holds, and what it shows of other agents of the site."""

    def __init__(self, me: str, timing: Timing, store: Store, clock: Clock, identity: Identity,
                 leader_doc: str = DEFAULT_LEADER_DOC) -> None:
        self.me = me
        self.leader_doc = leader_doc
        #: My heartbeat's id: its document set's own (docs.heartbeat_prefix).
        self.doc_id = docs.heartbeat_id(me, leader_doc)
        self.t = timing
        self.store = store
        self.clock = clock
        self.identity = identity
        self.state = WAITING
        self.message: str | None = None
        self.not_ready: str | None = None
        self.left_because: str | None = None
        self.beat_count = 0
        self.rev: str | None = None
        self.last_ack_sent: float | None = None
        self.round_trip_s = 0.0
        self.next_beat_at = 0.0
        self.twin_seen_at: float | None = None
        # A turn this agent did not start may be left over from an earlier agent's lease: wait that out.
        self.orphans_safe_at = clock.monotonic() + timing.heartbeat_stale_s - timing.heartbeat_delay_s
        #: When the acknowledgement that began the current run came (None: no run: a grant needs a confirm).
        self.run_from: float | None = None
        #: The leader doc's revision count in a read made after the run began (None: no such read yet).
        self.floor: int | None = None
        #: The instance of the agent of my site before me, when its last heartbeat said it left.
        self.predecessor_left: str | None = None

    def beat(self, *, repeat: bool, turn: int | None, now_text: str, extra: Mapping[str, Any]) -> Heartbeat:
        """Write my heartbeat; on success the lease runs from the moment it was sent. Returns what was written."""
        sent = self.clock.monotonic()
        self.next_beat_at = sent + self.t.heartbeat_delay_s
        self.beat_count += 1
        asks = docs.wants_turn(self.state, repeat)
        if not asks:
            self._end_run()
        hb = Heartbeat(
            site=self.me,
            state=self.state,
            repeat=repeat,
            host=self.identity.host,
            pid=self.identity.pid,
            instance=self.identity.instance,
            beat=self.beat_count,
            time=now_text,
            turn=turn,
            message=self.message,
            rev=self.rev,
            heartbeat_delay_s=self.t.heartbeat_delay_s,
            heartbeat_stale_s=self.t.heartbeat_stale_s,
            not_ready=self.not_ready,
            left_because=self.left_because if self.state == LEFT else None,
        )
        body = docs.render_heartbeat(hb, dict(extra), self.leader_doc)
        for _ in range(3):
            try:
                body["_rev"] = self.store.put(body)
                break
            except Conflict:
                # Only I write this document; an admin's edit or my previous run's is overwritten.
                current = self.store.get(self.doc_id)
                if current is None:
                    body.pop("_rev", None)
                else:
                    body["_rev"] = current["_rev"]
        else:
            raise Conflict(f"heartbeat {self.doc_id} keeps changing under this agent")
        self.rev = body["_rev"]
        acked = self.clock.monotonic()
        if asks and (self.run_from is None or self.last_ack_sent is None or acked > self.deadline()):
            self._end_run()
            self.run_from = acked
        self.last_ack_sent = sent
        self.round_trip_s = acked - sent
        return replace(hb, rev=self.rev)

    def _end_run(self) -> None:
        self.run_from = None
        self.floor = None

    def saw_leader_read(self, rev: str | None, issued_at: float) -> None:
        """A read of the leader doc, sent at ``issued_at``, answered with revision ``rev``: the run's floor, if the
        run began before that read and has none yet."""
        count = generation(rev)
        if self.run_from is not None and self.floor is None and issued_at >= self.run_from and count is not None:
            self.floor = count

    def after_floor(self, rev: str | None) -> bool:
        """A leader doc of revision ``rev`` was written after my run began: its revision comes after the floor."""
        count = generation(rev)
        return self.floor is not None and count is not None and count > self.floor

    def grant_is_mine(self, rev: str | None, grantee: str | None) -> bool:
        """A grant of revision ``rev`` naming ``grantee`` is this agent's to start or confirm, and no other's.

        It names this agent, or the agent of my site before me, which said it
        left before my run began, if the grant was written after that.
        """
        return grantee == self.identity.instance or \
            (grantee is not None and grantee == self.predecessor_left and self.after_floor(rev))

    def may_start_on_grant(self, rev: str | None, grantee: str | None) -> bool:
        """A grant of revision ``rev`` for ``grantee`` may be started on without a confirm (docs/PROTOCOL.md §3.5.7):
        it is mine and was written after my run began. The caller checks the lease's room."""
        return self.grant_is_mine(rev, grantee) and self.after_floor(rev)

    def set_state(self, state: str, repeat: bool) -> bool:
        """Change what I say I want; True when the leader must know at once (beat now).

        Between running and waiting with --repeat, a site wants turns all the
        same, so the next regular heartbeat carries the change: an extra write
        in the middle of a handoff would only slow the handoff down.
        """
        if state == self.state:
            return False
        before = docs.wants_turn(self.state, repeat)
        self.state = state
        return state in (IDLE, LEFT) or docs.wants_turn(state, repeat) != before

    def deadline(self) -> float:
        """When my command must be dead unless another heartbeat is acknowledged."""
        assert self.last_ack_sent is not None
        return self.last_ack_sent + self.t.heartbeat_stale_s - self.t.heartbeat_delay_s

    def too_short_to_start(self, now: float) -> bool:
        """The lease's SIGTERM moment is too close to confirm a turn and start its command on it.

        The supervisor refuses a command once that moment has passed, and
        renewing is safe only before the confirm (after it, a late heartbeat
        could land after the leader took the turn away for silence): so beat
        first unless the lease outlasts the confirm's round trip with room.
        """
        term_at = self.deadline() - self.t.kill_grace_s
        return term_at - now <= START_ROUND_TRIPS * self.round_trip_s

    # ------------------------------------------------------------------ other agents of my site

    def saw_own_doc(self, raw: Mapping[str, Any], hb: Heartbeat | None, now: float) -> None:
        """Take in my heartbeat doc as read: its revision, and whether a twin wrote it."""
        self.rev = raw.get("_rev")
        if hb is None or self.beat_count == 0 or hb.instance in (None, self.identity.instance) or hb.state == LEFT:
            return
        if self.twin_seen_at is None or now - self.twin_seen_at >= self.t.heartbeat_stale_s:
            log.error("another agent runs as site %s (host %s, pid %s): run each site once; this agent will not "
                      "end turns it did not start while the other one beats", self.me, hb.host, hb.pid)
        self.twin_seen_at = now

    def twin_beating(self, now: float) -> bool:
        """A twin wrote my heartbeat doc within the last ``heartbeat_stale``."""
        return self.twin_seen_at is not None and now - self.twin_seen_at < self.t.heartbeat_stale_s

    def refuse_local_twin(self, previous: Heartbeat | None) -> None:
        """Raise SiteInUse when an agent of my site still runs on this very host."""
        me = self.identity
        hb = previous
        if hb is None or hb.state == LEFT or hb.host != me.host or not hb.pid or hb.pid == me.pid:
            return
        if me.agent_alive(hb.pid):
            raise SiteInUse(f"site {self.me} already has an agent on this host (pid {hb.pid}); run each site once")

    def wait_out_previous(self, previous: Heartbeat | None, now: float) -> None:
        """Leave a turn an earlier agent of my site left running alone for that agent's lease, if longer than mine.

        An earlier agent whose last word was ``left`` acts on nothing any more:
        a grant naming it, written after my run began, is as good as mine.
        """
        lease = previous.lease_s if previous is not None and previous.instance != self.identity.instance else None
        if lease is not None:
            self.orphans_safe_at = max(self.orphans_safe_at, now + lease)
        if previous is not None and previous.state == LEFT and previous.instance != self.identity.instance:
            self.predecessor_left = previous.instance

    def orphans_safe(self, now: float) -> bool:
        """A turn this agent did not start may be ended now: no earlier lease and no twin can still hold it."""
        return now >= self.orphans_safe_at and not self.twin_beating(now)
