#!/usr/bin/env python3
"""Fault injection: agents take turns while their processes, network and server fail.

Starts the embedded server on disk and N agents (``--repeat``; with ``--run-once M`` the last M run once per
agent and are started again as soon as they exit, as the original site loop does), each running
``tools/chaos/probe.py LOG --sleep X`` (X random and short), then injects
one fault at a time, at random intervals, until ``--duration`` has passed or
``--max-faults`` were injected:

    kill-leader      SIGKILL the leader's agent, then start it again
    kill-runner      SIGKILL the agent whose command runs (or, see --kill-after-handoff, just
                     after it marked its turn done and passed it on), then start it again
    kill-supervisor  SIGKILL the runner's command supervisor (the agent carries on)
    stop-agent       SIGSTOP an agent for longer than heartbeat_stale, then SIGCONT
    restart-server   stop the server, wait a little, start it again (same port, same data)
    partition        cut one site off from the server (tools.chaos.network), then heal
    clock-offset     stop an agent cleanly and start it again with its wall clock hours off
    slow-server      make every request to the server take a quarter heartbeat longer, each
                     way, for longer than heartbeat_stale

Not in the default mix (name them with ``--faults``, or ``--faults all``):

    lost-answer-heartbeat   let one heartbeat PUT reach the server, lose its answer
    lost-answer-leader      the same for a PUT of the leader doc: the runner's own (confirm,
                            done-and-grant), the leader's revoking one after the runner was
                            SIGKILLed, or a restarted runner's "abandoned" one
    lost-answer-record      the same for a PUT of a turn record (same three writers)
    lost-answer-feed        cut a site's changes feed at its next change
    delete-leader           an admin deletes the leader doc while a command runs, and a site's
                            agent (stopped just before) starts again right then, as a site loop does
    stop-supervisor         SIGSTOP the runner's command supervisor alone for longer than
                            heartbeat_stale, then SIGCONT
    stop-supervisor-partition
                            make a site's next command long, SIGSTOP its supervisor while it runs,
                            cut that site off from the server, then heal and SIGCONT
    signal-pair             SIGINT then SIGTERM to an agent, under a millisecond apart (Ctrl-C in
                            a screen session, then the site loop forwarding SIGTERM); it must
                            exit cleanly within a bound, then it is started again

With ``--site-accounts`` the server has an admin; the harness runs
``enqueue init`` as that admin, creates one account per site (``enqueue
users CONFIG add SITE``, the password in a 0600 file that the site's
configuration names as ``password_file``) and runs each agent under its
site's account, which may not create the leader doc. After a
``delete-leader`` the agents wait, saying so, and the admin reacts after a
random delay of 0 to 2 x heartbeat_delay by running ``enqueue repair
CONFIG`` (a subprocess; its output in ``admin/repair-N.log`` of the work
dir), which waits out heartbeat_stale before it rebuilds. That deletion's
stall bound adds both (``tools.chaos.admin.allowance_s``: 2 x delay +
stale), and its verdict checks that the rebuild is the admin's and that the
sites said they waited (``tools.chaos.admin.violations``).

A lost answer is thrown away after the server answered; the connection is
closed at once or held past the agents' request timeout (``--request-timeout``,
else the agents' default) first, half the time each.

The first faults go through every enabled kind once, in the order listed
above (even if that takes longer than ``--duration``), the rest are drawn
at random. After each fault the harness waits until a
command has started again (or the stall bound has passed) before the next
gap, so every stall can be measured on its own. Then every agent is stopped
with SIGTERM and the verdict (``tools.chaos.verdict``) is printed and, with
``--report``, written as JSON. Exit status: 0 when every invariant held, 1
when one failed, 2 for bad arguments, 3 when the harness itself could not run.

The seed fixes the choices (which fault, which site, how long, in which
order), not the operating system's scheduling: two runs with one seed are
alike, not identical. A run takes about ``--duration`` plus one fault and
the shutdown (a few times ``--stale``).

Partitions use network namespaces when run as root with ``ip`` available
(every process of the run then lives in namespaces created for it; nothing
changes in the host's own), else a black-hole proxy per site. See
``tools.chaos.network`` for what each models.

    scripts/chaos [--seed N] [--duration S] [--agents N] [--delay D] [--stale D] [--faults K,K|all]
                  [--site-accounts] [--report FILE]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import random
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import psutil  # noqa: E402

from enqueue import documents as docs  # noqa: E402
from enqueue.connection import DEFAULT_REQUEST_TIMEOUT_S  # noqa: E402
from enqueue.couchdb_store import CouchStore  # noqa: E402
from enqueue.devserver import DevServer, DevServerError  # noqa: E402
from enqueue.durations import parse_duration  # noqa: E402
from enqueue.errors import StoreError  # noqa: E402
from enqueue.commands.users import write_private  # noqa: E402
from tools.chaos import admin, checker, probe  # noqa: E402
from tools.chaos import network as net  # noqa: E402
from tools.chaos.verdict import Fault, Limits, judge, summary  # noqa: E402

KINDS = ("kill-leader", "kill-runner", "kill-supervisor", "stop-agent", "restart-server", "partition",
         "clock-offset", "slow-server")
# The faults aimed at the write boundaries, lost answers and admin actions: not in the default mix.
MORE_KINDS = ("lost-answer-heartbeat", "lost-answer-leader", "lost-answer-record", "lost-answer-feed",
              "delete-leader", "stop-supervisor", "stop-supervisor-partition", "signal-pair")
ALL_KINDS = KINDS + MORE_KINDS
NAMES = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliett",
         "kilo", "lima", "mike", "november", "oscar", "papa", "quebec", "romeo", "sierra", "tango",
         "uniform", "victor", "whiskey", "xray", "yankee", "zulu")
DATABASE = "enqueue_chaos"
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_HARNESS = 0, 1, 2, 3
_POLL_S = 0.05
# Exit codes of 'enqueue run' that a site loop stops on (sites/enqueue-loop.sh): a run-once agent's are findings.
_UNFIXABLE = (2, 4, 5, 6, 7)


class HarnessError(Exception):
    """The harness could not do its job (server would not start, namespaces failed...)."""


def _seconds(text: str) -> float:
    """Durations as the agents take them, but a bare number means seconds here."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _range(text: str) -> tuple:
    try:
        low, high = (float(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError("expected MIN,MAX in seconds") from None
    if not 0 <= low <= high:
        raise argparse.ArgumentTypeError("expected 0 <= MIN <= MAX")
    return low, high


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="scripts/chaos",
        description="Agents take turns while faults are injected; then a verdict on overlaps, "
                    "lost turns and stalls. Durations are seconds (or 2m, 1h).",
    )
    p.add_argument("--seed", type=int, default=None, help="random seed (default: random, printed)")
    p.add_argument("--duration", type=_seconds, default=300.0, help="seconds of fault injection (default 300)")
    p.add_argument("--agents", type=int, default=5, help="number of sites (default 5)")
    p.add_argument("--delay", type=_seconds, default=1.0, help="heartbeat delay, seconds (default 1)")
    p.add_argument("--stale", type=_seconds, default=4.0, help="heartbeat stale, seconds (default 4)")
    p.add_argument("--conflict", type=_seconds, default=None, help="conflict delay (default: delay / 2)")
    p.add_argument("--grace", type=_seconds, default=None,
                   help="kill grace (default: min(0.5, (stale - 2 x delay) / 2), which leaves a heartbeat's "
                        "round trip of slack before a command is fenced)")
    p.add_argument("--margin", type=_seconds, default=None,
                   help="slack on the stall bound stale + delay (default: max(1.5, delay))")
    p.add_argument("--work", type=_range, default=(0.05, 0.8), metavar="MIN,MAX",
                   help="each command sleeps a random time in this range, seconds (default 0.05,0.8)")
    p.add_argument("--gap", type=_range, default=None, metavar="MIN,MAX",
                   help="quiet time between faults, seconds (default: 0.5 to 1.5 x stale)")
    p.add_argument("--run-once", type=int, default=0, metavar="N",
                   help="the last N sites run once per agent (no --repeat), each started again as soon as it "
                        "exits, as the original site loop does (default 0)")
    p.add_argument("--max-faults", type=int, default=1000, help="stop injecting after this many (default 1000)")
    p.add_argument("--faults", default=",".join(KINDS),
                   help=f"comma-separated kinds to inject, or 'all' (default: {', '.join(KINDS)}; "
                        f"also: {', '.join(MORE_KINDS)})")
    p.add_argument("--request-timeout", type=_seconds, default=None,
                   help=f"the agents' request_timeout, seconds (default: theirs, {DEFAULT_REQUEST_TIMEOUT_S:g})")
    p.add_argument("--signal-bound", type=_seconds, default=None,
                   help="how long an agent may take to exit after a signal pair (default: the stop timeout)")
    p.add_argument("--kill-after-handoff", type=float, default=0.5, metavar="P",
                   help="probability that kill-runner waits for the runner's handoff and kills just after it "
                        "(default 0.5)")
    p.add_argument("--run-option", dest="run_options", action="append", default=[], metavar="OPT",
                   help="one more option for every agent's 'enqueue run' (repeatable), for example "
                        "--run-option='--between=sleep 0.3' --run-option=--between-every=2s")
    p.add_argument("--site-accounts", action="store_true",
                   help="run 'enqueue init' as an admin, give every site its own account ('enqueue users ... add "
                        "SITE', password in a 0600 file its config names) and run its agent under it; after "
                        "delete-leader the admin runs 'enqueue repair' after a random reaction of 0 to "
                        f"{admin.MAX_REACTION_BEATS:g} x delay. That deletion's stall bound adds the longest "
                        f"reaction and the repair's wait: {admin.MAX_REACTION_BEATS:g} x delay + stale")
    p.add_argument("--partition", choices=("auto", "netns", "proxy"), default="auto",
                   help="how to cut a site off: network namespaces (root), a black-hole proxy, or auto")
    p.add_argument("--report", metavar="FILE.json", help="write the JSON report here")
    p.add_argument("--workdir", metavar="DIR", help="keep the server data and all logs here (default: a temp dir, "
                                                     "removed when the run passes)")
    p.add_argument("--quiet", action="store_true", help="print only the summary")
    p.add_argument("--inside", help=argparse.SUPPRESS)  # set when re-run inside the world namespace
    args = p.parse_args(argv)
    kinds = [k.strip() for k in args.faults.split(",") if k.strip()]
    if kinds == ["all"]:
        kinds = list(ALL_KINDS)
    unknown = [k for k in kinds if k not in ALL_KINDS]
    if unknown:
        p.error(f"unknown fault kind(s): {', '.join(unknown)}")
    args.kinds = kinds
    if not 1 <= args.agents <= 250:
        p.error("--agents must be between 1 and 250")
    if not args.stale > 2 * args.delay:
        p.error("--stale must be more than 2 x --delay")
    if args.conflict is None:
        args.conflict = args.delay / 2
    if args.grace is None:
        args.grace = min(0.5, (args.stale - 2 * args.delay) / 2)
    if args.grace > args.stale - 2 * args.delay:
        p.error("--grace must be at most stale - 2 x delay")
    if args.margin is None:
        args.margin = max(1.5, args.delay)
    if args.gap is None:
        args.gap = (0.5 * args.stale, 1.5 * args.stale)
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(1, 2**31)
    if args.request_timeout is not None and args.request_timeout <= 0:
        p.error("--request-timeout must be positive")
    if args.duration < 0 or args.max_faults < 0:
        p.error("--duration and --max-faults must not be negative")
    return args


def site_names(count: int) -> List[str]:
    """Alphabetical site names: NATO words, then site27, site28, ..."""
    return [NAMES[i] if i < len(NAMES) else f"site{i + 1:02d}" for i in range(count)]


@dataclass
class Site:
    """One site's agent as the harness knows it."""

    name: str
    index: int
    offset_s: float = 0.0
    proc: Optional[subprocess.Popen] = None
    expect_exit: bool = False
    stopped: bool = False
    cut: bool = False
    starts: int = 0
    log_offset: int = 0
    frozen_pid: Optional[int] = None  # a supervisor of this site's agent held with SIGSTOP
    run_once: bool = False  # one turn per agent, started again at once, as the original site loop runs it


@dataclass
class ProbeTail:
    """Reads the probe log as it grows: the latest command start seen."""

    path: Path
    offset: int = 0
    latest_start_ns: int = 0
    partial: bytes = b""
    by_site: Dict[str, int] = field(default_factory=dict)

    def poll(self) -> int:
        """Read what was appended since the last call; return the latest start (unix ns, 0 if none)."""
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self.offset)
                data = fh.read()
        except FileNotFoundError:
            return self.latest_start_ns
        self.offset += len(data)
        *lines, self.partial = (self.partial + data).split(b"\n")
        for line in lines:
            parts = line.split()
            if len(parts) >= 5 and parts[0] == b"start":
                try:
                    at = int(parts[3])
                except ValueError:
                    continue
                self.latest_start_ns = max(self.latest_start_ns, at)
                site = parts[1].decode(errors="replace")
                self.by_site[site] = max(self.by_site.get(site, 0), at)
        return self.latest_start_ns


@dataclass
class Harness:
    """One chaos run inside its network (namespaces already made, or proxies to make)."""

    args: argparse.Namespace
    network: Any
    workdir: Path
    rng: random.Random = field(init=False)
    sites: Dict[str, Site] = field(default_factory=dict)
    faults: List[Fault] = field(default_factory=list)
    problems: List[str] = field(default_factory=list)
    server: Optional[DevServer] = None
    store: Optional[CouchStore] = None
    max_oversleep_s: float = 0.0
    injecting: Optional[str] = None

    def __post_init__(self) -> None:
        self.rng = random.Random(self.args.seed)
        self.probe_log = self.workdir / "probe.log"
        self.tail = ProbeTail(self.probe_log)
        (self.workdir / "agents").mkdir(parents=True, exist_ok=True)
        (self.workdir / "config").mkdir(parents=True, exist_ok=True)

    # ------------------------------------------------------------------ output

    def say(self, message: str) -> None:
        """One progress line on stdout (not with --quiet)."""
        if not self.args.quiet:
            print(f"chaos {time.strftime('%H:%M:%S')} {message}", flush=True)

    # ------------------------------------------------------------------ setup

    def start_server(self) -> None:
        """Start the on-disk server, create the database, open the network's paths to it."""
        password = secrets.token_urlsafe(18) if self.args.site_accounts else None
        self.server = DevServer(data_dir=self.workdir / "couch", host=self.network.server_host, log_level="warning",
                                admin_user="admin" if password else None, admin_password=password)
        try:
            self.server.start()
        except DevServerError as exc:
            raise HarnessError(f"the server did not start: {exc}") from None
        assert self.server.port is not None
        url = f"http://127.0.0.1:{self.server.port}"
        self.store = CouchStore(url, DATABASE, username="admin" if password else None, password=password,
                                request_timeout_s=5.0)
        if password:
            self.set_up_accounts(url, password)
        else:
            self.store.create_database()
        self.network.start(self.server.port)
        self.say(f"server on port {self.server.port}, data in {self.workdir / 'couch'}, partitions by {self.network.mode}")

    def set_up_accounts(self, url: str, password: str) -> None:
        """As the admin: 'enqueue init', then one account per site ('enqueue users ... add'), passwords in files."""
        folder = self.workdir / "admin"
        folder.mkdir(exist_ok=True)
        write_private(str(folder / "admin.password"), password, overwrite=True)
        self.admin_config.write_text(f"[couchdb]\nurl = {url}\ndatabase = {DATABASE}\nusername = admin\n"
                                     f"password_file = {folder / 'admin.password'}\n"
                                     f"[enqueue]\nheartbeat_stale = {self.args.stale}s\n")
        self.admin_config.chmod(0o600)
        steps = [("init", [str(self.admin_config)])]
        steps += [(f"users-{name}", [str(self.admin_config), "add", name,
                                     "--password-file", str(self._password_file(name))])
                  for name in site_names(self.args.agents)]
        for label, rest in steps:
            command = label.split("-")[0]
            with open(folder / f"{label}.log", "wb") as out:
                done = subprocess.run([sys.executable, "-m", "enqueue", command, *rest], stdin=subprocess.DEVNULL,
                                      stdout=out, stderr=subprocess.STDOUT, cwd=str(REPO), env=_env(), timeout=60)
            if done.returncode != 0:
                raise HarnessError(f"'enqueue {command}' as the admin exited with {done.returncode} "
                                   f"(see {folder / f'{label}.log'})")

    @property
    def admin_config(self) -> Path:
        return self.workdir / "admin" / "admin.ini"

    def _password_file(self, name: str) -> Path:
        return self.workdir / "config" / f"{name}.password"

    def _config(self, site: Site) -> Path:
        """The site's configuration file: the server as that site reaches it (as that site, with accounts)."""
        path = self.workdir / "config" / f"{site.name}.ini"
        text = f"[couchdb]\nurl = {self.network.url_for(site.index)}\ndatabase = {DATABASE}\n"
        if self.args.site_accounts:
            text += f"username = {site.name}\npassword_file = {self._password_file(site.name)}\n"
        if self.args.request_timeout is not None:
            text += f"request_timeout = {self.args.request_timeout}s\n"
        path.write_text(text)
        return path

    def start_agent(self, site: Site) -> None:
        """Start (or start again) the site's agent with a new random command duration."""
        work = self.rng.uniform(*self.args.work)
        argv = [sys.executable, "-m", "enqueue", "run", str(self._config(site)), site.name,
                "-d", f"{self.args.delay}s", "-s", f"{self.args.stale}s", "-c", f"{self.args.conflict}s",
                "--kill-grace", f"{self.args.grace}s", *([] if site.run_once else ["--repeat"]),
                *self.args.run_options]
        if site.offset_s:
            argv += ["--wall-clock-offset", f"{site.offset_s:.0f}"]
        argv += ["--", *probe.command(self.probe_log, "--sleep", f"{work:.3f}", "--sleep-file", self._sleep_file(site))]
        log_path = self.workdir / "agents" / f"{site.name}.log"
        site.log_offset = log_path.stat().st_size if log_path.exists() else 0
        with open(log_path, "ab") as out:
            out.write(f"==== chaos: start #{site.starts + 1} of {site.name}, offset {site.offset_s:.0f} s, "
                      f"work {work:.3f} s\n".encode())
            out.flush()
            site.proc = subprocess.Popen(self.network.wrap(site.index, argv), stdin=subprocess.DEVNULL,
                                         stdout=out, stderr=subprocess.STDOUT, cwd=str(REPO), env=_env())
        site.starts += 1
        site.expect_exit = False
        site.stopped = False

    # ------------------------------------------------------------------ watching

    def wait(self, seconds: float, until: Optional[Callable[[], bool]] = None, poll_s: float = _POLL_S) -> bool:
        """Sleep ``seconds`` (watching the agents); True early when ``until()`` holds."""
        deadline = time.monotonic() + seconds
        while True:
            self.check_agents()
            if until is not None and until():
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            nap = min(poll_s, left)
            before = time.monotonic()
            time.sleep(nap)
            # How late the harness itself wakes up: a measure of how starved this machine is.
            self.max_oversleep_s = max(self.max_oversleep_s, time.monotonic() - before - nap)

    def check_agents(self) -> None:
        """An agent that exited without being told to is a finding; it is started again."""
        for site in self.sites.values():
            if site.proc is None or site.expect_exit:
                continue
            code = site.proc.poll()
            if code is not None and site.run_once and code not in _UNFIXABLE:
                # The site loop's next iteration (its monitoring step takes no time here).
                self.start_agent(site)
            elif code is not None:
                self.problems.append(f"agent {site.name} exited on its own with code {code} ({self._context()})")
                self.say(f"agent {site.name} exited on its own with code {code}; starting it again")
                self.start_agent(site)

    def leader(self) -> Optional[docs.LeaderDoc]:
        """The leader doc as it is now; None when it cannot be read or does not parse."""
        assert self.store is not None
        try:
            parsed, _ = docs.parse_leader(self.store.get("enqueue_leader"), "enqueue_leader")
        except StoreError:
            return None
        return parsed

    def pick(self, prefer: str = "any") -> Site:
        """A target site: the runner, the leader or any, as asked and as known."""
        doc = self.leader()
        names = list(self.sites)
        choice = None
        if doc is not None:
            if prefer == "runner" and doc.running in self.sites:
                choice = doc.running
            elif prefer == "leader" and doc.leader in self.sites:
                choice = doc.leader
        return self.sites[choice or self.rng.choice(names)]

    def pick_mixed(self) -> Site:
        """The runner half of the time, the leader a quarter, any site a quarter."""
        roll = self.rng.random()
        return self.pick("runner" if roll < 0.5 else "leader" if roll < 0.75 else "any")

    def running_site(self, timeout_s: float) -> Optional[Site]:
        """The site whose command runs now, waiting up to ``timeout_s`` for one."""
        found: List[Site] = []

        def running() -> bool:
            doc = self.leader()
            if doc is not None and doc.turn_active and doc.may_run and doc.running in self.sites:
                found.append(self.sites[doc.running])
                return True
            return False

        self.wait(timeout_s, running)
        return found[-1] if found else None

    # ------------------------------------------------------------------ signals

    def kill(self, site: Site, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to the site's agent (waking it first if stopped); its exit is expected."""
        assert site.proc is not None
        site.expect_exit = True
        if site.stopped:
            os.kill(site.proc.pid, signal.SIGCONT)
        site.proc.send_signal(sig)

    def stop_gracefully(self, site: Site, timeout_s: float) -> Optional[int]:
        """SIGTERM and wait; SIGKILL (and a finding) when it does not stop in time."""
        self.kill(site, signal.SIGTERM)
        assert site.proc is not None
        try:
            return site.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.problems.append(f"agent {site.name} did not stop within {timeout_s:g} s of SIGTERM")
            site.proc.kill()
            site.proc.wait()
            return None

    def _stop_timeout(self) -> float:
        return self.args.grace + 4 * self.args.delay + 10.0

    # ------------------------------------------------------------------ faults

    def inject(self, kind: str) -> Optional[Fault]:
        """Inject one fault of ``kind`` and return it once healed (None when it could not be injected)."""
        handler = getattr(self, "fault_" + kind.replace("-", "_"))
        self.injecting = kind
        try:
            return handler()
        finally:
            self.injecting = None

    def _context(self) -> str:
        """Which fault is under way, or came last: for findings the harness makes itself."""
        if self.injecting is not None:
            return f"during {self.injecting}"
        if self.faults:
            return f"after {self.faults[-1].kind} ({self.faults[-1].site or 'all'})"
        return "before any fault"

    def _restart_after_kill(self, kind: str, site: Site, detail: str) -> Fault:
        start = time.time_ns()
        self.kill(site)
        assert site.proc is not None
        site.proc.wait()
        self.start_agent(site)
        return Fault(kind, site.name, start, self.back(site), detail, from_heal=True)

    def back(self, site: Site) -> int:
        """The moment a restarted agent is back (registered), as unix ns; at most 30 s from now."""
        self.wait(30.0, lambda: self.registered(site))
        return time.time_ns()

    def fault_kill_leader(self) -> Fault:
        site = self.pick("leader")
        return self._restart_after_kill("kill-leader", site, "SIGKILL, started again")

    def fault_kill_runner(self) -> Fault:
        site = self.running_site(2 * self.args.stale) or self.pick("runner")
        if self.rng.random() >= self.args.kill_after_handoff:
            return self._restart_after_kill("kill-runner", site, "SIGKILL, started again")
        # The most delicate moment: just after the runner marked its turn done and passed it on.
        assert self.store is not None
        store = self.store

        def handed_over() -> bool:
            try:
                raw = store.get("enqueue_leader") or {}
            except StoreError:
                return False
            return raw.get("updated_by") == site.name and raw.get("running") != site.name

        if self.wait(2 * self.args.stale + self.args.work[1], handed_over, poll_s=0.001):
            return self._restart_after_kill("kill-runner", site, "SIGKILL right after its handoff, started again")
        return self._restart_after_kill("kill-runner", site, "SIGKILL (no handoff seen), started again")

    def fault_kill_supervisor(self) -> Optional[Fault]:
        site = self.running_site(2 * self.args.stale) or self.pick("runner")
        assert site.proc is not None
        try:
            children = psutil.Process(site.proc.pid).children()
        except psutil.NoSuchProcess:
            children = []
        supervisors = [c for c in children if _is_supervisor(c)]
        if not supervisors:
            self.say(f"no supervisor found under {site.name}; skipped")
            return None
        start = time.time_ns()
        for proc in supervisors:
            try:
                proc.kill()
            except psutil.NoSuchProcess:
                pass
        return Fault("kill-supervisor", site.name, start, time.time_ns(), f"SIGKILL pid {supervisors[0].pid}")

    def fault_stop_agent(self) -> Fault:
        site = self.pick_mixed()
        assert site.proc is not None
        hold = self.args.stale * self.rng.uniform(1.2, 2.0)
        start = time.time_ns()
        os.kill(site.proc.pid, signal.SIGSTOP)
        site.stopped = True
        self.wait(hold)
        os.kill(site.proc.pid, signal.SIGCONT)
        site.stopped = False
        return Fault("stop-agent", site.name, start, time.time_ns(), f"SIGSTOP for {hold:.2f} s")

    def fault_restart_server(self) -> Fault:
        assert self.server is not None
        down = self.rng.uniform(0.0, 2 * self.args.delay)
        start = time.time_ns()
        self.server.stop()
        self.wait(down)
        for attempt in range(5):
            try:
                self.server.start()
                break
            except DevServerError as exc:
                if attempt == 4:
                    raise HarnessError(f"the server did not come back: {exc}") from None
                self.wait(1.0)
        return Fault("restart-server", None, start, time.time_ns(), f"down {down:.2f} s before restart",
                     from_heal=True)

    def cut_off(self, site: Site, hold: float) -> None:
        """Cut ``site`` off from the server for ``hold`` seconds; healed even if the wait is interrupted."""
        self.network.cut(site.index)
        site.cut = True
        try:
            self.wait(hold)
        finally:
            self.network.heal(site.index)
            site.cut = False

    def fault_partition(self) -> Fault:
        site = self.pick_mixed()
        hold = self.args.stale * self.rng.uniform(0.5, 2.0)
        start = time.time_ns()
        self.cut_off(site, hold)
        return Fault("partition", site.name, start, time.time_ns(), f"cut off for {hold:.2f} s")

    def fault_clock_offset(self) -> Fault:
        site = self.pick("any")
        hours = self.rng.uniform(1.0, 12.0) * self.rng.choice((-1, 1))
        start = time.time_ns()
        self.stop_gracefully(site, self._stop_timeout())
        site.offset_s = hours * 3600
        self.start_agent(site)
        return Fault("clock-offset", site.name, start, self.back(site), f"wall clock {hours:+.1f} h", from_heal=True)

    def fault_slow_server(self) -> Fault:
        latency = self.args.delay / 4
        hold = self.args.stale * self.rng.uniform(1.0, 2.0)
        start = time.time_ns()
        for site in self.sites.values():
            self.network.slow(site.index, latency)
        try:
            self.wait(hold)
        finally:
            for site in self.sites.values():
                self.network.slow(site.index, 0.0)
        return Fault("slow-server", None, start, time.time_ns(), f"{latency:.3f} s each way for {hold:.2f} s")

    # ------------------------------------------------------------------ lost answers

    def _client_timeout(self, kind: str) -> float:
        """How long an agent waits for an answer of ``kind`` before it gives up on it."""
        timeout = self.args.request_timeout if self.args.request_timeout is not None else DEFAULT_REQUEST_TIMEOUT_S
        if kind == "feed":
            timeout += min(self.args.delay, 5.0)  # the feed's silence allowance adds a server beat
        return timeout

    def _await_loss(self, site: Site, before: int, timeout_s: float) -> Optional[net.LostAnswer]:
        """The next answer lost on ``site``'s link (waiting ``timeout_s`` for its request, then for
        its connection to close); None when no such request came. Arms nothing more either way."""
        found: List[net.LostAnswer] = []

        def lost() -> bool:
            now = self.network.losses(site.index)
            if len(now) > before:
                found[:] = now[before:before + 1]
                return True
            return False

        self.wait(timeout_s, lost, poll_s=0.01)
        self.network.stop_losing(site.index)
        if not found:
            return None
        hold = self._client_timeout(found[0].kind) + 10.0

        def closed() -> bool:
            latest = self.network.losses(site.index)[before]
            found[0] = latest
            return latest.closed_ns is not None

        self.wait(hold, closed)
        return found[0]

    def _lose(self, kind: str) -> Optional[Fault]:
        request = kind.rsplit("-", 1)[1]
        hold = 0.0 if self.rng.random() < 0.5 else self._client_timeout(request) + 0.5
        how = "closed at once" if hold == 0 else f"held {hold:.1f} s, past the request timeout"
        window = 3 * self.args.stale + self.args.work[1]
        writer = "own"
        if request in ("leader", "record"):
            writer = self.rng.choice(("own", "leader-revokes", "restarted"))
        if writer == "own":
            site = self.running_site(2 * self.args.stale) if request in ("leader", "record") else None
            site = site or self.pick_mixed()
            before = len(self.network.losses(site.index))
            self.network.lose_answers(site.index, request, 1, hold)
            lost = self._await_loss(site, before, window)
            if lost is None:
                self.say(f"{kind}: no {request} request from {site.name} within {window:.1f} s; skipped")
                return None
            return Fault(kind, site.name, lost.seen_ns, lost.closed_ns or time.time_ns(),
                         f"answer to {_short(lost.request)} lost, {how}")
        runner = self.running_site(2 * self.args.stale) or self.pick("runner")
        doc = self.leader()
        leader = self.sites.get(doc.leader) if doc is not None and doc.leader else None
        if writer == "leader-revokes" and (leader is None or leader is runner):
            writer = "restarted"
        start = time.time_ns()
        self.kill(runner)
        assert runner.proc is not None
        runner.proc.wait()
        if writer == "leader-revokes":
            assert leader is not None
            target = leader
            before = len(self.network.losses(target.index))
            self.network.lose_answers(target.index, request, 1, hold)
            lost = self._await_loss(target, before, window)
            self.start_agent(runner)
            done = f"{runner.name} SIGKILLed while running, then {leader.name}'s"
        else:
            target = runner
            before = len(self.network.losses(target.index))
            self.network.lose_answers(target.index, request, 1, hold)
            self.start_agent(runner)
            lost = self._await_loss(target, before, window)
            done = f"{runner.name} SIGKILLed while running and started again, then its"
        heal = max(self.back(runner), (lost.closed_ns or 0) if lost else 0)
        if lost is None:
            detail = f"{done} {request} write never came within {window:.1f} s: nothing lost"
        else:
            detail = f"{done} answer to {_short(lost.request)} lost, {how}"
        return Fault(kind, target.name, start, heal, detail, from_heal=True)

    def fault_lost_answer_heartbeat(self) -> Optional[Fault]:
        return self._lose("lost-answer-heartbeat")

    def fault_lost_answer_leader(self) -> Optional[Fault]:
        return self._lose("lost-answer-leader")

    def fault_lost_answer_record(self) -> Optional[Fault]:
        return self._lose("lost-answer-record")

    def fault_lost_answer_feed(self) -> Optional[Fault]:
        return self._lose("lost-answer-feed")

    # ------------------------------------------------------------------ admin actions

    def fault_delete_leader(self) -> Optional[Fault]:
        """An admin deletes the leader doc while a command runs; a site's new agent starts right then."""
        assert self.store is not None
        runner = self.running_site(2 * self.args.stale)
        others = [s for s in self.sites.values() if s is not runner]
        if not others:
            self.say("delete-leader: no site besides the runner; skipped")
            return None
        newcomer = self.rng.choice(others)
        self.stop_gracefully(newcomer, self._stop_timeout())  # the end of a site loop's iteration
        runner = self.running_site(2 * self.args.stale)
        if runner is None:
            self.say("delete-leader: no command running; deleting anyway")
        self.wait(self.rng.uniform(0.0, self.args.work[1] / 2))
        start = time.time_ns()
        deleted_turn = None
        for _attempt in range(5):
            try:
                raw = self.store.get("enqueue_leader")
                if raw is None:
                    break
                self.store.delete(raw)
                deleted_turn = raw.get("turn")
                break
            except StoreError:
                continue
        deleted_mono = time.monotonic()
        logs_at = {s.name: self._log_size(s) for s in self.sites.values()}
        self.start_agent(newcomer)
        into = f"while {runner.name} ran" if runner is not None else "with no command running"
        detail = f"leader doc at turn {deleted_turn} deleted {into}; {newcomer.name} started right then"
        turn = deleted_turn if isinstance(deleted_turn, int) else None
        if not self.args.site_accounts:
            return Fault("delete-leader", newcomer.name, start, self.back(newcomer), detail, from_heal=True, turn=turn)
        heal, repair = self.admin_repair(newcomer, deleted_mono, logs_at)
        return Fault("delete-leader", newcomer.name, start, heal,
                     f"{detail}; the admin ran 'enqueue repair' {repair.reaction_s:.2f} s later",
                     from_heal=True, turn=turn, extra_bound_s=admin.allowance_s(self.args.delay, self.args.stale),
                     repair=repair)

    def _rebuild_revision(self, turn: int) -> Optional[Dict[str, Any]]:
        """The leader doc's revision ``turn + 1``: the rebuild written over the tombstone of revision ``turn``
        (a rebuild resumes at the revision count), whoever wrote it and whatever was written since."""
        assert self.server is not None and self.server.port is not None
        base = f"http://127.0.0.1:{self.server.port}/{DATABASE}/enqueue_leader"
        token = base64.b64encode(f"admin:{self.server.admin_password}".encode()).decode()

        def get(query: str) -> Dict[str, Any]:
            request = urllib.request.Request(f"{base}?{query}", headers={"Authorization": f"Basic {token}"})
            with urllib.request.urlopen(request, timeout=10) as answer:
                return json.loads(answer.read())

        try:
            revs = [r["rev"] for r in get("revs_info=true").get("_revs_info", []) if r.get("status") == "available"]
            wanted = next((r for r in revs if r.startswith(f"{turn + 1}-")), None)
            return None if wanted is None else get("rev=" + urllib.parse.quote(wanted))
        except (OSError, ValueError, KeyError):
            return None

    def _log_size(self, site: Site) -> int:
        path = self.workdir / "agents" / f"{site.name}.log"
        return path.stat().st_size if path.exists() else 0

    def admin_repair(self, newcomer: Site, deleted_mono: float, logs_at: Dict[str, int]) -> "tuple[int, admin.Repair]":
        """The admin's reaction to a deletion: 'enqueue repair' after a random delay, watched to its end.

        Returns the moment ``newcomer`` was back (unix ns) and the repair. While it waits, the
        heartbeats are read for the agents' ``problem``; afterwards their logs for the line saying so.
        """
        assert self.store is not None
        store = self.store
        count = sum(1 for f in self.faults if f.repair is not None) + 1
        output = self.workdir / "admin" / f"repair-{count}.log"
        repair = admin.Repair(reaction_s=admin.reaction_s(self.rng, self.args.delay), output_file=str(output))
        state: Dict[str, Any] = {"proc": None, "heal": None, "read": 0.0}
        said = set()

        def heartbeats() -> None:
            if time.monotonic() - state["read"] < 0.25:
                return
            state["read"] = time.monotonic()
            try:
                for raw in store.list_prefix(docs.HEARTBEAT_PREFIX):
                    if admin.PROBLEM_HINT in str(raw.get(docs.PROBLEM_FIELD) or ""):
                        said.add(str(raw.get("site")))
            except StoreError:
                pass

        def done() -> bool:
            if state["heal"] is None and self.registered(newcomer):
                state["heal"] = time.time_ns()
            proc = state["proc"]
            if proc is None:
                heartbeats()
                if time.monotonic() - deleted_mono >= repair.reaction_s:
                    with open(output, "wb") as out:
                        state["proc"] = subprocess.Popen(admin.repair_argv(str(self.admin_config)),
                                                         stdin=subprocess.DEVNULL, stdout=out,
                                                         stderr=subprocess.STDOUT, cwd=str(REPO), env=_env())
                return False
            if proc.poll() is None:
                heartbeats()
                return False
            return state["heal"] is not None

        self.wait(repair.reaction_s + 3 * self.args.stale + 60.0, done, poll_s=0.02)
        proc = state["proc"]
        if proc is not None and proc.poll() is None:
            _kill_tree(proc.pid)
            proc.wait()
        else:
            repair.exit_code = None if proc is None else proc.returncode
        repair.missing_s = round(time.monotonic() - deleted_mono, 3)
        text = output.read_text(errors="replace") if output.exists() else ""
        repair.rebuilt_turn = admin.rebuilt_turn(text)
        raw = self._rebuild_revision(repair.rebuilt_turn) if repair.rebuilt_turn is not None else None
        repair.rebuild_by = None if raw is None else raw.get("updated_by")
        repair.repaired_from = raw is not None and "repaired_from" in raw
        repair.said_in_heartbeat = sorted(said)
        for site in self.sites.values():
            path = self.workdir / "agents" / f"{site.name}.log"
            try:
                with open(path, "rb") as fh:
                    fh.seek(logs_at.get(site.name, 0))
                    if admin.PROBLEM_HINT.encode() in fh.read():
                        repair.said_in_log.append(site.name)
            except FileNotFoundError:
                pass
        self.say(f"admin repair #{count}: reacted after {repair.reaction_s:.2f} s, exit {repair.exit_code}, "
                 f"rebuilt at turn {repair.rebuilt_turn}; said so: heartbeats {repair.said_in_heartbeat or '-'}, "
                 f"logs {repair.said_in_log or '-'}")
        return state["heal"] or self.back(newcomer), repair

    # ------------------------------------------------------------------ the supervisor frozen

    def _supervisor(self, site: Site) -> Optional[psutil.Process]:
        if site.proc is None:
            return None
        try:
            found = [c for c in psutil.Process(site.proc.pid).children() if _is_supervisor(c)]
        except psutil.NoSuchProcess:
            return None
        return found[0] if found else None

    def _freeze(self, site: Site, supervisor: psutil.Process) -> bool:
        try:
            supervisor.suspend()
        except psutil.Error:
            return False
        site.frozen_pid = supervisor.pid
        return True

    def _thaw(self, site: Site) -> None:
        if site.frozen_pid is not None:
            try:
                os.kill(site.frozen_pid, signal.SIGCONT)
            except OSError:
                pass
            site.frozen_pid = None

    def fault_stop_supervisor(self) -> Optional[Fault]:
        site = self.running_site(2 * self.args.stale) or self.pick("runner")
        supervisor = self._supervisor(site)
        hold = self.args.stale * self.rng.uniform(1.2, 2.0)
        start = time.time_ns()
        if supervisor is None or not self._freeze(site, supervisor):
            self.say(f"stop-supervisor: no supervisor found under {site.name}; skipped")
            return None
        try:
            self.wait(hold)
        finally:
            self._thaw(site)
        # The agent is alive and holds its turn while its fence is frozen: judged from the resume on.
        return Fault("stop-supervisor", site.name, start, time.time_ns(),
                     f"SIGSTOP pid {supervisor.pid} for {hold:.2f} s", from_heal=True)

    def _sleep_file(self, site: Site) -> str:
        return str(self.workdir / "work" / site.name)

    def _long_command(self, site: Site, seconds: float) -> bool:
        """Make ``site``'s next command last ``seconds`` and wait until it starts; False if it did not."""
        path = Path(self._sleep_file(site))
        path.parent.mkdir(exist_ok=True)
        since = self.tail.by_site.get(site.name, 0)
        path.write_text(f"{seconds:.3f}\n")

        def started() -> bool:
            self.tail.poll()
            return self.tail.by_site.get(site.name, 0) > since and not path.exists()

        if self.wait(self.args.agents * (self.args.work[1] + 1.0) + 3 * self.args.stale, started, poll_s=0.01):
            return True
        path.unlink(missing_ok=True)
        return False

    def fault_stop_supervisor_partition(self) -> Optional[Fault]:
        site = self.pick_mixed()
        hold = self.args.stale * self.rng.uniform(1.2, 2.0)
        if not self._long_command(site, hold + 3 * self.args.stale):
            self.say(f"stop-supervisor-partition: {site.name} did not start a command; skipped")
            return None
        supervisor = self._supervisor(site)
        start = time.time_ns()
        if supervisor is None or not self._freeze(site, supervisor):
            self.say(f"stop-supervisor-partition: no supervisor found under {site.name}; skipped")
            return None
        try:
            self.wait(0.1)
            self.cut_off(site, hold)
        finally:
            self._thaw(site)
        return Fault("stop-supervisor-partition", site.name, start, time.time_ns(),
                     f"long command, SIGSTOP pid {supervisor.pid}, then cut off for {hold:.2f} s")

    # ------------------------------------------------------------------ signals in pairs

    def fault_signal_pair(self) -> Fault:
        site = self.pick_mixed()
        assert site.proc is not None
        self.wait(30.0, lambda: self.registered(site))
        apart_s = self.rng.uniform(0.0, 0.001)
        bound = self.args.signal_bound if self.args.signal_bound is not None else self._stop_timeout()
        site.expect_exit = True
        start = time.time_ns()
        begin = time.perf_counter()
        site.proc.send_signal(signal.SIGINT)
        while time.perf_counter() - begin < apart_s:
            pass
        site.proc.send_signal(signal.SIGTERM)
        detail = f"SIGINT then SIGTERM {apart_s * 1000:.3f} ms apart"
        try:
            code: Optional[int] = site.proc.wait(timeout=bound)
        except subprocess.TimeoutExpired:
            code = None
        if code is None:
            self.problems.append(f"agent {site.name} did not exit within {bound:g} s of {detail} (it hung; SIGKILLed)")
            site.proc.kill()
            site.proc.wait()
            detail += ": did not exit, SIGKILLed"
        elif code not in (128 + signal.SIGINT, 128 + signal.SIGTERM):
            self.problems.append(f"agent {site.name} exited with code {code} after {detail}, not "
                                 f"{128 + signal.SIGINT} or {128 + signal.SIGTERM}")
            detail += f": exit code {code}"
        else:
            detail += f": exited with {code}"
        self.start_agent(site)
        return Fault("signal-pair", site.name, start, self.back(site), detail, from_heal=True)

    # ------------------------------------------------------------------ the run

    def run(self) -> Dict[str, Any]:
        args = self.args
        limits = Limits(args.delay, args.stale, args.margin)
        self.start_server()
        for i, name in enumerate(site_names(args.agents), start=1):
            self.sites[name] = Site(name, i, run_once=i > args.agents - args.run_once)
            self.start_agent(self.sites[name])
        self.say(f"{args.agents} agents started; seed {args.seed}")
        if not self.wait(30.0, lambda: self.tail.poll() > 0):
            self.problems.append("no command started within 30 s of starting the agents")
        began = time.monotonic()
        order = [k for k in ALL_KINDS if k in args.kinds]
        count = 0
        def more() -> bool:
            # One fault of each kind is injected even if that takes longer than --duration.
            return count < len(order) or time.monotonic() - began < args.duration

        while args.kinds and count < args.max_faults and more():
            self.wait(self.rng.uniform(*args.gap))
            if not more():
                break
            kind = order[count] if count < len(order) else self.rng.choice(args.kinds)
            fault = self.inject(kind)
            count += 1
            if fault is None:
                continue
            self.faults.append(fault)
            resumed = self.wait(limits.bound_s + fault.extra_bound_s + 1.0, lambda: self.tail.poll() > fault.heal_ns)
            self.say(f"{fault.kind} {fault.site or ''} ({fault.detail}); "
                     f"{'a command started again' if resumed else 'NO command started'} after it healed")
        run_end_ns = time.time_ns()
        self.say(f"{len(self.faults)} faults injected; stopping the agents")
        self.shutdown()
        assert self.store is not None
        leader_raw = self.store.get("enqueue_leader")
        records = self.store.list_prefix(docs.TURN_PREFIX)
        self.scan_logs()
        report = judge(checker.read(str(self.probe_log)), self.faults, leader_raw, records, limits, run_end_ns,
                       self.problems)
        report["run"] = {
            "seed": args.seed,
            "agents": args.agents,
            "duration_s": args.duration,
            "partition": self.network.mode,
            "kinds": list(args.kinds),
            "work_s": list(args.work),
            "grace_s": args.grace,
            "conflict_s": args.conflict,
            "workdir": str(self.workdir),
            "harness_max_oversleep_s": round(self.max_oversleep_s, 3),
            "load_average": list(os.getloadavg()),
        }
        return report

    def shutdown(self) -> None:
        """Heal everything, let pending writes land, then SIGTERM every agent and wait."""
        for site in self.sites.values():
            self._thaw(site)
            if site.stopped and site.proc is not None:
                os.kill(site.proc.pid, signal.SIGCONT)
                site.stopped = False
            if site.cut:
                self.network.heal(site.index)
                site.cut = False
        self.wait(2 * self.args.delay)
        # An agent signalled before it has set up dies of the signal, having written nothing: let each
        # finish starting, so the exit codes below say something.
        self.wait(30.0, lambda: all(self.registered(s) for s in self.sites.values()))
        for site in self.sites.values():
            if site.proc is not None and site.proc.poll() is None:
                site.expect_exit = True
                site.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self._stop_timeout()
        for site in self.sites.values():
            if site.proc is None:
                continue
            try:
                code = site.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.problems.append(f"agent {site.name} did not stop within {self._stop_timeout():g} s of SIGTERM")
                site.proc.kill()
                code = site.proc.wait()
            if code not in (128 + signal.SIGTERM, -signal.SIGKILL):
                self.problems.append(f"agent {site.name} stopped with exit code {code}, not {128 + signal.SIGTERM}")

    def _log_since_start(self, site: Site) -> str:
        path = self.workdir / "agents" / f"{site.name}.log"
        try:
            with open(path, "rb") as fh:
                fh.seek(site.log_offset)
                return fh.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def registered(self, site: Site) -> bool:
        """The agent's latest start got as far as registering (its signal handlers are in place)."""
        return site.proc is None or site.proc.poll() is not None or "registered as site" in self._log_since_start(site)

    def scan_logs(self) -> None:
        """A traceback or an internal error in an agent's log is a finding; so is a password in any log."""
        secrets_known = self._passwords()
        for path in sorted((self.workdir / "admin").glob("*.log")):
            self._no_secret(path, path.read_text(errors="replace"), secrets_known)
        for site in self.sites.values():
            path = self.workdir / "agents" / f"{site.name}.log"
            try:
                text = path.read_text(errors="replace")
            except FileNotFoundError:
                continue
            self._no_secret(path, text, secrets_known)
            for number, line in enumerate(text.splitlines(), start=1):
                if "Traceback (most recent call last)" in line or "internal error" in line:
                    self.problems.append(f"agent {site.name}: {path.name} line {number}: {line.strip()[:160]}")
                    break

    def _passwords(self) -> Dict[str, str]:
        """Every account's password the run made (none without --site-accounts), by account."""
        found = {}
        for path in [self.workdir / "admin" / "admin.password", *(self._password_file(n) for n in self.sites)]:
            if path.exists():
                found[path.name.rsplit(".", 1)[0]] = path.read_text().strip()
        return found

    def _no_secret(self, path: Path, text: str, passwords: Dict[str, str]) -> None:
        for account, password in passwords.items():
            if password and password in text:
                self.problems.append(f"{path.name}: holds the password of the account {account}")

    def close(self) -> None:
        """Leave nothing running: agents (and what they started), proxies, the server."""
        for site in self.sites.values():
            if site.proc is not None and site.proc.poll() is None:
                _kill_tree(site.proc.pid)
                site.proc.wait()
        try:
            self.network.close()
        finally:
            if self.store is not None:
                self.store.close()
            if self.server is not None:
                self.server.stop()


def _env() -> Dict[str, str]:
    """The environment of the processes the harness starts: this one, with the repository importable."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    return env


def _short(request: str) -> str:
    """``PUT /db/enqueue_turn%3A0007?x`` -> ``PUT enqueue_turn:0007``."""
    method, _, target = request.partition(" ")
    doc = urllib.parse.unquote(urllib.parse.urlsplit(target).path.rstrip("/").rsplit("/", 1)[-1])
    return f"{method} {doc}"


def _is_supervisor(proc: psutil.Process) -> bool:
    try:
        return any("enqueue.supervisor" in part for part in proc.cmdline())
    except psutil.Error:
        return False


def _kill_tree(pid: int) -> None:
    """SIGKILL a process and all its descendants (they may be stopped: SIGCONT first)."""
    try:
        root = psutil.Process(pid)
        family = [root] + root.children(recursive=True)
    except psutil.NoSuchProcess:
        return
    for proc in family:
        try:
            proc.send_signal(signal.SIGCONT)
            proc.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(family, timeout=5)


def run_inside(args: argparse.Namespace, network: Any) -> int:
    """Run the harness in this process and print the verdict."""
    keep = args.workdir is not None
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="enqueue-chaos-")).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    harness = Harness(args, network, workdir)
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}

    def interrupted(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt()

    for sig in previous:
        signal.signal(sig, interrupted)
    try:
        report = harness.run()
    except HarnessError as exc:
        print(f"chaos: {exc} (logs in {workdir})", file=sys.stderr)
        return EXIT_HARNESS
    except KeyboardInterrupt:
        print(f"chaos: interrupted (logs in {workdir})", file=sys.stderr)
        return 130
    finally:
        harness.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print(summary(report), flush=True)
    if args.report:
        Path(args.report).write_text(json.dumps(report, indent=2) + "\n")
    if report["ok"] and not keep:
        _remove_tree(workdir)
    elif not report["ok"]:
        print(f"logs, probe log and server data kept in {workdir}", flush=True)
    return EXIT_OK if report["ok"] else EXIT_FAILED


def _remove_tree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def run_in_namespaces(args: argparse.Namespace, argv: List[str]) -> int:
    """Create the run's namespaces, run this script again inside the world one, then delete them."""
    prefix = f"enqchaos{os.getpid()}"
    plan = net.NetnsPlan(prefix, args.agents)
    plan.create()
    child: Optional[subprocess.Popen] = None

    def forward(signum: int, _frame: Any) -> None:
        if child is not None and child.poll() is None:
            child.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        child = subprocess.Popen(plan.enter([sys.executable, str(Path(__file__).resolve()), *argv,
                                             "--inside", prefix]))
        return child.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if child is not None and child.poll() is None:
            _kill_tree(child.pid)
        for proc in psutil.Process().children(recursive=True):
            _kill_tree(proc.pid)
        plan.delete()


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = parse_args(argv)
    except SystemExit as exc:
        return EXIT_USAGE if exc.code else EXIT_OK
    if args.inside:
        return run_inside(args, net.NetnsNetwork(args.inside, args.agents))
    mode = args.partition
    if mode == "auto":
        mode = "netns" if net.netns_available() else "proxy"
    if mode == "netns":
        try:
            return run_in_namespaces(args, argv)
        except net.NetnsError as exc:
            if args.partition == "netns":
                print(f"chaos: cannot set up network namespaces: {exc}", file=sys.stderr)
                return EXIT_HARNESS
            print(f"chaos: network namespaces unavailable ({exc}); using a black-hole proxy per site",
                  file=sys.stderr)
    return run_inside(args, net.ProxyNetwork(args.agents))


if __name__ == "__main__":
    sys.exit(main())
