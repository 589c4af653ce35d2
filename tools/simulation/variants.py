"""Deliberately broken variants of the real agent, to show the simulation catches each.

Each variant is a patch to the real modules (enqueue.agent, enqueue.view),
applied for the length of a ``with`` block; the simulation then runs the
real code with that one rule broken. ``VARIANTS`` maps a name to the patch
and to the fault classes that expose it.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, ContextManager, Dict, FrozenSet, Iterator
from unittest import mock

from enqueue import agent as agent_module
from enqueue import view as view_module
from enqueue.documents import HEARTBEAT_PREFIX

Agent = agent_module.Agent


@contextmanager
def record_after_the_ending_write() -> Iterator[None]:
    """The finishing site marks its turn done first and writes the record on its next step."""
    real_finish = Agent._finish

    def finish(self: Agent) -> bool:
        self._write_record = self.pending_records.append  # type: ignore[method-assign]
        try:
            return real_finish(self)
        finally:
            del self._write_record

    with mock.patch.object(Agent, "_finish", finish):
        yield


@contextmanager
def lease_from_the_acknowledgement() -> Iterator[None]:
    """The command's deadline counts from when a heartbeat was acknowledged, not from when it was sent."""
    real_beat = Agent._beat

    def beat(self: Agent) -> None:
        real_beat(self)
        self.last_ack_sent = self.clock.monotonic()
        if self.runner is not None and self.my_turn is not None:
            self.runner.extend(self._deadline())

    with mock.patch.object(Agent, "_beat", beat):
        yield


@contextmanager
def revoke_before_the_lease_ran_out() -> Iterator[None]:
    """The leader takes a running turn away after two heartbeats of silence, inside the holder's lease."""
    def silence(own_stale_s: float, holder: object) -> float:
        return own_stale_s / 2

    with mock.patch.object(view_module, "silence_to_revoke_s", silence):
        yield


@contextmanager
def revoke_on_a_lagging_view() -> Iterator[None]:
    """The leader (and a campaigner) act on the heartbeat they have, without reading it again first."""
    real_reread = Agent._reread

    def reread(self: Agent, doc_id: str) -> None:
        if not doc_id.startswith(HEARTBEAT_PREFIX):
            real_reread(self, doc_id)

    with mock.patch.object(Agent, "_reread", reread):
        yield


@contextmanager
def orphan_ended_at_once() -> Iterator[None]:
    """A restarted agent ends the turn its predecessor left at once, without waiting out that lease."""
    real = Agent._end_orphaned_turn

    def end_orphan(self: Agent, now: float) -> bool:
        self.orphans_safe_at = -math.inf
        return real(self, now)

    with mock.patch.object(Agent, "_end_orphaned_turn", end_orphan):
        yield


@contextmanager
def fresh_leader_doc_at_start() -> Iterator[None]:
    """An agent that starts and finds no leader doc creates a fresh one at turn 0 (as enqueue did)."""
    yield


@dataclass(frozen=True)
class Variant:
    patch: Callable[[], ContextManager[None]]
    exposed_by: FrozenSet[str]


VARIANTS: Dict[str, Variant] = {
    "record-after-the-ending-write": Variant(record_after_the_ending_write, frozenset({"crash"})),
    "fresh-leader-doc-at-start": Variant(fresh_leader_doc_at_start, frozenset({"delete-leader"})),
    "lease-from-the-acknowledgement": Variant(lease_from_the_acknowledgement, frozenset({"slow"})),
    "revoke-before-the-lease-ran-out": Variant(revoke_before_the_lease_ran_out, frozenset({"freeze", "partition"})),
    "revoke-on-a-lagging-view": Variant(revoke_on_a_lagging_view, frozenset({"feed-lag", "feed-miss"})),
    "orphan-ended-at-once": Variant(orphan_ended_at_once, frozenset({"kill", "crash"})),
}
