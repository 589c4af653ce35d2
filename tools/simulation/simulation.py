"""One simulated run: K sites' real agents on one in-memory database, under a fault schedule, by seed.

The run lasts ``steps`` steps (events that did something). For the first
``heal_fraction`` of them the schedule's faults strike; then the faults heal
(every agent is up and thawed, partitions end, the admin resumes and
undrains) and the rest of the run shows that progress comes back. Safety is
checked after every step; records, outcomes and progress at the end.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Dict, FrozenSet, Iterator, List, Optional

from enqueue import documents as docs
from enqueue.admin_rebuild import AdminRebuild
from enqueue.clock import format_time
from enqueue.config import DEFAULT_LEADER_DOC, DEFAULT_TIME_FORMAT, Timing
from enqueue.events import DocChanged

from tools.simulation.admin import Admin
from tools.simulation.driver import AgentProcess, Site
from tools.simulation.faults import ADMIN_FAULTS, ALL_FAULTS, FaultRates, Schedule
from tools.simulation.invariants import Judge, TurnBook
from tools.simulation.runner import Ledger
from tools.simulation.side_runner import draw_plan
from tools.simulation.watched_store import WatchedStore
from tools.simulation.world import SiteClock, World

SITE_NAMES = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet")

# The protocol's durations in the simulation: the chaos harness's defaults.
TIMING = Timing(heartbeat_delay_s=1.0, heartbeat_stale_s=4.0, conflict_delay_s=1.0, kill_grace_s=0.5)
#: The fault classes of the default budget (tests/tools/simulation/test_budget.py), ``--faults`` syntax: every one.
DEFAULT_FAULTS = "all"
# Clock rates lie within 1 +- this: two hosts then differ by less than heartbeat_delay / heartbeat_stale.
RATE_SPREAD = 0.1
#: How many heartbeat delays an admin takes at most to run ``enqueue repair`` after the leader doc broke.
ADMIN_REACTION = 1.0
# The share of agent restarts (after a death or an exit, while faults strike) made at once, as a site loop does.
SITE_LOOP_RESTARTS = 0.3


@dataclass
class Options:
    sites: int = 4
    steps: int = 1500
    #: How many of the sites (the last ones) run once per agent, the way the original site loop runs them:
    #: the agent takes one turn and exits, and the loop starts the next one after a short monitoring step.
    run_once: int = 0
    faults: FrozenSet[str] = frozenset(ALL_FAULTS)
    heal_fraction: float = 0.7
    timing: Timing = TIMING
    rates: FaultRates = field(default_factory=FaultRates)
    # ``enqueue run --max-failures`` for every site but the first (which keeps the rotation going); None: off.
    max_failures: Optional[int] = None


@dataclass
class Result:
    seed: int
    steps: int
    true_time: float
    violations: List[str]
    trace: List[str]
    commands: int
    turns: int
    fault_counts: Dict[str, int]
    leader_term: int = 0
    on_grant: int = 0
    """Commands started on their grant alone, without a confirm (PROTOCOL §3.5.7)."""

    @property
    def ok(self) -> bool:
        return not self.violations

    def kinds(self) -> FrozenSet[str]:
        """The kinds of invariant that failed (``overlap``, ``token``, ``record``, ``outcome``, ...)."""
        return frozenset(v[1:v.index("]")] for v in self.violations if v.startswith("["))


class Simulation:
    def __init__(self, seed: int, options: Options = Options()) -> None:
        self.options = options
        self.world = World(seed)
        rng = self.world.rng
        self.timing = options.timing
        self.schedule = Schedule(enabled=options.faults, rates=options.rates)
        self.ledger = Ledger()
        self.book = TurnBook()
        self.store = WatchedStore(seed, self._changed)
        self._leader_raw: Optional[dict] = None
        self._beats_at: Dict[str, float] = {}  # each heartbeat doc's last change, in true time
        self.current: Optional[AgentProcess] = None
        self.sites: List[Site] = []
        for number, name in enumerate(SITE_NAMES[:options.sites]):
            rate = 1.0 + rng.uniform(-RATE_SPREAD, RATE_SPREAD) if "clock-rate" in options.faults else 1.0
            clock = SiteClock(self.world, rate, mono_origin=rng.uniform(1e3, 1e6),
                              wall_offset_s=rng.uniform(-6 * 3600, 6 * 3600))
            site = Site(name, clock)
            site.repeat = number < options.sites - options.run_once
            # Every site but the first may drain itself, so that one always remains.
            site.max_failures = None if number == 0 else options.max_failures
            self.sites.append(site)
        if "between" in options.faults:
            for site in self.sites:
                if site.repeat:
                    site.side = draw_plan(rng)
        self.admin_clock = SiteClock(self.world, 1.0, 0.0, 0.0)
        self.admin = Admin(self.store, rng, lambda: format_time(self.admin_clock.now(), DEFAULT_TIME_FORMAT))
        self.extra_violations: List[str] = []
        self.healed_at: Optional[float] = None
        self.instances: Dict[str, str] = {}
        # Every second run, the sites write under site accounts: an admin creates and rebuilds the leader doc.
        self.schedule.site_accounts = "site-accounts" in options.faults and seed % 2 == 0
        self.rebuild: Optional[AdminRebuild] = None
        self.on_grant = 0

    # -- the run ------------------------------------------------------------------

    def run(self) -> Result:
        world, opts = self.world, self.options
        heal_at = int(opts.steps * opts.heal_fraction)
        if self.schedule.site_accounts:
            world.at(0.0, lambda: self._as_admin(lambda: self.admin.init([])), "admin init")
        for site in self.sites:
            world.at(world.rng.uniform(0.0, 0.5), lambda s=site: self._start(s), f"start {site.name}")
        world.after(self._chaos_gap(), self._chaos, "chaos")
        with _agent_logs_into(world, self):
            while world.steps < opts.steps and not self.violations():
                if self.healed_at is None and world.steps >= heal_at:
                    self._heal()
                if not world.step():
                    break
        if not self.violations():
            self._final_checks()
        term = (self._leader_raw or {}).get("leader_term")
        return Result(seed=world.seed, steps=world.steps, true_time=world.now, violations=self.violations(),
                      trace=list(world.trace), commands=len(self.ledger.commands), turns=len(self.book.stories),
                      fault_counts=dict(self.schedule.counts), leader_term=term if isinstance(term, int) else 0,
                      on_grant=self.on_grant)

    def violations(self) -> List[str]:
        return list(dict.fromkeys(self.ledger.violations + self.book.violations + self.extra_violations))

    def violation(self, text: str) -> None:
        self.world.note("CHECK", text.splitlines()[0])
        self.extra_violations.append(text)

    def _final_checks(self) -> None:
        t = self.timing
        records = {}
        for raw in self.store.list_prefix(docs.TURN_PREFIX):
            if isinstance(raw.get("turn"), int):
                records[raw["turn"]] = raw
        self.on_grant = self.book.started(self.ledger.commands)
        judge = Judge(book=self.book, commands=self.ledger.commands, records=records,
                      removed=self.admin.records_removed,
                      end=self.world.now, record_within_s=self.record_within_s(),
                      walls={s.name: s.clock for s in self.sites}, instance_site=self.instances,
                      admin_clock=self.admin_clock)
        for text in judge.records_missing() + judge.outcomes_wrong() + judge.alarms_false() + \
                judge.stalls(self.healed_at, self.progress_bound_s()):
            self.violation(text)
        del t

    def record_within_s(self) -> float:
        """How long after its end a turn may still be without its record: a writer cut off, then back."""
        t = self.timing
        return 2 * t.heartbeat_stale_s + t.heartbeat_delay_s

    def progress_bound_s(self) -> float:
        """The longest stretch without a command once the faults have healed (docs/GUARANTEES.md, Progress).

        A restarted agent waits out its predecessor's lease and then ends the
        turn it left (``2 x heartbeat_stale - heartbeat_delay`` after the
        kill); a leader doc that does not parse is rewritten after
        ``heartbeat_stale``, and one the sites may not rebuild by the admin
        within ``ADMIN_REACTION`` x ``heartbeat_delay`` plus the rebuild's own
        wait of ``heartbeat_stale``; add a heartbeat for the round trips and
        the start-up.
        """
        t = self.timing
        admin = ADMIN_REACTION * t.heartbeat_delay_s if self.schedule.site_accounts else 0.0
        return 2 * t.heartbeat_stale_s + t.heartbeat_delay_s + admin

    # -- agents -------------------------------------------------------------------

    def _start(self, site: Site) -> bool:
        if site.process is not None and site.process.alive:
            return False
        site.runs += 1
        proc = AgentProcess(self, site, site.runs)
        self.instances[proc.name] = site.name
        site.process = proc
        return proc.start()

    def process_ended(self, proc: AgentProcess) -> None:
        """An agent exited or died: a site loop starts it again at once, or an operator a little later.

        Restarts at once matter: the turn the dead agent left is then found
        while its command may still be dying (the supervisor's grace), and
        only waiting out the old lease keeps the next command from starting
        beside it.
        """
        site = proc.site
        rng = self.world.rng
        if not site.repeat and proc.exit_code is not None:
            # A run-once agent that ended: the loop runs its monitoring step, then the next agent.
            delay = rng.uniform(0.01, 0.3)
        elif self.healed_at is not None:
            delay = 0.05
        elif rng.random() < SITE_LOOP_RESTARTS:
            delay = rng.uniform(0.01, self.timing.kill_grace_s)
        else:
            delay = rng.uniform(0.05, 1.5 * self.timing.heartbeat_stale_s)
        self.world.after(delay, lambda: self._start(site), f"restart {site.name}")

    def agent_alive(self, site: Site) -> Callable[[int], bool]:
        """Whether a pid on ``site``'s host is a live agent (what the process table would say)."""
        def alive(pid: int) -> bool:
            proc = site.process
            return proc is not None and proc.alive and proc.pid == pid
        return alive

    # -- the store tells -------------------------------------------------------------

    def _changed(self, doc_id: str, body: Optional[dict]) -> None:
        world = self.world
        writer = world.writer or "admin"
        if doc_id == DEFAULT_LEADER_DOC:
            self.book.leader_changed(self._leader_raw, body, writer, world.now)
            self._leader_raw = body
        elif doc_id.startswith(docs.TURN_PREFIX):
            self.book.record_changed(doc_id, body, writer, world.now)
        elif doc_id.startswith(docs.HEARTBEAT_PREFIX):
            self.book.heartbeat_changed(body, writer, world.now)
        miss = self._miss_rate(doc_id, body)
        for site in self.sites:
            proc = site.process
            if proc is None or doc_id not in proc.watched_ids:
                continue
            if self.schedule.on("feed-miss") and world.rng.random() < miss:
                self.schedule.count("feed-miss")
                continue
            lag = world.rng.uniform(0.001, 0.02)
            if self.schedule.on("feed-lag") and world.rng.random() < 0.1:
                self.schedule.count("feed-lag")
                lag += world.rng.uniform(0.0, 2 * self.timing.heartbeat_delay_s)
            moment = max(world.now + lag, proc.feed_free_at)
            proc.feed_free_at = moment
            world.at(moment, lambda p=proc, e=DocChanged(doc_id, body): p.deliver(e), f"feed to {proc.name}")

    def _miss_rate(self, doc_id: str, body: Optional[dict]) -> float:
        """How often this change's delivery is lost to each follower: more often a beat that ends a long silence."""
        rates, t, now = self.schedule.rates, self.timing, self.world.now
        if not doc_id.startswith(docs.HEARTBEAT_PREFIX):
            return rates.feed_miss
        last, self._beats_at[doc_id] = self._beats_at.get(doc_id), now
        if body is None or last is None or now - last < t.heartbeat_stale_s - t.heartbeat_delay_s:
            return rates.feed_miss
        return rates.feed_miss_after_silence

    # -- faults ---------------------------------------------------------------------

    def _chaos_gap(self) -> float:
        return self.world.rng.uniform(0.2, 1.5)

    def _chaos(self) -> bool:
        if self.healed_at is not None:
            return False
        world, rng, t = self.world, self.world.rng, self.timing
        kinds = [k for k in ("kill", "freeze", "stop", "partition") + ADMIN_FAULTS if self.schedule.on(k)]
        world.after(self._chaos_gap(), self._chaos, "chaos")
        if not kinds:
            return False
        kind = rng.choice(kinds)
        live = [s.process for s in self.sites if s.process is not None and s.process.alive]
        if kind in ("kill", "freeze", "stop", "partition") and not live:
            return False
        if kind in ADMIN_FAULTS and rng.random() < 0.5:
            return False  # admins act less often than machines fail
        self.schedule.count(kind)
        if kind == "kill":
            rng.choice(live).kill("kill -9")
        elif kind == "freeze":
            rng.choice(live).freeze(rng.uniform(0.5, 3.0) * t.heartbeat_stale_s)
        elif kind == "stop":
            rng.choice(live).signal_stop()
        elif kind == "partition":
            site = rng.choice(live).site
            seconds = rng.uniform(0.5, 2.0) * t.heartbeat_stale_s
            self.schedule.cut_off_until[site.name] = world.now + seconds
            world.note(site.name, f"cut off from the database for {seconds:.2f} s")
        else:
            done = self._as_admin(lambda: self.admin.act(kind, [s.name for s in self.sites]))
            if done and kind in ("delete-leader", "garble-leader"):
                self._rebuild_soon()
        return True

    def _as_admin(self, action: Callable[[], Optional[str]]) -> Optional[str]:
        self.world.writer = "admin"
        try:
            done = action()
        finally:
            self.world.writer = None
        if done:
            self.world.note("admin", done)
        return done

    # -- the admin's rebuild (enqueue repair), where the sites may not ---------------

    def _rebuild_soon(self) -> None:
        """The admin who broke the leader doc, or who finds it broken, runs ``enqueue repair`` soon after."""
        if not self.schedule.site_accounts or self.rebuild is not None:
            return
        self.rebuild = self.admin.rebuilder(self.timing.heartbeat_stale_s)
        delay = self.world.rng.uniform(0.0, ADMIN_REACTION * self.timing.heartbeat_delay_s)
        self.world.after(delay, self._rebuild_step, "admin repair")

    def _rebuild_step(self) -> bool:
        rebuild = self.rebuild
        assert rebuild is not None
        now = self.admin_clock.monotonic()
        due = rebuild.look(now)
        if due is not None and now >= due:
            self.world.writer = "admin"
            try:
                turn = rebuild.write(now)
            finally:
                self.world.writer = None
            if turn is not None:
                self.world.note("admin", f"repair: rebuilt the leader doc at turn {turn}")
                self.rebuild = None
                return True
            due = rebuild.look(now)
        if due is None:
            self.rebuild = None
            self.world.note("admin", "repair: the leader doc parses, nothing to repair")
            return True
        self.world.after(max(due - now, 0.01), self._rebuild_step, "admin repair")
        return True

    def _heal(self) -> None:
        world = self.world
        self.healed_at = world.now
        world.note("heal", "faults heal: every agent up and thawed, no partition, resumed, undrained")
        self.schedule.active = False
        self.schedule.cut_off_until.clear()
        world.writer = "admin"
        try:
            self.admin.resume([])
            self.admin.undrain_all()
        finally:
            world.writer = None
        if docs.parse_leader(self.store.get(DEFAULT_LEADER_DOC), DEFAULT_LEADER_DOC)[0] is None:
            self._rebuild_soon()
        for site in self.sites:
            if site.process is not None and site.process.alive:
                site.process.thaw()


@contextmanager
def _agent_logs_into(world: World, sim: Simulation) -> Iterator[None]:
    """The agents' log lines go into the trace, marked with the agent that logged them."""
    logger = logging.getLogger("enqueue")
    handler = _TraceHandler(world, sim)
    saved = (logger.level, logger.propagate, list(logger.handlers))
    logger.handlers = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield
    finally:
        logger.setLevel(saved[0])
        logger.propagate = saved[1]
        logger.handlers = saved[2]


class _TraceHandler(logging.Handler):
    def __init__(self, world: World, sim: Simulation) -> None:
        super().__init__(logging.INFO)
        self.world = world
        self.sim = sim

    def emit(self, record: logging.LogRecord) -> None:
        who = self.sim.current.name if self.sim.current is not None else "-"
        try:
            text = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad log call must not end the run
            text = str(record.msg)
        self.world.note(who, f"{record.levelname.lower()}: {text}")
