"""enqueue.admin_rebuild and ``enqueue repair``: an admin's rebuild of the leader doc, as safe as an agent's
(docs/PROTOCOL.md §3.11): it waits out heartbeat_stale from the last change it saw, reads again, and resumes
at the revision count of what it replaces."""

from __future__ import annotations

from enqueue import documents as docs
from enqueue import repair
from enqueue.admin_rebuild import AdminRebuild
from enqueue.commands.repair import rebuild
from enqueue.memory_store import MemoryStore

LEADER = "enqueue_leader"
NOW = "2026-01-01 00:00:00"


def _used_then_deleted(store: MemoryStore, writes: int = 5) -> str:
    store.put(docs.render_leader(docs.new_leader_doc(LEADER)))
    for _ in range(writes - 1):
        store.put(dict(store.get(LEADER), updated_at=NOW))
    store.delete(store.get(LEADER))
    tombstone = store.deleted_rev(LEADER)
    assert tombstone is not None
    return tombstone


def _rebuilder(store: MemoryStore, stale_s: float = 10.0) -> AdminRebuild:
    return AdminRebuild(store, LEADER, stale_s, "admin:ops@h", lambda: NOW)


def test_a_leader_doc_that_parses_is_never_written() -> None:
    store = MemoryStore("enqueue")
    store.put(docs.render_leader(docs.new_leader_doc(LEADER)))
    rev = store.get(LEADER)["_rev"]
    r = _rebuilder(store)
    assert r.look(0.0) is None and r.write(100.0) is None
    assert store.get(LEADER)["_rev"] == rev


def test_the_rebuild_waits_from_the_last_change_it_saw_and_resumes_at_the_tombstones_count() -> None:
    store = MemoryStore("enqueue")
    _used_then_deleted(store)
    r = _rebuilder(store)
    assert r.look(0.0) == 10.0
    assert r.write(9.9) is None and store.get(LEADER) is None
    # Another rebuild and another deletion meanwhile: a new revision, so the wait starts again.
    store.put(docs.render_leader(docs.new_leader_doc(LEADER)))
    store.delete(store.get(LEADER))
    tombstone = store.deleted_rev(LEADER)
    assert r.write(10.0) is None and store.get(LEADER) is None
    assert r.look(10.0) == 20.0
    assert r.write(20.0) == repair.revision_count(tombstone)
    rebuilt, _ = docs.parse_leader(store.get(LEADER), LEADER)
    assert rebuilt is not None
    assert (rebuilt.leader, rebuilt.running, rebuilt.status, rebuilt.turn, rebuilt.updated_by, rebuilt.last_how) == \
        (None, None, docs.DONE, repair.revision_count(tombstone), "admin:ops@h", "repaired")


def test_the_wait_is_the_longest_heartbeat_stale_a_site_says_it_runs_with() -> None:
    store = MemoryStore("enqueue")
    _used_then_deleted(store)
    store.put({"_id": docs.heartbeat_id("alpha"), "site": "alpha", "heartbeat_stale_s": 30.0})
    store.put({"_id": docs.heartbeat_id("bravo"), "site": "bravo", "heartbeat_stale_s": "soon"})
    assert _rebuilder(store, stale_s=10.0).look(0.0) == 30.0


def test_a_garbled_leader_doc_is_rebuilt_keeping_the_pause_and_the_old_content() -> None:
    store = MemoryStore("enqueue")
    store.put({"_id": LEADER, "turn": 40, "status": "exploded", "paused": True, "paused_reason": "maintenance"})
    rev = store.get(LEADER)["_rev"]
    r = _rebuilder(store)
    r.look(0.0)
    assert r.write(10.0) == 40  # its own valid turn is above its revision count: an admin wrote it
    raw = store.get(LEADER)
    assert raw["paused"] is True and raw["paused_reason"] == "maintenance"
    assert raw["repaired_from"]["status"] == "exploded" and repair.revision_count(raw["_rev"]) == \
        repair.revision_count(rev) + 1


def test_repair_says_how_long_it_waits_for_the_leases_and_then_rebuilds() -> None:
    store = MemoryStore("enqueue")
    tombstone = _used_then_deleted(store)
    moments = [0.0]
    said: list[str] = []

    def sleep(seconds: float) -> None:
        moments[0] += seconds

    turn = rebuild(_rebuilder(store, stale_s=12.0), lambda: moments[0], sleep, said.append)
    assert turn == repair.revision_count(tombstone)
    assert said[0] == f"leader doc {LEADER} is missing (revision {tombstone}): waiting 12 s for any running " \
                      "turn's lease to run out"
    assert said[1:] == ["still waiting 2 s"]
    assert moments[0] == 12.0


def test_repair_finds_nothing_to_do_when_somebody_rebuilt_it_meanwhile() -> None:
    store = MemoryStore("enqueue")
    _used_then_deleted(store)

    def sleep(seconds: float) -> None:
        store.put(docs.render_leader(docs.new_leader_doc(LEADER)))

    assert rebuild(_rebuilder(store), lambda: 0.0, sleep, lambda line: None) is None
