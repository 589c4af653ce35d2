"""The shared documents' ids and vocabulary: schema version, id prefixes, turn and site states (docs/PROTOCOL.md §2).

Guarantees: a turn record id is zero-padded to one width, so ids sort by
turn number, and a turn that does not fit is refused, never printed wider;
no document set's record prefix starts another's. Nothing here reads or
writes a document.
"""

from __future__ import annotations

from enqueue.config import DEFAULT_LEADER_DOC

SCHEMA_VERSION = 1

HEARTBEAT_PREFIX = "enqueue_heartbeat:"
TURN_PREFIX = "enqueue_turn:"
TURN_ID_DIGITS = 10
#: The widest turn number a record id holds; a turn beyond it is refused, never printed wider.
MAX_TURN = 10**TURN_ID_DIGITS - 1

# Turn states in the leader doc.
GRANTED = "granted"
RUNNING = "running"
DONE = "done"
TURN_STATES = (GRANTED, RUNNING, DONE)

# What a site says it wants, in its heartbeat doc.
WAITING = "waiting"
IDLE = "idle"
LEFT = "left"
#: Running its side command (``--between``) outside any turn: alive, wants no turn meanwhile.
BETWEEN = "between"
#: Its readiness check (``--ready``) has not passed yet: alive, wants no turn until it does.
NOT_READY = "not_ready"
SITE_STATES = (WAITING, RUNNING, IDLE, LEFT, BETWEEN, NOT_READY)


def heartbeat_id(site: str) -> str:
    """The id of a site's heartbeat doc."""
    return HEARTBEAT_PREFIX + site


def turn_prefix(leader_doc: str = DEFAULT_LEADER_DOC) -> str:
    """The id prefix of the turn records of the document set ``leader_doc`` leads.

    ``enqueue_turn:`` for the default set; ``<leader_doc>:turn:`` for any
    other, so that sets sharing a database (``-L``/``-S``) never share a
    record id, and no set's prefix starts another's.
    """
    return TURN_PREFIX if leader_doc == DEFAULT_LEADER_DOC else f"{leader_doc}:turn:"


def turn_record_id(turn: int, prefix: str = TURN_PREFIX) -> str:
    """The id of a turn record; zero-padded to one width so ids sort by turn number.

    Raises ValueError for a turn outside 0..MAX_TURN rather than print a wider id.
    """
    if not 0 <= turn <= MAX_TURN:
        raise ValueError(f"turn {turn} does not fit a turn record id ({TURN_ID_DIGITS} digits)")
    return f"{prefix}{turn:0{TURN_ID_DIGITS}d}"
