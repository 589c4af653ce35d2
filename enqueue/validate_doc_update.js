// validate_doc_update of the design document _design/enqueue.
//
// The server runs this function before it stores any write to the shared
// database. An admin (a server admin, a database admin, or an account with
// the admin role) may write anything. An enqueue site account -- role
// site_role, account name = site name -- may make only the writes the
// protocol gives a site (see docs/SECURITY.md):
//
//   * its own heartbeat document;
//   * in the sites document, add itself, and drain itself (after failed
//     turns: by itself, saying why; never undrain), and nothing else;
//   * in the leader document: claim leadership for itself (leader_term + 1)
//     or step down itself; while it leads, grant, end and re-order turns;
//     mark running a turn granted to itself; mark done its own running turn,
//     or its own granted one (started on the grant alone, given back, or
//     an earlier agent's), and, in the same write, grant the next turn to
//     its successor in the published rotation, carrying its own record of
//     the finished turn ('last_record'); never pause, resume or set skip_turn; rewrite one
//     that does not parse only at the turn its repair resumes at; never
//     create it (an admin does, also after a deletion);
//   * create turn records that name it (as the site or as the leader, or as
//     'copied_by': the record the leader doc carried, stored after the
//     handoff), and add its report to a record of its own turn that the
//     leader created or another site copied;
//     add its word as the revoker ('revoker_report', naming it) to another
//     site's record that says 'not started' and has no report yet;
//   * nothing else: no deletions, no documents the protocol does not know.
//
// SETTINGS.sets lists every document set `enqueue init` installed (the
// default one and any named with -L/-S): each has its own leader doc,
// sites doc, turn-record prefix and heartbeat prefix (a site in two sets
// writes one heartbeat in each).
//
// enqueue.security installs everything from the line starting with
// "function" on, with the SETTINGS line filled in. Plain ES5: CouchDB's
// JavaScript engine may be old. It must never throw anything but a
// {forbidden: ...} object: any other error is a 500 for the writer.
function (newDoc, oldDoc, userCtx, secObj) {
  var SETTINGS = {"site_role": "enqueue_site", "admin_role": "enqueue_admin", "sets": [{"leader_doc": "enqueue_leader", "sites_doc": "enqueue_sites", "turn_prefix": "enqueue_turn:", "heartbeat_prefix": "enqueue_heartbeat:"}]};

  var HEARTBEAT_PREFIX = "enqueue_heartbeat:";  // the default set's, for a set that names none
  var TURN_ID_DIGITS = 10;
  var MAX_TURN = 9999999999;  // the widest turn number a record id holds
  // What a leader's record of a turn it took away may say (no outcome: the runner reports that).
  var TAKEN_AWAY = ["revoked", "not started", "repaired"];
  // What a revoker's report on a 'not started' record holds (enqueue.records.REVOKER_FIELDS), and may say.
  var REVOKER_FIELDS = ["leader", "how", "started_at", "ended_at", "note"];
  var REVOKER_HOWS = ["revoked", "repaired"];
  var SITE_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
  var GRANTED = "granted", RUNNING = "running", DONE = "done";
  // What a site's drain of itself sets in its registry entry (enqueue.failures.self_drained_entry).
  var SELF_DRAIN_FIELDS = ["drained", "drained_by", "drained_at", "drained_reason", "drained_exit_code",
                           "drained_failures"];
  var MAX_REASON_CHARS = 500;
  var MAX_EXIT_CODE = 255;
  // The refusals' tokens (enqueue.security names the same): a leader doc only an admin may write afresh,
  // and a document no installed set knows.
  var ADMIN_REBUILDS = "admin-rebuilds-leader-doc", UNKNOWN_DOC = "unknown-document";
  // Leader-doc fields whose changes the rules below judge one by one.
  var LEADER_FIELDS = ["leader", "leader_term", "running", "status", "turn", "rotation",
                       "paused", "paused_reason", "skip_turn", "grantee"];
  // Leader-doc fields for humans: written along with an allowed change.
  var LEADER_NOTES = ["last_exit_code", "last_how", "granted_at", "started_at", "ended_at",
                      "updated_by", "updated_at", "type", "schema"];

  // ------------------------------------------------------------ helpers

  function refuse(message) {
    throw {forbidden: "enqueue: " + message};
  }

  // A refusal readers act on carries a stable token, "[enqueue:<code>]", after its message (enqueue.security).
  function code(token, message) {
    return message + " [enqueue:" + token + "]";
  }

  function isArrayValue(x) {
    return Object.prototype.toString.call(x) === "[object Array]";
  }

  function isObject(x) {
    return x !== null && typeof x === "object" && !isArrayValue(x);
  }

  function has(obj, key) {
    return isObject(obj) && Object.prototype.hasOwnProperty.call(obj, key);
  }

  function contains(list, x) {
    if (!isArrayValue(list)) {
      return false;
    }
    for (var i = 0; i < list.length; i++) {
      if (list[i] === x) {
        return true;
      }
    }
    return false;
  }

  function isCount(x) {
    return typeof x === "number" && isFinite(x) && Math.floor(x) === x && x >= 0;
  }

  function isSite(x) {
    return typeof x === "string" && SITE_NAME.test(x);
  }

  function isSet(x) {
    return x !== null && x !== undefined;
  }

  // Deep equality of JSON values; absent and null are the same.
  function same(a, b) {
    if (!isSet(a) || !isSet(b)) {
      return !isSet(a) && !isSet(b);
    }
    if (isArrayValue(a) || isArrayValue(b)) {
      if (!isArrayValue(a) || !isArrayValue(b) || a.length !== b.length) {
        return false;
      }
      for (var i = 0; i < a.length; i++) {
        if (!same(a[i], b[i])) {
          return false;
        }
      }
      return true;
    }
    if (isObject(a) || isObject(b)) {
      if (!isObject(a) || !isObject(b)) {
        return false;
      }
      var key;
      for (key in a) {
        if (has(a, key) && !same(a[key], b[key])) {
          return false;
        }
      }
      for (key in b) {
        if (has(b, key) && !has(a, key) && isSet(b[key])) {
          return false;
        }
      }
      return true;
    }
    return a === b;
  }

  // Top-level fields outside `known` (and outside CouchDB's own `_` fields) are
  // left exactly as they were: an admin's notes survive every site write.
  function othersUnchanged(newer, older, known, what) {
    var key;
    for (key in newer) {
      if (has(newer, key) && key.charAt(0) !== "_" && !contains(known, key) && !same(newer[key], older[key])) {
        refuse("a site may not change field '" + key + "' of " + what);
      }
    }
    for (key in older) {
      if (has(older, key) && key.charAt(0) !== "_" && !contains(known, key) && !has(newer, key) && isSet(older[key])) {
        refuse("a site may not remove field '" + key + "' of " + what);
      }
    }
  }

  // Only these fields may be new in a document a site creates or rebuilds.
  function onlyFields(doc, allowed, what) {
    for (var key in doc) {
      if (has(doc, key) && key.charAt(0) !== "_" && !contains(allowed, key) && isSet(doc[key])) {
        refuse("a site may not set field '" + key + "' in " + what);
      }
    }
  }

  function heartbeatPrefix(docSet) {
    return typeof docSet.heartbeat_prefix === "string" ? docSet.heartbeat_prefix : HEARTBEAT_PREFIX;
  }

  function heartbeatId(site, docSet) {
    return heartbeatPrefix(docSet) + site;
  }

  function turnRecordId(turn, prefix) {
    var digits = String(turn);
    while (digits.length < TURN_ID_DIGITS) {
      digits = "0" + digits;
    }
    return prefix + digits;
  }

  // rotation.next_after: the first site after `last` alphabetically, wrapping around.
  function nextAfter(last, sortedSites) {
    if (sortedSites.length === 0) {
      return null;
    }
    for (var i = 0; i < sortedSites.length; i++) {
      if (sortedSites[i] > last) {
        return sortedSites[i];
      }
    }
    return sortedSites[0];
  }

  function without(list, x) {
    var out = [];
    for (var i = 0; i < list.length; i++) {
      if (list[i] !== x) {
        out.push(list[i]);
      }
    }
    return out;
  }

  // ------------------------------------------------------------ the leader doc, read as documents.parse_leader reads it

  // A paused flag of the wrong type reads as set (the safe side).
  function flag(raw, key) {
    var value = raw[key];
    if (!isSet(value)) {
      return false;
    }
    return typeof value === "boolean" ? value : true;
  }

  function rotationOf(value) {
    if (!isArrayValue(value)) {
      return [];
    }
    var out = [];
    for (var i = 0; i < value.length; i++) {
      if (!isSite(value[i])) {
        return [];
      }
      if (!contains(out, value[i])) {
        out.push(value[i]);
      }
    }
    return out.sort();
  }

  // The protocol's view of a leader doc, or null when it does not parse.
  function parseLeader(raw) {
    if (!isObject(raw)) {
      return null;
    }
    var status = raw.status;
    if (!isCount(raw.leader_term) || !isCount(raw.turn) ||
        (status !== GRANTED && status !== RUNNING && status !== DONE)) {
      return null;
    }
    var running = isSite(raw.running) ? raw.running : null;
    if (status !== DONE && running === null) {
      return null;
    }
    return {
      leader: isSite(raw.leader) ? raw.leader : null,
      leader_term: raw.leader_term,
      running: running,
      status: status,
      turn: raw.turn,
      rotation: rotationOf(raw.rotation),
      paused: flag(raw, "paused"),
      paused_reason: typeof raw.paused_reason === "string" ? raw.paused_reason : null,
      skip_turn: isCount(raw.skip_turn) ? raw.skip_turn : null,
      // The agent instance a grant is for: not the server's to check, only to keep (docs/SECURITY.md).
      grantee: typeof raw.grantee === "string" ? raw.grantee : null
    };
  }

  // What a site writes must parse cleanly, not merely parse.
  function checkWellFormed(raw, n) {
    if (n === null) {
      refuse("the leader document must keep valid leader_term, turn and status fields " +
             "(and name the site in 'running' while a turn is granted or running)");
    }
    if (isSet(raw.leader) && n.leader === null) {
      refuse("'leader' must be a site name or null");
    }
    if (isSet(raw.rotation) && (!isArrayValue(raw.rotation) || rotationOf(raw.rotation).length !== raw.rotation.length)) {
      refuse("'rotation' must be a list of distinct site names");
    }
    if (isSet(raw.paused) && typeof raw.paused !== "boolean") {
      refuse("'paused' must be true or false");
    }
    if (isSet(raw.skip_turn) && n.skip_turn === null) {
      refuse("'skip_turn' must be a turn number or null");
    }
    if (n.turn > MAX_TURN) {
      refuse("turn numbers have at most " + TURN_ID_DIGITS + " digits (" + MAX_TURN + ")");
    }
  }

  // How many revisions a document has had: each site write adds one and raises 'turn' by one at most.
  function generation(doc) {
    var rev = revisionOf(doc);
    var count = rev === null ? NaN : parseInt(rev.split("-")[0], 10);
    return isFinite(count) ? count : 0;
  }

  // ------------------------------------------------------------ the leader doc: what a site may change

  function turnUnchanged(o, n) {
    return o.running === n.running && o.status === n.status && o.turn === n.turn &&
           same(o.rotation, n.rotation) && o.skip_turn === n.skip_turn && o.grantee === n.grantee;
  }

  // Election: claim for myself with leader_term + 1, or step down myself.
  function checkLeadership(o, n, me) {
    if (!turnUnchanged(o, n)) {
      refuse("a change of leader must leave the turn (running, status, turn, rotation, skip_turn) alone");
    }
    if (n.leader === me && o.leader !== me) {
      if (n.leader_term !== o.leader_term + 1) {
        refuse("a site claiming leadership must set leader_term to " + (o.leader_term + 1));
      }
      return;
    }
    if (o.leader === me && n.leader === null) {
      if (n.leader_term !== o.leader_term) {
        refuse("a leader stepping down must keep leader_term " + o.leader_term);
      }
      return;
    }
    refuse("a site may make only itself leader, and step down only itself");
  }

  // The leader's own writes (scheduler.plan): publish the rotation, end the
  // active turn, grant the next one to a site in the rotation.
  function leaderMay(o, n) {
    if (n.turn === o.turn) {
      if (n.running !== o.running || n.skip_turn !== o.skip_turn || n.grantee !== o.grantee) {
        return false;
      }
      return n.status === o.status || (n.status === DONE && o.status !== DONE);
    }
    if (n.turn === o.turn + 1) {
      return !o.paused && n.status === GRANTED && contains(n.rotation, n.running) && n.skip_turn === null;
    }
    return false;
  }

  // turns.confirm: my granted turn, marked running.
  function confirms(o, n, me) {
    return o.running === me && o.status === GRANTED &&
           n.running === me && n.status === RUNNING && n.turn === o.turn &&
           same(o.rotation, n.rotation) && n.skip_turn === o.skip_turn && n.grantee === o.grantee;
  }

  // turns.finish: my running (or granted) turn done; I may leave the
  // rotation; the next turn may go, in the same write, to my successor in
  // the rotation.
  function finishes(o, n, me) {
    if (o.running !== me || o.status === DONE || n.skip_turn !== null) {
      return false;
    }
    if (!same(n.rotation, o.rotation) && !same(n.rotation, without(o.rotation, me))) {
      return false;
    }
    if (n.turn === o.turn) {
      return n.status === DONE && n.running === me && n.grantee === o.grantee;
    }
    if (n.turn === o.turn + 1) {
      return !o.paused && n.status === GRANTED && n.running === nextAfter(me, n.rotation);
    }
    return false;
  }

  function explainTurnRefusal(o, n, me) {
    if (o.running === me && o.status !== DONE && n.status !== RUNNING && n.turn === o.turn + 1) {
      var successor = nextAfter(me, n.rotation);
      if (o.paused) {
        refuse("nothing may be granted while paused");
      }
      refuse("a site finishing its turn may pass the next one only to its successor in the rotation (" +
             (successor === null ? "nobody" : successor) + ")");
    }
    if (n.status === RUNNING && o.status !== RUNNING) {
      refuse("a site may mark running only the turn granted to itself, keeping its number");
    }
    if (n.status === DONE && o.status !== DONE) {
      refuse("a site may mark done only its own turn");
    }
    if (n.turn !== o.turn) {
      refuse("only the leader grants turns (a finishing site passes the next one to its successor)");
    }
    if (n.skip_turn !== o.skip_turn) {
      refuse("only an admin may set skip_turn");
    }
    refuse("only the leader changes the turn and the rotation");
  }

  // turns.finish: the write that ends my turn carries my record of it ('last_record'), the one it replaces
  // stored before (enqueue.records.RecordQueue.store_carried). No other write of a site changes it.
  function checkCarriedRecord(record, o, n, me) {
    if (!finishes(o, n, me)) {
      refuse("'last_record' changes only with the write that finishes the turn it records");
    }
    if (!isObject(record) || record.site !== me || record.turn !== o.turn || isSet(record.copied_by) ||
        isSet(record.runner_report) || isSet(record.revoker_report)) {
      refuse("'last_record' must be the finishing site's own record of the turn it finishes (turn " + o.turn + ")");
    }
  }

  function checkLeaderUpdate(newDoc, oldDoc, o, n, me) {
    othersUnchanged(newDoc, oldDoc, LEADER_FIELDS.concat(LEADER_NOTES, ["last_record"]), "the leader document");
    checkLeaderChange(o, n, me);
    if (!same(newDoc.last_record, oldDoc.last_record)) {
      checkCarriedRecord(newDoc.last_record, o, n, me);
    }
  }

  function checkLeaderChange(o, n, me) {
    if (n.paused !== o.paused || n.paused_reason !== o.paused_reason) {
      refuse("only an admin may pause or resume");
    }
    if (n.leader !== o.leader || n.leader_term !== o.leader_term) {
      checkLeadership(o, n, me);
      return;
    }
    if (turnUnchanged(o, n)) {
      if (o.leader !== me && o.running !== me) {
        refuse("only the leader or the site holding the turn may write the leader document");
      }
      return;
    }
    if (o.leader === me && leaderMay(o, n)) {
      return;
    }
    if (confirms(o, n, me) || finishes(o, n, me)) {
      return;
    }
    explainTurnRefusal(o, n, me);
  }

  // A leader doc that does not parse may be written afresh: nobody leads or
  // I do, no turn is granted, an admin's pause stays, and the turn resumes
  // exactly where the repair resumes it (enqueue/repair.py). A missing one
  // (never written, or deleted: the server then shows no old document, just
  // as for the first creation) is an admin's to create: no rule could bound
  // the turn a site would write into it.
  function checkLeaderFresh(newDoc, oldDoc, n, me) {
    if (oldDoc === null) {
      refuse(code(ADMIN_REBUILDS, "only an admin creates the leader document (it is missing: an admin runs " +
                                  "'enqueue repair CONFIG')"));
    }
    onlyFields(newDoc, LEADER_FIELDS.concat(LEADER_NOTES, ["repaired_from"]), "a new leader document");
    if (n.leader !== null && n.leader !== me) {
      refuse("a new leader document may name no leader, or the writing site");
    }
    if (n.status !== DONE || n.running !== null || n.skip_turn !== null) {
      refuse("a new leader document may not grant a turn");
    }
    if (n.paused !== flag(oldDoc, "paused") ||
        n.paused_reason !== (typeof oldDoc.paused_reason === "string" ? oldDoc.paused_reason : null)) {
      refuse("rewriting a leader document that does not parse must keep its paused and paused_reason");
    }
    // No write so far can have taken 'turn' to the document's revision count, unless an admin set it;
    // every turn that ran is below it.
    var oldTurn = isCount(oldDoc.turn) ? oldDoc.turn : 0;
    var resume = Math.max(oldTurn, generation(oldDoc));
    if (n.turn < resume) {
      refuse(code(ADMIN_REBUILDS, "rewriting a leader document must not lower its turn below " + resume +
                                  " (its old turn, or its number of revisions)"));
    }
    if (n.turn > resume) {
      refuse(code(ADMIN_REBUILDS, "rewriting a leader document must not raise its turn beyond " + resume +
                                  " (its old turn, or its number of revisions)"));
    }
  }

  function checkLeaderDoc(newDoc, oldDoc, me) {
    var n = parseLeader(newDoc);
    checkWellFormed(newDoc, n);
    if (isSet(newDoc.updated_by) && newDoc.updated_by !== me) {
      refuse("'updated_by' must name the writing site (" + me + ")");
    }
    var o = oldDoc === null ? null : parseLeader(oldDoc);
    if (o === null) {
      checkLeaderFresh(newDoc, oldDoc, n, me);
    } else {
      checkLeaderUpdate(newDoc, oldDoc, o, n, me);
    }
  }

  // ------------------------------------------------------------ the sites doc

  function checkSitesDoc(newDoc, oldDoc, me, docSet) {
    var newSites = newDoc.sites;
    if (!isObject(newSites)) {
      refuse("the sites document needs a 'sites' object");
    }
    // A registry that is missing or does not parse may be started afresh.
    var oldSites = oldDoc !== null && isObject(oldDoc.sites) ? oldDoc.sites : null;
    if (oldSites === null) {
      onlyFields(newDoc, ["sites", "type", "schema", "repaired_from"], "a new sites document");
      oldSites = {};
    } else {
      othersUnchanged(newDoc, oldDoc, ["sites", "type", "schema"], "the sites document");
    }
    var name;
    for (name in oldSites) {
      if (has(oldSites, name) && !has(newSites, name)) {
        refuse("a site may not remove a site from the registry ('" + name + "')");
      }
    }
    for (name in newSites) {
      if (!has(newSites, name) || name === me) {
        continue;
      }
      if (!has(oldSites, name) || !same(oldSites[name], newSites[name])) {
        refuse("a site may add only itself to the registry, and change no other entry ('" + name + "')");
      }
    }
    if (!has(newSites, me) || same(oldSites[me], newSites[me])) {
      return;
    }
    if (isObject(oldSites[me])) {
      checkSelfDrain(oldSites[me], newSites[me], me);
      return;
    }
    var entry = newSites[me];
    if (!isObject(entry) || entry.heartbeat_doc !== heartbeatId(me, docSet)) {
      refuse("a site's registry entry must name its own heartbeat document (" + heartbeatId(me, docSet) + ")");
    }
    if (isSet(entry.drained) && entry.drained !== false) {
      refuse("only an admin may drain a site");
    }
  }

  // A site's one change to its own entry: from not drained to drained, by itself, saying why and
  // after how many failed turns, every other field as it was. Undraining is an admin's.
  function checkSelfDrain(older, newer, me) {
    if (isSet(older.drained) && older.drained !== false) {
      refuse("a drained site may not change its registry entry; only an admin undrains it");
    }
    if (!isObject(newer) || newer.drained !== true) {
      refuse("a site may change its registry entry only to drain itself; only an admin may change it otherwise");
    }
    if (newer.drained_by !== me) {
      refuse("a site draining itself must name itself in 'drained_by' (" + me + ")");
    }
    if (typeof newer.drained_at !== "string" || typeof newer.drained_reason !== "string" ||
        newer.drained_reason.length === 0 || newer.drained_reason.length > MAX_REASON_CHARS) {
      refuse("a site draining itself must say when ('drained_at') and why ('drained_reason', at most " +
             MAX_REASON_CHARS + " characters)");
    }
    if (!isCount(newer.drained_failures) || newer.drained_failures < 1) {
      refuse("a site draining itself must say after how many failed turns ('drained_failures', at least 1)");
    }
    if (isSet(newer.drained_exit_code) && !(isCount(newer.drained_exit_code) && newer.drained_exit_code <= MAX_EXIT_CODE)) {
      refuse("'drained_exit_code' must be an exit code (0 to " + MAX_EXIT_CODE + ") or null");
    }
    var key;
    for (key in newer) {
      if (has(newer, key) && !contains(SELF_DRAIN_FIELDS, key) && !same(newer[key], older[key])) {
        refuse("a site draining itself may change no other field of its entry ('" + key + "')");
      }
    }
    for (key in older) {
      if (has(older, key) && !contains(SELF_DRAIN_FIELDS, key) && !has(newer, key) && isSet(older[key])) {
        refuse("a site draining itself may remove no field of its entry ('" + key + "')");
      }
    }
  }

  // ------------------------------------------------------------ heartbeats and turn records

  function checkHeartbeat(newDoc, me, docSet) {
    if (newDoc._id !== heartbeatId(me, docSet)) {
      refuse("a site writes only its own heartbeat document (" + heartbeatId(me, docSet) + ")");
    }
    if (newDoc.site !== me) {
      refuse("the heartbeat's 'site' must be " + me);
    }
  }

  function checkTurnRecord(newDoc, oldDoc, me, prefix) {
    if (oldDoc === null) {
      if (!isCount(newDoc.turn) || newDoc.turn > MAX_TURN || turnRecordId(newDoc.turn, prefix) !== newDoc._id) {
        refuse("a turn record's id must be " + prefix + "<its turn, " + TURN_ID_DIGITS + " digits>");
      }
      if (newDoc.site !== me && isSet(newDoc.copied_by)) {
        // The record the leader doc carried, stored by the next holder: in its name, with no report.
        if (newDoc.copied_by !== me) {
          refuse("a copy of the record the leader document carries must name the writing site as 'copied_by'");
        }
        if (isSet(newDoc.runner_report) || isSet(newDoc.revoker_report)) {
          refuse("a copy of the record the leader document carries holds no report");
        }
        return;
      }
      if (newDoc.site !== me) {
        // Another site's turn: only its leader's word that it took the turn away, no outcome.
        if (newDoc.leader !== me) {
          refuse("a turn record must name the writing site as its 'site' or its 'leader'");
        }
        if (!contains(TAKEN_AWAY, newDoc.how) || isSet(newDoc.exit_code) || isSet(newDoc.runner_report)) {
          refuse("a record of another site's turn may only say that its leader took it away " +
                 "(how 'revoked' or 'not started', no exit code); the runner reports the outcome");
        }
      }
      if (isSet(newDoc.runner_report) && !(isObject(newDoc.runner_report) && newDoc.runner_report.site === me)) {
        refuse("a runner report must name the writing site");
      }
      if (isSet(newDoc.revoker_report)) {
        refuse("a revoker's report is only ever added to a stored 'not started' record");
      }
      return;
    }
    if (!same(newDoc.revoker_report, oldDoc.revoker_report)) {
      checkRevokerReport(newDoc, oldDoc, me);
      return;
    }
    // Written once. A site that ran the turn adds its own report: to the
    // leader's record of taking it away, to another site's copy of what the
    // leader doc carried, or to a record that names another site as its
    // runner (readers then show the turn as disputed).
    if (isSet(oldDoc.runner_report)) {
      refuse("a turn record is written once, and has its runner's report already");
    }
    var copiedByOther = isSet(oldDoc.copied_by) && oldDoc.copied_by !== me;
    if (oldDoc.site === me && !contains(TAKEN_AWAY, oldDoc.how) && !copiedByOther) {
      refuse("a turn record is written once; its own site adds a report only to its leader's record of taking it away");
    }
    // The next holder stores the runner's word the leader doc carried, naming itself as 'copied_by'.
    var carriedReport = isObject(newDoc.runner_report) && newDoc.runner_report.copied_by === me &&
                        newDoc.runner_report.site === oldDoc.site;
    if (!isObject(newDoc.runner_report) || (newDoc.runner_report.site !== me && !carriedReport)) {
      refuse("a turn record is written once; its runner may only add a 'runner_report' naming itself");
    }
    othersUnchanged(newDoc, oldDoc, ["runner_report"], "a turn record");
  }

  // A site that takes back (or displaces) another site's turn it read as started, and finds the record
  // of a dead leader saying 'not started', adds its own word once, in its own name; nothing else changes.
  function checkRevokerReport(newDoc, oldDoc, me) {
    if (oldDoc.how !== "not started" || isSet(oldDoc.runner_report) || isSet(oldDoc.revoker_report)) {
      refuse("a revoker's report is added once, to a 'not started' record that has no report yet");
    }
    if (oldDoc.site === me) {
      refuse("a site reports on its own turn with a 'runner_report'");
    }
    var report = newDoc.revoker_report;
    if (!isObject(report) || report.leader !== me) {
      refuse("a revoker's report must name the writing site as its 'leader'");
    }
    if (!contains(REVOKER_HOWS, report.how) || typeof report.started_at !== "string" || report.started_at === "") {
      refuse("a revoker's report says how it ended a started turn (how 'revoked' or 'repaired') and when " +
             "that turn started ('started_at')");
    }
    onlyFields(report, REVOKER_FIELDS, "a revoker's report");
    othersUnchanged(newDoc, oldDoc, ["revoker_report"], "a turn record");
  }

  // ------------------------------------------------------------ which revision a write replaces

  // CouchDB hands the function the new document with its revision history
  // (_rev, _revisions) as the write names it, and the stored revision that
  // history leads to (or null). An ordinary write names the revision it
  // replaces: _rev is oldDoc's, and a new document has neither. A replicated
  // write (new_edits: false) names its own new revision instead, and its
  // oldDoc is whatever stored ancestor its made-up history reaches: null, or
  // an old revision rather than the current one. pouchdb-server copies the
  // current revision's history into _revisions and compares _rev itself.
  function revisionOf(doc) {
    return isObject(doc) && typeof doc._rev === "string" ? doc._rev : null;
  }

  function checkReplacesCurrent(newDoc, oldDoc) {
    var rev = revisionOf(newDoc);
    var history = newDoc._revisions;
    if (isSet(history)) {
      if (!isObject(history) || !isCount(history.start) || !isArrayValue(history.ids) || history.ids.length === 0 ||
          rev !== history.start + "-" + history.ids[0]) {
        refuse("a write's _revisions must name its _rev");
      }
    }
    var replaced = isObject(oldDoc) ? revisionOf(oldDoc) : null;
    if (rev !== replaced) {
      refuse("a site may only replace a document's current revision (replicated writes, new_edits: false, " +
             "are for admins)");
    }
  }

  // ------------------------------------------------------------ who writes

  function isIn(section, name, roles) {
    if (!isObject(section)) {
      return false;
    }
    if (name !== null && contains(section.names, name)) {
      return true;
    }
    for (var i = 0; i < roles.length; i++) {
      if (contains(section.roles, roles[i])) {
        return true;
      }
    }
    return false;
  }

  function check() {
    var ctx = isObject(userCtx) ? userCtx : {};
    var roles = isArrayValue(ctx.roles) ? ctx.roles : [];
    var name = typeof ctx.name === "string" ? ctx.name : null;
    if (contains(roles, "_admin") || contains(roles, SETTINGS.admin_role) ||
        (isObject(secObj) && isIn(secObj.admins, name, roles))) {
      return;
    }
    if (!contains(roles, SETTINGS.site_role)) {
      refuse("only enqueue sites (role " + SETTINGS.site_role + ") and admins may write here");
    }
    if (!isSite(name)) {
      refuse("a site account's name must be a valid site name");
    }
    if (!isObject(newDoc) || typeof newDoc._id !== "string") {
      refuse("not a document");
    }
    checkReplacesCurrent(newDoc, oldDoc);
    if (newDoc._deleted === true) {
      refuse("only an admin may delete documents");
    }
    var old = isObject(oldDoc) && oldDoc._deleted !== true ? oldDoc : null;
    var id = newDoc._id;
    var sets = isArrayValue(SETTINGS.sets) ? SETTINGS.sets : [];
    var recordPrefix = null, heartbeatSet = null;
    for (var i = 0; i < sets.length; i++) {
      if (id === sets[i].leader_doc) {
        checkLeaderDoc(newDoc, old, name);
        return;
      }
      if (id === sets[i].sites_doc) {
        checkSitesDoc(newDoc, old, name, sets[i]);
        return;
      }
      var prefix = sets[i].turn_prefix;
      if (id.indexOf(prefix) === 0 && (recordPrefix === null || prefix.length > recordPrefix.length)) {
        recordPrefix = prefix;
      }
      // A site name holds no ':', so an id is the heartbeat of one set at most.
      var beats = heartbeatPrefix(sets[i]);
      if (id.indexOf(beats) === 0 && id.slice(beats.length).indexOf(":") < 0) {
        heartbeatSet = sets[i];
      }
    }
    if (heartbeatSet !== null) {
      checkHeartbeat(newDoc, name, heartbeatSet);
    } else if (recordPrefix !== null) {
      checkTurnRecord(newDoc, old, name, recordPrefix);
    } else {
      refuse(code(UNKNOWN_DOC, "'" + id + "' is not a document enqueue uses; only an admin may write it"));
    }
  }

  try {
    check();
  } catch (error) {
    if (isObject(error) && (has(error, "forbidden") || has(error, "unauthorized"))) {
      throw error;
    }
    var detail = "";
    try {
      detail = String(error);
    } catch (ignored) {
      detail = "unknown error";
    }
    throw {forbidden: "enqueue: the write could not be judged, so it is refused (" + detail + ")"};
  }
}
