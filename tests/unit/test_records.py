"""Turn records: a record that disagrees with the runner's outcome is never taken as the outcome."""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Optional

from enqueue import documents as docs
from enqueue import records
from enqueue.documents import TurnRecord
from enqueue.errors import Conflict


class Documents:
    """Just enough of a store for ``write_once``: create-once documents and compare-and-swap updates."""

    def __init__(self) -> None:
        self.docs: dict[str, dict] = {}

    def get(self, doc_id: str) -> Optional[dict]:
        doc = self.docs.get(doc_id)
        return dict(doc) if doc else None

    def put(self, doc: dict) -> str:
        current = self.docs.get(doc["_id"])
        if (current or {}).get("_rev") != doc.get("_rev"):
            raise Conflict(f"{doc['_id']}: conflict")
        generation = int(current["_rev"].split("-")[0]) + 1 if current else 1
        self.docs[doc["_id"]] = dict(doc, _rev=f"{generation}-x")
        return self.docs[doc["_id"]]["_rev"]


def stored(store: Documents, rec: TurnRecord) -> dict:
    store.put(docs.render_turn_record(rec))
    return store.get(docs.turn_record_id(rec.turn))


def taken(store: Documents, turn: int) -> records.Outcome:
    raw = store.get(docs.turn_record_id(turn))
    rec, _ = docs.parse_turn_record(raw)
    return records.outcome(rec, raw)


def test_the_runners_outcome_beats_a_record_that_claims_another() -> None:
    """A record naming bravo's turn as exited 0 was there first; bravo's real exit 3 is not dropped."""
    store = Documents()
    stored(store, TurnRecord(turn=42, site="bravo", how="exited", exit_code=0, leader="alpha"))
    records.write_once(store, TurnRecord(turn=42, site="bravo", how="exited", exit_code=3), "bravo")
    assert store.get(docs.turn_record_id(42))["runner_report"]["exit_code"] == 3
    assert taken(store, 42) == records.Outcome("bravo", "exited", 3)


def test_the_runner_reports_on_the_leaders_record_of_taking_its_turn_away() -> None:
    store = Documents()
    stored(store, TurnRecord(turn=7, site="bravo", how="revoked", leader="alpha"))
    records.write_once(store, TurnRecord(turn=7, site="bravo", how="exited after revocation", exit_code=1), "bravo")
    assert taken(store, 7) == records.Outcome("bravo", "exited after revocation", 1)


def test_a_record_naming_another_runner_reads_as_disputed_once_the_runner_reports() -> None:
    store = Documents()
    stored(store, TurnRecord(turn=44, site="alpha", how="exited", exit_code=0))
    records.write_once(store, TurnRecord(turn=44, site="charlie", how="exited", exit_code=3), "charlie")
    outcome = taken(store, 44)
    assert outcome.how == records.DISPUTED and outcome.exit_code is None
    assert "alpha" in outcome.dispute and "charlie" in outcome.dispute


def test_an_identical_retry_and_the_leaders_late_record_change_nothing() -> None:
    store = Documents()
    first = stored(store, TurnRecord(turn=3, site="bravo", how="exited", exit_code=0))
    records.write_once(store, TurnRecord(turn=3, site="bravo", how="exited", exit_code=0), "bravo")
    records.write_once(store, TurnRecord(turn=3, site="bravo", how="revoked", leader="alpha"), "alpha")
    assert store.get(docs.turn_record_id(3)) == first
    assert taken(store, 3) == records.Outcome("bravo", "exited", 0)


def test_when_the_command_ended_is_the_runners_word_over_another_writers_clock() -> None:
    """The leader's record says when the leader took the turn away, by its clock (hours off the runner's);
    the runner's report says when its command ended, and a reader takes that."""
    store = Documents()
    stored(store, TurnRecord(turn=9, site="bravo", how="revoked", leader="alpha", ended_at="2026-01-01 05:00:00"))
    taken_before = taken(store, 9)
    assert (taken_before.ended_at, taken_before.duration_s) == ("2026-01-01 05:00:00", None)
    records.write_once(store, TurnRecord(turn=9, site="bravo", how="exited after revocation", exit_code=0,
                                         ended_at="2026-01-01 01:00:03", duration_s=2.5), "bravo")
    outcome = taken(store, 9)
    assert (outcome.how, outcome.ended_at, outcome.duration_s) == ("exited after revocation", "2026-01-01 01:00:03",
                                                                   2.5)


# A leader that died before its compare-and-swap left this record; bravo then confirmed turn 5 and ran it.
_NOT_STARTED = TurnRecord(turn=5, site="bravo", how="not started", leader="alpha", ended_at="2026-01-01 00:00:01")
_STARTED_AT = "2026-01-01 00:00:02"


def _revoked_by(site: str, how: str = "revoked", started_at: Optional[str] = _STARTED_AT) -> TurnRecord:
    return TurnRecord(turn=5, site="bravo", how=how, leader=site, started_at=started_at,
                      ended_at="2026-01-01 00:00:09", note="bravo is stale")


def test_a_revoker_that_read_the_turn_started_adds_its_word_to_a_not_started_record_once() -> None:
    store = Documents()
    stored(store, _NOT_STARTED)
    records.write_once(store, _revoked_by("charlie"), "charlie")
    raw = store.get(docs.turn_record_id(5))
    assert raw["how"] == "not started" and raw["leader"] == "alpha", "the record stays its writer's"
    assert raw["revoker_report"] == {"leader": "charlie", "how": "revoked", "started_at": _STARTED_AT,
                                     "ended_at": "2026-01-01 00:00:09", "note": "bravo is stale"}
    outcome = taken(store, 5)
    assert (outcome.site, outcome.how, outcome.exit_code, outcome.ended_at) == ("bravo", "revoked", None,
                                                                                "2026-01-01 00:00:09")
    assert "alpha" in outcome.note and "charlie" in outcome.note and _STARTED_AT in outcome.note
    records.write_once(store, _revoked_by("delta"), "delta")
    assert store.get(docs.turn_record_id(5)) == raw, "a second revoker adds nothing"


def test_a_revoker_adds_nothing_without_a_start_it_read_or_to_a_record_that_says_otherwise() -> None:
    store = Documents()
    first = stored(store, _NOT_STARTED)
    records.write_once(store, _revoked_by("charlie", "not started", started_at=None), "charlie")
    records.write_once(store, _revoked_by("charlie", started_at=None), "charlie")
    assert store.get(docs.turn_record_id(5)) == first
    assert taken(store, 5).how == "not started"
    revoked = stored(store, TurnRecord(turn=6, site="bravo", how="revoked", leader="alpha"))
    records.write_once(store, replace(_revoked_by("charlie"), turn=6), "charlie")
    assert store.get(docs.turn_record_id(6)) == revoked


def test_the_runners_report_beats_the_revokers_word() -> None:
    store = Documents()
    stored(store, _NOT_STARTED)
    records.write_once(store, _revoked_by("charlie", "repaired"), "charlie")
    assert taken(store, 5).how == "repaired"
    records.write_once(store, TurnRecord(turn=5, site="bravo", how="exited after revocation", exit_code=0,
                                         ended_at="2026-01-01 00:00:04", duration_s=2.0), "bravo")
    assert taken(store, 5) == records.Outcome("bravo", "exited after revocation", 0, ended_at="2026-01-01 00:00:04",
                                              duration_s=2.0)


def test_a_revokers_word_is_not_taken_unless_backed_by_a_start_or_over_a_record_that_says_otherwise() -> None:
    word = {"leader": "charlie", "how": "revoked", "started_at": _STARTED_AT}
    for rec, report in ((_NOT_STARTED, dict(word, started_at=None)), (_NOT_STARTED, dict(word, how="exited")),
                        (replace(_NOT_STARTED, how="abandoned"), word), (_NOT_STARTED, "junk")):
        raw = dict(docs.render_turn_record(rec), revoker_report=report)
        assert records.outcome(rec, raw).how == rec.how, (rec.how, report)


def test_a_report_whose_answer_was_lost_is_found_again_without_an_error(caplog) -> None:
    store = Documents()
    stored(store, _NOT_STARTED)
    mine = TurnRecord(turn=5, site="bravo", how="exited after revocation", exit_code=0, duration_s=1.0)
    records.write_once(store, mine, "bravo")
    first = store.get(docs.turn_record_id(5))
    with caplog.at_level(logging.WARNING, logger="enqueue.records"):
        records.write_once(store, mine, "bravo")
    assert store.get(docs.turn_record_id(5)) == first
    assert caplog.records == []


class CountingDocuments(Documents):
    """``Documents`` that counts the requests made of it."""

    def __init__(self) -> None:
        super().__init__()
        self.requests = 0

    def get(self, doc_id: str) -> Optional[dict]:
        self.requests += 1
        return super().get(doc_id)

    def put(self, doc: dict) -> str:
        self.requests += 1
        return super().put(doc)


CARRIED = TurnRecord(turn=8, site="alpha", how="exited", exit_code=0, host="h-a", ended_at="2026-01-01 00:00:01",
                     duration_s=1.5)


def carrying(rec: Optional[TurnRecord]) -> docs.LeaderDoc:
    return docs.LeaderDoc(doc_id="enqueue_leader", status=docs.GRANTED, running="bravo",
                          turn=rec.turn + 1 if rec else 1, last_record=rec)


def test_the_next_holder_stores_the_carried_record_as_a_copy_in_its_own_name() -> None:
    store = CountingDocuments()
    queue = records.RecordQueue(store, "bravo")  # type: ignore[arg-type]
    queue.store_carried(carrying(CARRIED))
    raw = store.get(docs.turn_record_id(8))
    assert raw is not None and raw["copied_by"] == "bravo"
    assert taken(store, 8) == records.Outcome("alpha", "exited", 0, ended_at="2026-01-01 00:00:01", duration_s=1.5)


def test_a_carried_record_already_stored_is_left_as_it_is_and_looked_up_once() -> None:
    store = CountingDocuments()
    stored(store, replace(CARRIED, note="the runner's own"))
    queue = records.RecordQueue(store, "bravo")  # type: ignore[arg-type]
    before = store.requests
    queue.store_carried(carrying(CARRIED))
    queue.store_carried(carrying(CARRIED))
    assert store.requests - before == 1
    assert store.get(docs.turn_record_id(8))["note"] == "the runner's own"


def test_a_record_this_writer_stored_is_known_stored_without_a_request() -> None:
    store = CountingDocuments()
    queue = records.RecordQueue(store, "alpha")  # type: ignore[arg-type]
    queue.add(CARRIED)
    before = store.requests
    queue.store_carried(carrying(CARRIED))
    queue.store_carried(carrying(None))
    assert store.requests == before


def test_the_runner_storing_its_record_after_the_copy_changes_nothing() -> None:
    store = Documents()
    records.RecordQueue(store, "bravo").store_carried(carrying(CARRIED))  # type: ignore[arg-type]
    copy = store.get(docs.turn_record_id(8))
    records.write_once(store, CARRIED, "alpha")  # type: ignore[arg-type]
    assert store.get(docs.turn_record_id(8)) == copy


def test_the_runner_reports_over_a_copy_that_says_otherwise() -> None:
    store = Documents()
    records.RecordQueue(store, "bravo").store_carried(  # type: ignore[arg-type]
        carrying(replace(CARRIED, how="revoked", exit_code=None)))
    records.write_once(store, CARRIED, "alpha")  # type: ignore[arg-type]
    assert taken(store, 8).how == "exited"
    assert records.RUNNER_REPORT in store.get(docs.turn_record_id(8))


def test_the_next_holder_adds_the_carried_word_of_the_runner_to_a_record_that_says_otherwise() -> None:
    """A leader recorded turn 8 'not started' and died; alpha ran it, finished it carrying its record, and died."""
    store = Documents()
    stored(store, TurnRecord(turn=8, site="alpha", how="not started", leader="delta"))
    records.RecordQueue(store, "bravo").store_carried(carrying(CARRIED))  # type: ignore[arg-type]
    raw = store.get(docs.turn_record_id(8))
    assert raw[records.RUNNER_REPORT]["copied_by"] == "bravo"
    assert taken(store, 8).how == "exited" and taken(store, 8).exit_code == 0
