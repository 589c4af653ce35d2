"""The Store contract, against both drivers: the CouchDB one on whichever
server the session selected, and the in-memory one.

What the protocol relies on: reads that say "absent" for missing and deleted
documents, compare-and-swap writes that lose with Conflict, revisions that
count writes, bulk reads, prefix listings, an update sequence that every
write (a deletion included) moves, a changes wait that wakes on the watched
documents only, the continuous feed the agents follow (every watched write in
order, from ``since``, with empty beats between), and errors that name the
problem without the password. Every test taking ``backend`` runs on both
drivers, so the in-memory one cannot drift from the server unnoticed; the
tests at the end are about HTTP (timeouts, sockets, credentials) and run on
the CouchDB driver only.
"""

from __future__ import annotations

import queue
import re
import select
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import pytest

from enqueue import errors
from enqueue.couchdb_store import CouchStore
from enqueue.devserver import DevServer
from enqueue.memory_store import MemoryServer, MemoryStore
from enqueue.store import ChangeBatch, Store
from tests.support import servers
from tests.support.canned_http import canned_server


@dataclass
class Backend:
    """A fresh database behind one driver: ``store`` is on it, ``open(name)``
    makes another store on the same server; ``kind`` is "memory" or the
    CouchDB server's kind ("embedded", "container", "env")."""

    kind: str
    name: str
    store: Store
    open: Callable[[str], Store]


@pytest.fixture(params=["couchdb", "memory"])
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    if request.param == "memory":
        server = MemoryServer(seed=7)
        store = server.store("enqueue_test_memory")
        assert store.create_database() is True
        yield Backend("memory", store.database, store, server.store)
        store.close()
        return
    couch: servers.CouchServer = request.getfixturevalue("couch_server")
    database = servers.create_database(couch)
    yield Backend(couch.kind, database.name, database.store, couch.store)
    database.drop()


class Background:
    """Run one call on a thread; ``result()`` waits for it and returns or re-raises."""

    def __init__(self, call: Callable[[], Any]) -> None:
        self._results: "queue.Queue[tuple[bool, Any]]" = queue.Queue()
        self._thread = threading.Thread(target=self._run, args=(call,), daemon=True)
        self._thread.start()

    def _run(self, call: Callable[[], Any]) -> None:
        try:
            self._results.put((True, call()))
        except BaseException as exc:  # handed to the test thread
            self._results.put((False, exc))

    def result(self, timeout_s: float) -> Any:
        ok, value = self._results.get(timeout=timeout_s)
        self._thread.join(timeout_s)
        if not ok:
            raise value
        return value

    def done(self) -> bool:
        return not self._results.empty()


def wait_until_pending(store: Store) -> None:
    """Block until a changes wait of ``store`` is pending.

    White-box: the CouchDB store's changes pool tracks the connections in
    use; the memory store counts the waits blocked on its condition.
    """

    def pending() -> bool:
        if isinstance(store, MemoryStore):
            return store._waiting > 0
        assert isinstance(store, CouchStore)
        return bool(store._changes_http.pool._busy)

    deadline = time.monotonic() + 10
    while not pending():
        assert time.monotonic() < deadline, "the changes wait never reached the server"
        time.sleep(0.005)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ------------------------------------------------------------------ reads


def test_get_returns_the_document_and_none_when_missing_or_deleted(backend):
    store = backend.store
    assert store.get("nothing") is None
    doc = {"_id": "a", "value": 1}
    store.put(doc)
    got = store.get("a")
    assert got == {"_id": "a", "_rev": doc["_rev"], "value": 1}
    store.delete(got)
    assert store.get("a") is None


def test_ids_that_need_escaping_round_trip(backend):
    for doc_id in ("with space", "slash/inside", "enqueue_turn:000042", "ünïcode?&#", "_design/enqueue"):
        backend.store.put({"_id": doc_id, "v": doc_id})
        assert backend.store.get(doc_id)["v"] == doc_id


def test_get_many_reads_many_documents_in_one_call_including_missing_and_deleted(backend):
    store = backend.store
    for i in range(150):
        store.put({"_id": f"doc{i:03d}", "i": i})
    gone = store.get("doc007")
    store.delete(gone)
    wanted = [f"doc{i:03d}" for i in range(150)] + ["absent1", "absent2"]
    found = store.get_many(wanted)
    assert set(found) == set(wanted)
    assert found["doc149"]["i"] == 149
    assert found["doc007"] is None
    assert found["absent1"] is None and found["absent2"] is None
    assert store.get_many([]) == {}


def test_list_prefix_lists_by_id_with_limit_and_order(backend):
    store = backend.store
    for doc_id in ("turn:003", "turn:001", "turn:002", "turns", "turn", "tur", "other"):
        store.put({"_id": doc_id})
    assert [d["_id"] for d in store.list_prefix("turn:")] == ["turn:001", "turn:002", "turn:003"]
    assert [d["_id"] for d in store.list_prefix("turn:", limit=2)] == ["turn:001", "turn:002"]
    assert [d["_id"] for d in store.list_prefix("turn:", limit=1, descending=True)] == ["turn:003"]
    assert [d["_id"] for d in store.list_prefix("turn:", descending=True)] == ["turn:003", "turn:002", "turn:001"]
    assert store.list_prefix("nothing-here") == []
    store.delete(store.get("turn:002"))
    assert [d["_id"] for d in store.list_prefix("turn:")] == ["turn:001", "turn:003"]


def test_check_reports_the_database_and_copies_is_its_n(backend):
    info = backend.store.check()
    assert info["db_name"] == backend.name
    copies = backend.store.copies()
    assert copies >= 1
    if backend.kind in ("embedded", "memory"):
        assert copies == 1
    assert info["update_seq"] == backend.store.current_seq()


def test_a_created_database_has_one_copy_in_one_shard_and_says_where(backend):
    shards = backend.store.shards()
    assert backend.store.copies() == 1
    if backend.kind in ("embedded", "memory"):
        assert shards is None  # no _shards endpoint: a single node
    else:
        assert shards is not None and len(shards) == 1  # q=1
        assert [len(nodes) for nodes in shards.values()] == [1]  # n=1


def test_shards_of_a_missing_database_is_database_missing(backend):
    other = backend.open(backend.name + "_missing")
    try:
        with pytest.raises(errors.DatabaseMissing):
            other.shards()
    finally:
        other.close()


def test_both_drivers_implement_the_store_interface(backend):
    assert isinstance(backend.store, Store)
    assert backend.store.database == backend.name
    assert backend.name in backend.store.describe() and backend.store.url in backend.store.describe()


def test_a_document_read_or_written_is_the_callers_own_copy(backend):
    store = backend.store
    doc = {"_id": "mine", "items": [1]}
    store.put(doc)
    doc["items"].append(2)
    got = store.get("mine")
    assert got["items"] == [1]
    got["items"].append(3)
    assert store.get("mine")["items"] == [1]
    assert store.get_many(["mine"])["mine"]["items"] == [1]
    assert store.list_prefix("mine")[0]["items"] == [1]


# ----------------------------------------------------------------- writes


def test_put_creates_then_updates_only_with_the_current_rev(backend):
    store = backend.store
    doc = {"_id": "leader", "turn": 1}
    first = store.put(doc)
    assert doc["_rev"] == first
    stale = dict(doc)
    doc["turn"] = 2
    second = store.put(doc)
    assert second != first and doc["_rev"] == second
    stale["turn"] = 99
    with pytest.raises(errors.Conflict) as lost:
        store.put(stale)
    assert stale["_rev"] == first, "a lost swap leaves the document as it was"
    assert "leader" in str(lost.value) and backend.name in str(lost.value)
    assert store.get("leader")["turn"] == 2


def test_put_without_rev_creates_only_if_absent(backend):
    store = backend.store
    store.put({"_id": "record", "n": 1})
    with pytest.raises(errors.Conflict):
        store.put({"_id": "record", "n": 2})
    assert store.get("record")["n"] == 1
    store.delete(store.get("record"))
    store.put({"_id": "record", "n": 3})
    assert store.get("record")["n"] == 3


def test_delete_needs_the_current_rev(backend):
    store = backend.store
    doc = {"_id": "d"}
    store.put(doc)
    stale = dict(doc)
    store.put(doc)
    with pytest.raises(errors.Conflict):
        store.delete(stale)
    assert store.get("d") is not None
    store.delete(doc)
    assert store.get("d") is None
    with pytest.raises(errors.Conflict):
        store.delete(doc)


def test_concurrent_swaps_on_one_rev_have_exactly_one_winner(backend):
    store = backend.store
    doc = {"_id": "contended", "owner": None}
    store.put(doc)
    start = threading.Barrier(12)

    def attempt(i: int) -> bool:
        mine = dict(doc, owner=i)
        start.wait()
        try:
            store.put(mine)
            return True
        except errors.Conflict:
            return False

    workers = [Background(lambda i=i: attempt(i)) for i in range(12)]
    outcomes = [w.result(30) for w in workers]
    assert outcomes.count(True) == 1
    assert store.get("contended")["owner"] == outcomes.index(True)


def test_create_database_says_whether_it_created(backend):
    assert backend.store.create_database() is False
    other = backend.open(backend.name + "_x")
    try:
        assert other.create_database() is True
        other.delete_database()
        other.delete_database()  # already gone: no error
        with pytest.raises(errors.DatabaseMissing):
            other.check()
    finally:
        other.close()


def test_revisions_count_the_writes_of_a_document_its_deletion_and_re_creation_included(backend):
    store = backend.store
    doc = {"_id": "counted"}
    revs = [store.put(doc), store.put(doc)]
    store.delete(doc)
    revs.append(store.put({"_id": "counted"}))
    assert [int(rev.split("-")[0]) for rev in revs] == [1, 2, 4]
    assert all(re.fullmatch(r"[0-9]+-[0-9a-f]{32}", rev) for rev in revs), revs
    assert len(set(revs)) == 3


def test_a_deleted_document_reads_as_absent_but_its_tombstone_has_a_revision_that_moves(backend):
    # A repair of the leader doc waits from the last change of its revision, a deletion included
    # (docs/PROTOCOL.md §3.11): two deletions in a row must look different, a never-written id like neither.
    store = backend.store
    assert store.deleted_rev("tombstoned") is None
    doc = {"_id": "tombstoned"}
    store.put(doc)
    assert store.deleted_rev("tombstoned") is None
    store.delete(doc)
    first = store.deleted_rev("tombstoned")
    assert first is not None and first.startswith("2-") and store.get("tombstoned") is None
    again = {"_id": "tombstoned"}
    assert store.put(again).startswith("3-")
    assert store.deleted_rev("tombstoned") is None
    store.delete(again)
    second = store.deleted_rev("tombstoned")
    assert second is not None and second.startswith("4-") and second != first
    assert store.deleted_rev("never-written") is None


def test_put_with_the_rev_of_a_document_that_does_not_exist_loses(backend):
    store = backend.store
    with pytest.raises(errors.Conflict):
        store.put({"_id": "never", "_rev": "1-" + "0" * 32})
    assert store.get("never") is None


def test_a_malformed_write_is_refused_and_is_no_conflict(backend):
    store = backend.store
    for body in ({"_id": "b", "_unknown": 1}, {"_id": "c", "_rev": "not-a-rev"}, {"_id": "_reserved"}):
        with pytest.raises(errors.StoreError) as refused:
            store.put(dict(body))
        assert not isinstance(refused.value, errors.Conflict), body
        assert store.get(body["_id"]) is None
    with pytest.raises(ValueError):
        store.delete({"_id": "b"})


def test_every_write_a_deletion_included_moves_the_update_sequence(backend):
    store = backend.store
    doc = {"_id": "moved"}
    seqs = [store.current_seq()]
    for write in (store.put, store.put, store.delete):
        write(doc)
        seqs.append(store.current_seq())
    numbers = [int(str(seq).split("-")[0]) for seq in seqs]
    assert numbers == sorted(set(numbers)), seqs
    unchanged = store.current_seq()
    assert store.get("moved") is None and store.current_seq() == unchanged, "a read is no write"


def test_security_reads_back_what_was_written(backend):
    store = backend.store
    security = {"admins": {"names": [], "roles": ["ops"]}, "members": {"names": [], "roles": ["site", "ops"]}}
    store.put_security(security)
    assert store.get_security() == security


def test_a_closed_store_refuses_every_call(backend):
    store = backend.open(backend.name)
    store.close()
    calls = [store.check, lambda: store.get("x"), lambda: store.put({"_id": "x"}), lambda: store.list_prefix("x"),
             lambda: store.wait_changes(["x"], 0, 0.2)]
    for call in calls:
        with pytest.raises(errors.StoreError, match="closed"):
            call()
    assert backend.store.get("x") is None


# ---------------------------------------------------------------- changes


def test_wait_changes_wakes_promptly_on_a_watched_write(backend):
    store = backend.store
    store.put({"_id": "leader", "turn": 0})
    since = store.current_seq()
    waiter = Background(lambda: store.wait_changes(["leader"], since, 30.0))
    doc = store.get("leader")
    doc["turn"] = 1
    written = time.monotonic()
    store.put(doc)
    batch = waiter.result(10)
    woke_after = time.monotonic() - written
    assert isinstance(batch, ChangeBatch)
    assert batch.docs["leader"]["turn"] == 1
    assert woke_after < 5, f"woke {woke_after:.2f} s after the write"
    assert batch.last_seq is not None


def test_wait_changes_returns_empty_after_its_timeout(backend):
    store = backend.store
    since = store.current_seq()
    started = time.monotonic()
    batch = store.wait_changes(["leader"], since, 0.6)
    took = time.monotonic() - started
    assert batch.docs == {}
    assert 0.55 <= took < 3, f"took {took:.2f} s"
    assert store.wait_changes(["leader"], batch.last_seq, 0).docs == {}


def test_wait_changes_ignores_unwatched_documents(backend):
    store = backend.store
    since = store.current_seq()
    waiter = Background(lambda: store.wait_changes(["watched"], since, 1.0))
    for i in range(3):
        store.put({"_id": f"unwatched{i}"})
    batch = waiter.result(10)
    assert batch.docs == {}
    store.put({"_id": "unwatched-again"})
    store.put({"_id": "watched", "v": 1})
    batch = store.wait_changes(["watched", "also-watched"], since, 10.0)
    assert list(batch.docs) == ["watched"]


def test_wait_changes_reports_a_deletion_as_none_and_earlier_changes_at_once(backend):
    store = backend.store
    doc = {"_id": "hb"}
    store.put(doc)
    since = store.current_seq()
    store.delete(doc)
    started = time.monotonic()
    batch = store.wait_changes(["hb"], since, 30.0)
    assert batch.docs == {"hb": None}
    assert time.monotonic() - started < 5
    assert store.wait_changes(["hb"], batch.last_seq, 0.3).docs == {}


class Follower:
    """Follow the continuous feed on a thread; every batch lands in ``batches``, an error in ``error``.

    Stops at the next batch (a change or a server heartbeat) after ``stop()``.
    """

    def __init__(self, store: Store, ids: list[str], since: Any, heartbeat_s: float = 0.2) -> None:
        self.batches: "queue.Queue[ChangeBatch]" = queue.Queue()
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(store, ids, since, heartbeat_s), daemon=True)
        self._thread.start()

    def _run(self, store: Store, ids: list[str], since: Any, heartbeat_s: float) -> None:
        try:
            for batch in store.follow_changes(ids, since, heartbeat_s=heartbeat_s):
                self.batches.put(batch)
                if self._stop.is_set():
                    return
        except BaseException as exc:  # handed to the test thread
            self.error = exc

    def next_change(self, timeout_s: float = 10.0) -> ChangeBatch:
        """The next batch that carries documents (server heartbeats skipped)."""
        deadline = time.monotonic() + timeout_s
        while True:
            batch = self.batches.get(timeout=max(0.0, deadline - time.monotonic()))
            if batch.docs:
                return batch

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        self._thread.join(timeout_s)
        assert not self._thread.is_alive(), "the feed did not give control back"


def test_follow_changes_delivers_every_watched_write_in_order_and_nothing_else(backend):
    store = backend.store
    since = store.current_seq()
    follower = Follower(store, ["leader"], since)
    try:
        doc = {"_id": "leader", "turn": 0}
        for turn in range(1, 4):
            store.put({"_id": f"unwatched{turn}"})
            doc["turn"] = turn
            store.put(doc)
        seen = [follower.next_change().docs for _ in range(3)]
        assert [list(docs) for docs in seen] == [["leader"]] * 3
        assert [docs["leader"]["turn"] for docs in seen] == [1, 2, 3]
        assert seen[-1]["leader"]["_rev"] == doc["_rev"]
    finally:
        follower.stop()
    assert follower.error is None


def test_follow_changes_of_every_document_delivers_each_write_in_order(backend):
    store = backend.store
    since = store.current_seq()
    follower = Follower(store, None, since)
    try:
        doc = {"_id": "leader", "turn": 0}
        store.put({"_id": "record1"})
        store.put(doc)
        store.delete(doc)
        seen = [follower.next_change().docs for _ in range(3)]
        assert [list(docs) for docs in seen] == [["record1"], ["leader"], ["leader"]]
        assert seen[1]["leader"]["turn"] == 0 and seen[2] == {"leader": None}
    finally:
        follower.stop()
    assert follower.error is None


def test_follow_changes_starts_from_since_and_reports_a_deletion_as_none(backend):
    store = backend.store
    doc = {"_id": "hb"}
    store.put(doc)
    since = store.current_seq()
    store.delete(doc)  # before the feed opens: delivered all the same
    follower = Follower(store, ["hb", "other"], since)
    try:
        assert follower.next_change().docs == {"hb": None}
    finally:
        follower.stop()


def test_follow_changes_beats_with_empty_batches_that_carry_the_position(backend):
    store = backend.store
    store.put({"_id": "leader"})
    since = store.current_seq()
    follower = Follower(store, ["leader"], since, heartbeat_s=0.1)
    try:
        beats = [follower.batches.get(timeout=10) for _ in range(3)]
        assert all(batch.docs == {} for batch in beats)
        assert all(batch.last_seq is not None for batch in beats)
    finally:
        follower.stop()  # returns at the next beat: the caller can stop or re-subscribe without a write


def test_changes_from_an_old_position_report_each_document_once_at_its_latest_version(backend):
    store = backend.store
    since = store.current_seq()
    doc = {"_id": "leader"}
    for turn in (1, 2, 3):
        doc["turn"] = turn
        store.put(doc)
    batch = store.wait_changes(["leader"], since, 10.0)
    assert batch.docs == {"leader": store.get("leader")}
    follower = Follower(store, ["leader"], since)
    try:
        assert follower.next_change().docs["leader"]["turn"] == 3
        doc["turn"] = 4
        store.put(doc)
        assert follower.next_change().docs["leader"]["turn"] == 4
    finally:
        follower.stop()


def test_the_changes_of_two_thousand_watched_documents_are_waited_on_and_followed(backend):
    """A leader follows every site's heartbeat: 2,000 ids do not fit in a URL, the feed must take them all the same."""
    store = backend.store
    ids = [f"enqueue_heartbeat:a-site-of-a-large-fleet-{i:04d}" for i in range(2000)]
    since = store.current_seq()
    store.put({"_id": "not-watched"})
    store.put({"_id": ids[-1], "beat": 1})
    batch = store.wait_changes(ids, since, 10.0)
    assert list(batch.docs) == [ids[-1]]
    follower = Follower(store, ids, batch.last_seq)
    try:
        store.put({"_id": "not-watched-either"})
        store.put({"_id": ids[0], "beat": 1})
        assert follower.next_change().docs == {ids[0]: store.get(ids[0])}
    finally:
        follower.stop()
    assert follower.error is None


def test_a_pending_wait_does_not_hold_up_reads_and_writes(backend):
    store = backend.store
    since = store.current_seq()
    waiter = Background(lambda: store.wait_changes(["release"], since, 30.0))
    wait_until_pending(store)
    started = time.monotonic()
    for i in range(20):
        doc = {"_id": f"busy{i}"}
        store.put(doc)
        assert store.get(doc["_id"])["_rev"] == doc["_rev"]
    assert time.monotonic() - started < 5
    assert not waiter.done()
    store.put({"_id": "release"})
    assert "release" in waiter.result(10).docs


def test_close_ends_a_pending_wait(backend):
    store = backend.open(backend.name)
    since = store.current_seq()
    waiter = Background(lambda: store.wait_changes(["never"], since, 60.0))
    wait_until_pending(store)
    closed = time.monotonic()
    store.close()
    with pytest.raises(errors.StoreError, match="closed"):
        waiter.result(10)
    assert time.monotonic() - closed < 5


# ----------------------------------------------------------------- errors


def test_a_missing_database_raises_database_missing_everywhere(backend):
    store = backend.open("enqueue_test_missing_" + str(free_port()))
    try:
        calls = [
            store.check,
            lambda: store.get("x"),
            lambda: store.get_many(["x"]),
            lambda: store.put({"_id": "x"}),
            lambda: store.list_prefix("x"),
            lambda: store.wait_changes(["x"], 0, 0.2),
        ]
        for call in calls:
            with pytest.raises(errors.DatabaseMissing) as missing:
                call()
            assert "enqueue_test_missing_" in str(missing.value)
    finally:
        store.close()


# ---------------------------------------------------- HTTP only (the CouchDB driver)
# Timeouts, sockets, server restarts and credentials: the memory driver has none.


def test_follow_changes_ends_when_the_server_goes_away_and_then_raises_unreachable():
    server = DevServer().start()
    store = CouchStore(server.url, "feed", request_timeout_s=1.0)
    try:
        store.create_database()
        since = store.current_seq()
        follower = Follower(store, ["leader"], since, heartbeat_s=0.2)
        follower.batches.get(timeout=10)  # the feed is open
        server.stop()
        # The feed ends (the server closed it) or fails; either way the caller opens it again...
        follower._thread.join(15)
        assert not follower._thread.is_alive(), "the feed outlived its server"
        assert follower.error is None or isinstance(follower.error, errors.StoreError), follower.error
        # ...and that says the server is gone.
        with pytest.raises(errors.Unreachable):
            next(iter(store.follow_changes(["leader"], since, heartbeat_s=0.2)))
    finally:
        store.close()
        server.stop()


def test_a_connection_the_server_closed_while_idle_is_not_reused(database):
    if database.server.kind != "embedded":
        pytest.skip("only pouchdb-server closes idle connections within seconds")
    store = database.store
    doc = {"_id": "idle"}
    store.put(doc)
    # White-box: wait until the server has closed the pooled connection (its
    # socket reads as end-of-file), so the next write would hit a dead socket.
    idle = [conn for conns in store._http.pool.conns.values() for conn in conns]
    assert idle, "the write left its connection in the pool"
    poller = select.poll()
    for conn in idle:
        poller.register(conn.sock, select.POLLIN)
    deadline = time.monotonic() + 20
    while len(poller.poll(100)) < len(idle):
        assert time.monotonic() < deadline, "the server never closed the idle connection"
    store.put(doc)
    assert store.get("idle")["_rev"] == doc["_rev"]


def test_an_unreachable_server_raises_unreachable_without_the_password():
    url = f"http://alice:s3cret-pw@127.0.0.1:{free_port()}"
    store = CouchStore(url, "db")
    try:
        assert "s3cret-pw" not in repr(store) and "s3cret-pw" not in store.describe()
        for call in (store.check, lambda: store.put({"_id": "x"}), lambda: store.wait_changes(["x"], 0, 0.2)):
            with pytest.raises(errors.Unreachable) as unreachable:
                call()
            text = str(unreachable.value)
            assert "refused" in text and "127.0.0.1" in text and "'db'" in text
            assert "s3cret-pw" not in text and "\n" not in text
            assert unreachable.value.__cause__ is None and unreachable.value.__suppress_context__
    finally:
        store.close()


def test_a_server_that_does_not_answer_raises_unreachable_after_the_request_timeout():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)  # accepts connections, never answers
        store = CouchStore(f"http://127.0.0.1:{listener.getsockname()[1]}", "db", request_timeout_s=0.3)
        try:
            started = time.monotonic()
            with pytest.raises(errors.Unreachable, match="no answer"):
                store.get("x")
            assert time.monotonic() - started < 3
        finally:
            store.close()


def test_a_wrong_password_raises_auth_failed_without_the_password(tmp_path):
    password = "right-horse-battery"
    with DevServer(admin_user="admin", admin_password=password) as server:
        admin = CouchStore(server.url, "guarded", username="admin", password=password)
        # With an admin account, pouchdb-server crashes on an anonymous create:
        # the database is made with the admin's credentials.
        assert admin.create_database() is True
        admin.put({"_id": "doc"})
        wrong_password = "wrong-" + password
        intruder = CouchStore(server.url, "guarded", username="admin", password=wrong_password)
        in_url = CouchStore(f"http://admin:{wrong_password}@127.0.0.1:{server.port}", "guarded")
        try:
            for store in (intruder, in_url):
                for call in (store.check, lambda: store.get("doc"), lambda: store.put({"_id": "other"})):
                    with pytest.raises(errors.AuthFailed) as failed:
                        call()
                    text = str(failed.value)
                    assert "401" in text and "'guarded'" in text
                    assert wrong_password not in text and password not in text
            assert admin.get("doc") is not None
        finally:
            for store in (admin, intruder, in_url):
                store.close()


def test_the_couchdb_driver_creates_a_database_with_one_copy_in_one_shard():
    """What a cluster is asked for, seen on the wire (a single node ignores ``n`` and ``q``)."""
    with canned_server("PUT", 201, b'{"ok":true}') as server:
        store = CouchStore(server.url, "enqueue")
        try:
            assert store.create_database() is True
        finally:
            store.close()
    assert server.asked == ["/enqueue?n=1&q=1"]
