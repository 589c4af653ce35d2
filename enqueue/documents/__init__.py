"""The shared documents: tolerant parsing, rendering, and document ids (docs/PROTOCOL.md §2).

Admins read and edit these documents by hand, so parsing never raises: a
document that does not parse yields ``None`` plus a list of problems (the
caller logs them with the document id), and a field with a wrong type in an
optional place falls back to its default with a problem noted. Unknown fields
are kept: rendering starts from the stored document, so a write never drops
what an admin or a newer version added.

Guarantees: ``render_*`` output always parses back to an equal value, and
carries the ``_rev`` it was parsed from, so every write is a compare-and-swap
on what was read.

One module per document kind: ``leader`` (the leader doc), ``registry`` (the
sites doc), ``heartbeat`` (a site's own doc), ``turn_record`` (a finished
turn); ``ids`` holds the ids, prefixes and state words they share and
``fields`` the tolerant field reader. This package re-exports their public
names, so that the many modules that read documents keep one namespace
(``from enqueue import documents as docs``). Not here: any store access.
"""

from __future__ import annotations

from enqueue.documents.heartbeat import (
    LEFT_MAX_WAIT,
    LEFT_STOPPED,
    LEFT_TO_LOOP,
    LEFT_TURN_DONE,
    PROBLEM_FIELD,
    Heartbeat,
    parse_heartbeat,
    render_heartbeat,
    wants_turn,
)
from enqueue.documents.ids import (
    BETWEEN,
    DONE,
    GRANTED,
    HEARTBEAT_PREFIX,
    IDLE,
    LEFT,
    MAX_TURN,
    NOT_READY,
    RUNNING,
    SCHEMA_VERSION,
    SITE_STATES,
    TURN_ID_DIGITS,
    TURN_PREFIX,
    TURN_STATES,
    WAITING,
    heartbeat_id,
    heartbeat_prefix,
    heartbeat_site,
    turn_prefix,
    turn_record_id,
)
from enqueue.documents.leader import LeaderDoc, new_leader_doc, parse_leader, render_leader
from enqueue.documents.registry import SiteEntry, SitesDoc, new_sites_doc, parse_sites, render_sites
from enqueue.documents.turn_record import TurnRecord, parse_turn_record, record_fields, render_turn_record

__all__ = [
    "DONE", "GRANTED", "HEARTBEAT_PREFIX", "IDLE", "LEFT", "LEFT_MAX_WAIT", "LEFT_STOPPED", "LEFT_TO_LOOP",
    "LEFT_TURN_DONE", "MAX_TURN", "PROBLEM_FIELD", "RUNNING", "SCHEMA_VERSION",
    "SITE_STATES", "TURN_ID_DIGITS", "TURN_PREFIX", "TURN_STATES", "WAITING", "BETWEEN", "NOT_READY",
    "heartbeat_id", "heartbeat_prefix", "heartbeat_site", "turn_prefix", "turn_record_id",
    "LeaderDoc", "new_leader_doc", "parse_leader", "render_leader",
    "SiteEntry", "SitesDoc", "new_sites_doc", "parse_sites", "render_sites",
    "Heartbeat", "parse_heartbeat", "render_heartbeat", "wants_turn",
    "TurnRecord", "parse_turn_record", "record_fields", "render_turn_record",
]
