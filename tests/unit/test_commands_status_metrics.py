"""enqueue.commands.status_metrics: the overview in the Prometheus text format, parsed back -- no server."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from enqueue import documents as docs
from enqueue.commands import status_metrics
from tests.unit.test_commands_status_overview import at, build, heartbeat


def samples(text: str) -> dict[tuple, float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted((k, v) for k, v in s.labels.items() if k != "database")))] = s.value
    return out


def test_every_value_is_exported_and_unknown_ones_are_left_out():
    leader = docs.render_leader(docs.LeaderDoc(doc_id="enqueue_leader", leader="a", running="b",
                                               status=docs.RUNNING, turn=5, granted_at=at(42), started_at=at(41)))
    records = [docs.render_turn_record(docs.TurnRecord(turn=4, site="a", how="exited", exit_code=2))]
    ov = build({"a": heartbeat("a", 3), "b": {**heartbeat("b", 1, state=docs.RUNNING), "time": "garbled"}},
               leader, records)
    got = samples(status_metrics.exposition(ov))
    assert got[("enqueue_turn", ())] == 5
    assert got[("enqueue_seconds_since_handoff", ())] == 42
    assert got[("enqueue_paused", ())] == 0
    assert got[("enqueue_site_alive", (("site", "a"),))] == 1
    assert got[("enqueue_site_last_exit_code", (("site", "a"),))] == 2
    assert got[("enqueue_site_seconds_since_beat", (("site", "a"),))] == 3
    assert ("enqueue_site_seconds_since_beat", (("site", "b"),)) not in got  # beat time unreadable
    assert ("enqueue_site_last_exit_code", (("site", "b"),)) not in got  # no record
    # One series per state, 1 for the announced one.
    states = {labels[0][1]: value for (name, labels), value in got.items()
              if name == "enqueue_site_state" and ("site", "b") in labels}
    assert states == {"waiting": 0, "running": 1, "idle": 0, "left": 0, "between": 0, "not_ready": 0}


def test_before_the_first_turn_there_is_no_turn_series():
    got = samples(status_metrics.exposition(build({"a": heartbeat("a", 3)})))
    assert not [key for key in got if key[0] in ("enqueue_turn", "enqueue_seconds_since_handoff")]
    assert got[("enqueue_paused", ())] == 0


def test_a_site_between_loop_iterations_counts_as_alive_and_a_stopped_one_does_not():
    looping = {**heartbeat("a", 2, state=docs.LEFT), "left_because": docs.LEFT_TURN_DONE}
    stopped = {**heartbeat("b", 2, state=docs.LEFT), "left_because": docs.LEFT_STOPPED}
    got = samples(status_metrics.exposition(build({"a": looping, "b": stopped})))
    assert got[("enqueue_site_alive", (("site", "a"),))] == 1
    assert got[("enqueue_site_alive", (("site", "b"),))] == 0
