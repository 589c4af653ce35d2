"""Outcome: one vocabulary of how a turn ended, stored as the same strings as ever."""

from __future__ import annotations

import json

from enqueue.outcomes import Outcome, after_revocation


def test_the_stored_strings_do_not_change() -> None:
    # Documents are a stored format: these strings are in every database in use.
    assert {o.value for o in Outcome} == {
        "exited", "fenced", "stopped", "agent-gone", "revoked", "skipped", "not started", "abandoned",
        "failed to start", "supervisor died", "repaired",
    }


def test_an_outcome_is_its_string_in_comparisons_text_and_json() -> None:
    assert Outcome.NOT_STARTED == "not started"
    assert f"{Outcome.FENCED}" == "fenced" and "%s" % Outcome.EXITED == "exited"
    assert json.dumps({"how": Outcome.SUPERVISOR_DIED}) == '{"how": "supervisor died"}'


def test_revocation() -> None:
    assert after_revocation(Outcome.EXITED) == "exited after revocation"
    assert after_revocation(Outcome.FENCED) == "fenced after revocation"
