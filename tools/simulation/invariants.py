"""What must hold, checked while the simulation runs and at its end.

``TurnBook`` follows every applied write to the leader doc and to the turn
records (the store tells it, with the writer), so it knows each turn's true
story: granted when and to whom, confirmed by which agent, ended by which
write, recorded by whom. With the commands' true lives from the runners'
``Ledger`` it checks:

* safety, at every step: no two commands alive at once, fencing tokens
  started once and increasing (``Ledger``), no turn number granted again
  once a grant of it was confirmed or recorded;
* records, at the end: every turn that is over has its record (unless an
  admin deleted or pruned it), written at the latest ``record_within_s``
  after the turn ended, or carried in the leader doc by the write that ended
  it (``last_record``); and at every step: no write but an admin's replaces
  a carried record before a record of its turn is stored;
* outcomes, at the end: a record, as a reader takes it (the runner's
  report, else a revoker's over a ``not started``: ``records.outcome``),
  says what truly happened: a command that
  never ran is not recorded as exited, fenced or stopped (nor one that ran
  as not started, unless an admin's deletion or garbling of the leader doc
  displaced its turn: then nobody alive may have read it started); an exit code is the command's own; a turn its own site
  ended is not recorded as revoked; a turn is not recorded as abandoned by
  the very agent that confirmed it; and a record's ``ended_at`` says what
  its writer knows (docs/PROTOCOL.md §2.4): written by the command's runner
  (the record, or the runner's report added to another's record), the
  command's true end by the runner's clock, to the second; written by anyone
  else, the moment that writer wrote it, by the writer's own clock;
* progress, at the end: after the faults heal, no stretch without a command
  lasts longer than ``progress_bound_s``.
"""

from __future__ import annotations

import datetime as _dt
import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Set, Tuple

from enqueue import documents as docs
from enqueue import records
from enqueue.config import DEFAULT_TIME_FORMAT
from enqueue.steering import parse_time

from tools.simulation.admin import ADMIN
from tools.simulation.faults import SLOW_MAX_S
from tools.simulation.runner import Command
from tools.simulation.world import SiteClock

# A record's ended_at is written to the second: allow for the rounding and for the report's way to the agent.
ENDED_AT_TOLERANCE_S = 1.5
# How long before a record is stored its writer may have read its clock for ended_at: the time is taken
# right before ``records.write_once``, which makes at most three requests (put, get, put), each possibly slow.
WRITE_WINDOW_S = 3 * SLOW_MAX_S
_REPORT = records.RUNNER_REPORT
# The reports other writers add to a stored record: the runner's, and a revoker's over a "not started".
_REPORTS = (records.RUNNER_REPORT, records.REVOKER_REPORT)
# Record fields that say who stored it, not what happened: a copy of a carried record differs only in them.
_NOT_SAID = ("copied_by", "type", "schema")
# How the leader-doc write that ended a turn says it ended when the runner's own agent did not end it.
_NOT_OWN_ENDINGS = ("revoked", "not started", "displaced", "superseded", "repaired")
# What an agent's heartbeat says when it finds the turn it ran taken away (enqueue.own_turn).
_REVOKED_MESSAGE = re.compile(r"turn (\d+) was revoked while running$")


@dataclass
class TurnStory:
    turn: int
    granted_to: str
    granted_at: float
    # The agent that confirmed the turn; for a turn started on its grant alone (no confirm), the one that started
    # it, filled in from the commands at the end (``TurnBook.started``).
    confirmed_by: Optional[str] = None
    ended_at: Optional[float] = None
    ended_by: Optional[str] = None
    ended_how: Optional[str] = None
    recorded_at: Optional[float] = None
    recorded_by: Optional[str] = None
    # When the write that ended the turn carried its record in the leader doc (``last_record``), and who wrote it.
    carried_at: Optional[float] = None
    carried_by: Optional[str] = None
    carried: Optional[dict] = None  # what it carried (``documents.record_fields``, without ``_NOT_SAID``)


@dataclass
class Authorship:
    """Who wrote what a stored record says: its own fields, and each report added to it (by field), and when."""

    body: dict
    author: str
    written_at: float
    reports: Dict[str, Tuple[str, float]] = field(default_factory=dict)


def _own_fields(body: dict) -> dict:
    return {k: v for k, v in body.items() if k not in _REPORTS and not k.startswith("_")}


@dataclass
class TurnBook:
    stories: Dict[int, TurnStory] = field(default_factory=dict)
    violations: List[str] = field(default_factory=list)
    highest_granted: int = 0
    authors: Dict[int, Authorship] = field(default_factory=dict)
    # (turn, agent): an agent said in its heartbeat that the turn was taken from it while it ran.
    revocations_told: Dict[tuple, float] = field(default_factory=dict)
    deleted_by_admin: Set[int] = field(default_factory=set)  # turns whose record an admin deleted

    def leader_changed(self, old: Optional[dict], new: Optional[dict], writer: str, now: float) -> None:
        before, _ = docs.parse_leader(old, docs_id(old, new))
        after, _ = docs.parse_leader(new, docs_id(old, new))
        self._carried(before, after, writer, now)
        if before is not None and before.turn_active:
            t = before.turn
            story = self.stories.get(t)
            ended = after is None or after.turn != t or after.status == docs.DONE
            if story is not None and story.ended_at is None and ended:
                story.ended_at, story.ended_by = now, writer
                story.ended_how = after.last_how if after is not None and after.turn == t else \
                    "displaced" if after is None else (after.last_how or "superseded")
            if (story is not None and after is not None and after.turn == t and before.status == docs.GRANTED
                    and after.status == docs.RUNNING):
                story.confirmed_by = writer
        if after is not None and after.status == docs.GRANTED and (before is None or before.turn != after.turn
                                                                   or before.status != docs.GRANTED):
            t = after.turn
            first = self.stories.get(t)
            if first is not None and (first.confirmed_by is not None or first.recorded_at is not None):
                # A grant nobody confirmed or recorded may be lost with a leader doc an admin destroyed
                # and its number given again: no command ran under it. Any other repeat is a reuse.
                self.violations.append(
                    f"[token] turn {t} granted to {after.running} by {writer} at {now:.3f}, though it was granted to "
                    f"{first.granted_to} at {first.granted_at:.3f} and "
                    + (f"confirmed by {first.confirmed_by}" if first.confirmed_by else "recorded")
                    + " (a fencing token handed out twice)")
            self.highest_granted = max(self.highest_granted, t)
            if first is None or first.ended_at is not None:
                self.stories[t] = TurnStory(t, after.running or "?", now)

    def _carried(self, before: Optional[docs.LeaderDoc], after: Optional[docs.LeaderDoc], writer: str,
                 now: float) -> None:
        """A record the leader doc carries counts as the turn's from the write that put it there; a write that
        replaces it before a record of its turn is stored loses it (an admin's deletion or garbling aside)."""
        was = before.last_record if before is not None else None
        now_carried = after.last_record if after is not None else None
        if now_carried is not None and (was is None or was != now_carried):
            story = self.stories.get(now_carried.turn)
            if story is not None and story.carried_at is None:
                story.carried_at, story.carried_by = now, writer
                story.carried = {k: v for k, v in docs.record_fields(now_carried).items() if k not in _NOT_SAID}
        if was is None or (now_carried is not None and now_carried.turn == was.turn):
            return
        if was.turn not in self.authors and was.turn not in self.deleted_by_admin and writer != ADMIN:
            self.violations.append(
                f"[record] {writer} replaced the record of turn {was.turn} the leader doc carried at {now:.3f}, "
                "before any record of that turn was stored")

    def started(self, commands: List[Command]) -> int:
        """Take in who started each turn that had no confirm (it started on its grant alone); how many did."""
        on_grant = 0
        for cmd in commands:
            story = self.stories.get(cmd.turn)
            if story is not None and story.confirmed_by is None:
                story.confirmed_by = cmd.instance
                on_grant += 1
        return on_grant

    def record_changed(self, doc_id: str, new: Optional[dict], writer: str, now: float) -> None:
        number = doc_id[len(docs.TURN_PREFIX):]
        if number.isdigit():
            self._authored(int(number), new, writer, now)
            if new is None and writer == ADMIN:
                self.deleted_by_admin.add(int(number))
        story = self.stories.get(int(number)) if number.isdigit() else None
        if story is None:
            return
        if new is None:
            # Deleted (an admin's are left out of the record check; an agent's must be written again).
            story.recorded_at = story.recorded_by = None
        elif story.recorded_at is None:
            story.recorded_at, story.recorded_by = now, writer

    def heartbeat_changed(self, new: Optional[dict], writer: str, now: float) -> None:
        message = new.get("message") if new is not None else None
        told = _REVOKED_MESSAGE.match(message) if isinstance(message, str) else None
        if told is not None:
            self.revocations_told.setdefault((int(told.group(1)), writer), now)

    def _authored(self, turn: int, new: Optional[dict], writer: str, now: float) -> None:
        before = self.authors.get(turn)
        story = self.stories.get(turn)
        if new is not None and story is not None and story.carried is not None and \
                {k: v for k, v in _own_fields(new).items() if k not in _NOT_SAID} == story.carried:
            # A copy of what the leader doc carried (by any agent) says what its writer wrote there, and when.
            writer, now = story.carried_by or writer, story.carried_at or now
        if new is None:
            self.authors.pop(turn, None)
        elif before is None or _own_fields(before.body) != _own_fields(new):
            self.authors[turn] = Authorship(dict(new), writer, now, {key: (writer, now) for key in _REPORTS
                                                                     if key in new})
        else:
            for key in _REPORTS:
                if new.get(key) != before.body.get(key):
                    before.reports[key] = (writer, now)
                    report = new.get(key)
                    if isinstance(report, dict) and report.get("copied_by") and story is not None and \
                            story.carried_by is not None:
                        # The runner's word as the leader doc carried it, added by the agent that stored it.
                        before.reports[key] = (story.carried_by, story.carried_at or now)
            before.body = dict(new)


def docs_id(old: Optional[dict], new: Optional[dict]) -> str:
    for body in (new, old):
        if body is not None and "_id" in body:
            return str(body["_id"])
    return "?"


@dataclass
class Judge:
    """The end-of-run checks, over the book, the commands and the records left in the database."""

    book: TurnBook
    commands: List[Command]
    records: Dict[int, dict]
    removed: Set[int]
    end: float
    record_within_s: float
    walls: Dict[str, SiteClock]  # each site's clocks, to read a record's ended_at
    instance_site: Dict[str, str]
    admin_clock: SiteClock
    time_format: str = DEFAULT_TIME_FORMAT

    def records_missing(self) -> List[str]:
        out = []
        for t, story in sorted(self.book.stories.items()):
            if story.ended_at is None or t in self.removed or story.ended_how == "displaced":
                # A turn in progress when an admin deleted or garbled the leader doc is recorded by its
                # site when it notices, or by the repair when a heartbeat names its site: not always.
                continue
            # Carried in the leader doc counts: replacing it before it is stored is caught as it happens.
            recorded_at = min((at for at in (story.recorded_at, story.carried_at) if at is not None), default=None)
            if recorded_at is not None and recorded_at <= story.ended_at + self.record_within_s:
                continue
            if recorded_at is None and story.ended_at > self.end - self.record_within_s:
                continue
            late = "" if recorded_at is None else f" until {recorded_at:.3f}"
            out.append(f"[record] turn {t} of {story.granted_to} ended at {story.ended_at:.3f} ({story.ended_how}, "
                       f"written by {story.ended_by}) without a record{late}")
        return out

    def outcomes_wrong(self) -> List[str]:
        out = []
        by_turn: Dict[int, Command] = {}
        for cmd in self.commands:
            by_turn.setdefault(cmd.turn, cmd)
        for t, raw in sorted(self.records.items()):
            rec, _ = docs.parse_turn_record(raw)
            story = self.book.stories.get(t)
            if rec is None or story is None or t in self.removed:
                continue
            cmd = by_turn.get(t)
            report = raw.get(_REPORT)
            own = isinstance(report, dict) and isinstance(report.get("how"), str)
            # Without the runner's word, what a reader takes: a revoker's over a "not started", or the record.
            taken = records.outcome(rec, raw)
            how = report["how"] if own else taken.how
            exit_code = report.get("exit_code") if own else taken.exit_code
            base = how.replace(" after revocation", "")
            if cmd is None and (base in ("exited", "fenced", "stopped") or exit_code is not None):
                out.append(f"[outcome] record of turn {t} says '{how}' (exit code {exit_code}) but its command "
                           "never ran")
            # A turn an admin's deletion or garbling displaced, whose holder died too, may be known to have
            # started by nobody alive: the record a dead leader left of its grant stays (PROTOCOL §5.4.1, left).
            if cmd is not None and base == "not started" and story.ended_how != "displaced":
                out.append(f"[outcome] record of turn {t} says 'not started' but {cmd.describe()}")
            if cmd is not None and cmd.end is not None and cmd.how == "exited" and base == "exited" \
                    and exit_code != cmd.exit_code:
                out.append(f"[outcome] record of turn {t} says exit code {exit_code}, the command exited with "
                           f"{cmd.exit_code}")
            own_end = story.ended_by is not None and story.ended_by == story.confirmed_by \
                and story.ended_how not in _NOT_OWN_ENDINGS
            if own_end and ("revok" in how):
                out.append(f"[false-alarm] record of turn {t} says '{how}', but its own agent {story.ended_by} "
                           f"ended it "
                           f"('{story.ended_how}')")
            # The word read is the runner's report when there is one: it may come from another agent than the
            # record it was added to (a later agent of the site, over a leader's 'not started' of that turn).
            said_by = self._report_writer(t) if own else story.recorded_by
            if base == "abandoned" and said_by is not None and said_by == story.confirmed_by:
                out.append(f"[false-alarm] record of turn {t} says 'abandoned' though the agent that wrote it, "
                           f"{said_by}, confirmed the turn itself")
            out += self._ended_at_wrong(t, raw, cmd)
        return out

    def alarms_false(self) -> List[str]:
        """An agent that says (in its heartbeat) its turn was taken away, though its own write ended it."""
        out = []
        for (t, agent), at in sorted(self.book.revocations_told.items()):
            story = self.book.stories.get(t)
            if story is not None and story.ended_by == agent == story.confirmed_by and \
                    story.ended_how not in _NOT_OWN_ENDINGS:
                out.append(f"[false-alarm] {agent} said at {at:.3f} that turn {t} was revoked while running, but its "
                           f"own write ended it ('{story.ended_how}') at {story.ended_at:.3f}")
        return out

    def _clock_of(self, writer: str) -> Optional[SiteClock]:
        return self.admin_clock if writer == "admin" else self.walls.get(self.instance_site.get(writer, ""))

    def _report_writer(self, t: int) -> Optional[str]:
        """The agent that wrote the runner's report in the record of turn ``t`` (None if not known)."""
        auth = self.book.authors.get(t)
        written = auth.reports.get(_REPORT) if auth is not None else None
        return written[0] if written is not None else None

    def _ended_at_wrong(self, t: int, raw: dict, cmd: Optional[Command]) -> List[str]:
        """What is wrong with the ``ended_at`` of the record of turn ``t`` and of the runner's report in it."""
        auth = self.book.authors.get(t)
        if auth is None:
            return []
        pieces = [("record", raw, auth.author, auth.written_at)]
        for key in _REPORTS:
            report = raw.get(key)
            if isinstance(report, dict) and key in auth.reports:
                pieces.append((f"{key.replace('_', ' ')} in the record", report, *auth.reports[key]))
        out = []
        for what, fields, author, at in pieces:
            text = fields.get("ended_at")
            written = parse_time(text if isinstance(text, str) else None, self.time_format)
            clock = self._clock_of(author)
            if written is None or clock is None:
                continue
            # Only the runner measures how long its command ran: what it wrote with a duration is its report.
            runners_word = author == (cmd.instance if cmd is not None else None) and fields.get("duration_s") is not None
            if cmd is not None and cmd.end is not None and runners_word:
                true_end: _dt.datetime = clock.wall_at(cmd.end)
                off = abs((written - true_end).total_seconds())
                if off > ENDED_AT_TOLERANCE_S:
                    out.append(f"[ended-at] {what} of turn {t}, by its runner {author}, says it ended at {text}; "
                               f"its command ended {off:.1f} s {'earlier' if written > true_end else 'later'} "
                               f"({true_end.strftime(self.time_format)})")
                continue
            # Anyone else (and the runner's agent writing for another reason: a repair) knows only when it
            # wrote the record, by its own clock, to the second.
            earliest = clock.wall_at(at - WRITE_WINDOW_S) - _dt.timedelta(seconds=1.0)
            latest = clock.wall_at(at) + _dt.timedelta(seconds=0.01)
            if not earliest <= written <= latest:
                out.append(f"[ended-at] {what} of turn {t}, by {author} (not its runner), says it ended at {text}; "
                           f"its writer's clock read {clock.wall_at(at).strftime(self.time_format)} when it was "
                           f"stored")
        return out

    def stalls(self, healed_at: Optional[float], bound_s: float) -> List[str]:
        if healed_at is None:
            return []
        spans = sorted((c.start, c.end if c.end is not None else self.end) for c in self.commands)
        idle_from = healed_at
        out = []
        for start, end in spans:
            if end <= idle_from:
                continue
            if start > idle_from and start - idle_from > bound_s:
                out.append(f"[progress] no command from {idle_from:.3f} to {start:.3f} ({start - idle_from:.1f} s) "
                           f"after the "
                           f"faults healed at {healed_at:.3f}; the bound is {bound_s:.1f} s")
            idle_from = max(idle_from, end)
        if self.end - idle_from > bound_s:
            out.append(f"[progress] no command from {idle_from:.3f} to the end at {self.end:.3f} "
                       f"({self.end - idle_from:.1f} s) "
                       f"after the faults healed at {healed_at:.3f}; the bound is {bound_s:.1f} s")
        return out
