"""True simulated time, the one random generator, the event queue and the trace.

Everything that happens in a simulation is an event at a moment of true
time, taken from one queue in (time, order of scheduling) order; every choice
comes from one ``random.Random(seed)``. So a seed replays exactly. True time
only moves forward: it jumps to the next event, or on within a step when a
slow reply holds the caller (``advance``); an event whose moment has passed
meanwhile runs at once, late, as on a loaded machine.
"""

from __future__ import annotations

import datetime as _dt
import heapq
import random
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Deque, List, Tuple

TRACE_LINES = 400


@dataclass(order=True)
class _Scheduled:
    at: float
    order: int
    action: Callable[[], object] = field(compare=False)
    label: str = field(compare=False, default="")


class World:
    """The simulation's time, randomness, event queue and trace."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.now = 0.0
        self._queue: List[_Scheduled] = []
        self._order = 0
        self.trace: Deque[str] = deque(maxlen=TRACE_LINES)
        self.steps = 0
        # Who makes the store call in progress (an agent instance, or an admin): for the ledger.
        self.writer: str | None = None

    def at(self, moment: float, action: Callable[[], object], label: str = "") -> None:
        """Run ``action`` at true time ``moment`` (at once, late, if that has passed)."""
        self._order += 1
        heapq.heappush(self._queue, _Scheduled(moment, self._order, action, label))

    def after(self, delay: float, action: Callable[[], object], label: str = "") -> None:
        self.at(self.now + max(0.0, delay), action, label)

    def advance(self, seconds: float) -> None:
        """Let true time pass inside a step (a slow reply)."""
        self.now += max(0.0, seconds)

    def step(self) -> bool:
        """Run the next event; False when there is none. An action that returns False did nothing
        (a timer that was moved, news for an agent that is gone) and is not counted as a step."""
        if not self._queue:
            return False
        item = heapq.heappop(self._queue)
        self.now = max(self.now, item.at)
        if item.action() is not False:
            self.steps += 1
        return True

    def note(self, who: str, text: str) -> None:
        """One line of the readable trace."""
        self.trace.append(f"{self.now:9.3f}  {who:<10} {text}")

    def pending(self) -> List[Tuple[float, str]]:
        return sorted((s.at, s.label) for s in self._queue)


class SiteClock:
    """One host's clocks over the world's true time: a rate near 1 and an arbitrary offset.

    ``monotonic`` runs at ``rate`` seconds per true second from an arbitrary
    origin; ``now`` is the wall clock (hours off, if the offset says so).
    Both are what the site's agent and its supervisor read.
    """

    def __init__(self, world: World, rate: float, mono_origin: float, wall_offset_s: float) -> None:
        self.world = world
        self.rate = rate
        self.mono_origin = mono_origin
        self._epoch = _dt.datetime(2026, 1, 1, tzinfo=_dt.timezone.utc) + _dt.timedelta(seconds=wall_offset_s)

    def monotonic(self) -> float:
        return self.mono_origin + self.rate * self.world.now

    def now(self) -> _dt.datetime:
        return self._epoch + _dt.timedelta(seconds=self.rate * self.world.now)

    def wall_at(self, true_time: float) -> _dt.datetime:
        return self._epoch + _dt.timedelta(seconds=self.rate * true_time)

    def true_time_of(self, local: float) -> float:
        """The true moment at which this host's monotonic clock reads ``local``."""
        return (local - self.mono_origin) / self.rate
