"""The real agent (enqueue.agent.Agent) run as one simulated process.

An ``AgentProcess`` is one run of a site's agent, from its start to its exit
or its death. It gives the agent a store that injects the schedule's faults,
the site's clocks, a fake runner and a changes feed whose deliveries are
events of the world, then does what the agent's own loop would: handle one
event, take the due steps, and sleep until the agent's next wake-up. Nothing
of the agent is modelled: its code decides and writes.
"""

from __future__ import annotations

import random
import signal
import traceback
from typing import TYPE_CHECKING, Any, List, Optional, Tuple

from enqueue import agent as agent_module
from enqueue.config import AgentSettings, Connection, Timing
from enqueue.errors import EnqueueError

from tools.simulation.faults import AgentCrash, FaultyStore
from tools.simulation.runner import SimRunner

if TYPE_CHECKING:
    from tools.simulation.simulation import Simulation, Site

# The agent's own loop takes at most this many steps before it waits for news.
_STEPS_PER_WAKE = 50
# An agent that asks to be woken in the past (a timer already due that its step does not act on, such
# as the next heartbeat while it waits to retry the database) spins in its real loop; here it is woken
# this often, and such wake-ups are not counted as steps.
_SPIN_S = 1e-3


class SimFeed:
    """The changes feed the agent follows: which ids, and since when; the world delivers."""

    def __init__(self) -> None:
        self.ids: Tuple[str, ...] = ()
        self.started = False

    def follow(self, ids: Tuple[str, ...]) -> None:
        self.ids = tuple(ids)

    def start(self, since: Any) -> None:
        self.started = True

    def stop(self) -> None:
        self.started = False


class AgentProcess:
    """One run of one site's agent."""

    def __init__(self, sim: "Simulation", site: "Site", number: int) -> None:
        self.sim = sim
        self.site = site
        self.name = f"{site.name}.{number}"
        self.alive = True
        self.frozen_until: Optional[float] = None
        self.exit_code: Optional[int] = None
        self.runners: List[SimRunner] = []
        self._timer_generation = 0
        # The feed delivers in order: no delivery is due before the one scheduled last.
        self.feed_free_at = 0.0
        self.store = FaultyStore(sim.store, sim.world, sim.schedule, site.name, self.name, on_crash=self._died)
        settings = AgentSettings(
            site=site.name,
            command=["simulated-command"],
            connection=Connection(url="http://simulated.invalid", database="sim"),
            timing=sim.timing,
            repeat=site.repeat,
        )
        self.agent = agent_module.Agent(settings, self.store, clock=site.clock, runner_factory=self._make_runner,
                                        rng=random.Random(sim.world.rng.getrandbits(32)))
        self.agent.instance = self.name
        self.agent.host = site.host
        self.feed = SimFeed()
        self.agent.feed = self.feed

    # -- what the world calls ---------------------------------------------------

    def start(self) -> bool:
        self.sim.world.note(self.name, "starts")
        if not self._run(self.agent._start):
            return True
        return self._steps()

    def deliver(self, event: Tuple[str, Any]) -> bool:
        """Hand the agent one event (feed news, a runner event, a signal), then let it act."""
        if not self.alive:
            return False
        if self.frozen_until is not None and self.sim.world.now < self.frozen_until:
            self.sim.world.at(self.frozen_until, lambda: self.deliver(event), f"{self.name} (frozen) news")
            return False
        if not self._run(lambda: self.agent._handle(event)):
            return True
        return self._steps()

    def signal_stop(self) -> None:
        self.sim.world.note(self.name, "gets SIGTERM")
        self.sim.world.after(0.0, lambda: self.deliver(("signal", signal.SIGTERM)), f"{self.name} signal")

    def kill(self, why: str) -> None:
        self.sim.world.note(self.name, f"killed ({why})")
        self._died()

    def freeze(self, seconds: float) -> None:
        self.sim.world.note(self.name, f"frozen for {seconds:.2f} s")
        self.frozen_until = self.sim.world.now + seconds
        self._schedule_wake(self.frozen_until)

    def thaw(self) -> None:
        if self.frozen_until is not None:
            self.frozen_until = min(self.frozen_until, self.sim.world.now)
            self._schedule_wake(self.sim.world.now)

    # -- the agent's loop, as its run() would drive it -------------------------------

    def _steps(self) -> bool:
        def steps() -> None:
            for _ in range(_STEPS_PER_WAKE):
                if not self.agent._step():
                    break

        if self._run(steps):
            now = self.sim.world.now
            wake = self.site.clock.true_time_of(self.agent._next_wake())
            self._schedule_wake(max(wake, now + _SPIN_S), spin=wake <= now)
        return True

    def _schedule_wake(self, moment: float, spin: bool = False) -> None:
        self._timer_generation += 1
        generation = self._timer_generation
        self.sim.world.at(moment, lambda: self._on_timer(generation, spin), f"{self.name} timer")

    def _on_timer(self, generation: int, spin: bool) -> bool:
        if not self.alive or generation != self._timer_generation:
            return False
        if self.frozen_until is not None and self.sim.world.now < self.frozen_until:
            self._schedule_wake(self.frozen_until)
            return False
        self._steps()
        return not spin

    def _run(self, action: Any) -> bool:
        """Run part of the agent; False when the agent is gone after it (exited, crashed or failed)."""
        if not self.alive:
            return False
        self.sim.current = self
        try:
            action()
            return self.alive
        except agent_module._Stop:
            self._exited(self.agent._exit_code(), "left")
        except AgentCrash:
            pass
        except EnqueueError as exc:
            # What 'enqueue run' would report with one line and an exit code; the site loop starts it again.
            self._exited(3, f"failed: {exc}")
        except Exception as exc:  # noqa: BLE001 - an agent bug is a finding
            self.sim.violation(f"[agent-error] agent {self.name} raised {type(exc).__name__}: {exc}\n{traceback.format_exc()}")
            self._exited(1, "raised")
        finally:
            self.sim.current = None
        return False

    # -- how a run ends --------------------------------------------------------------

    def _exited(self, code: int, how: str) -> None:
        self.sim.world.note(self.name, f"exits ({how}, exit code {code})")
        self.alive = False
        self.exit_code = code
        self.feed.stop()
        for runner in self.runners:
            runner.close()
        self.sim.process_ended(self)

    def _died(self) -> None:
        if not self.alive:
            return
        self.alive = False
        self.feed.stop()
        for runner in self.runners:
            runner.agent_gone()
        self.sim.process_ended(self)

    def _make_runner(self, kill_grace_s: float, on_event: Any) -> SimRunner:
        runner = SimRunner(self.sim.world, self.sim.ledger, self.site.clock, self.site.name, self.name,
                           kill_grace_s, deliver=lambda ev: self.deliver(("runner", ev)))
        self.runners.append(runner)
        return runner
