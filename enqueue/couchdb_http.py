"""CouchDB-Python's HTTP layer, tamed: the only module that imports ``couchdb``.

``HttpSession`` sends one request and returns its decoded JSON body, or
raises one of the ``enqueue.errors.StoreError`` types with a one-line message
that names the database and the server but never a password. The store
(enqueue.couchdb_store) builds its URLs and gives them meaning.

CouchDB-Python (``couchdb.http.Session``) is no longer developed; nothing
else may import it, so the client can be replaced here alone. Four things
about that layer matter and are handled below:

* its response cache replays a cached body after a ``304``; it is switched
  off, so every read asks the server;
* its retry loop either retries a request blindly or, with no retry delays,
  fails with an internal error; retries are switched off there and done here
  instead, only for reads;
* its connection pool reuses sockets that the server closed while idle
  (pouchdb-server closes idle keep-alive connections after 5 s); the pool here
  drops such sockets before reuse;
* a longpoll holds its socket, so a store keeps its changes waits on a session
  and pool of their own, and a pending wait never holds up reads and writes.
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
import sys
from typing import Any, Iterator, Optional, Tuple


def _import_couchdb_http() -> None:
    """Import ``couchdb.http`` without the package's version lookup.

    ``couchdb/__init__.py`` asks setuptools' ``pkg_resources`` for its own
    version (and falls back to ``'?'`` on any error); that import alone adds
    about 12 MB to every agent's resident memory and 0.1 s to its start-up.
    Blocking it for the duration of this import makes the lookup fail fast;
    a ``pkg_resources`` someone else imported before is left as it was.
    """
    blocked = "pkg_resources" not in sys.modules
    if blocked:
        sys.modules["pkg_resources"] = None  # type: ignore[assignment]
    try:
        import couchdb.http  # noqa: F401
    finally:
        if blocked and sys.modules.get("pkg_resources", 0) is None:
            del sys.modules["pkg_resources"]


_import_couchdb_http()
import couchdb.http  # noqa: E402

from enqueue import errors  # noqa: E402
from enqueue.clock import SystemClock  # noqa: E402

__all__ = ["AlreadyExists", "DocMissing", "HttpSession", "one_line"]

_clock = SystemClock()

# pouchdb-server ignores the longpoll ``timeout`` and keeps the response open,
# sending a newline now and then; the client ends such a poll itself once the
# asked-for time has passed and the server has then been silent this long.
_POLL_GRACE_S = 0.25

# 404 reasons that mean "no such document" rather than "no such database".
_DOC_MISSING_REASONS = frozenset({"missing", "deleted"})
#: The ``what`` of a ``_security`` write, whose 500 no_majority is a refusal.
WRITE_SECURITY = "write security"


class _Closed(Exception):
    """The session was closed while a request was in flight."""


class DocMissing(errors.StoreError):
    """404 for a document (not for the database); never leaves the CouchDB driver."""


class AlreadyExists(errors.StoreError):
    """412: the thing to be created exists; never leaves the CouchDB driver."""


# What CouchDB-Python lets through besides HTTPError: socket, TLS and protocol
# failures, and the TypeError/AttributeError/ValueError its error handling
# raises on an error answer that is not small JSON.
_CLIENT_FAILURES = (_Closed, OSError, http.client.HTTPException, ValueError, TypeError, AttributeError)


def one_line(text: object) -> str:
    """``text`` on one line, runs of whitespace made single spaces."""
    return " ".join(str(text).split())


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

class HttpSession:
    """One CouchDB-Python session, its pool and the credentials it sends.

    ``where`` names the database and server in every error message (it must
    hold no secret); ``secret`` is masked should the server echo it.
    Invariant: every failure leaves as a StoreError, with no exception chained.
    """

    def __init__(
        self,
        where: str,
        *,
        credentials: Optional[Tuple[str, str]],
        secret: str,
        timeout_s: float,
        ssl_context: Optional[ssl.SSLContext],
    ) -> None:
        self._where = where
        self._credentials = credentials
        self._secret = secret
        self._timeout_s = timeout_s
        self.session, self.pool = _new_session(timeout_s, ssl_context)

    def close(self) -> None:
        """Cut every connection; a request pending on another thread ends with "the store is closed"."""
        self.pool.close()

    def _scrub(self, text: Any) -> str:
        """One line of server- or system-supplied text, with the password masked should it appear."""
        line = one_line(text)
        # Masking a one- or two-character password would garble every message.
        if len(self._secret) >= 3:
            line = line.replace(self._secret, "***")
        return line

    def request(
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
                _status, _headers, data = self.session.request(
                    method, url, body=body, credentials=self._credentials
                )
                raw = data.read() if data is not None else b""
            except couchdb.http.HTTPError as exc:
                raise self._http_error(exc, what, doc_id) from None
            except (ConnectionResetError, ConnectionAbortedError, BrokenPipeError) as exc:
                if attempt + 1 < attempts and not self.pool.closed:
                    continue
                raise self._transport_error(exc, what) from None
            except _CLIENT_FAILURES as exc:
                raise self._transport_error(exc, what) from None
            return self.decode(raw, what)
        raise AssertionError("unreachable")  # pragma: no cover

    def poll(self, url: str, what: str, poll_s: float, *, body: Optional[dict] = None) -> Tuple[bool, Any]:
        """One longpoll request (a POST of ``body`` if given, else a GET): ``(True, decoded body)``,
        or ``(False, None)`` when the server stayed silent past ``poll_s`` and the client ended the poll."""
        started = _clock.monotonic()
        # The server may hold back even the status line until the poll ends.
        try:
            data = self._send_waiting(url, body, poll_s + self._timeout_s)
            raw = self._read_poll_body(data, started + poll_s)
        except couchdb.http.HTTPError as exc:
            raise self._http_error(exc, what, None) from None
        except _CLIENT_FAILURES as exc:
            raise self._transport_error(exc, what) from None
        if raw is None:
            return False, None
        return True, self.decode(raw, what)

    def _send_waiting(self, url: str, body: Optional[dict], timeout_s: float) -> Any:
        """Send a GET (or a POST of ``body``) whose answer may be slow to start; its socket waits ``timeout_s``."""
        self.pool.set_thread_timeout(timeout_s)
        try:
            _status, _headers, data = self.session.request(
                "GET" if body is None else "POST", url, body=body, credentials=self._credentials)
        finally:
            self.pool.set_thread_timeout(None)
        return data

    def lines(self, url: str, what: str, silence_s: float, *, body: Optional[dict] = None) -> Iterator[bytes]:
        """GET (or POST ``body`` for) a streamed answer and yield it line by line as the server sends it.

        Silence longer than ``silence_s`` raises Unreachable; the end of the
        answer ends the iteration. Closing the generator closes its
        connection, which is never handed back to the pool (a stream is never
        read to its end).
        """
        data = None
        try:
            data = self._send_waiting(url, body, silence_s)
            if not isinstance(data, couchdb.http.ResponseBody):
                return
            resp, conn = data.resp, data.conn
            while True:
                if conn is not None and conn.sock is not None:
                    conn.sock.settimeout(silence_s)
                line = resp.readline()
                if not line:
                    return
                yield line
        except couchdb.http.HTTPError as exc:
            raise self._http_error(exc, what, None) from None
        except _CLIENT_FAILURES as exc:
            raise self._transport_error(exc, what) from None
        finally:
            if isinstance(data, couchdb.http.ResponseBody):
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


    def decode(self, raw: bytes, what: str) -> Any:
        try:
            return json.loads(raw.decode("utf-8")) if raw.strip() else None
        except ValueError:
            raise errors.StoreError(f"{self._where}: {what}: the server's answer is not JSON") from None

    def _transport_error(self, exc: BaseException, what: str) -> errors.StoreError:
        """Translate a failure below HTTP (socket, TLS, protocol) into our error."""
        if isinstance(exc, _Closed) or self.pool.closed:
            return errors.StoreError(f"{self._where}: {what}: the store is closed")
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
            return errors.StoreError(f"{self._where}: {what}: unexpected answer ({type(exc).__name__})")
        return errors.Unreachable(f"{self._where}: {what}: {detail}")

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
        where = self._where if doc_id is None else f"document {doc_id!r} in {self._where}"
        prefix = f"{where}: {what}"
        if isinstance(exc, couchdb.http.Unauthorized):
            return errors.AuthFailed(f"{prefix}: the server refused the credentials (401 {detail})".rstrip())
        if isinstance(exc, couchdb.http.Forbidden):
            return errors.Forbidden(f"{prefix}: forbidden (403 {detail})".rstrip())
        if what == WRITE_SECURITY and status == 500 and reason == "no_majority":
            # CouchDB 3 answers a non-admin's _security write so: every shard refused it as forbidden.
            return errors.Forbidden(f"{prefix}: forbidden (500 no_majority: no copy of the database accepted it; "
                                    f"only an admin of the database may change _security)")
        if isinstance(exc, couchdb.http.ResourceConflict):
            return errors.Conflict(f"{prefix}: conflict, the document changed since it was read")
        if isinstance(exc, couchdb.http.ResourceNotFound):
            if doc_id is not None and reason in _DOC_MISSING_REASONS:
                return DocMissing(f"{prefix}: no such document")
            return errors.DatabaseMissing(f"{self._where}: the database does not exist")
        if isinstance(exc, couchdb.http.PreconditionFailed):
            return AlreadyExists(f"{prefix}: precondition failed (412 {detail})".rstrip())
        code = f"HTTP {status}" if status else "HTTP error"
        return errors.StoreError(f"{prefix}: {code} {detail}".rstrip())
