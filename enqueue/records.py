"""Turn records: one document per finished turn, written once by the site or the leader that ended it.

The record's fields are docs/PROTOCOL.md §2.4; why every ended turn has one,
and where today's code falls short of that, §5.3 and §5.4.

``write_once`` creates the record of a turn, or completes what is already
stored under its id, so that ``enqueue history`` can read every turn:

* an identical try whose answer was lost (the record, or the report it
  added): nothing left to do;
* a record that says something else about a turn the writer ran (the
  leader's record of taking it away, or a record naming another site as its
  runner): the writer's own report is added under ``runner_report``, once;
* a ``not started`` record of a turn the writer takes back (or displaces)
  as started, having read it confirmed (its ``started_at`` in the leader
  doc): the writer's word is added under ``revoker_report``, naming it,
  once (``corrects_not_started``). That record was written by a leader that
  died before the write that would have ended the granted turn; the turn
  then ran;
* a document that does not parse, or names another turn: replaced, its old
  content kept under ``replaced``, with a warning.

``outcome`` is what a reader takes from a record: the runner's own report
when it made one (how, exit code, and when the command ended), and no
outcome at all (disputed) when the record and the report name different
runners; without one, the revoker's report on a ``not started`` record,
which carries the ``started_at`` of the confirm it read; else the record.
So a record a site wrote about a turn it did not run is never taken as that
turn's outcome once the runner has reported, and a ``not started`` is never
taken for a turn that another writer saw confirmed.

Not guaranteed: that a record another writer changes at the same moment is
completed; that loses a compare-and-swap, is logged, and the stored record
stays as the other writer left it.

A ``RecordQueue`` holds the records a writer still owes: each is written
now or, if the database is away, at the next ``flush``, in order, and leaves
the queue only once stored. It also stores the record a leader doc carries
(``LeaderDoc.last_record``, the finishing site's word written in the same
write that ended its turn: docs/PROTOCOL.md §3.8.2) when nobody has yet:
``store_carried`` returns only once a record of that turn is stored, so a
write made after it may replace the carried one without losing a turn.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, replace
from typing import Any, Mapping, Optional

from enqueue import documents as docs
from enqueue.documents import TurnRecord
from enqueue.errors import Conflict, Forbidden
from enqueue.outcomes import Outcome as How
from enqueue.store import Store

log = logging.getLogger("enqueue.records")

_REPORT_FIELDS = ("site", "how", "exit_code", "ended_at", "duration_s")
RUNNER_REPORT = "runner_report"
#: The field a writer that took back (or displaced) a turn it read as started adds to a ``not started`` record.
REVOKER_REPORT = "revoker_report"
#: What a revoker's report holds: who wrote it (``leader``), how it ended the turn, the ``started_at`` it read.
REVOKER_FIELDS = ("leader", "how", "started_at", "ended_at", "note")
#: How a revoker's report may say it ended a started turn.
REVOKER_HOWS = (How.REVOKED.value, How.REPAIRED.value)
DISPUTED = "disputed"
# How many turns a writer remembers as stored: a carried record is at most a few turns old.
_STORED_KEPT = 8


@dataclass(frozen=True)
class Outcome:
    """How a turn ended, as a reader should take it: ``how`` is ``disputed`` when the writers disagree on who ran it.

    ``ended_at`` and ``duration_s`` are the runner's when it reported: only
    the runner knows when its command ended. A record another writer made
    (the leader taking the turn away, a restarted agent, a repair) says when
    that writer ended the turn, by its own clock.
    """

    site: str
    how: str
    exit_code: Optional[int]
    dispute: Optional[str] = None
    ended_at: Optional[str] = None
    duration_s: Optional[float] = None
    note: Optional[str] = None
    """Why the outcome is not what the record itself says (a revoker's report), for people."""


def has_report(raw: Mapping[str, Any]) -> bool:
    """Another writer has completed the stored record ``raw`` (a runner's or a revoker's report)."""
    return RUNNER_REPORT in raw or REVOKER_REPORT in raw


def _text(value: object) -> Optional[str]:
    return value if isinstance(value, str) else None


def _revokers_word(rec: TurnRecord, raw: Mapping[str, Any]) -> Optional[Outcome]:
    """The revoker's report on the ``not started`` record ``rec``, when it is backed by the turn's start."""
    report = raw.get(REVOKER_REPORT)
    if rec.how != How.NOT_STARTED or not isinstance(report, Mapping) or \
            not isinstance(report.get("leader"), str) or report.get("how") not in REVOKER_HOWS or \
            not isinstance(report.get("started_at"), str):
        return None
    note = f"recorded 'not started' by {rec.leader or '?'}; {report['leader']} found it started at " \
           f"{report['started_at']} and ended it ({report['how']})"
    return Outcome(rec.site, report["how"], None, ended_at=_text(report.get("ended_at")), note=note)


def corrects_not_started(parsed: TurnRecord, existing: Mapping[str, Any], rec: TurnRecord, me: str) -> bool:
    """``rec``, the record of site ``me`` ending another site's turn it read as started, is due as a
    ``revoker_report`` on the stored record ``parsed``: that one says ``not started``, and nobody completed it."""
    return parsed.how == How.NOT_STARTED and rec.how in REVOKER_HOWS and rec.started_at is not None and \
        rec.site != me and rec.leader == me and parsed.site == rec.site and not has_report(existing)


def _says(rec: TurnRecord) -> tuple:
    return rec.site, rec.how, rec.exit_code


def outcome(rec: TurnRecord, raw: Mapping[str, Any]) -> Outcome:
    """The outcome of the turn ``rec`` (parsed from ``raw``) records: the runner's own word over anyone else's,
    then a revoker's word that the turn a ``not started`` record names had started, then the record's."""
    report = raw.get(RUNNER_REPORT)
    if not isinstance(report, Mapping) or not isinstance(report.get("site"), str):
        revoker = _revokers_word(rec, raw)
        if revoker is not None:
            return revoker
        return Outcome(rec.site, rec.how, rec.exit_code, ended_at=rec.ended_at, duration_s=rec.duration_s)
    how = report.get("how") if isinstance(report.get("how"), str) else "unknown"
    code = report.get("exit_code")
    code = code if isinstance(code, int) and not isinstance(code, bool) else None
    if report["site"] == rec.site:
        ended = report.get("ended_at")
        duration = report.get("duration_s")
        return Outcome(rec.site, how, code, ended_at=ended if isinstance(ended, str) else None,
                       duration_s=float(duration) if isinstance(duration, (int, float)) and
                       not isinstance(duration, bool) else None)
    return Outcome(rec.site, DISPUTED, None,
                   dispute=f"the record says {rec.site} ran it ({rec.how}, exit {rec.exit_code}); "
                           f"{report['site']} reports it ran it ({how}, exit {code})")


def as_read(rec: TurnRecord, raw: Mapping[str, Any]) -> TurnRecord:
    """``rec`` (parsed from ``raw``) with how, exit code, end and duration as a reader takes them (``outcome``)."""
    taken = outcome(rec, raw)
    return replace(rec, how=taken.how, exit_code=taken.exit_code, ended_at=taken.ended_at,
                   duration_s=taken.duration_s)


def write_once(store: Store, rec: TurnRecord, me: str, prefix: str = docs.TURN_PREFIX) -> None:
    """Store ``rec`` (written by site ``me``) under ``prefix`` (its document set's, ``docs.turn_prefix``),
    or complete the record already stored for its turn."""
    body = docs.render_turn_record(rec, prefix)
    doc_id = body["_id"]
    try:
        store.put(body)
        return
    except Conflict:
        pass
    existing = store.get(doc_id)
    parsed, problems = docs.parse_turn_record(existing)
    try:
        if existing is None:
            store.put(body)
        elif parsed is None or parsed.turn != rec.turn:
            log.warning("turn record %s does not parse (%s); replacing it, old content kept under 'replaced'",
                        doc_id, "; ".join(problems) or f"it names turn {parsed.turn if parsed else '?'}")
            body["_rev"] = existing["_rev"]
            body["replaced"] = {k: v for k, v in existing.items() if not k.startswith("_")}
            store.put(body)
        elif corrects_not_started(parsed, existing, rec, me):
            log.warning("turn record %s says %s's turn %d was not started, but this site read it started at %s: "
                        "adding its own report (%s)", doc_id, rec.site, rec.turn, rec.started_at, rec.how)
            existing[REVOKER_REPORT] = {"leader": me, **{k: body[k] for k in REVOKER_FIELDS[1:]}}
            store.put(existing)
        elif (rec.site == me or (rec.copied_by == me and parsed.site == rec.site)) and _says(parsed) != _says(rec):
            report = {k: body[k] for k in _REPORT_FIELDS}
            if rec.copied_by is not None:
                report["copied_by"] = rec.copied_by  # the runner's word, as the leader doc carried it
            if existing.get(RUNNER_REPORT) == report:
                return  # my own report, added by a try whose answer was lost
            if RUNNER_REPORT in existing and rec.copied_by is not None:
                return  # the runner reported itself
            if RUNNER_REPORT in existing:
                log.error("turn record %s says %s ran turn %d (%s) and has a report already; this site ran it "
                          "(%s, exit %s): its own report could not be added", doc_id, parsed.site, rec.turn,
                          parsed.how, rec.how, rec.exit_code)
                return
            if parsed.site != rec.site:
                log.error("turn record %s says %s ran turn %d, but this site did: adding its own report, so the "
                          "turn reads as disputed", doc_id, parsed.site, rec.turn)
            existing[RUNNER_REPORT] = report
            store.put(existing)
    except (Conflict, Forbidden) as exc:
        log.warning("could not complete turn record %s: %s", doc_id, exc)


class RecordQueue:
    """The turn records site ``me`` still has to write, oldest first."""

    def __init__(self, store: Store, me: str, prefix: str = docs.TURN_PREFIX) -> None:
        self._store = store
        self._me = me
        self._prefix = prefix  # the document set's (docs.turn_prefix)
        self.pending: list[TurnRecord] = []
        self._stored: deque[int] = deque(maxlen=_STORED_KEPT)  # turns known to have a stored record

    def add(self, rec: TurnRecord) -> None:
        """Queue ``rec`` and try to write everything queued (a StoreError leaves it queued)."""
        self.pending.append(rec)
        self.flush()

    def write_now(self, rec: TurnRecord) -> None:
        """Write ``rec`` now, outside the queue (a StoreError is the caller's to handle)."""
        write_once(self._store, rec, self._me, self._prefix)
        self._stored.append(rec.turn)

    def flush(self) -> None:
        """Write the queued records in order; stops at the first that fails (StoreError)."""
        while self.pending:
            self.write_now(self.pending[0])
            self.pending.pop(0)

    def store_carried(self, doc: docs.LeaderDoc | None) -> None:
        """Make sure the record ``doc`` carries is stored: if no record of its turn is, store it (a copy
        naming me as ``copied_by`` when the turn was another site's). A StoreError is the caller's to handle.

        Keeps: once this returned for ``doc``, a record of its ``last_record``'s turn is stored.
        """
        rec = None if doc is None else doc.last_record
        if rec is None or rec.turn in self._stored:
            return
        copy = rec if rec.site == self._me else replace(rec, copied_by=self._me)
        existing = self._store.get(docs.turn_record_id(rec.turn, self._prefix))
        parsed, _ = docs.parse_turn_record(existing)
        if existing is None or parsed is None or _says(parsed) != _says(rec):
            # Missing, or saying something else (a leader's "not started" of a turn that then ran): the runner's
            # word the leader doc carries is stored, as the record or as its report (``write_once``).
            self.write_now(copy)
        self._stored.append(rec.turn)
