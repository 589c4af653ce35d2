"""The fault schedule, and the store wrapper that injects it into every call an agent makes.

Fault classes (``--faults`` names):

store calls (per call of one agent, drawn from the world's generator)
    lost-answer   the write is applied, its answer is lost: the caller gets
                  ``Unreachable`` (a read's lost answer is just a failed read)
    lost-write    the request is lost before it is applied: ``Unreachable``
    slow          true time passes before and after the request is applied
    crash         the calling agent dies at this call, before or after the
                  request is applied (``AgentCrash`` unwinds it), so a crash
                  between any two writes is possible; more often right after
                  a leader's record of taking back a granted turn, before the
                  write that would take it back (the turn may then run), and
                  right after the write that finishes a site's own turn,
                  before its record is stored (it is then carried only)
the changes feed
    feed-lag      a delivery comes late (in order)
    feed-miss     a delivery never comes (the next full read catches up);
                  more often a heartbeat that ends a silence of nearly
                  heartbeat_stale, the one beat whose loss makes a live site
                  look stale to a view that lags
agents
    kill          an agent dies between two steps, and is started again
    freeze        an agent stops for longer (or shorter) than its lease
    stop          SIGTERM to an agent; it leaves, and is started again
    partition     one agent cannot reach the database for a while
    clock-rate    the sites' clocks run at rates apart within the bound
    between       sites run side commands outside their turns (--between,
                  --between-every, --ready) of random lengths, and a
                  readiness check fails now and then
    site-accounts in every second run (even seeds) the sites write under
                  site accounts: the rules refuse them the leader doc's
                  creation (site_rules), so an admin creates it (init) and
                  rebuilds it after a deletion (enqueue repair's rebuild)
admins
    pause, drain, skip, delete-leader, garble-leader, delete-registry,
    garble-registry, delete-record, prune, init
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, FrozenSet, List, Optional, Tuple, TypeVar

from enqueue.documents import TURN_PREFIX
from enqueue.errors import Conflict, Forbidden, Unreachable

from tools.simulation import site_rules
from tools.simulation.watched_store import WatchedStore
from tools.simulation.world import World

STORE_FAULTS = ("lost-answer", "lost-write", "slow", "crash")
FEED_FAULTS = ("feed-lag", "feed-miss")
AGENT_FAULTS = ("kill", "freeze", "stop", "partition", "clock-rate", "between", "site-accounts")
ADMIN_FAULTS = ("pause", "drain", "skip", "delete-leader", "garble-leader", "delete-registry", "garble-registry",
                "delete-record", "prune", "init")
ALL_FAULTS = STORE_FAULTS + FEED_FAULTS + AGENT_FAULTS + ADMIN_FAULTS


class AgentCrash(BaseException):
    """The agent dies here (kill -9): raised inside it, caught by no ``except Exception``."""


class FaultSpecError(ValueError):
    pass


def parse_faults(spec: str) -> FrozenSet[str]:
    """``all``, ``none``, names, and ``-name`` to leave one out, comma-separated, left to right."""
    chosen: set = set()
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        drop = part.startswith("-")
        name = part[1:] if drop else part
        names = set(ALL_FAULTS) if name == "all" else set() if name == "none" else {name}
        unknown = names - set(ALL_FAULTS)
        if unknown:
            raise FaultSpecError(f"unknown fault {sorted(unknown)[0]!r}; known: all, none, {', '.join(ALL_FAULTS)}")
        chosen = chosen - names if drop else chosen | names
    return frozenset(chosen)


#: The longest a slow reply holds its caller (before and after the request together), in true seconds.
SLOW_MAX_S = 1.5


@dataclass
class FaultRates:
    """How often each store-call fault strikes one call, while faults are on."""

    lost_answer: float = 0.01
    lost_write: float = 0.01
    slow: float = 0.04
    crash: float = 0.003
    # Right after a leader stored its "not started" record of a granted turn: the grantee may then confirm and
    # run a turn recorded as never started (docs/PROTOCOL.md §5.4.1).
    crash_after_taking_back: float = 0.2
    # Right after the write that finished a site's own turn, carrying its record, before the record is stored: the
    # record is then only in the leader doc until the next holder stores it (docs/PROTOCOL.md §3.8.2).
    crash_after_finishing: float = 0.05
    #: A feed delivery lost, to each follower of the document.
    feed_miss: float = 0.05
    # A heartbeat that comes after a silence of more than heartbeat_stale - heartbeat_delay (a site restarted,
    # thawed or back from a partition just in time): lost to a follower, the site looks stale to it while it is
    # alive and may run a turn, until that follower reads it again (docs/PROTOCOL.md §3.4, the revoker's re-read).
    feed_miss_after_silence: float = 0.5


@dataclass
class Schedule:
    """Which faults are on, and the state of the ones that last (partitions)."""

    enabled: FrozenSet[str]
    rates: FaultRates = field(default_factory=FaultRates)
    active: bool = True
    cut_off_until: Dict[str, float] = field(default_factory=dict)
    # The sites write under site accounts: the database applies the rules (site_rules) to their writes.
    site_accounts: bool = False
    counts: Dict[str, int] = field(default_factory=dict)
    # Faults aimed by a test: (site, the call's description starts with, fault, only when true); the first
    # call that matches gets the fault, once, whether or not the schedule is active.
    aimed: List[Tuple[str, str, str, Callable[[], bool]]] = field(default_factory=list)

    def on(self, name: str) -> bool:
        return self.active and name in self.enabled

    def count(self, name: str) -> None:
        self.counts[name] = self.counts.get(name, 0) + 1

    def aim(self, site: str, call: str, fault: str, when: Callable[[], bool] = lambda: True) -> None:
        """Give ``fault`` to the next call of ``site`` whose description starts with ``call``."""
        self.aimed.append((site, call, fault, when))

    def aimed_at(self, site: str, what: str) -> Optional[str]:
        for i, (s, call, fault, when) in enumerate(self.aimed):
            if s == site and what.startswith(call) and when():
                del self.aimed[i]
                return fault
        return None


T = TypeVar("T")


def _takes_back_a_grant(doc: dict, site: str) -> bool:
    """``doc`` is leader ``site``'s record of taking another site's granted turn back (``not started``)."""
    return str(doc.get("_id", "")).startswith(TURN_PREFIX) and "_rev" not in doc and doc.get("leader") == site \
        and doc.get("site") != site and doc.get("how") == "not started"


def _ends_a_turn(doc: dict, site: str) -> bool:
    """``doc`` is ``site``'s leader-doc write that ends a turn: its own finish (``turns.finish``) or a revocation."""
    return doc.get("last_how") is not None and doc.get("updated_by") == site and \
        "turn" in doc and doc.get("updated_at") == doc.get("ended_at")


class FaultyStore:
    """One agent instance's way to the database: every call may fail the way the schedule says."""

    def __init__(self, store: WatchedStore, world: World, schedule: Schedule, site: str, instance: str,
                 on_crash: Callable[[], None]) -> None:
        self._store = store
        self._world = world
        self._schedule = schedule
        self.site = site
        self.instance = instance
        self._on_crash = on_crash

    def describe(self) -> str:
        return self._store.describe()

    def close(self) -> None:
        pass

    # -- reads --------------------------------------------------------------

    def check(self) -> dict:
        return self._call("check", False, lambda: self._store.check())

    def copies(self) -> int:
        return self._call("copies", False, lambda: self._store.copies())

    def current_seq(self) -> object:
        return self._call("current_seq", False, lambda: self._store.current_seq())

    def get(self, doc_id: str) -> Optional[dict]:
        return self._call(f"get {doc_id}", False, lambda: self._store.get(doc_id))

    def deleted_rev(self, doc_id: str) -> Optional[str]:
        return self._call(f"deleted_rev {doc_id}", False, lambda: self._store.deleted_rev(doc_id))

    def get_many(self, doc_ids: List[str]) -> Dict[str, Optional[dict]]:
        return self._call("get_many", False, lambda: self._store.get_many(doc_ids))

    def list_prefix(self, prefix: str, *, limit: Optional[int] = None, descending: bool = False) -> List[dict]:
        return self._call(f"list {prefix}", False,
                          lambda: self._store.list_prefix(prefix, limit=limit, descending=descending))

    # -- writes -------------------------------------------------------------

    def put(self, doc: dict) -> str:
        what = f"put {doc.get('_id')}"
        if self._schedule.on("crash") and _takes_back_a_grant(doc, self.site) and \
                self._world.rng.random() < self._schedule.rates.crash_after_taking_back:
            self._schedule.aim(self.site, what, "crash-after")
        elif self._schedule.on("crash") and _ends_a_turn(doc, self.site) and \
                self._world.rng.random() < self._schedule.rates.crash_after_finishing:
            self._schedule.aim(self.site, what, "crash-after")
        return self._call(what, True, lambda: self._put(doc))

    def _put(self, doc: dict) -> str:
        refused = site_rules.refusal(self._store, doc) if self._schedule.site_accounts else None
        if refused is not None:
            self._schedule.count("site-accounts")
            raise Forbidden(f"{self.describe()}: document {doc.get('_id')!r}: write: forbidden (403 forbidden: "
                            f"{refused})")
        return self._store.put(doc)

    def delete(self, doc: dict) -> None:
        return self._call(f"delete {doc.get('_id')}", True, lambda: self._store.delete(doc))

    # -- the faults ---------------------------------------------------------

    def _call(self, what: str, write: bool, op: Callable[[], T]) -> T:
        world, schedule, rates = self._world, self._schedule, self._schedule.rates
        if self._schedule.cut_off_until.get(self.site, -1.0) > world.now:
            raise Unreachable(f"{self.describe()}: {what}: cut off (simulated partition)")
        rng = world.rng
        fault = schedule.aimed_at(self.site, what)
        if fault is None and schedule.active:
            r = rng.random()
            for name, rate in (("crash", rates.crash), ("lost-write", rates.lost_write),
                               ("lost-answer", rates.lost_answer), ("slow", rates.slow)):
                if name in schedule.enabled and r < rate:
                    fault = name
                    break
                r -= rate
        if fault == "crash":
            fault = "crash-before" if rng.random() < 0.5 else "crash-after"
        if fault == "crash-before":
            self._crash(what, "before")
        if fault == "lost-write":
            schedule.count(fault)
            world.note(self.instance, f"{what}: request lost")
            raise Unreachable(f"{self.describe()}: {what}: request lost (simulated)")
        slow_after = 0.0
        if fault == "slow":
            schedule.count(fault)
            total = rng.uniform(0.05, SLOW_MAX_S)
            before = rng.uniform(0.0, total)
            slow_after = total - before
            world.advance(before)
        world.writer = self.instance
        try:
            result = op()
        except Conflict:
            if fault == "lost-answer":
                schedule.count(fault)
                raise Unreachable(f"{self.describe()}: {what}: answer lost (simulated)") from None
            if fault == "crash-after":
                self._crash(what, "after a refused")
            raise
        finally:
            world.writer = None
        if fault == "crash-after":
            self._crash(what, "after")
        if fault == "lost-answer":
            schedule.count(fault)
            world.note(self.instance, f"{what}: applied, answer lost")
            raise Unreachable(f"{self.describe()}: {what}: answer lost (simulated)")
        world.advance(slow_after)
        return result

    def _crash(self, what: str, when: str) -> None:
        self._schedule.count("crash")
        self._world.note(self.instance, f"crashes {when} {what}")
        self._on_crash()
        raise AgentCrash(f"{self.instance} crashed {when} {what}")
