"""Observed liveness: a site is alive while its heartbeat doc keeps changing.

Staleness is measured on *this* host's monotonic clock, from the moment this
observer first saw the current revision of a site's heartbeat doc (the way
Kubernetes leader election keeps an observed time). The wall-clock time
written inside a heartbeat is never read here: other hosts' clocks may be
hours off and that must change nothing.

Consequences, on purpose:
* a site seen for the first time gets the benefit of the doubt for one full
  ``stale_s``: a freshly started observer cannot declare anyone dead sooner;
* observing late only delays a verdict of "stale", never hastens it, so an
  observer that is slow to read is on the safe side.

Not guaranteed: that clocks run at the same *rate* on every host. The
protocol's margins (a heartbeat period) absorb small rate differences only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

from enqueue.observed import Revisions
from enqueue.rotation import successor

if TYPE_CHECKING:
    from enqueue.documents import Heartbeat, LeaderDoc


class Liveness:
    """Tracks, per site, when its heartbeat revision was last seen to change."""

    def __init__(self, stale_s: float) -> None:
        if stale_s <= 0:
            raise ValueError("stale_s must be positive")
        self.stale_s = stale_s
        self._seen = Revisions()

    def observe(self, site: str, rev: str | None, now: float) -> bool:
        """Record that ``site``'s heartbeat has revision ``rev`` at ``now``.

        Returns True when this is a change (or the first sighting). A missing
        document is observed as revision ``None``: it never looks alive for
        longer than one ``stale_s`` after it was first noticed missing.
        """
        return self._seen.observe(site, rev, now)

    def age(self, site: str, now: float) -> float | None:
        """Seconds since ``site``'s heartbeat last changed, as observed here; None if never observed."""
        since = self._seen.since(site)
        return None if since is None else max(0.0, now - since)

    def is_stale(self, site: str, now: float, stale_s: float | None = None) -> bool:
        """No change observed for ``stale_s`` (the tracker's own unless given).

        A site never observed is not (yet) stale.
        """
        since = self._seen.since(site)
        return since is not None and now - since >= (self.stale_s if stale_s is None else stale_s)

    def stale_at(self, site: str, stale_s: float | None = None) -> float | None:
        """The monotonic moment ``site`` turns stale unless it beats; None if never observed."""
        since = self._seen.since(site)
        return None if since is None else since + (self.stale_s if stale_s is None else stale_s)

    def rev(self, site: str) -> str | None:
        """The last revision observed for ``site``."""
        return self._seen.rev(site)


def followed_sites(leader: LeaderDoc | None, registered: Iterable[str], me: str) -> set[str]:
    """Whose heartbeats a site follows on the changes feed: every site's while it leads, else its own and the leader's.

    The leader grants and revokes, so it must observe every site. Any other
    site decides only whether to campaign (the leader's liveness) and whether
    its own turn stands (the leader doc). Following two heartbeats instead of
    every one keeps each site's share of the feed constant as sites are
    added: most heartbeats go to the leader alone. The set changes only with
    the leader, so the feed is not re-opened at every turn. A site followed
    for the first time gets the benefit of the doubt (``Liveness``), so
    following late is safe, only slower to judge.
    """
    sites = {me}
    if leader is not None:
        if leader.leader:
            sites.add(leader.leader)
        if leader.leader == me:
            sites.update(registered)
    return sites


def read_sites(leader: LeaderDoc | None, registered: Iterable[str], me: str) -> set[str]:
    """Whose heartbeats a site reads at every heartbeat: those it follows, and the turn holder's.

    And my successor's in the published rotation, so that the grant I pass
    on as I finish can name the agent instance it is for. Reading the
    holder's heartbeat once per heartbeat (observing at most one
    heartbeat late, the safe side) means that, should the leader and the
    holder fail together, the next leader already knows how long the holder
    has been silent, without re-opening the feed at every turn.
    """
    sites = followed_sites(leader, registered, me)
    if leader is not None and leader.running:
        sites.add(leader.running)
    # My successor's too: the grant I pass on as I finish names its agent instance (§3.5.7).
    nxt = successor(me, leader.rotation, False) if leader is not None else None
    if nxt is not None:
        sites.add(nxt)
    return sites


def silence_to_revoke_s(own_stale_s: float, holder: Heartbeat | None) -> float:
    """How long a leader must observe a running holder's silence before it takes the turn away.

    Its own ``heartbeat_stale``, or the holder's announced one when that is
    longer: the holder's supervisor keeps the command alive for the holder's
    lease (its ``heartbeat_stale - heartbeat_delay`` after a beat was sent),
    so waiting the holder's ``heartbeat_stale`` leaves the holder's
    ``heartbeat_delay`` of margin, as with equal settings. A holder that
    announces nothing is taken to run with the leader's settings.
    """
    announced = holder.heartbeat_stale_s if holder is not None else None
    return own_stale_s if announced is None else max(own_stale_s, announced)
