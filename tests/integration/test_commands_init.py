"""``enqueue init`` against the real server: creates what is missing, touches nothing that exists."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import pytest

from enqueue import documents as docs
from enqueue.couchdb_store import CouchStore
from enqueue.devserver import DevServer
from enqueue.errors import EXIT_AUTH
from tests.support.commands import Cli, enqueue_cli, put_leader  # noqa: F401  (fixture)
from tests.support.servers import DATABASE_PREFIX


def _config(directory: Path, url: str, database: str, username: str = None, password: str = None) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    lines = ["[couchdb]", f"url = {url}", f"database = {database}"]
    if username is not None:
        secret = directory / "password"
        fd = os.open(secret, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(password + "\n")
        lines += [f"username = {username}", f"password_file = {secret}"]
    path = directory / "enqueue.ini"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def fresh(couch_server, tmp_path, capsys, enqueue_cli):
    """A configuration naming a database that does not exist yet; dropped afterwards."""
    name = DATABASE_PREFIX + secrets.token_hex(6)
    config = _config(tmp_path / "fresh", couch_server.url, name, couch_server.username, couch_server.password)
    store = couch_server.store(name)
    yield Cli(capsys, config), store
    store.delete_database()
    store.close()


def test_init_creates_the_database_and_documents_then_says_they_existed(fresh):
    cli, store = fresh
    first = cli("init")
    assert first.code == 0, first.err
    lines = first.out.splitlines()
    assert lines[0] == f"{store.describe()}: created"
    assert lines[1:3] == ["leader doc enqueue_leader: created", "sites doc enqueue_sites: created"]
    leader, problems = docs.parse_leader(store.get("enqueue_leader"), "enqueue_leader")
    assert leader is not None and not problems and leader.turn == 0 and leader.leader is None
    assert leader.updated_by.startswith("admin:")
    sites, _ = docs.parse_sites(store.get("enqueue_sites"), "enqueue_sites")
    assert sites is not None and sites.sites == {}

    seq = store.current_seq()
    again = cli("init")
    assert again.code == 0, again.err
    lines = again.out.splitlines()
    assert lines[0] == f"{store.describe()}: already existed"
    assert lines[1:3] == ["leader doc enqueue_leader: already existed", "sites doc enqueue_sites: already existed"]
    assert store.current_seq() == seq  # idempotent: the second run wrote nothing


def test_init_never_touches_an_existing_production_state(enqueue_cli, database):
    put_leader(database.store, leader="alpha", leader_term=3, turn=41, running="bravo", status=docs.RUNNING)
    result = enqueue_cli("init")
    assert result.code == 0, result.err
    assert "leader doc enqueue_leader: already existed" in result.out
    assert "sites doc enqueue_sites: created" in result.out
    leader, _ = docs.parse_leader(database.store.get("enqueue_leader"), "enqueue_leader")
    assert (leader.turn, leader.running, leader.status) == (41, "bravo", docs.RUNNING)


def test_init_says_when_an_existing_document_does_not_parse(enqueue_cli, database):
    database.store.put({"_id": "enqueue_leader", "turn": "seven"})
    result = enqueue_cli("init")
    assert result.code == 0
    assert "leader doc enqueue_leader: already existed (but it does not parse:" in result.out


def test_init_installs_the_access_rules(fresh):
    cli, store = fresh
    result = cli("init")
    assert result.code == 0, result.err
    rules = result.out.splitlines()[3:]
    assert any("design document _design/enqueue" in line for line in rules), rules
    assert store.get("_design/enqueue") is not None


def test_init_without_admin_rights_is_one_line_and_exit_4(tmp_path, capsys, enqueue_cli):
    admin_password = secrets.token_urlsafe(12)
    with DevServer(admin_user="admin", admin_password=admin_password) as server:
        users = CouchStore(server.url, "_users", username="admin", password=admin_password)
        try:
            users.put({"_id": "org.couchdb.user:operator", "name": "operator", "password": "operator-pw",
                       "roles": [], "type": "user"})
        finally:
            users.close()
        config = _config(tmp_path / "operator", server.url, "enqueue_prod", "operator", "operator-pw")
        result = Cli(capsys, config)("init")
    assert result.code == EXIT_AUTH
    assert result.out == ""
    assert result.err.count("\n") == 1 and result.err.startswith("enqueue: cannot create database 'enqueue_prod'")
    assert "not a server admin's" in result.err and "operator-pw" not in result.err


def test_init_help_is_accurate(enqueue_cli):
    result = enqueue_cli.bare("init", "--help")
    assert result.code == 0
    text = " ".join(result.out.split())
    for expected in ("usage: enqueue init", "CONFIG", "idempotent", "server admin's credentials", "--leader-doc",
                     "--sites-doc", "--log-level", "4 credentials refused"):
        assert expected in text, expected
