"""What ``enqueue status`` shows: one picture built from the shared documents.

``build`` is a pure function of the documents as read, the settings, this
host's wall-clock time and, under ``--watch``, what this observer has seen
change. ``enqueue.commands.status_text`` presents the result.

Two kinds of "alive" appear here, and they are kept apart on purpose:

* **by beat time** (every status): the wall-clock ``time`` a site wrote into
  its heartbeat, compared with this host's clock. Good enough for people,
  wrong by however far the two clocks are apart; never used by the agents.
* **observed** (``--watch`` only): how long ago this observer saw the
  heartbeat document change, on its own monotonic clock -- the agents' own
  rule (docs/PROTOCOL.md §3.2). Once a site has been watched for ``heartbeat_stale``
  without a change it is stale whatever its beat time says.

Nothing here writes, and nothing here decides anything for the protocol.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from typing import Any, Callable, Iterable, List, Mapping, Optional, Tuple, TypeVar

from enqueue import documents as docs
from enqueue.clock import format_time
from enqueue.durations import format_duration
from enqueue.placement import Placement
from enqueue.placement import describe as describe_placement
from enqueue.records import as_read
from enqueue.outcomes import Outcome
from enqueue.steering import AdminSettings, parse_time

__all__ = ["SiteView", "TurnView", "Overview", "Observer", "build", "left_liveness", "present", "stale_meaning"]

# Liveness verdicts.
ALIVE = "alive"
STALE = "stale"
GONE = "left"
#: Left after its one turn (or --max-wait) less than heartbeat_stale ago: between iterations of its loop.
LOOPING = "looping"
MISSING = "missing"
UNKNOWN = "unknown"

# Turn records that do not count as a turn taken: the grant was never confirmed.
_NOT_TAKEN = (Outcome.NOT_STARTED,)


@dataclass(frozen=True)
class SiteView:
    """One row of the sites table."""

    name: str
    registered: bool
    host: Optional[str]
    state: Optional[str]
    liveness: str
    liveness_from: str
    beat_time: Optional[str]
    beat_age_s: Optional[float]
    beat: Optional[int]
    observed_age_s: Optional[float]
    observed_change: bool
    drained: bool
    drained_reason: Optional[str]
    last_turn: Optional[int]
    last_how: Optional[str]
    last_exit_code: Optional[int]
    last_duration_s: Optional[float]
    turns_taken: int
    role: Optional[str]
    message: Optional[str]
    # The timing the site's agent announces in its heartbeat (None: not announced).
    heartbeat_delay_s: Optional[float] = None
    heartbeat_stale_s: Optional[float] = None
    #: With state left: why its agent left (``turn done``, ``max wait``, ``stopped``; None: not said).
    left_because: Optional[str] = None


@dataclass(frozen=True)
class TurnView:
    """The turn named in the leader doc: the one in progress, or the last one."""

    number: int
    site: Optional[str]
    state: Optional[str]
    since: Optional[str]
    for_s: Optional[float]
    skip_requested: bool
    last_exit_code: Optional[int]
    last_how: Optional[str]
    #: Seconds since this turn was granted (the last handoff), by this host's clock; None when unknown.
    handoff_s: Optional[float] = None


@dataclass(frozen=True)
class Overview:
    """Everything ``enqueue status`` prints."""

    database: str
    server: str
    checked_at: str
    time_format: str
    #: What "stale" means in this picture: the heartbeat_stale every present site announces (the configured
    #: one when none does); None when they announce different ones (each site is judged by its own).
    heartbeat_stale_s: Optional[float]
    leader: Optional[str]
    leader_term: Optional[int]
    paused: bool
    paused_reason: Optional[str]
    paused_by: Optional[str]
    paused_at: Optional[str]
    turn: Optional[TurnView]
    rotation: tuple[str, ...]
    sites: tuple[SiteView, ...]
    problems: tuple[str, ...] = ()
    watched_s: Optional[float] = None
    #: Which node holds the database (``enqueue.placement.describe``); None when unknown.
    placement: Optional[str] = None
    #: The nodes holding its shards, as the server reports them (empty: none reported).
    nodes: tuple[str, ...] = ()


@dataclass
class _Seen:
    rev: Optional[str]
    since: float
    changed: bool


class Observer:
    """Remembers, across ``--watch`` refreshes, when each heartbeat was seen to change.

    Times are this host's monotonic seconds. The first sighting of a revision
    is not a change: only a new revision seen later proves the site is alive.
    """

    def __init__(self, started: float) -> None:
        self.started = started
        self._seen: dict[str, _Seen] = {}

    def observe(self, site: str, rev: Optional[str], now: float) -> None:
        """Note ``site``'s heartbeat revision as read at ``now``."""
        seen = self._seen.get(site)
        if seen is None:
            self._seen[site] = _Seen(rev, now, False)
        elif seen.rev != rev:
            self._seen[site] = _Seen(rev, now, True)

    def age(self, site: str, now: float) -> tuple[Optional[float], bool]:
        """(seconds since the last observed change, or since first seen; whether a change was seen)."""
        seen = self._seen.get(site)
        if seen is None:
            return None, False
        return max(0.0, now - seen.since), seen.changed


def _seconds_between(earlier: Optional[_dt.datetime], later: _dt.datetime) -> Optional[float]:
    return None if earlier is None else (later - earlier).total_seconds()


def started_on_grant(leader: docs.LeaderDoc, holder: Optional[Mapping[str, Any]]) -> bool:
    """The granted turn runs: its holder started it on the grant alone (docs/PROTOCOL.md §3.5.7), as the holder's
    own heartbeat (``holder``, raw) says; the leader doc shows it ``granted`` until it ends."""
    if not leader.startable_grant or leader.running is None:
        return False
    hb, _ = docs.parse_heartbeat(holder, leader.running)
    return hb is not None and hb.instance == leader.grantee and hb.turn == leader.turn and hb.state == docs.RUNNING


def _turn_view(leader: docs.LeaderDoc, time_format: str, now: _dt.datetime, on_grant: bool) -> Optional[TurnView]:
    if leader.turn <= 0 and leader.running is None:
        return None
    since = {docs.GRANTED: leader.granted_at, docs.RUNNING: leader.started_at, docs.DONE: leader.ended_at}.get(
        leader.status or "", None
    )
    return TurnView(
        number=leader.turn,
        site=leader.running,
        state=docs.RUNNING if on_grant else leader.status,
        since=since,
        for_s=_seconds_between(parse_time(since, time_format), now),
        skip_requested=leader.turn_active and leader.skip_turn == leader.turn,
        last_exit_code=None if leader.turn_active else leader.last_exit_code,
        last_how=None if leader.turn_active else leader.last_how,
        handoff_s=_seconds_between(parse_time(leader.granted_at, time_format), now),
    )


def _site_message(hb: docs.Heartbeat | None) -> str | None:
    """The heartbeat's message for NOTE, after why the site is not ready when it says so."""
    if hb is None:
        return None
    not_ready = f"not ready: {hb.not_ready or 'checking'}" if hb.state == docs.NOT_READY else None
    return "; ".join(x for x in (not_ready, hb.message) if x) or None


def _records_by_site(records: Iterable[Mapping[str, Any]], problems: list[str]) -> dict[str, list[docs.TurnRecord]]:
    by_site: dict[str, list[docs.TurnRecord]] = {}
    for raw in records:
        rec, issues = docs.parse_turn_record(raw)
        if rec is None:
            problems.append(f"turn record {raw.get('_id', '?')} does not parse: {'; '.join(issues)}")
            continue
        # The outcome a reader takes (the runner's report, a revoker's word over a "not started").
        by_site.setdefault(rec.site, []).append(as_read(rec, raw))
    for recs in by_site.values():
        recs.sort(key=lambda r: r.turn)
    return by_site


def _int_or_none(value: Any) -> Optional[int]:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


_Doc = TypeVar("_Doc")


def _parsed(what: str, raw: Optional[Mapping[str, Any]],
            parse: Callable[[Mapping[str, Any], str], Tuple[Optional[_Doc], List[str]]], doc_id: str,
            when_missing: str, problems: List[str]) -> Optional[_Doc]:
    """One shared document parsed, or None; a missing one, one that does not parse, or its problems: a line."""
    if raw is None:
        problems.append(f"{what} does not exist ({when_missing})")
        return None
    doc, issues = parse(raw, doc_id)
    if doc is None:
        problems.append(f"{what} does not parse: {'; '.join(issues)}")
    elif issues:
        problems.append(f"{what}: {'; '.join(issues)}")
    return doc


def build(
    settings: AdminSettings,
    database: str,
    server: str,
    leader_raw: Optional[Mapping[str, Any]],
    sites_raw: Optional[Mapping[str, Any]],
    heartbeats_raw: Mapping[str, Optional[Mapping[str, Any]]],
    records_raw: Iterable[Mapping[str, Any]],
    now: _dt.datetime,
    observer: Optional[Observer] = None,
    now_mono: Optional[float] = None,
    where: Optional[Placement] = None,
) -> Overview:
    """The overview from the documents as read at ``now`` (this host's UTC time).

    ``heartbeats_raw`` maps site names to their heartbeat docs (None when
    missing). With an ``observer`` (and ``now_mono``) the heartbeats are
    observed first, and liveness follows observation once a site has been
    watched for ``heartbeat_stale``. ``where`` is the database's placement
    on the server, when known.
    """
    fmt = settings.time_format
    stale_s = settings.timing.heartbeat_stale_s
    problems: list[str] = []

    leader = _parsed(f"leader doc {settings.leader_doc}", leader_raw, docs.parse_leader, settings.leader_doc,
                     "an admin runs 'enqueue init' on a new database, 'enqueue repair' on one that held turns", problems)
    parsed = _parsed(f"sites doc {settings.sites_doc}", sites_raw, docs.parse_sites, settings.sites_doc,
                     "no site has registered yet", problems)
    registry: Mapping[str, docs.SiteEntry] = parsed.sites if parsed is not None else {}
    entries_raw: Mapping[str, Any] = parsed.raw.get("sites") or {} if parsed is not None else {}

    by_site = _records_by_site(records_raw, problems)

    names = set(registry)
    if leader is not None:
        names.update(s for s in (leader.leader, leader.running) if s)
    rows = []
    for name in sorted(names):
        raw_hb = heartbeats_raw.get(name)
        hb, issues = docs.parse_heartbeat(raw_hb, name)
        if issues:
            problems.append(f"heartbeat {docs.heartbeat_id(name, settings.leader_doc)}: {'; '.join(issues)}")
        said = raw_hb.get(docs.PROBLEM_FIELD) if isinstance(raw_hb, Mapping) and hb is not None and hb.state != docs.LEFT else None
        if isinstance(said, str) and said:
            problems.append(f"site {name}: {said}")
        beat_age = None
        if hb is not None:
            beat_age = _seconds_between(parse_time(hb.time, fmt), now)
        observed_age, observed_change = None, False
        if observer is not None and now_mono is not None:
            observer.observe(name, None if raw_hb is None else raw_hb.get("_rev"), now_mono)
            observed_age, observed_change = observer.age(name, now_mono)

        # A site is judged by the heartbeat_stale it runs with, when it says so.
        site_stale_s = hb.heartbeat_stale_s if hb is not None and hb.heartbeat_stale_s else stale_s
        liveness, source = UNKNOWN, "beat time"
        if hb is None:
            liveness = MISSING
        elif hb.state == docs.LEFT:
            watched = observed_age is not None and (observed_change or observed_age >= site_stale_s)
            liveness, source = left_liveness(hb, observed_age if watched else beat_age, site_stale_s), \
                "observed" if watched else "beat time"
        elif observed_age is not None and (observed_change or observed_age >= site_stale_s):
            liveness, source = (STALE if observed_age >= site_stale_s else ALIVE), "observed"
        elif beat_age is not None:
            liveness = ALIVE if beat_age < site_stale_s else STALE

        recs = [r for r in by_site.get(name, []) if r.how not in _NOT_TAKEN]
        last = by_site.get(name, [None])[-1]
        last_exit = last.exit_code if last is not None else (
            _int_or_none(raw_hb.get("last_exit_code")) if isinstance(raw_hb, Mapping) else None
        )
        entry = registry.get(name)
        entry_raw = entries_raw.get(name) if isinstance(entries_raw, Mapping) else None
        roles = []
        if leader is not None and leader.leader == name:
            roles.append("leader")
        if leader is not None and leader.running == name and leader.turn_active:
            state = docs.RUNNING if started_on_grant(leader, raw_hb) else leader.status
            roles.append(f"{state} turn {leader.turn}")
        if entry is None:
            roles.append("not registered")
        rows.append(
            SiteView(
                name=name,
                registered=entry is not None,
                host=hb.host if hb else None,
                state=hb.state if hb else None,
                liveness=liveness,
                liveness_from=source,
                beat_time=hb.time if hb else None,
                beat_age_s=beat_age,
                beat=hb.beat if hb else None,
                observed_age_s=observed_age,
                observed_change=observed_change,
                drained=bool(entry and entry.drained),
                drained_reason=(entry_raw.get("drained_reason") if isinstance(entry_raw, Mapping) else None)
                if entry and entry.drained else None,
                last_turn=last.turn if last else None,
                last_how=last.how if last else None,
                last_exit_code=last_exit,
                last_duration_s=last.duration_s if last else None,
                turns_taken=len(recs),
                role=", ".join(roles) or None,
                message=_site_message(hb),
                heartbeat_delay_s=hb.heartbeat_delay_s if hb else None,
                heartbeat_stale_s=hb.heartbeat_stale_s if hb else None,
                left_because=hb.left_because if hb else None,
            )
        )
    problems.extend(_timing_problems(rows))

    return Overview(
        database=database,
        server=server,
        checked_at=format_time(now, fmt),
        time_format=fmt,
        heartbeat_stale_s=stale_meaning(rows, stale_s),
        leader=leader.leader if leader else None,
        leader_term=leader.leader_term if leader else None,
        paused=bool(leader and leader.paused),
        paused_reason=leader.paused_reason if leader and leader.paused else None,
        paused_by=_text(leader.raw.get("paused_by")) if leader and leader.paused else None,
        paused_at=_text(leader.raw.get("paused_at")) if leader and leader.paused else None,
        turn=_turn_view(leader, fmt, now, started_on_grant(leader, heartbeats_raw.get(leader.running or "")))
        if leader else None,
        rotation=leader.rotation if leader else (),
        sites=tuple(rows),
        problems=tuple(problems),
        watched_s=None if observer is None or now_mono is None else max(0.0, now_mono - observer.started),
        placement=None if where is None else describe_placement(where),
        nodes=() if where is None else where.nodes,
    )


def left_liveness(hb: docs.Heartbeat, age_s: Optional[float], stale_s: float) -> str:
    """``looping`` or ``left`` for a heartbeat that says left, ``age_s`` after it was written.

    A run-once agent that ended its one turn, or gave up at --max-wait,
    leaves as every iteration of a site loop does: its site is ``looping``
    while the loop's next agent is due, that is for ``heartbeat_stale``
    (the silence after which a live agent would be called stale too).
    Stopped by a signal, not saying why (an older agent), or left longer
    ago than that: ``left``.
    """
    if hb.left_because in docs.LEFT_TO_LOOP and age_s is not None and age_s < stale_s:
        return LOOPING
    return GONE


def _text(value: Any) -> Optional[str]:
    return value if isinstance(value, str) else None


def present(rows: Iterable[SiteView]) -> list[SiteView]:
    """The sites that have a heartbeat and did not leave."""
    return [row for row in rows if row.liveness not in (GONE, MISSING)]


def stale_meaning(rows: Iterable[SiteView], configured_s: float) -> Optional[float]:
    """The heartbeat_stale the present sites are judged by, when it is one; None when they announce several."""
    announced = {row.heartbeat_stale_s for row in present(rows) if row.heartbeat_stale_s is not None}
    if len(announced) > 1:
        return None
    return announced.pop() if announced else configured_s


def _timing_problems(rows: list[SiteView]) -> list[str]:
    """A problem line when the live sites announce different heartbeat timings.

    Safety does not depend on it (a leader waits out a holder's longer
    lease), but a site with a shorter heartbeat_stale than the others judges
    them, and is judged, by other standards than they are: say so.
    """
    timings: dict[tuple[float, float], list[str]] = {}
    for row in present(rows):
        if row.heartbeat_delay_s is None or row.heartbeat_stale_s is None:
            continue
        timings.setdefault((row.heartbeat_delay_s, row.heartbeat_stale_s), []).append(row.name)
    if len(timings) < 2:
        return []
    parts = [f"{', '.join(names)} every {format_duration(delay)}, stale after {format_duration(stale)}"
             for (delay, stale), names in sorted(timings.items())]
    return ["sites run with different heartbeat timings (" + "; ".join(parts) + "): give every site the same "
            "heartbeat_delay and heartbeat_stale, in the shared configuration file"]
