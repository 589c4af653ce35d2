"""SharedDocs: a full read of a large registry costs no sort per document it takes in."""

from __future__ import annotations

from typing import Callable, Iterable

import pytest

from enqueue import documents as docs
from enqueue import view as view_module
from enqueue.clock import FakeClock
from enqueue.documents import DONE, WAITING, Heartbeat, LeaderDoc
from enqueue.memory_store import MemoryStore
from enqueue.shared_docs import SharedDocs
from enqueue.view import View

LEADER, SITES = "enqueue_leader", "enqueue_sites"
SITE_COUNT = 10_000


class Budget:
    """Counts calls of a wrapped function and fails as soon as they exceed ``limit``."""

    def __init__(self, wrapped: Callable, limit: int) -> None:
        self.wrapped = wrapped
        self.limit = limit
        self.calls = 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        if self.calls > self.limit:
            raise AssertionError(f"more than {self.limit} calls of {self.wrapped.__name__}")
        return self.wrapped(*args, **kwargs)


@pytest.fixture
def store() -> Iterable[MemoryStore]:
    store = MemoryStore("shared_docs")
    store.create_database()
    yield store
    store.close()


def leading_site_of(store: MemoryStore, sites: list[str]) -> SharedDocs:
    """A registry of ``sites``, every one with a heartbeat, and the first one as the leader that reads them all."""
    store.put(docs.render_leader(LeaderDoc(doc_id=LEADER, leader=sites[0], turn=1, status=DONE)))
    store.put(docs.render_sites(docs.new_sites_doc(SITES), {s: {"heartbeat_doc": docs.heartbeat_id(s)} for s in sites}))
    for site in sites:
        store.put(docs.render_heartbeat(Heartbeat(site=site, state=WAITING)))
    return SharedDocs(store, View(sites[0], LEADER, SITES, 30.0), FakeClock(), lambda *_: None)


def test_a_full_read_of_ten_thousand_sites_sorts_the_watched_ids_a_few_times_not_once_per_document(
        store: MemoryStore, monkeypatch: pytest.MonkeyPatch) -> None:
    sites = [f"site{i:05d}" for i in range(SITE_COUNT)]
    shared = leading_site_of(store, sites)
    sorts = Budget(sorted, limit=10)
    ids_built = Budget(docs.heartbeat_id, limit=10 * SITE_COUNT)  # a few per document: linear
    monkeypatch.setattr(view_module, "sorted", sorts, raising=False)
    monkeypatch.setattr(docs, "heartbeat_id", ids_built)
    shared.read_all()
    assert shared.watched_ids == (LEADER, SITES, *(docs.HEARTBEAT_PREFIX + s for s in sites))
    assert len(shared.view.heartbeats) == SITE_COUNT
    sorts_after_read = sorts.calls
    for site in sites:  # every heartbeat comes round on the feed once more
        body = store.get(docs.HEARTBEAT_PREFIX + site)
        store.put(body)
        shared.absorb(docs.HEARTBEAT_PREFIX + site, store.get(docs.HEARTBEAT_PREFIX + site), from_feed=True)
    assert sorts.calls == sorts_after_read  # a heartbeat never changes whom I follow
    assert not shared.need_full_read
