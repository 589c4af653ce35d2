"""The CouchDB driver of ``enqueue.store.Store``.

``CouchStore`` offers what the protocol needs and nothing more: read a
document, compare-and-swap a document, read many documents in one request,
list documents by id prefix, and wait on or follow the ``_changes`` feed of a
few documents; ``open_store(connection)`` is how enqueue opens one. It builds
CouchDB's URLs and reads its answers; the requests themselves go through
``enqueue.couchdb_http``, the only module that imports the CouchDB client.
Every failure leaves as one of the ``enqueue.errors.StoreError`` types, with
a one-line message that names the database and the server but never a
password.

Reads and writes use one HTTP session, changes waits another: a pending wait never holds up reads and writes.
"""

from __future__ import annotations

import contextlib
import json
import ssl
import urllib.parse
from typing import Any, Dict, Iterable, Iterator, List, Optional, Tuple

from enqueue import errors
from enqueue.clock import SystemClock
from enqueue.connection import Connection
from enqueue.couchdb_http import WRITE_SECURITY, AlreadyExists, DocMissing, HttpSession, one_line
from enqueue.store import ChangeBatch, Seq
from enqueue.urls import BadUrl, split_url

__all__ = ["CouchStore", "open_store"]

_clock = SystemClock()

# CouchDB caps a longpoll's ``timeout`` at its changes_timeout (60 s by default), and
# proxies commonly cut requests after 60 s: longer waits are made of shorter polls.
_MAX_POLL_S = 50.0

_HIGH_KEY_CHAR = "\uffff"  # the highest character: the end of an id-prefix range

class CouchStore:
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
        try:
            parts = split_url(url)
        except BadUrl as exc:
            raise errors.ConfigError(f"CouchDB URL: {exc}") from None
        base = parts.base
        if not database:
            raise errors.ConfigError("the CouchDB database name is empty")
        if request_timeout_s <= 0:
            raise errors.ConfigError("the CouchDB request timeout must be positive")
        if username is None:
            username, password = parts.username, parts.password
        self._base = base
        self._database = database
        self._db_url = f"{base}/{urllib.parse.quote(database, safe='')}"
        credentials: Optional[Tuple[str, str]] = (username, password or "") if username else None
        self._timeout_s = float(request_timeout_s)
        ssl_context = None
        if base.startswith("https:"):
            try:
                ssl_context = ssl.create_default_context(cafile=ca_file)
            except (OSError, ssl.SSLError) as exc:
                raise errors.ConfigError(f"cannot use CA file {ca_file!r}: {one_line(exc)}") from None
        where = self.describe()
        self._http = HttpSession(where, credentials=credentials, secret=password or "",
                                 timeout_s=self._timeout_s, ssl_context=ssl_context)
        self._changes_http = HttpSession(where, credentials=credentials, secret=password or "",
                                         timeout_s=self._timeout_s, ssl_context=ssl_context)
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
        return f"<CouchStore {self.describe()}>"

    def __enter__(self) -> "CouchStore":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ------------------------------------------------------------ the URLs

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

    # ------------------------------------------------------------ the database

    def check(self) -> dict:
        """The database's info document; raises if it cannot be read.

        Raises Unreachable, AuthFailed, Forbidden or DatabaseMissing.
        """
        info = self._http.request("GET", self._db_url, read_only=True, what="database info")
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

    def current_seq(self) -> Optional[Seq]:
        """The database's current update sequence, usable as ``since``."""
        return self.check().get("update_seq")

    def create_database(self) -> bool:
        """Create the database with one copy in one shard (``?n=1&q=1``); True if it was created, False if it
        already existed.

        On a cluster that places every document on one node, the only layout
        where a 409 proves a lost compare-and-swap; a single node ignores it.
        pouchdb-server with an admin account crashes when asked this without
        credentials; give it an admin's.
        """
        try:
            self._http.request("PUT", self._with_query(self._db_url, n=1, q=1), read_only=False,
                               what="create database")
        except AlreadyExists:
            return False
        self._copies = None
        return True

    def shards(self) -> Optional[Dict[str, List[str]]]:
        """Each shard range of the database and the nodes holding a copy (``GET /db/_shards``).

        None when the server has no such endpoint (pouchdb-server, and any
        server that is no CouchDB cluster member): a single node then.
        """
        try:
            answer = self._http.request("GET", f"{self._db_url}/_shards", read_only=True, what="read shards",
                                        doc_id="_shards")
        except DocMissing:
            return None
        shards = answer.get("shards") if isinstance(answer, dict) else None
        if not isinstance(shards, dict):
            return None
        return {str(key): [str(node) for node in nodes] for key, nodes in shards.items() if isinstance(nodes, list)}

    def delete_database(self) -> None:
        """Delete the database; no error if it does not exist."""
        try:
            self._http.request("DELETE", self._db_url, read_only=False, what="delete database")
        except errors.DatabaseMissing:
            pass
        self._copies = None

    # ----------------------------------------------------------- the documents

    def get(self, doc_id: str) -> Optional[dict]:
        """The document's current revision, or None when it is missing or deleted."""
        try:
            doc = self._http.request("GET", self._doc_url(doc_id), read_only=True, what="read", doc_id=doc_id)
        except DocMissing:
            return None
        return doc if isinstance(doc, dict) else None

    def deleted_rev(self, doc_id: str) -> Optional[str]:
        """The tombstone's revision of a deleted document (``_all_docs`` lists it by key, marked deleted)."""
        answer = self._http.request("POST", f"{self._db_url}/_all_docs", body={"keys": [doc_id]}, read_only=True,
                                    what="read", doc_id=doc_id)
        values = [row.get("value") for row in (answer or {}).get("rows", []) if row.get("key") == doc_id]
        tomb = next((v for v in values if isinstance(v, dict) and v.get("deleted") is True), None)
        return tomb["rev"] if tomb is not None and isinstance(tomb.get("rev"), str) else None

    def get_many(self, doc_ids: List[str]) -> Dict[str, Optional[dict]]:
        """Every asked-for document in one request: id -> body, or None when missing or deleted."""
        ids = list(dict.fromkeys(doc_ids))
        if not ids:
            return {}
        url = self._with_query(f"{self._db_url}/_all_docs", include_docs=True)
        answer = self._http.request("POST", url, body={"keys": ids}, read_only=True, what="read many")
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
        answer = self._http.request("GET", url, read_only=True, what="list documents")
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
            answer = self._http.request(
                "PUT", self._doc_url(doc_id), body=body, read_only=False, what="write", doc_id=doc_id
            )
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
            self._http.request("DELETE", url, read_only=False, what="delete", doc_id=doc_id)
        except DocMissing:
            # pouchdb-server answers a stale revision with 404, CouchDB with 409.
            raise errors.Conflict(
                f"document {doc_id!r} in {self.describe()}: delete: conflict, the document changed since it was read"
            ) from None

    # ----------------------------------------------------- security (admins)

    def get_security(self) -> dict:
        """The database's ``_security`` object (``{}`` when none is set)."""
        answer = self._http.request("GET", f"{self._db_url}/_security", read_only=True, what="read security")
        return answer if isinstance(answer, dict) else {}

    def put_security(self, security: dict) -> None:
        """Replace the database's ``_security`` object (needs a database or server admin)."""
        self._http.request("PUT", f"{self._db_url}/_security", body=security, read_only=False, what=WRITE_SECURITY)

    # ------------------------------------------------------------- the changes

    def wait_changes(self, doc_ids: Iterable[str], since: Optional[Seq], timeout_s: float) -> ChangeBatch:
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

    def _poll_changes(self, watched: List[str], since: Optional[Seq], poll_s: float) -> ChangeBatch:
        """One request to ``_changes``; empty batch with ``since`` when the client ended it."""
        longpoll = poll_s >= 0.001
        url = self._with_query(
            f"{self._db_url}/_changes",
            feed="longpoll" if longpoll else "normal",
            timeout=int(poll_s * 1000) if longpoll else None,
            filter="_doc_ids",
            include_docs=True,
            since=since,
        )
        # The ids go in the body: a thousand sites' ids no longer fit in a URL.
        answered, answer = self._changes_http.poll(url, "wait for changes", poll_s, body={"doc_ids": watched})
        if not answered:
            return ChangeBatch({}, since)
        return self._batch_from(answer, set(watched), since)

    def follow_changes(
        self, doc_ids: Iterable[str], since: Optional[Seq], *, heartbeat_s: float
    ) -> Iterator[ChangeBatch]:
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
            include_docs=True,
            since=since,
        )
        what = "follow changes"
        wanted = set(watched)
        seq = since
        lines = self._changes_http.lines(url, what, heartbeat_s + self._timeout_s, body={"doc_ids": watched})
        with contextlib.closing(lines):
            for line in lines:
                if not line.strip():
                    yield ChangeBatch({}, seq)
                    continue
                change = self._changes_http.decode(line, what)
                if not isinstance(change, dict) or "last_seq" in change:
                    return
                seq = change.get("seq", seq)
                batch = self._batch_from({"results": [change], "last_seq": seq}, wanted, seq)
                if batch.docs:
                    yield batch

    def _batch_from(self, answer: Any, watched: set, since: Optional[Seq]) -> ChangeBatch:
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
        self._changes_http.close()
        self._http.close()


def open_store(connection: Connection) -> CouchStore:
    """The store on ``connection``'s database: the one way enqueue opens the shared database.

    Makes no request yet; close the store when done (it is a context manager).
    """
    return CouchStore(
        connection.url,
        connection.database,
        username=connection.username,
        password=connection.password,
        ca_file=connection.ca_file,
        request_timeout_s=connection.request_timeout_s,
    )
