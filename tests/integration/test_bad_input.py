"""Bad input, one test per case: a one-line error at start-up, or a warning and recovery at run time.

Start-up cases call the command line in this process (``enqueue.cli.main``)
and check the exit code and that stderr is exactly one line without a
secret. Run-time cases hand-edit a shared document under running agents,
as an admin with curl or Fauxton would, and check that the agents log a
warning, keep taking turns, never overlap, never crash, and leave every
document parseable. To keep the suite short, the run-time document cases
share one set of agents (``running``); each case waits for recovery before
the next begins.

A registry (sites doc) that does not parse at all, or is deleted, crashes the
agents today: that case is pinned down in ``test_agent_findings.py``.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, Optional

import psutil
import pytest

from enqueue import cli
from enqueue import documents as docs
from enqueue.couchdb_store import CouchStore
from enqueue.errors import EXIT_AUTH, EXIT_DATABASE_MISSING, EXIT_NOT_FOUND, EXIT_UNREACHABLE, EXIT_USAGE
from tests.support import servers
from tests.support.agents import DELAY_S, STALE_S, Sites, sites, wait_until  # noqa: F401  (fixture: sites)
from tests.support.log_state import restore_logging  # noqa: F401  (fixture)
from tools.chaos import probe as probe_tool

pytestmark = pytest.mark.usefixtures("restore_logging")

LEADER = "enqueue_leader"
SITES = "enqueue_sites"


def write_config(path: Path, text: str) -> str:
    path.write_text(text)
    path.chmod(0o600)
    return str(path)


def run_cli(capsys, config: str, *extra: str) -> tuple:
    """Run ``enqueue run CONFIG alpha ... -- true`` here; (exit code, stderr lines)."""
    code = cli.main(["run", config, "alpha", *extra, "--", sys.executable, "-c", "pass"])
    captured = capsys.readouterr()
    return code, [line for line in captured.err.splitlines() if line.strip()], captured.out


def assert_one_line(lines: list, *needles: str) -> str:
    assert len(lines) == 1, lines
    line = lines[0]
    assert line.startswith("enqueue: "), line
    for needle in needles:
        assert needle in line, line
    return line


# --------------------------------------------------------------------------- start-up: one line, an exit code


@pytest.mark.parametrize(
    "text, needle",
    [
        ("this is not an ini file\n", "line 1"),
        ("[couchdb]\nurl = http://127.0.0.1:5984\n", "database"),
        ("[couchdb]\nurl = ftp://127.0.0.1\ndatabase = db\n", "url"),
        ("[couchdb]\nurl = http://127.0.0.1:5984\ndatabase = db\n[enqueue]\nheartbeat_delay = soon\n",
         "heartbeat_delay"),
        ("[couchdb]\nurl = http://127.0.0.1:5984\ndatabase = db\n[enqueue]\nheartbeat_delay = 10\n"
         "heartbeat_stale = 15\nkill_grace = 8\n", "heartbeat_stale"),
        ("[couchdb]\nurl = http://127.0.0.1:5984\ndatabase = db\n[couchdb]\ndatabase = other\n", "twice"),
    ],
    ids=["not-ini", "missing-database-key", "bad-url", "bad-duration", "stale-too-short", "duplicate-section"],
)
def test_a_malformed_config_exits_2_with_one_line(tmp_path, capsys, text, needle):
    code, lines, _ = run_cli(capsys, write_config(tmp_path / "bad.ini", text))
    assert code == EXIT_USAGE
    assert_one_line(lines, needle)


def test_an_unknown_key_exits_2_naming_it(tmp_path, capsys):
    config = write_config(tmp_path / "typo.ini",
                          "[couchdb]\nurl = http://127.0.0.1:5984\ndatabase = db\n[enqueue]\nheartbeat_dealy = 5\n")
    code, lines, _ = run_cli(capsys, config)
    assert code == EXIT_USAGE
    assert_one_line(lines, "heartbeat_dealy", "unknown key")


def test_a_missing_database_exits_5_with_one_line(couch_server, tmp_path, capsys):
    name = servers.DATABASE_PREFIX + "missing_" + os.urandom(4).hex()
    database = servers.Database(name, couch_server, couch_server.store(name))
    try:
        code, lines, _ = run_cli(capsys, str(database.config_file(tmp_path / "config")))
        assert code == EXIT_DATABASE_MISSING
        assert_one_line(lines, name, "does not exist")
        with pytest.raises(Exception):
            database.store.check()  # the agent did not create it either
    finally:
        database.store.close()


def test_the_server_down_at_start_exits_3_with_one_line(tmp_path, capsys):
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = write_config(tmp_path / "down.ini", f"[couchdb]\nurl = http://127.0.0.1:{port}\ndatabase = db\n")
    code, lines, _ = run_cli(capsys, config)
    assert code == EXIT_UNREACHABLE
    assert_one_line(lines, f"127.0.0.1:{port}")


@pytest.fixture(scope="module")
def admin_server(couch_server) -> Iterator[servers.CouchServer]:
    """A server with an admin account: the session's if it has one, else an embedded one of our own."""
    with servers.with_admin(couch_server) as server:
        yield server


def test_a_wrong_password_exits_4_with_one_line_and_no_secret(admin_server, tmp_path, capsys):
    database = servers.create_database(admin_server)
    try:
        wrong = "wrong-" + os.urandom(6).hex()
        secret_file = tmp_path / "password"
        secret_file.write_text(wrong + "\n")
        secret_file.chmod(0o600)
        config = write_config(
            tmp_path / "auth.ini",
            f"[couchdb]\nurl = {admin_server.url}\ndatabase = {database.name}\n"
            f"username = {admin_server.username}\npassword_file = {secret_file}\n",
        )
        code, lines, out = run_cli(capsys, config)
        assert code == EXIT_AUTH
        line = assert_one_line(lines, "credentials")
        assert wrong not in line + out
        assert admin_server.password not in line + out
        assert database.store.get(LEADER) is None  # refused before any write
    finally:
        database.drop()


# --------------------------------------------------------------------------- commands that misbehave


def probe(sites: Sites, *args: str) -> list:
    return probe_tool.command(sites.probe_log, *args)


def record(database, turn: int) -> docs.TurnRecord:
    rec, problems = docs.parse_turn_record(database.store.get(docs.turn_record_id(turn)))
    assert rec is not None, problems
    return rec


def test_a_command_that_does_not_exist_exits_127_and_releases_the_turn(sites, database):
    agent = sites.start("alpha", repeat=False, command=["no-such-command-" + os.urandom(3).hex()])
    assert agent.wait() == EXIT_NOT_FOUND
    errors = [line for line in agent.log().splitlines() if " ERROR " in line]
    assert len(errors) == 1 and "no-such-command-" in errors[0], agent.log()
    wait_until("the turn recorded", lambda: database.store.get(docs.turn_record_id(1)))
    assert record(database, 1).exit_code == EXIT_NOT_FOUND
    leader, _ = docs.parse_leader(database.store.get(LEADER), LEADER)
    assert leader is not None and leader.status == docs.DONE and leader.leader is None


def test_a_command_that_ignores_sigterm_is_killed_after_the_grace(sites, database):
    agent = sites.start("alpha", repeat=False, command=probe(sites, "--sleep", "60", "--ignore-term"))
    run = wait_until("the command running", lambda: next(iter(sites.report().runs), None))
    agent.signal(signal.SIGTERM)
    stopped = time.monotonic()
    assert agent.wait() == 128 + signal.SIGTERM
    took = time.monotonic() - stopped
    assert took < 0.3 + 5.0, f"the agent took {took:.2f} s to stop"
    assert not psutil.pid_exists(run.pid) or psutil.Process(run.pid).status() == psutil.STATUS_ZOMBIE
    assert sites.report().runs[0].end_ns is None  # it never got to write its end line: killed
    rec = record(database, 1)
    assert rec.how == "stopped" and rec.exit_code == 128 + signal.SIGKILL


def test_a_command_that_prints_megabytes_does_not_hang(sites, database):
    size = 16 * 1024 * 1024
    agent = sites.start("alpha", repeat=False, command=probe(sites, "--spew", str(size)))
    assert agent.wait(timeout_s=60) == 0
    assert agent.log_path.stat().st_size >= size
    assert record(database, 1).how == "exited"


# --------------------------------------------------------------------------- the server goes away and comes back


def test_a_stop_while_the_server_is_down_ends_in_bounded_time_and_the_turn_is_taken_back(disk_server, tmp_path):
    """SIGTERM to a running site while the database is away: its command stops, the
    agent gives up on its last writes after heartbeat_stale, and once the server is
    back the leader takes the turn back and records it."""
    db = servers.create_database(disk_server)
    try:
        s = Sites(config=db.config_file(tmp_path / "config"), workdir=tmp_path)
        try:
            alpha = s.start("alpha", sleep_s=30)
            run = wait_until("alpha running", lambda: next(iter(s.report().runs), None))
            assert disk_server.devserver is not None
            disk_server.devserver.stop()
            try:
                alpha.signal(signal.SIGTERM)
                assert alpha.wait(timeout_s=STALE_S + 10) == 128 + signal.SIGTERM
            finally:
                disk_server.devserver.start()
            assert next(r for r in s.report().runs if r.pid == run.pid).end_ns is not None, "the command outlived it"
            assert f"stopping without writing the end of turn {run.turn}" in alpha.log(), alpha.log()
            s.start("bravo", sleep_s=0.1)
            s.wait_runs(2, timeout_s=30)
            record = wait_until(f"turn {run.turn} recorded", lambda: db.store.get(docs.turn_record_id(int(run.turn))))
            parsed, _ = docs.parse_turn_record(record)
            assert parsed is not None and parsed.site == "alpha" and parsed.how == "revoked"
            assert s.report().overlaps == []
        finally:
            s.stop_all()
        assert_documents_parse(db.store)
    finally:
        db.drop()


def test_the_server_down_mid_run_and_back(disk_server, tmp_path):
    db = servers.create_database(disk_server)
    try:
        s = Sites(config=db.config_file(tmp_path / "config"), workdir=tmp_path)
        try:
            for name in ("alpha", "bravo"):
                s.start(name, sleep_s=0.1)
            s.wait_runs(3)
            # Both agents past their start-up (an agent that cannot reach the server at start exits 3 at once).
            wait_until("both sites registered", lambda: all(
                (db.store.get(docs.heartbeat_id(name)) or {}).get("state") not in (None, "left")
                for name in ("alpha", "bravo")))
            assert disk_server.devserver is not None
            disk_server.devserver.stop()
            time.sleep(STALE_S + DELAY_S)  # longer than heartbeat_stale: everybody looks gone to everybody
            disk_server.devserver.start()
            back = len(s.report().runs)
            report = s.wait_runs(back + 4, timeout_s=30)
            assert report.overlaps == []
            for agent in s.agents.values():
                assert agent.proc.poll() is None, agent.log()
                text = agent.log()
                assert " WARNING " in text and "retrying" in text, text
                assert "database reachable again" in text, text
        finally:
            s.stop_all()
        assert_documents_parse(db.store)
    finally:
        db.drop()


# --------------------------------------------------------------------------- hand-edited garbage under running agents


class Running:
    """Three agents on a database of their own, shared by the document cases below."""

    def __init__(self, sites: Sites, store: CouchStore) -> None:
        self.sites = sites
        self.store = store
        self.log_marks: Dict[str, int] = {}

    def mark(self) -> None:
        """Remember where every agent's log ends now."""
        self.log_marks = {name: len(a.log()) for name, a in self.sites.agents.items()}

    def new_log(self) -> str:
        return "".join(a.log()[self.log_marks.get(name, 0):] for name, a in self.sites.agents.items())

    def edit(self, doc_id: str, change: Callable[[Dict[str, Any]], Optional[Dict[str, Any]]]) -> None:
        """Apply ``change`` to the current body and write it (retrying on a 409), as an admin would."""
        self.mark()
        for _ in range(100):
            raw = self.store.get(doc_id)
            body = change(dict(raw) if raw is not None else {"_id": doc_id})
            try:
                if body is None:
                    self.store.delete(raw)  # type: ignore[arg-type]
                else:
                    self.store.put(body)
                return
            except Exception:  # noqa: BLE001 - an agent wrote in between: read again, like an admin would
                time.sleep(0.005)
        raise AssertionError(f"could not edit {doc_id}")

    def warned(self, *needles: str, timeout_s: float = 3 * STALE_S) -> str:
        """Wait for a WARNING line (since the last edit) containing every needle."""
        def found() -> Optional[str]:
            for line in self.new_log().splitlines():
                if " WARNING " in line and all(n in line for n in needles):
                    return line
            return None
        return wait_until(f"a warning with {needles}", found, timeout_s=timeout_s)  # type: ignore[return-value]

    def progresses(self, turns: int = 2) -> None:
        """More commands run, none at once with another, every agent is alive, every document parses."""
        before = len(self.sites.report().runs)
        report = self.sites.wait_runs(before + turns, timeout_s=6 * STALE_S)
        assert report.overlaps == [], report.overlaps
        tokens = [int(r.turn) for r in report.runs]
        assert tokens == sorted(tokens) and len(set(tokens)) == len(tokens), "fencing tokens went back"
        for name, agent in self.sites.agents.items():
            assert agent.proc.poll() is None, f"agent {name} exited:\n{agent.log()[-2000:]}"
            assert "Traceback" not in agent.log(), agent.log()[-2000:]
        assert_documents_parse(self.store)


def assert_documents_parse(store: CouchStore) -> None:
    """The leader doc, the registry, every heartbeat and every turn record parse."""
    leader, problems = docs.parse_leader(store.get(LEADER), LEADER)
    assert leader is not None, problems
    registry, problems = docs.parse_sites(store.get(SITES), SITES)
    assert registry is not None, problems
    for name in registry.sites:
        raw = store.get(docs.heartbeat_id(name))
        hb, problems = docs.parse_heartbeat(raw, name)
        assert hb is not None and not problems, (name, problems)
    for raw in store.list_prefix(docs.TURN_PREFIX):
        if raw.get("hand_edited"):
            continue
        rec, problems = docs.parse_turn_record(raw)
        assert rec is not None, (raw.get("_id"), problems)


_SHARED_AGENT_PIDS: set = set()


@pytest.fixture(autouse=True)
def _no_leftover_processes_or_threads() -> Iterator[None]:
    """The suite's leak check (see conftest), except that the shared agents' processes may come and go.

    The agents of ``running`` live for the whole module and start a command
    every few tenths of a second; what they start is theirs, not a leak.
    """
    def ours() -> Dict[int, str]:
        found = {}
        for child in psutil.Process().children(recursive=True):
            try:
                if child.pid in servers.SESSION_PIDS or child.status() == psutil.STATUS_ZOMBIE:
                    continue
                if child.pid in _SHARED_AGENT_PIDS or any(p.pid in _SHARED_AGENT_PIDS for p in child.parents()):
                    continue
                found[child.pid] = " ".join(child.cmdline())[:120]
            except psutil.Error:
                pass
        return found

    before = set(ours())
    yield
    deadline = time.monotonic() + 3.0
    while True:
        left = {pid: cmd for pid, cmd in ours().items() if pid not in before}
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    if left:
        pytest.fail("the test left running: " + "; ".join(f"{pid} {cmd}" for pid, cmd in left.items()),
                    pytrace=False)


@pytest.fixture(scope="module")
def running(couch_server, tmp_path_factory) -> Iterator[Running]:
    db = servers.create_database(couch_server)
    workdir = tmp_path_factory.mktemp("running")
    s = Sites(config=db.config_file(workdir / "config"), workdir=workdir)
    try:
        for name in ("alpha", "bravo", "charlie"):
            _SHARED_AGENT_PIDS.add(s.start(name, sleep_s=0.1).proc.pid)
        s.wait_runs(3, timeout_s=60)
        yield Running(s, db.store)
    finally:
        s.stop_all()
        _SHARED_AGENT_PIDS.clear()
        db.drop()


def _leader_turn_as_text(raw):
    raw["turn"] = "seven"
    return raw


def _leader_without_status(raw):
    raw.pop("status", None)
    raw.pop("turn", None)
    return raw


def _leader_wrong_kinds(raw):
    raw.update(leader=42, leader_term=-3, rotation="alpha,bravo")
    return raw


@pytest.mark.parametrize(
    "change, needle",
    [(_leader_turn_as_text, "field 'turn'"), (_leader_without_status, "is missing"),
     (_leader_wrong_kinds, "leader_term")],
    ids=["wrong-type", "missing-fields", "several-wrong-kinds"],
)
def test_a_leader_doc_that_does_not_parse_is_reported_and_repaired(running, change, needle):
    turn_before = max(int(r.turn) for r in running.sites.report().runs)
    running.edit(LEADER, change)
    running.warned(LEADER, "does not parse", needle)
    running.warned("rewrote leader doc", timeout_s=4 * STALE_S)
    running.progresses()
    repaired = running.store.get(LEADER)
    assert "repaired_from" in repaired  # the admin's edit is kept for a human to read
    assert repaired["turn"] > turn_before


def test_a_repair_does_not_resume_at_a_turn_a_record_made_up(running):
    """Any site may write a record of its own for any turn number; a repair must not take it as the fencing token."""
    turn_before = max(int(r.turn) for r in running.sites.report().runs)
    forged = docs.render_turn_record(docs.TurnRecord(turn=9_999_999_990, site="alpha", how="exited", exit_code=0))
    running.store.put(forged)
    try:
        running.edit(LEADER, _leader_turn_as_text)
        running.warned("rewrote leader doc", timeout_s=4 * STALE_S)
        running.progresses()
        repaired = running.store.get(LEADER)
        assert turn_before < repaired["turn"] < 1000, repaired["turn"]
    finally:
        running.store.delete(running.store.get(forged["_id"]))


def test_unknown_fields_in_the_leader_doc_are_kept(running):
    running.edit(LEADER, lambda raw: {**raw, "note_from_admin": {"why": "maintenance at 14:00"}})
    running.progresses()
    assert running.store.get(LEADER)["note_from_admin"] == {"why": "maintenance at 14:00"}


def test_a_leader_doc_naming_a_leader_that_does_not_exist(running):
    running.edit(LEADER, lambda raw: {**raw, "leader": "ghost"})
    wait_until("a real leader again", lambda: running.store.get(LEADER)["leader"] in running.sites.agents,
               timeout_s=3 * STALE_S)
    running.progresses()


def test_a_leader_doc_giving_a_running_turn_to_a_site_that_does_not_exist(running):
    state: Dict[str, int] = {}

    def ghost_runs(raw):
        state["turn"] = raw["turn"] + 1
        raw.update(running="ghost", status="running", turn=raw["turn"] + 1, started_at=None)
        return raw

    running.edit(LEADER, ghost_runs)
    # Nobody hears from ghost: after heartbeat_stale of silence its turn is taken away and recorded.
    wait_until("ghost's turn recorded", lambda: running.store.get(docs.turn_record_id(state["turn"])),
               timeout_s=4 * STALE_S)
    rec, _ = docs.parse_turn_record(running.store.get(docs.turn_record_id(state["turn"])))
    assert rec is not None and rec.site == "ghost" and rec.how == "revoked"
    running.progresses()


def test_a_registry_entry_with_garbage_is_reported_and_the_others_go_on(running):
    def garbage_entry(raw):
        raw["sites"] = {**raw["sites"], "zulu": "not an object", "bad name!": {}}
        raw["sites"]["charlie"] = {**raw["sites"]["charlie"], "drained": "no", "colour": "blue"}
        return raw

    running.edit(SITES, garbage_entry)
    running.warned(SITES, "has problems", "zulu")
    # "drained": "no" does not parse as a flag: charlie is taken as drained (the safe side) until fixed.
    order_from = len(running.sites.report().runs)
    running.progresses(turns=4)
    assert "charlie" not in running.sites.report().order[order_from + 1:]
    running.edit(SITES, lambda raw: {**raw, "sites": {**raw["sites"],
                                                      "charlie": {**raw["sites"]["charlie"], "drained": False}}})
    wait_until("charlie's turn again", lambda: "charlie" in running.sites.report().order[order_from:],
               timeout_s=6 * STALE_S)
    stored = running.store.get(SITES)["sites"]
    assert stored["zulu"] == "not an object" and stored["charlie"]["colour"] == "blue"  # kept, not rewritten


@pytest.mark.parametrize(
    "change, needle",
    [(lambda raw: {**raw, "state": 42, "beat": "many"}, "field 'state'"),
     (lambda raw: {"_id": raw["_id"], "_rev": raw["_rev"], "garbage": True}, None)],
    ids=["wrong-types", "fields-missing"],
)
def test_a_heartbeat_with_garbage_is_reported_and_rewritten_by_its_site(running, change, needle):
    running.edit(docs.heartbeat_id("bravo"), change)
    if needle is not None:
        running.warned(docs.heartbeat_id("bravo"), needle)

    def rewritten():
        hb, problems = docs.parse_heartbeat(running.store.get(docs.heartbeat_id("bravo")), "bravo")
        return hb is not None and not problems and hb.state is not None
    wait_until("bravo rewriting its heartbeat", rewritten, timeout_s=2 * STALE_S)
    running.progresses()


def test_a_turn_record_with_garbage_changes_nothing(running):
    done = [int(r.turn) for r in running.sites.report().runs if r.end_ns is not None]
    target = docs.turn_record_id(done[0])
    running.edit(target, lambda raw: {**raw, "turn": "first", "site": ["?"], "exit_code": "zero",
                                      "hand_edited": True})
    running.progresses()
    stored = running.store.get(target)
    assert stored["turn"] == "first" and stored["hand_edited"] is True  # left as the admin wrote it
