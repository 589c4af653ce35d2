"""enqueue.repair: where a rewritten leader doc resumes the fencing token (docs/PROTOCOL.md §3.11, §5.2)."""

from __future__ import annotations

import pytest

from enqueue.documents import MAX_TURN
from enqueue.repair import resume_turn, revision_count


def garbled(rev: str, **fields: object) -> dict:
    return {"_id": "enqueue_leader", "_rev": rev, **fields}


@pytest.mark.parametrize("seen, old, replaced, record, expected", [
    (7, garbled("9-a", turn="x"), "9-a", None, 9),       # the broken revision's count: no turn that ran is above it
    (7, garbled("3-a", turn="x"), "3-a", None, 7),       # what I saw stays trusted
    (2, garbled("4-a", turn=30), "4-a", None, 30),       # the broken doc's own valid turn: an admin wrote it
    (0, None, "12-t", None, 12),                         # a deletion: the tombstone's count
    (0, None, "12-t", 400, 12),                          # a record above the count is no turn that ran
    (4, None, None, 40, 41),                             # no revision at all (purged): above the newest record
    (0, None, None, None, 0),
    (0, garbled("5-a", turn=MAX_TURN + 1), "5-a", None, 5),  # a turn beyond the id width is no turn
    (2, garbled("bogus", turn=True), "bogus", 9, 10),    # an unreadable revision is no bound
])
def test_resume_turn(seen, old, replaced, record, expected) -> None:
    assert resume_turn(seen, old, replaced, record) == expected


def test_a_deleted_doc_resumes_at_its_tombstone_whatever_records_and_heartbeats_a_site_wrote() -> None:
    # Issue: after an admin deleted the leader doc, a site's forged record or heartbeat moved the numbering.
    for record in (None, 0, 41, 9999, MAX_TURN):
        assert resume_turn(3, None, "20-t", record, [MAX_TURN, 5]) == 20


def test_without_any_revision_heartbeats_and_records_count_in_full() -> None:
    assert resume_turn(3, None, None, 10, [12, 7]) == 12
    assert resume_turn(0, None, None, MAX_TURN) == MAX_TURN


def test_the_bound_is_never_beyond_the_widest_turn_an_id_holds() -> None:
    assert resume_turn(0, None, f"{MAX_TURN + 5}-t", None) == MAX_TURN


def test_the_rewrite_keeps_the_turn_below_its_own_revision_count() -> None:
    # The induction of repair's docstring: writing at most the replaced count keeps turn < revision count.
    for count in (1, 2, 17, 400):
        assert resume_turn(count - 1, None, f"{count}-t", None) < count + 1


def test_revision_count() -> None:
    assert revision_count("17-abc") == 17
    assert revision_count("x-abc") == 0
    assert revision_count(None) == 0 and revision_count("") == 0
