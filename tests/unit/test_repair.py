"""Where a repaired leader doc resumes: above every turn that ran; a site's made-up number only as far as could have run."""

from __future__ import annotations

import pytest

from enqueue.documents import MAX_TURN
from enqueue.repair import resume_turn, revision_count


def garbled(rev: str, **fields) -> dict:
    return {"_id": "enqueue_leader", "_rev": rev, "status": "exploded", **fields}


@pytest.mark.parametrize("seen, old, record, expected", [
    (7, garbled("30-a", turn=12), 11, 12),          # the old doc's own turn (an admin's) counts
    (15, garbled("30-a", turn=12), 11, 15),         # so does what the agent saw
    (0, garbled("30-a", turn="x"), 25, 26),         # one above a record within the revision count
    (0, garbled("30-a", turn="x"), 9_999_999_999, 30),  # a made-up record counts only that far
    (3, garbled("30-a", turn=12), 9_999_999_999, 30),
    (4, None, 40, 41),                              # a missing doc: above the newest record, whatever wrote it
    (0, None, None, 0),
    (0, garbled("5-a", turn=MAX_TURN + 1), None, 0),  # a turn beyond the id width is no turn
    (2, garbled("bogus", turn=True), 9, 2),
])
def test_resume_turn(seen, old, record, expected) -> None:
    assert resume_turn(seen, old, record) == expected


def test_heartbeats_count_like_records() -> None:
    assert resume_turn(3, None, 10, [12, 7]) == 12
    assert resume_turn(3, garbled("9-a", turn="x"), None, [50]) == 9


def test_a_missing_doc_never_resumes_below_a_record_even_with_no_agent_left() -> None:
    # Every agent stopped, the leader doc deleted: the records are all that is left of the numbering.
    assert resume_turn(0, None, 41) == 42


def test_no_record_a_site_writes_takes_the_turn_past_the_revision_count() -> None:
    old = garbled("120-a", turn=None)
    for record in (0, 100, 119, 120, 121, 10**6, MAX_TURN):
        assert resume_turn(0, old, record) <= 120


def test_revision_count() -> None:
    assert revision_count({"_rev": "17-abc"}) == 17
    assert revision_count({"_rev": "x-abc"}) == 0
    assert revision_count({}) == 0 and revision_count(None) == 0
