"""Durations as people write them, and as people read them.

The original tool spoke minutes, so a bare number is a number of MINUTES
(fractions allowed: ``0.05`` is 3 seconds). A suffix picks another unit:
``30s``, ``2m``, ``1h``, ``1.5h``. Internally every duration is float seconds.

Invariants: ``parse_duration`` returns a finite float >= 0 or raises
``ValueError`` whose text is a short reason fit to follow a setting's name;
the formatters never raise for finite input.
"""

from __future__ import annotations

import math
import re

__all__ = ["parse_duration", "format_duration", "format_age", "UNIT_SECONDS"]

#: Seconds per unit suffix; a bare number uses ``"m"``.
UNIT_SECONDS = {"s": 1.0, "m": 60.0, "h": 3600.0}

_DURATION = re.compile(r"(?P<number>\d+(?:\.\d*)?|\.\d+)\s*(?P<unit>[smhSMH]?)")


def parse_duration(text: str) -> float:
    """Parse ``text`` into seconds: a bare number is minutes; ``s``/``m``/``h`` suffixes.

    >>> parse_duration("10"), parse_duration("0.05"), parse_duration("30s"), parse_duration("1.5h")
    (600.0, 3.0, 30.0, 5400.0)

    Raises ``ValueError`` for empty text, negative numbers and anything else
    that is not a number with an optional unit.
    """
    if not isinstance(text, str):
        raise ValueError(f"expected text, got {type(text).__name__}")
    stripped = text.strip()
    if not stripped:
        raise ValueError("empty; expected minutes or a number with s, m or h")
    shown = _shown(stripped)
    if stripped.startswith("-"):
        raise ValueError(f"{shown} is negative")
    match = _DURATION.fullmatch(stripped.lstrip("+"))
    if match is None:
        raise ValueError(f"{shown} is not a duration; expected minutes (10, 0.5) or 30s, 2m, 1h")
    seconds = float(match.group("number")) * UNIT_SECONDS[(match.group("unit") or "m").lower()]
    if not math.isfinite(seconds):
        raise ValueError(f"{shown} is too large")
    return seconds


def _shown(text: str, limit: int = 32) -> str:
    """Quote ``text`` for an error message, shortened so one bad value cannot flood a line."""
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")


def format_duration(seconds: float) -> str:
    """Render a duration for people: ``"3 s"``, ``"2 min 5 s"``, ``"1 h 2 min"``.

    Below 10 s a fraction is kept to one decimal (``"0.5 s"``); from one hour
    up, seconds are dropped. Negative durations get a leading ``-``.
    """
    if not math.isfinite(seconds):
        return str(seconds)
    sign = "-" if seconds < 0 else ""
    seconds = abs(seconds)
    if seconds < 10 and seconds != int(seconds):
        text = f"{seconds:.1f}".rstrip("0").rstrip(".")
        return f"{sign}{text} s"
    total = int(round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        parts = [f"{hours} h"] + ([f"{minutes} min"] if minutes else [])
    elif minutes:
        parts = [f"{minutes} min"] + ([f"{secs} s"] if secs else [])
    else:
        parts = [f"{secs} s"]
    return sign + " ".join(parts)


def format_age(seconds: float) -> str:
    """Render how long ago something happened: ``"12 s ago"``.

    A negative age (a timestamp from a clock that runs ahead of ours) reads
    ``"in 12 s"`` rather than pretending it is in the past.
    """
    if seconds < 0:
        return f"in {format_duration(-seconds)}"
    return f"{format_duration(seconds)} ago"
