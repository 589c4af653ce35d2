"""The document-set name rule: a leader doc name whose ids could be another set's is refused."""

from __future__ import annotations

import pytest

from enqueue.set_names import set_name_problem


@pytest.mark.parametrize("name", ["enqueue_heartbeat", "enqueue_turn", "enqueue_heartbeat:x", "a:heartbeat",
                                  "a:heartbeat:b", "a:turn", "a:turn:b", "enqueue_turn:x"])
def test_a_leader_doc_name_whose_ids_could_be_another_sets_is_refused(name: str) -> None:
    assert set_name_problem(name) is not None


@pytest.mark.parametrize("name", ["enqueue_leader", "test_leader", "a:heartbeats", "a:turnip:b", "enqueue_turnstile",
                                  "heartbeat", "a::b"])
def test_a_leader_doc_name_no_other_sets_ids_can_start_is_taken(name: str) -> None:
    assert set_name_problem(name) is None
