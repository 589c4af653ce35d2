"""Revisions: the last revision seen of each key, since when, and whether a delivery is late news."""

from __future__ import annotations

import pytest

from enqueue.observed import Revisions, generation, revision_of


@pytest.mark.parametrize("rev, gen", [("7-ab12", 7), ("12-x", 12), (None, None), ("garbage", None)])
def test_generation(rev, gen) -> None:
    assert generation(rev) == gen


def test_revision_of_a_body() -> None:
    assert revision_of({"_rev": "3-c"}) == "3-c"
    assert revision_of({}) is None
    assert revision_of(None) is None


def test_since_moves_only_when_the_revision_changes() -> None:
    seen = Revisions()
    assert seen.observe("a", "1-x", 10.0)
    assert not seen.observe("a", "1-x", 15.0)
    assert seen.since("a") == 10.0 and seen.rev("a") == "1-x"
    assert seen.observe("a", "2-y", 20.0)
    assert seen.since("a") == 20.0 and seen.rev("a") == "2-y"


def test_a_missing_document_is_the_revision_none() -> None:
    seen = Revisions()
    assert seen.observe("a", None, 1.0)
    assert not seen.observe("a", None, 5.0)
    assert seen.since("a") == 1.0 and seen.rev("a") is None
    assert seen.since("never") is None and seen.rev("never") is None


def test_older_compares_generations_and_keeps_the_highest_across_a_deletion() -> None:
    seen = Revisions()
    assert not seen.is_older("a", "1-x")  # nothing known: nothing is older
    seen.observe("a", "5-b", 0.0)
    assert seen.is_older("a", "4-a")
    assert not seen.is_older("a", "5-b") and not seen.is_older("a", "6-c")
    seen.observe("a", None, 1.0)  # deleted: its revision is unknown
    assert seen.is_older("a", "4-a")
    assert not seen.is_older("a", None) and not seen.is_older("a", "garbage")


def test_a_read_may_lower_the_generation() -> None:
    seen = Revisions()
    seen.observe("a", "5-b", 0.0)
    seen.observe("a", "1-a", 1.0)  # the server's current state, e.g. a purged and recreated document
    assert not seen.is_older("a", "2-x")


def test_forget() -> None:
    seen = Revisions()
    seen.observe("a", "1-x", 0.0)
    seen.forget("a")
    assert seen.rev("a") is None and seen.since("a") is None
