"""Leadership: when to campaign, how to claim, how to step down (docs/PROTOCOL.md §3.3).

The leader doc names the leader and a ``leader_term`` that grows by one on
every change of leader. Claiming is a compare-and-swap on the leader doc: the
first write wins, everyone else gets a 409, waits ``conflict_delay`` (with
jitter, so they do not collide again) and re-reads.

What leadership does *not* protect: the command. Only the turn fields of the
leader doc, changed by compare-and-swap, decide who may run. Two sites that
both believe they lead cannot both grant, because each grant is a CAS on the
same document; a deposed leader's next write simply fails with 409.

Pure functions; the agent does the I/O and re-reads the leader's heartbeat
before it acts on "stale" (a cached view may lag).
"""

from __future__ import annotations

import random
from dataclasses import replace
from typing import Mapping

from enqueue.documents import LEFT, Heartbeat, LeaderDoc


def vacancy(doc: LeaderDoc, heartbeats: Mapping[str, Heartbeat | None], stale: Mapping[str, bool]) -> str | None:
    """Why the leadership is open, or None while a live leader holds it.

    Open when nobody leads, when the leader's heartbeat says it left, or when
    the leader's heartbeat has not been seen to change for ``heartbeat_stale``
    (a leader this observer never heard of counts as stale only after it has
    been watched that long: ``stale`` must come from ``Liveness``).
    """
    if doc.leader is None:
        return "no leader"
    hb = heartbeats.get(doc.leader)
    if hb is not None and hb.state == LEFT:
        return f"leader {doc.leader} left"
    if stale.get(doc.leader, False):
        return f"leader {doc.leader} is stale"
    return None


def claim(doc: LeaderDoc, me: str, now_text: str) -> LeaderDoc:
    """The leader doc with ``me`` as leader in the next term."""
    return replace(doc, leader=me, leader_term=doc.leader_term + 1, updated_by=me, updated_at=now_text)


def resign(doc: LeaderDoc, me: str, now_text: str) -> LeaderDoc | None:
    """The leader doc with nobody leading, if ``me`` leads; None otherwise (nothing to write)."""
    if doc.leader != me:
        return None
    return replace(doc, leader=None, updated_by=me, updated_at=now_text)


def conflict_wait(conflict_delay_s: float, rng: random.Random) -> float:
    """How long a site that lost an election waits before it may campaign again: 0.5–1.5 × the delay."""
    return conflict_delay_s * rng.uniform(0.5, 1.5)
