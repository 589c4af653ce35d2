"""What the leader writes: grants, revocations and the published rotation.

Rules kept (DESIGN §3.4, §3.6):
* a turn is granted only when nobody holds one: the last turn is done, or
  its holder is gone;
* a *granted* turn whose holder is stale, left, drained away or no longer
  wants it is re-granted at once: the holder can only start after confirming
  by compare-and-swap, which the re-grant makes fail;
* a *running* turn is taken away only when its holder is stale (observed
  silence of ``heartbeat_stale``). Not when it says ``left`` or is drained:
  only silence proves the command is gone, because the holder's supervisor
  kills it ``heartbeat_delay`` before the leader may call it stale;
* nothing is granted while paused; a stale holder is still cleared.
Every new grant adds one to ``turn``, the fencing token.

Pure: ``plan`` maps (leader doc, registry, heartbeats, staleness verdicts) to
the new leader doc or None. The agent re-reads the holder's heartbeat before
it writes a plan that revokes a running turn.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Mapping

from enqueue.documents import DONE, GRANTED, LEFT, RUNNING, Heartbeat, LeaderDoc, SiteEntry
from enqueue.outcomes import Outcome
from enqueue.rotation import eligible_sites, next_after


@dataclass(frozen=True)
class Plan:
    """A change the leader wants to make to the leader doc, and why."""

    doc: LeaderDoc
    reason: str
    revoked_site: str | None = None
    revoked_turn: int | None = None
    revoked_running: bool = False

    @property
    def granted(self) -> str | None:
        """The site this plan grants a new turn to, if any."""
        return self.doc.running if self.doc.status == GRANTED and self.reason.startswith("grant") else None


def grant(doc: LeaderDoc, site: str, rotation: tuple[str, ...], me: str, now_text: str) -> LeaderDoc:
    """``doc`` with the next turn granted to ``site``."""
    return replace(
        doc,
        turn=doc.turn + 1,
        running=site,
        status=GRANTED,
        rotation=rotation,
        skip_turn=None,
        granted_at=now_text,
        started_at=None,
        updated_by=me,
        updated_at=now_text,
    )


def _holder_lost_grant(doc: LeaderDoc, registry, heartbeats, stale) -> str | None:
    site = doc.running
    hb = heartbeats.get(site)
    entry = registry.get(site)
    if stale.get(site, True):
        return "is stale"
    if hb is None or hb.state == LEFT:
        return "left"
    if entry is None:
        return "is not registered"
    if entry.drained:
        return "is drained"
    if not hb.wants_turn:
        return "no longer wants a turn"
    return None


def plan(
    doc: LeaderDoc,
    registry: Mapping[str, SiteEntry],
    heartbeats: Mapping[str, Heartbeat | None],
    stale: Mapping[str, bool],
    me: str,
    now_text: str,
) -> Plan | None:
    """The leader's next write to the leader doc, or None when it is as it should be."""
    eligible = eligible_sites(registry, heartbeats, stale)

    if doc.turn_active:
        holder = doc.running
        if doc.status == GRANTED:
            why = _holder_lost_grant(doc, registry, heartbeats, stale)
        else:
            # No verdict is no observed silence: a running turn is never taken
            # away on a missing entry (e.g. a holder an admin removed from the
            # registry, which a leader watching the registry has no verdict for).
            why = "is stale" if stale.get(holder, False) else None
        if why is not None:
            ended = replace(
                doc,
                status=DONE,
                last_exit_code=None,
                last_how=Outcome.REVOKED if doc.status == RUNNING else Outcome.NOT_STARTED,
                ended_at=now_text,
                rotation=eligible,
                updated_by=me,
                updated_at=now_text,
            )
            common = dict(revoked_site=holder, revoked_turn=doc.turn, revoked_running=doc.status == RUNNING)
            nxt = None if doc.paused else next_after(holder, [s for s in eligible if s != holder])
            if nxt is None:
                return Plan(ended, f"took turn {doc.turn} from {holder}: it {why}", **common)
            return Plan(
                grant(ended, nxt, eligible, me, now_text),
                f"granted {nxt} turn {doc.turn + 1} (took turn {doc.turn} from {holder}: it {why})",
                **common,
            )
        if doc.rotation != eligible:
            return Plan(replace(doc, rotation=eligible, updated_by=me, updated_at=now_text), "updated rotation")
        return None

    if not doc.paused:
        nxt = next_after(doc.running, eligible)
        if nxt is not None:
            return Plan(grant(doc, nxt, eligible, me, now_text), f"granted {nxt} turn {doc.turn + 1}")
    if doc.rotation != eligible:
        return Plan(replace(doc, rotation=eligible, updated_by=me, updated_at=now_text), "updated rotation")
    return None
