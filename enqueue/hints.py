"""What to check when the server says no: the setting behind an error, named where it came from.

A store error says what the server answered ("the database does not
exist", "refused the credentials"); the person reading it needs to know
which setting to fix and where it is set: the configuration file (by its
absolute path) or an environment variable that overrides it. ``advice`` is a
pure function of the error and the connection's settings; the connection
loaded last is remembered (as secrets are registered for redaction) so the
command line can add the advice to the one line it prints.

No advice ever contains a password: it names files and variables, never
their content.
"""

from __future__ import annotations

import urllib.parse
from typing import Mapping, Optional, Protocol

from enqueue.errors import AuthFailed, DatabaseMissing, EnqueueError, Forbidden, Unreachable

__all__ = ["Origins", "advice", "explain", "remember", "forget"]


class Origins(Protocol):
    """What advice needs of a connection (``enqueue.connection.Connection`` has it)."""

    url: str
    database: str
    username: Optional[str]
    sources: Mapping[str, str]


_remembered: Optional[Origins] = None


def remember(connection: Origins) -> None:
    """Keep the connection just loaded, for ``explain``."""
    global _remembered
    _remembered = connection


def forget() -> None:
    """Drop the remembered connection (tests)."""
    global _remembered
    _remembered = None


def _from(source: Optional[str], what: str) -> str:
    """``database = in /etc/x.ini`` or ``environment variable X, which overrides the file``."""
    if source is None:
        return what
    if not source.startswith("/") and not source.startswith("environment variable"):
        return source  # "password file /x (...)", "the password in the url (...)"
    if source.startswith("environment variable"):
        return f"{source}, which overrides the file"
    file, _, _key = source.partition(": [")
    return f"{what} in {file}" if _key else source


def _url_path_hint(connection: Origins) -> Optional[str]:
    path = urllib.parse.urlsplit(connection.url).path.strip("/")
    if not path:
        return None
    return (f"the url ends in /{path}, which CouchDB reads as part of every database's address: if /{path} "
            f"is the database, remove it from the url (url names the server, database = names the database)")


def advice(exc: EnqueueError, connection: Origins) -> Optional[str]:
    """What to check for ``exc`` given where the connection's settings came from; None when nothing helps."""
    src = connection.sources
    if isinstance(exc, DatabaseMissing) and f"database {connection.database!r}" in str(exc):
        parts = [f"check the database name {connection.database!r}: {_from(src.get('database'), 'database =')}"]
        url_hint = _url_path_hint(connection)
        if url_hint:
            parts.append(url_hint)
        parts.append("or create it with 'enqueue init' (an admin's configuration)")
        return "; ".join(parts)
    if isinstance(exc, AuthFailed):
        if not connection.username:
            source = src.get("url") or ""
            where = source.partition(": [")[0] if source.startswith("/") else "the configuration file"
            return f"no username is configured and the server wants one: set username and password_file in {where}"
        user_from = src.get("username")
        password_from = _from(src.get("password"), "password =")
        via = f" ({_from(user_from, 'username =')})" if user_from and user_from.startswith("environment") else ""
        return f"check the password of user {connection.username!r}{via}: {password_from}"
    if isinstance(exc, Forbidden) and connection.username:
        return f"logged in as user {connection.username!r}"
    if isinstance(exc, Unreachable):
        source = src.get("url")
        if source is not None and source.startswith("environment variable"):
            return f"the url comes from {_from(source, 'url =')}"
        return f"check {_from(source, 'url =')}"
    return None


def explain(exc: EnqueueError, connection: Optional[Origins] = None) -> str:
    """``exc``'s message with the advice for the remembered (or given) connection added."""
    connection = connection if connection is not None else _remembered
    message = str(exc)
    if connection is None:
        return message
    hint = advice(exc, connection)
    return f"{message}; {hint}" if hint else message
