"""FeedWatcher: deliveries in order, re-opening with new ids, failures reported once, stop.

The store here is a script of what ``follow_changes`` yields or raises
(the real feed's behaviour is the store contract, tests/integration/test_store.py).
"""

from __future__ import annotations

import queue
import threading
from typing import Any, Iterator

from enqueue.errors import Unreachable
from enqueue.events import DocChanged, FeedFailed, FeedResumed
from enqueue.feed import FILTERED_MAX, FeedWatcher
from enqueue.store import ChangeBatch


class ScriptedFeed:
    """Each ``follow_changes`` call plays the next script: batches to yield, then an error or an end.

    Once the scripts run out, a call blocks (yielding beats) until ``release`` is set.
    """

    def __init__(self, scripts: list[list[Any]]) -> None:
        self.scripts = scripts
        self.calls: list[tuple[tuple[str, ...], Any]] = []
        self.opened: "queue.Queue[tuple[str, ...]]" = queue.Queue()
        self.release = threading.Event()
        self.beats = 0
        self.beat = threading.Event()

    def follow_changes(self, ids, since, *, heartbeat_s: float) -> Iterator[ChangeBatch]:
        self.calls.append((None if ids is None else tuple(ids), since))
        self.opened.put(None if ids is None else tuple(ids))
        if not self.scripts:
            while not self.release.wait(0.01):
                self.beats += 1
                self.beat.set()
                yield ChangeBatch({}, since)
            return
        for step in self.scripts.pop(0):
            if isinstance(step, Exception):
                raise step
            yield step


def collect(events: "queue.Queue", count: int) -> list:
    return [events.get(timeout=5) for _ in range(count)]


def watcher(feed: ScriptedFeed, events: "queue.Queue") -> FeedWatcher:
    return FeedWatcher(feed, beat_s=0.01, retry_s=0.01, deliver=events.put)


def shut(w: FeedWatcher, feed: ScriptedFeed) -> None:
    """Stop the watcher, let a blocked feed go, and check that its thread ended."""
    w.stop()
    feed.release.set()
    w._thread.join(5)
    assert not w._thread.is_alive()


def test_changes_are_delivered_in_order_and_the_position_carries_over_a_reopen() -> None:
    feed = ScriptedFeed([[ChangeBatch({"a": {"v": 1}}, 5), ChangeBatch({}, 6), ChangeBatch({"a": {"v": 2}}, 7)]])
    events: queue.Queue = queue.Queue()
    w = watcher(feed, events)
    w.follow(("a",))
    w.start(since=4)
    try:
        assert collect(events, 2) == [DocChanged("a", {"v": 1}), DocChanged("a", {"v": 2})]
        assert feed.opened.get(timeout=5) == ("a",)
        assert feed.opened.get(timeout=5) == ("a",)  # the first feed ended: it is opened again
    finally:
        shut(w, feed)
    assert feed.calls[0] == (("a",), 4)
    assert feed.calls[1] == (("a",), 7)  # the first feed ended: re-opened where it left off


def test_following_other_ids_reopens_the_feed_with_them() -> None:
    feed = ScriptedFeed([])
    events: queue.Queue = queue.Queue()
    w = watcher(feed, events)
    w.follow(("a",))
    w.start(since=1)
    try:
        assert feed.opened.get(timeout=5) == ("a",)
        w.follow(("a", "b"))
        assert feed.opened.get(timeout=5) == ("a", "b")
        assert w.ids == ("a", "b")
    finally:
        shut(w, feed)


def test_a_failing_feed_is_reported_once_and_its_recovery_once() -> None:
    down = Unreachable("server gone")
    feed = ScriptedFeed([[down], [down], [down], [ChangeBatch({}, 9), ChangeBatch({"a": None}, 10)]])
    events: queue.Queue = queue.Queue()
    w = watcher(feed, events)
    w.follow(("a",))
    w.start(since=1)
    try:
        assert collect(events, 3) == [FeedFailed(down), FeedResumed(), DocChanged("a", None)]
    finally:
        shut(w, feed)
    assert events.empty()
    assert [since for _, since in feed.calls[:4]] == [1, 1, 1, 1]  # nothing was lost while it failed


def test_nothing_is_delivered_after_stop() -> None:
    gate = threading.Event()

    class Slow(ScriptedFeed):
        def follow_changes(self, ids, since, *, heartbeat_s):
            gate.wait(5)
            yield ChangeBatch({"a": {"v": 1}}, 2)

    feed = Slow([])
    events: queue.Queue = queue.Queue()
    w = watcher(feed, events)
    w.follow(("a",))
    w.start(since=1)
    w.stop()
    gate.set()
    w._thread.join(5)
    assert not w._thread.is_alive()
    assert events.empty()


def test_many_ids_are_followed_on_one_unfiltered_feed_that_delivers_only_them_and_is_not_reopened() -> None:
    many = tuple(f"hb{i:02d}" for i in range(FILTERED_MAX + 1))
    feed = ScriptedFeed([[ChangeBatch({"hb00": {"v": 1}}, 5), ChangeBatch({"record": {"v": 1}}, 6),
                          ChangeBatch({"hb01": {"v": 1}}, 7)]])
    events: queue.Queue = queue.Queue()
    w = watcher(feed, events)
    w.follow(many)
    w.start(since=4)
    try:
        assert collect(events, 2) == [DocChanged("hb00", {"v": 1}), DocChanged("hb01", {"v": 1})]
        assert feed.opened.get(timeout=5) is None  # every change, no ids filter
        assert feed.opened.get(timeout=5) is None  # the first feed ended: opened again, unfiltered
        w.follow((*many, "hb99"))  # a new site: taken up without a new request
        beats = feed.beats
        while feed.beats < beats + 3:  # the watcher has looked at its ids after several batches since
            assert feed.beat.wait(5)
            feed.beat.clear()
        w.follow(("a",))  # few ids again: the server filters
        assert feed.opened.get(timeout=5) == ("a",)
    finally:
        shut(w, feed)
    assert [call[0] for call in feed.calls] == [None, None, ("a",)]
    assert events.empty()  # the record, never followed, was not delivered
