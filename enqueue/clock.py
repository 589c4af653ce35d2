"""Time, the only place that reads it.

Two clocks with different jobs:

* ``monotonic()`` measures durations on this host. Every timing decision
  (staleness, fencing deadlines, waits) uses it. It is never compared with
  another host's clock.
* ``now()`` is the UTC wall clock, written into documents for humans. No
  decision that could let two sites run at once rests on it.

``SystemClock`` can carry a wall-clock offset so tests can pretend a host's
clock is hours off; ``FakeClock`` is advanced by hand in unit tests.
"""

from __future__ import annotations

import datetime as _dt
import time
from typing import Protocol

UTC = _dt.timezone.utc


class Clock(Protocol):
    """What the rest of enqueue needs from time."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back; only differences mean anything."""

    def now(self) -> _dt.datetime:
        """The current UTC wall time, timezone-aware."""


class SystemClock:
    """The real clocks; ``wall_offset_s`` shifts only the wall clock."""

    def __init__(self, wall_offset_s: float = 0.0) -> None:
        self.wall_offset_s = wall_offset_s

    def monotonic(self) -> float:
        return time.monotonic()

    def now(self) -> _dt.datetime:
        return _dt.datetime.now(UTC) + _dt.timedelta(seconds=self.wall_offset_s)


class FakeClock:
    """A clock that moves only when told to; for unit tests."""

    def __init__(self, start: _dt.datetime | None = None, monotonic_start: float = 1000.0) -> None:
        self._wall = start or _dt.datetime(2026, 1, 1, tzinfo=UTC)
        self._mono = monotonic_start

    def monotonic(self) -> float:
        return self._mono

    def now(self) -> _dt.datetime:
        return self._wall

    def advance(self, seconds: float) -> None:
        """Move both clocks forward by ``seconds``."""
        if seconds < 0:
            raise ValueError("a clock does not go back")
        self._mono += seconds
        self._wall += _dt.timedelta(seconds=seconds)


def format_time(moment: _dt.datetime, time_format: str) -> str:
    """Render a UTC moment for a document, in the configured format."""
    return moment.astimezone(UTC).strftime(time_format)
