"""The admin of a chaos run under site accounts: when it repairs, what it may add to a stall, what it must see.

With ``--site-accounts`` the agents log in as their sites, whose accounts
may not create the leader doc (docs/SECURITY.md). After a ``delete-leader``
fault the agents wait, saying so (their heartbeats' ``problem``, one log
line each), until the admin reacts: after a random delay of 0 to
``MAX_REACTION_BEATS x heartbeat_delay`` it runs ``enqueue repair CONFIG``
as a subprocess, as an operator would, and that command waits out
``heartbeat_stale`` from the last change it saw of the document before it
writes (docs/PROTOCOL.md §3.11).

Guarantees kept by ``violations``: a repair that did not exit 0, or did not
itself rebuild the leader doc (it found one that parses, so somebody else
wrote it: an agent, which its account may not do), or whose rebuild (the
revision written over the tombstone, read back by its number) does not name
the admin (``updated_by`` ``admin:...``) and keep ``repaired_from``, is
a finding; so is a leader doc missing for longer than every live agent
needed to try its own rebuild and say in a heartbeat that it may not
(``heartbeat_stale + 2 x heartbeat_delay + margin``) with no site saying so.
"""

from __future__ import annotations

import random
import re
import sys
from dataclasses import dataclass, field
from typing import List, Optional

__all__ = ["MAX_REACTION_BEATS", "PROBLEM_HINT", "Repair", "allowance_s", "reaction_s", "repair_argv",
           "rebuilt_turn", "violations"]

#: The admin reacts within this many heartbeat delays of the deletion.
MAX_REACTION_BEATS = 2.0
#: What an agent whose rebuild was refused says (its log, its heartbeat's ``problem``).
PROBLEM_HINT = "an admin must run 'enqueue repair CONFIG'"
_REBUILT = re.compile(r"^rebuilt leader doc \S+ at turn (\d+)", re.MULTILINE)


def reaction_s(rng: random.Random, heartbeat_delay_s: float) -> float:
    """How long the admin takes to react to a deletion: uniform in [0, MAX_REACTION_BEATS x delay]."""
    return rng.uniform(0.0, MAX_REACTION_BEATS * heartbeat_delay_s)


def allowance_s(heartbeat_delay_s: float, heartbeat_stale_s: float) -> float:
    """What a stall after a deletion may last beyond the usual bound: the admin's longest reaction plus the
    repair's wait (``heartbeat_stale``, counted from its first look, which comes after the reaction)."""
    return MAX_REACTION_BEATS * heartbeat_delay_s + heartbeat_stale_s


def repair_argv(config: str) -> List[str]:
    """``enqueue repair CONFIG``, run by this interpreter."""
    return [sys.executable, "-m", "enqueue", "repair", config]


def rebuilt_turn(output: str) -> Optional[int]:
    """The turn ``enqueue repair`` says it rebuilt the leader doc at, or None (it rebuilt nothing)."""
    found = _REBUILT.search(output)
    return int(found.group(1)) if found else None


@dataclass
class Repair:
    """One admin repair after a deletion, as the harness ran and watched it."""

    reaction_s: float
    output_file: str
    exit_code: Optional[int] = None  # None: it did not finish in time (killed)
    rebuilt_turn: Optional[int] = None
    rebuild_by: Optional[str] = None  # ``updated_by`` of the revision written over the tombstone
    repaired_from: bool = False  # that revision keeps the old content under ``repaired_from``
    missing_s: float = 0.0  # deletion to the repair's exit
    said_in_heartbeat: List[str] = field(default_factory=list)
    said_in_log: List[str] = field(default_factory=list)


def violations(repair: Repair, where: str, heartbeat_delay_s: float, heartbeat_stale_s: float,
               margin_s: float) -> List[str]:
    """What went wrong with ``repair`` (of the deletion named ``where``); empty when nothing did."""
    out: List[str] = []
    if repair.exit_code != 0:
        how = "did not finish" if repair.exit_code is None else f"exited with code {repair.exit_code}"
        out.append(f"{where}: the admin's 'enqueue repair' {how} (output in {repair.output_file})")
    elif repair.rebuilt_turn is None:
        out.append(f"{where}: the admin's 'enqueue repair' found a leader doc that parses: somebody else "
                   f"rebuilt it (output in {repair.output_file})")
    elif not (str(repair.rebuild_by).startswith("admin:") and repair.repaired_from):
        out.append(f"{where}: the leader doc's rebuild (revision {repair.rebuilt_turn + 1}) names "
                   f"{repair.rebuild_by or 'nobody'}{'' if repair.repaired_from else ' without repaired_from'}, "
                   f"not the admin")
    said = repair.said_in_heartbeat or repair.said_in_log
    if not said and repair.missing_s > heartbeat_stale_s + 2 * heartbeat_delay_s + margin_s:
        out.append(f"{where}: the leader doc was missing {repair.missing_s:.2f} s and no site said so "
                   f"(no heartbeat 'problem', no log line)")
    return out
