"""``enqueue sites CONFIG list | drain SITE | undrain SITE | remove SITE``: the site registry.

* ``list`` shows every registered site with its admin flags and what its
  heartbeat says (``--json`` for scripts).
* ``drain SITE [--reason TEXT]`` keeps SITE out of the rotation: it gets no
  new turn. A turn it is running goes on to its end; a turn granted to it
  but not started is given back (by its agent, when the grant names it) or
  taken back by the leader, and granted to the next site.
* ``undrain SITE`` puts it back, also a site that drained itself after
  failed turns (``enqueue run --max-failures``); its reason, by whom and
  last exit code show in ``list`` and ``status`` until then.
* ``remove SITE [--force]`` deletes its registry entry and its heartbeat
  document. Refused while SITE holds the turn (drain it, let the turn end or
  skip it, then remove), and, unless ``--force``, while its agent is alive
  (exit 7): a heartbeat that says ``left`` or is missing is not alive;
  otherwise the command watches the heartbeat document for one and a half
  of the heartbeat delays the site announces (never longer than its
  heartbeat_stale), as the agents judge liveness, by observed change: a
  change proves a running agent; none means it is dead, frozen or cut off.
  A site removed while its agent runs registers again at once.

Every change is a compare-and-swap on the sites doc, re-read and re-applied
when an agent wrote in between, and records ``updated_by`` and
``updated_at`` on the document and on the entry (drain also ``drained_by``,
``drained_at`` and ``drained_reason``). An unknown site is refused with the
list of known ones (exit 1).
"""

from __future__ import annotations

import argparse
import json
from typing import Any, Mapping, Optional

from enqueue import documents as docs
from enqueue import steering, table
from enqueue.clock import SystemClock
from enqueue.durations import format_age, format_duration
from enqueue.errors import EXIT_SITE_IN_USE, Conflict, UsageError
from enqueue.logs import add_logging_arguments
from enqueue.store import Store
from enqueue.timing import Timing

NAME = "sites"
HELP = "list the registered sites; drain, undrain or remove one"

ACTIONS = ("list", "drain", "undrain", "remove")
# Everything a drain wrote: an admin's (``drain``) or the site's own after failed turns (``run --max-failures``).
DRAIN_FIELDS = ("drained_by", "drained_at", "drained_reason", "drained_exit_code", "drained_failures")


def configure(parser: argparse.ArgumentParser) -> None:
    """Add ``sites``'s arguments to its subparser."""
    parser.usage = "%(prog)s CONFIG {list | drain SITE | undrain SITE | remove SITE} [options]"
    steering.add_config_argument(parser)
    parser.add_argument("action", choices=ACTIONS, metavar="ACTION",
                        help="list: show the registry; drain: no new turns for SITE; undrain: turns again; "
                             "remove: delete SITE from the registry (refused while it holds the turn)")
    parser.add_argument("site", nargs="?", metavar="SITE", help="the site to drain, undrain or remove")
    parser.add_argument("--reason", metavar="TEXT", help="drain: why; shown by 'sites list' and 'status'")
    parser.add_argument("--json", action="store_true", help="list: print JSON (keys in docs/OPERATIONS.md)")
    parser.add_argument("--force", action="store_true",
                        help="remove: even while the site's agent is alive (it registers again at once), "
                             "without watching its heartbeat first")
    steering.add_document_options(parser)
    add_logging_arguments(parser)
    parser.epilog = "Exit codes: 0 done (or nothing to change); 1 refused (unknown site, site holds the turn, " \
                    "document does not parse); 2 usage or configuration error; 3 database unreachable; " \
                    "4 credentials refused; 5 database missing; 7 remove refused: the site's agent is alive."


# ----------------------------------------------------------------------------- the changes


def _entry(sites: docs.SitesDoc, site: str) -> dict[str, Any]:
    stored = sites.raw.get("sites", {}).get(site)
    # The parsed entry names the heartbeat of the registry's own document set (steering.read_sites).
    return dict(stored) if isinstance(stored, Mapping) else {"heartbeat_doc": sites.sites[site].heartbeat_doc}


def _with_who(body: dict[str, Any], who: str, when: str) -> dict[str, Any]:
    body["updated_by"] = who
    body["updated_at"] = when
    return body


def drained(sites: docs.SitesDoc, site: str, reason: Optional[str], who: str, when: str) -> Optional[dict]:
    """The sites doc with ``site`` drained; None when it already is, for the same reason."""
    entry = _entry(sites, site)
    if sites.sites[site].drained and (reason is None or entry.get("drained_reason") == reason):
        return None
    if not sites.sites[site].drained:
        for key in DRAIN_FIELDS:
            entry.pop(key, None)
        entry.update(drained_by=who, drained_at=when)
    entry.update(drained=True, drained_reason=reason if reason is not None else entry.get("drained_reason"),
                 updated_by=who, updated_at=when)
    return _with_who(docs.render_sites(sites, {site: entry}), who, when)


def undrained(sites: docs.SitesDoc, site: str, who: str, when: str) -> Optional[dict]:
    """The sites doc with ``site`` no longer drained; None when it is not."""
    if not sites.sites[site].drained:
        return None
    entry = {k: v for k, v in _entry(sites, site).items() if k not in DRAIN_FIELDS}
    entry.update(drained=False, updated_by=who, updated_at=when)
    return _with_who(docs.render_sites(sites, {site: entry}), who, when)


def removed(sites: docs.SitesDoc, site: str, who: str, when: str) -> dict:
    """The sites doc without ``site``."""
    return _with_who(docs.render_sites(sites, {site: None}), who, when)


def _holder_refusal(leader: Optional[docs.LeaderDoc], site: str, config: str) -> Optional[steering.Refused]:
    if leader is None or not leader.holds(site):
        return None
    return steering.Refused(
        f"{site} holds turn {leader.turn} ({leader.status}); drain it first ('enqueue sites {config} drain {site}'), "
        f"then remove it once the turn has ended, or end the turn now with 'enqueue skip {config}'"
    )


class AgentAlive(steering.Refused):
    """``sites remove`` of a site whose agent was seen beating."""

    exit_code = EXIT_SITE_IN_USE


def watch_window_s(hb: docs.Heartbeat, timing: Timing) -> float:
    """How long to watch ``hb``'s document for a beat before calling its agent not alive.

    A live agent writes its heartbeat at least every heartbeat_delay (the one
    it announces, else ours); half a delay more covers a beat that is late by
    its round trip. Never longer than heartbeat_stale, after which every
    agent calls the site stale anyway.
    """
    delay = hb.heartbeat_delay_s or timing.heartbeat_delay_s
    stale = hb.heartbeat_stale_s or timing.heartbeat_stale_s
    return min(1.5 * delay, stale)


def _alive_agent(store: Store, settings: steering.AdminSettings, site: str) -> Optional[str]:
    """Why ``site``'s agent is alive, or None: its heartbeat is missing, says ``left``, or did not change
    while watched for ``watch_window_s`` (one read cannot tell a live agent from a dead one)."""
    hb_id = docs.heartbeat_id(site, settings.leader_doc)
    since = store.current_seq()
    hb, _ = docs.parse_heartbeat(store.get(hb_id), site)
    if hb is None or hb.state == docs.LEFT:
        return None
    window = watch_window_s(hb, settings.timing)
    print(f"watching {site}'s heartbeat for up to {format_duration(window)} to tell whether its agent runs "
          f"(--force skips this)", flush=True)
    clock = SystemClock()
    started = clock.monotonic()
    changed = store.wait_changes([hb_id], since, window).docs
    now, _ = docs.parse_heartbeat(store.get(hb_id), site)
    if not changed or now is None or now.state == docs.LEFT:
        delay = hb.heartbeat_delay_s or settings.timing.heartbeat_delay_s
        print(f"{site}'s agent did not beat for {format_duration(clock.monotonic() - started)} "
              f"(it beats every {format_duration(delay)} at the longest): it is not running")
        return None
    return (f"{site}'s agent is alive (its heartbeat changed while watched; state {now.state}"
            f"{', on ' + now.host if now.host else ''}): stop it first (for example 'systemctl stop "
            f"enqueue@{site}'), or remove it anyway with --force, and it registers again at once")


# ----------------------------------------------------------------------------- the actions


def _list(store: Store, settings: steering.AdminSettings, as_json: bool) -> int:
    sites = steering.read_sites(store.get(settings.sites_doc), settings)
    names = sorted(sites.sites)
    heartbeats = store.get_many([sites.sites[n].heartbeat_doc for n in names]) if names else {}
    now = SystemClock().now()
    rows = []
    for name in names:
        entry = sites.sites[name]
        raw_entry = sites.raw["sites"].get(name, {})
        hb, _ = docs.parse_heartbeat(heartbeats.get(entry.heartbeat_doc), name)
        beat = steering.parse_time(hb.time if hb else None, settings.time_format)
        rows.append({
            "name": name,
            "drained": entry.drained,
            "drained_reason": raw_entry.get("drained_reason") if entry.drained else None,
            "drained_by": raw_entry.get("drained_by") if entry.drained else None,
            "drained_at": raw_entry.get("drained_at") if entry.drained else None,
            "drained_exit_code": raw_entry.get("drained_exit_code") if entry.drained else None,
            "added_at": raw_entry.get("added_at"),
            "heartbeat_doc": entry.heartbeat_doc,
            "state": hb.state if hb else None,
            "host": hb.host if hb else None,
            "beat_time": hb.time if hb else None,
            "beat_age_s": None if beat is None else (now - beat).total_seconds(),
        })
    if as_json:
        print(json.dumps({"sites": rows}, indent=2))
        return 0
    if not rows:
        print(f"no sites registered in {settings.sites_doc}")
        return 0
    lines = []
    for row in rows:
        drain = "no"
        if row["drained"]:
            drain = "yes" + (f": {row['drained_reason']}" if row["drained_reason"] else "") \
                + (f" ({row['drained_by']})" if row["drained_by"] else "")
        lines.append([
            row["name"], drain, row["state"] or "no heartbeat", row["host"] or "-",
            "-" if row["beat_age_s"] is None else format_age(row["beat_age_s"]), row["added_at"] or "-",
        ])
    for line in table.render(["SITE", "DRAINED", "STATE", "HOST", "LAST BEAT", "ADDED"], lines):
        print(line)
    return 0


def _change_registry(store: Store, settings: steering.AdminSettings, site: str, decide: Any) -> Optional[dict]:
    """CAS the sites doc with ``decide(sites_doc) -> body | None`` after checking that ``site`` is known."""
    def change(raw: Optional[dict]) -> Optional[dict]:
        sites = steering.read_sites(raw, settings)
        if site not in sites.sites:
            raise steering.unknown_site(site, sites, settings)
        return decide(sites)
    return steering.update(store, settings.sites_doc, change)


def _leader(store: Store, settings: steering.AdminSettings) -> Optional[docs.LeaderDoc]:
    parsed, _ = docs.parse_leader(store.get(settings.leader_doc), settings.leader_doc)
    return parsed


def _drain(store: Store, settings: steering.AdminSettings, site: str, reason: Optional[str], who: str) -> int:
    written = _change_registry(store, settings, site,
                               lambda s: drained(s, site, reason, who, steering.now_text(settings)))
    if written is None:
        print(f"{site} is already drained; nothing changed")
        return 0
    print(f"drained {site}: it gets no new turn until 'enqueue sites {settings.config_path} undrain {site}'")
    leader = _leader(store, settings)
    if leader is not None and leader.holds(site):
        if leader.status == docs.RUNNING:
            print(f"its turn {leader.turn} is running and goes on to its end ('enqueue skip' ends it now)")
        elif leader.startable_grant:
            print(f"turn {leader.turn} was granted to its agent: if it started on the grant it goes on to its end "
                  f"('enqueue skip' ends it now), else the agent gives it back and it goes to the next site")
        else:
            print(f"turn {leader.turn} was granted to it and not started: the leader grants it to the next site")
    return 0


def _undrain(store: Store, settings: steering.AdminSettings, site: str, who: str) -> int:
    written = _change_registry(store, settings, site, lambda s: undrained(s, site, who, steering.now_text(settings)))
    if written is None:
        print(f"{site} is not drained; nothing changed")
    else:
        print(f"undrained {site}: it takes turns again")
    return 0


def _remove(store: Store, settings: steering.AdminSettings, site: str, who: str, force: bool) -> int:
    config = settings.config_path
    if not force:
        # Cheap refusals first: watching a heartbeat takes up to a heartbeat delay and a half.
        sites = steering.read_sites(store.get(settings.sites_doc), settings)
        if site not in sites.sites:
            raise steering.unknown_site(site, sites, settings)
        refusal = _holder_refusal(_leader(store, settings), site, config)
        if refusal is not None:
            raise refusal
        alive = _alive_agent(store, settings, site)
        if alive is not None:
            raise AgentAlive(alive)

    def decide(sites: docs.SitesDoc) -> dict:
        # Read the turn on every attempt: a grant may land between two attempts.
        refusal = _holder_refusal(_leader(store, settings), site, config)
        if refusal is not None:
            raise refusal
        return removed(sites, site, who, steering.now_text(settings))

    hb_id = docs.heartbeat_id(site, settings.leader_doc)
    before = store.get(hb_id)
    _change_registry(store, settings, site, decide)
    print(f"removed {site} from the registry {settings.sites_doc}")
    deleted = _delete_heartbeat(store, hb_id)
    if deleted:
        print(f"deleted its heartbeat document {hb_id}")
    hb, _ = docs.parse_heartbeat(before, site)
    if force and hb is not None and hb.state != docs.LEFT:
        beat = steering.parse_time(hb.time, settings.time_format)
        age = None if beat is None else (SystemClock().now() - beat).total_seconds()
        if age is None or age < settings.timing.heartbeat_stale_s:
            when = "at an unreadable time" if age is None else format_age(age)
            print(f"warning: {site}'s agent may still run (state {hb.state}, last beat {when}"
                  f"{' on ' + hb.host if hb.host else ''}): it gets no turn, and registers again when it restarts; "
                  f"stop it (for example 'systemctl stop enqueue@{site}')")
    leader = _leader(store, settings)
    if leader is not None and leader.holds(site):
        print(f"note: turn {leader.turn} was granted to {site} meanwhile; the leader takes it back "
              f"if it has not started, or it runs to its end")
    return 0


def _delete_heartbeat(store: Store, doc_id: str) -> bool:
    """Delete a heartbeat doc by compare-and-swap; False when there was none. Its own agent may
    write it again (a running agent beats on): that is reported by the caller, not fought here."""
    for _ in range(steering.WRITE_ATTEMPTS):
        current = store.get(doc_id)
        if current is None:
            return False
        try:
            store.delete(current)
            return True
        except Conflict:
            continue
    return False


def execute(args: argparse.Namespace) -> int:
    """Run the chosen action on the registry."""
    if args.action == "list":
        if args.site is not None:
            raise UsageError("'sites list' takes no SITE (see 'enqueue sites --help')")
        if args.reason is not None:
            raise UsageError("--reason goes with 'drain' only")
    else:
        if args.site is None:
            raise UsageError(f"'sites {args.action}' needs a SITE (see 'enqueue sites --help')")
        if args.json:
            raise UsageError("--json goes with 'list' only")
        if args.reason is not None and args.action != "drain":
            raise UsageError("--reason goes with 'drain' only")
    if args.force and args.action != "remove":
        raise UsageError("--force goes with 'remove' only")
    settings = steering.load_settings(args)
    who = steering.actor(settings)
    with steering.open_store(settings) as store:
        if args.action == "list":
            return _list(store, settings, args.json)
        if args.action == "drain":
            return _drain(store, settings, args.site, args.reason, who)
        if args.action == "undrain":
            return _undrain(store, settings, args.site, who)
        return _remove(store, settings, args.site, who, args.force)
