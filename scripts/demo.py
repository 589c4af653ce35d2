#!/usr/bin/env python3
"""The demo: three sites take turns running one command, on this machine.

Starts the embedded CouchDB-compatible server (or uses the CouchDB at
``--url``), three agents (alpha, bravo, charlie) with --repeat, each running
a short command, prints every turn as it happens and a summary at the end.
Ctrl-C at any moment stops everything.

    scripts/demo [--turns N] [--sites a,b,c] [--work SECONDS] [--keep DIR]
                 [--url URL [--username NAME --password-file FILE]]

Production starts paused (``enqueue pause``) and is resumed (``enqueue
resume``) once the leader lists every site in its rotation, so turn 1 goes
to the first site alphabetically and every site is in the order from the
start: agents that start a moment apart would otherwise see the first of
them lead and grant itself turn 1 before the others have registered.

With ``--url`` the demo creates a database of its own on that server
(``enqueue_demo_<random>``) and deletes it at the end. Its working folder (the
configuration, the agents' logs, the commands' own log) is removed at the
end unless ``--keep DIR`` names one, or something failed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from enqueue import documents as docs  # noqa: E402
from enqueue.config import DEFAULT_LEADER_DOC  # noqa: E402
from enqueue.couchdb_store import CouchStore  # noqa: E402
from enqueue.devserver import DevServer  # noqa: E402
from tools.chaos import checker, probe  # noqa: E402

#: How long the sites may take to start and register before the demo gives up.
START_TIMEOUT_S = 60.0

#: Set by Ctrl-C and SIGTERM. They only ask to stop: the demo stops at the next safe point, so a row
#: is never printed without being counted, nor the agents left half-stopped.
STOP = threading.Event()


class Interrupted(Exception):
    """Ctrl-C or SIGTERM, seen at a safe point."""


def check_stop() -> None:
    if STOP.is_set():
        raise Interrupted


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Three sites take turns running one command, on this machine.")
    p.add_argument("--turns", type=int, default=12, help="stop after this many turns (default 12)")
    p.add_argument("--sites", default="alpha,bravo,charlie", help="comma-separated site names")
    p.add_argument("--work", type=float, default=0.3, help="seconds each command runs (default 0.3)")
    p.add_argument("--keep", metavar="DIR", help="keep the configuration and the logs in DIR")
    p.add_argument("--url", help="a CouchDB to run on (http://HOST:PORT, no credentials in it) instead of the "
                                 "embedded server; the demo creates a database there and deletes it afterwards")
    p.add_argument("--username", help="with --url: an account that may create databases (a server admin)")
    p.add_argument("--password-file", metavar="FILE", help="with --url: the file holding that account's password")
    args = p.parse_args()
    if args.url and "@" in urlsplit(args.url).netloc:
        p.error("--url must not carry credentials (they would be visible to every user of this machine): "
                "use --username and --password-file")
    if (args.username is None) != (args.password_file is None):
        p.error("--username and --password-file go together")
    if args.username and not args.url:
        p.error("--username and --password-file go with --url")
    if args.turns < 1:
        p.error("--turns must be at least 1")
    return args


@dataclass
class Target:
    """Where the demo runs: a server URL, a database of the demo's own, and how to log in."""

    url: str
    database: str
    username: Optional[str] = None
    password_file: Optional[Path] = None

    def store(self) -> CouchStore:
        password = self.password_file.read_text().rstrip("\r\n") if self.password_file else None
        return CouchStore(self.url, self.database, username=self.username, password=password)

    def config_text(self) -> str:
        lines = ["[couchdb]", f"url = {self.url}", f"database = {self.database}"]
        if self.username:
            lines += [f"username = {self.username}", f"password_file = {self.password_file}"]
        return "\n".join(lines) + "\n"


def stop_agents(agents: list[subprocess.Popen], grace_s: float = 10.0) -> None:
    """SIGTERM every agent, wait, then SIGKILL what is left: nothing outlives the demo."""
    for proc in agents:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for proc in agents:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def enqueue(*args: str) -> None:
    """Run an admin command of enqueue; its answer is not shown, a failure is."""
    result = subprocess.run([sys.executable, "-m", "enqueue", *args], capture_output=True, text=True)
    check_stop()  # a Ctrl-C in the terminal reaches this command too
    if result.returncode != 0:
        raise RuntimeError(f"enqueue {args[0]} failed ({result.returncode}): {result.stderr.strip()}")


def fmt_ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.1f} ms"


class AgentDied(Exception):
    """An agent ended on its own; the message names it and its log."""


def check_agents(agents: list[subprocess.Popen], names: list[str], workdir: Path) -> None:
    for proc, name in zip(agents, names):
        if proc.poll() is not None:
            raise AgentDied(f"agent {name} exited with {proc.returncode}; see {workdir / f'agent-{name}.log'}")


def wait_for_rotation(store: CouchStore, names: list[str], agents: list[subprocess.Popen], workdir: Path) -> None:
    """Return once the leader doc lists every site in its rotation (each registered, waiting and alive)."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        check_stop()
        leader, _ = docs.parse_leader(store.get(DEFAULT_LEADER_DOC), DEFAULT_LEADER_DOC)
        if leader is not None and leader.leader and sorted(leader.rotation) == sorted(names):
            return
        check_agents(agents, names, workdir)
        if time.monotonic() > deadline:
            raise AgentDied(f"the sites did not all register within {START_TIMEOUT_S:g} s; see the agents' logs "
                            f"in {workdir}")
        STOP.wait(0.05)


def show_row(run: checker.Run, previous: Optional[checker.Run]) -> None:
    gap = (run.start_ns - previous.end_ns) / 1e9 if previous and previous.end_ns else None
    started = time.strftime("%H:%M:%S", time.gmtime(run.start_ns / 1e9)) + f".{run.start_ns // 1_000_000 % 1000:03d}"
    assert run.end_ns is not None
    print(f"{run.turn:>5}  {run.site:<10} {started:<15} {fmt_ms((run.end_ns - run.start_ns) / 1e9):>10} "
          f"{fmt_ms(gap):>10}", flush=True)


def summary(shown: list[checker.Run], report: checker.Report) -> None:
    """Counts and gaps of exactly the rows shown; overlaps of everything that ran."""
    print("\nsummary")
    for site in sorted({r.site for r in shown}):
        count = sum(1 for r in shown if r.site == site)
        print(f"  {site:<10} {count} turn{'' if count == 1 else 's'}")
    for run in report.runs[len(shown):]:
        print(f"  not in the table: turn {run.turn} of {run.site}, "
              f"{'stopped' if run.how == 'terminated' else 'ended'} as the demo ended")
    print(f"  overlaps found: {len(report.overlaps)}")
    for line in report.overlaps:
        print(f"    {line}")
    gaps = sorted((b.start_ns - a.end_ns) / 1e9 for a, b in zip(shown, shown[1:]) if a.end_ns is not None)
    if gaps:
        print(f"  handoff gap: median {fmt_ms(gaps[len(gaps) // 2])}, worst {fmt_ms(gaps[-1])}"
              " (one command's end to the next one's start, including the next command's own start-up)")


def main() -> int:
    args = parse_args()
    names = [n.strip() for n in args.sites.split(",") if n.strip()]
    workdir = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="enqueue-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    probe_log = workdir / "turns.log"
    probe_log.unlink(missing_ok=True)
    interrupted = failed = False
    agents: list[subprocess.Popen] = []
    shown: list[checker.Run] = []

    def on_signal(signum: int, _frame: object) -> None:
        STOP.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    server: Optional[DevServer] = None
    target: Optional[Target] = None
    try:
        if args.url:
            target = Target(args.url.rstrip("/"), "enqueue_demo_" + os.urandom(4).hex(), args.username,
                            Path(args.password_file).resolve() if args.password_file else None)
            print(f"CouchDB at {target.url}, database {target.database} (deleted at the end)")
        else:
            server = DevServer()
            server.start()
            target = Target(server.url, "enqueue_demo")
            print(f"embedded CouchDB-compatible server at {server.url}")
        store = target.store()
        if not store.create_database():
            raise RuntimeError(f"database {target.database} already exists at {target.url}; not touching it")
        config = workdir / "demo.ini"
        config.write_text(target.config_text())
        config.chmod(0o600)
        enqueue("pause", str(config), "--reason", "demo: waiting until every site has registered")
        print(f"sites {', '.join(names)} take turns; each turn runs the command for {args.work} s")
        print("production starts paused ('enqueue pause') and resumes ('enqueue resume') once every site is "
              "in the leader's rotation, so turn 1 goes to the first site alphabetically")
        print(f"working folder {workdir}" + ("" if args.keep else " (removed at the end; --keep DIR keeps one)")
              + "\n")
        command = probe.command(probe_log, "--sleep", args.work)
        for name in names:
            log = open(workdir / f"agent-{name}.log", "ab")
            agents.append(
                subprocess.Popen(
                    [sys.executable, "-m", "enqueue", "run", str(config), name, "--repeat",
                     "-d", "2s", "-s", "6s", "-c", "0.5s", "--kill-grace", "1s", "--", *command],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    start_new_session=True,  # Ctrl-C reaches the demo, which stops the agents in order
                )
            )
            log.close()
        wait_for_rotation(store, names, agents, workdir)
        store.close()
        enqueue("resume", str(config))
        print(f"{'turn':>5}  {'site':<10} {'started (UTC)':<15} {'duration':>10} {'gap':>10}")
        while len(shown) < args.turns:
            check_stop()
            finished = [r for r in checker.read(str(probe_log)).runs if r.end_ns is not None]
            for run in finished[len(shown):args.turns]:
                show_row(run, shown[-1] if shown else None)
                shown.append(run)
            check_agents(agents, names, workdir)
            STOP.wait(0.05)
    except Interrupted:
        interrupted = True
        print("\ninterrupted: stopping the sites")
    except (AgentDied, RuntimeError) as exc:
        failed = True
        print(f"\n{exc}")
    finally:
        stop_agents(agents)
        if target is not None and args.url:
            cleanup = target.store()
            cleanup.delete_database()
            cleanup.close()
        if server is not None:
            server.stop()

    report = checker.read(str(probe_log))
    summary(shown, report)
    if failed or report.overlaps:
        print(f"kept the working folder {workdir} for its logs")
        return 1
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    return 130 if interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
