"""``enqueue repair CONFIG``: rebuild a leader doc that is missing or does not parse, as an admin.

Site accounts may not create the leader doc (docs/SECURITY.md), so after an
admin deleted it the agents that run under them wait, saying so in their
heartbeats (``enqueue status`` shows a problem line), until an admin runs
this. The rebuild is the agents' own (``enqueue.admin_rebuild``,
docs/PROTOCOL.md §3.11): it waits out ``heartbeat_stale`` from the last change
it saw of the document (the deletion's tombstone included), reads it again,
and writes it at the revision count it replaces; nobody leads, no turn is
active, an admin's pause is kept, the old content stays under
``repaired_from``. The agents elect a leader and go on from there.

Output (stdout)::

    leader doc NAME is missing (revision R): waiting 12 s for any running turn's lease to run out
    still waiting 2 s
    rebuilt leader doc NAME at turn N (nobody leads; the agents elect a leader)

or ``leader doc NAME parses (turn N): nothing to repair``.
"""

from __future__ import annotations

import argparse
import time
from typing import Callable

from enqueue import documents as docs
from enqueue import steering
from enqueue.admin_rebuild import AdminRebuild
from enqueue.clock import SystemClock
from enqueue.errors import Forbidden
from enqueue.logs import add_logging_arguments

NAME = "repair"
HELP = "rebuild a leader doc that is missing or does not parse, once every lease it could have granted ran out"

#: How often a waiting rebuild says how long it still waits.
PROGRESS_EVERY_S = 10.0


def configure(parser: argparse.ArgumentParser) -> None:
    """Add ``repair``'s arguments to its subparser."""
    steering.add_config_argument(parser)
    steering.add_document_options(parser)
    add_logging_arguments(parser)
    parser.epilog = ("Waits heartbeat_stale (the longest of CONFIG's and the heartbeats') from the last change of "
                     "the leader doc before writing. Exit codes: 0 rebuilt (or nothing to repair); 2 configuration "
                     "error; 3 database unreachable; 4 credentials refused or not an admin's; 5 database missing.")


def rebuild(rebuilder: AdminRebuild, monotonic: Callable[[], float], sleep: Callable[[float], None],
            say: Callable[[str], None]) -> int | None:
    """Wait and rebuild; the turn written, or None when the leader doc parses (somebody else rebuilt it)."""
    said_waiting = False
    while True:
        now = monotonic()
        due = rebuilder.look(now)
        if due is None:
            return None
        left = due - now
        if left > 0:
            if not said_waiting:
                what = "is missing" if rebuilder.raw is None else "does not parse"
                say(f"leader doc {rebuilder.leader_doc} {what} (revision {rebuilder.rev or 'unknown'}): waiting "
                    f"{left:.0f} s for any running turn's lease to run out")
                said_waiting = True
            else:
                say(f"still waiting {left:.0f} s")
            sleep(min(left, PROGRESS_EVERY_S))
            continue
        turn = rebuilder.write(monotonic())
        if turn is not None:
            return turn


def execute(args: argparse.Namespace) -> int:
    """Rebuild the leader doc if it needs it; print what was done."""
    settings = steering.load_settings(args)
    clock = SystemClock()
    with steering.open_store(settings) as store:
        rebuilder = AdminRebuild(store, settings.leader_doc, settings.timing.heartbeat_stale_s,
                                 steering.actor(settings), lambda: steering.now_text(settings, clock))
        try:
            turn = rebuild(rebuilder, clock.monotonic, time.sleep, lambda line: print(line, flush=True))
        except Forbidden as exc:
            raise steering.needs_admin(exc) from None
        if turn is None:
            parsed, _ = docs.parse_leader(store.get(settings.leader_doc), settings.leader_doc)
            print(f"leader doc {settings.leader_doc} parses (turn {parsed.turn if parsed else '?'}): nothing to repair")
        else:
            print(f"rebuilt leader doc {settings.leader_doc} at turn {turn} (nobody leads; the agents elect a leader)")
    return 0
