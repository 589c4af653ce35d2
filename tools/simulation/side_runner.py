"""Side commands (``--between``, ``--ready``) in the simulation: a fake ``SideRunner`` and the sites' plans.

With the fault class ``between`` on, each site draws, once, whether its
agents run a between command (and how often it runs again while waiting)
and a readiness check. Every side command lasts a random time; a readiness
check fails now and then while the faults last (never once they healed, so
progress can come back); ``stop`` ends one at once, as SIGTERM would.

The side command is never exclusive, but it runs only outside the agent's
own turns: every side command's life is checked against the ledger, and one
that overlaps a command of the same agent is a violation (``[side]``).
"""

from __future__ import annotations

import random
from typing import Callable, Optional

from enqueue.events import Event, SideCommandEnded
from enqueue.side_steps import READY_COMMAND, SidePlan

from tools.simulation.runner import Ledger
from tools.simulation.world import World

_NOT_READY_RATE = 0.3


def draw_plan(rng: random.Random) -> Optional[SidePlan]:
    """A site's side commands: none, between (maybe with an interval), a readiness check, or both."""
    between = rng.random() < 0.6
    ready = rng.random() < 0.4
    if not between and not ready:
        return None
    every = rng.choice([None, rng.uniform(0.5, 3.0)]) if between else None
    return SidePlan(between="simulated-monitoring" if between else None, between_every_s=every,
                    ready="simulated-ready-check" if ready else None)


class SimSideRunner:
    """One agent instance's side commands, on the world's true time."""

    def __init__(self, world: World, ledger: Ledger, instance: str, deliver: Callable[[Event], bool],
                 count: Callable[[], None], healed: Callable[[], bool], report: Callable[[str], None]) -> None:
        self.world = world
        self.ledger = ledger
        self.instance = instance
        self.deliver = deliver
        self.count = count
        self.healed = healed
        self.report = report
        self._generation = 0
        self._running: Optional[tuple] = None  # (generation, name, started)

    def start(self, name: str, command_line: str, env: dict) -> None:
        assert self._running is None, "one side command at a time"
        self._generation += 1
        self._running = (self._generation, name, self.world.now)
        self.count()
        failing = name == READY_COMMAND and not self.healed() and self.world.rng.random() < _NOT_READY_RATE
        code, line = (1, "simulated: not ready") if failing else (self.world.rng.choice([0, 0, 3]), None)
        generation = self._generation
        self.world.after(self.world.rng.uniform(0.01, 1.0), lambda: self._end(generation, code, line),
                         f"{self.instance} {name} ends")
        self.world.note(self.instance, f"starts its {name} command")

    def stop(self) -> None:
        if self._running is not None:
            generation = self._running[0]
            self.world.after(0.01, lambda: self._end(generation, 143, None), f"{self.instance} side stopped")

    def _end(self, generation: int, code: int, line: Optional[str]) -> bool:
        if self._running is None or self._running[0] != generation:
            return False
        _, name, started = self._running
        self._running = None
        for cmd in self.ledger.commands:
            if cmd.instance == self.instance and cmd.start < self.world.now and \
                    (cmd.end is None or cmd.end > started):
                self.report(f"[side] {self.instance}'s {name} command ran from {started:.3f} to "
                                       f"{self.world.now:.3f}, during its {cmd.describe()}")
        return self.deliver(SideCommandEnded(name, code, line, self.world.now - started))
