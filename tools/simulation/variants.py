"""Deliberately broken variants of the real agent, to show the simulation catches each.

Each variant is a patch to the real modules (enqueue.own_turn, enqueue.lease,
enqueue.view, enqueue.shared_docs, enqueue.leadership, enqueue.records, enqueue.side_duties,
enqueue.fenced_turn: the supervisor's deadline arithmetic, which the simulated
runner uses; enqueue.admin_rebuild: the admin's ``enqueue repair``), applied for the length of
a ``with`` block: the simulation then runs the real code with that one rule
broken. ``VARIANTS`` names each with the invariant it must trip.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Callable, ContextManager, Dict, FrozenSet, Iterator, Optional
from unittest import mock

from enqueue import leadership as leadership_module
from enqueue import records as records_module
from enqueue import repair as repair_module
from enqueue import scheduler as scheduler_module
from enqueue import turns as turns_module
from enqueue import view as view_module
from enqueue.admin_rebuild import AdminRebuild
from enqueue.documents import GRANTED, HEARTBEAT_PREFIX, LeaderDoc
from enqueue.fenced_turn import FencedTurn
from enqueue.lease import Lease
from enqueue.own_turn import OwnTurn
from enqueue.shared_docs import SharedDocs
from enqueue.side_duties import SideDuties


@contextmanager
def end_a_turn_without_carrying_its_record() -> Iterator[None]:
    """The finishing site marks its turn done without carrying the record in that write; it stores it after."""
    real_finish = turns_module.finish

    def finish(doc: LeaderDoc, *args: object, **options: object) -> tuple[LeaderDoc, Optional[str]]:
        new, nxt = real_finish(doc, *args, **options)  # type: ignore[arg-type]
        return replace(new, last_record=doc.last_record), nxt

    with mock.patch.object(turns_module, "finish", finish):
        yield


@contextmanager
def replace_a_carried_record_before_it_is_stored() -> Iterator[None]:
    """A finishing write replaces the record the leader doc carries without making sure it is stored first."""
    def store_carried(self: records_module.RecordQueue, doc: object) -> None:
        return None

    with mock.patch.object(records_module.RecordQueue, "store_carried", store_carried):
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
def deadline_extended_after_the_sigterm_moment() -> Iterator[None]:
    """The supervisor moves a command's deadline later on every renewal, even once its SIGTERM moment has
    passed or the command was told to stop: a command that ignores SIGTERM then lives on."""
    def extend(self: FencedTurn, deadline: float, now: float) -> None:
        if self.status is None and deadline > self.kill_at:
            self.kill_at = deadline
            self.term_at = deadline - self.grace

    with mock.patch.object(FencedTurn, "extend", extend):
        yield


@contextmanager
def fresh_leader_doc_at_start() -> Iterator[None]:
    """An agent that starts and finds no leader doc creates a fresh one at turn 0, whatever turns ran before."""
    with mock.patch.object(leadership_module, "never_used", lambda store, leader_doc: True):
        yield


@contextmanager
def repair_waits_from_the_first_sighting() -> Iterator[None]:
    """A missing leader doc is one revision however often it is deleted: the repair's wait runs from the
    first time the agent found it missing, and it rebuilds without reading it again."""
    real_repair = leadership_module.Leadership.repair

    def repair(self: leadership_module.Leadership, now: float) -> bool:
        reread, self.shared.reread = self.shared.reread, lambda doc_id: None  # type: ignore[method-assign]
        try:
            return real_repair(self, now)
        finally:
            self.shared.reread = reread  # type: ignore[method-assign]

    with mock.patch.object(SharedDocs, "absorb", _absorb_without_tombstones), \
            mock.patch.object(leadership_module.Leadership, "repair", repair):
        yield


def _absorb_without_tombstones(self: SharedDocs, doc_id: str, raw: object, *, from_feed: bool = False) -> None:
    now = self.clock.monotonic()
    self.view.absorb(doc_id, raw, now, from_feed=from_feed)  # type: ignore[arg-type]


@contextmanager
def repair_resumes_above_the_claims() -> Iterator[None]:
    """The repair resumes one above the newest record and the heartbeats' turns, not at the revision count."""
    def resume(seen: int, old: object, replaced_rev: object, newest: object, heartbeat_turns: object = ()) -> int:
        return real_resume(seen, old, None, newest, heartbeat_turns)  # type: ignore[arg-type]

    real_resume = repair_module.resume_turn
    with mock.patch.object(repair_module, "resume_turn", resume), \
            mock.patch.object(repair_module, "revision_count", lambda rev: 0):
        yield


@contextmanager
def admin_rebuild_without_waiting() -> Iterator[None]:
    """An admin's rebuild of the leader doc the sites may not rebuild (``enqueue repair``) writes as soon as it
    finds it missing, without waiting out heartbeat_stale."""
    real_look = AdminRebuild.look

    def look(self: AdminRebuild, now: float) -> Optional[float]:
        due = real_look(self, now)
        return None if due is None else min(due, now)

    with mock.patch.object(AdminRebuild, "look", look):
        yield


@contextmanager
def turn_taken_while_between() -> Iterator[None]:
    """An agent takes a turn granted to it whatever its heartbeat says, also while its side command runs."""
    with mock.patch.object(SideDuties, "wants_turn_now", lambda self, *, stopping, repeat: not stopping):
        yield


@contextmanager
def keep_a_not_started_record_of_a_turn_that_ran() -> Iterator[None]:
    """A revoker (or a repair) that read a turn as started keeps the 'not started' record a dead leader left of
    it, adding nothing: the record is another site's, written once."""
    with mock.patch.object(records_module, "corrects_not_started", lambda parsed, existing, rec, me: False):
        yield


@contextmanager
def start_on_a_grant_from_before_the_run() -> Iterator[None]:
    """An agent starts on any grant that names it without a confirm, also one that may have been written before
    its run of beats began (after a freeze, say, when the leader may be taking it back for silence)."""
    with mock.patch.object(Lease, "after_floor", lambda self, rev: True):
        yield


@contextmanager
def take_a_startable_grant_back_at_once() -> Iterator[None]:
    """The leader takes back a grant that names its agent as one that names none: at once when its holder is
    stale, drained, unregistered or says it wants none, recorded "not started", without reading its heartbeat."""
    real_lost = scheduler_module._holder_lost

    def lost(doc: LeaderDoc, registry: object, heartbeats: object, stale: object) -> tuple:
        if doc.status == GRANTED:
            return scheduler_module._holder_lost_grant(doc, registry, heartbeats, stale), False
        return real_lost(doc, registry, heartbeats, stale)  # type: ignore[arg-type]

    with mock.patch.object(scheduler_module, "_holder_lost", lost):
        yield


@contextmanager
def any_agent_of_the_site_takes_the_grant() -> Iterator[None]:
    """A grant to my site is this agent's whatever agent it names: a restarted agent, or a second one, starts on
    its predecessor's grant."""
    with mock.patch.object(Lease, "grant_is_mine", lambda self, rev, grantee: True):
        yield


@dataclass(frozen=True)
class Variant:
    patch: Callable[[], ContextManager[None]]
    trips: FrozenSet[str]  # the kinds of violation that show it
    faults: str  # the fault classes it is run under (``--faults`` syntax)
    #: The first seed of the default budget that catches it, as the search from seed 1 found it
    #: (tests/tools/simulation/test_variants.py runs that seed first); None: not recorded, search.
    first_caught: Optional[int] = None


_BASE = "slow,feed-lag,feed-miss,freeze,partition,kill,stop,clock-rate,pause,drain,skip"

#: Every variant, each caught within the default budget (tests/tools/simulation/test_variants.py).
VARIANTS: Dict[str, Variant] = {
    "end-a-turn-without-carrying-its-record": Variant(end_a_turn_without_carrying_its_record, frozenset({"record"}),
                                                      _BASE + ",crash", first_caught=1),
    "replace-a-carried-record-before-it-is-stored": Variant(replace_a_carried_record_before_it_is_stored,
                                                            frozenset({"record"}), _BASE + ",crash", first_caught=1),
    "fresh-leader-doc-at-start": Variant(fresh_leader_doc_at_start, frozenset({"token", "overlap"}),
                                         _BASE + ",delete-leader", first_caught=1),
    "revoke-before-the-lease-ran-out": Variant(revoke_before_the_lease_ran_out, frozenset({"overlap"}), _BASE,
                                               first_caught=4),
    "revoke-on-a-lagging-view": Variant(revoke_on_a_lagging_view, frozenset({"overlap"}), _BASE, first_caught=7),
    "orphan-ended-at-once": Variant(orphan_ended_at_once, frozenset({"overlap"}), _BASE, first_caught=26),
    "deadline-extended-after-the-sigterm-moment": Variant(deadline_extended_after_the_sigterm_moment,
                                                          frozenset({"overlap"}),
                                                          _BASE + ",garble-leader,delete-leader", first_caught=33),
    "repair-waits-from-the-first-sighting": Variant(repair_waits_from_the_first_sighting,
                                                    frozenset({"token", "overlap"}), _BASE + ",delete-leader",
                                                    first_caught=15),
    "repair-resumes-above-the-claims": Variant(repair_resumes_above_the_claims, frozenset({"token", "overlap"}),
                                               "delete-leader,garble-leader,kill,crash,lost-answer,slow",
                                               first_caught=4),
    "keep-a-not-started-record-of-a-turn-that-ran": Variant(keep_a_not_started_record_of_a_turn_that_ran,
                                                            frozenset({"outcome"}), _BASE + ",crash,between",
                                                            first_caught=53),
    "admin-rebuild-without-waiting": Variant(admin_rebuild_without_waiting, frozenset({"overlap"}),
                                             _BASE + ",delete-leader,site-accounts", first_caught=4),
    "turn-taken-while-between": Variant(turn_taken_while_between, frozenset({"side"}), "slow,feed-lag,between",
                                        first_caught=2),
    "start-on-a-grant-from-before-the-run": Variant(start_on_a_grant_from_before_the_run, frozenset({"overlap"}),
                                                    _BASE, first_caught=7),
    "take-a-startable-grant-back-at-once": Variant(take_a_startable_grant_back_at_once,
                                                   frozenset({"overlap", "outcome"}), _BASE, first_caught=1),
    "any-agent-of-the-site-takes-the-grant": Variant(any_agent_of_the_site_takes_the_grant,
                                                     frozenset({"overlap", "token"}), _BASE + ",crash",
                                                     first_caught=2),
}
