"""The CouchDB driver: the only module that talks to CouchDB.

``Store`` offers what the protocol needs and nothing more: read a document,
compare-and-swap a document, read many documents in one request, list
documents by id prefix, and wait on the ``_changes`` feed for a few documents.
Every failure leaves this module as one of the ``enqueue.errors.StoreError``
types, with a one-line message that names the database and the server but
never a password.

It is built on CouchDB-Python's HTTP layer (``couchdb.http.Session``), which
is no longer developed; nothing outside this module may import ``couchdb``, so
the client can be replaced here alone. Four things about that layer matter and
are handled below:

* its response cache replays a cached body after a ``304``; it is switched
  off, so every read asks the server;
* its retry loop either retries a request blindly or, with no retry delays,
  fails with an internal error; retries are switched off there and done here
  instead, only for reads;
* its connection pool reuses sockets that the server closed while idle
  (pouchdb-server closes idle keep-alive connections after 5 s); the pool here
  drops such sockets before reuse;
* a longpoll holds its socket, so the changes wait has its own session and
  pool, and a pending wait never holds up reads and writes.
"""

from __future__ import annotations

import errno
import http.client
import json
import select
import socket
import ssl
import threading
import urllib.parse
import weakref
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, Iterator, List, Optional, Tuple

import couchdb.http

from enqueue import errors
from enqueue.clock import SystemClock

__all__ = ["ChangeBatch", "Store"]

_clock = SystemClock()

# CouchDB caps a longpoll's ``timeout`` at its changes_timeout (60 s by default), and
# proxies commonly cut requests after 60 s: longer waits are made of shorter polls.
_MAX_POLL_S = 50.0

# pouchdb-server ignores the longpoll ``timeout`` and keeps the response open,
# sending a newline now and then; the client ends such a poll itself once the
# asked-for time has passed and the server has then been silent this long.
_POLL_GRACE_S = 0.25

# 404 reasons that mean "no such document" rather than "no such database".
_DOC_MISSING_REASONS = frozenset({"missing", "deleted"})

# Highest character used as the end of an id-prefix range.
_HIGH_KEY_CHAR = "\uffff"


@dataclass(frozen=True)
class ChangeBatch:
    """What one changes wait saw.

    ``docs`` maps each watched document that changed to its current body, or
    to ``None`` when it was deleted; it is empty when the wait timed out.
    ``last_seq`` is where the next wait should start (``since``).
    """

    docs: Dict[str, Optional[dict]] = field(default_factory=dict)
    last_seq: Any = None


class _Closed(Exception):
    """The store was closed while a request was in flight."""


class _DocMissing(errors.StoreError):
    """404 for a document (not for the database); handled inside this module."""


class _Exists(errors.StoreError):
    """412: the thing to be created exists; handled inside this module."""


# What CouchDB-Python lets through besides HTTPError: socket, TLS and protocol
# failures, and the TypeError/AttributeError/ValueError its error handling
# raises on an error answer that is not small JSON.
_CLIENT_FAILURES = (_Closed, OSError, http.client.HTTPException, ValueError, TypeError, AttributeError)


class _NoCache:
    """A response cache that keeps nothing, so every GET reaches the server."""

    def get(self, url: str) -> None:
        return None

    def put(self, url: str, response: Any) -> None:
        pass

    def remove(self, url: str) -> None:
        pass


def _socket_dropped(sock: socket.socket) -> bool:
    """True when an idle pooled socket can no longer carry a request.

    An idle keep-alive socket has nothing to read; if it polls readable the
    peer closed it (or sent something unasked), so it must not be reused.
    """
    try:
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        return bool(poller.poll(0))
    except (OSError, ValueError):
        return True


class _Pool(couchdb.http.ConnectionPool):
    """A connection pool that verifies TLS with the configured CA, sets the
    socket timeout per thread, never hands out a socket the server has closed,
    and can cut every connection at once.

    Invariant: a connection returned by ``get`` is connected, has TCP_NODELAY
    and the calling thread's timeout, and is tracked until released.
    """

    def __init__(self, timeout: float, ssl_context: Optional[ssl.SSLContext]) -> None:
        super().__init__(timeout)
        self._ssl_context = ssl_context
        self._local = threading.local()
        self._busy: "weakref.WeakSet[http.client.HTTPConnection]" = weakref.WeakSet()
        self.closed = False

    def set_thread_timeout(self, timeout: Optional[float]) -> None:
        """Use ``timeout`` (seconds) for this thread's connections; ``None`` restores the default."""
        self._local.timeout = timeout

    def _timeout(self) -> float:
        timeout = getattr(self._local, "timeout", None)
        return self.timeout if timeout is None else timeout

    def get(self, url: str) -> http.client.HTTPConnection:
        if self.closed:
            raise _Closed()
        scheme, netloc = urllib.parse.urlsplit(url)[:2]
        timeout = self._timeout()
        conn = None
        with self.lock:
            idle = self.conns.get((scheme, netloc), [])
            while idle and conn is None:
                candidate = idle.pop()
                if candidate.sock is None or _socket_dropped(candidate.sock):
                    candidate.close()
                else:
                    conn = candidate
        if conn is None:
            if scheme == "https":
                conn = http.client.HTTPSConnection(netloc, timeout=timeout, context=self._ssl_context)
            elif scheme == "http":
                conn = http.client.HTTPConnection(netloc, timeout=timeout)
            else:
                raise ValueError(f"unsupported URL scheme {scheme!r}")
            conn.connect()
            try:
                conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        else:
            conn.timeout = timeout
            conn.sock.settimeout(timeout)
        with self.lock:
            self._busy.add(conn)
        return conn

    def release(self, url: str, conn: http.client.HTTPConnection) -> None:
        with self.lock:
            self._busy.discard(conn)
            if self.closed:
                conn.close()
                return
        super().release(url, conn)

    def close(self) -> None:
        """Close idle connections and cut the ones in use, so that a request
        blocked on another thread returns at once."""
        with self.lock:
            self.closed = True
            idle = [conn for conns in self.conns.values() for conn in conns]
            self.conns.clear()
            busy = list(self._busy)
        for conn in idle:
            conn.close()
        for conn in busy:
            sock = conn.sock
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


def _new_session(timeout: float, ssl_context: Optional[ssl.SSLContext]) -> Tuple[couchdb.http.Session, _Pool]:
    """A CouchDB-Python session with no cache, no retries of its own and our pool."""
    session = couchdb.http.Session(timeout=timeout, retry_delays=[], retryable_errors=())
    session.cache = _NoCache()
    pool = _Pool(timeout, ssl_context)
    session.connection_pool = pool
    return session, pool


def _split_url(url: str) -> Tuple[str, Optional[str], Optional[str]]:
    """Split ``url`` into its base (scheme, host, port, path: no credentials,
    query or fragment), the user name and the password it carries."""
    parts = urllib.parse.urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        # The netloc may hold a password: name only the scheme in the message.
        raise errors.ConfigError(
            f"CouchDB URL must look like http(s)://host:port, got one with scheme {parts.scheme or 'none'!r}"
        )
    try:
        parts.port
    except ValueError:
        raise errors.ConfigError(f"CouchDB URL for host {parts.hostname!r} has an invalid port") from None
    user = password = None
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, netloc = netloc.rsplit("@", 1)
        raw_user, has_password, raw_password = userinfo.partition(":")
        user = urllib.parse.unquote(raw_user) or None
        password = urllib.parse.unquote(raw_password) if has_password else None
    base = urllib.parse.urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))
    return base, user, password


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


class Store:
    """One CouchDB database, reached with one set of credentials.

    Safe to use from two threads at once: reads and writes go through one
    session, changes waits through another, and both sessions keep their
    connections in locked pools. No string this object produces (``repr``,
    ``describe``, error messages) contains the password.
    """

    def __init__(
        self,
        url: str,
        database: str,
        *,
        username: Optional[str] = None,
        password: Optional[str] = None,
        ca_file: Optional[str] = None,
        request_timeout_s: float = 10.0,
    ) -> None:
        """Prepare a store; no request is made until the first call.

        Credentials in ``url`` (``http://user:pass@host``) are used unless
        ``username`` is given, and are removed from the URL either way.
        """
        base, url_user, url_password = _split_url(url)
        if not database:
            raise errors.ConfigError("the CouchDB database name is empty")
        if request_timeout_s <= 0:
            raise errors.ConfigError("the CouchDB request timeout must be positive")
        if username is None:
            username, password = url_user, url_password
        self._base = base
        self._database = database
        self._db_url = f"{base}/{urllib.parse.quote(database, safe='')}"
        self._credentials: Optional[Tuple[str, str]] = (username, password or "") if username else None
        self._secret = password or ""
        self._timeout_s = float(request_timeout_s)
        ssl_context = None
        if base.startswith("https:"):
            try:
                ssl_context = ssl.create_default_context(cafile=ca_file)
            except (OSError, ssl.SSLError) as exc:
                raise errors.ConfigError(f"cannot use CA file {ca_file!r}: {_one_line(exc)}") from None
        self._session, self._pool = _new_session(self._timeout_s, ssl_context)
        self._changes_session, self._changes_pool = _new_session(self._timeout_s, ssl_context)
        self._copies: Optional[int] = None

    # ----------------------------------------------------------------- naming

    @property
    def database(self) -> str:
        """The database name."""
        return self._database

    @property
    def url(self) -> str:
        """The server URL, without credentials."""
        return self._base

    def describe(self) -> str:
        """Name the database and server for a human, without secrets."""
        return f"database {self._database!r} at {self._base}"

    def __repr__(self) -> str:
        return f"<Store {self.describe()}>"

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ------------------------------------------------------------ the requests

    def _doc_url(self, doc_id: str) -> str:
        if not isinstance(doc_id, str) or not doc_id:
            raise ValueError("a document id must be a non-empty string")
        if doc_id.startswith(("_design/", "_local/")):
            prefix, rest = doc_id.split("/", 1)
            return f"{self._db_url}/{prefix}/{urllib.parse.quote(rest, safe='')}"
        return f"{self._db_url}/{urllib.parse.quote(doc_id, safe='')}"

    @staticmethod
    def _with_query(url: str, **query: Any) -> str:
        params = []
        for name, value in query.items():
            if value is None:
                continue
            if value is True or value is False:
                value = "true" if value else "false"
            params.append((name, str(value)))
        return f"{url}?{urllib.parse.urlencode(params)}" if params else url

    def _scrub(self, text: Any) -> str:
        """One line of server- or system-supplied text, with the password masked should it appear."""
        line = _one_line(text)
        # Masking a one- or two-character password would garble every message.
        if len(self._secret) >= 3:
            line = line.replace(self._secret, "***")
        return line

    def _request(
        self,
        method: str,
        url: str,
        *,
        body: Any = None,
        read_only: bool,
        what: str,
        doc_id: Optional[str] = None,
    ) -> Any:
        """Send one request and return its decoded JSON body.

        A read that fails because a kept-alive connection was reset is sent
        once more on a fresh connection; a write never is, since it may have
        reached the server and a second try could report its own success as
        a conflict.
        """
        attempts = 2 if read_only else 1
        for attempt in range(attempts):
            try:
                _status, _headers, data = self._session.request(
                    method, url, body=body, credentials=self._credentials
                )
                raw = data.read() if data is not None else b""
            except couchdb.http.HTTPError as exc:
                raise self._http_error(exc, what, doc_id) from None
            except (ConnectionResetError, ConnectionAbortedError, BrokenPipeError) as exc:
                if attempt + 1 < attempts and not self._pool.closed:
                    continue
                raise self._transport_error(exc, what) from None
            except _CLIENT_FAILURES as exc:
                raise self._transport_error(exc, what) from None
            return self._decode(raw, what)
        raise AssertionError("unreachable")  # pragma: no cover

    def _decode(self, raw: bytes, what: str) -> Any:
        try:
            return json.loads(raw.decode("utf-8")) if raw.strip() else None
        except ValueError:
            raise errors.StoreError(f"{self.describe()}: {what}: the server's answer is not JSON") from None

    def _transport_error(self, exc: BaseException, what: str, pool: Optional[_Pool] = None) -> errors.StoreError:
        """Translate a failure below HTTP (socket, TLS, protocol) into our error."""
        if isinstance(exc, _Closed) or (pool or self._pool).closed:
            return errors.StoreError(f"{self.describe()}: {what}: the store is closed")
        if isinstance(exc, socket.timeout):
            detail = f"no answer within {self._timeout_s:g} s"
        elif isinstance(exc, socket.gaierror):
            detail = f"cannot resolve the host name ({self._scrub(exc.strerror or exc)})"
        elif isinstance(exc, ssl.SSLError):
            detail = f"TLS failed ({self._scrub(getattr(exc, 'reason', None) or exc)})"
        elif isinstance(exc, ConnectionRefusedError):
            detail = "connection refused"
        elif isinstance(exc, OSError):
            detail = self._scrub(exc.strerror or errno.errorcode.get(exc.errno or 0, "") or type(exc).__name__)
        elif isinstance(exc, http.client.HTTPException):
            detail = f"broken HTTP answer ({type(exc).__name__})"
        else:
            return errors.StoreError(f"{self.describe()}: {what}: unexpected answer ({type(exc).__name__})")
        return errors.Unreachable(f"{self.describe()}: {what}: {detail}")

    def _http_error(self, exc: couchdb.http.HTTPError, what: str, doc_id: Optional[str]) -> errors.StoreError:
        """Translate an HTTP error status into the matching StoreError subclass."""
        payload = exc.args[0] if exc.args else None
        status: Optional[int] = None
        if isinstance(exc, couchdb.http.ServerError) and isinstance(payload, tuple) and len(payload) == 2:
            status, payload = payload
        error = reason = None
        if isinstance(payload, tuple) and len(payload) == 2:
            error, reason = payload
            detail = ": ".join(str(p) for p in (error, reason) if p)
        elif isinstance(payload, bytes):
            detail = payload.decode("utf-8", "replace")[:200]
        else:
            detail = str(payload or "")[:200]
        detail = self._scrub(detail)
        where = self.describe() if doc_id is None else f"document {doc_id!r} in {self.describe()}"
        prefix = f"{where}: {what}"
        if isinstance(exc, couchdb.http.Unauthorized):
            return errors.AuthFailed(f"{prefix}: the server refused the credentials (401 {detail})".rstrip())
        if isinstance(exc, couchdb.http.Forbidden):
            return errors.Forbidden(f"{prefix}: forbidden (403 {detail})".rstrip())
        if isinstance(exc, couchdb.http.ResourceConflict):
            return errors.Conflict(f"{prefix}: conflict, the document changed since it was read")
        if isinstance(exc, couchdb.http.ResourceNotFound):
            if doc_id is not None and reason in _DOC_MISSING_REASONS:
                return _DocMissing(f"{prefix}: no such document")
            return errors.DatabaseMissing(f"{self.describe()}: the database does not exist")
        if isinstance(exc, couchdb.http.PreconditionFailed):
            return _Exists(f"{prefix}: precondition failed (412 {detail})".rstrip())
        code = f"HTTP {status}" if status else "HTTP error"
        return errors.StoreError(f"{prefix}: {code} {detail}".rstrip())

    # ------------------------------------------------------------ the database

    def server_info(self) -> dict:
        """The server's welcome document (``GET /``): vendor, version."""
        info = self._request("GET", self._base + "/", read_only=True, what="server info")
        return info if isinstance(info, dict) else {}

    def check(self) -> dict:
        """The database's info document; raises if it cannot be read.

        Raises Unreachable, AuthFailed, Forbidden or DatabaseMissing.
        """
        info = self._request("GET", self._db_url, read_only=True, what="database info")
        if not isinstance(info, dict):
            raise errors.StoreError(f"{self.describe()}: database info: unexpected answer")
        self._copies = self._copies_from(info)
        return info

    @staticmethod
    def _copies_from(info: dict) -> int:
        cluster = info.get("cluster")
        n = cluster.get("n") if isinstance(cluster, dict) else None
        return n if isinstance(n, int) and n > 0 else 1

    def copies(self) -> int:
        """How many copies of each document the database keeps (its ``n``); 1 when the server does not say."""
        if self._copies is None:
            self.check()
        assert self._copies is not None
        return self._copies

    def current_seq(self) -> Any:
        """The database's current update sequence, usable as ``since``."""
        return self.check().get("update_seq")

    def create_database(self) -> bool:
        """Create the database; True if it was created, False if it already existed.

        pouchdb-server with an admin account crashes when asked this without
        credentials; give it an admin's.
        """
        try:
            self._request("PUT", self._db_url, read_only=False, what="create database")
        except _Exists:
            return False
        self._copies = None
        return True

    def delete_database(self) -> None:
        """Delete the database; no error if it does not exist."""
        try:
            self._request("DELETE", self._db_url, read_only=False, what="delete database")
        except errors.DatabaseMissing:
            pass
        self._copies = None

    # ----------------------------------------------------------- the documents

    def get(self, doc_id: str) -> Optional[dict]:
        """The document's current revision, or None when it is missing or deleted."""
        try:
            doc = self._request("GET", self._doc_url(doc_id), read_only=True, what="read", doc_id=doc_id)
        except _DocMissing:
            return None
        return doc if isinstance(doc, dict) else None

    def get_many(self, doc_ids: List[str]) -> Dict[str, Optional[dict]]:
        """Every asked-for document in one request: id -> body, or None when missing or deleted."""
        ids = list(dict.fromkeys(doc_ids))
        if not ids:
            return {}
        url = self._with_query(f"{self._db_url}/_all_docs", include_docs=True)
        answer = self._request("POST", url, body={"keys": ids}, read_only=True, what="read many")
        found: Dict[str, Optional[dict]] = {doc_id: None for doc_id in ids}
        for row in (answer or {}).get("rows", []):
            doc = row.get("doc")
            if isinstance(doc, dict) and row.get("key") in found and not doc.get("_deleted"):
                found[row["key"]] = doc
        return found

    def list_prefix(self, prefix: str, *, limit: Optional[int] = None, descending: bool = False) -> List[dict]:
        """Documents whose id starts with ``prefix``, in id order (reversed when ``descending``)."""
        low, high = json.dumps(prefix), json.dumps(prefix + _HIGH_KEY_CHAR)
        start, end = (high, low) if descending else (low, high)
        url = self._with_query(
            f"{self._db_url}/_all_docs",
            include_docs=True,
            startkey=start,
            endkey=end,
            descending=True if descending else None,
            limit=limit,
        )
        answer = self._request("GET", url, read_only=True, what="list documents")
        docs = []
        for row in (answer or {}).get("rows", []):
            doc = row.get("doc")
            if isinstance(doc, dict) and str(row.get("id", "")).startswith(prefix):
                docs.append(doc)
        return docs

    def put(self, doc: dict) -> str:
        """Compare-and-swap one document and return its new revision.

        With ``doc['_rev']`` the write succeeds only if that is still the
        current revision; without it, only if the document does not exist (or
        is deleted). A lost swap raises Conflict and leaves ``doc`` as it was;
        a won one sets ``doc['_rev']``.
        """
        doc_id = doc.get("_id")
        body = doc if doc.get("_rev") is not None else {k: v for k, v in doc.items() if k != "_rev"}
        try:
            answer = self._request("PUT", self._doc_url(doc_id), body=body, read_only=False, what="write", doc_id=doc_id)
        except errors.Forbidden:
            if self._swap_lost(doc_id, body.get("_rev")):
                raise errors.Conflict(
                    f"document {doc_id!r} in {self.describe()}: write: conflict, the document changed since it was read"
                ) from None
            raise
        rev = answer.get("rev") if isinstance(answer, dict) else None
        if not isinstance(rev, str):
            raise errors.StoreError(f"document {doc_id!r} in {self.describe()}: write: the answer has no revision")
        doc["_rev"] = rev
        return rev

    def _swap_lost(self, doc_id: str, sent_rev: Optional[str]) -> bool:
        """After a 403: True if the write's revision is no longer current, so it lost a race anyway.

        pouchdb-server judges a write against the document's current revision,
        not the one the write replaces (CouchDB answers a stale ``_rev`` with
        409 before it validates), so a compare-and-swap that lost a race can
        draw a 403 there. Reported as Conflict, the caller re-reads and
        decides again, as after any lost swap.
        """
        try:
            current = self.get(doc_id)
        except errors.StoreError:
            return False
        current_rev = current.get("_rev") if current is not None else None
        return current_rev != sent_rev

    def delete(self, doc: dict) -> None:
        """Delete the document if ``doc['_rev']`` is still its current revision, else raise Conflict."""
        doc_id = doc.get("_id")
        rev = doc.get("_rev")
        if not rev:
            raise ValueError("deleting a document needs its _rev")
        url = self._with_query(self._doc_url(doc_id), rev=rev)
        try:
            self._request("DELETE", url, read_only=False, what="delete", doc_id=doc_id)
        except _DocMissing:
            # pouchdb-server answers a stale revision with 404, CouchDB with 409.
            raise errors.Conflict(
                f"document {doc_id!r} in {self.describe()}: delete: conflict, the document changed since it was read"
            ) from None

    # ----------------------------------------------------- security (admins)

    def get_security(self) -> dict:
        """The database's ``_security`` object (``{}`` when none is set)."""
        answer = self._request("GET", f"{self._db_url}/_security", read_only=True, what="read security")
        return answer if isinstance(answer, dict) else {}

    def put_security(self, security: dict) -> None:
        """Replace the database's ``_security`` object (needs a database or server admin)."""
        self._request("PUT", f"{self._db_url}/_security", body=security, read_only=False, what="write security")

    # ------------------------------------------------------------- the changes

    def wait_changes(self, doc_ids: Iterable[str], since: Any, timeout_s: float) -> ChangeBatch:
        """Wait until one of ``doc_ids`` changes after ``since``, at most ``timeout_s``.

        Returns as soon as the server reports a change to a watched document,
        with the new bodies; returns an empty batch once ``timeout_s`` has
        passed without one. Writes to other documents do not end the wait.
        A pending wait does not delay reads and writes from another thread.
        """
        watched = list(dict.fromkeys(doc_ids))
        if not watched:
            raise ValueError("wait_changes needs at least one document id")
        deadline = _clock.monotonic() + max(0.0, timeout_s)
        seq = since
        while True:
            remaining = deadline - _clock.monotonic()
            batch = self._poll_changes(watched, seq, min(max(0.0, remaining), _MAX_POLL_S))
            if batch.docs or deadline - _clock.monotonic() <= 0:
                return batch
            seq = batch.last_seq

    def _poll_changes(self, watched: List[str], since: Any, poll_s: float) -> ChangeBatch:
        """One request to ``_changes``; empty batch with ``since`` when the client ended it."""
        longpoll = poll_s >= 0.001
        url = self._with_query(
            f"{self._db_url}/_changes",
            feed="longpoll" if longpoll else "normal",
            timeout=int(poll_s * 1000) if longpoll else None,
            filter="_doc_ids",
            doc_ids=json.dumps(watched),
            include_docs=True,
            since=since,
        )
        started = _clock.monotonic()
        pool = self._changes_pool
        # The server may hold back even the status line until the poll ends.
        pool.set_thread_timeout(poll_s + self._timeout_s)
        try:
            try:
                _status, _headers, data = self._changes_session.request(
                    "GET", url, credentials=self._credentials
                )
            finally:
                pool.set_thread_timeout(None)
            raw = self._read_poll_body(data, started + poll_s)
        except couchdb.http.HTTPError as exc:
            raise self._http_error(exc, "wait for changes", None) from None
        except _CLIENT_FAILURES as exc:
            raise self._transport_error(exc, "wait for changes", pool) from None
        if raw is None:
            return ChangeBatch({}, since)
        answer = self._decode(raw, "wait for changes")
        return self._batch_from(answer, set(watched), since)

    def follow_changes(self, doc_ids: Iterable[str], since: Any, *, heartbeat_s: float) -> Iterator[ChangeBatch]:
        """Follow the continuous ``_changes`` feed of ``doc_ids`` from ``since``.

        Yields one batch per change as soon as the server sends it, and an
        empty batch (carrying the last position) at every server heartbeat,
        at most ``heartbeat_s`` apart, so the caller can stop or subscribe
        again with other ids. One request serves any number of changes: a
        handoff costs no new request to keep watching. Silence longer than
        ``heartbeat_s`` plus the request timeout raises Unreachable. Closing
        the generator closes its connection.
        """
        watched = list(dict.fromkeys(doc_ids))
        if not watched:
            raise ValueError("follow_changes needs at least one document id")
        url = self._with_query(
            f"{self._db_url}/_changes",
            feed="continuous",
            heartbeat=max(1, int(heartbeat_s * 1000)),
            filter="_doc_ids",
            doc_ids=json.dumps(watched),
            include_docs=True,
            since=since,
        )
        what = "follow changes"
        pool = self._changes_pool
        silence_s = heartbeat_s + self._timeout_s
        pool.set_thread_timeout(silence_s)
        data = None
        try:
            try:
                _status, _headers, data = self._changes_session.request("GET", url, credentials=self._credentials)
            finally:
                pool.set_thread_timeout(None)
            if not isinstance(data, couchdb.http.ResponseBody):
                return
            resp, conn = data.resp, data.conn
            wanted = set(watched)
            seq = since
            while True:
                if conn is not None and conn.sock is not None:
                    conn.sock.settimeout(silence_s)
                line = resp.readline()
                if not line:
                    return
                if not line.strip():
                    yield ChangeBatch({}, seq)
                    continue
                change = self._decode(line, what)
                if not isinstance(change, dict) or "last_seq" in change:
                    return
                seq = change.get("seq", seq)
                batch = self._batch_from({"results": [change], "last_seq": seq}, wanted, seq)
                if batch.docs:
                    yield batch
        except couchdb.http.HTTPError as exc:
            raise self._http_error(exc, what, None) from None
        except _CLIENT_FAILURES as exc:
            raise self._transport_error(exc, what, pool) from None
        finally:
            if isinstance(data, couchdb.http.ResponseBody):
                # A continuous response is never read to its end: never hand its connection back.
                data.resp.close()
                if data.conn is not None:
                    data.conn.close()
                data.conn = None

    def _read_poll_body(self, data: Any, poll_end: float) -> Optional[bytes]:
        """Read a changes answer; None when the server stayed silent past the poll's end.

        A streamed body is read piece by piece: each read may wait until the
        poll's end plus a short grace, so a server that keeps the longpoll open
        (pouchdb-server) does not hold the caller longer than asked.
        """
        if data is None:
            return b""
        if not isinstance(data, couchdb.http.ResponseBody):
            return data.read()
        resp, conn = data.resp, data.conn
        pieces = []
        try:
            while True:
                wait = max(0.0, poll_end - _clock.monotonic()) + _POLL_GRACE_S
                if conn is not None and conn.sock is not None:
                    conn.sock.settimeout(wait)
                piece = resp.read1(65536)
                if not piece:
                    break
                pieces.append(piece)
        except socket.timeout:
            if _clock.monotonic() < poll_end:
                raise
            resp.close()
            if conn is not None:
                conn.close()
            data.conn = None
            return None
        data.close()
        return b"".join(pieces)

    def _batch_from(self, answer: Any, watched: set, since: Any) -> ChangeBatch:
        if not isinstance(answer, dict):
            raise errors.StoreError(f"{self.describe()}: wait for changes: unexpected answer")
        docs: Dict[str, Optional[dict]] = {}
        without_body = []
        for change in answer.get("results") or []:
            doc_id = change.get("id")
            if doc_id not in watched:
                continue
            doc = change.get("doc")
            if change.get("deleted") or (isinstance(doc, dict) and doc.get("_deleted")):
                docs[doc_id] = None
            elif isinstance(doc, dict):
                docs[doc_id] = doc
            else:
                without_body.append(doc_id)
        if without_body:
            docs.update(self.get_many(without_body))
        last_seq = answer.get("last_seq")
        return ChangeBatch(docs, since if last_seq is None else last_seq)

    def close(self) -> None:
        """Close every connection; a wait pending on another thread ends with StoreError."""
        self._changes_pool.close()
        self._pool.close()
