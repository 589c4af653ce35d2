"""The site's own turn: confirm it and start the command, notice losing it, finish it, end orphans.

The command runs only between a successful confirm (``status: running``,
written by compare-and-swap *before* the command starts), or a grant that
names this agent and came after its run of beats began (started on the
grant alone: docs/PROTOCOL.md §3.5.7), and the command's end, under a
supervisor that kills it by the deadline of the lease (enqueue.lease),
extended with every acknowledged heartbeat.

Guarantees
----------
* At most one ``TurnInProgress``; a turn's command is asked to start once.
* A turn marked done always has its record, stored or carried: the write
  that finishes my turn carries it in the leader doc (``last_record``) and
  I store it after that write; on every other path that ends a turn (ending
  an orphan, giving a grant back; the leader's revocation) the record is
  stored before the write. A write of mine displaces a carried record only
  once that is stored (``RecordQueue.store_carried``, docs/PROTOCOL.md
  §3.8.2); the next holder stores it while its command runs.
* A turn the leader doc says this site runs, though this agent never
  started it, or a grant to this site that names another agent of it (which
  may have started on it), is ended only once every lease that could have
  started it has run out and no twin of this site beats
  (``Lease.orphans_safe``).
* A grant that names this agent and that it will not take (its site is
  drained) is given back by this agent: nobody else may take it back at once.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import TYPE_CHECKING, Callable, Protocol

from enqueue import documents as docs
from enqueue import failures, turns
from enqueue.clock import format_time
from enqueue.documents import IDLE, RUNNING, WAITING, TurnRecord
from enqueue.errors import StoreError
from enqueue.events import CommandEnded, CommandStarted, RunnerReport, StartFailed, SupervisorDied
from enqueue.outcomes import Outcome, after_revocation
from enqueue.rotation import eligible_sites
from enqueue.turn_in_progress import Ending, TurnInProgress, UnansweredConfirm, UnansweredFinish, ended_turn

if TYPE_CHECKING:
    from enqueue.clock import Clock
    from enqueue.config import AgentSettings
    from enqueue.lease import Lease
    from enqueue.records import RecordQueue
    from enqueue.shared_docs import SharedDocs

log = logging.getLogger("enqueue.agent")


class CommandRunner(Protocol):
    """What the agent asks of the command's supervisor (enqueue.runner is the real one).

    It answers through events (``RunnerReport``) handed to ``Agent.handle``:
    every ``start`` by ``StartFailed``, or ``CommandStarted`` then
    ``CommandEnded``, or ``SupervisorDied``. The command must be dead by the
    deadline (a monotonic moment) even if the agent is frozen or gone.
    """

    def start(self, turn: int, argv: list[str], env: dict[str, str], deadline: float) -> None:
        """Run ``argv`` (with ``env`` added) as ``turn``; dead by ``deadline``. Returns at once."""

    def extend(self, deadline: float) -> None:
        """Move the running command's deadline later (ignored once its SIGTERM moment has passed)."""

    def stop(self, reason: str) -> None:
        """End the running command now (SIGTERM, SIGKILL after the grace); ``reason`` comes back."""

    def close(self) -> None:
        """Stop any command with the grace policy and let the supervisor go."""


class OwnTurn:
    """Site ``me``'s own turns: at most one in progress."""

    def __init__(self, settings: AgentSettings, shared: SharedDocs, records: RecordQueue, runner: CommandRunner,
                 clock: Clock, lease: Lease, *, set_state: Callable[[str], None], beat: Callable[[], None],
                 now_text: Callable[[], str]) -> None:
        self.s = settings
        self.me = settings.site
        self.shared = shared
        self.view = shared.view
        self.records = records
        self.runner = runner
        self.clock = clock
        self.lease = lease
        self._set_state = set_state
        self._beat = beat
        self._now_text = now_text
        self.current: TurnInProgress | None = None
        self.unanswered_confirms: tuple[UnansweredConfirm, ...] = ()  # the tries of one turn, oldest first
        self.unanswered_finish: UnansweredFinish | None = None
        self.recorded_turn: int | None = None
        self.turns_done = 0
        self.last_exit_code: int | None = None
        self.failures = failures.FailureRun()

    @property
    def command_may_run(self) -> bool:
        """A turn of mine is in progress and its command has not been reported ended."""
        return self.current is not None and self.current.command_may_run

    def extend(self, deadline: float) -> None:
        """The lease was renewed: a running command may live until ``deadline``."""
        if self.current is not None:
            self.runner.extend(deadline)

    def grant_is_mine(self) -> bool:
        """The grant to my site is this agent's to take: it names no agent, or this one (``Lease.grant_is_mine``)."""
        doc = self.view.leader
        assert doc is not None
        return doc.grantee is None or self.lease.grant_is_mine(doc.rev, doc.grantee)

    def on_grant(self, now: float, *, takes: bool, drained: bool) -> bool | None:
        """Act on the turn granted to my site: end it as an orphan when it names another agent of my site, take it
        when ``takes``, give it back when it names me and my site is ``drained``; None: nothing to do now."""
        doc = self.view.leader
        assert doc is not None
        if not self.grant_is_mine():
            return self.end_orphaned(now)
        if takes:
            return self.take_grant()
        if drained and doc.grantee is not None:
            return self.give_back()
        return None

    def take_grant(self) -> bool:
        """Start the turn granted to me, on the grant alone when it allows, else after a confirm; True when the view
        changed."""
        doc = self.view.leader
        assert doc is not None
        if self.lease.may_start_on_grant(doc.rev, doc.grantee):
            if self.lease.too_short_to_start(self.clock.monotonic()):
                # A beat that comes back in time goes on with the run; one that comes back late ends it, and the
                # grant then needs a confirm.
                self._beat()
            if self.lease.may_start_on_grant(doc.rev, doc.grantee):
                log.debug("starting turn %d on its grant", doc.turn)
                return self._start(doc.turn, self._now_text(), self.lease.deadline())
        return self.confirm_and_start()

    def give_back(self) -> bool:
        """Hand back a grant made for me that I will not take (my site is drained): record it not started, then
        pass the turn on as a finish does. True: decide again."""
        doc = self.view.leader
        assert doc is not None and turns.granted_to_me(doc, self.me)
        self.records.write_now(TurnRecord(turn=doc.turn, site=self.me, how=Outcome.NOT_STARTED,
                                          host=self.lease.identity.host, ended_at=self._now_text(),
                                          note="this site was drained before it started the turn"))
        new, nxt = turns.finish(doc, self.me, None, Outcome.NOT_STARTED, False, self._now_text(),
                                heartbeats=self.view.heartbeats)
        if self.shared.cas_leader(new):
            log.info("gave turn %d back: this site is drained", doc.turn)
            if nxt is not None:
                log.info("granted %s turn %d", nxt, doc.turn + 1)
        return True

    def confirm_and_start(self) -> bool:
        """Confirm the turn granted to me and start its command; True when the view changed."""
        assert self.view.leader is not None
        turn = self.view.leader.turn
        if self.lease.too_short_to_start(self.clock.monotonic()):
            self._beat()
        confirmed = turns.confirm(self.view.leader, self.me, self._now_text())
        try:
            won = self.shared.cas_leader(confirmed)
        except StoreError:
            # The answer may be lost after the write was applied: the next read tells (``adopt_own_confirm``).
            # Every try of this turn since counts: an earlier one may be the one that went through.
            earlier = tuple(c for c in self.unanswered_confirms if c.turn == turn)
            self.unanswered_confirms = earlier + (UnansweredConfirm(turn, confirmed.started_at, self.lease.deadline()),)
            raise
        if not won:
            log.debug("confirm of turn %d lost a race", turn)
            return True
        log.debug("confirmed turn %d", turn)
        return self._start(turn, self.view.leader.started_at, self.lease.deadline())

    def adopt_own_confirm(self) -> bool:
        """The running turn the leader doc gives me is the one this agent confirmed without hearing back: run it.

        It starts under the lease of the confirm (a heartbeat since must not
        lengthen it), so the supervisor refuses it once that lease's SIGTERM
        moment has passed, and the turn is then recorded as not started.
        """
        tries, self.unanswered_confirms = self.unanswered_confirms, ()
        doc = self.view.leader
        # Only a confirm moves a turn granted to me to running, and it writes ``started_at``; a later write
        # (the leader's rotation, an admin's pause or skip) keeps both, so they identify the confirm.
        pending = next((c for c in tries if doc is not None and doc.holds(self.me, c.turn) and
                        doc.started_at == c.started_text), None)
        if pending is None:
            return False
        log.info("the confirm of turn %d went through though its answer was lost: starting it", pending.turn)
        self._start(pending.turn, pending.started_text, pending.deadline)
        return True

    def _start(self, turn: int, started_text: str | None, deadline: float) -> bool:
        assert self.view.leader is not None
        self.current = TurnInProgress(turn, self.clock.monotonic(), started_text)
        if self.view.leader.skip_turn == turn:
            # An admin skipped this turn before it started: end it without running anything.
            log.info("turn %d was skipped before it started", turn)
            self.current.ending = Ending(None, Outcome.SKIPPED, None, 0.0)
            return True
        env = {
            "ENQUEUE_SITE": self.me,
            "ENQUEUE_TURN": str(turn),
            "ENQUEUE_LEADER": self.view.leader.leader or "",
        }
        self.runner.start(turn, list(self.s.command), env, deadline)
        log.info("started turn %d: %s", turn, " ".join(self.s.command))
        self._set_state(RUNNING)
        try:
            self.records.store_carried(self.view.leader)  # while the command starts: my finish needs it stored
        except StoreError as exc:
            log.debug("the record the leader doc carries is not stored yet (%s): trying again at my finish", exc)
        return False

    def check_still_mine(self) -> None:
        """Stop my running command if the leader doc says my turn is over (revoked, skipped)."""
        assert self.current is not None
        reason = turns.lost_reason(self.view.leader, self.me, self.current.turn)
        if reason is not None:
            self.stop_command(reason)

    def stop_command(self, reason: str) -> None:
        """Ask the runner to stop my command, once per reason."""
        cur = self.current
        if cur is None or cur.stop_sent == reason:
            return
        cur.stop_sent = reason
        if reason == Outcome.REVOKED:
            log.error("turn %d is no longer mine: stopping the command now", cur.turn)
        else:
            log.info("stopping the command of turn %d (%s)", cur.turn, reason)
        self.runner.stop(reason)

    def on_runner(self, ev: RunnerReport) -> None:
        """Take in what the runner reported about my command."""
        cur = self.current
        if isinstance(ev, CommandStarted):
            if cur is not None and ev.turn == cur.turn:
                cur.pid = ev.pid
            return
        if isinstance(ev, SupervisorDied):
            log.error("the command supervisor died: %s", ev.error or "no reason given")
            if cur is not None and cur.ending is None:
                cur.ending = Ending(None, Outcome.SUPERVISOR_DIED, ev.error, None)
            return
        log.debug("command of turn %s ended: %s", ev.turn, ev.how)
        if cur is None or ev.turn != cur.turn:
            return
        if isinstance(ev, StartFailed):
            log.error("turn %d: %s", ev.turn, ev.error)
            cur.ending = Ending(ev.exit_code, Outcome.FAILED_TO_START, ev.error,
                                self.clock.monotonic() - cur.started_mono)
            return
        assert isinstance(ev, CommandEnded)
        how = ev.how or Outcome.EXITED
        if how == Outcome.STOPPED and cur.stop_sent:
            how = cur.stop_sent
        now = self.clock.monotonic()
        duration = ev.duration_s if ev.duration_s is not None else now - cur.started_mono
        # The report may reach a frozen or busy agent late: date the end by the command's own duration.
        ended = self.clock.now() - timedelta(seconds=max(0.0, now - (cur.started_mono + duration)))
        cur.ending = Ending(ev.exit_code, how, ev.error, duration, format_time(ended, self.s.time_format))

    def finish(self, *, repeat: bool, next_state: str = WAITING) -> bool:
        """End my turn: mark it done, passing the next turn on and carrying its record, if still mine; then store
        the record (only it, if the turn is no longer mine).

        With ``repeat`` I then say ``next_state``, and stay in the rotation I
        pass on only if that state asks for a turn.
        """
        cur = self.current
        assert cur is not None and cur.ending is not None
        end = cur.ending
        duration = end.duration_s if end.duration_s is not None else self.clock.monotonic() - cur.started_mono
        mine = turns.still_mine(self.view.leader, self.me, cur.turn)
        taken = "the turn was taken away before the command ended; "
        record = TurnRecord(turn=cur.turn, site=self.me, how=end.how if mine else after_revocation(end.how),
                            exit_code=end.exit_code, host=self.lease.identity.host,
                            leader=self.view.leader.leader if self.view.leader else None,
                            started_at=cur.started_text, ended_at=end.ended_text or self._now_text(),
                            duration_s=duration, note=end.error if mine else taken + (end.error or ""))
        if mine:
            assert self.view.leader is not None
            stays = repeat and docs.wants_turn(next_state, repeat)
            led = self.view.leader.leader == self.me
            # A leader that leaves after this turn hands its leadership on in the same write.
            heirs = self._heirs() if led and not repeat else ()
            # The record this write displaces from the leader doc is stored first (docs/PROTOCOL.md §3.8.2).
            self.records.store_carried(self.view.leader)
            new, nxt = turns.finish(self.view.leader, self.me, end.exit_code, end.how, stays, self._now_text(),
                                    heirs, self.view.heartbeats, record)
            try:
                won = self.shared.cas_leader(new)
            except StoreError:
                # The answer may be lost after the write was applied: the next read tells (``_not_mine``).
                self.unanswered_finish = UnansweredFinish(cur.turn, new.ended_at, end.how, end.exit_code)
                self._owe(record)
                raise
            if not won:
                return True
            self._owe(record)
            log.info("finished turn %d: %s, exit code %s, %.3f s", cur.turn, end.how, end.exit_code, duration)
            if nxt is not None:
                log.info("granted %s turn %d", nxt, cur.turn + 1)
            if led and new.leader != self.me:
                log.info("handed the leadership to %s (term %d)", new.leader, new.leader_term)
        else:
            if self.recorded_turn != cur.turn:
                self.records.write_now(record)
                self.recorded_turn = cur.turn
            self._not_mine(cur.turn, end, duration)
        self.unanswered_finish = None
        self.current = None
        self.turns_done += 1
        self.last_exit_code = end.exit_code
        self.failures = failures.after_turn(self.failures, end.how if mine else after_revocation(end.how),
                                            end.exit_code, cur.turn)
        self._set_state(next_state if repeat else IDLE)
        return True

    def _owe(self, record: TurnRecord) -> None:
        """Store ``record`` now, or, if the database does not answer, at a later ``flush``: once, either way."""
        if self.recorded_turn == record.turn:
            return
        self.recorded_turn = record.turn
        try:
            self.records.add(record)
        except StoreError as exc:
            log.warning("turn %d: its record is not stored yet (%s); it is carried in the leader doc meanwhile",
                        record.turn, exc)

    def _not_mine(self, turn: int, end: Ending, duration: float) -> None:
        """Say how my turn, which the leader doc no longer holds as mine, came to end: only what the doc shows.

        After a finishing write whose answer was lost, the doc shows whether
        that write ended the turn (its own ``ended_at``, how and exit code) or
        another one did, for as long as it still describes the end of that
        turn; once it has moved on past that, nobody can tell any more.
        """
        pending = self.unanswered_finish
        doc = self.view.leader
        if pending is not None and pending.turn == turn and doc is not None and ended_turn(doc) == turn \
                and pending.went_through(doc):
            log.info("finished turn %d: %s, exit code %s, %.3f s (the answer to the write that finished it was "
                     "lost; the leader doc shows it went through)", turn, end.how, end.exit_code, duration)
        elif pending is not None and pending.turn == turn and (doc is None or ended_turn(doc) != turn):
            log.warning("turn %d ended (%s, exit code %s), but the answer to the write that finished it was lost "
                        "and the leader doc has changed since: whether that write or another ended the turn is "
                        "not known", turn, end.how, end.exit_code)
        else:
            log.error("turn %d was taken away while its command ran (%s, exit code %s)", turn, end.how,
                      end.exit_code)
            self.lease.message = f"turn {turn} was revoked while running"

    def _heirs(self) -> tuple[str, ...]:
        """The sites my leadership may go to as I leave: those I would publish as the rotation now."""
        view = self.view
        if view.registry is None:
            return ()
        return eligible_sites(view.registry.sites, view.heartbeats, view.stale_map(self.clock.monotonic()))

    def end_orphaned(self, now: float) -> bool:
        """End a turn the leader doc says I run, though this agent never started it.

        That is a previous agent of this site that crashed mid-turn, or a
        confirm whose reply was lost, or a grant that names another agent of
        this site (which may have started on it). Its command may still be
        alive under its old lease; only once that has run out is it safe to
        mark the turn done and let the next one begin.
        """
        if not self.lease.orphans_safe(now):
            return False
        assert self.view.leader is not None
        turn = self.view.leader.turn
        new, nxt = turns.finish(self.view.leader, self.me, None, Outcome.ABANDONED, bool(self.s.repeat),
                                self._now_text(), heartbeats=self.view.heartbeats)
        # The record goes before the write that ends the turn (see ``finish``); an earlier agent that
        # wrote it and died before marking the turn done said what happened: keep its record as it is.
        existing = self.shared.store.get(docs.turn_record_id(turn))
        if existing is None or existing.get("host") is None:
            self.records.write_now(TurnRecord(turn=turn, site=self.me, how=Outcome.ABANDONED,
                                              host=self.lease.identity.host, ended_at=self._now_text(),
                                              note="an earlier agent of this site stopped without ending its turn"
                                              if self.view.leader.status == RUNNING else
                                              "the turn was granted to an earlier agent of this site, which may "
                                              "have started it"))
        if not self.shared.cas_leader(new):
            return True
        log.warning("ended turn %d, which an earlier agent of this site left running", turn)
        if nxt is not None:
            log.info("granted %s turn %d", nxt, turn + 1)
        return True
