"""What the leader writes: grants, revocations and the published rotation.

Rules kept (docs/PROTOCOL.md §3.4; why the silence suffices: §5.1):
* a turn is granted only when nobody holds one: the last turn is done, or
  its holder is gone;
* a *granted* turn that names no agent instance, whose holder is stale,
  left, drained away or no longer wants it, is re-granted at once: the
  holder can only start after confirming by compare-and-swap, which the
  re-grant makes fail;
* a *running* turn, and a granted one that names the instance it is for
  (which may start on the grant alone), is taken away only when its holder
  is stale (observed silence of ``heartbeat_stale``). Not when it says
  ``left`` or is drained: only silence proves the command is gone, because
  the holder's supervisor kills it ``heartbeat_delay`` before the leader may
  call it stale. The one exception: a granted turn whose very instance says,
  in a beat of its own, that it wants no turn and runs none, never started
  (the instance starts only while every beat since before the grant asked
  for a turn) and is taken back at once;
* nothing is granted while paused; a stale holder is still cleared.
Every new grant adds one to ``turn``, the fencing token.

Pure: ``plan`` maps (leader doc, registry, heartbeats, staleness verdicts) to
the new leader doc or None. The agent re-reads the holder's heartbeat before
it writes a plan that takes away a turn that may run, or a grant that names
its agent (``Plan.reread_first``).
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
    revoked_may_have_run: bool = False
    """The turn taken away was running, or granted to an instance that may have started it: recorded revoked, not
    "not started"."""
    reread_first: bool = False
    """The plan rests on the holder's heartbeat as the view holds it (its silence, or a grantee's word that it wants
    no turn): the agent reads that heartbeat again right before the write, and a new revision cancels the plan."""

    @property
    def granted(self) -> str | None:
        """The site this plan grants a new turn to, if any."""
        return self.doc.running if self.doc.status == GRANTED and self.reason.startswith("grant") else None


def grant(doc: LeaderDoc, site: str, rotation: tuple[str, ...], me: str, now_text: str,
          grantee: str | None = None) -> LeaderDoc:
    """``doc`` with the next turn granted to ``site``, for its agent ``grantee`` when the granter knows it.

    A grant that names the instance lets that agent start without a confirm
    (docs/PROTOCOL.md §3.5.7); one that names none must be confirmed.
    """
    return replace(
        doc,
        turn=doc.turn + 1,
        running=site,
        status=GRANTED,
        grantee=grantee,
        rotation=rotation,
        skip_turn=None,
        granted_at=now_text,
        started_at=None,
        updated_by=me,
        updated_at=now_text,
    )


def _holder_lost_grant(doc: LeaderDoc, registry, heartbeats, stale) -> str | None:
    """Why a grant that names no instance goes back at once (its holder must confirm it first), or None."""
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


def _grantee_declined(doc: LeaderDoc, hb: Heartbeat | None) -> str | None:
    """Why a grant that names its instance goes back at once: that instance says it wants no turn and runs none."""
    if hb is None or hb.instance != doc.grantee or hb.wants_turn or hb.turn == doc.turn:
        return None
    return "left" if hb.state == LEFT else "no longer wants a turn"


def _holder_lost(doc: LeaderDoc, registry, heartbeats, stale) -> tuple[str | None, bool]:
    """Why the active turn goes back now (None: it stays), and whether a command may have run under it."""
    holder = doc.running
    if doc.status == GRANTED and doc.grantee is None:
        return _holder_lost_grant(doc, registry, heartbeats, stale), False
    if doc.status == GRANTED:
        declined = _grantee_declined(doc, heartbeats.get(holder))
        if declined is not None:
            return declined, False
    # No verdict is no observed silence: a turn that may run is never taken away on a missing entry (e.g. a
    # holder an admin removed from the registry, which a leader watching the registry has no verdict for).
    return ("is stale" if stale.get(holder, False) else None), True


def grantee_of(heartbeats: Mapping[str, Heartbeat | None], site: str) -> str | None:
    """The agent instance a grant to ``site`` names: the one whose heartbeat I hold (None: I hold none)."""
    hb = heartbeats.get(site)
    return hb.instance if hb is not None else None


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
        why, may_have_run = _holder_lost(doc, registry, heartbeats, stale)
        if why is not None:
            ended = replace(
                doc,
                status=DONE,
                last_exit_code=None,
                last_how=Outcome.REVOKED if may_have_run else Outcome.NOT_STARTED,
                ended_at=now_text,
                rotation=eligible,
                updated_by=me,
                updated_at=now_text,
            )
            common = dict(revoked_site=holder, revoked_turn=doc.turn, revoked_may_have_run=may_have_run,
                          reread_first=may_have_run or doc.startable_grant)
            nxt = None if doc.paused else next_after(holder, [s for s in eligible if s != holder])
            if nxt is None:
                return Plan(ended, f"took turn {doc.turn} from {holder}: it {why}", **common)
            return Plan(
                grant(ended, nxt, eligible, me, now_text, grantee_of(heartbeats, nxt)),
                f"granted {nxt} turn {doc.turn + 1} (took turn {doc.turn} from {holder}: it {why})",
                **common,
            )
        if doc.rotation != eligible:
            return Plan(replace(doc, rotation=eligible, updated_by=me, updated_at=now_text), "updated rotation")
        return None

    if not doc.paused:
        nxt = next_after(doc.running, eligible)
        if nxt is not None:
            return Plan(grant(doc, nxt, eligible, me, now_text, grantee_of(heartbeats, nxt)),
                        f"granted {nxt} turn {doc.turn + 1}")
    if doc.rotation != eligible:
        return Plan(replace(doc, rotation=eligible, updated_by=me, updated_at=now_text), "updated rotation")
    return None
