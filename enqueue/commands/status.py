"""``enqueue status CONFIG [--json | --prometheus] [--watch [DURATION]]``: what production is doing now.

Shows the leader, whether turns are paused (and why), the turn in progress
(number, site, state, since when, for how long), the published rotation and
a table of sites sorted by name. See ``enqueue.commands.status_overview``
for what each column means and for the two kinds of liveness.

Read-only: it reads the database info, the leader and sites docs, the
heartbeats and the turn records, and (with ``--watch``) waits on the changes
feed; it never writes, so read-only credentials are enough.

``--watch`` redraws when a watched document changes (at most about once a
second) and at least every DURATION (default 2s; ``30s``, ``2m``) until
Ctrl-C, which ends it with exit code 0. ``--prometheus`` prints the
Prometheus text format instead (``enqueue.commands.status_metrics``), once. With ``--json`` it prints one JSON object per line, one per
redraw. A server that stops answering during a watch is reported in place of
the picture and tried again every SECONDS.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import threading
from typing import Any, Optional

from enqueue import documents as docs
from enqueue import placement, security, steering
from enqueue.commands import status_overview as overview
from enqueue.commands import status_metrics, status_text
from enqueue.clock import Clock, SystemClock
from enqueue.durations import format_duration, parse_duration
from enqueue.errors import ConfigError, Forbidden, StoreError
from enqueue.logs import add_logging_arguments
from enqueue.store import Seq, Store

NAME = "status"
HELP = "show the leader, pause, the turn in progress and every site (read-only)"

DEFAULT_WATCH_S = 2.0
#: A burst of changes (a handoff writes several documents) gives one redraw, not one each.
MIN_REDRAW_S = 1.0

_CLEAR = "\x1b[H\x1b[2J"


def _interval(text: str) -> float:
    """A refresh interval: a duration with its unit (``2s``, ``1m``), more than 0.

    A bare number is refused: everywhere else it means minutes, and here it
    used to mean seconds, so either reading would surprise somebody.
    """
    stripped = text.strip()
    if stripped and stripped[-1:].isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} has no unit: write {stripped}s for seconds or {stripped}m "
                                         "for minutes")
    try:
        value = parse_duration(stripped)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: the refresh interval must be more than 0")
    return value


def configure(parser: argparse.ArgumentParser) -> None:
    """Add ``status``'s arguments to its subparser."""
    steering.add_config_argument(parser)
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true",
                        help="print one JSON object (keys documented in docs/OPERATIONS.md) instead of the table")
    output.add_argument("--prometheus", action="store_true",
                        help="print the Prometheus text format (for node_exporter's textfile collector); "
                             "needs the [metrics] extra (prometheus_client)")
    parser.add_argument("--watch", nargs="?", const=DEFAULT_WATCH_S, type=_interval, metavar="DURATION",
                        help=f"redraw on every change and at least every DURATION (default "
                             f"{format_duration(DEFAULT_WATCH_S)}; 30s, 2m) until Ctrl-C; also shows when this "
                             "watch saw each heartbeat change")
    steering.add_document_options(parser)
    add_logging_arguments(parser)
    parser.epilog = (
        "Heartbeat ages compare each site's clock with this host's; they are for people, the agents judge "
        "liveness by observed change. Exit codes: 0 shown (also after Ctrl-C in --watch); 2 configuration "
        "error; 3 database unreachable; 4 credentials refused; 5 database missing."
    )


class Reader:
    """Reads what the overview needs; keeps the turn records between refreshes while they cannot have changed.

    Invariant: only reads. ``since`` and ``watch_ids`` describe the last read,
    for a changes wait that ends as soon as any of those documents changes.
    """

    def __init__(self, store: Store, settings: steering.AdminSettings, clock: Clock,
                 observer: Optional[overview.Observer] = None) -> None:
        self.store = store
        self.settings = settings
        self.clock = clock
        self.observer = observer
        self.since: Optional[Seq] = None
        self.watch_ids: list[str] = [settings.leader_doc, settings.sites_doc]
        self._records: Optional[list[dict]] = None
        self._records_key: Any = None
        self._placement: Optional[placement.Placement] = None
        self._placement_read = False

    def _names(self, leader_raw: Optional[dict], sites_raw: Optional[dict]) -> list[str]:
        names: set[str] = set()
        sites, _ = docs.parse_sites(sites_raw, self.settings.sites_doc, self.settings.leader_doc)
        if sites is not None:
            names.update(sites.sites)
        leader, _ = docs.parse_leader(leader_raw, self.settings.leader_doc)
        if leader is not None:
            names.update(s for s in (leader.leader, leader.running) if s)
        return sorted(names)

    def _turn_records(self, leader_raw: Optional[dict]) -> list[dict]:
        leader, _ = docs.parse_leader(leader_raw, self.settings.leader_doc)
        key = None if leader is None else (leader.turn, leader.status)
        expected = 0
        if leader is not None:
            expected = leader.turn if leader.status == docs.DONE else leader.turn - 1
        have = self._records is not None and key == self._records_key and (
            expected <= 0 or any(r.get("turn") == expected for r in self._records or [])
        )
        if not have:
            self._records = self.store.list_prefix(docs.turn_prefix(self.settings.leader_doc))
            self._records_key = key
        return self._records or []

    def read(self) -> overview.Overview:
        """One consistent-enough picture: the feed position is taken first, so no change is missed after it."""
        info = self.store.check()
        self.since = info.get("update_seq")
        if not self._placement_read:  # where the database lives does not change while we watch
            try:
                self._placement = placement.placement(info, self.store.shards())
            except Forbidden:
                self._placement = None
            self._placement_read = True
        found = self.store.get_many([self.settings.leader_doc, self.settings.sites_doc])
        leader_raw, sites_raw = found.get(self.settings.leader_doc), found.get(self.settings.sites_doc)
        names = self._names(leader_raw, sites_raw)
        hb_ids = {name: docs.heartbeat_id(name, self.settings.leader_doc) for name in names}
        heartbeats = self.store.get_many(list(hb_ids.values())) if hb_ids else {}
        records = self._turn_records(leader_raw)
        self.watch_ids = [self.settings.leader_doc, self.settings.sites_doc] + list(hb_ids.values())
        uncovered = security.uncovered_set_problem(self.store.get(security.DESIGN_DOC_ID), self.settings.leader_doc,
                                                   self.settings.sites_doc)
        ov = overview.build(
            self.settings,
            self.store.database,
            self.store.url,
            leader_raw,
            sites_raw,
            {name: heartbeats.get(doc_id) for name, doc_id in hb_ids.items()},
            records,
            self.clock.now(),
            self.observer,
            self.clock.monotonic() if self.observer is not None else None,
            self._placement,
        )
        return ov if uncovered is None else dataclasses.replace(ov, problems=(*ov.problems, uncovered))


def _print_frame(ov: overview.Overview, as_json: bool, watching: Optional[float]) -> None:
    if as_json:
        if watching is None:
            print(json.dumps(status_text.to_json(ov), indent=2))
        else:
            print(json.dumps(status_text.to_json(ov)), flush=True)
        return
    text = status_text.render_text(ov)
    if watching is not None:
        text += f"\n(redrawn on change and every {format_duration(watching)}; Ctrl-C to stop)"
        if sys.stdout.isatty():
            text = _CLEAR + text
        else:
            text += "\n"
    print(text, flush=True)


def wait_for_change(store: Store, ids: list[str], since: Optional[Seq], interval_s: float, clock: Clock) -> None:
    """Return when one of ``ids`` changed after ``since`` (but not before ``MIN_REDRAW_S``) or after ``interval_s``."""
    started = clock.monotonic()
    batch = store.wait_changes(ids, since, interval_s)
    while batch.docs:
        rest = min(MIN_REDRAW_S, interval_s) - (clock.monotonic() - started)
        if rest <= 0:
            return
        batch = store.wait_changes(ids, batch.last_seq, rest)


def watch(store: Store, settings: steering.AdminSettings, interval_s: float, as_json: bool,
          clock: Optional[Clock] = None) -> int:
    """Redraw until Ctrl-C; 0 then. The first read's errors end the watch with their exit code."""
    clock = clock or SystemClock()
    reader = Reader(store, settings, clock, overview.Observer(clock.monotonic()))
    pause = threading.Event()  # never set: a retry delay that Ctrl-C interrupts
    first = True
    try:
        while True:
            try:
                ov = reader.read()
            except StoreError as exc:
                if first:
                    raise
                print(f"enqueue status: {exc} (trying again in {interval_s:g} s)", file=sys.stderr, flush=True)
                pause.wait(interval_s)
                continue
            first = False
            _print_frame(ov, as_json, interval_s)
            try:
                wait_for_change(store, reader.watch_ids, reader.since, interval_s, clock)
            except StoreError as exc:
                print(f"enqueue status: {exc} (trying again in {interval_s:g} s)", file=sys.stderr, flush=True)
                pause.wait(interval_s)
    except KeyboardInterrupt:
        return 0


def execute(args: argparse.Namespace) -> int:
    """Print the status once, or keep redrawing it with ``--watch``."""
    if args.prometheus and args.watch is not None:
        raise ConfigError("--prometheus prints once (for a textfile collector or a cron job); drop --watch")
    if args.prometheus:
        status_metrics.check_library()  # before any request: a missing library is a setup error
    settings = steering.load_settings(args)
    with steering.open_store(settings) as store:
        if args.watch is not None:
            return watch(store, settings, args.watch, args.json)
        ov = Reader(store, settings, SystemClock()).read()
        if args.prometheus:
            sys.stdout.write(status_metrics.exposition(ov))
            sys.stdout.flush()
            return 0
        _print_frame(ov, args.json, None)
    return 0
