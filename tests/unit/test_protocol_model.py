"""A deterministic model of the whole protocol, driving the pure decision functions.

N sites run simplified agents against an in-memory document store that does
compare-and-swap on ``_rev`` like a single CouchDB node. Time is a FakeClock
advanced by random steps; everything random comes from one seeded generator,
so a failing seed replays exactly.

What an agent does each step (when it is up and not frozen): beat every
``DELAY``; read the leader doc (sometimes a lagging cached copy, like a
changes feed that is behind); finish, confirm or give up its own turn; campaign
when the leadership is open; and, as leader, run ``scheduler.plan`` over the
registry and the heartbeats it observes (again possibly lagging), re-reading
a running holder's heartbeat before it takes the turn away.

The command is modelled by its supervisor's rule: it lives until it ends on
its own, is stopped by its agent, or reaches its deadline, ``STALE - DELAY``
after the send time of the last acknowledged heartbeat. A crashed or frozen
agent extends nothing, so its command dies at that deadline, while the
leader may take the turn away only after observing ``STALE`` of silence.

Faults: crash (restart later as a new instance), freeze (SIGSTOP, longer or
shorter than STALE), clean stop (SIGTERM), slow steps, lagging reads, and an
admin pausing and draining. Checked at every step and at the end:

* at most one agent that is up believes it runs a turn with a live command,
  and at most one command is alive at all; no two commands' lifetimes overlap;
* the leader doc's turn never goes back and grows by at most one per write;
  command starts carry strictly increasing turns (the fencing token);
* every turn that ended has a turn record;
* without faults, turns go round in alphabetical order and every site gets one
  within a bounded time; after faults heal, every site gets one within
  ``STALE`` plus a bound.

Variants that break one rule on purpose (hand an orphaned turn on at once,
revoke on a lagging view, renew the lease between confirm and start) show
that these checks do catch a violation.
"""

from __future__ import annotations

import itertools
import math
import random
from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from enqueue import documents as docs
from enqueue.clock import FakeClock, format_time
from enqueue.documents import (
    DONE,
    GRANTED,
    LEFT,
    RUNNING,
    WAITING,
    Heartbeat,
    LeaderDoc,
    TurnRecord,
    heartbeat_id,
    new_leader_doc,
    new_sites_doc,
    parse_heartbeat,
    parse_leader,
    parse_sites,
    parse_turn_record,
    render_heartbeat,
    render_leader,
    render_sites,
    render_turn_record,
)
from enqueue.election import claim, conflict_wait, resign, vacancy
from enqueue.liveness import Liveness
from enqueue.rotation import next_after
from enqueue.scheduler import plan
from enqueue.turns import confirm, finish, granted_to_me, lost_reason, still_mine

STALE = 10.0
DELAY = 3.0
FENCE = STALE - DELAY  # a command must be dead this long after its last acknowledged beat was sent
CONFLICT = 1.0
STEP_SIZES = (0.25, 0.5, 1.0)
MAX_STEP = max(STEP_SIZES)
FMT = "%Y-%m-%d %H:%M:%S"
LEADER_ID = "enqueue_leader"
SITES_ID = "enqueue_sites"

assert STALE > 2 * DELAY


class Store:
    """One CouchDB node, as far as the protocol is concerned: CAS on ``_rev``."""

    def __init__(self, on_write) -> None:
        self.docs: dict[str, dict] = {}
        self.writes = 0
        self.conflicts = 0
        self.on_write = on_write

    def get(self, doc_id: str) -> dict | None:
        doc = self.docs.get(doc_id)
        return None if doc is None else _copy(doc)

    def put(self, body: dict) -> str | None:
        """The new ``_rev``, or None for a 409."""
        doc_id = body["_id"]
        current = self.docs.get(doc_id)
        if (current is None and "_rev" in body) or (current is not None and body.get("_rev") != current["_rev"]):
            self.conflicts += 1
            return None
        self.writes += 1
        gen = 1 if current is None else int(current["_rev"].split("-")[0]) + 1
        rev = f"{gen}-{self.writes:x}"
        stored = _copy(body)
        stored["_rev"] = rev
        self.docs[doc_id] = stored
        self.on_write(doc_id, current, stored)
        return rev


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


@dataclass
class Command:
    """One run of the command, as its supervisor keeps it."""

    site: str
    instance: int
    turn: int
    start: float
    planned_end: float
    deadline: float
    end: float | None = None
    how: str | None = None

    def settle(self, now: float) -> None:
        """End it if it exited on its own or reached its deadline by ``now``."""
        if self.end is not None:
            return
        first = min(self.planned_end, self.deadline)
        if first <= now:
            self.end = max(first, self.start)
            self.how = "exited" if self.planned_end <= self.deadline else "fenced"

    def extend(self, deadline: float, now: float) -> None:
        """A heartbeat was acknowledged: the deadline moves later, unless the fence already fell."""
        self.settle(now)
        if self.end is None:
            self.deadline = max(self.deadline, deadline)

    def kill(self, now: float, how: str) -> None:
        self.settle(now)
        if self.end is None:
            self.end, self.how = now, how


@dataclass
class Faults:
    crash: float = 0.0  # per agent and step
    freeze: float = 0.0
    stop: float = 0.0
    slow: float = 0.0  # an agent skips its step
    lag: float = 0.0  # a read returns the cached copy instead
    admin: float = 0.0  # per step: pause/resume or drain/undrain
    restart: float = 0.3  # per step, a site that is down comes back


@dataclass
class Variant:
    """Switches that break the protocol on purpose, to show the checks can fail."""

    reread_before_revoke: bool = True
    orphan_wait: bool = True
    lease_from_confirm: bool = True


class Agent:
    """One run of ``enqueue run`` at one site."""

    def __init__(self, sim: "Sim", name: str, repeat: bool, instance: int) -> None:
        self.sim, self.name, self.repeat, self.instance = sim, name, repeat, instance
        self.liveness = Liveness(STALE)
        self.started_at = sim.now
        self.state = WAITING
        self.hb_rev: str | None = None
        self.beats = 0
        self.last_ack: float | None = None
        self.cmd: Command | None = None
        self.pending_start: tuple[int, float] | None = None  # confirmed turn, its deadline
        self.orphan: tuple[int, float] | None = None
        self.leader_raw: dict | None = None
        self.hb_cache: dict[str, dict | None] = {}
        self.campaign_not_before = 0.0
        self.frozen_until: float | None = None
        self.registered = False

    # -------------------------------------------------------------- reading

    def _lagging(self) -> bool:
        return self.sim.rng.random() < self.sim.faults.lag

    def leader_doc(self, fresh: bool = False) -> LeaderDoc:
        if fresh or self.leader_raw is None or not self._lagging():
            self.leader_raw = self.sim.store.get(LEADER_ID)
        doc, problems = parse_leader(self.leader_raw, LEADER_ID)
        assert doc is not None and not problems, problems
        return doc

    def heartbeat(self, site: str, fresh: bool = False) -> Heartbeat | None:
        """Read (or take from the lagging cache) a site's heartbeat, and observe its revision."""
        if fresh or site not in self.hb_cache or not self._lagging():
            self.hb_cache[site] = self.sim.store.get(heartbeat_id(site))
        raw = self.hb_cache[site]
        self.liveness.observe(site, None if raw is None else raw["_rev"], self.sim.now)
        hb, problems = parse_heartbeat(raw, site)
        assert not problems, problems
        return hb

    # -------------------------------------------------------------- writing

    def cas_leader(self, new: LeaderDoc) -> bool:
        body = render_leader(new)
        rev = self.sim.store.put(body)
        if rev is None:
            self.leader_raw = None  # re-read and re-decide, never retry blindly
            return False
        body["_rev"] = rev
        self.leader_raw = body
        return True

    def beat(self) -> None:
        now = self.sim.now
        hb = Heartbeat(
            site=self.name,
            state=self.state,
            repeat=self.repeat,
            host=f"host-{self.name}",
            pid=1000 + self.instance,
            instance=str(self.instance),
            beat=self.beats + 1,
            time=self.sim.now_text(),
            turn=None if self.cmd is None else self.cmd.turn,
            rev=self.hb_rev,
        )
        body = render_heartbeat(hb)
        rev = self.sim.store.put(body)
        if rev is None:  # a new instance: only this site writes this doc, take over its revision
            current = self.sim.store.get(heartbeat_id(self.name))
            body.pop("_rev", None)
            if current is not None:
                body["_rev"] = current["_rev"]
            rev = self.sim.store.put(body)
        assert rev is not None
        self.hb_rev, self.beats, self.last_ack = rev, self.beats + 1, now
        if self.cmd is not None:
            self.cmd.extend(now + FENCE, now)

    def set_state(self, state: str) -> None:
        if state != self.state:
            self.state = state
            self.beat()

    def record(self, turn: int, site: str, how: str, exit_code: int | None = None) -> None:
        rec = TurnRecord(turn=turn, site=site, how=how, exit_code=exit_code, ended_at=self.sim.now_text())
        self.sim.store.put(render_turn_record(rec))  # created once; a second writer's 409 is fine

    def register(self) -> None:
        for _ in range(5):
            raw = self.sim.store.get(SITES_ID)
            sites, problems = parse_sites(raw, SITES_ID)
            assert sites is not None and not problems, problems
            if self.name in sites.sites:
                break
            if self.sim.store.put(render_sites(sites, {self.name: {"heartbeat_doc": heartbeat_id(self.name)}})):
                break
        self.registered = True

    # -------------------------------------------------------------- the loop

    def step(self) -> None:
        sim, now = self.sim, self.sim.now
        if not self.registered:
            self.register()
        if self.last_ack is None or now - self.last_ack >= DELAY:
            self.beat()
        doc = self.leader_doc()

        if self.pending_start is not None:
            self.start_command(*self.pending_start)

        if self.cmd is not None:
            self.cmd.settle(now)
            reason = None if self.cmd.end is not None else lost_reason(doc, self.name, self.cmd.turn)
            if reason is not None:
                self.cmd.kill(now, reason)
                sim.stats[f"stopped: {reason}"] += 1
            if self.cmd.end is not None:
                cmd = self.cmd
                if still_mine(doc, self.name, cmd.turn):
                    new, _ = finish(doc, self.name, 0, cmd.how or "exited", self.repeat, sim.now_text())
                    if not self.cas_leader(new):
                        return
                    self.record(cmd.turn, self.name, cmd.how or "exited", 0)
                else:
                    sim.stats["ended after revocation"] += 1
                    self.record(cmd.turn, self.name, f"{cmd.how} after revocation")
                self.cmd = None
                if not self.repeat:
                    self.leave()
                    return
                self.set_state(WAITING)
                doc = self.leader_doc()
        elif self.pending_start is None and doc.running == self.name and doc.status == RUNNING:
            # The leader doc says I run a turn that this instance never started:
            # a previous run of this site crashed in it. Its command may live
            # until its deadline, at most FENCE after this instance started.
            if self.orphan is None or self.orphan[0] != doc.turn:
                wait = FENCE if sim.variant.orphan_wait else 0.0
                self.orphan = (doc.turn, self.started_at + wait)
            if now >= self.orphan[1]:
                new, _ = finish(doc, self.name, None, "orphaned", self.repeat, sim.now_text())
                if not self.cas_leader(new):
                    return
                sim.stats["orphans finished"] += 1
                self.record(doc.turn, self.name, "orphaned")
                self.orphan = None
                doc = self.leader_doc()
        elif self.state == WAITING and granted_to_me(doc, self.name):
            if now - self.last_ack > DELAY / 2:
                self.beat()  # start with a deadline well ahead
            if not self.cas_leader(confirm(doc, self.name, sim.now_text())):
                return
            # The command runs under the lease it was confirmed under: a beat
            # between the confirm and the start must not lengthen it, or a
            # freeze in between could start it after the leader took the turn.
            self.pending_start = (doc.turn, self.last_ack + FENCE)
            # Sometimes the agent is frozen or slow between the confirm and the start.
            if sim.rng.random() < 0.5:
                self.start_command(*self.pending_start)
            doc = self.leader_doc()

        self.campaign(doc)
        doc = self.leader_doc()
        if doc.leader == self.name:
            self.lead(doc)

    def start_command(self, turn: int, deadline: float) -> None:
        sim = self.sim
        self.pending_start = None
        assert self.last_ack is not None
        if not sim.variant.lease_from_confirm:
            deadline = self.last_ack + FENCE
        cmd = Command(
            site=self.name,
            instance=self.instance,
            turn=turn,
            start=sim.now,
            planned_end=sim.now + sim.rng.uniform(*sim.cmd_duration),
            deadline=deadline,
        )
        cmd.settle(sim.now)
        if cmd.end is None:
            sim.commands.append(cmd)
        else:  # the supervisor never starts a command past its deadline
            sim.stats["refused to start"] += 1
        self.cmd = cmd
        self.set_state(RUNNING)

    def campaign(self, doc: LeaderDoc) -> None:
        sim, now = self.sim, self.sim.now
        if doc.leader == self.name or now < self.campaign_not_before:
            return
        hbs = {} if doc.leader is None else {doc.leader: self.heartbeat(doc.leader)}
        stale = {s: self.liveness.is_stale(s, now) for s in hbs}
        if vacancy(doc, hbs, stale) is None:
            return
        # A cached view may lag: look again before calling the leader gone.
        doc = self.leader_doc(fresh=True)
        hbs = {} if doc.leader is None else {doc.leader: self.heartbeat(doc.leader, fresh=True)}
        stale = {s: self.liveness.is_stale(s, now) for s in hbs}
        if doc.leader == self.name or vacancy(doc, hbs, stale) is None:
            return
        if self.cas_leader(claim(doc, self.name, sim.now_text())):
            sim.stats["elections"] += 1
        else:
            self.campaign_not_before = now + conflict_wait(CONFLICT, sim.rng)

    def lead(self, doc: LeaderDoc) -> None:
        sim, now = self.sim, self.sim.now
        sites, _ = parse_sites(sim.store.get(SITES_ID), SITES_ID)
        assert sites is not None
        names = set(sites.sites) | ({doc.running} if doc.running else set())
        hbs = {n: self.heartbeat(n) for n in sorted(names)}
        stale = {n: self.liveness.is_stale(n, now) for n in names}
        p = plan(doc, sites.sites, hbs, stale, self.name, sim.now_text())
        if p is None:
            return
        if p.revoked_running:
            assert p.revoked_site is not None
            if sim.variant.reread_before_revoke:
                before = self.liveness.rev(p.revoked_site)
                self.heartbeat(p.revoked_site, fresh=True)
                if self.liveness.rev(p.revoked_site) != before:
                    sim.stats["revocations saved by a fresh read"] += 1
                    return
        if not self.cas_leader(p.doc):
            return
        if p.revoked_site is not None:
            assert p.revoked_turn is not None
            sim.stats["running turns revoked" if p.revoked_running else "grants revoked"] += 1
            self.record(p.revoked_turn, p.revoked_site, "revoked" if p.revoked_running else "not started")

    def leave(self) -> None:
        """SIGTERM, or a run-once site after its turn: stop, hand over, step down, say ``left``."""
        sim = self.sim
        if self.cmd is not None:
            self.cmd.kill(sim.now, "stopped")
        for _ in range(3):
            doc = self.leader_doc(fresh=True)
            turn = self.cmd.turn if self.cmd is not None else (self.pending_start or (None,))[0]
            if turn is None or not still_mine(doc, self.name, turn):
                if turn is not None:
                    self.record(turn, self.name, "stopped after revocation")
                break
            new, _ = finish(doc, self.name, None, "stopped", False, sim.now_text())
            if self.cas_leader(new):
                self.record(turn, self.name, "stopped")
                break
        self.cmd = self.pending_start = None
        for _ in range(3):
            new = resign(self.leader_doc(fresh=True), self.name, sim.now_text())
            if new is None or self.cas_leader(new):
                break
        self.set_state(LEFT)
        sim.agents[self.name] = None


@dataclass
class Sim:
    seed: int
    sites: tuple[str, ...]
    faults: Faults = field(default_factory=Faults)
    variant: Variant = field(default_factory=Variant)
    cmd_duration: tuple[float, float] = (0.5, 4.0)
    run_once: frozenset = frozenset()

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.clock = FakeClock()
        self.t0 = self.clock.monotonic()
        self.store = Store(self.on_write)
        self.agents: dict[str, Agent | None] = {s: None for s in self.sites}
        self.instances = itertools.count(1)
        self.commands: list[Command] = []
        self.violations: list[str] = []
        self.stats: dict[str, int] = dict.fromkeys(
            [
                "elections",
                "crashes",
                "freezes",
                "stops",
                "grants revoked",
                "running turns revoked",
                "revocations saved by a fresh read",
                "stopped: skipped",
                "ended after revocation",
                "orphans finished",
                "admin writes",
                "refused to start",
            ],
            0,
        )
        self.stats["stopped: revoked"] = 0
        self.grants: list[tuple[float, str, int]] = []
        assert self.store.put(render_leader(new_leader_doc(LEADER_ID)))
        assert self.store.put(render_sites(new_sites_doc(SITES_ID)))
        for s in self.sites:
            self.agents[s] = Agent(self, s, s not in self.run_once, next(self.instances))

    @property
    def now(self) -> float:
        return self.clock.monotonic()

    def now_text(self) -> str:
        return format_time(self.clock.now(), FMT)

    # -------------------------------------------------------------- checks

    def violation(self, text: str) -> None:
        self.violations.append(f"seed {self.seed} t={self.now:.2f}: {text}")

    def on_write(self, doc_id: str, old: dict | None, new: dict) -> None:
        if doc_id != LEADER_ID or old is None:
            return
        before, _ = parse_leader(old, LEADER_ID)
        after, _ = parse_leader(new, LEADER_ID)
        assert before is not None and after is not None
        if after.turn < before.turn:
            self.violation(f"turn went back from {before.turn} to {after.turn}")
        elif after.turn > before.turn + 1:
            self.violation(f"turn jumped from {before.turn} to {after.turn}")
        if after.turn == before.turn + 1:
            if after.status != GRANTED:
                self.violation(f"turn {after.turn} appeared as {after.status}, not granted")
            self.grants.append((self.now, after.running, after.turn))

    def check_step(self) -> None:
        now = self.now
        for c in self.commands:
            c.settle(now)
        alive = [c for c in self.commands if c.end is None]
        if len(alive) > 1:
            self.violation("commands alive at once: " + ", ".join(f"{c.site}#{c.turn}" for c in alive))
        believers = [
            a.name
            for a in self.agents.values()
            if a is not None and a.frozen_until is None and a.cmd is not None and a.cmd.end is None
        ]
        if len(believers) > 1:
            self.violation(f"sites that believe they run a turn: {believers}")

    def check_end(self) -> None:
        ordered = sorted(self.commands, key=lambda c: (c.start, c.turn))
        for a, b in zip(ordered, ordered[1:]):
            a_end = math.inf if a.end is None else a.end
            if b.start < a_end:
                self.violation(
                    f"{a.site} turn {a.turn} [{a.start:.2f}, {a_end:.2f}) overlaps "
                    f"{b.site} turn {b.turn} from {b.start:.2f}"
                )
            if b.turn <= a.turn:
                self.violation(f"turn {b.turn} started after turn {a.turn}")
        doc, _ = parse_leader(self.store.get(LEADER_ID), LEADER_ID)
        assert doc is not None
        over = doc.turn if doc.status == DONE else doc.turn - 1
        recorded = set()
        for doc_id, raw in self.store.docs.items():
            if doc_id.startswith(docs.TURN_PREFIX):
                rec, problems = parse_turn_record(raw)
                assert rec is not None and not problems
                recorded.add(rec.turn)
        missing = sorted(set(range(1, over + 1)) - recorded)
        if missing:
            self.violation(f"ended turns without a record: {missing}")

    # -------------------------------------------------------------- running

    def run(self, steps: int, heal_at: int | None = None) -> "Sim":
        """``heal_at``: from that step on, no more faults; everything down comes back."""
        self.heal_time = None
        for i in range(steps):
            self.clock.advance(self.rng.choice(STEP_SIZES))
            if i == heal_at:
                self.heal()
            self.inject()
            live = [a for a in self.agents.values() if a is not None]
            self.rng.shuffle(live)
            for agent in live:
                if self.agents.get(agent.name) is not agent:
                    continue
                if agent.frozen_until is not None:
                    if self.now < agent.frozen_until:
                        continue
                    agent.frozen_until = None
                if self.rng.random() < self.faults.slow:
                    continue
                agent.step()
            self.check_step()
        self.check_end()
        return self

    def inject(self) -> None:
        f, rng = self.faults, self.rng
        for name, agent in self.agents.items():
            if agent is None:
                if rng.random() < f.restart:
                    self.agents[name] = Agent(self, name, name not in self.run_once, next(self.instances))
                continue
            if agent.frozen_until is not None:
                continue
            r = rng.random()
            if r < f.crash:
                self.stats["crashes"] += 1
                self.agents[name] = None  # its command lives on until its deadline
            elif r < f.crash + f.freeze:
                self.stats["freezes"] += 1
                agent.frozen_until = self.now + rng.uniform(0.2, 2.5) * STALE
            elif r < f.crash + f.freeze + f.stop:
                self.stats["stops"] += 1
                agent.leave()
        if rng.random() < f.admin:
            self.stats["admin writes"] += 1
            doc, _ = parse_leader(self.store.get(LEADER_ID), LEADER_ID)
            assert doc is not None
            r = rng.random()
            if r < 0.2 and doc.status == RUNNING:
                self.store.put(render_leader(replace(doc, skip_turn=doc.turn, updated_by="admin")))
            elif r < 0.5:
                self.store.put(render_leader(replace(doc, paused=not doc.paused, updated_by="admin")))
            else:
                site = rng.choice(self.sites)
                raw = self.store.get(SITES_ID)
                sites, _ = parse_sites(raw, SITES_ID)
                assert sites is not None and raw is not None
                if site in sites.sites:
                    entry = dict(raw["sites"][site])
                    entry["drained"] = not sites.sites[site].drained
                    self.store.put(render_sites(sites, {site: entry}))

    def heal(self) -> None:
        self.heal_time = self.now
        self.faults = Faults(restart=1.0)
        for name, agent in self.agents.items():
            if agent is None:
                self.agents[name] = Agent(self, name, name not in self.run_once, next(self.instances))
            else:
                agent.frozen_until = None
        doc, _ = parse_leader(self.store.get(LEADER_ID), LEADER_ID)
        assert doc is not None
        if doc.paused:
            assert self.store.put(render_leader(replace(doc, paused=False)))
        raw = self.store.get(SITES_ID)
        sites, _ = parse_sites(raw, SITES_ID)
        assert sites is not None and raw is not None
        undrain = {s: {**raw["sites"][s], "drained": False} for s, e in sites.sites.items() if e.drained}
        if undrain:
            assert self.store.put(render_sites(sites, undrain))

    @property
    def turn_bound(self) -> float:
        """Longest command, plus noticing its end, the handoff and the start."""
        return self.cmd_duration[1] + 3 * MAX_STEP

    def starts(self, since: float = -math.inf) -> list[Command]:
        return sorted((c for c in self.commands if c.start >= since), key=lambda c: c.start)


# ------------------------------------------------------------------ without faults

@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("sites", [("solo",), ("alpha", "bravo"), ("alpha", "bravo", "charlie", "delta", "echo")])
def test_turns_go_round_in_alphabetical_order(seed: int, sites: tuple[str, ...]) -> None:
    sim = Sim(seed, sites).run(300)
    assert sim.violations == []
    starts = sim.starts()
    n = len(sites)
    assert len(starts) >= 300 * 0.25 / sim.turn_bound, "turns should keep coming"
    # No turn lost: every grant confirmed and run, no revocation, no election after the first.
    assert [c.turn for c in starts] == list(range(1, len(starts) + 1))
    assert sim.stats["grants revoked"] == sim.stats["running turns revoked"] == 0
    assert sim.stats["elections"] == 1
    # Once every site is in, strictly alphabetical, wrapping around.
    for prev, cur in zip(starts[n:], starts[n + 1 :]):
        assert cur.site == next_after(prev.site, sites), [c.site for c in starts]
    # Every site gets a turn within a bounded time, from the start and ever after.
    for site in sites:
        mine = [c.start for c in starts if c.site == site]
        assert mine and mine[0] - sim.t0 <= 2 * CONFLICT + n * sim.turn_bound
        gaps = [b - a for a, b in zip(mine, mine[1:])]
        assert max(gaps, default=0.0) <= n * sim.turn_bound, (site, gaps)


def test_a_run_once_site_gets_one_turn_in_order_and_leaves() -> None:
    sites = ("alpha", "bravo", "charlie")
    sim = Sim(1, sites, run_once=frozenset({"bravo"}), faults=Faults(restart=0.0)).run(120)
    assert sim.violations == []
    order = [c.site for c in sim.starts()]
    assert order.count("bravo") == 1
    assert order[:4] == ["alpha", "bravo", "charlie", "alpha"]
    assert sim.agents["bravo"] is None
    hb, _ = parse_heartbeat(sim.store.get(heartbeat_id("bravo")), "bravo")
    assert hb is not None and hb.state == LEFT


# ------------------------------------------------------------------ with faults

SITES = ("alpha", "bravo", "charlie", "delta")
FAULTS = Faults(crash=0.006, freeze=0.006, stop=0.004, slow=0.1, lag=0.4, admin=0.02, restart=0.15)
FAULT_SEEDS = range(10)


def run_with_faults(seed: int, variant: Variant = Variant(), **kw) -> Sim:
    sim = Sim(seed, SITES, faults=FAULTS, variant=variant, run_once=frozenset({"charlie"}), cmd_duration=(0.5, 8.0), **kw)
    return sim.run(500, heal_at=400)


@pytest.fixture(scope="module")
def fault_runs() -> list[Sim]:
    return [run_with_faults(seed) for seed in FAULT_SEEDS]


@pytest.mark.parametrize("seed", FAULT_SEEDS)
def test_safety_under_faults(fault_runs: list[Sim], seed: int) -> None:
    sim = fault_runs[seed]
    assert sim.violations == []
    assert len(sim.commands) >= 10


@pytest.mark.parametrize("seed", FAULT_SEEDS)
def test_progress_resumes_after_faults_heal(fault_runs: list[Sim], seed: int) -> None:
    sim = fault_runs[seed]
    healed = sim.heal_time
    assert healed is not None
    # A crashed runner's orphan waits out FENCE, a silent one is revoked after
    # STALE; then one round of turns.
    bound = STALE + CONFLICT + 2 * MAX_STEP + len(SITES) * sim.turn_bound
    for site in SITES:
        first = next((c.start for c in sim.starts(healed) if c.site == site), None)
        assert first is not None and first - healed <= bound, (site, first, healed, bound)


def test_the_faults_exercise_the_protocol(fault_runs: list[Sim]) -> None:
    """The runs above are not vacuous: every kind of trouble happened somewhere."""
    total = {k: sum(s.stats[k] for s in fault_runs) for k in fault_runs[0].stats}
    for kind, count in total.items():
        if kind not in ("stopped: revoked", "refused to start"):
            assert count > 0, (kind, total)
    # The fence always came first: no agent ever found its live command's turn
    # taken away (an admin's skip is the only reason a live command is stopped).
    assert total["stopped: revoked"] == 0, total
    assert sum(1 for s in fault_runs for c in s.commands if c.how == "fenced") > 0
    assert sum(s.store.conflicts for s in fault_runs) > 0


# ------------------------------------------------------------------ the checks have teeth


def test_restarted_site_finishing_its_orphan_at_once_runs_two_commands() -> None:
    """A site that crashes while running and comes back must wait out its old
    command's deadline before it hands the turn on; without the wait the
    checker sees two commands alive."""
    broken = [
        Sim(seed, SITES, faults=Faults(crash=0.01, restart=0.5), variant=Variant(orphan_wait=False),
            cmd_duration=(5.0, 20.0)).run(300)
        for seed in range(3)
    ]
    assert any("overlaps" in v for s in broken for v in s.violations)
    assert any("alive at once" in v for s in broken for v in s.violations)
    safe = [
        Sim(seed, SITES, faults=Faults(crash=0.01, restart=0.5), cmd_duration=(5.0, 20.0)).run(300)
        for seed in range(3)
    ]
    assert [v for s in safe for v in s.violations] == []
    assert sum(s.stats["orphans finished"] for s in safe) > 0


def test_leader_revoking_on_a_lagging_view_runs_two_commands() -> None:
    """Taking a running turn away on a cached heartbeat that lags: the holder
    still beats, its command is alive, and the next site starts anyway."""
    faults = Faults(lag=0.9)
    broken = [Sim(seed, SITES, faults=faults, variant=Variant(reread_before_revoke=False)).run(300) for seed in range(4)]
    assert any("alive at once" in v or "believe" in v for s in broken for v in s.violations)
    safe = [Sim(seed, SITES, faults=faults).run(300) for seed in range(4)]
    assert [v for s in safe for v in s.violations] == []
    assert sum(s.stats["revocations saved by a fresh read"] for s in safe) > 0


def test_command_started_under_a_lease_renewed_after_its_confirm_is_unsafe() -> None:
    """An agent frozen between its confirm and the start must start under the
    lease it confirmed with (which the freeze used up), not one renewed by a
    beat after it woke: by then the leader may have given the turn away."""
    faults = Faults(freeze=0.03, lag=0.5, restart=0.3)
    runs = {
        lease_from_confirm: [
            Sim(seed, SITES, faults=faults, variant=Variant(lease_from_confirm=lease_from_confirm),
                cmd_duration=(2.0, 10.0)).run(300)
            for seed in range(10)
        ]
        for lease_from_confirm in (False, True)
    }
    # Seen as a command of an older turn starting after a newer one (the
    # fencing token going back), or as two commands at once.
    broken = [v for s in runs[False] for v in s.violations]
    assert any("started after" in v or "overlaps" in v or "at once" in v for v in broken), broken
    assert [v for s in runs[True] for v in s.violations] == []
    assert sum(s.stats["refused to start"] for s in runs[True]) > 0
