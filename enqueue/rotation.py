"""Who is next: alphabetical turns among eligible sites (docs/PROTOCOL.md §3.4, §3.8).

A site is *eligible* for a turn when it is registered, alive (not stale, not
``left``), not drained, and wants a turn (waiting, or running with --repeat;
not while ``between`` or ``not_ready``: ``enqueue.documents.wants_turn``).
The next site is the first eligible one after the last runner in
alphabetical order, wrapping around; the last runner itself comes last, so a
lone repeating site gets turn after turn.

Pure functions of their arguments; the leader computes eligibility, the
finishing site only follows the published ``rotation``.
"""

from __future__ import annotations

from typing import Iterable, Mapping

from enqueue.documents import LEFT, Heartbeat, SiteEntry


def next_after(last: str | None, eligible: Iterable[str]) -> str | None:
    """The first of ``eligible`` strictly after ``last`` alphabetically, wrapping around.

    ``last`` itself is chosen only when it is the sole eligible site.
    """
    ordered = sorted(set(eligible))
    if not ordered:
        return None
    if last is None:
        return ordered[0]
    for site in ordered:
        if site > last:
            return site
    return ordered[0]


def eligible_sites(
    registry: Mapping[str, SiteEntry],
    heartbeats: Mapping[str, Heartbeat | None],
    stale: Mapping[str, bool],
) -> tuple[str, ...]:
    """The sites that may be given a turn, sorted.

    ``stale[site]`` is the observer's verdict; a site missing from it counts
    as stale (never observed means never heard from).
    """
    out = []
    for name, entry in registry.items():
        hb = heartbeats.get(name)
        if entry.drained or hb is None or hb.state == LEFT:
            continue
        if stale.get(name, True):
            continue
        if hb.wants_turn:
            out.append(name)
    return tuple(sorted(out))


def rotation_after_finish(me: str, rotation: Iterable[str], i_repeat: bool) -> tuple[str, ...]:
    """The rotation as a finishing runner leaves it.

    The runner knows only its own intent: without --repeat it drops out of
    the rotation, with it it stays in. It never puts itself back in: if the
    leader left it out (drained, removed from the registry), that is the
    leader's decision. Everybody else stays as the leader published them.
    """
    candidates = set(rotation)
    if not i_repeat:
        candidates.discard(me)
    return tuple(sorted(candidates))


def successor(me: str, rotation: Iterable[str], i_repeat: bool) -> str | None:
    """The site a finishing runner passes the turn to (itself, when alone and repeating)."""
    return next_after(me, rotation_after_finish(me, rotation, i_repeat))
