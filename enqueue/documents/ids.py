"""The shared documents' ids and vocabulary: schema version, id prefixes, turn and site states (docs/PROTOCOL.md §2).

Guarantees: a turn record id is zero-padded to one width, so ids sort by
turn number, and a turn that does not fit is refused, never printed wider;
each document set has its own heartbeat and record prefixes (the default
set's are the fixed ``enqueue_heartbeat:`` and ``enqueue_turn:``), and no
set's prefix starts another's for any leader doc name the settings take
(``enqueue.set_names``). Nothing here reads or writes a document.
"""

from __future__ import annotations

from enqueue.config import DEFAULT_LEADER_DOC
from enqueue.set_names import HEARTBEAT_MARK, HEARTBEAT_PREFIX, TURN_MARK, TURN_PREFIX

SCHEMA_VERSION = 1

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


def heartbeat_prefix(leader_doc: str = DEFAULT_LEADER_DOC) -> str:
    """The id prefix of the heartbeats of the document set ``leader_doc`` leads.

    ``enqueue_heartbeat:`` for the default set (existing databases keep
    their ids); ``<leader_doc>:heartbeat:`` for any other, so that a site in
    two sets of one database writes two heartbeats, one per set.
    """
    return HEARTBEAT_PREFIX if leader_doc == DEFAULT_LEADER_DOC else f"{leader_doc}{HEARTBEAT_MARK}"


def heartbeat_id(site: str, leader_doc: str = DEFAULT_LEADER_DOC) -> str:
    """The id of a site's heartbeat doc in the document set ``leader_doc`` leads."""
    return heartbeat_prefix(leader_doc) + site


def heartbeat_site(doc_id: str, leader_doc: str = DEFAULT_LEADER_DOC) -> str | None:
    """The site whose heartbeat (in the set ``leader_doc`` leads) ``doc_id`` is, or None when it is none.

    A site name holds no ``:``, so an id with one after the prefix belongs to no site of this set.
    """
    prefix = heartbeat_prefix(leader_doc)
    site = doc_id[len(prefix):] if doc_id.startswith(prefix) else ""
    return site if site and ":" not in site else None


def turn_prefix(leader_doc: str = DEFAULT_LEADER_DOC) -> str:
    """The id prefix of the turn records of the document set ``leader_doc`` leads.

    ``enqueue_turn:`` for the default set; ``<leader_doc>:turn:`` for any
    other, so that sets sharing a database (``-L``/``-S``) never share a
    record id, and no set's prefix starts another's.
    """
    return TURN_PREFIX if leader_doc == DEFAULT_LEADER_DOC else f"{leader_doc}{TURN_MARK}"


def turn_record_id(turn: int, prefix: str = TURN_PREFIX) -> str:
    """The id of a turn record; zero-padded to one width so ids sort by turn number.

    Raises ValueError for a turn outside 0..MAX_TURN rather than print a wider id.
    """
    if not 0 <= turn <= MAX_TURN:
        raise ValueError(f"turn {turn} does not fit a turn record id ({TURN_ID_DIGITS} digits)")
    return f"{prefix}{turn:0{TURN_ID_DIGITS}d}"
