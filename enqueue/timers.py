"""Named deadlines on this host's monotonic clock; the next wake-up is the earliest.

The agent keeps every moment it must act at in one ``Timers``: the next
heartbeat, the end of a retry pause, when it may campaign again, when an
orphaned turn may be ended, when a stopping agent gives up its last writes,
when a broken leader doc may be repaired, when a followed site turns stale.

Guarantee: ``next_wake(now)`` is the earliest set moment still ahead of
``now``, or ``now + horizon`` when none is; a moment already passed never
wakes anyone again (whoever set it acts on it at the next step or sets it
anew), so a forgotten timer cannot spin the loop.
"""

from __future__ import annotations

import heapq
from typing import Iterable, Mapping


class Timers:
    """Named monotonic moments."""

    def __init__(self) -> None:
        self._at: dict[str, float] = {}

    def set(self, name: str, at: float | None) -> None:
        """Set (or with None, clear) the moment called ``name``."""
        if at is None:
            self._at.pop(name, None)
        else:
            self._at[name] = at

    def get(self, name: str) -> float | None:
        """The moment called ``name``; None when not set."""
        return self._at.get(name)

    def due(self, name: str, now: float) -> bool:
        """``name`` is set and its moment has come."""
        at = self._at.get(name)
        return at is not None and now >= at

    def pending(self, name: str, now: float) -> bool:
        """``name`` is set and its moment is still ahead."""
        at = self._at.get(name)
        return at is not None and now < at

    def replace_group(self, prefix: str, moments: Mapping[str, float | None]) -> None:
        """Make the timers named ``prefix + key`` exactly ``moments`` (None values left out)."""
        for name in [n for n in self._at if n.startswith(prefix)]:
            del self._at[name]
        for key, at in moments.items():
            if at is not None:
                self._at[prefix + key] = at

    def items(self) -> Iterable[tuple[str, float]]:
        """Every set timer, as (name, moment)."""
        return sorted(self._at.items(), key=lambda item: item[1])

    def next_wake(self, now: float, horizon: float) -> float:
        """The earliest moment ahead of ``now``, at the latest ``now + horizon``."""
        ahead = [at for at in self._at.values() if at > now]
        return min(ahead + [now + horizon])


class Moments:
    """One moment per key, kept in a heap: setting one costs O(log n), finding the next one ahead amortised O(log n).

    For many keys that change one at a time (a leader's stale timer per
    followed site, moved at each of their heartbeats), where rebuilding a
    ``Timers`` group at every wake-up would cost O(n). ``next_after(now)``
    keeps the ``Timers`` rule: the earliest moment still ahead of ``now``; a
    moment already passed never comes back unless it is set anew to another
    value. The ``now`` it is asked at never goes back (a monotonic clock).
    """

    def __init__(self) -> None:
        self._at: dict[str, float] = {}
        self._heap: list[tuple[float, str]] = []

    def set(self, key: str, at: float | None) -> None:
        """Set (or with None, clear) ``key``'s moment."""
        if at is None:
            self._at.pop(key, None)
            return
        if self._at.get(key) == at:
            return
        self._at[key] = at
        heapq.heappush(self._heap, (at, key))
        if len(self._heap) > 2 * len(self._at) + 64:
            self._heap = [(at, key) for key, at in self._at.items()]
            heapq.heapify(self._heap)

    def replace(self, moments: Mapping[str, float | None]) -> None:
        """Make the moments exactly ``moments`` (None values left out)."""
        self._at = {key: at for key, at in moments.items() if at is not None}
        self._heap = [(at, key) for key, at in self._at.items()]
        heapq.heapify(self._heap)

    def get(self, key: str) -> float | None:
        return self._at.get(key)

    def next_after(self, now: float) -> float | None:
        """The earliest moment ahead of ``now``; None when there is none."""
        heap = self._heap
        while heap:
            at, key = heap[0]
            if at > now and self._at.get(key) == at:
                return at
            heapq.heappop(heap)
        return None
