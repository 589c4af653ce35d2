"""``enqueue pause CONFIG [--reason TEXT]``: stop granting new turns.

Sets ``paused: true`` in the leader doc (with ``paused_reason``,
``paused_by``, ``paused_at``) by compare-and-swap. The leader grants nothing
while paused, and a finishing site passes no turn on. A turn already granted
or running is not touched: it runs to its end (``enqueue skip`` ends it now).
With no leader doc yet, one is created paused, so production can start
paused.

Output (stdout), one of::

    paused: no new turn will be granted (reason: TEXT)
    already paused since TIME by WHO (reason: TEXT); nothing changed
    already paused since TIME by WHO; reason changed to: TEXT

followed by one line on the turn in progress, if any.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from typing import Any, Optional

from enqueue import documents as docs
from enqueue import steering
from enqueue.logs import add_logging_arguments

NAME = "pause"
HELP = "stop granting new turns; the turn in progress runs to its end"

#: Extra leader-doc fields a pause writes (kept by every writer, removed by resume).
PAUSED_BY = "paused_by"
PAUSED_AT = "paused_at"


def configure(parser: argparse.ArgumentParser) -> None:
    """Add ``pause``'s arguments to its subparser."""
    steering.add_config_argument(parser)
    parser.add_argument("--reason", metavar="TEXT",
                        help="why production is paused; stored in the leader doc and shown by 'enqueue status'")
    steering.add_document_options(parser)
    add_logging_arguments(parser)
    parser.epilog = "Exit codes: 0 paused (or already paused); 1 refused (leader doc does not parse); " \
                    "2 configuration error; 3 database unreachable; 4 credentials refused; 5 database missing."


def paused(doc: docs.LeaderDoc, reason: Optional[str], who: str, when: str) -> docs.LeaderDoc:
    """``doc`` paused by ``who`` at ``when`` for ``reason``; the turn fields are left alone."""
    raw = dict(doc.raw)
    raw[PAUSED_BY] = who
    raw[PAUSED_AT] = when
    return replace(doc, paused=True, paused_reason=reason, updated_by=who, updated_at=when, raw=raw)


def pause_summary(doc: docs.LeaderDoc) -> str:
    """``since TIME by WHO (reason: TEXT)``, leaving out what the leader doc does not say."""
    parts = []
    if doc.raw.get(PAUSED_AT):
        parts.append(f"since {doc.raw[PAUSED_AT]}")
    if doc.raw.get(PAUSED_BY):
        parts.append(f"by {doc.raw[PAUSED_BY]}")
    if doc.paused_reason:
        parts.append(f"(reason: {doc.paused_reason})")
    return " ".join(parts)


def describe_turn(doc: Optional[docs.LeaderDoc]) -> Optional[str]:
    """One line on the turn in progress during a pause, or None when there is none."""
    if doc is None or not doc.turn_active:
        return None
    if doc.status == docs.RUNNING:
        return f"turn {doc.turn} of {doc.running} is running and goes on to its end ('enqueue skip' ends it now)"
    return f"turn {doc.turn} was granted to {doc.running} before the pause and will still run"


def execute(args: argparse.Namespace) -> int:
    """Pause the rotation; print what was done."""
    settings = steering.load_settings(args)
    who = steering.actor(settings)
    reason = args.reason if args.reason else None
    seen: dict[str, Any] = {}

    def change(raw: Optional[dict]) -> Optional[dict]:
        doc = steering.read_leader(raw, settings) or docs.new_leader_doc(settings.leader_doc)
        seen["doc"] = doc
        if doc.paused and (reason is None or reason == doc.paused_reason):
            return None
        return docs.render_leader(paused(doc, reason if reason is not None else doc.paused_reason,
                                         who, steering.now_text(settings)))

    with steering.open_store(settings) as store:
        written = steering.update(store, settings.leader_doc, change)
    before: docs.LeaderDoc = seen["doc"]
    if written is None:
        print(" ".join(filter(None, ["already paused", pause_summary(before)])) + "; nothing changed")
    elif before.paused:
        print(" ".join(filter(None, ["already paused", pause_summary(before)])) + f"; reason changed to: {reason}")
    else:
        print("paused: no new turn will be granted" + (f" (reason: {reason})" if reason else ""))
    line = describe_turn(before)
    if line:
        print(line)
    return 0
