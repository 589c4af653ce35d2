"""What every admin command shares: settings, who is acting, and compare-and-swap edits.

An admin command changes a shared document the way an agent does: it reads
the document, decides from what it read, and writes back with the ``_rev``
it read. A 409 means somebody (usually an agent) wrote in between; the
command then reads again and decides again from scratch -- it never re-sends
its old body with a fresh ``_rev``. After a few lost rounds it gives up with
one line, so a document that changes constantly cannot keep it forever.

Every admin write says who made it and when: ``updated_by`` is
``admin:<user>@<host>`` (the CouchDB user name when the configuration has
one, else the login name) and ``updated_at`` the UTC time in the configured
``time_format``.

Guarantees: ``update`` writes at most once per successful call and only on
top of the revision its ``change`` saw; a ``change`` that raises ``Refused``
writes nothing. Not guaranteed: that the situation a command reported is
still the situation a moment later (agents keep writing).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import getpass
import logging
import socket
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional

from enqueue import documents as docs
from enqueue.clock import UTC, Clock, SystemClock, format_time
from enqueue.config import (
    DEFAULT_LEADER_DOC,
    DEFAULT_SITES_DOC,
    DEFAULT_TIME_FORMAT,
    load_agent_settings,
)
from enqueue.connection import Connection
from enqueue.errors import EXIT_FAILURE, Conflict, EnqueueError, Forbidden
from enqueue.store import Store
from enqueue.timing import Timing

__all__ = [
    "AdminSettings",
    "Refused",
    "WRITE_ATTEMPTS",
    "add_config_argument",
    "add_document_options",
    "load_settings",
    "open_store",
    "actor",
    "now_text",
    "parse_time",
    "update",
    "needs_admin",
    "read_leader",
    "read_sites",
]

log = logging.getLogger("enqueue.admin")

#: How many times an admin write re-reads and re-decides after losing a compare-and-swap.
WRITE_ATTEMPTS = 6

# A placeholder site and command: admin commands reuse ``enqueue run``'s
# loader so that a configuration means exactly the same to both.
_ADMIN_SITE = "admin"
_ADMIN_COMMAND = ["(admin)"]


class Refused(EnqueueError):
    """An admin command will not make the change asked for (the message says why)."""

    exit_code = EXIT_FAILURE


@dataclass(frozen=True)
class AdminSettings:
    """What an admin command needs from the configuration: the database, the
    document ids, the time format, and the timing (for "stale" in ``status``)."""

    connection: Connection
    timing: Timing
    time_format: str = DEFAULT_TIME_FORMAT
    leader_doc: str = DEFAULT_LEADER_DOC
    sites_doc: str = DEFAULT_SITES_DOC
    config_path: str = ""


def add_config_argument(parser: argparse.ArgumentParser) -> None:
    """The ``CONFIG`` positional every admin command starts with."""
    parser.add_argument("config", metavar="CONFIG", help="configuration file (INI; see config/enqueue.example.ini)")


def _escape(text: str) -> str:
    return text.replace("%", "%%")


def add_document_options(parser: argparse.ArgumentParser) -> None:
    """``-L``, ``-S``, ``-T``: the same overrides ``enqueue run`` takes, for sites started with them."""
    group = parser.add_argument_group("document options (override the configuration file, as for 'enqueue run')")
    group.add_argument("-L", "--leader-doc", dest="leader_doc", metavar="NAME",
                       help=f"id of the leader document (default: {DEFAULT_LEADER_DOC})")
    group.add_argument("-S", "--sites-doc", dest="sites_doc", metavar="NAME",
                       help=f"id of the sites document (default: {DEFAULT_SITES_DOC})")
    group.add_argument("-T", "--time-format", dest="time_format", metavar="FORMAT",
                       help=_escape(f"strftime format of the UTC times in documents (default: {DEFAULT_TIME_FORMAT})"))


def load_settings(args: argparse.Namespace) -> AdminSettings:
    """Read the configuration named by ``args.config`` (with ``-L``/``-S``/``-T``); raises ConfigError."""
    overrides = {
        "leader_doc": getattr(args, "leader_doc", None),
        "sites_doc": getattr(args, "sites_doc", None),
        "time_format": getattr(args, "time_format", None),
    }
    agent = load_agent_settings(args.config, _ADMIN_SITE, _ADMIN_COMMAND, overrides)
    return AdminSettings(
        connection=agent.connection,
        timing=agent.timing,
        time_format=agent.time_format,
        leader_doc=agent.leader_doc,
        sites_doc=agent.sites_doc,
        config_path=args.config,
    )


def open_store(settings: AdminSettings) -> Store:
    """A store on the configured database; close it when done."""
    from enqueue.couchdb_store import open_store as _open  # the CouchDB client loads only when a command needs it

    return _open(settings.connection)


def actor(settings: AdminSettings) -> str:
    """``admin:<user>@<host>``: who an admin write says it came from."""
    user = settings.connection.username
    if not user:
        try:
            user = getpass.getuser()
        except Exception:  # no USER variable and no passwd entry (some containers)
            user = "unknown"
    return f"admin:{user}@{socket.gethostname()}"


def now_text(settings: AdminSettings, clock: Optional[Clock] = None) -> str:
    """The current UTC time in the documents' format."""
    return format_time((clock or SystemClock()).now(), settings.time_format)


def parse_time(text: Optional[str], time_format: str) -> Optional[_dt.datetime]:
    """A document's time as an aware UTC datetime; None when absent or not in ``time_format``.

    Times without a zone are UTC, as every writer stores them.
    """
    if not text:
        return None
    try:
        moment = _dt.datetime.strptime(text, time_format)
    except (ValueError, TypeError):
        return None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def update(
    store: Store,
    doc_id: str,
    change: Callable[[Optional[dict]], Optional[dict]],
    *,
    attempts: int = WRITE_ATTEMPTS,
) -> Optional[dict]:
    """Compare-and-swap ``doc_id``: read it, let ``change`` decide, write what it returns.

    ``change`` gets the stored document (None when missing) and returns the
    full new body carrying the ``_rev`` it was given (no ``_rev`` to create
    the document), or None when there is nothing to write; it may raise
    ``Refused``. On a lost swap the document is read again and ``change`` is
    called again with what is there now. Returns the body written (with its
    new ``_rev``), or None when nothing was written.
    """
    for attempt in range(1, attempts + 1):
        raw = store.get(doc_id)
        body = change(raw)
        if body is None:
            return None
        if raw is not None and body.get("_rev") != raw.get("_rev"):
            raise AssertionError(f"a change to {doc_id} must carry the revision it read")
        try:
            store.put(body)
            return body
        except Forbidden as exc:
            raise needs_admin(exc) from None
        except Conflict:
            log.debug("%s changed while it was being written (attempt %d of %d); reading it again",
                     doc_id, attempt, attempts)
    raise EnqueueError(
        f"{doc_id} in {store.describe()} kept changing while this command tried to write it "
        f"({attempts} attempts); nothing was changed, try again"
    )


def needs_admin(exc: Forbidden) -> Forbidden:
    """The server's refusal of an admin write, with what the operator is missing."""
    return Forbidden(f"{exc}; admin commands need an account with the admin role or a database admin "
                     "(see docs/SECURITY.md)")


def read_leader(raw: Optional[Mapping[str, Any]], settings: AdminSettings) -> Optional[docs.LeaderDoc]:
    """The parsed leader doc, None when it is missing; ``Refused`` when it does not parse.

    An admin must not write over a document nobody can read: the agents
    repair it (keeping the old content) or an admin fixes it by hand.
    """
    if raw is None:
        return None
    parsed, problems = docs.parse_leader(raw, settings.leader_doc)
    if parsed is None:
        raise Refused(
            f"leader doc {settings.leader_doc} does not parse ({'; '.join(problems)}); fix it by hand "
            f"(Fauxton or curl), or rebuild it with 'enqueue repair' (the agents do after heartbeat_stale where "
            f"their accounts may)"
        )
    return parsed


def read_sites(raw: Optional[Mapping[str, Any]], settings: AdminSettings) -> docs.SitesDoc:
    """The parsed sites doc; ``Refused`` when it is missing or does not parse."""
    if raw is None:
        raise Refused(
            f"sites doc {settings.sites_doc} does not exist: no site has registered yet "
            f"(run 'enqueue init {settings.config_path or 'CONFIG'}' or start an agent)"
        )
    parsed, problems = docs.parse_sites(raw, settings.sites_doc, settings.leader_doc)
    if parsed is None:
        raise Refused(f"sites doc {settings.sites_doc} does not parse ({'; '.join(problems)}); fix it by hand")
    for problem in problems:
        log.warning("sites doc %s: %s", settings.sites_doc, problem)
    return parsed


def unknown_site(site: str, sites: docs.SitesDoc, settings: AdminSettings) -> Refused:
    """The refusal for a site the registry does not know, naming the ones it does."""
    known = ", ".join(sorted(sites.sites)) or "none"
    return Refused(f"unknown site {site!r}: the registry {settings.sites_doc} knows {known}")
