"""``enqueue resume CONFIG``: grant turns again after ``enqueue pause``.

Clears ``paused`` (and ``paused_reason``, ``paused_by``, ``paused_at``) in
the leader doc by compare-and-swap. The leader watches that document and
grants the next turn within one round trip; with no live leader, the next
agent to notice elects itself and grants.

Output (stdout), one of::

    resumed: turns are granted again (it was paused since TIME by WHO (reason: TEXT))
    not paused; nothing changed
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from typing import Any, Optional

from enqueue import documents as docs
from enqueue import steering
from enqueue.commands.pause import PAUSED_AT, PAUSED_BY, pause_summary
from enqueue.logs import add_logging_arguments

NAME = "resume"
HELP = "grant turns again after 'enqueue pause'"


def configure(parser: argparse.ArgumentParser) -> None:
    """Add ``resume``'s arguments to its subparser."""
    steering.add_config_argument(parser)
    steering.add_document_options(parser)
    add_logging_arguments(parser)
    parser.epilog = "Exit codes: 0 resumed (or was not paused); 1 refused (leader doc does not parse); " \
                    "2 configuration error; 3 database unreachable; 4 credentials refused; 5 database missing."


def resumed(doc: docs.LeaderDoc, who: str, when: str) -> docs.LeaderDoc:
    """``doc`` no longer paused, with the pause's own fields removed."""
    raw = {k: v for k, v in doc.raw.items() if k not in (PAUSED_BY, PAUSED_AT)}
    return replace(doc, paused=False, paused_reason=None, updated_by=who, updated_at=when, raw=raw)


def execute(args: argparse.Namespace) -> int:
    """Resume the rotation; print what was done."""
    settings = steering.load_settings(args)
    who = steering.actor(settings)
    seen: dict[str, Any] = {}

    def change(raw: Optional[dict]) -> Optional[dict]:
        doc = steering.read_leader(raw, settings)
        seen["doc"] = doc
        if doc is None or not doc.paused:
            return None
        return docs.render_leader(resumed(doc, who, steering.now_text(settings)))

    with steering.open_store(settings) as store:
        written = steering.update(store, settings.leader_doc, change)
    before: Optional[docs.LeaderDoc] = seen["doc"]
    if written is None or before is None:
        print("not paused; nothing changed")
        return 0
    summary = pause_summary(before)
    print("resumed: turns are granted again" + (f" (it was paused {summary})" if summary else ""))
    if before.leader is None:
        print("no site leads right now: the next agent to start or notice elects itself and grants the next turn")
    return 0
