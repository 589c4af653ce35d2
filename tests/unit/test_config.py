"""Configuration loading: file + environment + flags, and one-line errors without secrets."""

from __future__ import annotations

import dataclasses
import signal

import pytest

from enqueue.config import load_agent_settings
from enqueue.connection import Connection
from enqueue.errors import ConfigError
from enqueue.timing import Timing
from tests.support.config_files import COUCH, GOOD, SECRET, settings, write
from tests.support.log_state import restore_logging  # noqa: F401  (fixture)

pytestmark = pytest.mark.usefixtures("restore_logging")


# --------------------------------------------------------------------------- the good path


def test_good_file(tmp_path) -> None:
    s = settings(write(tmp_path, GOOD))
    assert s.site == "alpha" and s.command == ["true"]
    assert s.connection == Connection(
        url="http://127.0.0.1:5984", database="enqueue", username="site_alpha", password=SECRET
    )
    assert s.timing.heartbeat_delay_s == 60 and s.timing.heartbeat_stale_s == 300
    assert s.timing.conflict_delay_s == 60 and s.timing.kill_grace_s == 30
    assert (s.repeat, s.time_format, s.leader_doc, s.sites_doc) == (
        False, "%Y-%m-%d %H:%M:%S", "enqueue_leader", "enqueue_sites")
    assert s.wall_clock_offset_s == 0.0
    assert s.config_path.endswith("enqueue.ini")


def test_defaults_without_enqueue_section(tmp_path) -> None:
    s = settings(write(tmp_path, "[couchdb]\nurl = http://127.0.0.1:5984\ndatabase = enqueue\n"))
    assert s.timing == Timing(600, 1800, 60, 30)
    assert s.connection.username is None and s.connection.password is None
    assert s.connection.request_timeout_s == 10


def test_all_enqueue_keys(tmp_path) -> None:
    path = write(tmp_path, """
        [couchdb]
        url = https://db.example:6984
        database = my_db-1
        request_timeout = 20s
        [enqueue]
        heartbeat_delay = 30s
        heartbeat_stale = 2m
        conflict_delay = 0.1
        kill_grace = 0
        repeat = yes
        time_format = %d/%m/%Y %H:%M
        leader_doc = L
        sites_doc = S
    """)
    s = settings(path)
    assert s.timing == Timing(30, 120, 6, 0)
    assert s.repeat is True
    assert s.time_format == "%d/%m/%Y %H:%M"
    assert (s.leader_doc, s.sites_doc) == ("L", "S")
    assert s.connection.request_timeout_s == 20
    assert s.connection.url == "https://db.example:6984"


def test_kill_grace_default_shrinks_to_fit_short_heartbeats(tmp_path) -> None:
    path = write(tmp_path, GOOD.replace("heartbeat_delay = 1", "heartbeat_delay = 0.05")
                 .replace("heartbeat_stale = 5", "heartbeat_stale = 12s"))
    timing = settings(path).timing
    assert (timing.heartbeat_delay_s, timing.heartbeat_stale_s, timing.kill_grace_s) == (3, 12, 3)


def test_stale_exactly_twice_the_delay_is_kept_by_beating_more_often(tmp_path) -> None:
    """The original tool's -d 10 -s 20: the delay is the longest time between beats, so a shorter one is kept."""
    s = settings(write(tmp_path, COUCH + "[enqueue]\nheartbeat_delay = 10\nheartbeat_stale = 20\n"))
    assert s.timing == Timing(570, 1200, 60, 30)
    assert s.notes == ("heartbeat every 9 min 30 s instead of every 10 min: heartbeat_stale (20 min) needs more "
                       "than 2 x heartbeat_delay, with room for the kill grace and a late heartbeat (the delay is "
                       "the longest time between beats)",)


@pytest.mark.parametrize(
    "enqueue, timing",
    [
        # Unset grace: the slack is twice the default grace, min(30 s, stale / 6).
        ("heartbeat_delay = 10\nheartbeat_stale = 15", Timing(420, 900, 60, 30)),
        ("heartbeat_delay = 10\nheartbeat_stale = 20.5", Timing(585, 1230, 60, 30)),
        ("heartbeat_delay = 1s\nheartbeat_stale = 2s", Timing(2 / 3, 2, 60, 1 / 3)),
        ("heartbeat_delay = 10\nheartbeat_stale = 1", Timing(20, 60, 60, 10)),
        # A grace that is set is kept; the round trip still gets the default grace's room.
        ("heartbeat_delay = 10\nheartbeat_stale = 20\nkill_grace = 0", Timing(585, 1200, 60, 0)),
        ("heartbeat_delay = 10\nheartbeat_stale = 20\nkill_grace = 1", Timing(540, 1200, 60, 60)),
    ],
)
def test_fitted_heartbeat_delays(tmp_path, enqueue: str, timing: Timing) -> None:
    s = settings(write(tmp_path, COUCH + "[enqueue]\n" + enqueue + "\n"))
    assert s.timing.heartbeat_delay_s == pytest.approx(timing.heartbeat_delay_s)
    assert s.timing.kill_grace_s == pytest.approx(timing.kill_grace_s)
    assert s.timing.heartbeat_stale_s == timing.heartbeat_stale_s
    assert len(s.notes) == 1 and "instead of every" in s.notes[0]


@pytest.mark.parametrize("enqueue", [
    "heartbeat_delay = 10\nheartbeat_stale = 30",
    "heartbeat_delay = 0.5s\nheartbeat_stale = 2s",
    "heartbeat_delay = 10\nheartbeat_stale = 20.01\nkill_grace = 0.1s",  # a grace that is set and fits stays
])
def test_timings_with_room_are_not_fitted(tmp_path, enqueue: str) -> None:
    s = settings(write(tmp_path, COUCH + "[enqueue]\n" + enqueue + "\n"))
    assert s.notes == ()


def test_flags_beat_file(tmp_path) -> None:
    path = write(tmp_path, GOOD)
    s = settings(path, {
        "heartbeat_delay_s": 10.0, "heartbeat_stale_s": "1m", "conflict_delay_s": 5.0, "kill_grace_s": 2.0,
        "repeat": True, "time_format": "%H:%M:%S %Y-%m-%d", "leader_doc": "lead", "sites_doc": "sites",
        "wall_clock_offset_s": -3600.0,
    })
    assert s.timing == Timing(10, 60, 5, 2)
    assert s.repeat and s.time_format == "%H:%M:%S %Y-%m-%d"
    assert (s.leader_doc, s.sites_doc, s.wall_clock_offset_s) == ("lead", "sites", -3600.0)


def test_none_override_means_not_given(tmp_path) -> None:
    s = settings(write(tmp_path, GOOD), {"heartbeat_delay_s": None, "repeat": None})
    assert s.timing.heartbeat_delay_s == 60 and s.repeat is False


def test_flag_can_turn_repeat_off(tmp_path) -> None:
    path = write(tmp_path, GOOD.replace("[enqueue]", "[enqueue]\nrepeat = true"))
    assert settings(path).repeat is True
    assert settings(path, {"repeat": False}).repeat is False


def test_max_wait_is_for_an_agent_that_runs_once(tmp_path) -> None:
    path = write(tmp_path, GOOD)
    assert dataclasses.replace(settings(path), max_wait_s=30.0).max_wait_s == 30.0
    with pytest.raises(ConfigError, match="--max-wait is for an agent that runs once"):
        dataclasses.replace(settings(path, {"repeat": True}), max_wait_s=30.0)


# --------------------------------------------------------------------------- errors


# (id, file text or None for "no file", environment, expected text in the message)
BAD_FILES = [
    ("unknown couchdb key", COUCH + "colour = blue\n", {}, "[couchdb] colour: unknown key; known keys: url,"),
    ("unknown enqueue key", COUCH + "[enqueue]\nheartbeat = 5\n", {}, "[enqueue] heartbeat: unknown key"),
    ("missing url", "[couchdb]\ndatabase = enqueue\n", {}, "[couchdb] url: missing"),
    ("empty url", "[couchdb]\nurl =\ndatabase = enqueue\n", {}, "[couchdb] url: missing"),
    ("missing database", "[couchdb]\nurl = http://127.0.0.1:5984\n", {}, "[couchdb] database: missing"),
    ("no couchdb section", "[enqueue]\nrepeat = true\n", {},
     "section [couchdb] not found (sections in the file: [enqueue]); it needs url (or set ENQUEUE_COUCHDB_URL)"),
    ("misspelt couchdb section", "[couchbd]\nurl = http://127.0.0.1:5984\ndatabase = enqueue\n", {},
     "section [couchdb] not found; the file has [couchbd]: did you mean [couchdb]?"),
    ("misspelt enqueue section", "[couchdb]\nurl = http://127.0.0.1:5984\ndatabase = enqueue\n[enqeue]\nrepeat = 1\n", {},
     "section [enqueue] not found; the file has [enqeue]: did you mean [enqueue]?"),
    ("bad scheme", COUCH.replace("http://", "ftp://"), {}, "[couchdb] url: expected http"),
    ("no host", COUCH.replace("http://127.0.0.1:5984", "http://"), {}, "[couchdb] url: expected http"),
    ("bad port", COUCH.replace("5984", "59x4"), {}, "[couchdb] url: not a valid URL"),
    ("query in url", COUCH.replace("5984", "5984/?a=b"), {}, "[couchdb] url: the URL must not have a query"),
    ("bad database name", COUCH.replace("database = enqueue", "database = Enqueue"), {},
     "[couchdb] database: 'Enqueue' is not a CouchDB database name"),
    ("bad request timeout", COUCH + "request_timeout = soon\n", {}, "[couchdb] request_timeout: 'soon' is not a duration"),
    ("zero request timeout", COUCH + "request_timeout = 0\n", {}, "[couchdb] request_timeout: must be more than 0"),
    ("bad heartbeat_delay", COUCH + "[enqueue]\nheartbeat_delay = ten\n", {},
     "[enqueue] heartbeat_delay: 'ten' is not a duration"),
    ("negative heartbeat_stale", COUCH + "[enqueue]\nheartbeat_stale = -5\n", {},
     "[enqueue] heartbeat_stale: '-5' is negative"),
    ("zero conflict_delay", COUCH + "[enqueue]\nconflict_delay = 0\n", {}, "[enqueue] conflict_delay: must be more than 0"),
    ("bad kill_grace", COUCH + "[enqueue]\nkill_grace = 30x\n", {}, "[enqueue] kill_grace: '30x' is not a duration"),
    ("bad boolean", COUCH + "[enqueue]\nrepeat = maybe\n", {}, "[enqueue] repeat: 'maybe' is not true/false"),
    ("bad time format", COUCH + "[enqueue]\ntime_format = %s\n", {}, "[enqueue] time_format: '%s' cannot be read back"),
    ("reserved leader doc", COUCH + "[enqueue]\nleader_doc = _leader\n", {}, "[enqueue] leader_doc: '_leader' starts with '_'"),
    ("same docs", COUCH + "[enqueue]\nleader_doc = x\nsites_doc = x\n", {}, "[enqueue] leader_doc and"),
    ("stale too short", COUCH + "[enqueue]\nheartbeat_delay = 10\nheartbeat_stale = 20\nkill_grace = 10\n", {},
     "heartbeat_stale (20 min) must be more than 2 x heartbeat_delay (2 x 10 min)"),
    ("grace too long", COUCH + "[enqueue]\nheartbeat_delay = 10\nheartbeat_stale = 25\nkill_grace = 13\n", {},
     "kill_grace (13 min) must be at most (heartbeat_stale - 2 x heartbeat_delay) / 2 (2 min 30 s)"),
    ("syntax error", COUCH + "this line is nonsense\n", {}, "line 4: not a 'key = value' line"),
    ("no section header", "url = x\n" + COUCH, {}, "line 1: a setting before the first [section] header"),
    ("duplicate key", COUCH + "url = http://x\n", {}, "line 4: [couchdb] url appears twice"),
    ("duplicate section", COUCH + COUCH, {}, "section [couchdb] appears twice"),
    ("username without password", COUCH + "username = bob\n", {}, "[couchdb] username 'bob' has no password"),
    ("password without username", COUCH + f"password = {SECRET}\n", {}, "[couchdb] a password is set but no username"),
    ("both password forms", COUCH + f"username = bob\npassword = {SECRET}\npassword_file = pw\n", {},
     "[couchdb] set password or password_file, not both"),
    ("missing password file", COUCH + "username = bob\npassword_file = nothere\n", {},
     "[couchdb] password_file: password file"),
    ("missing ca file", COUCH + "ca_file = nothere.pem\n", {}, "[couchdb] ca_file: CA file"),
    ("bad env url", COUCH, {"ENQUEUE_COUCHDB_URL": "nonsense"}, "environment variable ENQUEUE_COUCHDB_URL: expected http"),
    ("bad env database", COUCH, {"ENQUEUE_COUCHDB_DATABASE": "_users"}, "environment variable ENQUEUE_COUCHDB_DATABASE"),
    ("both env password forms", COUCH, {"ENQUEUE_COUCHDB_PASSWORD": SECRET, "ENQUEUE_COUCHDB_PASSWORD_FILE": "x"},
     "set ENQUEUE_COUCHDB_PASSWORD or ENQUEUE_COUCHDB_PASSWORD_FILE, not both"),
    ("missing env password file", COUCH, {"ENQUEUE_COUCHDB_USERNAME": "bob", "ENQUEUE_COUCHDB_PASSWORD_FILE": "nothere"},
     "environment variable ENQUEUE_COUCHDB_PASSWORD_FILE: password file"),
]


@pytest.mark.parametrize("text, environ, expected", [case[1:] for case in BAD_FILES], ids=[c[0] for c in BAD_FILES])
def test_bad_configuration(tmp_path, text: str, environ: dict, expected: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        settings(path, environ=environ)
    message = str(info.value)
    assert expected in message
    assert "\n" not in message
    assert SECRET not in message
    if not expected.startswith(("environment", "set ENQUEUE")):
        assert message.startswith(path + ":")
    assert info.value.exit_code == 2


@pytest.mark.parametrize("site", ["", "-alpha", "_alpha", ".a", "al pha", "al/pha", "é", "x" * 65])
def test_bad_site_names(tmp_path, site: str) -> None:
    with pytest.raises(ConfigError, match="SITENAME .* is invalid"):
        settings(write(tmp_path, GOOD), site=site)


@pytest.mark.parametrize("name", ["enqueue_heartbeat", "enqueue_turn:x", "prod:heartbeat", "prod:turn:b"])
def test_a_leader_doc_whose_ids_could_be_another_sets_is_refused(tmp_path, name: str) -> None:
    with pytest.raises(ConfigError, match=f"--leader-doc: '{name}' .*; name the leader doc otherwise"):
        settings(write(tmp_path, GOOD), {"leader_doc": name})


def test_empty_command(tmp_path) -> None:
    with pytest.raises(ConfigError, match="no command"):
        load_agent_settings(write(tmp_path, GOOD), "alpha", [], {}, {})


def test_bad_flag_values(tmp_path) -> None:
    path = write(tmp_path, GOOD)
    with pytest.raises(ConfigError, match="--heartbeat-stale: 'x' is not a duration"):
        settings(path, {"heartbeat_stale_s": "x"})
    with pytest.raises(ConfigError, match="--time-format: '%s' cannot be read back"):
        settings(path, {"time_format": "%s"})
    with pytest.raises(ConfigError, match="kill_grace .* --kill-grace"):
        settings(path, {"kill_grace_s": 10_000.0})
    with pytest.raises(ValueError, match="unknown override keys: colour"):
        settings(path, {"colour": "blue"})




def test_stop_signal_and_max_failures_flags(tmp_path) -> None:
    path = write(tmp_path, GOOD)
    default = settings(path)
    assert (default.stop_signal, default.max_failures) == (signal.SIGTERM, None)
    given = settings(path, {"stop_signal": "int", "max_failures": 3})
    assert (given.stop_signal, given.max_failures) == (signal.SIGINT, 3)
    assert settings(path, {"stop_signal": signal.SIGHUP}).stop_signal == signal.SIGHUP
    with pytest.raises(ConfigError, match="--stop-signal: SIGKILL cannot start a stop"):
        settings(path, {"stop_signal": "KILL"})
    with pytest.raises(ConfigError, match="--max-failures: must be a whole number of turns, at least 1, not 0"):
        settings(path, {"max_failures": 0})
