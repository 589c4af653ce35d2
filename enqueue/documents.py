"""The shared documents: tolerant parsing, rendering, and document ids.

Admins read and edit these documents by hand, so parsing never raises: a
document that does not parse yields ``None`` plus a list of problems (the
caller logs them with the document id), and a field with a wrong type in an
optional place falls back to its default with a problem noted. Unknown fields
are kept: rendering starts from the stored document, so a write never drops
what an admin or a newer version added.

Guarantees: ``render_*`` output always parses back to an equal value, and
carries the ``_rev`` it was parsed from, so every write is a compare-and-swap
on what was read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from enqueue.site_names import is_site_name

SCHEMA_VERSION = 1

HEARTBEAT_PREFIX = "enqueue_heartbeat:"
TURN_PREFIX = "enqueue_turn:"
TURN_ID_DIGITS = 10

# Turn states in the leader doc.
GRANTED = "granted"
RUNNING = "running"
DONE = "done"
TURN_STATES = (GRANTED, RUNNING, DONE)

# What a site says it wants, in its heartbeat doc.
WAITING = "waiting"
IDLE = "idle"
LEFT = "left"
SITE_STATES = (WAITING, RUNNING, IDLE, LEFT)


def heartbeat_id(site: str) -> str:
    """The id of a site's heartbeat doc."""
    return HEARTBEAT_PREFIX + site


def turn_record_id(turn: int) -> str:
    """The id of a turn record; zero-padded so ids sort by turn number."""
    return f"{TURN_PREFIX}{turn:0{TURN_ID_DIGITS}d}"


class _Fields:
    """Reads typed fields from a raw document, collecting problems instead of raising."""

    def __init__(self, raw: Mapping[str, Any]) -> None:
        self.raw = raw
        self.problems: list[str] = []
        self.fatal = False

    def _get(self, key: str, kinds: tuple, default: Any, required: bool, what: str) -> Any:
        if key not in self.raw or self.raw[key] is None:
            if required:
                # Even when the caller has a default: a missing 'turn' read as 0
                # would send the fencing token back without a word.
                self.problems.append(f"field '{key}' is missing")
                self.fatal = True
            return default
        value = self.raw[key]
        if isinstance(value, bool) and bool not in kinds:
            ok = False
        else:
            ok = isinstance(value, kinds)
        if not ok:
            self.problems.append(f"field '{key}' should be {what}, not {value!r:.60}")
            if required:
                self.fatal = True
            return default
        return value

    def text(self, key: str, *, required: bool = False) -> str | None:
        return self._get(key, (str,), None, required, "a string or null")

    def integer(self, key: str, default: int | None = 0, *, required: bool = False, minimum: int = 0) -> int | None:
        value = self._get(key, (int,), default, required, "an integer")
        if isinstance(value, int) and value < minimum:
            self.problems.append(f"field '{key}' should be at least {minimum}, not {value}")
            if required:
                self.fatal = True
            return default
        return value

    def seconds(self, key: str) -> float | None:
        """A positive duration in seconds; anything else reads as unknown (None)."""
        value = self._get(key, (int, float), None, False, "a number of seconds")
        if value is not None and not (0 < value < float("inf")):
            self.problems.append(f"field '{key}' should be a positive number of seconds, not {value!r:.60}")
            return None
        return None if value is None else float(value)

    def flag(self, key: str, *, if_malformed: bool = False) -> bool:
        """A boolean; a value of the wrong type reads as ``if_malformed`` (pick the safe side)."""
        value = self._get(key, (bool,), None, False, "true or false")
        if value is None:
            return if_malformed if self.raw.get(key) is not None else False
        return bool(value)

    def choice(self, key: str, choices: tuple, *, required: bool = False) -> str | None:
        value = self.text(key, required=required)
        if value is not None and value not in choices:
            self.problems.append(f"field '{key}' should be one of {', '.join(choices)}, not {value!r:.60}")
            if required:
                self.fatal = True
            return None
        return value

    def site(self, key: str, *, required: bool = False) -> str | None:
        value = self.text(key, required=required)
        if value is not None and not is_site_name(value):
            self.problems.append(f"field '{key}' is not a site name: {value!r:.60}")
            if required:
                self.fatal = True
            return None
        return value


@dataclass(frozen=True)
class LeaderDoc:
    """Who leads, whose turn it is, and in which state the turn is.

    ``turn`` is the fencing token: it grows by one on every grant. ``running``
    names the site of the current (or, when ``status`` is done, the last) turn.
    ``rotation`` is the leader's published list of sites eligible for a turn,
    so a finishing site can pass the turn on in the same write that marks its
    own turn done (the leader still decides who is in it).
    """

    doc_id: str
    rev: str | None = None
    leader: str | None = None
    leader_term: int = 0
    running: str | None = None
    status: str | None = None
    turn: int = 0
    rotation: tuple[str, ...] = ()
    paused: bool = False
    paused_reason: str | None = None
    skip_turn: int | None = None
    last_exit_code: int | None = None
    last_how: str | None = None
    granted_at: str | None = None
    started_at: str | None = None
    ended_at: str | None = None
    updated_by: str | None = None
    updated_at: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def turn_active(self) -> bool:
        """A turn is granted or running (somebody holds it)."""
        return self.running is not None and self.status in (GRANTED, RUNNING)

    def holds(self, site: str, turn: int | None = None) -> bool:
        """``site`` holds the active turn (optionally: that very turn number)."""
        return self.turn_active and self.running == site and (turn is None or self.turn == turn)


def parse_leader(raw: Mapping[str, Any] | None, doc_id: str) -> tuple[LeaderDoc | None, list[str]]:
    """Parse a leader doc; ``(None, problems)`` when its core fields are unusable."""
    if raw is None:
        return None, []
    if not isinstance(raw, Mapping):
        return None, ["document is not an object"]
    f = _Fields(raw)
    rotation_raw = raw.get("rotation", [])
    rotation: tuple[str, ...] = ()
    if isinstance(rotation_raw, list) and all(is_site_name(s) for s in rotation_raw):
        rotation = tuple(sorted(set(rotation_raw)))
    elif rotation_raw is not None:
        f.problems.append(f"field 'rotation' should be a list of site names, not {rotation_raw!r:.60}")
    doc = LeaderDoc(
        doc_id=doc_id,
        rev=raw.get("_rev"),
        leader=f.site("leader"),
        leader_term=f.integer("leader_term", required=True),
        running=f.site("running"),
        status=f.choice("status", TURN_STATES, required=True),
        turn=f.integer("turn", required=True),
        rotation=rotation,
        paused=f.flag("paused", if_malformed=True),
        paused_reason=f.text("paused_reason"),
        skip_turn=f.integer("skip_turn", None),
        last_exit_code=f.integer("last_exit_code", None, minimum=-(2**31)),
        last_how=f.text("last_how"),
        granted_at=f.text("granted_at"),
        started_at=f.text("started_at"),
        ended_at=f.text("ended_at"),
        updated_by=f.text("updated_by"),
        updated_at=f.text("updated_at"),
        raw=dict(raw),
    )
    if doc.status in (GRANTED, RUNNING) and doc.running is None:
        f.problems.append(f"status is {doc.status} but no site is named in 'running'")
        f.fatal = True
    if f.fatal:
        return None, f.problems
    return doc, f.problems


def new_leader_doc(doc_id: str) -> LeaderDoc:
    """The leader doc as first created: nobody leads, no turn was ever granted."""
    return LeaderDoc(doc_id=doc_id, status=DONE)


def render_leader(doc: LeaderDoc) -> dict[str, Any]:
    """The stored form of ``doc``: its raw fields overlaid with the parsed ones."""
    out = {k: v for k, v in doc.raw.items()}
    out.update(
        {
            "_id": doc.doc_id,
            "type": "enqueue_leader",
            "schema": SCHEMA_VERSION,
            "leader": doc.leader,
            "leader_term": doc.leader_term,
            "running": doc.running,
            "status": doc.status,
            "turn": doc.turn,
            "rotation": list(doc.rotation),
            "paused": doc.paused,
            "paused_reason": doc.paused_reason,
            "skip_turn": doc.skip_turn,
            "last_exit_code": doc.last_exit_code,
            "last_how": doc.last_how,
            "granted_at": doc.granted_at,
            "started_at": doc.started_at,
            "ended_at": doc.ended_at,
            "updated_by": doc.updated_by,
            "updated_at": doc.updated_at,
        }
    )
    if doc.rev is not None:
        out["_rev"] = doc.rev
    else:
        out.pop("_rev", None)
    return out


@dataclass(frozen=True)
class SiteEntry:
    """One site in the registry, with the admin's flags for it."""

    name: str
    heartbeat_doc: str
    drained: bool = False


@dataclass(frozen=True)
class SitesDoc:
    """The registry: every site that ever joined, and the admin flags per site."""

    doc_id: str
    rev: str | None = None
    sites: Mapping[str, SiteEntry] = field(default_factory=dict)
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)


def parse_sites(raw: Mapping[str, Any] | None, doc_id: str) -> tuple[SitesDoc | None, list[str]]:
    """Parse the registry; entries that do not parse are skipped with a problem noted."""
    if raw is None:
        return None, []
    if not isinstance(raw, Mapping):
        return None, ["document is not an object"]
    entries = raw.get("sites")
    if not isinstance(entries, Mapping):
        return None, [f"field 'sites' should be an object of site entries, not {entries!r:.60}"]
    problems: list[str] = []
    sites: dict[str, SiteEntry] = {}
    for name, entry in entries.items():
        if not is_site_name(name):
            problems.append(f"site name {name!r:.60} is not valid; entry ignored")
            continue
        if not isinstance(entry, Mapping):
            problems.append(f"entry for site '{name}' is not an object; entry ignored")
            continue
        f = _Fields(entry)
        hb = f.text("heartbeat_doc") or heartbeat_id(name)
        drained = f.flag("drained", if_malformed=True)
        problems.extend(f"site '{name}': {p}" for p in f.problems)
        sites[name] = SiteEntry(name=name, heartbeat_doc=hb, drained=drained)
    return SitesDoc(doc_id=doc_id, rev=raw.get("_rev"), sites=sites, raw=dict(raw)), problems


def new_sites_doc(doc_id: str) -> SitesDoc:
    """The registry as first created: empty."""
    return SitesDoc(doc_id=doc_id)


def render_sites(doc: SitesDoc, changed: Mapping[str, Mapping[str, Any] | None] = {}) -> dict[str, Any]:
    """The stored registry with the entries in ``changed`` replaced (``None`` removes one).

    Entries not in ``changed`` are kept exactly as stored, even ones that did
    not parse, so one site's write never rewrites another's entry.
    """
    out = {k: v for k, v in doc.raw.items()}
    entries = dict(out.get("sites") or {}) if isinstance(out.get("sites"), Mapping) else {}
    for name, entry in changed.items():
        if entry is None:
            entries.pop(name, None)
        else:
            entries[name] = dict(entry)
    out.update({"_id": doc.doc_id, "type": "enqueue_sites", "schema": SCHEMA_VERSION, "sites": entries})
    if doc.rev is not None:
        out["_rev"] = doc.rev
    else:
        out.pop("_rev", None)
    return out


@dataclass(frozen=True)
class Heartbeat:
    """A site's own document: proof of life and what the site wants."""

    site: str
    state: str | None = None
    repeat: bool = False
    host: str | None = None
    pid: int | None = None
    instance: str | None = None
    beat: int = 0
    time: str | None = None
    turn: int | None = None
    message: str | None = None
    rev: str | None = None
    # The timing the site's agent runs with, announced so that a leader with
    # other settings still waits out this site's lease (None: not announced).
    heartbeat_delay_s: float | None = None
    heartbeat_stale_s: float | None = None

    @property
    def wants_turn(self) -> bool:
        """The site asks for a turn now, or right after the one it is running."""
        return self.state == WAITING or (self.state == RUNNING and self.repeat)

    @property
    def lease_s(self) -> float | None:
        """How long after sending an acknowledged beat this site's command may live; None if not announced."""
        if self.heartbeat_delay_s is None or self.heartbeat_stale_s is None:
            return None
        return max(0.0, self.heartbeat_stale_s - self.heartbeat_delay_s)


def parse_heartbeat(raw: Mapping[str, Any] | None, site: str) -> tuple[Heartbeat | None, list[str]]:
    """Parse a heartbeat; a bad ``state`` makes the site want nothing, never a crash."""
    if raw is None:
        return None, []
    if not isinstance(raw, Mapping):
        return None, ["document is not an object"]
    f = _Fields(raw)
    hb = Heartbeat(
        site=site,
        state=f.choice("state", SITE_STATES),
        repeat=f.flag("repeat"),
        host=f.text("host"),
        pid=f.integer("pid", None),
        instance=f.text("instance"),
        beat=f.integer("beat") or 0,
        time=f.text("time"),
        turn=f.integer("turn", None),
        message=f.text("message"),
        rev=raw.get("_rev"),
        heartbeat_delay_s=f.seconds("heartbeat_delay_s"),
        heartbeat_stale_s=f.seconds("heartbeat_stale_s"),
    )
    return hb, f.problems


def render_heartbeat(hb: Heartbeat, extra: Mapping[str, Any] = {}) -> dict[str, Any]:
    """The stored form of a heartbeat, carrying the ``_rev`` it replaces."""
    out: dict[str, Any] = {
        "_id": heartbeat_id(hb.site),
        "type": "enqueue_heartbeat",
        "schema": SCHEMA_VERSION,
        "site": hb.site,
        "state": hb.state,
        "repeat": hb.repeat,
        "host": hb.host,
        "pid": hb.pid,
        "instance": hb.instance,
        "beat": hb.beat,
        "time": hb.time,
        "turn": hb.turn,
        "message": hb.message,
        "heartbeat_delay_s": hb.heartbeat_delay_s,
        "heartbeat_stale_s": hb.heartbeat_stale_s,
    }
    out.update(extra)
    if hb.rev is not None:
        out["_rev"] = hb.rev
    return out


@dataclass(frozen=True)
class TurnRecord:
    """One finished turn, written once when it ends."""

    turn: int
    site: str
    how: str
    exit_code: int | None = None
    host: str | None = None
    leader: str | None = None
    started_at: str | None = None
    ended_at: str | None = None
    duration_s: float | None = None
    note: str | None = None


def parse_turn_record(raw: Mapping[str, Any] | None) -> tuple[TurnRecord | None, list[str]]:
    """Parse a turn record (for history); ``None`` when turn or site is unusable."""
    if raw is None:
        return None, []
    if not isinstance(raw, Mapping):
        return None, ["document is not an object"]
    f = _Fields(raw)
    duration = raw.get("duration_s")
    if duration is not None and (isinstance(duration, bool) or not isinstance(duration, (int, float))):
        f.problems.append(f"field 'duration_s' should be a number, not {duration!r:.60}")
        duration = None
    rec = TurnRecord(
        turn=f.integer("turn", required=True) or 0,
        site=f.site("site", required=True) or "",
        how=f.text("how") or "unknown",
        exit_code=f.integer("exit_code", None, minimum=-(2**31)),
        host=f.text("host"),
        leader=f.text("leader"),
        started_at=f.text("started_at"),
        ended_at=f.text("ended_at"),
        duration_s=float(duration) if duration is not None else None,
        note=f.text("note"),
    )
    if f.fatal:
        return None, f.problems
    return rec, f.problems


def render_turn_record(rec: TurnRecord) -> dict[str, Any]:
    """The stored form of a turn record (created once, never updated by the protocol)."""
    return {
        "_id": turn_record_id(rec.turn),
        "type": "enqueue_turn",
        "schema": SCHEMA_VERSION,
        "turn": rec.turn,
        "site": rec.site,
        "how": rec.how,
        "exit_code": rec.exit_code,
        "host": rec.host,
        "leader": rec.leader,
        "started_at": rec.started_at,
        "ended_at": rec.ended_at,
        "duration_s": None if rec.duration_s is None else round(rec.duration_s, 3),
        "note": rec.note,
    }

