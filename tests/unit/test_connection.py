"""The connection settings: [couchdb], ENQUEUE_COUCHDB_* overrides, passwords, and where each came from."""

from __future__ import annotations

import logging
import os

import pytest

from enqueue import logs
from enqueue.connection import Connection, load_connection
from enqueue.errors import ConfigError
from tests.support.config_files import COUCH, GOOD, SECRET, deny_reading, settings, write
from tests.support.log_state import restore_logging  # noqa: F401  (fixture)

pytestmark = pytest.mark.usefixtures("restore_logging")


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


def test_password_is_not_in_repr(tmp_path) -> None:
    s = settings(write(tmp_path, GOOD))
    assert SECRET not in repr(s) and SECRET not in s.connection.describe()


def test_password_registered_for_redaction(tmp_path) -> None:
    settings(write(tmp_path, GOOD))
    assert logs.redact(f"x {SECRET} y") == "x *** y"


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


def test_password_never_in_url_error(tmp_path) -> None:
    path = write(tmp_path, COUCH.replace("http://127.0.0.1:5984", f"http://bob:{SECRET}@127.0.0.1:59x4"))
    with pytest.raises(ConfigError) as info:
        settings(path)
    assert SECRET not in str(info.value)


def test_password_never_in_url_error_when_the_at_sign_is_missing(tmp_path) -> None:
    # Without the '@' urllib reads the password as the port and quotes it in its own message.
    path = write(tmp_path, COUCH.replace("http://127.0.0.1:5984", f"http://bob:{SECRET}/127.0.0.1"))
    with pytest.raises(ConfigError, match=r"\[couchdb\] url: not a valid URL") as info:
        settings(path)
    assert SECRET not in str(info.value)


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


@pytest.mark.parametrize("kind", ["fifo", "directory"])
def test_a_password_file_that_is_a_fifo_or_a_directory_is_refused_at_once(tmp_path, kind) -> None:
    target = tmp_path / "alpha.password"
    if kind == "fifo":
        os.mkfifo(target)  # opening it to read would block until somebody writes
    else:
        target.mkdir()
    path = write(tmp_path, COUCH + f"username = alpha\npassword_file = {target}\n")
    with pytest.raises(ConfigError) as info:
        settings(path)
    shown = "a FIFO" if kind == "fifo" else "a directory"
    assert str(info.value) == (f"{path}: [couchdb] password_file: password file {target} is {shown}, "
                               "not a file holding the password")


def test_the_connection_says_where_each_setting_came_from(tmp_path) -> None:
    password_file = tmp_path / "alpha.password"
    password_file.write_text(SECRET + "\n")
    password_file.chmod(0o600)
    path = write(tmp_path, COUCH + f"username = alpha\npassword_file = {password_file.name}\n")
    conn = settings(path, environ={"ENQUEUE_COUCHDB_DATABASE": "other"}).connection
    assert conn.sources == {
        "url": f"{path}: [couchdb] url",
        "database": "environment variable ENQUEUE_COUCHDB_DATABASE",
        "username": f"{path}: [couchdb] username",
        "password": f"password file {password_file} ({path}: [couchdb] password_file)",
    }
