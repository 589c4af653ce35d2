"""``enqueue skip CONFIG [--turn N]``: end the current turn now.

Sets ``skip_turn`` in the leader doc to the number of the turn in progress,
by compare-and-swap. The site running it sees that through its changes feed,
stops the command (SIGTERM to its process group, SIGKILL after
``kill_grace``), marks the turn done and records it with ``how: skipped``;
the next turn is passed on as usual. ``--turn`` guards against skipping a
turn that started after you looked: the write happens only if turn N is the
one in progress.

Output (stdout), one of::

    asked SITE to stop turn N: its command gets SIGTERM, or its --stop-signal (SIGKILL after the kill grace), the turn is recorded as skipped
    turn N of SITE is granted but not started: SITE stops its command as soon as it starts, ...
    skip of turn N was already asked; nothing changed

The first line also answers for a turn granted to the agent it names, which
may run already, started on the grant alone (docs/PROTOCOL.md §3.5.7).

Refusals (exit 1): no turn in progress; ``--turn`` names another turn.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from typing import Any, Optional

from enqueue import documents as docs
from enqueue import steering
from enqueue.logs import add_logging_arguments

NAME = "skip"
HELP = "end the turn in progress now: its site stops the command and records the turn as skipped"


def configure(parser: argparse.ArgumentParser) -> None:
    """Add ``skip``'s arguments to its subparser."""
    steering.add_config_argument(parser)
    parser.add_argument("--turn", type=int, metavar="N",
                        help="skip only if turn N is the one in progress (as shown by 'enqueue status')")
    steering.add_document_options(parser)
    add_logging_arguments(parser)
    parser.epilog = "Exit codes: 0 skip asked (or already asked); 1 refused (no turn in progress, " \
                    "--turn names another turn, leader doc does not parse); 2 configuration error; " \
                    "3 database unreachable; 4 credentials refused; 5 database missing."


def skipping(doc: docs.LeaderDoc, expected_turn: Optional[int], who: str, when: str) -> Optional[docs.LeaderDoc]:
    """``doc`` with its turn in progress marked to be skipped; None if that was already asked.

    Raises ``Refused`` when no turn is in progress or it is not ``expected_turn``.
    """
    if not doc.turn_active:
        last = f"turn {doc.turn} of {doc.running} ended" if doc.turn and doc.running else "no turn was granted yet"
        raise steering.Refused(f"no turn in progress to skip ({last})")
    if expected_turn is not None and expected_turn != doc.turn:
        raise steering.Refused(
            f"turn {expected_turn} is not in progress: turn {doc.turn} of {doc.running} is ({doc.status}); nothing changed"
        )
    if doc.skip_turn == doc.turn:
        return None
    return replace(doc, skip_turn=doc.turn, updated_by=who, updated_at=when)


def execute(args: argparse.Namespace) -> int:
    """Ask the running site to end its turn; print what was asked."""
    settings = steering.load_settings(args)
    who = steering.actor(settings)
    seen: dict[str, Any] = {}

    def change(raw: Optional[dict]) -> Optional[dict]:
        doc = steering.read_leader(raw, settings)
        if doc is None:
            raise steering.Refused(f"no turn in progress to skip (leader doc {settings.leader_doc} does not exist)")
        seen["doc"] = doc
        new = skipping(doc, args.turn, who, steering.now_text(settings))
        return None if new is None else docs.render_leader(new)

    with steering.open_store(settings) as store:
        written = steering.update(store, settings.leader_doc, change)
    doc: docs.LeaderDoc = seen["doc"]
    if written is None:
        print(f"skip of turn {doc.turn} was already asked; nothing changed")
    elif doc.may_run:
        print(f"asked {doc.running} to stop turn {doc.turn}: its command gets SIGTERM, or its --stop-signal "
              f"(SIGKILL after the kill grace), the turn is recorded as skipped")
    else:
        print(f"turn {doc.turn} of {doc.running} is granted but not started: {doc.running} stops its command as soon "
              f"as it starts, and the turn is recorded as skipped")
    return 0
