"""View: what an agent holds of the shared documents -- never going back, invalid docs held as None."""

from __future__ import annotations

import logging

import pytest

from enqueue import documents as docs
from enqueue.documents import DONE, GRANTED, RUNNING, WAITING, Heartbeat, LeaderDoc
from enqueue.view import View

LEADER, SITES = "enqueue_leader", "enqueue_sites"
STALE = 30.0


@pytest.fixture
def view() -> View:
    return View("bravo", LEADER, SITES, STALE)


def leader(rev: str, **fields) -> dict:
    body = docs.render_leader(LeaderDoc(doc_id=LEADER, **fields))
    body["_rev"] = rev
    return body


def heartbeat(site: str, rev: str, **fields) -> dict:
    body = docs.render_heartbeat(Heartbeat(site=site, state=WAITING, **fields))
    body["_rev"] = rev
    return body


def registry(*names: str) -> dict:
    body = docs.render_sites(docs.new_sites_doc(SITES), {n: {"heartbeat_doc": docs.heartbeat_id(n)} for n in names})
    body["_rev"] = "1-r"
    return body


def test_the_feeds_stale_news_is_dropped_but_a_read_is_always_taken(view: View) -> None:
    assert view.absorb(LEADER, leader("5-b", turn=5, status=DONE), 0.0)
    assert not view.absorb(LEADER, leader("4-a", turn=4, status=DONE), 1.0, from_feed=True)
    assert view.leader is not None and view.leader.turn == 5
    assert view.absorb(LEADER, leader("4-a", turn=4, status=DONE), 2.0)  # a read: the server's current state
    assert view.leader.turn == 4
    assert view.max_turn_seen == 5  # the highest turn seen is kept for a repair


def test_my_own_beat_is_not_undone_by_its_echo_on_the_feed(view: View) -> None:
    view.own_beat(Heartbeat(site="bravo", state=WAITING, beat=3), "3-c", now=10.0)
    assert not view.absorb(docs.heartbeat_id("bravo"), heartbeat("bravo", "2-b", beat=2), 11.0, from_feed=True)
    assert view.heartbeats["bravo"].beat == 3
    assert view.liveness.rev("bravo") == "3-c"


def test_an_invalid_leader_doc_is_held_as_none_since_its_revision_was_first_seen(view: View) -> None:
    view.absorb(LEADER, {"_id": LEADER, "_rev": "2-x", "turn": "seven"}, 5.0)
    assert view.leader is None and view.invalid_leader_since == 5.0
    view.absorb(LEADER, {"_id": LEADER, "_rev": "2-x", "turn": "seven"}, 9.0)
    assert view.invalid_leader_since == 5.0  # the same revision: the clock keeps running
    view.absorb(LEADER, {"_id": LEADER, "_rev": "3-y", "turn": "eight"}, 12.0)
    assert view.invalid_leader_since == 12.0  # a new bad revision starts it again
    view.absorb(LEADER, leader("4-z", turn=8, status=DONE), 13.0)
    assert view.leader is not None and view.invalid_leader_since is None


def test_a_missing_leader_doc_counts_as_invalid(view: View, caplog) -> None:
    view.absorb(LEADER, leader("1-a", status=DONE), 0.0)
    with caplog.at_level(logging.WARNING, logger="enqueue.agent"):
        view.absorb(LEADER, None, 3.0)
    assert view.leader is None and view.invalid_leader_since == 3.0
    assert "leader doc enqueue_leader is missing" in caplog.text


def test_problems_are_logged_once_per_revision(view: View, caplog) -> None:
    bad = heartbeat("alpha", "4-a")
    bad["state"] = "sleepy"
    with caplog.at_level(logging.WARNING, logger="enqueue.agent"):
        view.absorb(docs.heartbeat_id("alpha"), bad, 0.0)
        view.absorb(docs.heartbeat_id("alpha"), bad, 1.0)
        view.absorb(docs.heartbeat_id("alpha"), {**bad, "_rev": "5-b"}, 2.0)
    lines = [r.getMessage() for r in caplog.records if "enqueue_heartbeat:alpha" in r.getMessage()]
    assert len(lines) == 2 and "rev 4-a" in lines[0] and "rev 5-b" in lines[1]
    assert view.heartbeats["alpha"] is not None and view.heartbeats["alpha"].state is None


def test_a_registry_that_does_not_parse_is_held_as_none(view: View) -> None:
    view.absorb(SITES, registry("alpha", "bravo"), 0.0)
    assert view.registry is not None and sorted(view.registry.sites) == ["alpha", "bravo"]
    view.absorb(SITES, {"_id": SITES, "_rev": "2-g", "sites": "garbage"}, 1.0)
    assert view.registry is None


def test_a_leader_follows_everyone_and_others_a_handful(view: View) -> None:
    view.absorb(SITES, registry("alpha", "bravo", "charlie", "delta"), 0.0)
    view.absorb(LEADER, leader("2-a", leader="alpha", running="charlie", status=RUNNING, turn=3), 0.0)
    hb = docs.heartbeat_id
    assert view.watched_ids() == (LEADER, SITES, hb("alpha"), hb("bravo"))
    assert view.read_ids() == (LEADER, SITES, hb("alpha"), hb("bravo"), hb("charlie"))
    view.absorb(LEADER, leader("3-b", leader="bravo", running="charlie", status=RUNNING, turn=3), 1.0)
    assert view.watched_ids() == (LEADER, SITES, *(hb(s) for s in ("alpha", "bravo", "charlie", "delta")))


def test_a_running_holder_is_stale_only_after_its_own_longer_stale(view: View) -> None:
    view.absorb(LEADER, leader("2-a", leader="bravo", running="alpha", status=RUNNING, turn=3), 0.0)
    view.absorb(docs.heartbeat_id("alpha"), heartbeat("alpha", "1-a", heartbeat_delay_s=20.0,
                                                      heartbeat_stale_s=3 * STALE), 0.0)
    view.absorb(docs.heartbeat_id("charlie"), heartbeat("charlie", "1-c", heartbeat_delay_s=20.0,
                                                        heartbeat_stale_s=3 * STALE), 0.0)
    assert view.stale_after_s("alpha") == 3 * STALE
    assert view.stale_after_s("charlie") == STALE  # not holding a running turn: judged by my own
    assert view.stale_at("alpha") == 3 * STALE
    assert view.stale_map(2 * STALE) == {"alpha": False, "bravo": False}
    assert view.stale_map(3 * STALE)["alpha"] is True


def test_a_granted_holder_is_judged_by_my_own_stale(view: View) -> None:
    view.absorb(LEADER, leader("2-a", leader="bravo", running="alpha", status=GRANTED, turn=3), 0.0)
    view.absorb(docs.heartbeat_id("alpha"), heartbeat("alpha", "1-a", heartbeat_delay_s=20.0,
                                                      heartbeat_stale_s=3 * STALE), 0.0)
    assert view.stale_after_s("alpha") == STALE
    assert view.stale_map(STALE)["alpha"] is True


def brute_next_stale(view: View, now: float) -> float | None:
    ahead = [at for at in (view.stale_at(s) for s in view.followed()) if at is not None and at > now]
    return min(ahead) if ahead else None


def test_the_next_stale_moment_is_kept_up_to_date_as_documents_come_in() -> None:
    """Equal, after every document, to a walk over every followed site's stale moment (what it replaces).

    Asked at moments that never go back, as the agent's monotonic clock does.
    """
    import random

    rng = random.Random(11)
    names = ["alpha", "bravo", "charlie", "delta", "echo"]
    view = View("bravo", LEADER, SITES, STALE)
    view.absorb(SITES, registry(*names[:3]), 0.0)
    now, rev = 0.0, 1
    for _ in range(3000):
        now += rng.uniform(0.0, 3.0)
        rev += 1
        roll = rng.random()
        if roll < 0.15:
            status = rng.choice([DONE, GRANTED, RUNNING])
            view.absorb(LEADER, leader(f"{rev}-l", turn=rev, status=status, leader=rng.choice(names + [None]),
                                       running=rng.choice(names) if status != DONE else None), now)
        elif roll < 0.2:
            body = registry(*rng.sample(names, rng.randrange(1, len(names))))
            body["_rev"] = f"{rev}-r"
            view.absorb(SITES, body, now)
        elif roll < 0.25:
            view.own_beat(Heartbeat(site="bravo", state=WAITING, beat=rev), f"{rev}-o", now)
        else:
            site = rng.choice(names)
            body = None if rng.random() < 0.05 else heartbeat(site, f"{rev}-h", beat=rev,
                                                               heartbeat_stale_s=rng.choice([None, 10.0, 90.0]))
            view.absorb(docs.heartbeat_id(site), body, now)
        if rng.random() < 0.05:
            now += rng.uniform(0.0, 100.0)  # long enough for moments to pass
        assert view.next_stale_after(now) == brute_next_stale(view, now)


def test_my_own_leader_write_is_taken_in_as_a_read_of_it_would_be(view: View) -> None:
    doc = LeaderDoc(doc_id=LEADER, leader="bravo", leader_term=2, running="alpha", status=GRANTED, turn=8,
                    rotation=("alpha", "bravo"), raw={"note": "kept"})
    body = docs.render_leader(doc)
    body["_rev"] = "9-w"
    view.own_leader_write(doc, body, 4.0)
    read = View("bravo", LEADER, SITES, STALE)
    read.absorb(LEADER, dict(body), 4.0)
    assert view.leader == read.leader and view.leader.raw == read.leader.raw and view.leader.rev == "9-w"
    assert view.leader_raw == read.leader_raw and view.max_turn_seen == 8 and view.invalid_leader_since is None
    assert not view.absorb(LEADER, leader("8-v", turn=7, status=DONE), 5.0, from_feed=True)  # its echo is old news


def test_a_revision_the_view_holds_is_not_taken_in_again(view: View) -> None:
    # A full read at every heartbeat re-reads what did not change, and the feed echoes my own writes.
    assert view.absorb(SITES, registry("alpha", "bravo"), 0.0)
    held = view.registry
    assert not view.absorb(SITES, registry("alpha", "bravo"), 1.0)
    assert not view.absorb(SITES, registry("alpha", "bravo"), 2.0, from_feed=True)
    assert view.registry is held  # not parsed again, so whom the view follows is not worked out again
    view.own_beat(Heartbeat(site="bravo", state=WAITING, beat=3), "3-c", now=10.0)
    own = view.heartbeats["bravo"]
    assert not view.absorb(docs.heartbeat_id("bravo"), heartbeat("bravo", "3-c", beat=3), 11.0, from_feed=True)
    assert view.heartbeats["bravo"] is own and view.liveness.age("bravo", 12.0) == 2.0


def test_a_new_revision_is_taken_in(view: View) -> None:
    assert view.absorb(SITES, registry("alpha"), 0.0)
    body = registry("alpha", "bravo")
    body["_rev"] = "2-s"
    assert view.absorb(SITES, body, 1.0)
    assert view.registry is not None and set(view.registry.sites) == {"alpha", "bravo"}
