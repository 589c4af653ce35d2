"""Server URLs: the one place a URL is split into where the server is and the credentials it carries.

The connection settings (enqueue.connection) and the CouchDB driver
(enqueue.couchdb_store) both take ``http(s)://[user:password@]host[:port][/path]``
and split it here, so they agree on what a valid URL is. No message raised
here contains the user information of the URL.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional
from urllib.parse import unquote, urlsplit

__all__ = ["BadUrl", "ServerUrl", "split_url"]


class BadUrl(ValueError):
    """Not a usable server URL; the message says why, without any credentials."""


@dataclass(frozen=True)
class ServerUrl:
    """A server URL taken apart.

    ``base`` is ``scheme://host[:port][/path]`` with no credentials and no
    trailing slash; ``username`` and ``password`` are decoded (None when the
    URL carries none); ``raw_password`` is the password as written in the
    URL (percent-encoded), for the log redaction to know it in that form too.
    """

    base: str
    username: Optional[str] = None
    password: Optional[str] = field(default=None, repr=False)
    raw_password: Optional[str] = field(default=None, repr=False)


def split_url(text: str) -> ServerUrl:
    """Split an ``http``/``https`` server URL; raises BadUrl for anything else.

    Refused: another scheme, no host, a port that is not a number, a query
    or a fragment.
    """
    # urllib's own messages may quote the netloc, credentials and all: they are not passed on.
    try:
        parts = urlsplit(text.strip())
    except ValueError:
        raise BadUrl("not a valid URL") from None
    try:
        parts.port
    except ValueError:
        raise BadUrl("not a valid URL (the port is not a number from 0 to 65535)") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadUrl("expected http://HOST:PORT or https://HOST:PORT")
    if parts.query or parts.fragment:
        raise BadUrl("the URL must not have a query or fragment")
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    hostport = parts.netloc.rpartition("@")[2]
    return ServerUrl(f"{parts.scheme}://{hostport}{parts.path.rstrip('/')}", username, password, parts.password)
