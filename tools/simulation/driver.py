"""The real agent (enqueue.agent.Agent) run as one simulated process.

An ``AgentProcess`` is one run of a site's agent, from its start to its exit
or its death. It gives the agent a store that injects the schedule's faults,
the site's clocks, a fake runner and a changes feed whose deliveries are
events of the world, and drives it as the real driver (enqueue.agent_process)
does: ``start``, then ``step`` at the moment ``next_wake`` names and after
every event ``handle`` took in. Nothing of the agent is modelled: its own
code decides and writes.
"""

from __future__ import annotations

import random
import signal
import traceback
from typing import Callable, List, Optional, Protocol

from enqueue.agent import Agent
from enqueue.config import AgentSettings, Connection
from enqueue.errors import EnqueueError
from enqueue.events import DocChanged, Event, StopRequested
from enqueue.lease import Identity
from enqueue.leaving import Left
from enqueue.side_steps import SidePlan
from enqueue.timing import Timing

from tools.simulation.faults import AgentCrash, FaultyStore, Schedule
from tools.simulation.runner import Ledger, SimRunner
from tools.simulation.side_runner import SimSideRunner
from tools.simulation.watched_store import WatchedStore
from tools.simulation.world import SiteClock, World

# A wake-up is never scheduled closer than this to the step before (float rounding of the clock rates).
_MIN_SLEEP_S = 1e-6
COMMAND = ["simulated-command"]


class Site:
    """One host: its name, its clocks, and the agent running there now."""

    def __init__(self, name: str, clock: SiteClock) -> None:
        self.name = name
        self.clock = clock
        self.host = f"host-{name}"
        self.repeat = True
        self.process: Optional[AgentProcess] = None
        self.runs = 0
        # The side commands its agents run (the fault class ``between``), or None.
        self.side: Optional[SidePlan] = None
        # The site drains itself after this many failed turns in a row (None: never).
        self.max_failures: Optional[int] = None


class Surroundings(Protocol):
    """What an agent process needs of the simulation it runs in (tools.simulation.simulation.Simulation)."""

    world: World
    store: WatchedStore
    schedule: Schedule
    ledger: Ledger
    timing: Timing
    current: Optional["AgentProcess"]
    healed_at: Optional[float]

    def violation(self, text: str) -> None:
        """Report a finding (an agent that raised)."""

    def process_ended(self, proc: "AgentProcess") -> None:
        """``proc`` exited or died."""

    def agent_alive(self, site: Site) -> Callable[[int], bool]:
        """Whether a pid on ``site``'s host is a live agent."""


class AgentProcess:
    """One run of one site's agent."""

    def __init__(self, sim: Surroundings, site: Site, number: int) -> None:
        self.sim = sim
        self.site = site
        self.name = f"{site.name}.{number}"
        self.pid = 1000 * (number + 1) + len(site.name)
        self.alive = True
        self.started = False
        self.frozen_until: Optional[float] = None
        self.exit_code: Optional[int] = None
        self._timer_generation = 0
        # The feed delivers in order: no delivery is due before the one scheduled last.
        self.feed_free_at = 0.0
        # What reached the agent while it was frozen, in order: handed over when it thaws.
        self._held: List[Event] = []
        self.store = FaultyStore(sim.store, sim.world, sim.schedule, site.name, self.name, on_crash=self._died)
        self.runner = SimRunner(sim.world, sim.ledger, site.clock, site.name, self.name, sim.timing.kill_grace_s,
                                deliver=self.deliver)
        settings = AgentSettings(
            site=site.name,
            command=list(COMMAND),
            connection=Connection(url="http://simulated.invalid", database="sim"),
            timing=sim.timing,
            repeat=site.repeat,
            between=site.side.between if site.side else None,
            between_every_s=site.side.between_every_s if site.side else None,
            ready=site.side.ready if site.side else None,
            max_failures=site.max_failures,
        )
        self.side_runner = None if site.side is None else SimSideRunner(
            sim.world, sim.ledger, self.name, self.deliver, lambda: sim.schedule.count("between"),
            lambda: sim.healed_at is not None, sim.violation)
        identity = Identity(instance=self.name, host=site.host, pid=self.pid, agent_alive=sim.agent_alive(site))
        self.agent = Agent(settings, self.store, site.clock, self.runner,  # type: ignore[arg-type]
                           random.Random(sim.world.rng.getrandbits(32)), identity,
                           self.side_runner)  # type: ignore[arg-type]

    @property
    def watched_ids(self) -> tuple:
        return self.agent.watched_ids if self.started and self.alive else ()

    # -- what the world calls ---------------------------------------------------

    def start(self) -> bool:
        self.sim.world.note(self.name, "starts")
        if self._run(lambda: self.agent.start(self.site.clock.monotonic())):
            self.started = True
            self._step()
        return True

    def deliver(self, event: Event) -> bool:
        """Hand the agent one event (feed news, a runner report, a signal), then let it act."""
        if not self.alive:
            return False
        if self.frozen_until is not None and self.sim.world.now < self.frozen_until:
            self._held.append(event)
            self.sim.world.at(self.frozen_until, self._release, f"{self.name} (frozen) news")
            return False
        if isinstance(event, DocChanged) and not self.started:
            return False
        if self._run(lambda: self.agent.handle(event)) and self.started:
            self._step()
        return True

    def signal_stop(self) -> None:
        self.sim.world.note(self.name, "gets SIGTERM")
        self.sim.world.after(0.0, lambda: self.deliver(StopRequested(signal.SIGTERM)), f"{self.name} signal")

    def kill(self, why: str) -> None:
        self.sim.world.note(self.name, f"killed ({why})")
        self._died()

    def freeze(self, seconds: float) -> None:
        self.sim.world.note(self.name, f"frozen for {seconds:.2f} s")
        self.frozen_until = self.sim.world.now + seconds
        self._schedule_wake(self.frozen_until)
        self.sim.world.at(self.frozen_until, self._release, f"{self.name} (frozen) news")

    def thaw(self) -> None:
        if self.frozen_until is not None and self.frozen_until > self.sim.world.now:
            self.frozen_until = self.sim.world.now
            self._schedule_wake(self.sim.world.now)
            self.sim.world.at(self.sim.world.now, self._release, f"{self.name} (thawed) news")

    def _release(self) -> bool:
        """Hand the agent, in order, what reached it while it was frozen (once it no longer is)."""
        if not self.alive or not self._held or \
                (self.frozen_until is not None and self.sim.world.now < self.frozen_until):
            return False
        held, self._held = self._held, []
        for event in held:
            self.deliver(event)
        return True

    # -- the agent's loop, as its real driver runs it ---------------------------------

    def _step(self) -> None:
        left: List[Optional[Left]] = [None]

        def step() -> None:
            left[0] = self.agent.step(self.site.clock.monotonic())

        if not self._run(step):
            return
        if left[0] is not None:
            self._exited(left[0].exit_code, "left")
            return
        now = self.sim.world.now
        wake = self.site.clock.true_time_of(self.agent.next_wake())
        self._schedule_wake(max(wake, now + _MIN_SLEEP_S))

    def _schedule_wake(self, moment: float) -> None:
        self._timer_generation += 1
        generation = self._timer_generation
        self.sim.world.at(moment, lambda: self._on_timer(generation), f"{self.name} timer")

    def _on_timer(self, generation: int) -> bool:
        if not self.alive or not self.started or generation != self._timer_generation:
            return False
        if self.frozen_until is not None and self.sim.world.now < self.frozen_until:
            self._schedule_wake(self.frozen_until)
            return False
        self._step()
        return True

    def _run(self, action: Callable[[], None]) -> bool:
        """Run part of the agent; False when the agent is gone after it (crashed or failed)."""
        if not self.alive:
            return False
        self.sim.current = self
        try:
            action()
            return self.alive
        except AgentCrash:
            pass
        except EnqueueError as exc:
            # What 'enqueue run' reports with one line and an exit code; the site loop starts it again.
            self._exited(3, f"failed: {exc}")
        except Exception as exc:  # noqa: BLE001 - an agent bug is a finding
            self.sim.violation(f"[agent-error] agent {self.name} raised {type(exc).__name__}: {exc}\n"
                               f"{traceback.format_exc()}")
            self._exited(1, "raised")
        finally:
            self.sim.current = None
        return False

    # -- how a run ends --------------------------------------------------------------

    def _exited(self, code: int, how: str) -> None:
        self.sim.world.note(self.name, f"exits ({how}, exit code {code})")
        self.alive = False
        self.exit_code = code
        self.runner.close()
        self.sim.process_ended(self)

    def _died(self) -> None:
        if not self.alive:
            return
        self.alive = False
        self.runner.agent_gone()
        self.sim.process_ended(self)
