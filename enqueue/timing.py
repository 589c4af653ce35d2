"""The protocol's durations and the rules that tie them together (docs/PROTOCOL.md §4).

``Timing`` is checked on construction, so a ``Timing`` that exists keeps
the lease arithmetic sound: one late heartbeat neither makes a site stale
nor stops a running command, and a fenced command is dead a heartbeat
before the leader may give its turn away. ``fitted_heartbeat_delay_s``
finds a shorter heartbeat delay that makes a refused timing valid.

Not here: where the durations come from (``enqueue.config``), nor
anything about clocks: the rules assume clock rates within the documented
bound and say nothing when they drift further.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

from enqueue.durations import format_duration
from enqueue.errors import ConfigError

__all__ = ["DEFAULT_KILL_GRACE_S", "Timing", "max_kill_grace_s", "fitted_heartbeat_delay_s"]

DEFAULT_KILL_GRACE_S = 30.0


@dataclass(frozen=True)
class Timing:
    """The protocol's durations, in seconds, checked against each other on construction (docs/PROTOCOL.md §4).

    Invariants (``ConfigError`` otherwise):

    * every duration is finite, ``kill_grace_s >= 0`` and the others ``> 0``;
    * ``heartbeat_stale_s > 2 * heartbeat_delay_s``: one late heartbeat must
      not make a site stale, and a running site must be able to fence itself
      (``heartbeat_stale - heartbeat_delay`` after its last acknowledged beat)
      while at least one more beat could still have landed;
    * ``kill_grace_s <= (heartbeat_stale_s - 2 * heartbeat_delay_s) / 2``: a
      fenced command gets SIGTERM ``heartbeat_stale - heartbeat_delay -
      kill_grace`` after its last acknowledged beat and SIGKILL the grace
      later, one heartbeat before the leader may give the turn away, while
      the SIGTERM moment stays more than one heartbeat, by half the slack,
      after that beat, so the next on-time beat has time for its round trip.
    """

    heartbeat_delay_s: float = 600.0
    heartbeat_stale_s: float = 1800.0
    conflict_delay_s: float = 60.0
    kill_grace_s: float = DEFAULT_KILL_GRACE_S

    def __post_init__(self) -> None:
        for name in ("heartbeat_delay_s", "heartbeat_stale_s", "conflict_delay_s", "kill_grace_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ConfigError(f"{name[:-2]} must be a finite number of seconds, not {value!r}")
            if value < 0 or (value == 0 and name != "kill_grace_s"):
                raise ConfigError(f"{name[:-2]} must be more than 0" + (" or 0" if name == "kill_grace_s" else ""))
        delay, stale, grace = self.heartbeat_delay_s, self.heartbeat_stale_s, self.kill_grace_s
        if not stale > 2 * delay:
            raise ConfigError(
                f"heartbeat_stale ({format_duration(stale)}) must be more than 2 x heartbeat_delay "
                f"(2 x {format_duration(delay)}): one late heartbeat must neither make a site stale "
                f"nor make a running site stop its command"
            )
        if grace > max_kill_grace_s(delay, stale):
            raise ConfigError(
                f"kill_grace ({format_duration(grace)}) must be at most (heartbeat_stale - 2 x heartbeat_delay) / 2 "
                f"({format_duration(max_kill_grace_s(delay, stale))}): a fenced command must be dead a heartbeat "
                f"before the leader may give its turn away, and an on-time heartbeat must have time to be "
                f"acknowledged before the command is told to stop"
            )


def max_kill_grace_s(delay_s: float, stale_s: float) -> float:
    """The longest kill grace the timing allows (see ``Timing``); 0 when it allows none."""
    return max(0.0, (stale_s - 2 * delay_s) / 2)


def fitted_heartbeat_delay_s(delay_s: float, stale_s: float, kill_grace_s: Optional[float]) -> Optional[float]:
    """A heartbeat delay shorter than ``delay_s`` that gives the timing its margin, or None when none is needed or exists.

    The delay is the longest time between beats, so beating more often never
    weakens a promise: it only widens the slack ``stale - 2 x delay`` that
    ``Timing`` needs. The slack kept is the kill grace plus room for the next
    on-time beat's round trip before the SIGTERM moment; that room is the
    grace, and never less than the grace a roomy configuration gets,
    ``min(30 s, stale / 6)``, so even a grace of 0 leaves a margin.

    ``kill_grace_s`` None means "not set": the grace is then that default,
    and a timing whose slack leaves less than it (the original tool's
    ``-d 10 -s 20``, say) is fitted. A grace that is set is the user's
    choice: only a timing ``Timing`` refuses is fitted. None when nothing
    needs fitting, or when no positive delay is left (a grace of half
    ``heartbeat_stale`` or more): ``Timing`` then refuses as before.
    """
    default_grace = min(DEFAULT_KILL_GRACE_S, stale_s / 6)
    if kill_grace_s is None:
        if max_kill_grace_s(delay_s, stale_s) >= default_grace:
            return None
        grace = default_grace
    else:
        if stale_s > 2 * delay_s and kill_grace_s <= max_kill_grace_s(delay_s, stale_s):
            return None
        grace = kill_grace_s
    fitted = (stale_s - grace - max(grace, default_grace)) / 2
    while fitted > 0 and grace > max_kill_grace_s(fitted, stale_s):  # rounding must not undo the fit
        fitted = math.nextafter(fitted, 0.0)
    return fitted if 0 < fitted < delay_s else None
