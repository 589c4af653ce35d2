"""Document ids: turn record ids sort by turn number and never grow wider."""

from __future__ import annotations

import pytest

from enqueue.documents.ids import MAX_TURN, TURN_PREFIX, turn_record_id


def test_turn_record_ids_sort_by_number() -> None:
    turns = [1, 2, 9, 10, 11, 99, 100, 101, 999, 1000, 123456, 9_999_999_999]
    ids = [turn_record_id(t) for t in turns]
    assert sorted(ids) == ids
    assert sorted(reversed(ids)) == ids
    assert all(i.startswith(TURN_PREFIX) for i in ids)
    assert len(set(ids)) == len(ids)
    assert len({len(i) for i in ids}) == 1  # one width


@pytest.mark.parametrize("turn", [MAX_TURN + 1, 12_345_678_901, -1])
def test_a_turn_beyond_the_id_width_is_refused_not_printed_wider(turn: int) -> None:
    with pytest.raises(ValueError, match="10 digits"):
        turn_record_id(turn)
