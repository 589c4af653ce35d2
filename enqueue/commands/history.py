"""``enqueue history CONFIG [--site SITE] [--limit N] [--json | --timeline FILE]``: the finished turns.

Read from the turn records (``enqueue_turn:<number>``, or
``<leader doc>:turn:<number>`` for another document set), which the site
that ran a turn writes when it ends, and the leader writes for a turn it
took away. Read-only. Records that do not parse are named on stderr and
left out.

Text output: a table, newest first, with the columns TURN, SITE, HOST, GAP
(from the end of the turn before to this one's start), STARTED, ENDED (UTC,
as stored), DURATION, EXIT, HOW and NOTE; ENDED, DURATION, EXIT and HOW are
the turn's outcome as ``records.outcome`` reads it (the runner's own report
over the leader's record; ``disputed`` when two sites say they ran it, the NOTE says
who; a revoker's report over a ``not started`` record of a turn that had
started, the NOTE says whose). ``--json`` prints ``{"turns": [...]}`` with the keys documented in
docs/OPERATIONS.md. ``--timeline FILE`` draws the turns (all of them unless
``--limit`` is given) into FILE, an SVG picture or an HTML page holding it,
chosen by FILE's ending (``enqueue.timeline``).

A ``--site`` that is neither registered nor named by any record is refused
(exit 1), so a misspelt name does not read as "no turns yet".
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
from typing import Any, Optional

from enqueue import documents as docs
from enqueue import records, steering, table, timeline
from enqueue.durations import format_duration
from enqueue.errors import ConfigError
from enqueue.logs import add_logging_arguments
from enqueue.store import Store

NAME = "history"
HELP = "list the finished turns, newest first, from the turn records (read-only)"

DEFAULT_LIMIT = 20
TIMELINE_ENDINGS = (".svg", ".html")
_NOTE_WIDTH = 60

log = logging.getLogger("enqueue.admin")


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} is negative")
    return value


def configure(parser: argparse.ArgumentParser) -> None:
    """Add ``history``'s arguments to its subparser."""
    steering.add_config_argument(parser)
    parser.add_argument("--site", metavar="SITE", help="only the turns of SITE")
    parser.add_argument("--limit", type=_count, default=None, metavar="N",
                        help=f"show the newest N turns (default: {DEFAULT_LIMIT}, all for --timeline; 0: all)")
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true",
                        help="print {\"turns\": [...]} (keys in docs/OPERATIONS.md) instead of the table")
    output.add_argument("--timeline", metavar="FILE",
                        help="draw the turns into FILE: one lane per site, a bar per turn coloured by how it "
                             "ended; FILE.svg is a picture, FILE.html a page holding it")
    steering.add_document_options(parser)
    add_logging_arguments(parser)
    parser.epilog = "Exit codes: 0 shown; 1 unknown --site; 2 usage or configuration error (also a --timeline " \
                    "FILE that does not end in .svg or .html or cannot be written); 3 database unreachable; " \
                    "4 credentials refused; 5 database missing."


#: Marks, in ``--json``, a turn whose record the leader doc still carries (docs/PROTOCOL.md §3.8.2).
CARRIED = "carried_in_leader_doc"


def read_turns(store: Store, site: Optional[str], limit: int,
               prefix: str = docs.TURN_PREFIX,
               every: Optional[list[docs.TurnRecord]] = None,
               carried: Optional[docs.TurnRecord] = None) -> list[tuple[docs.TurnRecord, dict]]:
    """The newest ``limit`` parsed turn records (all when 0) under ``prefix``, of ``site`` only when given,
    newest first.

    Without ``site``, one record more than asked for is returned when it
    exists (the turn before the oldest shown), so that turn's gap is known.
    ``every`` receives every parsed record read, of any site. ``carried``:
    the record the leader doc carries, shown as a turn's record until one
    of that turn is stored.
    """
    server_limit = limit + 1 if limit and site is None else None
    rows = store.list_prefix(prefix, descending=True, limit=server_limit)
    if server_limit is not None and len(rows) == server_limit:
        if sum(1 for raw in rows if docs.parse_turn_record(raw)[0] is not None) < limit:
            # Records that do not parse took places in the page: read them all.
            rows = store.list_prefix(prefix, descending=True)
    if carried is not None and not any(raw.get("turn") == carried.turn for raw in rows) and \
            (not rows or not isinstance(rows[0].get("turn"), int) or rows[0]["turn"] < carried.turn):
        rows = [dict(docs.render_turn_record(carried, prefix), **{CARRIED: True})] + rows
    out = []
    for raw in rows:
        rec, problems = docs.parse_turn_record(raw)
        if rec is None:
            log.warning("turn record %s does not parse, left out: %s", raw.get("_id", "?"), "; ".join(problems))
            continue
        if every is not None:
            every.append(rec)
        if site is not None and rec.site != site:
            continue
        if limit and len(out) >= (limit if site is not None else limit + 1):
            continue
        out.append((rec, raw))
    return out


def as_json(rec: docs.TurnRecord, raw: dict, gap_s: Optional[float] = None) -> dict[str, Any]:
    """One turn for ``--json``: the record's fields, plus the runner's and a revoker's reports added to it."""
    report = raw.get(records.RUNNER_REPORT)
    revoker = raw.get(records.REVOKER_REPORT)
    taken = records.outcome(rec, raw)
    return {
        "turn": rec.turn,
        "site": rec.site,
        "host": rec.host,
        "leader": rec.leader,
        "how": rec.how,
        "exit_code": rec.exit_code,
        "started_at": rec.started_at,
        "ended_at": rec.ended_at,
        "duration_s": rec.duration_s,
        "note": rec.note,
        "runner_report": report if isinstance(report, dict) else None,
        "revoker_report": revoker if isinstance(revoker, dict) else None,
        "outcome": {"how": taken.how, "exit_code": taken.exit_code, "dispute": taken.dispute,
                    "ended_at": taken.ended_at, "duration_s": taken.duration_s, "note": taken.note},
        "gap_before_s": None if gap_s is None else round(gap_s, 3),
        CARRIED: bool(raw.get(CARRIED)),
    }


def _short(text: Optional[str]) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= _NOTE_WIDTH else text[: _NOTE_WIDTH - 3] + "..."


def render_table(turns: list[tuple[docs.TurnRecord, dict]], gaps: Optional[dict[int, float]] = None) -> list[str]:
    """The history table, one line per turn; GAP is the idle time before the turn ("-" when unknown)."""
    header = ["TURN", "SITE", "HOST", "GAP", "STARTED (UTC)", "ENDED (UTC)", "DURATION", "EXIT", "HOW", "NOTE"]
    gaps = gaps or {}
    rows = []
    for rec, raw in turns:
        taken = records.outcome(rec, raw)
        gap = gaps.get(rec.turn)
        rows.append([
            str(rec.turn), rec.site, rec.host or "-", "-" if gap is None else format_duration(gap),
            rec.started_at or "-", taken.ended_at or "-",
            "-" if taken.duration_s is None else format_duration(taken.duration_s),
            "-" if taken.exit_code is None else str(taken.exit_code), taken.how, _short(taken.dispute or taken.note or rec.note),
        ])
    return table.render(header, rows)


def _timeline_path(path: str) -> str:
    if not path.lower().endswith(TIMELINE_ENDINGS):
        raise ConfigError(f"--timeline {path}: the file name must end in .svg (a picture) or .html (a page)")
    return os.path.abspath(path)


def write_file(path: str, text: str) -> None:
    """Write ``text`` to ``path`` whole or not at all (a temporary file renamed into place)."""
    directory = os.path.dirname(path) or "."
    try:
        fd, tmp = tempfile.mkstemp(prefix=".timeline-", dir=directory)
    except OSError as exc:
        raise ConfigError(f"--timeline {path}: cannot write there: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except OSError as exc:
        os.unlink(tmp)
        raise ConfigError(f"--timeline {path}: cannot write there: {exc.strerror or exc}") from None


def _pause(store: Store, settings: steering.AdminSettings) -> Optional[timeline.Pause]:
    """The pause in force now, from the leader doc (the records keep no pauses)."""
    leader, _ = docs.parse_leader(store.get(settings.leader_doc), settings.leader_doc)
    if leader is None or not leader.paused:
        return None
    since = steering.parse_time(leader.raw.get("paused_at"), settings.time_format)
    now = steering.parse_time(steering.now_text(settings), settings.time_format)
    if since is None or now is None:
        return None
    reason = f" (reason: {leader.paused_reason})" if leader.paused_reason else ""
    return timeline.Pause(since, now, f"paused since {leader.raw.get('paused_at')} UTC{reason}, still paused")


def _check_site(store: Store, settings: steering.AdminSettings, site: str) -> None:
    """Refuse a site that is neither registered nor named by a record (a misspelt name)."""
    sites, _ = docs.parse_sites(store.get(settings.sites_doc), settings.sites_doc, settings.leader_doc)
    if sites is not None and site in sites.sites:
        return
    known = ", ".join(sorted(sites.sites)) if sites is not None and sites.sites else "none"
    raise steering.Refused(f"site {site!r} never took a turn and is not registered in {settings.sites_doc} "
                           f"(registered: {known}); check the name")


def execute(args: argparse.Namespace) -> int:
    """Print the newest turns, or draw them with ``--timeline``."""
    path = _timeline_path(args.timeline) if args.timeline else None
    limit = args.limit if args.limit is not None else (0 if path else DEFAULT_LIMIT)
    settings = steering.load_settings(args)
    pause = None
    with steering.open_store(settings) as store:
        store.check()
        every: list[docs.TurnRecord] = []
        leader, _ = docs.parse_leader(store.get(settings.leader_doc), settings.leader_doc)
        turns = read_turns(store, args.site, limit, docs.turn_prefix(settings.leader_doc), every,
                           leader.last_record if leader is not None else None)
        if args.site is not None and not turns:
            _check_site(store, settings, args.site)
        if path:
            pause = _pause(store, settings)
    gaps = timeline.gaps_before(timeline.spans(every, settings.time_format))
    placed = timeline.spans([rec for rec, _raw in turns], settings.time_format)
    if args.site is None and limit and len(turns) > limit:
        turns = turns[:limit]  # the extra, older record only told the oldest shown turn's gap
        placed = [s for s in placed if s.turn >= turns[-1][0].turn]
    if path:
        title = f"enqueue turns in database {settings.connection.database!r}" + \
            (f", site {args.site}" if args.site else "")
        svg = timeline.render_svg(placed, title=title, pause=pause)
        write_file(path, timeline.render_html(svg, title=title) if path.lower().endswith(".html") else svg)
        print(f"wrote the timeline of {len(placed)} turns to {path}")
        return 0
    if args.json:
        print(json.dumps({"turns": [as_json(rec, raw, gaps.get(rec.turn)) for rec, raw in turns]}, indent=2))
        return 0
    if not turns:
        print("no turn records" + (f" for site {args.site}" if args.site else ""))
        return 0
    for line in render_table(turns, gaps):
        print(line)
    return 0
