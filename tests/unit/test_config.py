"""Configuration loading: file + environment + flags, and one-line errors without secrets."""

from __future__ import annotations

import logging
import builtins
import os
import textwrap
from pathlib import Path
from typing import Iterator, Optional

import pytest

from enqueue import logs
from enqueue.config import (
    AgentSettings,
    Connection,
    Timing,
    load_agent_settings,
    load_connection,
)
from enqueue.errors import ConfigError

SECRET = "S3cret-value-42"

GOOD = f"""
[couchdb]
url = http://127.0.0.1:5984/   ; a comment after the value
database = enqueue
username = site_alpha
password = {SECRET}

[enqueue]
heartbeat_delay = 1
heartbeat_stale = 5

[some_other_tool]
anything = goes
"""


@pytest.fixture(autouse=True)
def forget_secrets() -> Iterator[None]:
    yield
    logs._forget_secrets()


def write(tmp_path: Path, text: str, name: str = "enqueue.ini", mode: int = 0o600) -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    path.chmod(mode)
    return str(path)


def settings(path: str, overrides: Optional[dict] = None, environ: Optional[dict] = None,
             site: str = "alpha", command: Optional[list] = None) -> AgentSettings:
    return load_agent_settings(path, site, command or ["true"], overrides or {}, environ or {})


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


def test_environment_beats_file(tmp_path) -> None:
    pw_file = tmp_path / "pw"
    pw_file.write_text("from-env-file\n")
    pw_file.chmod(0o600)
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    env = {
        "ENQUEUE_COUCHDB_URL": "https://other.example:6984",
        "ENQUEUE_COUCHDB_DATABASE": "other",
        "ENQUEUE_COUCHDB_USERNAME": "site_beta",
        "ENQUEUE_COUCHDB_PASSWORD_FILE": str(pw_file),
        "ENQUEUE_COUCHDB_CA_FILE": str(ca),
    }
    connection, _ = load_connection(write(tmp_path, GOOD), env)
    assert connection == Connection("https://other.example:6984", "other", "site_beta", "from-env-file", str(ca))


def test_environment_password(tmp_path) -> None:
    connection, _ = load_connection(write(tmp_path, GOOD), {"ENQUEUE_COUCHDB_PASSWORD": "envpw"})
    assert connection.password == "envpw"


def test_empty_environment_variable_is_unset(tmp_path) -> None:
    connection, _ = load_connection(write(tmp_path, GOOD), {"ENQUEUE_COUCHDB_URL": ""})
    assert connection.url == "http://127.0.0.1:5984"


def test_environment_supplies_missing_section(tmp_path) -> None:
    env = {"ENQUEUE_COUCHDB_URL": "http://127.0.0.1:5984", "ENQUEUE_COUCHDB_DATABASE": "enqueue"}
    connection, raw = load_connection(write(tmp_path, "[enqueue]\nrepeat = on\n"), env)
    assert connection.describe() == "database 'enqueue' at http://127.0.0.1:5984"
    assert raw == {"repeat": "on"}


def test_password_file_relative_to_config(tmp_path) -> None:
    (tmp_path / "secret.txt").write_text(SECRET + "\n")
    (tmp_path / "secret.txt").chmod(0o600)
    path = write(tmp_path, GOOD.replace(f"password = {SECRET}", "password_file = secret.txt"))
    assert settings(path).connection.password == SECRET
    assert logs.redact(SECRET) == logs.REDACTED


def test_credentials_in_url_are_moved_out(tmp_path, caplog) -> None:
    path = write(tmp_path, "[couchdb]\nurl = http://bob:p%40ss@127.0.0.1:5984\ndatabase = enqueue\n")
    with caplog.at_level(logging.WARNING):
        connection, _ = load_connection(path, {})
    assert connection.url == "http://127.0.0.1:5984"
    assert (connection.username, connection.password) == ("bob", "p@ss")
    assert "discouraged" in caplog.text
    assert logs.redact("p@ss") == logs.REDACTED


def test_default_section_and_foreign_sections_are_ignored(tmp_path) -> None:
    path = write(tmp_path, "[DEFAULT]\ncolour = blue\n" + GOOD)
    assert settings(path).connection.database == "enqueue"


def test_password_is_not_in_repr(tmp_path) -> None:
    s = settings(write(tmp_path, GOOD))
    assert SECRET not in repr(s) and SECRET not in s.connection.describe()


def test_password_registered_for_redaction(tmp_path) -> None:
    settings(write(tmp_path, GOOD))
    assert logs.redact(f"x {SECRET} y") == "x *** y"


# --------------------------------------------------------------------------- warnings


def test_warns_when_file_with_password_is_readable_by_others(tmp_path, caplog) -> None:
    path = write(tmp_path, GOOD, mode=0o644)
    with caplog.at_level(logging.WARNING, logger="enqueue.config"):
        settings(path)
    assert "can be read by group or others" in caplog.text
    assert SECRET not in caplog.text


def test_no_warning_for_private_file(tmp_path, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="enqueue.config"):
        settings(write(tmp_path, GOOD, mode=0o600))
    assert "read by group" not in caplog.text


def test_no_warning_for_readable_file_without_password(tmp_path, caplog) -> None:
    path = write(tmp_path, "[couchdb]\nurl = http://127.0.0.1:5984\ndatabase = enqueue\n", mode=0o644)
    with caplog.at_level(logging.WARNING, logger="enqueue.config"):
        settings(path)
    assert "read by group" not in caplog.text


def test_warns_about_password_over_plain_http_to_remote_host(tmp_path, caplog) -> None:
    path = write(tmp_path, GOOD.replace("127.0.0.1", "db.example"))
    with caplog.at_level(logging.WARNING, logger="enqueue.config"):
        settings(path)
    assert "plain http" in caplog.text


# --------------------------------------------------------------------------- errors

COUCH = "[couchdb]\nurl = http://127.0.0.1:5984\ndatabase = enqueue\n"

# (id, file text or None for "no file", environment, expected text in the message)
BAD_FILES = [
    ("unknown couchdb key", COUCH + "colour = blue\n", {}, "[couchdb] colour: unknown key; known keys: url,"),
    ("unknown enqueue key", COUCH + "[enqueue]\nheartbeat = 5\n", {}, "[enqueue] heartbeat: unknown key"),
    ("missing url", "[couchdb]\ndatabase = enqueue\n", {}, "[couchdb] url: missing"),
    ("empty url", "[couchdb]\nurl =\ndatabase = enqueue\n", {}, "[couchdb] url: missing"),
    ("missing database", "[couchdb]\nurl = http://127.0.0.1:5984\n", {}, "[couchdb] database: missing"),
    ("no couchdb section", "[enqueue]\nrepeat = true\n", {}, "[couchdb] url: missing"),
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
    ("stale too short", COUCH + "[enqueue]\nheartbeat_delay = 10\nheartbeat_stale = 20\n", {},
     "heartbeat_stale (20 min) must be more than 2 x heartbeat_delay (2 x 10 min)"),
    ("grace too long", COUCH + "[enqueue]\nheartbeat_delay = 10\nheartbeat_stale = 25\nkill_grace = 3\n", {},
     "kill_grace (3 min) must be at most (heartbeat_stale - 2 x heartbeat_delay) / 2 (2 min 30 s)"),
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


def test_password_never_in_syntax_error(tmp_path) -> None:
    path = write(tmp_path, COUCH + f"password {SECRET}\n")
    with pytest.raises(ConfigError) as info:
        settings(path)
    assert SECRET not in str(info.value)


def test_password_never_in_unknown_key_error(tmp_path) -> None:
    path = write(tmp_path, COUCH + f"passwd = {SECRET}\n")
    with pytest.raises(ConfigError) as info:
        settings(path)
    assert SECRET not in str(info.value) and "passwd" in str(info.value)


def test_password_never_in_url_error(tmp_path) -> None:
    path = write(tmp_path, COUCH.replace("http://127.0.0.1:5984", f"http://bob:{SECRET}@127.0.0.1:59x4"))
    with pytest.raises(ConfigError) as info:
        settings(path)
    assert SECRET not in str(info.value)


def test_missing_file(tmp_path) -> None:
    path = str(tmp_path / "nothere.ini")
    with pytest.raises(ConfigError, match="nothere.ini: no such configuration file"):
        settings(path)


def test_directory_is_not_a_file(tmp_path) -> None:
    with pytest.raises(ConfigError, match="is a directory"):
        settings(str(tmp_path))


def deny_reading(path: str, monkeypatch) -> None:
    """Make ``path`` unreadable: by its mode, and, for root (who reads everything), by refusing to open it."""
    os.chmod(path, 0o000)
    if os.geteuid() != 0:
        return
    real_open = builtins.open

    def refusing_open(file, *args, **kwargs):
        if os.path.abspath(str(file)) == os.path.abspath(path):
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", refusing_open)


def test_unreadable_file(tmp_path, monkeypatch) -> None:
    path = write(tmp_path, GOOD)
    deny_reading(path, monkeypatch)
    with pytest.raises(ConfigError, match="cannot read the configuration file"):
        settings(path)


def test_unreadable_password_file(tmp_path, monkeypatch) -> None:
    secret_file = tmp_path / "pw"
    secret_file.write_text("x")
    deny_reading(str(secret_file), monkeypatch)
    path = write(tmp_path, COUCH + "username = bob\npassword_file = pw\n")
    with pytest.raises(ConfigError, match=r"\[couchdb\] password_file: password file .* not readable"):
        settings(path)


def test_empty_password_file(tmp_path) -> None:
    (tmp_path / "pw").write_text("\n")
    path = write(tmp_path, COUCH + "username = bob\npassword_file = pw\n")
    with pytest.raises(ConfigError, match="is empty"):
        settings(path)


def test_not_utf8(tmp_path) -> None:
    path = tmp_path / "bad.ini"
    path.write_bytes(b"[couchdb]\nurl = \xff\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        settings(str(path))


@pytest.mark.parametrize("site", ["", "-alpha", "_alpha", ".a", "al pha", "al/pha", "é", "x" * 65])
def test_bad_site_names(tmp_path, site: str) -> None:
    with pytest.raises(ConfigError, match="SITENAME .* is invalid"):
        settings(write(tmp_path, GOOD), site=site)


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


# --------------------------------------------------------------------------- Timing on its own


@pytest.mark.parametrize(
    "kwargs, expected",
    [
        ({"heartbeat_delay_s": 0}, "heartbeat_delay must be more than 0"),
        ({"conflict_delay_s": -1}, "conflict_delay must be more than 0"),
        ({"kill_grace_s": -1}, "kill_grace must be more than 0 or 0"),
        ({"heartbeat_stale_s": float("inf")}, "heartbeat_stale must be a finite number"),
        ({"heartbeat_stale_s": 1200}, "heartbeat_stale (20 min) must be more than 2 x heartbeat_delay"),
        ({"heartbeat_stale_s": 1230, "kill_grace_s": 31}, "kill_grace (31 s) must be at most"),
    ],
)
def test_timing_rules(kwargs: dict, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        Timing(**kwargs)
    assert expected in str(info.value)
    assert "\n" not in str(info.value)


def test_timing_edge_cases_allowed() -> None:
    timing = Timing(heartbeat_delay_s=10, heartbeat_stale_s=20.001, kill_grace_s=0)
    assert (timing.heartbeat_stale_s, timing.kill_grace_s) == (20.001, 0)
    assert Timing(heartbeat_delay_s=10, heartbeat_stale_s=50, kill_grace_s=15).kill_grace_s == 15
