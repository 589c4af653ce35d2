"""``enqueue history CONFIG [--site SITE] [--limit N] [--json]``: the finished turns, newest first.

Read from the turn records (``enqueue_turn:<number>``), which the site that
ran a turn writes when it ends, and the leader writes for a turn it took
away. Read-only. Records that do not parse are named on stderr and left out.

Text output: a table with the columns TURN, SITE, HOST, STARTED, ENDED (UTC,
as stored), DURATION, EXIT, HOW and NOTE. ``--json`` prints
``{"turns": [...]}`` with the keys documented in docs/OPERATIONS.md.
"""

from __future__ import annotations

import argparse
import json
import logging
from typing import Any, Optional

from enqueue import documents as docs
from enqueue import steering
from enqueue.durations import format_duration
from enqueue.logs import add_logging_arguments
from enqueue.store import Store

NAME = "history"
HELP = "list the finished turns, newest first, from the turn records (read-only)"

DEFAULT_LIMIT = 20
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
    parser.add_argument("--limit", type=_count, default=DEFAULT_LIMIT, metavar="N",
                        help=f"show the newest N turns (default: {DEFAULT_LIMIT}; 0: all)")
    parser.add_argument("--json", action="store_true",
                        help="print {\"turns\": [...]} (keys in docs/OPERATIONS.md) instead of the table")
    steering.add_document_options(parser)
    add_logging_arguments(parser)
    parser.epilog = "Exit codes: 0 shown; 2 configuration error; 3 database unreachable; 4 credentials refused; " \
                    "5 database missing."


def read_turns(store: Store, site: Optional[str], limit: int) -> list[tuple[docs.TurnRecord, dict]]:
    """The newest ``limit`` parsed turn records (all when 0), of ``site`` only when given, newest first."""
    server_limit = limit if limit and site is None else None
    rows = store.list_prefix(docs.TURN_PREFIX, descending=True, limit=server_limit)
    if server_limit is not None and len(rows) == server_limit:
        if sum(1 for raw in rows if docs.parse_turn_record(raw)[0] is not None) < limit:
            # Records that do not parse took places in the page: read them all.
            rows = store.list_prefix(docs.TURN_PREFIX, descending=True)
    out = []
    for raw in rows:
        rec, problems = docs.parse_turn_record(raw)
        if rec is None:
            log.warning("turn record %s does not parse, left out: %s", raw.get("_id", "?"), "; ".join(problems))
            continue
        if site is not None and rec.site != site:
            continue
        out.append((rec, raw))
        if limit and len(out) >= limit:
            break
    return out


def as_json(rec: docs.TurnRecord, raw: dict) -> dict[str, Any]:
    """One turn for ``--json``: the record's fields, plus the runner's own report when the leader wrote the record."""
    report = raw.get("runner_report")
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
    }


def _short(text: Optional[str]) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= _NOTE_WIDTH else text[: _NOTE_WIDTH - 3] + "..."


def render_table(turns: list[tuple[docs.TurnRecord, dict]]) -> list[str]:
    """The history table, one line per turn."""
    rows = [["TURN", "SITE", "HOST", "STARTED (UTC)", "ENDED (UTC)", "DURATION", "EXIT", "HOW", "NOTE"]]
    for rec, _raw in turns:
        rows.append([
            str(rec.turn), rec.site, rec.host or "-", rec.started_at or "-", rec.ended_at or "-",
            "-" if rec.duration_s is None else format_duration(rec.duration_s),
            "-" if rec.exit_code is None else str(rec.exit_code), rec.how, _short(rec.note),
        ])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]


def execute(args: argparse.Namespace) -> int:
    """Print the newest turns."""
    settings = steering.load_settings(args)
    with steering.open_store(settings) as store:
        store.check()
        turns = read_turns(store, args.site, args.limit)
    if args.json:
        print(json.dumps({"turns": [as_json(rec, raw) for rec, raw in turns]}, indent=2))
        return 0
    if not turns:
        print("no turn records" + (f" for site {args.site}" if args.site else ""))
        return 0
    for line in render_table(turns):
        print(line)
    return 0
