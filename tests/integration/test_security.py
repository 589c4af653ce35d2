"""Per-site accounts on a real server: what a site may not write is refused, and a rotation still runs.

The server needs an admin account (the session's server when it has one,
else an embedded one started here with an admin). Every request to it
carries credentials: pouchdb-server crashes when a client without any asks
to create a database once an admin exists.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterator, Optional

import pytest

from enqueue import documents as docs
from enqueue import cli, errors, failures, logs, records, repair, security
from enqueue.admin_rebuild import AdminRebuild
from enqueue.commands import users
from enqueue.connection import Connection
from enqueue.couchdb_store import CouchStore
from enqueue.devserver import DevServer
from enqueue.outcomes import Outcome
from tests.support import servers
from tests.support.agents import Sites, wait_until
from tests.support.canned_http import canned_server
from tests.support.log_state import restore_logging  # noqa: F401  (fixture)

SITES = ("alpha", "bravo", "charlie")
LEADER_ID = "enqueue_leader"
SITES_ID = "enqueue_sites"
NOW = "2026-01-01 00:00:00"


@pytest.fixture(scope="module")
def admin_server(couch_server: servers.CouchServer) -> Iterator[servers.CouchServer]:
    """A server with an admin account: the session's if it has one, else an embedded one."""
    if couch_server.username is not None:
        yield couch_server
        return
    dev = DevServer(admin_user="admin", admin_password=secrets.token_urlsafe(12))
    dev.start()
    try:
        yield servers.CouchServer(dev.url, dev.admin_user, dev.admin_password, "embedded", devserver=dev)
    finally:
        dev.stop()


@dataclass
class Secured:
    """A database with the rules installed and one account per site."""

    server: servers.CouchServer
    name: str
    admin: CouchStore
    passwords: dict[str, str]
    password_files: dict[str, Path]
    stores: dict[str, CouchStore]

    def site(self, name: str) -> CouchStore:
        return self.stores[name]

    def config(self, directory: Path, site: str, password_file: Optional[Path] = None) -> Path:
        """An enqueue config for ``site``'s account (its password in a 0600 file)."""
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{site}.ini"
        path.write_text(
            "[couchdb]\n"
            f"url = {self.server.url}\n"
            f"database = {self.name}\n"
            f"username = {site}\n"
            f"password_file = {password_file or self.password_files[site]}\n"
        )
        path.chmod(0o600)
        return path

    def admin_config(self, directory: Path, heartbeat_stale: Optional[str] = None) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        password_file = directory / "admin.password"
        users.write_private(str(password_file), self.server.password or "", overwrite=True)
        path = directory / "admin.ini"
        timing = "" if heartbeat_stale is None else f"[enqueue]\nheartbeat_stale = {heartbeat_stale}\n"
        path.write_text(
            f"[couchdb]\nurl = {self.server.url}\ndatabase = {self.name}\n"
            f"username = {self.server.username}\npassword_file = {password_file}\n{timing}"
        )
        path.chmod(0o600)
        return path


def _connection(server: servers.CouchServer, database: str) -> Connection:
    return Connection(server.url, database, username=server.username, password=server.password)


def _drop_account(server: servers.CouchServer, name: str) -> None:
    try:
        users.remove(_connection(server, "_users"), name)
    except users.UsersError:
        pass


def _secure_database(server: servers.CouchServer, directory: Path, accounts=SITES) -> Secured:
    name = servers.DATABASE_PREFIX + secrets.token_hex(6)
    admin = server.store(name)
    assert admin.create_database()
    lines = security.install(admin)
    assert lines[0].startswith("installed design document"), lines
    passwords, files, stores = {}, {}, {}
    directory.mkdir(parents=True, exist_ok=True)
    for site in accounts:
        path = directory / f"{site}.password"
        users.add(_connection(server, name), site, password_file=str(path), show_password=False,
                  replace=True, role=None)
        files[site] = path
        passwords[site] = path.read_text().strip()
        stores[site] = CouchStore(server.url, name, username=site, password=passwords[site])
    return Secured(server, name, admin, passwords, files, stores)


def _teardown(secured: Secured, accounts=SITES) -> None:
    for store in secured.stores.values():
        store.close()
    for site in accounts:
        _drop_account(secured.server, site)
    secured.admin.delete_database()
    secured.admin.close()


# ---------------------------------------------------------------------------- the scene for refusals


def _leader(**fields) -> dict:
    base = dict(doc_id=LEADER_ID, leader="alpha", leader_term=3, running="bravo", status=docs.RUNNING, turn=7,
                rotation=SITES, updated_by="alpha", updated_at=NOW)
    base.update(fields)
    return docs.render_leader(docs.LeaderDoc(**base))


def _scene() -> dict[str, dict]:
    """The documents every refusal test starts from: alpha leads, bravo runs turn 7."""
    scene = {
        LEADER_ID: _leader(),
        SITES_ID: {"_id": SITES_ID, "type": "enqueue_sites", "schema": 1,
                   "sites": {s: {"heartbeat_doc": docs.heartbeat_id(s), "drained": False} for s in SITES}},
        docs.turn_record_id(6): docs.render_turn_record(docs.TurnRecord(turn=6, site="alpha", how="exited", exit_code=0)),
    }
    for s in SITES:
        scene[docs.heartbeat_id(s)] = docs.render_heartbeat(docs.Heartbeat(site=s, state=docs.WAITING, beat=1))
    return scene


@pytest.fixture(scope="module")
def scene(admin_server, tmp_path_factory) -> Iterator[Secured]:
    directory = tmp_path_factory.mktemp("accounts")
    secured = _secure_database(admin_server, directory)
    # An account with the admin role (no server admin), to show that admins may do what sites may not.
    _drop_account(admin_server, "ops")
    ops_file = directory / "ops.password"
    users.add(_connection(admin_server, secured.name), "ops", password_file=str(ops_file), show_password=False,
              replace=True, role=security.DEFAULT_ADMIN_ROLE)
    secured.password_files["ops"] = ops_file
    secured.passwords["ops"] = ops_file.read_text().strip()
    for body in _scene().values():
        secured.admin.put(dict(body))
    yield secured
    _teardown(secured, SITES + ("ops",))


def _snapshot(secured: Secured) -> dict[str, Optional[dict]]:
    ids = list(_scene()) + ["notes", security.DESIGN_DOC_ID]
    found = {i: secured.admin.get(i) for i in ids}
    found["_security"] = secured.admin.get_security()
    return found


def _restore(secured: Secured, before: dict[str, Optional[dict]]) -> None:
    """Put the scene back after a write that should have been refused (so later tests start clean)."""
    for doc_id, body in before.items():
        if doc_id in ("_security", security.DESIGN_DOC_ID):
            continue
        current = secured.admin.get(doc_id)
        if current == body:
            continue
        if body is None:
            secured.admin.delete(current)
        else:
            secured.admin.put(dict(body, _rev=current["_rev"]) if current else {k: v for k, v in body.items() if k != "_rev"})
    secured.admin.put_security(before["_security"])


def _changed(doc: dict, **fields) -> dict:
    out = dict(doc)
    out.update(fields)
    return out


def _with_site(doc: dict, name: str, entry) -> dict:
    sites = dict(doc["sites"])
    if entry is None:
        sites.pop(name, None)
    else:
        sites[name] = entry
    return dict(doc, sites=sites)


def _self_drained(site: str) -> dict:
    """``site``'s entry in the scene as its agent drains it after three failed turns (enqueue.failures)."""
    return failures.self_drained_entry({"heartbeat_doc": docs.heartbeat_id(site), "drained": False}, site,
                                       failures.FailureRun(3, 1, 6), NOW)


# (who, what they try, document id or None for a special action, new body from the current one)
Attempt = Callable[[Optional[dict]], dict]
REFUSALS: list[tuple[str, str, str, Attempt]] = [
    ("alpha", "write another site's heartbeat", docs.heartbeat_id("bravo"),
     lambda d: _changed(d, state="left", beat=99)),
    ("alpha", "write its heartbeat in another site's name", docs.heartbeat_id("alpha"),
     lambda d: _changed(d, site="bravo")),
    ("alpha", "write a document the protocol does not know", "notes", lambda d: {"_id": "notes", "x": 1}),
    ("alpha", "add another site to the registry", SITES_ID,
     lambda d: _with_site(d, "delta", {"heartbeat_doc": docs.heartbeat_id("delta")})),
    ("alpha", "drain another site", SITES_ID,
     lambda d: _with_site(d, "bravo", {"heartbeat_doc": docs.heartbeat_id("bravo"), "drained": True})),
    ("alpha", "drain itself without saying why", SITES_ID,
     lambda d: _with_site(d, "alpha", {"heartbeat_doc": docs.heartbeat_id("alpha"), "drained": True})),
    ("alpha", "drain itself in another's name", SITES_ID,
     lambda d: _with_site(d, "alpha", dict(_self_drained("alpha"), drained_by="admin:ops@host"))),
    ("alpha", "drain itself and change its entry otherwise", SITES_ID,
     lambda d: _with_site(d, "alpha", dict(_self_drained("alpha"), heartbeat_doc=docs.heartbeat_id("bravo")))),
    ("alpha", "drain another site the way a site drains itself", SITES_ID,
     lambda d: _with_site(d, "bravo", failures.self_drained_entry(d["sites"]["bravo"], "alpha",
                                                                  failures.FailureRun(3, 1, 6), NOW))),
    ("alpha", "remove another site from the registry", SITES_ID, lambda d: _with_site(d, "bravo", None)),
    ("charlie", "make another site leader", LEADER_ID,
     lambda d: _changed(d, leader="bravo", leader_term=4, updated_by="charlie")),
    ("charlie", "claim leadership without a new term", LEADER_ID,
     lambda d: _changed(d, leader="charlie", updated_by="charlie")),
    ("bravo", "step down a leader it is not", LEADER_ID, lambda d: _changed(d, leader=None, updated_by="bravo")),
    ("charlie", "grant a turn while not leader", LEADER_ID,
     lambda d: _changed(d, status="granted", running="charlie", turn=8, updated_by="charlie")),
    ("alpha", "pause (as leader)", LEADER_ID, lambda d: _changed(d, paused=True, paused_reason="mine")),
    ("charlie", "skip the running turn", LEADER_ID, lambda d: _changed(d, skip_turn=7, updated_by="charlie")),
    ("charlie", "mark another site's turn done", LEADER_ID,
     lambda d: _changed(d, status="done", last_how="exited", updated_by="charlie")),
    ("charlie", "take over another site's running turn", LEADER_ID,
     lambda d: _changed(d, running="charlie", updated_by="charlie")),
    ("bravo", "pass its turn to a site that is not its successor", LEADER_ID,
     lambda d: _changed(d, status="granted", running="alpha", turn=8, updated_by="bravo")),
    ("bravo", "keep the turn for itself when others wait", LEADER_ID,
     lambda d: _changed(d, status="granted", turn=8, updated_by="bravo")),
    ("bravo", "write a turn record for another site", docs.turn_record_id(8),
     lambda d: docs.render_turn_record(docs.TurnRecord(turn=8, site="charlie", how="exited"))),
    ("alpha", "rewrite a finished turn's record", docs.turn_record_id(6), lambda d: _changed(d, exit_code=1)),
    ("alpha", "record another site's future turn as a success", docs.turn_record_id(42),
     lambda d: docs.render_turn_record(docs.TurnRecord(turn=42, site="bravo", how="exited", exit_code=0,
                                                       leader="alpha"))),
    ("alpha", "record a turn beyond the id width", "enqueue_turn:10000000000",
     lambda d: dict(docs.render_turn_record(docs.TurnRecord(turn=1, site="alpha", how="exited")),
                    _id="enqueue_turn:10000000000", turn=10_000_000_000)),
    ("bravo", "delete the leader doc", LEADER_ID, lambda d: dict(d, _deleted=True)),
    ("alpha", "delete its own heartbeat", docs.heartbeat_id("alpha"), lambda d: dict(d, _deleted=True)),
    ("bravo", "delete a turn record", docs.turn_record_id(6), lambda d: dict(d, _deleted=True)),
]


@pytest.mark.parametrize("who, what, doc_id, attempt", REFUSALS, ids=[r[1] for r in REFUSALS])
def test_a_site_is_refused_and_nothing_changes(scene: Secured, who, what, doc_id, attempt) -> None:
    before = _snapshot(scene)
    current = scene.admin.get(doc_id)
    body = attempt(dict(current) if current is not None else None)
    store = scene.site(who)
    try:
        with pytest.raises(errors.Forbidden) as refused:
            if body.get("_deleted"):
                store.delete(body)
            else:
                store.put(body)
        assert "enqueue:" in str(refused.value)
        assert scene.passwords[who] not in str(refused.value)
    finally:
        after = _snapshot(scene)
        if after != before:
            _restore(scene, before)
    assert after == before


def test_a_site_cannot_change_the_rules_or_who_may_use_the_database(scene: Secured) -> None:
    before = _snapshot(scene)
    alpha = scene.site("alpha")
    design = scene.admin.get(security.DESIGN_DOC_ID)
    with pytest.raises((errors.Forbidden, errors.AuthFailed)):
        alpha.put(_changed(design, validate_doc_update="function (newDoc) {}"))
    # CouchDB 3 answers this one with 500 no_majority (every shard refused it), pouchdb-server with 401.
    with pytest.raises((errors.Forbidden, errors.AuthFailed)):
        alpha.put_security({})
    assert _snapshot(scene) == before


def test_a_security_write_answered_no_majority_is_reported_as_refused() -> None:
    """CouchDB 3.4.3 answers a member's PUT /db/_security with 500 no_majority."""
    with canned_server("PUT", 500, b'{"error":"error","reason":"no_majority"}') as server:
        store = CouchStore(server.url, "db", request_timeout_s=5)
        try:
            with pytest.raises(errors.Forbidden, match="only an admin"):
                store.put_security({})
            # Elsewhere no_majority is what it says: the cluster could not answer.
            with pytest.raises(errors.StoreError) as failed:
                store.put({"_id": "x"})
            assert not isinstance(failed.value, errors.Forbidden)
        finally:
            store.close()


def test_an_account_without_the_site_role_can_neither_read_nor_write(scene: Secured, tmp_path) -> None:
    _drop_account(scene.server, "mallory")
    users.add(_connection(scene.server, scene.name), "mallory", password_file=str(tmp_path / "m"),
              show_password=False, replace=True, role="visitor")
    mallory = CouchStore(scene.server.url, scene.name, username="mallory", password=(tmp_path / "m").read_text().strip())
    try:
        with pytest.raises((errors.Forbidden, errors.AuthFailed)):
            mallory.get(LEADER_ID)
        with pytest.raises((errors.Forbidden, errors.AuthFailed)):
            mallory.put({"_id": docs.heartbeat_id("mallory"), "site": "mallory"})
    finally:
        mallory.close()
        _drop_account(scene.server, "mallory")


def test_the_writes_a_site_makes_are_allowed_and_admins_may_do_the_rest(scene: Secured) -> None:
    before = _snapshot(scene)
    try:
        alpha = scene.site("alpha")
        beat = dict(scene.admin.get(docs.heartbeat_id("alpha")), beat=2)
        alpha.put(beat)
        # Bravo finishes turn 7 and passes turn 8 to charlie in the same write; charlie confirms it.
        leader = scene.admin.get(LEADER_ID)
        scene.site("bravo").put(_changed(leader, status="granted", running="charlie", turn=8, updated_by="bravo",
                                         last_exit_code=0, last_how="exited"))
        leader = scene.admin.get(LEADER_ID)
        scene.site("charlie").put(_changed(leader, status="running", updated_by="charlie"))
        # An account with the admin role (no server admin) may pause; a server admin may delete.
        ops = CouchStore(scene.server.url, scene.name, username="ops", password=scene.passwords["ops"])
        try:
            ops.put(_changed(scene.admin.get(LEADER_ID), paused=True, paused_reason="maintenance"))
        finally:
            ops.close()
        scene.admin.delete(scene.admin.get(docs.turn_record_id(6)))
        assert scene.admin.get(LEADER_ID)["paused"] is True
    finally:
        _restore(scene, before)


def test_a_site_may_say_it_is_between_turns_or_not_ready(scene: Secured) -> None:
    before = _snapshot(scene)
    try:
        alpha = scene.site("alpha")
        for beat, state, extra in ((2, docs.BETWEEN, {}), (3, docs.NOT_READY, {"not_ready": "control master gone"})):
            rev = scene.admin.get(docs.heartbeat_id("alpha"))["_rev"]
            hb = docs.Heartbeat(site="alpha", state=state, beat=beat, rev=rev, **extra)
            alpha.put(docs.render_heartbeat(hb))
            stored, problems = docs.parse_heartbeat(scene.admin.get(docs.heartbeat_id("alpha")), "alpha")
            assert problems == [] and stored is not None and (stored.state, stored.beat) == (state, beat)
        assert stored.not_ready == "control master gone"
    finally:
        _restore(scene, before)


def test_a_lost_race_is_a_conflict_even_where_the_server_judges_the_newer_revision(scene: Secured) -> None:
    """pouchdb-server validates against the current revision; the store still reports a lost swap as 409."""
    before = _snapshot(scene)
    try:
        stale = scene.admin.get(LEADER_ID)
        scene.site("charlie").put(_changed(stale, leader="charlie", leader_term=4, updated_by="charlie"))
        with pytest.raises(errors.Conflict):
            scene.site("bravo").put(_changed(stale, leader="bravo", leader_term=4, updated_by="bravo"))
        with pytest.raises(errors.Conflict):
            scene.site("bravo").put({k: v for k, v in _scene()[docs.turn_record_id(6)].items()})
    finally:
        _restore(scene, before)


def _http(secured: Secured, who: str, method: str, path: str, body: object = None) -> tuple[int, object]:
    """One raw request as account ``who`` (the store has no call for replication, which is the point)."""
    if who == "admin":
        user, password = secured.server.username, secured.server.password
    else:
        user, password = who, secured.passwords[who]
    request = urllib.request.Request(f"{secured.server.url}/{secured.name}{path}", method=method,
                                     data=None if body is None else json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    if user is not None:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, json.loads(answer.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def _replicated(doc: dict, start: int, *ancestors: str) -> dict:
    """``doc`` as a replicator sends it: a revision and history of the writer's choosing."""
    rev_id = secrets.token_hex(16)
    return dict(doc, _rev=f"{start}-{rev_id}", _revisions={"start": start, "ids": [rev_id, *ancestors]})


@pytest.fixture
def staged(secured: Secured) -> Secured:
    """A database of its own holding the scene: a write that gets through cannot spoil other tests."""
    for body in _scene().values():
        current = secured.admin.get(body["_id"])
        secured.admin.put(dict(body) if current is None else dict(body, _rev=current["_rev"]))
    return secured


def test_a_site_cannot_write_through_the_replication_api(staged: Secured) -> None:
    """``new_edits: false`` names its own history; CouchDB judges it against whatever that history reaches."""
    before = _snapshot(staged)
    leader = staged.admin.get(LEADER_ID)
    current_start, current_id = leader["_rev"].split("-", 1)
    reset = _changed(leader, leader="alpha", leader_term=1, updated_by="alpha", status=docs.DONE, running=None,
                     turn=1)
    registry = {k: v for k, v in staged.admin.get(SITES_ID).items() if k != "_rev"}
    only_alpha = dict(registry, sites={"alpha": {"heartbeat_doc": docs.heartbeat_id("alpha")}})
    rewritten = docs.render_turn_record(docs.TurnRecord(turn=6, site="alpha", how="exited", exit_code=3))
    attempts = [
        ("alpha", _replicated({k: v for k, v in reset.items() if k != "_rev"}, 99)),
        ("alpha", _replicated(only_alpha, 40)),
        ("alpha", _replicated(rewritten, 9)),
        ("charlie", _replicated(_changed(leader, leader="charlie", leader_term=4, updated_by="charlie"),
                                int(current_start) + 1, current_id)),
    ]
    for who, doc in attempts:
        status, answer = _http(staged, who, "POST", "/_bulk_docs", {"docs": [doc], "new_edits": False})
        refused = status == 403 or (isinstance(answer, list) and answer and answer[0].get("error") == "forbidden")
        assert refused, (who, doc["_id"], status, answer)
        status, stored = _http(staged, "admin", "GET", f"/{doc['_id']}?conflicts=true")
        assert "_conflicts" not in stored, stored
    assert _snapshot(staged) == before


def test_a_record_a_site_wrote_about_another_sites_turn_is_never_taken_as_its_outcome(staged: Secured,
                                                                                       tmp_path) -> None:
    alpha, bravo, charlie = (staged.site(s) for s in ("alpha", "bravo", "charlie"))
    # Alpha says, as leader, that it took turn 43 away from bravo: allowed, and no outcome.
    alpha.put(docs.render_turn_record(docs.TurnRecord(turn=43, site="bravo", how="revoked", leader="alpha")))
    # Alpha claims turn 44 in its own name, before charlie runs it.
    alpha.put(docs.render_turn_record(docs.TurnRecord(turn=44, site="alpha", how="exited", exit_code=0)))
    records.write_once(bravo, docs.TurnRecord(turn=43, site="bravo", how="exited", exit_code=3), "bravo")
    records.write_once(charlie, docs.TurnRecord(turn=44, site="charlie", how="exited", exit_code=3), "charlie")
    for turn, expected in ((43, records.Outcome("bravo", "exited", 3)), (44, None)):
        raw = staged.admin.get(docs.turn_record_id(turn))
        rec, _ = docs.parse_turn_record(raw)
        taken = records.outcome(rec, raw)
        if expected is not None:
            assert taken == expected, raw
        else:
            assert taken.how == records.DISPUTED, raw
    shown = _enqueue("history", str(staged.config(tmp_path / "configs", "bravo")), "--json")
    assert shown.returncode == 0, shown.stderr
    outcomes = {t["turn"]: t["outcome"] for t in json.loads(shown.stdout)["turns"]}
    assert outcomes[43]["exit_code"] == 3 and outcomes[44]["how"] == "disputed"


def test_a_revoker_adds_its_word_once_to_a_dead_leaders_not_started_record_and_the_runner_its_report(
        staged: Secured) -> None:
    """docs/PROTOCOL.md §5.4.1 by site accounts, on either server: alpha recorded bravo's turn 45 'not started'
    (and died before its write); charlie, taking the turn back as started, adds its word; nobody adds a second."""
    alpha, bravo, charlie = (staged.site(s) for s in ("alpha", "bravo", "charlie"))
    alpha.put(docs.render_turn_record(docs.TurnRecord(turn=45, site="bravo", how="not started", leader="alpha")))
    revoked = docs.TurnRecord(turn=45, site="bravo", how="revoked", leader="charlie",
                              started_at="2026-01-01 00:00:01", ended_at="2026-01-01 00:00:09")
    records.write_once(charlie, revoked, "charlie")
    raw = staged.admin.get(docs.turn_record_id(45))
    assert raw["revoker_report"]["leader"] == "charlie", raw
    rec, _ = docs.parse_turn_record(raw)
    assert records.outcome(rec, raw).how == "revoked"
    with pytest.raises(errors.Forbidden, match="added once"):
        alpha.put(dict(raw, revoker_report=dict(raw["revoker_report"], leader="alpha")))
    records.write_once(bravo, docs.TurnRecord(turn=45, site="bravo", how="abandoned"), "bravo")
    raw = staged.admin.get(docs.turn_record_id(45))
    assert raw["runner_report"]["site"] == "bravo" and raw["revoker_report"]["leader"] == "charlie", raw
    assert records.outcome(rec, raw).how == "abandoned"


def test_a_site_cannot_write_a_deleted_leader_doc_afresh_and_an_admins_rebuild_continues_its_count(
        staged: Secured) -> None:
    """After an admin's deletion the server shows the rules no old document, as for the first creation: no site
    may write it then, at any turn (a fencing-token reset). The repairer's record of the turn it displaced is
    a site's to write; the admin's rebuild (docs/PROTOCOL.md §3.11) continues the tombstone's revision count,
    and the holder's own report completes that record."""
    alpha, bravo = staged.site("alpha"), staged.site("bravo")
    old = staged.admin.get(LEADER_ID)
    staged.admin.delete(old)
    tombstone = alpha.deleted_rev(LEADER_ID)
    assert tombstone is not None and repair.revision_count(tombstone) == repair.revision_count(old["_rev"]) + 1
    displaced = docs.TurnRecord(turn=7, site="bravo", how=Outcome.REPAIRED, leader="alpha", note="rewritten")
    records.write_once(alpha, displaced, "alpha")
    stored = staged.admin.get(docs.turn_record_id(7))
    assert stored is not None and (stored["site"], stored["how"], stored["leader"]) == ("bravo", "repaired", "alpha")
    for turn in (0, 1, repair.revision_count(tombstone), docs.MAX_TURN):
        fresh = repair.rebuilt_leader_doc(LEADER_ID, None, turn, "alpha", "alpha", NOW)
        with pytest.raises(errors.Forbidden) as refused:
            alpha.put(docs.render_leader(fresh))
        assert security.refusal_token(security.ADMIN_REBUILDS_TOKEN) in str(refused.value)
        assert alpha.get(LEADER_ID) is None
    rebuilder = AdminRebuild(staged.admin, LEADER_ID, 0.0, "admin:test", lambda: NOW)
    assert rebuilder.look(0.0) == 0.0
    assert rebuilder.write(0.0) == repair.revision_count(tombstone)
    rebuilt = staged.admin.get(LEADER_ID)
    assert repair.revision_count(rebuilt["_rev"]) == repair.revision_count(tombstone) + 1, "the revision path continues"
    assert (rebuilt["leader"], rebuilt["turn"], rebuilt["status"]) == (None, repair.revision_count(tombstone), "done")
    records.write_once(bravo, docs.TurnRecord(turn=7, site="bravo", how="stopped", exit_code=143), "bravo")
    raw = staged.admin.get(docs.turn_record_id(7))
    assert raw["runner_report"]["site"] == "bravo", raw
    rec, _ = docs.parse_turn_record(raw)
    assert records.outcome(rec, raw) == records.Outcome("bravo", "stopped", 143), raw


def test_a_site_rewrites_a_garbled_leader_doc_only_at_the_turn_its_repair_resumes_at(staged: Secured) -> None:
    """A garbled turn left the rules no old turn to bound it from below: the revision count bounds it now."""
    current = staged.admin.get(LEADER_ID)
    garbled = {"_id": LEADER_ID, "_rev": current["_rev"], "turn": "forty-two", "edited": "by hand"}
    rev = staged.admin.put(garbled)
    count = repair.revision_count(rev)
    garbled["_rev"] = rev
    for turn in (0, count - 1, count + 1):
        with pytest.raises(errors.Forbidden):
            staged.site("alpha").put(docs.render_leader(repair.rebuilt_leader_doc(LEADER_ID, garbled, turn, "alpha",
                                                                                  "alpha", NOW)))
    assert staged.admin.get(LEADER_ID)["_rev"] == rev
    staged.site("alpha").put(docs.render_leader(repair.rebuilt_leader_doc(LEADER_ID, garbled, count, "alpha", "alpha",
                                                                          NOW)))
    assert staged.admin.get(LEADER_ID)["turn"] == count


# ---------------------------------------------------------------------------- several document sets


RUN_FAST = ("-d", "0.5s", "-s", "2s", "--kill-grace", "0.3s", "--no-repeat")


def test_every_document_set_init_installed_stays_usable_and_records_never_collide(secured, tmp_path) -> None:
    admin = str(secured.admin_config(tmp_path / "admin"))
    for extra in ((), ("-L", "test_leader", "-S", "test_sites")):
        done = _enqueue("init", admin, *extra)
        assert done.returncode == 0, done.stderr
    config = str(secured.config(tmp_path / "configs", "alpha"))
    for extra in ((), ("-L", "test_leader", "-S", "test_sites")):
        done = _enqueue("run", config, "alpha", *RUN_FAST, *extra, "--", "true", timeout_s=45)
        assert done.returncode == 0, done.stderr
    default = [d["_id"] for d in secured.admin.list_prefix(docs.TURN_PREFIX)]
    other = [d["_id"] for d in secured.admin.list_prefix(docs.turn_prefix("test_leader"))]
    assert default == [docs.turn_record_id(1)], default
    assert other == [docs.turn_record_id(1, docs.turn_prefix("test_leader"))], other
    for extra in ((), ("-L", "test_leader", "-S", "test_sites")):
        shown = _enqueue("status", config, *extra)
        assert shown.returncode == 0 and "problem: the access rules" not in shown.stdout, shown.stdout


def test_a_site_in_two_document_sets_of_one_database_runs_an_agent_in_each_with_a_heartbeat_of_each(
        secured, tmp_path) -> None:
    """Under site accounts, alpha in both sets at once, bravo in the test set: both rotate, no agent takes the
    other set's agent for a twin, and each set's registry and status hold only that set's heartbeats."""
    admin = str(secured.admin_config(tmp_path / "admin"))
    test_set = ["-L", "test_leader", "-S", "test_sites"]
    for extra in ([], test_set):
        done = _enqueue("init", admin, *extra)
        assert done.returncode == 0, done.stderr
    default = Sites(config=secured.config(tmp_path / "configs", "alpha"), workdir=tmp_path / "default")
    other = Sites(config=default.config, workdir=tmp_path / "test")
    bravo = Sites(config=secured.config(tmp_path / "configs", "bravo"), workdir=other.workdir)
    groups = (default, other, bravo)
    for group in groups:
        group.workdir.mkdir(exist_ok=True)
    try:
        # The default set's agent beats every 0.5 s, the test set's every 0.4 s: status tells them apart.
        default.start("alpha", sleep_s=0.1)
        other.start("alpha", sleep_s=0.1, extra=[*test_set, "-d", "0.4s"])
        bravo.start("bravo", sleep_s=0.1, extra=[*test_set, "-d", "0.4s"])
        default.wait_runs(3, timeout_s=40)
        joined = wait_until("a turn of bravo", lambda: "bravo" in other.report().order, timeout_s=40)
        assert joined
        report = other.wait_runs(len(other.report().runs) + 3, timeout_s=40)
        beats = {doc_id: secured.admin.get(doc_id) for doc_id in (
            "enqueue_heartbeat:alpha", "test_leader:heartbeat:alpha", "enqueue_heartbeat:bravo",
            "test_leader:heartbeat:bravo")}
        config = str(default.config)
        shown = {name: json.loads(_enqueue("status", config, "--json", *extra).stdout)
                 for name, extra in (("default", []), ("test", test_set))}
    finally:
        for group in groups:
            group.stop_all()
    assert report.overlaps == [], report.overlaps
    assert set(report.order) == {"alpha", "bravo"}, report.order
    assert beats["enqueue_heartbeat:alpha"]["pid"] == default.agents["alpha"].proc.pid
    assert beats["test_leader:heartbeat:alpha"]["pid"] == other.agents["alpha"].proc.pid
    assert beats["enqueue_heartbeat:bravo"] is None and beats["test_leader:heartbeat:bravo"] is not None
    assert secured.admin.get(SITES_ID)["sites"]["alpha"]["heartbeat_doc"] == "enqueue_heartbeat:alpha"
    assert {name: entry["heartbeat_doc"] for name, entry in secured.admin.get("test_sites")["sites"].items()} == {
        "alpha": "test_leader:heartbeat:alpha", "bravo": "test_leader:heartbeat:bravo"}
    assert [(s["name"], s["heartbeat_delay_s"]) for s in shown["default"]["sites"]] == [("alpha", 0.5)], shown
    assert [(s["name"], s["heartbeat_delay_s"]) for s in shown["test"]["sites"]] == [("alpha", 0.4), ("bravo", 0.4)]
    logs = "".join(agent.log() for group in groups for agent in group.agents.values())
    assert "another agent runs as site" not in logs and "already has an agent" not in logs, logs[-3000:]
    assert "forbidden" not in logs.lower(), logs[-3000:]


def test_a_site_whose_writes_no_rule_covers_says_so_and_exits_with_the_credentials_code(secured, tmp_path) -> None:
    """A set nobody ran 'init' for, its documents made by hand: the site is refused for good, not forever."""
    secured.admin.put(docs.render_leader(docs.new_leader_doc("other_leader")))
    secured.admin.put(docs.render_sites(docs.new_sites_doc("other_sites"),
                                        {"alpha": {"heartbeat_doc": docs.heartbeat_id("alpha")}}))
    config = str(secured.config(tmp_path / "configs", "alpha"))
    extra = ("-L", "other_leader", "-S", "other_sites")
    shown = _enqueue("status", config, *extra)
    assert shown.returncode == 0, shown.stderr
    assert "problem: the access rules (_design/enqueue) cover the document sets enqueue_leader/enqueue_sites, " \
           "not other_leader/other_sites" in shown.stdout, shown.stdout
    done = _enqueue("run", config, "alpha", *RUN_FAST, *extra, "--", "true", timeout_s=45)
    assert done.returncode == errors.EXIT_AUTH, done.stderr
    assert "is not a document enqueue uses" in done.stderr


def test_a_site_that_loses_its_role_while_running_exits_with_the_credentials_code(secured, tmp_path) -> None:
    workdir = tmp_path / "run"
    workdir.mkdir()
    group = Sites(config=secured.config(tmp_path / "configs", "alpha"), workdir=workdir)
    try:
        agent = group.start("alpha", sleep_s=0.1)
        group.wait_runs(1, timeout_s=30)
        admin_users = secured.server.store(users.USERS_DB)
        try:
            doc = admin_users.get(users.user_id("alpha"))
            admin_users.put(dict(doc, roles=[]))
        finally:
            admin_users.close()
        assert agent.wait(timeout_s=30) == errors.EXIT_AUTH, agent.log()[-2000:]
        assert "cannot take part with these credentials" in agent.log()
    finally:
        group.stop_all()


# ---------------------------------------------------------------------------- a rotation under the rules


def _alphabetical(order: list[str]) -> bool:
    ring = sorted(SITES)
    return all(nxt == ring[(ring.index(prev) + 1) % len(ring)] for prev, nxt in zip(order, order[1:]))


@pytest.fixture
def secured(admin_server, tmp_path) -> Iterator[Secured]:
    """A database as ``enqueue init`` leaves it (the shared documents created by an admin), with site accounts."""
    s = _secure_database(admin_server, tmp_path / "accounts")
    s.admin.put(docs.render_leader(docs.new_leader_doc(LEADER_ID)))
    s.admin.put(docs.render_sites(docs.new_sites_doc(SITES_ID)))
    yield s
    _teardown(s)


def test_three_sites_with_their_own_accounts_take_turns_alphabetically(secured: Secured, tmp_path) -> None:
    workdir = tmp_path / "run"
    workdir.mkdir()
    groups = []
    try:
        for name in ("charlie", "alpha", "bravo"):
            group = Sites(config=secured.config(tmp_path / "configs", name), workdir=workdir)
            groups.append(group)
            group.start(name, sleep_s=0.1, extra=["--log-level", "debug"] if name == "alpha" else [])
        # The three join one by one: judge the order from the turn after all have had one.
        def all_joined() -> int | None:
            order = groups[0].report().order
            return len(order) if set(SITES) <= set(order) else None

        joined = wait_until("a turn of every site", all_joined, timeout_s=40)
        report = groups[0].wait_runs(joined + 5, timeout_s=40)
    finally:
        for group in groups:
            group.stop_all()
    assert report.overlaps == [], report.overlaps
    assert _alphabetical(report.order[joined - 1:]), report.order
    records = secured.admin.list_prefix(docs.TURN_PREFIX)
    assert len(records) >= 5
    logs = "".join(agent.log() for group in groups for agent in group.agents.values())
    assert "forbidden" not in logs.lower(), logs[-3000:]
    for password in secured.passwords.values():
        assert password not in logs


def test_agents_under_site_accounts_wait_for_an_admins_rebuild_of_a_deleted_leader_doc(secured, tmp_path) -> None:
    """The rules refuse the agents' rebuild: they neither exit nor retry, say so once in their logs and in
    status, and take turns again once 'enqueue repair' rebuilt it at the tombstone's revision count."""
    workdir = tmp_path / "run"
    workdir.mkdir()
    groups = []
    hint = "an admin must run 'enqueue repair CONFIG'"
    try:
        for name in ("alpha", "bravo"):
            group = Sites(config=secured.config(tmp_path / "configs", name), workdir=workdir)
            groups.append(group)
            group.start(name, sleep_s=0.1)
        groups[0].wait_runs(2, timeout_s=40)
        for _ in range(20):  # the agents write the doc meanwhile: delete the revision that is current
            try:
                secured.admin.delete(secured.admin.get(LEADER_ID))
                break
            except errors.Conflict:
                continue
        tombstone = secured.admin.deleted_rev(LEADER_ID)
        config = str(secured.config(tmp_path / "configs", "alpha"))

        def both_say_so() -> str | None:
            shown = _enqueue("status", config).stdout
            return shown if all(f"problem: site {s}: leader doc {LEADER_ID} is missing" in shown and hint in shown
                                for s in ("alpha", "bravo")) else None

        wait_until("both sites' problem in status", both_say_so, timeout_s=30)
        assert secured.admin.get(LEADER_ID) is None
        assert all(agent.proc.poll() is None for group in groups for agent in group.agents.values())
        finished = len([r for r in groups[0].report().runs if r.end_ns is not None])
        admin = str(secured.admin_config(tmp_path / "admin", heartbeat_stale="2s"))
        done = _enqueue("repair", admin, timeout_s=60)
        assert done.returncode == 0, done.stderr
        assert "waiting 2 s for any running turn's lease to run out" in done.stdout, done.stdout
        turn = repair.revision_count(tombstone)
        assert f"rebuilt leader doc {LEADER_ID} at turn {turn}" in done.stdout, done.stdout
        report = groups[0].wait_runs(finished + 2, timeout_s=40)
        shown = _enqueue("status", config).stdout
        assert hint not in shown, shown
    finally:
        for group in groups:
            group.stop_all()
    assert report.overlaps == [], report.overlaps
    assert int(report.runs[-1].turn) > turn, report.runs  # resumed above every turn that ran
    for group in groups:
        for agent in group.agents.values():
            assert agent.log().count(hint) == 1, agent.log()[-3000:]


def test_a_site_whose_command_keeps_failing_drains_itself_and_only_an_admin_undrains_it(secured, tmp_path) -> None:
    """``--max-failures 2`` under the site's own account: the rules let it drain itself, status says why."""
    workdir = tmp_path / "run"
    workdir.mkdir()
    config = secured.config(tmp_path / "configs", "alpha")
    admin_config = str(secured.admin_config(tmp_path / "admin"))
    group = Sites(config=config, workdir=workdir)

    def alpha_entry() -> dict:
        return (secured.admin.get(SITES_ID) or {}).get("sites", {}).get("alpha") or {}

    def failed_records() -> list[dict]:
        return [r for r in secured.admin.list_prefix(docs.TURN_PREFIX) if r.get("how") == "exited"]

    try:
        agent = group.start("alpha", command=["sh", "-c", "exit 3"], extra=["--max-failures", "2"])
        wait_until("alpha to drain itself", lambda: alpha_entry().get("drained") is True, timeout_s=40)
        entry = alpha_entry()
        failed = failed_records()
        assert [(r["site"], r["exit_code"]) for r in failed] == [("alpha", 3), ("alpha", 3)], failed
        reason = f"its command failed 2 turns in a row (last: turn {failed[-1]['turn']}, exit code 3)"
        assert (entry["drained_by"], entry["drained_reason"], entry["drained_exit_code"], entry["drained_failures"]) \
            == ("alpha", reason, 3, 2)
        listed = _enqueue("sites", str(config), "list")
        assert f"yes: {reason} (alpha)" in listed.stdout, listed.stdout
        shown = _enqueue("status", str(config))
        assert f"drained: {reason}" in shown.stdout, shown.stdout
        # Drained, it starts nothing more, though it stays alive and waiting.
        assert agent.proc.poll() is None and len(failed_records()) == 2
        undrained = _enqueue("sites", admin_config, "undrain", "alpha")
        assert (undrained.returncode, undrained.stdout) == (0, "undrained alpha: it takes turns again\n"), \
            undrained.stderr
        # Undrained, it takes turns again, fails twice more (a run starts afresh) and drains itself again.
        wait_until("alpha to fail twice more and drain itself again",
                   lambda: len(failed_records()) == 4 and alpha_entry().get("drained") is True, timeout_s=40)
        assert alpha_entry()["drained_reason"] == \
            f"its command failed 2 turns in a row (last: turn {failed_records()[-1]['turn']}, exit code 3)"
        assert "forbidden" not in agent.log().lower(), agent.log()[-3000:]
    finally:
        group.stop_all()


def test_a_sites_account_reads_status_history_and_sites_but_cannot_steer(secured: Secured, tmp_path) -> None:
    for body in (docs.render_leader(docs.new_leader_doc(LEADER_ID)),
                 docs.render_sites(docs.new_sites_doc(SITES_ID), {"alpha": {"heartbeat_doc": docs.heartbeat_id("alpha")}})):
        if secured.admin.get(body["_id"]) is None:
            secured.admin.put(body)
    config = str(secured.config(tmp_path / "configs", "alpha"))
    for argv in (("status", config), ("status", config, "--json"), ("history", config), ("sites", config, "list")):
        done = _enqueue(*argv)
        assert done.returncode == 0, (argv, done.stderr)
        assert "forbidden" not in (done.stdout + done.stderr).lower()
    assert "leader:" in _enqueue("status", config).stdout
    before = secured.admin.get(LEADER_ID)
    refused = _enqueue("pause", config, "--reason", "not mine to pause")
    assert refused.returncode == errors.EXIT_AUTH, refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert "forbidden" in refused.stderr and "admin commands need an account with the admin role" in refused.stderr
    assert secured.admin.get(LEADER_ID)["_rev"] == before["_rev"]
    for password in secured.passwords.values():
        assert password not in refused.stdout + refused.stderr
    secured.admin.put(docs.render_turn_record(docs.TurnRecord(turn=1, site="alpha", how="exited", exit_code=0)))
    pruned = _enqueue("prune", config, "--keep", "0")
    assert pruned.returncode == errors.EXIT_AUTH, pruned.stderr
    assert "admin commands need an account with the admin role" in pruned.stderr
    assert secured.admin.get(docs.turn_record_id(1)) is not None


# ---------------------------------------------------------------------------- secrets


def _enqueue(*argv: str, env: Optional[dict] = None, timeout_s: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "enqueue", *argv], capture_output=True, text=True,
                          timeout=timeout_s, env={**os.environ, **(env or {})})


def test_users_add_writes_a_private_password_file_and_prints_the_password_only_when_asked(
    secured, tmp_path, capsys, restore_logging
) -> None:
    admin_config = str(secured.admin_config(tmp_path / "admin"))
    password_file = tmp_path / "delta.password"

    def enqueue_users(*argv: str) -> tuple[int, str, str]:
        code = cli.main(["users", admin_config, *argv])
        out, err = capsys.readouterr()
        return code, out, err

    try:
        code, out, err = enqueue_users("add", "delta", "--password-file", str(password_file))
        assert code == 0, err
        password = password_file.read_text().strip()
        assert (password_file.stat().st_mode & 0o777) == 0o600
        assert password not in out + err
        assert "created the account of site delta (role enqueue_site)" in out

        code, out, err = enqueue_users("add", "delta", "--password-file", str(password_file))
        assert code != 0 and "exists" in err
        assert password_file.read_text().strip() == password

        code, out, err = enqueue_users("add", "delta", "--password-file", str(password_file), "--replace",
                                       "--show-password")
        assert code == 0, err
        new_password = password_file.read_text().strip()
        assert new_password != password and f"password: {new_password}" in out

        delta = CouchStore(secured.server.url, secured.name, username="delta", password=new_password)
        try:
            delta.put({"_id": docs.heartbeat_id("delta"), "site": "delta"})
        finally:
            delta.close()
        code, out, err = enqueue_users("list")
        assert any(line.split() == ["delta", "enqueue_site"] for line in out.splitlines())
        assert new_password not in out + err
    finally:
        code, out, err = enqueue_users("remove", "delta")
    assert code == 0, err
    assert "removed the account of site delta" in out


def test_a_site_cannot_give_itself_a_role(secured) -> None:
    """CouchDB refuses an account a change of its own roles; the embedded server is made to refuse it too."""
    own = CouchStore(secured.server.url, users.USERS_DB, username="alpha", password=secured.passwords["alpha"])
    admin_users = secured.server.store(users.USERS_DB)
    try:
        # CouchDB 3 lets no member even read _users; pouchdb-server lets an account read its own document.
        doc = admin_users.get(users.user_id("alpha"))
        assert doc is not None and doc["roles"] == ["enqueue_site"]
        with pytest.raises(errors.Forbidden):
            own.put(dict(doc, roles=["enqueue_site", security.DEFAULT_ADMIN_ROLE]))
        with pytest.raises(errors.Forbidden):
            own.put(dict(doc, roles=[]))
        assert admin_users.get(users.user_id("alpha"))["roles"] == ["enqueue_site"]
    finally:
        own.close()
        admin_users.close()


def test_a_password_reset_leaves_the_site_role_only(secured, tmp_path) -> None:
    admin_users = secured.server.store(users.USERS_DB)
    try:
        doc = admin_users.get(users.user_id("bravo"))
        admin_users.put(dict(doc, roles=["enqueue_site", security.DEFAULT_ADMIN_ROLE, "other"]))
        users.add(_connection(secured.server, secured.name), "bravo", password_file=str(tmp_path / "b"),
                  show_password=False, replace=True, role=None)
        assert admin_users.get(users.user_id("bravo"))["roles"] == ["enqueue_site"]
    finally:
        admin_users.close()


def test_wrong_credentials_fail_in_one_line_that_holds_no_password(secured, tmp_path) -> None:
    wrong = "wrong-" + secrets.token_urlsafe(12)
    password_file = tmp_path / "wrong.password"
    password_file.write_text(wrong + "\n")
    password_file.chmod(0o644)
    config = secured.config(tmp_path / "configs", "alpha", password_file=password_file)
    done = _enqueue("run", str(config), "alpha", "--", "true")
    assert done.returncode == errors.EXIT_AUTH, done.stderr
    assert "refused the credentials" in done.stderr
    assert "can be read by group or others" in done.stderr  # the 0644 password file
    assert wrong not in done.stdout + done.stderr

    # The same password from the environment, with a config that holds none.
    bare = tmp_path / "bare.ini"
    bare.write_text(f"[couchdb]\nurl = {secured.server.url}\ndatabase = {secured.name}\n")
    env = {"ENQUEUE_COUCHDB_USERNAME": "alpha", "ENQUEUE_COUCHDB_PASSWORD": wrong}
    done = _enqueue("run", str(bare), "alpha", "--log-level", "debug", "--", "true", env=env)
    assert done.returncode == errors.EXIT_AUTH, done.stderr
    assert wrong not in done.stdout + done.stderr

    store = CouchStore(secured.server.url, secured.name, username="alpha", password=wrong)
    try:
        with pytest.raises(errors.AuthFailed) as failed:
            store.check()
    finally:
        store.close()
    assert wrong not in str(failed.value) and wrong not in repr(store)


def test_the_command_runs_without_the_agents_database_credentials(secured, tmp_path) -> None:
    """The credentials come from the environment, as a systemd unit gives them; the command prints its own."""
    bare = tmp_path / "bare.ini"
    bare.write_text(f"[couchdb]\nurl = {secured.server.url}\ndatabase = {secured.name}\n")
    password = secured.passwords["alpha"]
    env = {"ENQUEUE_COUCHDB_USERNAME": "alpha", "ENQUEUE_COUCHDB_PASSWORD": password,
           "ENQUEUE_COUCHDB_CA_FILE": "", "ENQUEUE_TEST_INHERITED": "kept"}
    printed = tmp_path / "env.json"
    show_env = f"import json, os; json.dump(dict(os.environ), open({str(printed)!r}, 'w'))"
    done = _enqueue("run", str(bare), "alpha", "-d", "0.5s", "-s", "2s", "--kill-grace", "0.3s", "--no-repeat",
                    "--", sys.executable, "-c", show_env, env=env, timeout_s=60)
    assert done.returncode == 0, done.stderr
    seen = json.loads(printed.read_text())
    assert [k for k in seen if k.startswith("ENQUEUE_COUCHDB")] == []
    assert not any(password in v for v in seen.values())
    assert seen["ENQUEUE_SITE"] == "alpha" and seen["ENQUEUE_LEADER"] == "alpha" and int(seen["ENQUEUE_TURN"]) >= 1
    assert seen["ENQUEUE_TEST_INHERITED"] == "kept"


# ---------------------------------------------------------------------------- TLS


@pytest.fixture
def https_server(tmp_path) -> Iterator[tuple[str, Path]]:
    """An https server on 127.0.0.1 with a self-signed certificate for 127.0.0.1; yields (url, cert)."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    made = subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        capture_output=True, text=True,
    )
    if made.returncode != 0:
        pytest.skip(f"openssl cannot make a test certificate: {made.stderr.strip()[:200]}")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(cert), str(key))
    with canned_server("GET", 200, b'{"db_name": "db", "update_seq": 0}', tls=context) as server:
        yield server.url, cert


def test_https_is_verified_against_the_configured_ca_file(https_server) -> None:
    url, cert = https_server
    unverified = CouchStore(url, "db", request_timeout_s=5)
    try:
        with pytest.raises(errors.Unreachable, match="TLS failed"):
            unverified.check()
    finally:
        unverified.close()
    verified = CouchStore(url, "db", ca_file=str(cert), request_timeout_s=5)
    try:
        assert verified.check()["db_name"] == "db"
    finally:
        verified.close()
    wrong_name = CouchStore(url.replace("127.0.0.1", "localhost"), "db", ca_file=str(cert), request_timeout_s=5)
    try:
        with pytest.raises(errors.Unreachable, match="TLS failed"):
            wrong_name.check()
    finally:
        wrong_name.close()
