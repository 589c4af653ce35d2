"""What the in-memory driver promises beyond the store contract (which
tests/integration/test_store.py checks on it and on the server alike):
reproducible revisions by seed, no threads of its own, a followed feed that
queues every write from the moment it is open, and a shared server."""

from __future__ import annotations

import threading

import pytest

from enqueue import errors
from enqueue.memory_store import MemoryServer, MemoryStore
from enqueue.store import Store


def _history(store: MemoryStore) -> list[str]:
    doc = {"_id": "leader", "turn": 0}
    revs = []
    for turn in range(1, 4):
        doc["turn"] = turn
        revs.append(store.put(doc))
    store.delete(doc)
    revs.append(store.put({"_id": "leader"}))
    return revs


def test_the_same_seed_gives_the_same_revisions_and_another_seed_others():
    first, again, other = (_history(MemoryStore(seed=seed)) for seed in (3, 3, 4))
    assert first == again
    assert [rev.split("-")[0] for rev in first] == ["1", "2", "3", "5"]
    assert set(first).isdisjoint(other)


def test_a_seed_belongs_to_the_server_that_stores_share():
    server = MemoryServer(seed=1)
    with pytest.raises(ValueError, match="server"):
        MemoryStore("db", server=server, seed=2)
    one, two = server.store("db"), MemoryStore("db", server=server)
    with pytest.raises(errors.DatabaseMissing):
        one.get("x")
    assert two.create_database() is True and one.create_database() is False
    one.put({"_id": "shared"})
    assert two.get("shared") is not None
    assert isinstance(one, Store)


def test_it_starts_no_thread():
    before = set(threading.enumerate())
    store = MemoryStore()
    store.put({"_id": "a"})
    assert store.wait_changes(["a"], 0, 0).docs
    feed = store.follow_changes(["a"], 0, heartbeat_s=0.01)
    assert next(feed).docs
    assert next(feed).docs == {}
    feed.close()
    store.close()
    assert set(threading.enumerate()) == before


def test_a_followed_feed_queues_every_write_from_the_moment_it_is_open():
    store = MemoryStore()
    feed = store.follow_changes(["leader"], store.current_seq(), heartbeat_s=0.01)
    assert next(feed).docs == {}  # open now, nothing yet
    doc = {"_id": "leader"}
    for turn in (1, 2, 3):
        doc["turn"] = turn
        store.put(doc)
    store.put({"_id": "unwatched"})
    assert [next(feed).docs["leader"]["turn"] for _ in range(3)] == [1, 2, 3]
    beat = next(feed)
    assert beat.docs == {} and beat.last_seq == 3
    feed.close()
    assert store._server._dbs[store.database].feeds == [], "a closed feed stays subscribed"


def test_a_followed_feed_ends_with_its_database_and_a_new_one_says_it_is_missing():
    store = MemoryStore()
    feed = store.follow_changes(["leader"], 0, heartbeat_s=0.01)
    assert next(feed).docs == {}
    store.delete_database()
    assert list(feed) == []
    with pytest.raises(errors.DatabaseMissing):
        next(store.follow_changes(["leader"], 0, heartbeat_s=0.01))


def test_local_documents_are_not_modelled():
    with pytest.raises(ValueError, match="_local"):
        MemoryStore().put({"_id": "_local/x"})
