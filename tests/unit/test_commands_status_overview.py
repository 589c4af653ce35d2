"""enqueue.commands.status_overview: liveness by beat time and by observation, turns, counts -- no server."""

from __future__ import annotations

import datetime as _dt

import pytest

from enqueue import documents as docs
from enqueue.commands import status_overview as overview
from enqueue.commands import status_text
from enqueue.connection import Connection
from enqueue.steering import AdminSettings, parse_time
from enqueue.timing import Timing

NOW = _dt.datetime(2026, 5, 1, 12, 0, 0, tzinfo=_dt.timezone.utc)
SETTINGS = AdminSettings(connection=Connection(url="http://127.0.0.1:5984", database="db"),
                         timing=Timing(heartbeat_delay_s=10, heartbeat_stale_s=30, kill_grace_s=5))


def at(seconds_ago: float) -> str:
    return (NOW - _dt.timedelta(seconds=seconds_ago)).strftime(SETTINGS.time_format)


def heartbeat(site: str, seconds_ago: float, state: str = docs.WAITING, rev: str = "1-a",
              timing: tuple[float, float] | None = None) -> dict:
    delay_s, stale_s = timing if timing else (None, None)
    body = docs.render_heartbeat(docs.Heartbeat(site=site, state=state, time=at(seconds_ago),
                                                heartbeat_delay_s=delay_s, heartbeat_stale_s=stale_s))
    body["_rev"] = rev
    return body


def build(heartbeats: dict, leader: dict | None = None, records: list | None = None, **kw) -> overview.Overview:
    names = sorted(heartbeats)
    sites = docs.render_sites(docs.new_sites_doc("enqueue_sites"), {n: {"heartbeat_doc": docs.heartbeat_id(n)}
                                                                  for n in names})
    return overview.build(SETTINGS, "db", "http://x", leader, sites, heartbeats, records or [], NOW, **kw)


@pytest.mark.parametrize(
    "hb, liveness",
    [
        (heartbeat("a", 5), "alive"),
        (heartbeat("a", 29), "alive"),
        (heartbeat("a", 30), "stale"),
        (heartbeat("a", -120), "alive"),  # a clock ahead of ours
        (heartbeat("a", 5, state=docs.LEFT), "left"),
        (None, "missing"),
        ({**heartbeat("a", 5), "time": "yesterday"}, "unknown"),
    ],
)
def test_liveness_by_beat_time(hb, liveness) -> None:
    site = build({"a": hb}).sites[0]
    assert site.liveness == liveness and site.liveness_from == "beat time"


def test_observed_liveness_overrides_beat_time_once_seen_or_watched_long_enough() -> None:
    watcher = overview.Observer(started=100.0)
    # A beat time an hour old, but the document changes: alive, by observation.
    first = build({"a": heartbeat("a", 3600, rev="1-a")}, observer=watcher, now_mono=100.0).sites[0]
    assert (first.liveness, first.liveness_from, first.observed_change) == ("stale", "beat time", False)
    second = build({"a": heartbeat("a", 3600, rev="2-b")}, observer=watcher, now_mono=105.0).sites[0]
    assert (second.liveness, second.liveness_from, second.observed_age_s) == ("alive", "observed", 0.0)
    # A fresh beat time, but no change seen for heartbeat_stale: stale, by observation.
    watcher = overview.Observer(started=0.0)
    build({"b": heartbeat("b", 1)}, observer=watcher, now_mono=0.0)
    late = build({"b": heartbeat("b", 1)}, observer=watcher, now_mono=31.0).sites[0]
    assert (late.liveness, late.liveness_from) == ("stale", "observed")


def test_turn_view_and_counts() -> None:
    leader = docs.render_leader(docs.LeaderDoc(doc_id="enqueue_leader", leader="a", leader_term=2, running="b",
                                               status=docs.RUNNING, turn=5, started_at=at(90), skip_turn=5))
    records = [docs.render_turn_record(docs.TurnRecord(turn=t, site=s, how=h, exit_code=c, duration_s=d))
               for t, s, h, c, d in ((1, "a", "exited", 0, 10.0), (2, "b", "not started", None, None),
                                     (3, "b", "exited", 7, 20.0), (4, "a", "skipped", 143, 1.5))]
    ov = build({"a": heartbeat("a", 1), "b": heartbeat("b", 1, state=docs.RUNNING)}, leader, records)
    assert ov.turn == overview.TurnView(number=5, site="b", state=docs.RUNNING, since=at(90), for_s=90.0,
                                        skip_requested=True, last_exit_code=None, last_how=None)
    a, b = ov.sites
    assert (a.turns_taken, a.last_turn, a.last_how, a.last_exit_code, a.last_duration_s) == (2, 4, "skipped", 143, 1.5)
    assert (b.turns_taken, b.last_exit_code, b.role) == (1, 7, "running turn 5")
    assert a.role == "leader"
    text = status_text.render_text(ov)
    assert "turn:     5, b, running since " + at(90) + " UTC (1 min 30 s); skip requested" in text


def test_sites_named_only_in_the_leader_doc_are_shown_as_not_registered() -> None:
    leader = docs.render_leader(docs.LeaderDoc(doc_id="enqueue_leader", leader="ghost", status=docs.DONE))
    ov = build({"a": heartbeat("a", 1)}, leader)
    ghost = [s for s in ov.sites if s.name == "ghost"][0]
    assert not ghost.registered and ghost.liveness == "missing" and ghost.role == "leader, not registered"


def test_parse_time_reads_the_configured_format_as_utc() -> None:
    assert parse_time("2026-05-01 12:00:00", SETTINGS.time_format) == NOW
    assert parse_time("2026-05-01T14:00:00+0200", "%Y-%m-%dT%H:%M:%S%z") == NOW
    assert parse_time("noon", SETTINGS.time_format) is None and parse_time(None, SETTINGS.time_format) is None


def test_a_site_is_judged_by_the_heartbeat_stale_it_announces() -> None:
    ov = build({"a": heartbeat("a", 50, timing=(20, 60)), "b": heartbeat("b", 50, timing=(10, 30))})
    assert [s.liveness for s in ov.sites] == ["alive", "stale"]
    assert (ov.sites[0].heartbeat_delay_s, ov.sites[0].heartbeat_stale_s) == (20, 60)


def test_different_timings_are_a_problem_and_the_note_says_stale_per_site() -> None:
    ov = build({"a": heartbeat("a", 5, timing=(20, 60)), "b": heartbeat("b", 5, timing=(10, 30)),
                "c": heartbeat("c", 5, timing=(10, 30))})
    problems = [p for p in ov.problems if "different heartbeat timings" in p]
    assert len(problems) == 1
    assert "a every 20 s, stale after 1 min" in problems[0] and "b, c every 10 s" in problems[0]
    assert "each site runs with" in status_text.render_text(ov)


@pytest.mark.parametrize("timings", [[(10, 30), (10, 30)], [(10, 30), None], [None, None]])
def test_equal_or_unannounced_timings_are_no_problem(timings) -> None:
    beats = {name: heartbeat(name, 5, timing=t) for name, t in zip("ab", timings)}
    ov = build(beats)
    assert not any("timings" in p for p in ov.problems)
    assert "Stale: no beat for 30 s." in status_text.render_text(ov)


def test_a_site_that_left_does_not_count_for_mixed_timings() -> None:
    ov = build({"a": heartbeat("a", 5, timing=(20, 60), state=docs.LEFT), "b": heartbeat("b", 5, timing=(10, 30))})
    assert not any("timings" in p for p in ov.problems)
    assert "Stale: no beat for 30 s." in status_text.render_text(ov)


def test_the_node_that_holds_the_database_is_shown_and_in_json() -> None:
    from enqueue.placement import Placement

    ov = build({"a": heartbeat("a", 1)}, where=Placement(1, 1, ("couchdb@n1",), True))
    assert "database: held by node couchdb@n1 (n=1, q=1)" in status_text.render_text(ov).splitlines()
    assert status_text.to_json(ov)["nodes"] == ["couchdb@n1"]
    unknown = build({"a": heartbeat("a", 1)})
    assert not any(line.startswith("database:") for line in status_text.render_text(unknown).splitlines())
    assert status_text.to_json(unknown)["placement"] is None


@pytest.mark.parametrize("timings, expected_s, note", [
    ([(20, 60), (20, 60)], 60, "Stale: no beat for 1 min."),  # announced by every site, not the configured 30 s
    ([None, None], 30, "Stale: no beat for 30 s."),
    ([(20, 60), (10, 30)], None, "Stale: no beat for the heartbeat_stale each site runs with."),
])
def test_json_and_text_agree_on_what_stale_means(timings, expected_s, note) -> None:
    ov = build({name: heartbeat(name, 5, timing=t) for name, t in zip("ab", timings)})
    assert status_text.to_json(ov)["heartbeat_stale_s"] == expected_s
    assert note in status_text.render_text(ov)


# --------------------------------------------------------------------------- between loop iterations, or stopped


def left(site: str, seconds_ago: float, because: str | None, stale_s: float | None = None) -> dict:
    body = heartbeat(site, seconds_ago, state=docs.LEFT, timing=(stale_s / 4, stale_s) if stale_s else None)
    if because is not None:
        body["left_because"] = because
    return body


@pytest.mark.parametrize(
    "hb, liveness",
    [
        (left("a", 5, docs.LEFT_TURN_DONE), "looping"),
        (left("a", 29, docs.LEFT_MAX_WAIT), "looping"),
        (left("a", 30, docs.LEFT_TURN_DONE), "left"),  # its loop's next agent is overdue
        (left("a", 50, docs.LEFT_TURN_DONE, stale_s=60), "looping"),  # judged by the stale it announced
        (left("a", 5, docs.LEFT_STOPPED), "left"),
        (left("a", 5, None), "left"),  # an agent that does not say why
        ({**left("a", 5, docs.LEFT_TURN_DONE), "time": "yesterday"}, "left"),
    ],
)
def test_a_site_between_loop_iterations_is_looping_and_a_stopped_one_left(hb, liveness) -> None:
    site = build({"a": hb}).sites[0]
    assert site.liveness == liveness


def test_a_watch_judges_a_left_heartbeat_by_when_it_saw_it_change() -> None:
    watcher = overview.Observer(started=0.0)
    build({"a": heartbeat("a", 1, rev="1-a")}, observer=watcher, now_mono=0.0)
    # The clocks disagree by an hour, but the watch saw the agent leave 2 s ago.
    seen = build({"a": left("a", 3600, docs.LEFT_TURN_DONE) | {"_rev": "2-b"}}, observer=watcher, now_mono=2.0)
    assert (seen.sites[0].liveness, seen.sites[0].liveness_from) == ("looping", "observed")
    late = build({"a": left("a", 1, docs.LEFT_TURN_DONE) | {"_rev": "2-b"}}, observer=watcher, now_mono=40.0)
    assert (late.sites[0].liveness, late.sites[0].liveness_from) == ("left", "observed")


def test_the_text_says_who_is_between_loop_iterations_and_why_a_site_left() -> None:
    ov = build({"a": left("a", 2, docs.LEFT_TURN_DONE), "b": left("b", 600, docs.LEFT_STOPPED)},
               docs.render_leader(docs.new_leader_doc("enqueue_leader")))
    text = status_text.render_text(ov)
    assert "leader:   none (between loop iterations: a)" in text
    assert "rotation: nobody (between loop iterations: a)" in text
    rows = {line.split()[0]: line for line in text.splitlines() if line.startswith(("a ", "b "))}
    assert "looping, 2 s ago (turn done)" in rows["a"]
    assert "left, 10 min ago (stopped)" in rows["b"]
    assert status_text.to_json(ov)["sites"][0]["left_because"] == "turn done"


def test_each_shared_document_that_is_missing_broken_or_dubious_is_one_problem_line() -> None:
    def problems(leader: dict | None, sites: dict | None) -> list[str]:
        ov = overview.build(SETTINGS, "db", "http://x", leader, sites, {}, [], NOW)
        return [p for p in ov.problems if p.startswith(("leader doc", "sites doc"))]

    assert problems(None, None) == [
        "leader doc enqueue_leader does not exist (an admin runs 'enqueue init' on a new database, 'enqueue repair' on one that held turns)",
        "sites doc enqueue_sites does not exist (no site has registered yet)"]
    leader = docs.render_leader(docs.new_leader_doc("enqueue_leader"))
    assert problems({**leader, "turn": "x"}, {"sites": []}) == [
        "leader doc enqueue_leader does not parse: field 'turn' should be an integer, not 'x'",
        "sites doc enqueue_sites does not parse: field 'sites' should be an object of site entries, not []"]
    dubious = problems({**leader, "paused_reason": 3},
                       {"sites": {"a": {"drained": "no"}, "b": 1, "Bad Name": {}}})
    assert dubious == [
        "leader doc enqueue_leader: field 'paused_reason' should be a string or null, not 3",
        "sites doc enqueue_sites: site 'a': field 'drained' should be true or false, not 'no'; "
        "entry for site 'b' is not an object; entry ignored; site name 'Bad Name' is not valid; entry ignored"]


def test_a_sites_last_turn_is_the_outcome_a_reader_takes_from_its_record() -> None:
    """The runner's report over the leader's record; a revoker's word over a dead leader's 'not started'."""
    revoked = docs.render_turn_record(docs.TurnRecord(turn=1, site="a", how="revoked", leader="b"))
    revoked["runner_report"] = {"site": "a", "how": "exited after revocation", "exit_code": 3, "ended_at": at(60),
                                "duration_s": 4.0}
    not_started = docs.render_turn_record(docs.TurnRecord(turn=2, site="b", how="not started", leader="a"))
    not_started["revoker_report"] = {"leader": "c", "how": "revoked", "started_at": at(50), "ended_at": at(10)}
    ov = build({"a": heartbeat("a", 1), "b": heartbeat("b", 1)}, None, [revoked, not_started])
    a, b = ov.sites
    assert (a.last_how, a.last_exit_code, a.last_duration_s, a.turns_taken) == ("exited after revocation", 3, 4.0, 1)
    assert (b.last_how, b.last_exit_code, b.turns_taken) == ("revoked", None, 1), "it ran: a turn taken"


def test_a_problem_a_site_says_in_its_heartbeat_is_a_problem_line_until_it_left() -> None:
    said = "leader doc enqueue_leader is missing and this site's account may not rebuild it: an admin must run " \
           "'enqueue repair CONFIG'"
    ov = build({"a": {**heartbeat("a", 1), docs.PROBLEM_FIELD: said}, "b": heartbeat("b", 1)})
    assert f"site a: {said}" in ov.problems
    gone = build({"a": {**heartbeat("a", 1, state=docs.LEFT), docs.PROBLEM_FIELD: said}})
    assert not [p for p in gone.problems if said in p]
