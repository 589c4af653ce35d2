"""The site agent: the loop that wires the store, the view of the shared
documents, election, the scheduler, the site's own turns and the command's
supervisor.

One thread decides and writes; a ``FeedWatcher`` thread (enqueue.feed)
follows the CouchDB ``_changes`` feed of the shared documents and hands what
changed to the decision thread through one event queue, together with the
supervisor's events and signals. The decision thread never sleeps on a fixed
poll: it waits on that queue until the next thing it must do by the clock (a
heartbeat, a site turning stale, a retry). What it knows of the documents is
its ``View`` (enqueue.view); it decides with the pure functions of
enqueue.election, enqueue.scheduler and enqueue.turns.

Every write to a shared document is a compare-and-swap on the revision the
agent last read. A 409 means the agent's view is old: it re-reads that
document and decides again from scratch.

The command runs only between a successful confirm (``status: running``)
and the command's end, under a supervisor process that kills it by a
deadline the agent extends with every acknowledged heartbeat: ``heartbeat_stale
- heartbeat_delay`` after the heartbeat was sent. The leader takes a running
turn away only after observing the longer of its own and the holder's
``heartbeat_stale`` of silence, so the old command is dead before a new one
can start, even if this agent is frozen or killed (as long as the hosts'
clocks run at the same rate).
"""

from __future__ import annotations

import logging
import os
import queue
import random
import signal
import socket
import uuid
from dataclasses import replace
from typing import Any, Callable, Mapping

import psutil

from enqueue import documents as docs
from enqueue import election, records, scheduler, turns
from enqueue.clock import Clock, SystemClock, format_time
from enqueue.documents import IDLE, LEFT, RUNNING, WAITING, Heartbeat, LeaderDoc, TurnRecord
from enqueue.errors import (
    EXIT_FAILURE,
    ClusterRefused,
    Conflict,
    SiteInUse,
    EnqueueError,
    StoreError,
)
from enqueue.feed import FeedWatcher
from enqueue.view import View

log = logging.getLogger("enqueue.agent")

_MAX_WATCH_S = 60.0
_FEED_HEARTBEAT_S = 1.0
_RETRY_MIN_S = 0.2
# How many heartbeat round trips of lease must be left to confirm a turn and start its command on it.
_START_ROUND_TRIPS = 3
# The longest a stopping agent retries its last writes once its command is gone.
_STOP_WRITES_MAX_S = 30.0


class _Stop(Exception):
    """Raised inside the loop when the agent has finished and must exit."""


class Agent:
    """One site's agent. ``run()`` returns the process exit code."""

    def __init__(
        self,
        settings: Any,
        store: Any,
        clock: Clock | None = None,
        runner_factory: Callable[..., Any] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.s = settings
        self.t = settings.timing
        self.me: str = settings.site
        self.store = store
        self.clock = clock or SystemClock(getattr(settings, "wall_clock_offset_s", 0.0))
        self.rng = rng or random.Random()
        self.events: queue.Queue = queue.Queue()
        self._runner_factory = runner_factory
        self.runner: Any = None

        self.view = View(self.me, settings.leader_doc, settings.sites_doc, self.t.heartbeat_stale_s)

        self.state = WAITING
        self.instance = uuid.uuid4().hex[:12]
        self.host = socket.gethostname()
        self.beat_count = 0
        self.hb_rev: str | None = None
        self.hb_message: str | None = None
        self.last_ack_sent: float | None = None
        self.beat_round_trip_s = 0.0
        self.next_beat_at = 0.0

        self.my_turn: int | None = None
        self.turn_started_mono: float | None = None
        self.turn_started_text: str | None = None
        self.stop_sent: str | None = None
        # (turn, exit code, how it ended, error, duration in seconds)
        self.pending_finish: tuple[int, int | None, str, str | None, float | None] | None = None
        self.turns_done = 0
        self.last_exit_code: int | None = None

        self.stopping: int | None = None
        self.give_up_at: float | None = None
        self.twin_seen_at: float | None = None
        self.orphans_safe_at = self.clock.monotonic() + self.t.heartbeat_stale_s - self.t.heartbeat_delay_s
        self.campaign_not_before = 0.0
        self.retry_at = 0.0
        self.outage_since: float | None = None
        self.need_full_read = False

        self.pending_records: list[TurnRecord] = []
        self.recorded_turn: int | None = None
        self.feed = FeedWatcher(
            store,
            beat_s=min(self.t.heartbeat_delay_s, _FEED_HEARTBEAT_S),
            retry_s=self._retry_s(),
            deliver=self.events.put,
        )

    # ------------------------------------------------------------------ lifecycle

    def run(self) -> int:
        """Register, then take turns until done; always leaves the command stopped."""
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            self._start()
            return self._loop()
        finally:
            self._close()
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _on_signal(self, signum: int, _frame: Any) -> None:
        self.events.put(("signal", signum))

    def _start(self) -> None:
        # 1. Fail fast, with one clear line, on a server or database we cannot use.
        self.store.check()
        copies = self.store.copies()
        if copies > 1 and not getattr(self.s, "allow_cluster", False):
            raise ClusterRefused(
                f"{self.store.describe()} keeps {copies} copies (n={copies}); on a cluster a 409 is no "
                "compare-and-swap, so two sites could both win a turn. Use a database with n=1 "
                "(PUT /db?n=1) or see the README's section on clusters"
            )
        # 2. The shared documents exist before anybody reads them.
        self._create_if_absent(docs.render_leader(docs.new_leader_doc(self.s.leader_doc)))
        self._create_if_absent(docs.render_sites(docs.new_sites_doc(self.s.sites_doc)))
        # 3. Take the feed position before reading, so no change falls between the two.
        since = self.store.current_seq()
        self._read_all()
        self._refuse_local_twin()
        self._wait_out_previous_lease()
        self._register()
        self._beat()
        self.runner = self._make_runner()
        self.feed.start(since)
        log.info(
            "registered as site %s on %s (pid %d), %s",
            self.me,
            self.host,
            os.getpid(),
            "taking turns until stopped" if self.s.repeat else "waiting for one turn",
        )

    def _make_runner(self) -> Any:
        factory = self._runner_factory
        if factory is None:
            from enqueue.runner import Runner

            factory = Runner
        return factory(kill_grace_s=self.t.kill_grace_s, on_event=lambda ev: self.events.put(("runner", ev)))

    def _close(self) -> None:
        self.feed.stop()
        if self.runner is not None:
            self.runner.close()

    # ------------------------------------------------------------------ the loop

    def _loop(self) -> int:
        while True:
            try:
                for _ in range(50):
                    if not self._step():
                        break
            except _Stop:
                return self._exit_code()
            timeout = max(0.0, self._next_wake() - self.clock.monotonic())
            try:
                event = self.events.get(timeout=timeout)
            except queue.Empty:
                continue
            self._handle(event)
            while True:
                try:
                    self._handle(self.events.get_nowait())
                except queue.Empty:
                    break

    def _exit_code(self) -> int:
        if self.stopping is not None:
            return 128 + self.stopping
        if self.last_exit_code is None:
            return EXIT_FAILURE
        return self.last_exit_code

    def _handle(self, event: tuple[str, Any]) -> None:
        kind, payload = event
        if kind == "changes":
            log.debug("changed: %s", ", ".join(payload))
            for doc_id, raw in payload.items():
                self._absorb(doc_id, raw, from_feed=True)
        elif kind == "runner":
            self._on_runner_event(payload)
        elif kind == "signal":
            self._on_stop_signal(payload)
        elif kind == "watch_error":
            self._note_outage(payload)
            self.need_full_read = True
        elif kind == "watch_ok":
            self.need_full_read = True

    def _on_stop_signal(self, signum: int) -> None:
        if self.stopping is None:
            log.info("stopping on %s", signal.Signals(signum).name)
        self.stopping = signum
        if self.my_turn is not None and self.pending_finish is None:
            self._stop_command("stopped")

    def _next_wake(self) -> float:
        now = self.clock.monotonic()
        moments = [self.next_beat_at, now + _MAX_WATCH_S]
        if self.retry_at > now:
            moments.append(self.retry_at)
        if self.campaign_not_before > now:
            moments.append(self.campaign_not_before)
        for site in self.view.followed():
            at = self.view.stale_at(site)
            if at is not None and at > now:
                moments.append(at)
        if self.orphans_safe_at > now:
            moments.append(self.orphans_safe_at)
        if self.give_up_at is not None and self.give_up_at > now:
            moments.append(self.give_up_at)
        if self.view.invalid_leader_since is not None:
            moments.append(self.view.invalid_leader_since + self.t.heartbeat_stale_s)
        return min(moments)

    def _step(self) -> bool:
        """Do the next due thing. True when the view changed and the step should run again."""
        now = self.clock.monotonic()
        if self._stop_writes_overdue(now):
            self._leave_unrecorded()
        if now < self.retry_at:
            if self.stopping is not None and self.my_turn is None and self.pending_finish is None:
                self._leave()
            return False
        try:
            again = self._step_unguarded(now)
            if self.outage_since is not None:
                log.info("database reachable again after %.1f s", now - self.outage_since)
                self.outage_since = None
            return again
        except Conflict:
            return True
        except StoreError as exc:
            self._note_outage(exc)
            if self.stopping is not None and self.my_turn is None and self.pending_finish is None:
                self._leave()
            return False

    def _step_unguarded(self, now: float) -> bool:
        if now >= self.next_beat_at:
            self._beat()
            # The feed is the fast path; one read per heartbeat is the safety net for anything it missed.
            self.need_full_read = True
        if self.need_full_read:
            self._read_all()
        self._flush_records()
        # 1. My own turn first: finishing it hands over, which is the fast path.
        if self.pending_finish is not None:
            return self._finish()
        if self.my_turn is not None:
            reason = turns.lost_reason(self.view.leader, self.me, self.my_turn)
            if reason is not None:
                self._stop_command(reason)
        elif turns.holds_running(self.view.leader, self.me):
            return self._end_orphaned_turn(now)
        elif self.stopping is None and self.state == WAITING and turns.granted_to_me(self.view.leader, self.me):
            if not self._drained():
                return self._confirm_and_start()
        # 2. The registry: a site missing from it (broken, deleted, or an entry removed) registers again.
        if self.stopping is None and (self.view.registry is None or self.me not in self.view.registry.sites):
            log.warning("site %s is not in the registry %s: registering again (to retire a site, stop its agent "
                        "before removing it)", self.me, self.s.sites_doc)
            self._register()
            return True
        # 3. Leadership.
        if self.view.leader is None:
            return self._maybe_repair_leader(now)
        if self.stopping is None and self.view.leader.leader != self.me and now >= self.campaign_not_before:
            if self._vacancy(now) is not None:
                return self._campaign(now)
        if self.view.leader.leader == self.me and self.view.registry is not None:
            if self._lead(now):
                return True
        # 4. Done?
        if self.my_turn is None and self.pending_finish is None:
            if self.stopping is not None or (not self.s.repeat and self.turns_done > 0):
                self._leave()
        return False

    # ------------------------------------------------------------------ reading

    def _read_all(self) -> None:
        """Read every document I follow, and the holder's heartbeat, in one request.

        Read again when what I read changed whom I follow (I became leader,
        the registry named new sites); a new holder waits for the next read.
        """
        for _ in range(3):
            followed = self.view.watched_ids()
            ids = self.view.read_ids()
            found = self.store.get_many(list(ids))
            for doc_id in ids:
                self._absorb(doc_id, found.get(doc_id))
            if self.view.watched_ids() == followed:
                break
        self.need_full_read = False

    def _absorb(self, doc_id: str, raw: Mapping[str, Any] | None, *, from_feed: bool = False) -> None:
        """Take one document's current content into the view (a feed's stale news excepted)."""
        now = self.clock.monotonic()
        if not self.view.absorb(doc_id, raw, now, from_feed=from_feed):
            return
        if doc_id == docs.heartbeat_id(self.me) and raw is not None:
            self.hb_rev = raw.get("_rev")
            self._notice_twin(self.view.heartbeats.get(self.me), now)
        watched = self.view.watched_ids()
        if watched != self.feed.ids:
            if any(i not in self.feed.ids for i in watched):
                self.need_full_read = True
            self.feed.follow(watched)

    def _notice_twin(self, hb: Heartbeat | None, now: float) -> None:
        """Note another agent writing my heartbeat doc after I started beating: a twin of my site."""
        if hb is None or self.beat_count == 0 or hb.instance in (None, self.instance) or hb.state == LEFT:
            return
        if self.twin_seen_at is None or now - self.twin_seen_at >= self.t.heartbeat_stale_s:
            log.error("another agent runs as site %s (host %s, pid %s): run each site once; this agent will not "
                      "end turns it did not start while the other one beats", self.me, hb.host, hb.pid)
        self.twin_seen_at = now

    def _refuse_local_twin(self) -> None:
        """Refuse to start when an agent of my site still runs on this very host."""
        hb = self.view.heartbeats.get(self.me)
        if hb is None or hb.state == LEFT or hb.host != self.host or not hb.pid or hb.pid == os.getpid():
            return
        try:
            other = psutil.Process(hb.pid)
            alive = other.is_running() and any("enqueue" in part for part in other.cmdline())
        except (psutil.Error, OSError):
            return
        if alive:
            raise SiteInUse(f"site {self.me} already has an agent on this host (pid {hb.pid}); run each site once")

    def _wait_out_previous_lease(self) -> None:
        """Leave a turn an earlier agent of my site left running alone for that agent's lease, if longer than mine."""
        previous = self.view.heartbeats.get(self.me)
        lease = previous.lease_s if previous is not None and previous.instance != self.instance else None
        if lease is not None:
            self.orphans_safe_at = max(self.orphans_safe_at, self.clock.monotonic() + lease)

    def _vacancy(self, now: float) -> str | None:
        """Why the leadership is open by my view at ``now``, or None while a live leader holds it."""
        assert self.view.leader is not None
        return election.vacancy(self.view.leader, self.view.heartbeats, self.view.stale_map(now))

    def _reread(self, doc_id: str) -> None:
        self._absorb(doc_id, self.store.get(doc_id))

    # ------------------------------------------------------------------ writing

    def _now_text(self) -> str:
        return format_time(self.clock.now(), self.s.time_format)

    def _create_if_absent(self, body: dict) -> None:
        try:
            self.store.put(body)
            log.info("created %s", body["_id"])
        except Conflict:
            pass

    def _cas_leader(self, new: LeaderDoc) -> bool:
        """Write ``new`` over the leader doc revision it came from; on 409 re-read and return False."""
        body = docs.render_leader(new)
        try:
            rev = self.store.put(body)
        except Conflict:
            self._reread(self.s.leader_doc)
            return False
        body["_rev"] = rev
        self._absorb(self.s.leader_doc, body)
        return True

    def _register(self) -> None:
        while self.view.registry is None or self.me not in self.view.registry.sites:
            current = self.view.registry or docs.new_sites_doc(self.s.sites_doc)
            entry = {"heartbeat_doc": docs.heartbeat_id(self.me), "drained": False, "added_at": self._now_text()}
            body = docs.render_sites(current, {self.me: entry})
            if self.view.registry is None:
                raw = self.store.get(self.s.sites_doc)
                if raw is not None:
                    # The registry does not parse: keep what it held for the admin, start a clean one.
                    body = docs.render_sites(docs.new_sites_doc(self.s.sites_doc), {self.me: entry})
                    body["_rev"] = raw["_rev"]
                    body["repaired_from"] = {k: v for k, v in raw.items() if not k.startswith("_")}
                    log.warning("rewrote registry %s, which did not parse; its old content is kept under "
                                "'repaired_from'", self.s.sites_doc)
            try:
                body["_rev"] = self.store.put(body)
                self._absorb(self.s.sites_doc, body)
                log.info("added site %s to the registry", self.me)
            except Conflict:
                self._reread(self.s.sites_doc)

    def _beat(self) -> None:
        """Write my heartbeat; on success, extend my command's deadline from the moment it was sent."""
        sent = self.clock.monotonic()
        self.next_beat_at = sent + self.t.heartbeat_delay_s
        self.beat_count += 1
        hb = Heartbeat(
            site=self.me,
            state=self.state,
            repeat=bool(self.s.repeat) and self.stopping is None,
            host=self.host,
            pid=os.getpid(),
            instance=self.instance,
            beat=self.beat_count,
            time=self._now_text(),
            turn=self.my_turn,
            message=self.hb_message,
            rev=self.hb_rev,
            heartbeat_delay_s=self.t.heartbeat_delay_s,
            heartbeat_stale_s=self.t.heartbeat_stale_s,
        )
        body = docs.render_heartbeat(hb, {"last_exit_code": self.last_exit_code, "turns_done": self.turns_done})
        for _ in range(3):
            try:
                body["_rev"] = self.store.put(body)
                break
            except Conflict:
                # Only I write this document; an admin's edit or my previous run's is overwritten.
                current = self.store.get(docs.heartbeat_id(self.me))
                if current is None:
                    body.pop("_rev", None)
                else:
                    body["_rev"] = current["_rev"]
        else:
            raise Conflict(f"heartbeat {docs.heartbeat_id(self.me)} keeps changing under this agent")
        self.hb_rev = body["_rev"]
        self.last_ack_sent = sent
        self.beat_round_trip_s = self.clock.monotonic() - sent
        self.view.own_beat(replace(hb, rev=self.hb_rev), self.hb_rev, self.clock.monotonic())
        if self.runner is not None and self.my_turn is not None:
            self.runner.extend(self._deadline())

    def _deadline(self) -> float:
        """When my command must be dead unless another heartbeat is acknowledged."""
        assert self.last_ack_sent is not None
        return self.last_ack_sent + self.t.heartbeat_stale_s - self.t.heartbeat_delay_s

    def _set_state(self, state: str) -> None:
        """Change what I say I want; write it at once only when the leader must know now.

        Between running and waiting with --repeat, a site wants turns all the
        same, so the next regular heartbeat carries the change: an extra write
        in the middle of a handoff would only slow the handoff down.
        """
        if state == self.state:
            return
        repeat = bool(self.s.repeat) and self.stopping is None
        before = Heartbeat(self.me, state=self.state, repeat=repeat).wants_turn
        self.state = state
        if state in (IDLE, LEFT) or Heartbeat(self.me, state=state, repeat=repeat).wants_turn != before:
            self._beat()

    # ------------------------------------------------------------------ my turn

    def _confirm_and_start(self) -> bool:
        assert self.view.leader is not None
        turn = self.view.leader.turn
        # The command starts under the lease of the last acknowledged heartbeat, and the
        # supervisor refuses it once that lease's SIGTERM moment has passed. Renewing is
        # safe only before the confirm (after it, a late heartbeat could land after the
        # leader took the turn away for silence), so beat first unless the lease
        # outlasts the confirm's round trip with room to spare.
        term_at = self._deadline() - self.t.kill_grace_s
        if term_at - self.clock.monotonic() <= _START_ROUND_TRIPS * self.beat_round_trip_s:
            self._beat()
        if not self._cas_leader(turns.confirm(self.view.leader, self.me, self._now_text())):
            log.debug("confirm of turn %d lost a race", turn)
            return True
        log.debug("confirmed turn %d", turn)
        self.my_turn = turn
        self.stop_sent = None
        self.turn_started_mono = self.clock.monotonic()
        self.turn_started_text = self.view.leader.started_at
        if self.view.leader.skip_turn == turn:
            # An admin skipped this turn before it started: end it without running anything.
            log.info("turn %d was skipped before it started", turn)
            self.pending_finish = (turn, None, "skipped", None, 0.0)
            return True
        env = {
            "ENQUEUE_SITE": self.me,
            "ENQUEUE_TURN": str(turn),
            "ENQUEUE_LEADER": self.view.leader.leader or "",
        }
        self.runner.start(turn, list(self.s.command), env, self._deadline())
        log.info("started turn %d: %s", turn, " ".join(self.s.command))
        self._set_state(RUNNING)
        return False

    def _drained(self) -> bool:
        entry = self.view.registry.sites.get(self.me) if self.view.registry else None
        return entry is not None and entry.drained

    def _end_orphaned_turn(self, now: float) -> bool:
        """End a turn the leader doc says I run, though this agent never started it.

        That is a previous agent of this site that crashed mid-turn, or a
        confirm whose reply was lost. Its command may still be alive under
        its old lease, which ran out at the latest ``heartbeat_stale -
        heartbeat_delay`` after this agent started; only then is it safe to
        mark the turn done and let the next one begin.
        """
        if now < self.orphans_safe_at:
            return False
        if self.twin_seen_at is not None and now - self.twin_seen_at < self.t.heartbeat_stale_s:
            return False
        assert self.view.leader is not None
        turn = self.view.leader.turn
        new, nxt = turns.finish(self.view.leader, self.me, None, "abandoned", bool(self.s.repeat), self._now_text())
        if not self._cas_leader(new):
            return True
        log.warning("ended turn %d, which an earlier agent of this site left running", turn)
        if nxt is not None:
            log.info("granted %s turn %d", nxt, turn + 1)
        self._record(TurnRecord(turn=turn, site=self.me, how="abandoned", host=self.host, ended_at=self._now_text(),
                                note="an earlier agent of this site stopped without ending its turn"))
        return True

    def _stop_command(self, reason: str) -> None:
        if self.stop_sent == reason or self.my_turn is None:
            return
        self.stop_sent = reason
        if reason == "revoked":
            log.error("turn %d is no longer mine: stopping the command now", self.my_turn)
        else:
            log.info("stopping the command of turn %d (%s)", self.my_turn, reason)
        self.runner.stop(reason)

    def _on_runner_event(self, ev: Any) -> None:
        if ev.kind == "started":
            return
        if ev.kind in ("exited", "spawn_failed"):
            log.debug("command of turn %s ended: %s", ev.turn, ev.how)
            if ev.turn != self.my_turn:
                return
            how = ev.how or "exited"
            if how == "stopped" and self.stop_sent:
                how = self.stop_sent
            if ev.kind == "spawn_failed":
                how = "failed to start"
                log.error("turn %d: %s", ev.turn, ev.error)
            duration = ev.duration_s
            if duration is None and self.turn_started_mono is not None:
                duration = self.clock.monotonic() - self.turn_started_mono
            self.pending_finish = (ev.turn, ev.exit_code, how, ev.error, duration)
        elif ev.kind == "supervisor_died":
            log.error("the command supervisor died: %s", ev.error or "no reason given")
            if self.my_turn is not None and self.pending_finish is None:
                self.pending_finish = (self.my_turn, None, "supervisor died", ev.error, None)
            self.runner = self._make_runner()

    def _finish(self) -> bool:
        """End my turn: write its record, then mark it done (passing the next turn on) if still mine.

        The record goes first, so a turn marked done always has one: an agent
        killed between the two writes leaves a recorded turn that the leader
        takes back once this site is stale, never a finished turn without a
        record.
        """
        assert self.pending_finish is not None
        turn, code, how, error, duration = self.pending_finish
        if duration is None:
            duration = self.clock.monotonic() - (self.turn_started_mono or self.clock.monotonic())
        mine = turns.still_mine(self.view.leader, self.me, turn)
        if self.recorded_turn != turn:
            self._write_record(
                TurnRecord(
                    turn=turn,
                    site=self.me,
                    how=how if mine else f"{how} after revocation",
                    exit_code=code,
                    host=self.host,
                    leader=self.view.leader.leader if self.view.leader else None,
                    started_at=self.turn_started_text,
                    ended_at=self._now_text(),
                    duration_s=duration,
                    note=error if mine else "the turn was taken away before the command ended; " + (error or ""),
                )
            )
            self.recorded_turn = turn
        if mine:
            repeat = bool(self.s.repeat) and self.stopping is None
            new, nxt = turns.finish(self.view.leader, self.me, code, how, repeat, self._now_text())
            if not self._cas_leader(new):
                return True
            log.info("finished turn %d: %s, exit code %s, %.3f s", turn, how, code, duration)
            if nxt is not None:
                log.info("granted %s turn %d", nxt, turn + 1)
        else:
            log.error("turn %d was taken away while its command ran (%s, exit code %s)", turn, how, code)
            self.hb_message = f"turn {turn} was revoked while running"
        self.pending_finish = None
        self.my_turn = None
        self.turns_done += 1
        self.last_exit_code = code
        self._set_state(WAITING if self.s.repeat and self.stopping is None else IDLE)
        return True

    def _record(self, rec: TurnRecord) -> None:
        """Queue a turn record; it is written now or, if the database is away, when it is back."""
        self.pending_records.append(rec)
        self._flush_records()

    def _flush_records(self) -> None:
        while self.pending_records:
            self._write_record(self.pending_records[0])
            self.pending_records.pop(0)

    def _write_record(self, rec: TurnRecord) -> None:
        records.write_once(self.store, rec, self.me)

    # ------------------------------------------------------------------ leadership

    def _campaign(self, now: float) -> bool:
        assert self.view.leader is not None
        # A cached view may lag: look at the leader's heartbeat itself before calling it stale.
        if self.view.leader.leader is not None:
            self._reread(docs.heartbeat_id(self.view.leader.leader))
            self._reread(self.s.leader_doc)
            if self.view.leader is None or self._vacancy(now) is None:
                return True
        why = self._vacancy(now)
        if self._cas_leader(election.claim(self.view.leader, self.me, self._now_text())):
            log.info("elected leader (term %d): %s", self.view.leader.leader_term, why)
            return True
        self.campaign_not_before = now + election.conflict_wait(self.t.conflict_delay_s, self.rng)
        return True

    def _lead(self, now: float) -> bool:
        assert self.view.leader is not None and self.view.registry is not None
        if self.need_full_read:
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
            self._reread(docs.heartbeat_id(p.revoked_site))
            if self.view.liveness.rev(p.revoked_site) != before:
                return True
        if not self._cas_leader(p.doc):
            return True
        log.info("%s", p.reason)
        if p.revoked_site is not None:
            self._record(
                TurnRecord(
                    turn=p.revoked_turn,
                    site=p.revoked_site,
                    how="revoked" if p.revoked_running else "not started",
                    leader=self.me,
                    ended_at=self._now_text(),
                    note=p.reason,
                )
            )
        return True

    def _maybe_repair_leader(self, now: float) -> bool:
        """Rewrite a leader doc that does not parse, once it has been so for ``heartbeat_stale``.

        Waiting that long means every command started under the old content
        is dead (its site saw the garbage and stopped it, or its deadline
        passed), so the repaired doc may start fresh with a higher turn.
        """
        raw = self.view.leader_raw or {}
        if self.view.invalid_leader_since is None or self.stopping is not None:
            return False
        if now - self.view.invalid_leader_since < self.t.heartbeat_stale_s:
            return False
        known = self.view.max_turn_seen
        for rec in self.store.list_prefix(docs.TURN_PREFIX, limit=1, descending=True):
            parsed, _ = docs.parse_turn_record(rec)
            if parsed is not None:
                known = max(known, parsed.turn)
        old_turn = raw.get("turn")
        if isinstance(old_turn, int) and not isinstance(old_turn, bool) and old_turn >= 0:
            known = max(known, old_turn)
        # An admin's pause survives the repair; a pause flag that does not parse reads as set.
        paused = "paused" in raw and raw["paused"] is not False and raw["paused"] is not None
        reason = raw.get("paused_reason") if isinstance(raw.get("paused_reason"), str) else None
        fresh = replace(
            docs.new_leader_doc(self.s.leader_doc),
            rev=raw.get("_rev"),
            leader=self.me,
            turn=known,
            paused=paused,
            paused_reason=reason,
            last_how="repaired",
            updated_by=self.me,
            updated_at=self._now_text(),
            raw={"repaired_from": {k: v for k, v in raw.items() if not k.startswith("_")}},
        )
        if self._cas_leader(fresh):
            log.warning(
                "rewrote leader doc %s, which was missing or did not parse, at turn %d; old content kept under "
                "'repaired_from'",
                self.s.leader_doc,
                known,
            )
        return True

    # ------------------------------------------------------------------ leaving

    def _leave(self) -> None:
        """Step down, say ``left``, and end the loop. Each write is tried once: we are going."""
        try:
            self._flush_records()
        except EnqueueError as exc:
            log.error("could not write %d turn record(s): %s", len(self.pending_records), exc)
        try:
            if self.view.leader is not None:
                new = election.resign(self.view.leader, self.me, self._now_text())
                if new is not None and not self._cas_leader(new):
                    new = election.resign(self.view.leader, self.me, self._now_text()) if self.view.leader else None
                    if new is not None:
                        self._cas_leader(new)
                if new is not None:
                    log.info("stepped down as leader")
            self.state = LEFT
            self._beat()
            log.info("left")
        except EnqueueError as exc:
            log.warning("could not say goodbye cleanly: %s", exc)
        raise _Stop()

    def _stop_writes_overdue(self, now: float) -> bool:
        """Stopping, the command gone, and the last writes have failed for too long.

        The window opens once nothing runs any more (the command's own stop
        is bounded by the kill grace) and lasts ``heartbeat_stale``, at most
        ``_STOP_WRITES_MAX_S``: a service manager's stop timeout must not run
        out while the database is away.
        """
        if self.stopping is None or (self.my_turn is not None and self.pending_finish is None):
            return False
        if self.give_up_at is None:
            self.give_up_at = now + min(_STOP_WRITES_MAX_S, self.t.heartbeat_stale_s)
        return now >= self.give_up_at

    def _leave_unrecorded(self) -> None:
        """Exit without the writes that a database out of reach would not take; say what is missing.

        Safe: the command is dead. The leader doc still names my turn, which
        the leader takes back (and records) after ``heartbeat_stale`` of my
        silence, exactly as after a crash.
        """
        missing = []
        if self.pending_finish is not None:
            missing.append(f"the end of turn {self.pending_finish[0]}")
        if self.pending_records:
            missing.append("the record of turn " + ", ".join(str(r.turn) for r in self.pending_records))
        log.error("stopping without writing %s: the database is out of reach; the leader takes the turn back "
                  "after heartbeat_stale and records it", " and ".join(missing) or "'left'")
        raise _Stop()

    def _note_outage(self, exc: Exception) -> None:
        now = self.clock.monotonic()
        if self.outage_since is None:
            self.outage_since = now
            log.warning("%s; retrying", exc)
        self.need_full_read = True
        self.retry_at = now + self._retry_s()

    def _retry_s(self) -> float:
        """How long to wait before trying the database again after a failure."""
        return max(_RETRY_MIN_S, min(self.t.heartbeat_delay_s / 4, 5.0))


def open_store(connection: Any) -> Any:
    """A store on the configured database (the CouchDB client stays behind enqueue.couchdb_store)."""
    from enqueue.couchdb_store import CouchStore

    return CouchStore(
        connection.url,
        connection.database,
        username=connection.username,
        password=connection.password,
        ca_file=connection.ca_file,
        request_timeout_s=connection.request_timeout_s,
    )


def run_agent(settings: Any) -> int:
    """Run a site's agent until it is done; returns the exit code (errors raise EnqueueError)."""
    store = open_store(settings.connection)
    try:
        return Agent(settings, store).run()
    finally:
        store.close()
