"""Following the shared documents on CouchDB's continuous ``_changes`` feed (docs/PROTOCOL.md §3.7).

A ``FeedWatcher`` owns one background thread that holds one continuous
request open and hands every batch of changed documents to a callback (the
agent puts them on its event queue), so the deciding thread never polls.

Guarantees
----------
* Every change to a followed document after the starting position is
  delivered, in the order the server sent it, as ``DocChanged(id, body)``
  (``None`` for a deletion). Re-opening the feed resumes from the last
  position delivered, so a reconnect loses nothing.
* The set of followed documents can change at any time (``follow``). A
  set of up to ``FILTERED_MAX`` ids is followed with the server's ids
  filter, re-opened with the new set at the next batch or server beat (at
  most ``beat_s`` later); changes to a newly followed document in between
  are not delivered: the caller reads such documents itself. A larger set
  (a leader follows every site's heartbeat) is followed on one unfiltered
  feed, filtered here against the set as it is when each change arrives,
  so a new site costs no new request. Either way only followed documents
  are delivered.
* A failing feed is reported once as ``FeedFailed(exc)`` when it starts
  failing and once as ``FeedResumed()`` when it works again; it is retried
  every ``retry_s`` in between.

Not delivered: anything after ``stop()``.
"""

from __future__ import annotations

import threading
from typing import Callable, FrozenSet, Optional, Tuple

from enqueue.errors import StoreError
from enqueue.events import DocChanged, Event, FeedFailed, FeedResumed
from enqueue.store import Seq, Store

#: Up to this many ids, the server filters the feed by id; beyond, the feed takes every change and drops the
#: unfollowed ones here. With a filter, each re-open (a leader's at every new site) is a new request, and
#: pouchdb-server keeps serving a closed continuous feed for the rest of its life (enqueue.devserver's cancels
#: it, as CouchDB does), so re-opens add up; and
#: it re-scans a filtered feed from its last matching change at every write, which a feed that matches
#: every change never lags behind.
FILTERED_MAX = 8


class FeedWatcher:
    """One thread following the changes feed of a changing set of document ids."""

    def __init__(self, store: Store, *, beat_s: float, retry_s: float, deliver: Callable[[Event], None]) -> None:
        self._store = store
        self._beat_s = beat_s
        self._retry_s = retry_s
        self._deliver = deliver
        self._ids: Tuple[str, ...] = ()
        self._wanted_of: Tuple[str, ...] | None = None
        self._wanted_set: FrozenSet[str] = frozenset()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def ids(self) -> Tuple[str, ...]:
        """The documents followed now (or from the next re-open on)."""
        return self._ids

    def follow(self, ids: Tuple[str, ...]) -> None:
        """Follow ``ids`` from now on (an open filtered feed is re-opened with them within ``beat_s``)."""
        self._ids = tuple(ids)

    def _wanted(self) -> FrozenSet[str]:
        """The followed ids as a set, made once per change of the followed ids."""
        ids = self._ids
        if self._wanted_of is not ids:
            self._wanted_set, self._wanted_of = frozenset(ids), ids
        return self._wanted_set

    def start(self, since: Optional[Seq]) -> None:
        """Follow from ``since`` (a position taken before the caller read the documents)."""
        self._thread = threading.Thread(target=self._run, args=(since,), name="enqueue-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Deliver nothing more; the thread ends at the feed's next batch or beat."""
        self._stop.set()

    def _run(self, since: Optional[Seq]) -> None:
        failing = False
        while not self._stop.is_set():
            ids = self._ids
            unfiltered = len(ids) > FILTERED_MAX
            try:
                for batch in self._store.follow_changes(None if unfiltered else ids, since, heartbeat_s=self._beat_s):
                    if self._stop.is_set():
                        return
                    if failing:
                        failing = False
                        self._deliver(FeedResumed())
                    since = batch.last_seq
                    if batch.docs:
                        wanted = self._wanted()
                        for doc_id, body in batch.docs.items():
                            if doc_id in wanted:
                                self._deliver(DocChanged(doc_id, body))
                    if self._ids != ids and (not unfiltered or len(self._ids) <= FILTERED_MAX):
                        break
            except StoreError as exc:
                if self._stop.is_set():
                    return
                if not failing:
                    self._deliver(FeedFailed(exc))
                failing = True
                self._stop.wait(self._retry_s)
