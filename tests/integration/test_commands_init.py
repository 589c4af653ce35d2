"""``enqueue init`` against the real server: creates what is missing, touches nothing that exists."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import pytest

from enqueue import documents as docs
from enqueue.couchdb_store import CouchStore
from enqueue.devserver import DevServer
from enqueue import steering
from enqueue.errors import EXIT_AUTH, EXIT_CLUSTER_REFUSED
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
    assert lines[0].startswith(f"{store.describe()}: created; ")
    if fresh_kind(store) == "embedded":
        assert lines[0].endswith("; one node (the server reports no shards: not a CouchDB cluster)")
    else:
        assert lines[0].endswith(" (n=1, q=1)") and "; held by node " in lines[0]
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
    assert lines[0].startswith(f"{store.describe()}: already existed; ")
    assert lines[1:3] == ["leader doc enqueue_leader: already existed", "sites doc enqueue_sites: already existed"]
    assert store.current_seq() == seq  # idempotent: the second run wrote nothing


def fresh_kind(store) -> str:
    return "embedded" if store.shards() is None else "cluster"


class ClusteredView:
    """The real test database, reported as a cluster database with three copies in two shards."""

    NODES = ["couchdb@node1", "couchdb@node2", "couchdb@node3"]

    def __init__(self, store) -> None:
        self._store = store

    def check(self) -> dict:
        return {**self._store.check(), "cluster": {"n": 3, "q": 2, "w": 2, "r": 2}}

    def shards(self) -> dict:
        return {"00000000-7fffffff": list(self.NODES), "80000000-ffffffff": list(self.NODES)}

    def close(self) -> None:
        """The test's own store outlives the command."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass

    def __getattr__(self, name):
        return getattr(self._store, name)


def test_init_refuses_a_database_with_several_copies_and_writes_nothing(enqueue_cli, database, monkeypatch):
    monkeypatch.setattr(steering, "open_store", lambda settings: ClusteredView(database.store))
    seq = database.store.current_seq()
    result = enqueue_cli("init")
    assert result.code == EXIT_CLUSTER_REFUSED and result.err.count("\n") == 1
    assert "keeps 3 copies of each document (3 copies over nodes couchdb@node1, couchdb@node2, couchdb@node3 " \
           "(n=3, q=2))" in result.err
    assert f"PUT /{database.name}?n=1&q=1" in result.err and "--allow-cluster" in result.err
    assert database.store.current_seq() == seq and database.store.get("enqueue_leader") is None

    told = enqueue_cli("init", "--allow-cluster")
    assert told.code == 0, told.err
    assert "leader doc enqueue_leader: created" in told.out
    assert f"warning: {database.store.describe()} keeps 3 copies" in told.out and "?n=1&q=1" in told.out


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
    text = enqueue_cli.help_text("init")
    for expected in ("usage: enqueue init", "CONFIG", "idempotent", "server admin's credentials", "--leader-doc",
                     "--allow-cluster", "n=1&q=1", "6 the database keeps several copies",
                     "--sites-doc", "--log-level", "4 credentials refused"):
        assert expected in text, expected
