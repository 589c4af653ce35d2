"""The server-side rules, without a server: the validate_doc_update function run by node.

The function is evaluated the way the servers do (``return`` + its text) and
fed documents made by the protocol's own functions (election, scheduler,
turns), so every write an agent makes is checked against the rules, and
table rows of writes a site must not make are checked to be refused. A
seeded fuzz run checks that no document, however broken, makes the function
throw anything but a refusal (anything else is a 500 for the writer).
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
from dataclasses import dataclass, replace
from typing import Any, Iterator, Optional

import pytest

from enqueue import documents as docs
from enqueue import cli, election, failures, records, security, turns
from enqueue.documents import DONE, GRANTED, RUNNING, WAITING, Heartbeat, LeaderDoc, SiteEntry, TurnRecord
from enqueue.errors import ConfigError, Conflict
from enqueue.scheduler import plan

NODE = shutil.which("node")
needs_node = pytest.mark.skipif(NODE is None, reason="node is needed to run the validation function")

NOW = "2026-01-01 00:00:00"
LEADER_ID = "enqueue_leader"
SITES_ID = "enqueue_sites"
ABC = ("alpha", "bravo", "charlie")

_HARNESS = r"""
const fs = require("fs");
const input = JSON.parse(fs.readFileSync(0, "utf8"));
const validate = new Function("return " + input.source.replace(/;\s*$/, ""))();
const results = input.cases.map(function (c) {
  try {
    validate(c[0], c[1], c[2], c[3]);
    return {ok: true};
  } catch (e) {
    if (e !== null && typeof e === "object" && typeof e.forbidden === "string") {
      return {forbidden: e.forbidden};
    }
    return {error: String(e)};
  }
});
process.stdout.write(JSON.stringify(results));
"""


def run_validator(cases: list[tuple[Any, Any, Any, Any]], source: Optional[str] = None) -> list[dict]:
    """Judge (newDoc, oldDoc, userCtx, secObj) tuples in one node process."""
    payload = json.dumps({"source": source or security.validator_source(), "cases": cases})
    done = subprocess.run([NODE, "-e", _HARNESS], input=payload, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def site(name: str) -> dict:
    return {"db": "x", "name": name, "roles": ["enqueue_site"]}


ADMIN = {"db": "x", "name": "boss", "roles": ["enqueue_admin"]}
SERVER_ADMIN = {"db": "x", "name": "root", "roles": ["_admin"]}
NOBODY = {"db": "x", "name": None, "roles": []}
SECURITY = security.security_object(None, site_role="enqueue_site", admin_role="enqueue_admin")


def stored(doc: LeaderDoc) -> dict:
    return docs.render_leader(doc)


def leader_doc(**fields: Any) -> LeaderDoc:
    base = dict(doc_id=LEADER_ID, rev="5-abc", leader="alpha", leader_term=3, running="bravo", status=RUNNING,
                turn=7, rotation=ABC, updated_by="alpha", updated_at=NOW)
    base.update(fields)
    return LeaderDoc(**base)


def edit(doc: LeaderDoc, **fields: Any) -> dict:
    """The stored form of ``doc`` with raw fields overwritten (for writes no agent would make)."""
    out = stored(doc)
    out.update(fields)
    return out


def registry(entries: dict) -> dict:
    return {"_id": SITES_ID, "_rev": "2-s", "type": "enqueue_sites", "schema": 1, "sites": entries}


def fresh(doc: dict) -> dict:
    """``doc`` as a write that creates it: no revision."""
    return {k: v for k, v in doc.items() if k != "_rev"}


def entry(name: str, **extra: Any) -> dict:
    return {"heartbeat_doc": docs.heartbeat_id(name), "drained": False, **extra}


BRAVO_ENTRY = entry("bravo", added_at=NOW, updated_by="admin:ops@h")
# What an agent writes when its command failed three turns in a row (enqueue.failures).
SELF_DRAINED = failures.self_drained_entry(BRAVO_ENTRY, "bravo", failures.FailureRun(3, 2, 41), NOW)


def world(sites=ABC, **overrides) -> dict:
    """Registry, heartbeats and staleness verdicts for the scheduler, everyone waiting and alive."""
    reg = {s: SiteEntry(name=s, heartbeat_doc=docs.heartbeat_id(s)) for s in sites}
    hbs = {s: Heartbeat(site=s, state=WAITING) for s in sites}
    stale = {s: False for s in sites}
    stale.update(overrides.get("stale", {}))
    return {"registry": reg, "heartbeats": hbs, "stale": stale}


def leader_plan(doc: LeaderDoc, me: str = "alpha", **world_overrides) -> dict:
    w = world(**world_overrides)
    p = plan(doc, w["registry"], w["heartbeats"], w["stale"], me, NOW)
    assert p is not None
    return stored(p.doc)


def finished(doc: LeaderDoc, me: str, repeat: bool, carried: Optional[TurnRecord] = None) -> dict:
    """What the agent writes to finish its turn: done, passed on, carrying its record of the turn."""
    rec = carried or TurnRecord(turn=doc.turn, site=me, how="exited", exit_code=0, ended_at=NOW, duration_s=1.0)
    new, _ = turns.finish(doc, me, 0, "exited", repeat, NOW, record=rec)
    return stored(new)


def copied(rec: dict, copier: str) -> dict:
    """The record a leader doc carried, as the next holder stores it."""
    return dict(rec, copied_by=copier)


def repaired(raw: dict, me: str, turn: int) -> dict:
    """What the agent writes over a leader doc that does not parse (Leadership.repair in enqueue.leadership)."""
    fresh = replace(
        docs.new_leader_doc(LEADER_ID),
        rev=raw.get("_rev"),
        leader=me,
        turn=turn,
        last_how="repaired",
        updated_by=me,
        updated_at=NOW,
        raw={"repaired_from": {k: v for k, v in raw.items() if not k.startswith("_")}},
    )
    return stored(fresh)


def record(turn: int, site_name: str, leader: Optional[str], how: str = "exited", exit_code: Optional[int] = 0) -> dict:
    return docs.render_turn_record(TurnRecord(turn=turn, site=site_name, how=how, exit_code=exit_code, leader=leader))


def with_report(rec: dict, site_name: str) -> dict:
    out = dict(rec, _rev="1-r")
    out["runner_report"] = {"site": site_name, "how": "exited", "exit_code": 0, "ended_at": NOW, "duration_s": 1.0}
    return out


class _OneRecord:
    """The store ``records.write_once`` sees when ``old`` stands under its record's id: keeps what it writes."""

    def __init__(self, old: dict) -> None:
        self.old = old
        self.written: Optional[dict] = None

    def get(self, doc_id: str) -> Optional[dict]:
        return dict(self.old) if doc_id == self.old["_id"] else None

    def put(self, doc: dict) -> str:
        if doc.get("_rev") != self.old.get("_rev"):
            raise Conflict(f"{doc['_id']}: conflict")
        self.written = doc
        return "2-w"


def completed(old: dict, rec: TurnRecord, me: str) -> dict:
    """What site ``me`` writes over ``old`` when it records ``rec`` (enqueue.records.write_once)."""
    store = _OneRecord(old)
    records.write_once(store, rec, me)  # type: ignore[arg-type]
    assert store.written is not None, "write_once added nothing"
    return store.written


# A leader that died before its compare-and-swap left this; bravo then confirmed turn 7 and ran it.
NOT_STARTED = dict(record(7, "bravo", "alpha", how="not started", exit_code=None), _rev="1-r")
STARTED_AT = "2026-01-01 00:00:01"
REVOKED_BY_CHARLIE = TurnRecord(turn=7, site="bravo", how="revoked", leader="charlie", started_at=STARTED_AT,
                                ended_at=NOW, note="bravo is stale")
WITH_REVOKERS_WORD = completed(NOT_STARTED, REVOKED_BY_CHARLIE, "charlie")


def with_revokers_word(**fields: Any) -> dict:
    """WITH_REVOKERS_WORD with fields of its revoker's report overwritten (None removes one)."""
    report = {k: v for k, v in {**WITH_REVOKERS_WORD["revoker_report"], **fields}.items() if v is not None}
    return dict(WITH_REVOKERS_WORD, revoker_report=report)


HEX = "0123456789abcdef" * 2  # a revision id as CouchDB makes them: 32 hex digits


def as_couchdb_update(new: dict, old: dict) -> tuple[dict, dict]:
    """An ordinary update as CouchDB 3.4.3 hands it to the function: both carry the replaced revision's history."""
    start, rev_id = old["_rev"].split("-", 1)
    history = {"start": int(start), "ids": [rev_id]}
    return dict(new, _rev=old["_rev"], _revisions=history), dict(old, _revisions=history)


def replicated(new: dict, rev: str, *ancestors: str) -> dict:
    """``new`` written with ``new_edits: false``: it names its own revision and a history of the writer's choosing."""
    start, rev_id = rev.split("-", 1)
    return dict(new, _rev=rev, _revisions={"start": int(start), "ids": [rev_id, *ancestors]})


@dataclass(frozen=True)
class Case:
    name: str
    new: Any
    old: Any
    user: Any
    expect: str  # "ok", or a piece of the refusal's text
    sec: Any = None  # the _security object; SECURITY when None

    def args(self) -> tuple:
        return (self.new, self.old, self.user, SECURITY if self.sec is None else self.sec)


GRANTED_BRAVO = leader_doc(status=GRANTED)
RUNNING_BRAVO = leader_doc()
IDLE_DOC = leader_doc(running="bravo", status=DONE, turn=7)
GARBAGE_LEADER = {"_id": LEADER_ID, "_rev": "9-g", "leader": "alpha", "status": "exploded", "turn": 12}
RECORD_BY_LEADER = record(7, "bravo", "alpha", how="revoked", exit_code=None)

ALLOWED = [
    # Election.
    Case("claim for itself", stored(election.claim(RUNNING_BRAVO, "charlie", NOW)), stored(RUNNING_BRAVO), site("charlie"), "ok"),
    Case("claim when nobody leads", stored(election.claim(leader_doc(leader=None), "bravo", NOW)),
         stored(leader_doc(leader=None)), site("bravo"), "ok"),
    Case("resign itself", stored(election.resign(RUNNING_BRAVO, "alpha", NOW)), stored(RUNNING_BRAVO), site("alpha"), "ok"),
    # The holder's own turn.
    Case("confirm its grant", stored(turns.confirm(GRANTED_BRAVO, "bravo", NOW)), stored(GRANTED_BRAVO), site("bravo"), "ok"),
    Case("finish, repeat, pass to successor", finished(RUNNING_BRAVO, "bravo", True), stored(RUNNING_BRAVO), site("bravo"), "ok"),
    Case("finish, leave rotation, pass on", finished(RUNNING_BRAVO, "bravo", False), stored(RUNNING_BRAVO), site("bravo"), "ok"),
    # A turn started on its grant alone stays granted while it runs; given back, or an earlier agent's, it ends so too.
    Case("finish a turn started on its grant", finished(GRANTED_BRAVO, "bravo", True), stored(GRANTED_BRAVO),
         site("bravo"), "ok"),
    Case("finish wraps around", finished(leader_doc(running="charlie"), "charlie", True),
         stored(leader_doc(running="charlie")), site("charlie"), "ok"),
    Case("finish alone, repeating: itself again", finished(leader_doc(rotation=("bravo",)), "bravo", True),
         stored(leader_doc(rotation=("bravo",))), site("bravo"), "ok"),
    Case("finish alone, not repeating: nobody", finished(leader_doc(rotation=("bravo",)), "bravo", False),
         stored(leader_doc(rotation=("bravo",))), site("bravo"), "ok"),
    Case("finish while paused: no grant", finished(leader_doc(paused=True, paused_reason="x"), "bravo", True),
         stored(leader_doc(paused=True, paused_reason="x")), site("bravo"), "ok"),
    Case("finish after the leader dropped it", finished(leader_doc(rotation=("alpha", "charlie")), "bravo", True),
         stored(leader_doc(rotation=("alpha", "charlie"))), site("bravo"), "ok"),
    Case("finish clears skip_turn", finished(leader_doc(skip_turn=7), "bravo", True),
         stored(leader_doc(skip_turn=7)), site("bravo"), "ok"),
    Case("finish as leader and holder", finished(leader_doc(running="alpha"), "alpha", True),
         stored(leader_doc(running="alpha")), site("alpha"), "ok"),
    Case("finish keeps an admin's extra field", finished(leader_doc(raw={"paused_by": "admin:x"}), "bravo", True),
         stored(leader_doc(raw={"paused_by": "admin:x"})), site("bravo"), "ok"),
    # The leader (scheduler.plan).
    Case("leader grants", leader_plan(IDLE_DOC), stored(IDLE_DOC), site("alpha"), "ok"),
    Case("leader grants itself", leader_plan(leader_doc(running="charlie", status=DONE)),
         stored(leader_doc(running="charlie", status=DONE)), site("alpha"), "ok"),
    Case("leader revokes a stale holder and grants", leader_plan(RUNNING_BRAVO, stale={"bravo": True}),
         stored(RUNNING_BRAVO), site("alpha"), "ok"),
    Case("leader revokes while paused, grants nothing", leader_plan(leader_doc(paused=True), stale={"bravo": True}),
         stored(leader_doc(paused=True)), site("alpha"), "ok"),
    Case("leader publishes the rotation", leader_plan(leader_doc(rotation=("alpha",))),
         stored(leader_doc(rotation=("alpha",))), site("alpha"), "ok"),
    Case("leader re-grants a stale grant", leader_plan(GRANTED_BRAVO, stale={"bravo": True}),
         stored(GRANTED_BRAVO), site("alpha"), "ok"),
    # Creation and repair.
    Case("an admin creates the leader doc", stored(docs.new_leader_doc(LEADER_ID)), None, ADMIN, "ok"),
    Case("a server admin creates the leader doc", stored(docs.new_leader_doc(LEADER_ID)), None, SERVER_ADMIN, "ok"),
    Case("an admin rebuilds a deleted leader doc", repaired({}, "admin", 12), None, ADMIN, "ok"),
    Case("repair a leader doc that does not parse", repaired(GARBAGE_LEADER, "bravo", 12), GARBAGE_LEADER, site("bravo"), "ok"),
    Case("repair keeps an admin's pause", dict(repaired(dict(GARBAGE_LEADER, paused=True), "bravo", 12), paused=True),
         dict(GARBAGE_LEADER, paused=True), site("bravo"), "ok"),
    # The registry.
    Case("create the registry", docs.render_sites(docs.new_sites_doc(SITES_ID)), None, site("bravo"), "ok"),
    Case("create the registry with itself", fresh(registry({"bravo": entry("bravo", added_at=NOW)})), None,
         site("bravo"), "ok"),
    Case("add itself", registry({"alpha": entry("alpha", drained=True, note="x"), "bravo": entry("bravo")}),
         registry({"alpha": entry("alpha", drained=True, note="x")}), site("bravo"), "ok"),
    Case("add itself, drained absent", registry({"bravo": {"heartbeat_doc": docs.heartbeat_id("bravo")}}),
         registry({}), site("bravo"), "ok"),
    Case("replace its own entry that does not parse", registry({"bravo": entry("bravo")}),
         registry({"bravo": "junk"}), site("bravo"), "ok"),
    Case("rebuild a registry that does not parse",
         dict(registry({"bravo": entry("bravo")}), _rev="4-j", repaired_from={"sites": 5}),
         {"_id": SITES_ID, "_rev": "4-j", "sites": 5}, site("bravo"), "ok"),
    Case("drain itself after failed turns", registry({"alpha": entry("alpha"), "bravo": SELF_DRAINED}),
         registry({"alpha": entry("alpha"), "bravo": BRAVO_ENTRY}), site("bravo"), "ok"),
    Case("drain itself after failed starts, no exit code", registry({"bravo": failures.self_drained_entry(
         BRAVO_ENTRY, "bravo", failures.FailureRun(2, None, 9), NOW)}), registry({"bravo": BRAVO_ENTRY}),
         site("bravo"), "ok"),
    Case("rewrite the registry unchanged", registry({"alpha": entry("alpha")}), registry({"alpha": entry("alpha")}),
         site("bravo"), "ok"),
    # Heartbeats and records.
    Case("own heartbeat", docs.render_heartbeat(Heartbeat(site="bravo", state=WAITING, beat=3)), None, site("bravo"), "ok"),
    Case("own heartbeat over an admin's edit", docs.render_heartbeat(Heartbeat(site="bravo", state=WAITING, rev="4-h")),
         {"_id": docs.heartbeat_id("bravo"), "_rev": "4-h", "site": "someone"}, site("bravo"), "ok"),
    Case("record of its own turn", record(7, "bravo", "alpha"), None, site("bravo"), "ok"),
    Case("record of an abandoned turn", record(7, "bravo", None), None, site("bravo"), "ok"),
    Case("leader records a turn it took away", RECORD_BY_LEADER, None, site("alpha"), "ok"),
    Case("next holder stores the record the leader doc carried", copied(record(7, "bravo", "alpha"), "charlie"),
         None, site("charlie"), "ok"),
    Case("next holder adds the carried runner's word to a leader's record", dict(with_report(RECORD_BY_LEADER,
         "bravo"), runner_report=dict(with_report(RECORD_BY_LEADER, "bravo")["runner_report"], copied_by="charlie")),
         dict(RECORD_BY_LEADER, _rev="1-r"), site("charlie"), "ok"),
    Case("runner reports on another site's copy of its record", with_report(copied(record(7, "bravo", "alpha"),
         "charlie"), "bravo"), dict(copied(record(7, "bravo", "alpha"), "charlie"), _rev="1-r"), site("bravo"), "ok"),
    Case("runner adds its report", with_report(RECORD_BY_LEADER, "bravo"), dict(RECORD_BY_LEADER, _rev="1-r"),
         site("bravo"), "ok"),
    Case("the widest turn number", record(docs.MAX_TURN, "bravo", None), None, site("bravo"), "ok"),
    Case("leader records a grant that never started", record(7, "bravo", "alpha", how="not started", exit_code=None),
         None, site("alpha"), "ok"),
    Case("a repair records the turn it displaced, naming its holder",
         record(7, "bravo", "alpha", how="repaired", exit_code=None), None, site("alpha"), "ok"),
    Case("the runner adds its report to a repair's record of its turn",
         with_report(record(7, "bravo", "alpha", how="repaired", exit_code=None), "bravo"),
         dict(record(7, "bravo", "alpha", how="repaired", exit_code=None), _rev="1-r"), site("bravo"), "ok"),
    Case("a runner disputes a record naming another site", with_report(record(7, "charlie", "alpha"), "bravo"),
         dict(record(7, "charlie", "alpha"), _rev="1-r"), site("bravo"), "ok"),
    Case("a revoker adds its word to a dead leader's 'not started' of a turn it read as started",
         *as_couchdb_update(WITH_REVOKERS_WORD, NOT_STARTED), site("charlie"), "ok"),
    Case("a repairer adds its word to a dead leader's 'not started' of a turn it read as started",
         *as_couchdb_update(completed(NOT_STARTED, replace(REVOKED_BY_CHARLIE, how="repaired"), "charlie"),
                            NOT_STARTED), site("charlie"), "ok"),
    Case("the runner adds its report after the revoker's word",
         *as_couchdb_update(completed(dict(WITH_REVOKERS_WORD, _rev="2-w"), TurnRecord(
             turn=7, site="bravo", how="abandoned", host="hostB", ended_at=NOW), "bravo"),
             dict(WITH_REVOKERS_WORD, _rev="2-w")), site("bravo"), "ok"),
    Case("repair at the highest turn its revisions allow", repaired(dict(GARBAGE_LEADER, turn="x"), "bravo", 9),
         dict(GARBAGE_LEADER, turn="x"), site("bravo"), "ok"),
    # The shapes CouchDB hands over (with _revisions).
    Case("CouchDB: an ordinary claim", *as_couchdb_update(stored(election.claim(RUNNING_BRAVO, "charlie", NOW)),
                                                          stored(RUNNING_BRAVO)), site("charlie"), "ok"),
    Case("CouchDB: an ordinary heartbeat", *as_couchdb_update(docs.render_heartbeat(Heartbeat(site="bravo", beat=4)),
                                                              docs.render_heartbeat(Heartbeat(site="bravo", rev="3-h"))),
         site("bravo"), "ok"),
    Case("an admin replicates", replicated(stored(leader_doc(leader="alpha", leader_term=1)), "99-" + HEX), None,
         ADMIN, "ok"),
    # Admins.
    Case("admin role pauses", edit(RUNNING_BRAVO, paused=True), stored(RUNNING_BRAVO), ADMIN, "ok"),
    Case("server admin writes garbage", {"_id": LEADER_ID, "x": 1}, stored(RUNNING_BRAVO), SERVER_ADMIN, "ok"),
    Case("admin deletes", {"_id": "enqueue_turn:0000000001", "_deleted": True}, record(1, "a", None), ADMIN, "ok"),
    Case("admin writes an unknown document", {"_id": "notes"}, None, ADMIN, "ok"),
    Case("database admin by name", {"_id": "notes"}, None, {"name": "dba", "roles": []}, "ok",
         sec={"admins": {"names": ["dba"]}}),
    Case("database admin by role", {"_id": "notes"}, None, {"name": "x", "roles": ["ops"]}, "ok",
         sec={"admins": {"roles": ["ops"]}}),
]

FORBIDDEN = [
    # Who.
    Case("no role", docs.render_heartbeat(Heartbeat(site="bravo")), None, NOBODY, "only enqueue sites"),
    Case("no user context at all", {"_id": "x"}, None, None, "only enqueue sites"),
    Case("a site account named unlike a site", {"_id": "x"}, None, site("no good"), "valid site name"),
    Case("unknown document", {"_id": "notes", "x": 1}, None, site("bravo"), "not a document enqueue uses"),
    Case("design-like id", {"_id": "enqueue_leader_backup"}, None, site("bravo"), "not a document enqueue uses"),
    Case("delete own heartbeat", {"_id": docs.heartbeat_id("bravo"), "_rev": "2-h", "_deleted": True},
         {"_id": docs.heartbeat_id("bravo"), "_rev": "2-h", "site": "bravo"}, site("bravo"), "delete"),
    Case("delete a record", {"_id": "enqueue_turn:0000000007", "_rev": "1-r", "_deleted": True},
         dict(record(7, "bravo", None), _rev="1-r"), site("bravo"), "delete"),
    # Heartbeats.
    Case("another site's heartbeat", docs.render_heartbeat(Heartbeat(site="charlie")), None, site("bravo"), "own heartbeat"),
    Case("own heartbeat naming another site", dict(docs.render_heartbeat(Heartbeat(site="charlie")),
                                                   _id=docs.heartbeat_id("bravo")), None, site("bravo"), "'site' must be"),
    # Registry.
    Case("add another site", registry({"charlie": entry("charlie")}), registry({}), site("bravo"), "add only itself"),
    Case("add itself and another", registry({"bravo": entry("bravo"), "delta": entry("delta")}), registry({}),
         site("bravo"), "add only itself"),
    Case("undrain another site", registry({"alpha": entry("alpha")}), registry({"alpha": entry("alpha", drained=True)}),
         site("bravo"), "change no other entry"),
    Case("remove another site", registry({}), registry({"alpha": entry("alpha")}), site("bravo"), "may not remove"),
    Case("remove itself", registry({}), registry({"bravo": entry("bravo")}), site("bravo"), "may not remove"),
    Case("add itself drained", registry({"bravo": entry("bravo", drained=True)}), registry({}), site("bravo"), "drain"),
    Case("undrain itself", registry({"bravo": entry("bravo")}), registry({"bravo": entry("bravo", drained=True)}),
         site("bravo"), "may not change its registry entry"),
    Case("drain itself without saying why", registry({"bravo": entry("bravo", drained=True)}),
         registry({"bravo": entry("bravo")}), site("bravo"), "name itself in 'drained_by'"),
    Case("drain itself in an admin's name", registry({"bravo": dict(SELF_DRAINED, drained_by="admin:ops@h")}),
         registry({"bravo": BRAVO_ENTRY}), site("bravo"), "name itself in 'drained_by'"),
    Case("drain itself with no failed turn", registry({"bravo": dict(SELF_DRAINED, drained_failures=0)}),
         registry({"bravo": BRAVO_ENTRY}), site("bravo"), "'drained_failures', at least 1"),
    Case("drain itself with an endless reason", registry({"bravo": dict(SELF_DRAINED, drained_reason="x" * 501)}),
         registry({"bravo": BRAVO_ENTRY}), site("bravo"), "at most 500 characters"),
    Case("drain itself with a made-up exit code", registry({"bravo": dict(SELF_DRAINED, drained_exit_code="bad")}),
         registry({"bravo": BRAVO_ENTRY}), site("bravo"), "'drained_exit_code' must be an exit code"),
    Case("drain itself and move its heartbeat", registry({"bravo": dict(SELF_DRAINED, heartbeat_doc="x")}),
         registry({"bravo": BRAVO_ENTRY}), site("bravo"), "change no other field of its entry ('heartbeat_doc')"),
    Case("drain itself and drop a field", registry({"bravo": {k: v for k, v in SELF_DRAINED.items() if k != "added_at"}}),
         registry({"bravo": BRAVO_ENTRY}), site("bravo"), "remove no field of its entry ('added_at')"),
    Case("drain itself and another site", registry({"alpha": dict(SELF_DRAINED, drained_by="bravo",
                                                                    heartbeat_doc=docs.heartbeat_id("alpha")),
                                                    "bravo": SELF_DRAINED}),
         registry({"alpha": entry("alpha"), "bravo": BRAVO_ENTRY}), site("bravo"), "change no other entry"),
    Case("drain another site its way", registry({"alpha": failures.self_drained_entry(
         entry("alpha"), "bravo", failures.FailureRun(3, 1, 7), NOW)}), registry({"alpha": entry("alpha")}),
         site("bravo"), "change no other entry"),
    Case("change the reason it drained itself for", registry({"bravo": dict(SELF_DRAINED, drained_reason="fine")}),
         registry({"bravo": SELF_DRAINED}), site("bravo"), "only an admin undrains"),
    Case("undrain itself after draining itself", registry({"bravo": BRAVO_ENTRY}), registry({"bravo": SELF_DRAINED}),
         site("bravo"), "only an admin undrains"),
    Case("change its entry without draining", registry({"bravo": dict(BRAVO_ENTRY, added_at="later")}),
         registry({"bravo": BRAVO_ENTRY}), site("bravo"), "only to drain itself"),
    Case("own entry with another heartbeat", registry({"bravo": entry("charlie")}), registry({}), site("bravo"),
         "own heartbeat document"),
    Case("change an admin's field", dict(registry({}), note="mine"), dict(registry({}), note="admin's"),
         site("bravo"), "field 'note'"),
    Case("registry without sites", {"_id": SITES_ID, "_rev": "2-s", "sites": []}, registry({}), site("bravo"), "'sites' object"),
    Case("create a registry with another site", fresh(registry({"alpha": entry("alpha")})), None, site("bravo"),
         "add only itself"),
    # Leadership.
    Case("make another site leader", edit(RUNNING_BRAVO, leader="charlie", leader_term=4, updated_by="bravo"),
         stored(RUNNING_BRAVO),
         site("bravo"), "only itself leader"),
    Case("claim without a new term", edit(RUNNING_BRAVO, leader="charlie", updated_by="charlie"), stored(RUNNING_BRAVO),
         site("charlie"), "leader_term to 4"),
    Case("claim two terms ahead", edit(RUNNING_BRAVO, leader="charlie", leader_term=5, updated_by="charlie"),
         stored(RUNNING_BRAVO), site("charlie"), "leader_term to 4"),
    Case("claim and take the turn", edit(RUNNING_BRAVO, leader="charlie", leader_term=4, running="charlie",
                                         updated_by="charlie"), stored(RUNNING_BRAVO), site("charlie"), "leave the turn"),
    Case("depose the leader", edit(RUNNING_BRAVO, leader=None, updated_by="bravo"), stored(RUNNING_BRAVO), site("bravo"), "step down only itself"),
    Case("resign with a new term", edit(RUNNING_BRAVO, leader=None, leader_term=4), stored(RUNNING_BRAVO), site("alpha"),
         "keep leader_term"),
    Case("sign as another site", edit(RUNNING_BRAVO, updated_by="alpha", rotation=["alpha"]),
         stored(RUNNING_BRAVO), site("bravo"), "'updated_by' must name"),
    # Pausing and skipping.
    Case("pause", edit(IDLE_DOC, paused=True), stored(IDLE_DOC), site("alpha"), "only an admin may pause"),
    Case("resume", edit(leader_doc(paused=True), paused=False), stored(leader_doc(paused=True)), site("alpha"),
         "only an admin may pause"),
    Case("change the pause reason", edit(leader_doc(paused=True, paused_reason="a"), paused_reason="b"),
         stored(leader_doc(paused=True, paused_reason="a")), site("alpha"), "only an admin may pause"),
    Case("skip the running turn", edit(RUNNING_BRAVO, skip_turn=7, updated_by="charlie"), stored(RUNNING_BRAVO), site("charlie"), "skip_turn"),
    Case("a malformed pause flag", edit(IDLE_DOC, paused="no"), stored(IDLE_DOC), site("alpha"), "true or false"),
    # Granting.
    Case("grant while not leader", leader_plan(IDLE_DOC, me="charlie"), stored(IDLE_DOC), site("charlie"), "only the leader"),
    Case("leader grants while paused", edit(leader_doc(status=DONE, paused=True), turn=8, running="charlie",
                                             status=GRANTED), stored(leader_doc(status=DONE, paused=True)),
         site("alpha"), "only the leader"),
    Case("leader grants outside the rotation", edit(IDLE_DOC, turn=8, running="delta", status=GRANTED),
         stored(IDLE_DOC), site("alpha"), "only the leader"),
    Case("leader jumps two turns", edit(IDLE_DOC, turn=9, running="charlie", status=GRANTED), stored(IDLE_DOC),
         site("alpha"), "only the leader"),
    Case("leader moves a running turn", edit(RUNNING_BRAVO, running="charlie"), stored(RUNNING_BRAVO), site("alpha"),
         "only the leader"),
    Case("leader revives a done turn", edit(IDLE_DOC, status=RUNNING), stored(IDLE_DOC), site("alpha"),
         "mark running only the turn granted"),
    Case("rotation by a non-leader", edit(IDLE_DOC, rotation=["charlie"], updated_by="charlie"), stored(IDLE_DOC),
         site("charlie"), "only the leader"),
    Case("notes by a bystander", edit(IDLE_DOC, last_how="forged", updated_by="charlie"), stored(IDLE_DOC),
         site("charlie"), "only the leader or the site holding"),
    # Confirming.
    Case("confirm another site's grant", edit(GRANTED_BRAVO, status=RUNNING, updated_by="charlie"),
         stored(GRANTED_BRAVO), site("charlie"), "mark running only the turn granted to itself"),
    Case("take another site's grant", edit(GRANTED_BRAVO, status=RUNNING, running="charlie", updated_by="charlie"),
         stored(GRANTED_BRAVO), site("charlie"), "mark running only the turn granted to itself"),
    Case("confirm with another turn", edit(GRANTED_BRAVO, status=RUNNING, turn=8, updated_by="bravo"),
         stored(GRANTED_BRAVO), site("bravo"), "keeping its number"),
    Case("run without a grant", edit(leader_doc(status=DONE), status=RUNNING, updated_by="bravo"),
         stored(leader_doc(status=DONE)), site("bravo"), "mark running only the turn granted to itself"),
    # Finishing.
    Case("finish another site's turn", finished(RUNNING_BRAVO, "bravo", True) | {"updated_by": "charlie"},
         stored(RUNNING_BRAVO), site("charlie"), "successor"),
    Case("end another site's turn", edit(RUNNING_BRAVO, status=DONE, updated_by="charlie"), stored(RUNNING_BRAVO),
         site("charlie"), "mark done only its own turn"),
    Case("finish another site's granted turn", finished(GRANTED_BRAVO, "bravo", True) | {"updated_by": "charlie"},
         stored(GRANTED_BRAVO), site("charlie"), "only the leader grants"),
    Case("pass the turn to the wrong site", edit(RUNNING_BRAVO, status=GRANTED, turn=8, running="alpha",
                                                 updated_by="bravo"), stored(RUNNING_BRAVO), site("bravo"),
         "only to its successor in the rotation (charlie)"),
    Case("keep the turn though not alone", edit(RUNNING_BRAVO, status=GRANTED, turn=8, updated_by="bravo"),
         stored(RUNNING_BRAVO), site("bravo"), "successor"),
    Case("pass the turn while paused", finished(RUNNING_BRAVO, "bravo", True) | {"paused": True},
         stored(leader_doc(paused=True)), site("bravo"), "paused"),
    Case("finish and reorder the rotation", finished(RUNNING_BRAVO, "bravo", True) | {"rotation": ["bravo", "charlie"],
                                                                                       "running": "charlie"},
         stored(RUNNING_BRAVO), site("bravo"), "successor"),
    Case("finish and skip a turn number", finished(RUNNING_BRAVO, "bravo", True) | {"turn": 9},
         stored(RUNNING_BRAVO), site("bravo"), "only the leader grants"),
    Case("finish and remove an admin's field", finished(leader_doc(raw={"paused_by": "admin:x"}), "bravo", True)
         | {"paused_by": None}, stored(leader_doc(raw={"paused_by": "admin:x"})), site("bravo"), "field 'paused_by'"),
    Case("a leader doc that does not parse", edit(RUNNING_BRAVO, status="bogus"), stored(RUNNING_BRAVO), site("alpha"),
         "valid leader_term"),
    Case("a rotation with a site twice", edit(RUNNING_BRAVO, rotation=["alpha", "alpha"]), stored(RUNNING_BRAVO),
         site("alpha"), "distinct site names"),
    # Creation and repair.
    Case("rewrite with a grant", edit(docs.new_leader_doc(LEADER_ID), _rev="9-g", turn=13, running="bravo", status=GRANTED),
         GARBAGE_LEADER, site("bravo"), "may not grant"),
    Case("rewrite and pause", edit(docs.new_leader_doc(LEADER_ID), _rev="9-g", turn=12, paused=True), GARBAGE_LEADER,
         site("bravo"), "keep its paused"),
    Case("rewrite with another leader", edit(docs.new_leader_doc(LEADER_ID), _rev="9-g", turn=12, leader="alpha"), GARBAGE_LEADER,
         site("bravo"), "no leader, or the writing site"),
    Case("rewrite with extra fields", edit(docs.new_leader_doc(LEADER_ID), _rev="9-g", turn=12, owner="bravo"), GARBAGE_LEADER,
         site("bravo"), "field 'owner'"),
    Case("repair and drop an admin's pause", repaired(dict(GARBAGE_LEADER, paused=True), "bravo", 12),
         dict(GARBAGE_LEADER, paused=True), site("bravo"), "keep its paused"),
    Case("repair and lower the turn", repaired(GARBAGE_LEADER, "bravo", 3), GARBAGE_LEADER, site("bravo"),
         "lower its turn"),
    # Only an admin creates the leader doc: a deleted one is re-created without _rev, and the server then
    # shows the rules no old document, as for the first creation, so no rule could bound its turn.
    Case("create the leader doc", stored(docs.new_leader_doc(LEADER_ID)), None, site("bravo"),
         "[enqueue:admin-rebuilds-leader-doc]"),
    Case("recreate a missing leader doc", repaired({}, "bravo", 12), None, site("bravo"), "only an admin creates"),
    Case("recreate a deleted leader doc at turn 0", repaired({}, "bravo", 0), None, site("bravo"),
         "only an admin creates"),
    Case("overwrite a deleted leader doc", dict(stored(docs.new_leader_doc(LEADER_ID)), _rev="3-d"),
         {"_id": LEADER_ID, "_rev": "3-d", "_deleted": True}, site("bravo"), "only an admin creates"),
    Case("repair a garbled turn below the revision count", repaired(dict(GARBAGE_LEADER, turn="x"), "bravo", 0),
         dict(GARBAGE_LEADER, turn="x"), site("bravo"), "lower its turn below 9"),
    # Turn records.
    Case("record of another site's turn", record(7, "charlie", "alpha"), None, site("bravo"), "name the writing site"),
    Case("a carried runner's word in another copier's name", dict(with_report(RECORD_BY_LEADER, "bravo"),
         runner_report=dict(with_report(RECORD_BY_LEADER, "bravo")["runner_report"], copied_by="alpha")),
         dict(RECORD_BY_LEADER, _rev="1-r"), site("charlie"), "naming itself"),
    Case("copy in another site's name", copied(record(7, "bravo", "alpha"), "alpha"), None, site("charlie"),
         "name the writing site as 'copied_by'"),
    Case("copy with a report", with_report(copied(record(7, "bravo", "alpha"), "charlie"), "bravo") | {"_rev": None},
         None, site("charlie"), "holds no report"),
    Case("carry another site's record", finished(RUNNING_BRAVO, "bravo", True,
                                                 TurnRecord(turn=7, site="charlie", how="exited")),
         stored(RUNNING_BRAVO), site("bravo"), "'last_record' must be the finishing site's own record"),
    Case("carry a record of another turn", finished(RUNNING_BRAVO, "bravo", True,
                                                    TurnRecord(turn=6, site="bravo", how="exited")),
         stored(RUNNING_BRAVO), site("bravo"), "'last_record' must be the finishing site's own record"),
    Case("carry a copy", finished(RUNNING_BRAVO, "bravo", True,
                                  TurnRecord(turn=7, site="bravo", how="exited", copied_by="bravo")),
         stored(RUNNING_BRAVO), site("bravo"), "'last_record' must be the finishing site's own record"),
    Case("leader replaces the carried record", edit(leader_doc(running="charlie"), last_record=docs.record_fields(
        TurnRecord(turn=7, site="alpha", how="exited"))), stored(leader_doc(running="charlie")), site("alpha"),
         "changes only with the write that finishes"),
    Case("record under the wrong id", dict(record(7, "bravo", None), _id="enqueue_turn:0000000008"), None,
         site("bravo"), "id must be"),
    Case("record with an odd id", dict(record(7, "bravo", None), _id="enqueue_turn:7"), None, site("bravo"), "id must be"),
    Case("rewrite a record", dict(record(7, "bravo", None), _rev="1-r", exit_code=1),
         dict(record(7, "bravo", None), _rev="1-r"), site("bravo"), "written once"),
    Case("report on its own finished record", with_report(record(7, "bravo", None), "bravo"),
         dict(record(7, "bravo", None), _rev="1-r"), site("bravo"), "adds a report only to its leader's record"),
    Case("leader records another site's outcome", record(42, "bravo", "alpha", exit_code=0), None, site("alpha"),
         "only say that its leader took it away"),
    Case("leader records another site's exit code", record(42, "bravo", "alpha", how="revoked", exit_code=3), None,
         site("alpha"), "only say that its leader took it away"),
    Case("a turn number wider than the ids", dict(record(1, "bravo", None), _id="enqueue_turn:10000000000",
                                                  turn=docs.MAX_TURN + 1), None, site("bravo"), "id must be"),
    Case("grant beyond the widest turn", leader_plan(leader_doc(running="charlie", status=DONE, turn=docs.MAX_TURN)),
         stored(leader_doc(running="charlie", status=DONE, turn=docs.MAX_TURN)), site("alpha"), "at most 10 digits"),
    Case("repair and raise the turn", repaired(GARBAGE_LEADER, "bravo", 13), GARBAGE_LEADER, site("bravo"),
         "raise its turn beyond 12"),
    Case("repair at a turn a record made up", repaired(dict(GARBAGE_LEADER, turn="x"), "bravo", 9999999999),
         dict(GARBAGE_LEADER, turn="x"), site("bravo"), "raise its turn beyond 9"),
    Case("report naming another site", with_report(RECORD_BY_LEADER, "charlie"), dict(RECORD_BY_LEADER, _rev="1-r"),
         site("bravo"), "naming itself"),
    Case("report and change the record", dict(with_report(RECORD_BY_LEADER, "bravo"), how="fine"),
         dict(RECORD_BY_LEADER, _rev="1-r"), site("bravo"), "field 'how'"),
    Case("a second report", with_report(RECORD_BY_LEADER, "bravo"),
         with_report(RECORD_BY_LEADER, "bravo"), site("bravo"), "has its runner's report already"),
    Case("a revoker's word in another site's name", with_revokers_word(leader="delta"), NOT_STARTED,
         site("charlie"), "name the writing site as its 'leader'"),
    Case("a revoker's word on a record that says revoked", dict(WITH_REVOKERS_WORD, how="revoked"),
         dict(NOT_STARTED, how="revoked"), site("charlie"), "to a 'not started' record"),
    Case("a second revoker's word", with_revokers_word(leader="delta"), dict(WITH_REVOKERS_WORD, _rev="1-r"),
         site("delta"), "added once"),
    Case("a revoker's word after the runner's report", with_report(WITH_REVOKERS_WORD, "bravo"),
         with_report(NOT_STARTED, "bravo"), site("charlie"), "added once"),
    Case("remove the revoker's word", with_report(NOT_STARTED, "bravo"), dict(WITH_REVOKERS_WORD, _rev="1-r"),
         site("bravo"), "added once"),
    Case("a revoker's word on its own turn", with_revokers_word(leader="bravo"), NOT_STARTED, site("bravo"),
         "its own turn with a 'runner_report'"),
    Case("a revoker's word with no start", with_revokers_word(started_at=None), NOT_STARTED, site("charlie"),
         "when that turn started"),
    Case("a revoker's word of an outcome", with_revokers_word(how="exited"), NOT_STARTED, site("charlie"),
         "how 'revoked' or 'repaired'"),
    Case("a revoker's word with an exit code", with_revokers_word(exit_code=0), NOT_STARTED, site("charlie"),
         "field 'exit_code' in a revoker's report"),
    Case("a revoker's word and a changed record", dict(WITH_REVOKERS_WORD, how="revoked"), NOT_STARTED,
         site("charlie"), "field 'how'"),
    Case("a new record with a revoker's word", dict(record(7, "bravo", "charlie", how="revoked", exit_code=None),
                                                    revoker_report=WITH_REVOKERS_WORD["revoker_report"]), None,
         site("charlie"), "only ever added to a stored 'not started' record"),
    # Replicated writes (_bulk_docs with new_edits: false), in the shapes CouchDB 3.4.3 hands over.
    Case("graft a leader doc onto a made-up history",
         replicated(stored(leader_doc(leader="alpha", leader_term=1, running=None, status=DONE, turn=1,
                                      updated_by="alpha", rev=None)), "99-" + HEX), None, site("alpha"),
         "current revision"),
    Case("graft a leader doc that resets the turn and the pause",
         replicated(stored(leader_doc(leader=None, leader_term=0, running=None, status=DONE, turn=0, updated_by="bravo",
                                      rev=None)), "12-" + HEX), None, site("bravo"), "current revision"),
    Case("graft a registry of one site", replicated(fresh(registry({"alpha": entry("alpha")})), "40-" + HEX), None,
         site("alpha"), "current revision"),
    Case("graft a turn record", replicated(record(42, "bravo", None), "7-" + HEX), None, site("bravo"),
         "current revision"),
    Case("replicate a claim onto the current revision",
         replicated(stored(election.claim(RUNNING_BRAVO, "charlie", NOW)), "6-" + HEX, "abc"),
         as_couchdb_update(stored(RUNNING_BRAVO), stored(RUNNING_BRAVO))[1], site("charlie"), "current revision"),
    Case("replicate onto an old revision", replicated(stored(election.claim(leader_doc(leader=None), "charlie", NOW)),
                                                       "9-" + HEX, "2-old"),
         stored(leader_doc(leader=None, rev="2-old")), site("charlie"), "current revision"),
    Case("history that does not name the revision",
         dict(as_couchdb_update(stored(election.claim(RUNNING_BRAVO, "charlie", NOW)), stored(RUNNING_BRAVO))[0],
              _revisions={"start": 99, "ids": [HEX]}), stored(RUNNING_BRAVO), site("charlie"), "_revisions must name"),
    Case("pouchdb-server: a write that lost a race", stored(election.claim(leader_doc(rev="4-old"), "charlie", NOW)),
         stored(RUNNING_BRAVO), site("charlie"), "current revision"),
]


@pytest.fixture(scope="module")
def verdicts() -> dict[str, dict]:
    cases = ALLOWED + FORBIDDEN
    names = [c.name for c in cases]
    assert len(names) == len(set(names)), "case names must be unique"
    return dict(zip(names, run_validator([c.args() for c in cases])))


@needs_node
@pytest.mark.parametrize("case", ALLOWED, ids=lambda c: c.name)
def test_every_write_the_protocol_makes_is_allowed(verdicts, case: Case) -> None:
    assert verdicts[case.name] == {"ok": True}


@needs_node
@pytest.mark.parametrize("case", FORBIDDEN, ids=lambda c: c.name)
def test_writes_a_site_may_not_make_are_refused(verdicts, case: Case) -> None:
    verdict = verdicts[case.name]
    assert "forbidden" in verdict, verdict
    assert case.expect in verdict["forbidden"], verdict["forbidden"]


@needs_node
def test_every_handoff_in_a_rotation_of_any_shape_is_allowed_and_only_to_the_successor() -> None:
    """turns.finish for every holder, rotation, repeat and pause, and every wrong successor."""
    names = ("alpha", "bravo", "charlie", "delta")
    cases, expected = [], []
    for mask in range(1 << len(names)):
        rotation = tuple(n for i, n in enumerate(names) if mask >> i & 1)
        for me in names:
            for repeat in (True, False):
                for paused in (True, False):
                    old = leader_doc(leader="zulu", running=me, rotation=rotation, paused=paused)
                    new, nxt = turns.finish(old, me, 0, "exited", repeat, NOW)
                    cases.append((stored(new), stored(old), site(me), SECURITY))
                    expected.append(True)
                    if nxt is None:
                        continue
                    for other in names:
                        if other != nxt:
                            cases.append((stored(replace(new, running=other)), stored(old), site(me), SECURITY))
                            expected.append(False)
    verdicts = run_validator(cases)
    for (new, old, user, _), verdict, ok in zip(cases, verdicts, expected):
        assert ("ok" in verdict) == ok, (user["name"], old["rotation"], new["running"], verdict)


@needs_node
def test_broken_documents_are_refused_or_allowed_but_never_crash_the_function() -> None:
    rng = random.Random(5)
    pool: list[Any] = [None, True, False, 0, -1, 1.5, 7, 2**53, "", "alpha", "bravo", "no good", "granted",
                       "running", "done", [], ["alpha"], ["bravo", "bravo"], [1, None], {}, {"site": "bravo"},
                       {"alpha": 1}, {"bravo": {"heartbeat_doc": 5}}]
    fields = ["leader", "leader_term", "running", "status", "turn", "rotation", "paused", "paused_reason",
              "skip_turn", "updated_by", "site", "sites", "runner_report", "revoker_report", "repaired_from", "drained",
              "note"]
    ids = [LEADER_ID, SITES_ID, docs.heartbeat_id("bravo"), docs.turn_record_id(7), "enqueue_turn:", "x", 5, None]
    users: list[Any] = [site("bravo"), site("alpha"), ADMIN, NOBODY, None, {}, {"name": 5, "roles": "enqueue_site"},
                        {"name": "bravo", "roles": ["enqueue_site", None]}]

    def random_doc(doc_id: Any) -> Any:
        if rng.random() < 0.05:
            return rng.choice([None, [], "text", 3])
        doc = {"_id": doc_id, "_rev": "1-x"}
        for field in fields:
            if rng.random() < 0.5:
                doc[field] = rng.choice(pool)
        if rng.random() < 0.05:
            doc["_deleted"] = True
        return doc

    cases = []
    for _ in range(3000):
        doc_id = rng.choice(ids)
        new = random_doc(doc_id)
        old = None if rng.random() < 0.2 else random_doc(doc_id)
        sec = rng.choice([SECURITY, None, {}, {"admins": {"names": None, "roles": 5}}])
        cases.append((new, old, rng.choice(users), sec))
    # Legit writes with one field broken.
    base_new, base_old = finished(RUNNING_BRAVO, "bravo", True), stored(RUNNING_BRAVO)
    for field in fields:
        for value in pool:
            cases.append((dict(base_new, **{field: value}), base_old, site("bravo"), SECURITY))
            cases.append((base_new, dict(base_old, **{field: value}), site("bravo"), SECURITY))
    crashes = [(case, verdict) for case, verdict in zip(cases, run_validator(cases)) if "error" in verdict]
    assert crashes == [], crashes[:3]


# ---------------------------------------------------------------------------- the Python side


@needs_node
def test_the_installed_source_is_one_function_with_the_settings_filled_in() -> None:
    source = security.validator_source(site_role="s", admin_role="a", sets=[security.DocumentSet("L", "S")])
    assert source.startswith("function (newDoc, oldDoc, userCtx, secObj) {")
    assert ('{"site_role": "s", "admin_role": "a", "sets": [{"leader_doc": "L", "sites_doc": "S", '
            '"turn_prefix": "L:turn:", "heartbeat_prefix": "L:heartbeat:"}]}') in source
    cases = [({"_id": "L", "x": 1}, None, {"name": "bravo", "roles": ["s"]}, {}),
             ({"_id": "x"}, None, {"name": "bravo", "roles": ["a"]}, {}),
             ({"_id": "x"}, None, {"name": "bravo", "roles": ["enqueue_site"]}, {})]
    first, second, third = run_validator(cases, source)
    assert "valid leader_term" in first["forbidden"]  # "L" is the leader doc now
    assert second == {"ok": True}
    assert "only enqueue sites (role s)" in third["forbidden"]


def test_security_object_adds_the_roles_and_keeps_what_an_operator_set() -> None:
    existing = {"admins": {"names": ["ops"], "roles": []}, "members": {"names": ["reader"]}, "other": 1}
    out = security.security_object(existing, site_role="site", admin_role="adm")
    assert out == {"admins": {"names": ["ops"], "roles": ["adm"]},
                   "members": {"names": ["reader"], "roles": ["site"]}, "other": 1}
    assert security.security_object(out, site_role="site", admin_role="adm") == out
    assert security.security_object(None, site_role="s", admin_role="a") == {
        "admins": {"names": [], "roles": ["a"]}, "members": {"names": [], "roles": ["s"]}}


def test_design_document_is_stable_and_keeps_the_revision() -> None:
    kw = dict(site_role="s", admin_role="a", sets=[security.DocumentSet("L", "S")])
    first = security.design_document(None, **kw)
    assert first["_id"] == security.DESIGN_DOC_ID and "_rev" not in first
    again = security.design_document(dict(first, _rev="1-x"), **kw)
    assert again == dict(first, _rev="1-x")
    assert again["enqueue"]["site_role"] == "s"


class FakeStore:
    """Just enough of a store for ``install``: documents and a security object."""

    def __init__(self) -> None:
        self.docs: dict[str, dict] = {}
        self.security: dict = {}
        self.writes = 0

    def get(self, doc_id: str) -> Optional[dict]:
        doc = self.docs.get(doc_id)
        return dict(doc) if doc else None

    def put(self, doc: dict) -> str:
        self.writes += 1
        rev = f"{self.writes}-x"
        self.docs[doc["_id"]] = dict(doc, _rev=rev)
        return rev

    def get_security(self) -> dict:
        return json.loads(json.dumps(self.security))

    def put_security(self, obj: dict) -> None:
        self.writes += 1
        self.security = obj


def test_install_twice_writes_once() -> None:
    store = FakeStore()
    first = security.install(store)
    assert first[0].startswith("installed design document") and "now have role" in first[1]
    writes = store.writes
    second = security.install(store)
    assert store.writes == writes
    assert "up to date" in second[0] and "unchanged" in second[1]
    assert security.installed_settings(store)["site_role"] == "enqueue_site"


@needs_node
def test_every_document_set_installed_stays_usable_and_records_never_collide() -> None:
    """``init`` then ``init -L test_leader -S test_sites``: both sets work for the sites, each with its own records."""
    store = FakeStore()
    security.install(store)
    lines = security.install(store, leader_doc="test_leader", sites_doc="test_sites")
    assert "document sets enqueue_leader/enqueue_sites, test_leader/test_sites" in lines[0]
    source = store.docs[security.DESIGN_DOC_ID]["validate_doc_update"]
    other = docs.turn_prefix("test_leader")
    assert other != docs.TURN_PREFIX and not other.startswith(docs.TURN_PREFIX)
    assert docs.turn_record_id(7, other) != docs.turn_record_id(7)
    test_leader = leader_doc(doc_id="test_leader", rev=None)
    cases = [
        (stored(election.claim(RUNNING_BRAVO, "charlie", NOW)), stored(RUNNING_BRAVO), site("charlie"), SECURITY),
        (stored(election.claim(test_leader, "charlie", NOW)), stored(test_leader), site("charlie"), SECURITY),
        (fresh(dict(registry({"bravo": dict(entry("bravo"), heartbeat_doc=docs.heartbeat_id("bravo", "test_leader"))}),
                    _id="test_sites")), None, site("bravo"), SECURITY),
        (docs.render_turn_record(TurnRecord(turn=7, site="bravo", how="exited"), other), None, site("bravo"), SECURITY),
        (docs.render_turn_record(TurnRecord(turn=7, site="bravo", how="exited")), None, site("bravo"), SECURITY),
        (dict(docs.render_turn_record(TurnRecord(turn=7, site="bravo", how="exited")), _id="other:turn:0000000007"),
         None, site("bravo"), SECURITY),
    ]
    verdicts = run_validator(cases, source)
    assert verdicts[:5] == [{"ok": True}] * 5, verdicts
    assert "not a document enqueue uses" in verdicts[5]["forbidden"]
    assert security.installed_sets(store.docs[security.DESIGN_DOC_ID]) == [security.DEFAULT_SET,
                                                                            security.DocumentSet("test_leader", "test_sites")]
    writes = store.writes
    security.install(store, leader_doc="test_leader", sites_doc="test_sites")
    security.install(store)
    assert store.writes == writes


@needs_node
def test_a_site_writes_its_own_heartbeat_of_each_set_and_names_it_in_that_sets_registry() -> None:
    """A site in two sets of one database has one heartbeat in each; the rules keep each to its set's id."""
    store = FakeStore()
    security.install(store)
    security.install(store, leader_doc="test_leader", sites_doc="test_sites")
    source = store.docs[security.DESIGN_DOC_ID]["validate_doc_update"]
    beat = docs.render_heartbeat(Heartbeat(site="bravo", state=WAITING, beat=3), {}, "test_leader")
    assert beat["_id"] == "test_leader:heartbeat:bravo"
    test_entry = dict(entry("bravo"), heartbeat_doc=beat["_id"])
    cases = [
        (beat, None, site("bravo"), SECURITY),
        (docs.render_heartbeat(Heartbeat(site="bravo", state=WAITING, beat=3)), None, site("bravo"), SECURITY),
        (fresh(dict(registry({"bravo": test_entry}), _id="test_sites")), None, site("bravo"), SECURITY),
        (docs.render_heartbeat(Heartbeat(site="charlie"), {}, "test_leader"), None, site("bravo"), SECURITY),
        (dict(docs.render_heartbeat(Heartbeat(site="charlie"), {}, "test_leader"), _id=beat["_id"]), None,
         site("bravo"), SECURITY),
        (fresh(dict(registry({"bravo": entry("bravo")}), _id="test_sites")), None, site("bravo"), SECURITY),
        (fresh(registry({"bravo": test_entry})), None, site("bravo"), SECURITY),
        (dict(beat, _id="other:heartbeat:bravo"), None, site("bravo"), SECURITY),
        (dict(beat, _id="test_leader:heartbeat:x:bravo"), None, site("bravo"), SECURITY),
    ]
    verdicts = run_validator(cases, source)
    assert verdicts[:3] == [{"ok": True}] * 3, verdicts
    assert "own heartbeat document (test_leader:heartbeat:bravo)" in verdicts[3]["forbidden"]
    assert "'site' must be bravo" in verdicts[4]["forbidden"]
    assert "must name its own heartbeat document (test_leader:heartbeat:bravo)" in verdicts[5]["forbidden"]
    assert "must name its own heartbeat document (enqueue_heartbeat:bravo)" in verdicts[6]["forbidden"]
    assert "not a document enqueue uses" in verdicts[7]["forbidden"]
    assert "not a document enqueue uses" in verdicts[8]["forbidden"]


@needs_node
def test_rules_of_one_set_refuse_a_named_sets_heartbeat_as_a_document_they_do_not_know() -> None:
    """Until ``init`` installs a set, its heartbeat is an unknown document: the agent's lockout, not a retry."""
    beat = docs.render_heartbeat(Heartbeat(site="bravo", state=WAITING, beat=3), {}, "test_leader")
    verdict, = run_validator([(beat, None, site("bravo"), SECURITY)])
    assert security.locks_out(verdict["forbidden"], beat["_id"]), verdict


def test_a_set_sharing_a_document_with_an_installed_one_is_refused() -> None:
    store = FakeStore()
    security.install(store)
    with pytest.raises(ConfigError, match="shares a document"):
        security.install(store, sites_doc="other_sites")


def test_a_version_1_design_document_keeps_its_set() -> None:
    old = {"_id": security.DESIGN_DOC_ID, "enqueue": {"version": 1, "leader_doc": "L", "sites_doc": "S"}}
    assert security.installed_sets(old) == [security.DocumentSet("L", "S")]


@pytest.mark.parametrize("site_role, admin_role", [("_admin", "a"), ("s", ""), ("same", "same"), ("a b", "c")])
def test_install_refuses_bad_role_names(site_role: str, admin_role: str) -> None:
    with pytest.raises(ConfigError):
        security.install(FakeStore(), site_role=site_role, admin_role=admin_role)


def _options(parser: argparse.ArgumentParser) -> Iterator[str]:
    for action in parser._actions:
        yield from action.option_strings
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _options(sub)


def test_no_command_line_option_takes_a_secret() -> None:
    """Secrets come from password files or the environment: argv is visible to every user of the host."""
    options = set(_options(cli.build_parser()))
    assert "--password-file" in options  # enqueue users add
    secret_like = {o for o in options if any(w in o for w in ("password", "secret", "token", "credential"))}
    assert secret_like <= {"--password-file", "--show-password", "--admin-password-file"}, secret_like


@needs_node
def test_the_refusals_an_agent_acts_on_carry_their_token_and_the_agent_matches_the_token() -> None:
    unknown, missing = run_validator([
        ({"_id": "enqueue_other", "x": 1}, None, site("bravo"), SECURITY),
        (stored(docs.new_leader_doc(LEADER_ID)), None, site("bravo"), SECURITY),
    ])
    assert security.refused_for(unknown["forbidden"], security.UNKNOWN_DOCUMENT_TOKEN), unknown
    assert security.refused_for(missing["forbidden"], security.ADMIN_REBUILDS_TOKEN), missing
    heartbeat = docs.heartbeat_id("bravo")
    assert security.locks_out(f"403 forbidden: enqueue: reworded [enqueue:{security.UNKNOWN_DOCUMENT_TOKEN}]", heartbeat)
    assert not security.locks_out(missing["forbidden"], heartbeat), "a missing leader doc is waited out, not the end"
