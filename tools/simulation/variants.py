"""Deliberately broken variants of the real agent, to show the simulation catches each.

Each variant is a patch to the real modules (enqueue.own_turn, enqueue.lease,
enqueue.view, enqueue.shared_docs, enqueue.agent), applied for the length of
a ``with`` block: the simulation then runs the real code with that one rule
broken. ``VARIANTS`` names each with the invariant it must trip.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, ContextManager, Dict, FrozenSet, Iterator
from unittest import mock

from enqueue import view as view_module
from enqueue.agent import Agent
from enqueue.documents import HEARTBEAT_PREFIX
from enqueue.lease import Lease
from enqueue.own_turn import OwnTurn
from enqueue.shared_docs import SharedDocs


@contextmanager
def record_after_the_ending_write() -> Iterator[None]:
    """The finishing site marks its turn done first and writes the record on its next step."""
    real_finish = OwnTurn.finish

    def finish(self: OwnTurn, *, repeat: bool) -> bool:
        self.records.write_now = self.records.pending.append  # type: ignore[method-assign]
        try:
            return real_finish(self, repeat=repeat)
        finally:
            del self.records.write_now

    with mock.patch.object(OwnTurn, "finish", finish):
        yield


@contextmanager
def lease_from_the_acknowledgement() -> Iterator[None]:
    """The command's deadline counts from when a heartbeat was acknowledged, not from when it was sent."""
    real_beat = Agent._beat

    def beat(self: Agent) -> None:
        real_beat(self)
        self.lease.last_ack_sent = self.clock.monotonic()
        self.own.extend(self.lease.deadline())

    with mock.patch.object(Agent, "_beat", beat):
        yield


@contextmanager
def revoke_before_the_lease_ran_out() -> Iterator[None]:
    """The leader takes a running turn away after half of heartbeat_stale of silence, inside the holder's lease."""
    def silence(own_stale_s: float, holder: object) -> float:
        return own_stale_s / 2

    with mock.patch.object(view_module, "silence_to_revoke_s", silence):
        yield


@contextmanager
def revoke_on_a_lagging_view() -> Iterator[None]:
    """The leader (and a campaigner) act on the heartbeats they hold, without reading them again first."""
    real_reread = SharedDocs.reread

    def reread(self: SharedDocs, doc_id: str) -> None:
        if not doc_id.startswith(HEARTBEAT_PREFIX):
            real_reread(self, doc_id)

    with mock.patch.object(SharedDocs, "reread", reread):
        yield


@contextmanager
def orphan_ended_at_once() -> Iterator[None]:
    """A restarted agent ends the turn its predecessor left at once, without waiting out that lease."""
    with mock.patch.object(Lease, "orphans_safe", lambda self, now: True):
        yield


@contextmanager
def fresh_leader_doc_at_start() -> Iterator[None]:
    """An agent that starts and finds no leader doc creates a fresh one at turn 0."""
    yield


@dataclass(frozen=True)
class Variant:
    patch: Callable[[], ContextManager[None]]
    trips: FrozenSet[str]  # the kinds of violation that show it


VARIANTS: Dict[str, Variant] = {
    "record-after-the-ending-write": Variant(record_after_the_ending_write, frozenset({"record"})),
    "fresh-leader-doc-at-start": Variant(fresh_leader_doc_at_start, frozenset({"token", "overlap"})),
    "lease-from-the-acknowledgement": Variant(lease_from_the_acknowledgement, frozenset({"overlap"})),
    "revoke-before-the-lease-ran-out": Variant(revoke_before_the_lease_ran_out, frozenset({"overlap"})),
    "revoke-on-a-lagging-view": Variant(revoke_on_a_lagging_view, frozenset({"overlap"})),
    "orphan-ended-at-once": Variant(orphan_ended_at_once, frozenset({"overlap"})),
}
