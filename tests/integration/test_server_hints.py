"""The one line a failing command prints says which setting to check and where it is set -- real server."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from enqueue import errors, hints
from tests.support.commands import Cli
from tests.support.log_state import logging_restored


@pytest.fixture(autouse=True)
def _restore_logging_and_forget_the_connection():
    with logging_restored():
        yield
    hints.forget()


def write_config(directory: Path, url: str, database: str, *extra: str, server=None) -> Path:
    """A configuration for ``database``; with ``server``, its admin credentials (unless ``extra`` sets some)."""
    directory.mkdir(parents=True, exist_ok=True)
    lines = ["[couchdb]", f"url = {url}", f"database = {database}", *extra]
    if server is not None and server.username is not None and not any(x.startswith("username") for x in extra):
        secret = directory / "admin.password"
        secret.write_text(f"{server.password}\n")
        secret.chmod(0o600)
        lines += [f"username = {server.username}", f"password_file = {secret}"]
    path = directory / "enqueue.ini"
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)
    return path


def test_a_wrong_database_name_asks_to_check_database_in_the_file(couch_server, tmp_path, capsys):
    config = write_config(tmp_path, couch_server.url, "enqeue_typo", server=couch_server)
    result = Cli(capsys, config)("status")
    assert result.code == errors.EXIT_DATABASE_MISSING and result.err.count("\n") == 1
    assert result.err == (f"enqueue: database 'enqeue_typo' at {couch_server.url}: the database does not exist; "
                          f"check the database name 'enqeue_typo': database = in {config}; or create it with "
                          "'enqueue init' (an admin's configuration)\n")


def test_a_database_name_from_the_environment_names_its_variable(couch_server, database, tmp_path, capsys,
                                                                 monkeypatch):
    config = write_config(tmp_path, couch_server.url, database.name, server=couch_server)
    monkeypatch.setenv("ENQUEUE_COUCHDB_DATABASE", "from_the_environment")
    result = Cli(capsys, config)("history")
    assert result.code == errors.EXIT_DATABASE_MISSING
    assert ("check the database name 'from_the_environment': environment variable ENQUEUE_COUCHDB_DATABASE, "
            "which overrides the file") in result.err


def test_a_database_name_inside_the_url_is_recognised_and_explained(couch_server, database, tmp_path, capsys):
    config = write_config(tmp_path, f"{couch_server.url}/{database.name}", database.name, server=couch_server)
    result = Cli(capsys, config)("status")
    assert result.code == errors.EXIT_DATABASE_MISSING and result.err.count("\n") == 1
    assert (f"the url ends in /{database.name}, which CouchDB reads as part of every database's address: if "
            f"/{database.name} is the database, remove it from the url") in result.err


def test_an_unreachable_url_from_the_environment_names_its_variable(database, tmp_path, capsys, monkeypatch):
    config = write_config(tmp_path, database.server.url, database.name, server=database.server)
    monkeypatch.setenv("ENQUEUE_COUCHDB_URL", "http://127.0.0.1:9")  # the discard port: nothing listens
    result = Cli(capsys, config)("status")
    assert result.code == errors.EXIT_UNREACHABLE and result.err.count("\n") == 1
    assert result.err.rstrip().endswith(
        "the url comes from environment variable ENQUEUE_COUCHDB_URL, which overrides the file")


def test_a_wrong_password_names_the_user_and_the_password_file(couch_server, database, tmp_path, capsys):
    secret = tmp_path / "alpha.password"
    secret.write_text("certainly-not-the-password\n")
    secret.chmod(0o600)
    # A fresh name each run: CouchDB locks a user out after a few refused logins.
    user = "nobody-" + secrets.token_hex(4)
    config = write_config(tmp_path, couch_server.url, database.name, f"username = {user}",
                          f"password_file = {secret.name}")
    result = Cli(capsys, config)("status")
    assert result.code == errors.EXIT_AUTH and result.err.count("\n") == 1, result.err
    assert result.err.rstrip().endswith(
        f"check the password of user '{user}': password file {secret} ({config}: [couchdb] password_file)")
    assert "certainly-not-the-password" not in result.err


def test_log_format_json_applies_to_the_final_error_line(couch_server, tmp_path):
    config = write_config(tmp_path, couch_server.url, "enqeue_typo", server=couch_server)
    done = subprocess.run([sys.executable, "-m", "enqueue", "status", str(config), "--log-format", "json"],
                          capture_output=True, text=True, timeout=60, env={**os.environ})
    assert done.returncode == errors.EXIT_DATABASE_MISSING
    last = json.loads(done.stderr.splitlines()[-1])
    assert last["level"] == "ERROR" and last["exit_code"] == errors.EXIT_DATABASE_MISSING
    assert last["message"].startswith("database 'enqeue_typo'") and "database = in" in last["message"]
    assert set(last) == {"time", "site", "level", "logger", "message", "exit_code"}


def test_a_password_file_that_is_a_fifo_does_not_hang_status(couch_server, database, tmp_path):
    fifo = tmp_path / "alpha.password"
    os.mkfifo(fifo)
    config = write_config(tmp_path, couch_server.url, database.name, "username = alpha", f"password_file = {fifo}")
    done = subprocess.run([sys.executable, "-m", "enqueue", "status", str(config)], capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode == errors.EXIT_USAGE
    assert done.stderr.splitlines()[-1] == (f"enqueue: {config}: [couchdb] password_file: password file {fifo} is "
                                            "a FIFO, not a file holding the password")


def test_a_configuration_with_a_byte_order_mark_works(couch_server, database, tmp_path, capsys):
    config = write_config(tmp_path, couch_server.url, database.name, server=couch_server)
    config.write_bytes(b"\xef\xbb\xbf" + config.read_bytes())
    result = Cli(capsys, config)("history")
    assert (result.code, result.out) == (0, "no turn records\n"), result.err
