"""The in-memory driver of ``enqueue.store.Store``, for unit tests and the simulation.

``MemoryStore`` behaves like a single CouchDB node in everything the
protocol relies on (the contract suite, tests/integration/test_store.py,
runs it beside the real server and fails where they differ):

* revisions are ``N-hex``; ``N`` counts the writes of the document, a
  deletion and the re-creation after it included;
* a write with a stale, unknown or missing ``_rev`` loses with Conflict;
  a write without ``_rev`` creates the document only if it is absent;
* a deletion leaves a tombstone: reads say None (``deleted_rev`` gives its
  revision), the update sequence moves and the changes report it as None;
* the update sequence is an integer that every write moves forward by one;
* the changes calls see only the watched ids; a read from ``since`` reports
  each changed document once, at its latest version (as the server does),
  and a followed feed then delivers every later write as it lands;
* ``_security``, ``copies() == 1``, DatabaseMissing for a missing database.

Not modelled: design documents run no validation (they are stored like any
document), ``_local/`` documents, attachments, users and credentials.

Databases live in a ``MemoryServer``, so several stores (one per site, say)
share them; ``MemoryStore()`` alone makes a private server with its
database created. The store starts no thread; a changes wait blocks on a
condition that every write notifies. Revision hashes come from the server's
random generator: ``seed=`` makes them, and so every run, reproducible.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Deque, Dict, Iterable, Iterator, List, Optional, Tuple

from enqueue import errors
from enqueue.store import ChangeBatch, Seq

__all__ = ["MemoryServer", "MemoryStore"]

# Fields CouchDB accepts in a document body besides the ones of its own.
_SPECIAL_FIELDS = frozenset({"_id", "_rev", "_deleted"})


@dataclass
class _Entry:
    """The current leaf of one document: ``body`` is None for a tombstone."""

    generation: int
    rev: str
    seq: int
    body: Optional[dict]


@dataclass
class _Feed:
    """One followed feed: the watched ids and the changes not yet taken from it."""

    watched: frozenset
    pending: Deque[ChangeBatch] = field(default_factory=deque)


@dataclass
class _Database:
    docs: Dict[str, _Entry] = field(default_factory=dict)
    seq: int = 0
    security: dict = field(default_factory=dict)
    feeds: List[_Feed] = field(default_factory=list)


def _copy(value: dict) -> dict:
    """A deep copy through JSON, so a stored body is what a server would keep and hand back."""
    return json.loads(json.dumps(value))


def _position(since: Optional[Seq]) -> int:
    if since is None:
        return 0
    try:
        return int(since)
    except (TypeError, ValueError):
        raise ValueError(f"not an update sequence of a memory store: {since!r}") from None


class MemoryServer:
    """Databases by name, behind one lock.

    Invariant: every state change happens under ``_cond`` and notifies it,
    so a changes wait re-checks exactly when something it may see landed.
    """

    def __init__(self, *, seed: Optional[int] = None, url: str = "memory://enqueue") -> None:
        self.url = url
        self._cond = threading.Condition()
        self._dbs: Dict[str, _Database] = {}
        self._random = random.Random(seed)

    def store(self, database: str) -> "MemoryStore":
        """A store on ``database`` of this server (created or not: see ``create_database``)."""
        return MemoryStore(database, server=self)

    def _new_rev(self, generation: int) -> str:
        return f"{generation}-{self._random.getrandbits(128):032x}"


class MemoryStore:
    """One database of a ``MemoryServer``; thread-safe, starts no thread.

    ``MemoryStore(database, seed=S)`` makes its own server with the database
    created; ``MemoryStore(database, server=srv)`` (or ``srv.store(database)``)
    shares ``srv``, where the database may or may not exist yet.
    """

    def __init__(self, database: str = "enqueue", *, server: Optional[MemoryServer] = None,
                 seed: Optional[int] = None) -> None:
        if not database:
            raise errors.ConfigError("the database name is empty")
        if server is not None and seed is not None:
            raise ValueError("a seed belongs to the server: give it to MemoryServer")
        self._database = database
        self._closed = False
        self._waiting = 0
        if server is None:
            server = MemoryServer(seed=seed)
            server._dbs[database] = _Database()
        self._server = server
        self._cond = server._cond

    # ------------------------------------------------------------- naming

    @property
    def database(self) -> str:
        return self._database

    @property
    def url(self) -> str:
        return self._server.url

    @property
    def server(self) -> MemoryServer:
        """The server holding this store's database."""
        return self._server

    def describe(self) -> str:
        return f"database {self._database!r} at {self._server.url}"

    def __repr__(self) -> str:
        return f"<MemoryStore {self.describe()}>"

    def __enter__(self) -> "MemoryStore":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def _db(self, what: str) -> _Database:
        """The live database; called under the lock."""
        if self._closed:
            raise errors.StoreError(f"{self.describe()}: {what}: the store is closed")
        db = self._server._dbs.get(self._database)
        if db is None:
            raise errors.DatabaseMissing(f"{self.describe()}: the database does not exist")
        return db

    def _write_error(self, doc_id: str, what: str, detail: str) -> errors.StoreError:
        return errors.StoreError(f"document {doc_id!r} in {self.describe()}: {what}: {detail}")

    def _conflict(self, doc_id: str, what: str) -> errors.Conflict:
        return errors.Conflict(
            f"document {doc_id!r} in {self.describe()}: {what}: conflict, the document changed since it was read"
        )

    # ----------------------------------------------------------- database

    def check(self) -> dict:
        with self._cond:
            db = self._db("database info")
            live = sum(1 for entry in db.docs.values() if entry.body is not None)
            return {"db_name": self._database, "update_seq": db.seq, "doc_count": live,
                    "doc_del_count": len(db.docs) - live, "instance_start_time": "0"}

    def copies(self) -> int:
        with self._cond:
            self._db("database info")
        return 1

    def current_seq(self) -> Optional[Seq]:
        with self._cond:
            return self._db("database info").seq

    def shards(self) -> Optional[Dict[str, List[str]]]:
        with self._cond:
            self._db("database info")
        return None

    def create_database(self) -> bool:
        with self._cond:
            if self._closed:
                raise errors.StoreError(f"{self.describe()}: create database: the store is closed")
            if self._database in self._server._dbs:
                return False
            self._server._dbs[self._database] = _Database()
            self._cond.notify_all()
            return True

    def delete_database(self) -> None:
        with self._cond:
            if self._closed:
                raise errors.StoreError(f"{self.describe()}: delete database: the store is closed")
            self._server._dbs.pop(self._database, None)
            self._cond.notify_all()

    def get_security(self) -> dict:
        with self._cond:
            return _copy(self._db("read security").security)

    def put_security(self, security: dict) -> None:
        with self._cond:
            self._db("write security").security = _copy(security)

    # ---------------------------------------------------------- documents

    @staticmethod
    def _check_id(doc_id: object) -> str:
        if not isinstance(doc_id, str) or not doc_id:
            raise ValueError("a document id must be a non-empty string")
        if doc_id.startswith("_local/"):
            raise ValueError("the memory store keeps no _local documents")
        return doc_id

    def get(self, doc_id: str) -> Optional[dict]:
        self._check_id(doc_id)
        with self._cond:
            entry = self._db("read").docs.get(doc_id)
            return None if entry is None or entry.body is None else _copy(entry.body)

    def deleted_rev(self, doc_id: str) -> Optional[str]:
        self._check_id(doc_id)
        with self._cond:
            entry = self._db("read").docs.get(doc_id)
            return entry.rev if entry is not None and entry.body is None else None

    def get_many(self, doc_ids: List[str]) -> Dict[str, Optional[dict]]:
        ids = list(dict.fromkeys(doc_ids))
        if not ids:
            return {}
        with self._cond:
            docs = self._db("read many").docs
            found: Dict[str, Optional[dict]] = {}
            for doc_id in ids:
                entry = docs.get(doc_id)
                found[doc_id] = None if entry is None or entry.body is None else _copy(entry.body)
            return found

    def list_prefix(self, prefix: str, *, limit: Optional[int] = None, descending: bool = False) -> List[dict]:
        with self._cond:
            docs = self._db("list documents").docs
            found = sorted(((doc_id, entry.body) for doc_id, entry in docs.items()
                            if doc_id.startswith(prefix) and entry.body is not None), reverse=descending)
            return [_copy(body) for _doc_id, body in found[:limit]]

    def put(self, doc: dict) -> str:
        doc_id = self._check_id(doc.get("_id"))
        for name in doc:
            if name.startswith("_") and name not in _SPECIAL_FIELDS:
                raise self._write_error(doc_id, "write", f"bad special document member {name}")
        if doc_id.startswith("_") and not doc_id.startswith("_design/"):
            raise self._write_error(doc_id, "write", "only reserved document ids may start with underscore")
        rev = doc.get("_rev")
        if rev is not None and not _valid_rev(rev):
            raise self._write_error(doc_id, "write", "invalid rev format")
        try:
            body = _copy({k: v for k, v in doc.items() if k not in ("_rev", "_deleted")})
        except (TypeError, ValueError):
            raise self._write_error(doc_id, "write", "the document is not JSON") from None
        with self._cond:
            db = self._db("write")
            entry = db.docs.get(doc_id)
            if rev is None:
                if entry is not None and entry.body is not None:
                    raise self._conflict(doc_id, "write")
            elif entry is None or entry.rev != rev:
                raise self._conflict(doc_id, "write")
            new_rev = self._apply(db, doc_id, entry, None if doc.get("_deleted") else body)
        doc["_rev"] = new_rev
        return new_rev

    def delete(self, doc: dict) -> None:
        doc_id = self._check_id(doc.get("_id"))
        rev = doc.get("_rev")
        if not rev:
            raise ValueError("deleting a document needs its _rev")
        with self._cond:
            db = self._db("delete")
            entry = db.docs.get(doc_id)
            if entry is None or entry.body is None or entry.rev != rev:
                raise self._conflict(doc_id, "delete")
            self._apply(db, doc_id, entry, None)

    def _apply(self, db: _Database, doc_id: str, entry: Optional[_Entry], body: Optional[dict]) -> str:
        """Store the next revision of ``doc_id`` (None: a tombstone), move the sequence, wake the waits."""
        generation = (entry.generation if entry is not None else 0) + 1
        rev = self._server._new_rev(generation)
        db.seq += 1
        if body is not None:
            body["_rev"] = rev
        db.docs[doc_id] = _Entry(generation, rev, db.seq, body)
        for feed in db.feeds:
            if doc_id in feed.watched:
                feed.pending.append(ChangeBatch({doc_id: None if body is None else _copy(body)}, db.seq))
        self._cond.notify_all()
        return rev

    # ------------------------------------------------------------ changes

    @staticmethod
    def _changed(db: _Database, watched: Iterable[str], since: int) -> List[Tuple[int, str, Optional[dict]]]:
        """Each watched document written after ``since``, once, at its latest version, in sequence order."""
        found = []
        for doc_id in watched:
            entry = db.docs.get(doc_id)
            if entry is not None and entry.seq > since:
                found.append((entry.seq, doc_id, None if entry.body is None else _copy(entry.body)))
        return sorted(found, key=lambda change: change[0])

    def wait_changes(self, doc_ids: Iterable[str], since: Optional[Seq], timeout_s: float) -> ChangeBatch:
        watched = list(dict.fromkeys(doc_ids))
        if not watched:
            raise ValueError("wait_changes needs at least one document id")
        start = _position(since)
        deadline = time.monotonic() + max(0.0, timeout_s)
        with self._cond:
            self._waiting += 1
            try:
                while True:
                    db = self._db("wait for changes")
                    changed = self._changed(db, watched, start)
                    remaining = deadline - time.monotonic()
                    if changed or remaining <= 0:
                        return ChangeBatch({doc_id: body for _seq, doc_id, body in changed}, db.seq)
                    self._cond.wait(remaining)
            finally:
                self._waiting -= 1

    def follow_changes(
        self, doc_ids: Iterable[str], since: Optional[Seq], *, heartbeat_s: float
    ) -> Iterator[ChangeBatch]:
        watched = list(dict.fromkeys(doc_ids))
        if not watched:
            raise ValueError("follow_changes needs at least one document id")
        position = since
        feed = _Feed(frozenset(watched))
        with self._cond:
            db = self._db("follow changes")
            for seq, doc_id, body in self._changed(db, watched, _position(since)):
                feed.pending.append(ChangeBatch({doc_id: body}, seq))
            db.feeds.append(feed)
        try:
            while True:
                gone, batch = self._next_on_feed(db, feed, heartbeat_s)
                if gone:
                    return  # the database went away: the feed ends, as the server's does
                if batch is None:
                    yield ChangeBatch({}, position)
                else:
                    position = batch.last_seq
                    yield batch
        finally:
            with self._cond:
                if feed in db.feeds:
                    db.feeds.remove(feed)

    def _next_on_feed(self, db: _Database, feed: _Feed, heartbeat_s: float) -> Tuple[bool, Optional[ChangeBatch]]:
        """``(gone, batch)``: the feed's next change, None after ``heartbeat_s`` without one;
        ``gone`` once the feed's database was deleted."""
        deadline = time.monotonic() + max(0.0, heartbeat_s)
        with self._cond:
            self._waiting += 1
            try:
                while not feed.pending:
                    if self._closed:
                        raise errors.StoreError(f"{self.describe()}: follow changes: the store is closed")
                    if self._server._dbs.get(self._database) is not db:
                        return True, None
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return False, None
                    self._cond.wait(remaining)
                return False, feed.pending.popleft()
            finally:
                self._waiting -= 1


def _valid_rev(rev: object) -> bool:
    """``N-hex`` with N >= 1, the only revision form a server accepts."""
    if not isinstance(rev, str):
        return False
    generation, dash, digest = rev.partition("-")
    return bool(dash and generation.isdigit() and int(generation) > 0 and digest)
