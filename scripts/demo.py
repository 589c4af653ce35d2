#!/usr/bin/env python3
"""The demo: three sites take turns running one command, on this machine.

Starts the embedded CouchDB-compatible server, three agents (alpha, bravo,
charlie) with --repeat, each running a short command, prints every turn as
it happens and a summary at the end. Ctrl-C at any moment stops everything.

    scripts/demo [--turns N] [--sites a,b,c] [--work SECONDS] [--keep DIR]
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from enqueue.couchdb_store import CouchStore  # noqa: E402
from enqueue.devserver import DevServer  # noqa: E402
from tools.chaos import checker, probe  # noqa: E402


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Three sites take turns running one command, on this machine.")
    p.add_argument("--turns", type=int, default=12, help="stop after this many turns (default 12)")
    p.add_argument("--sites", default="alpha,bravo,charlie", help="comma-separated site names")
    p.add_argument("--work", type=float, default=0.3, help="seconds each command runs (default 0.3)")
    p.add_argument("--keep", metavar="DIR", help="keep the agents' logs and the probe log in DIR")
    return p.parse_args()


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


def fmt_ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.1f} ms"


def main() -> int:
    args = parse_args()
    names = [n.strip() for n in args.sites.split(",") if n.strip()]
    workdir = Path(args.keep or tempfile.mkdtemp(prefix="enqueue-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    probe_log = workdir / "turns.log"
    probe_log.unlink(missing_ok=True)
    interrupted = False
    agents: list[subprocess.Popen] = []

    def on_signal(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    server = DevServer()
    try:
        server.start()
        print(f"embedded CouchDB-compatible server at {server.url}")
        store = CouchStore(server.url, "enqueue_demo")
        store.create_database()
        store.close()
        config = workdir / "demo.ini"
        config.write_text(f"[couchdb]\nurl = {server.url}\ndatabase = enqueue_demo\n")
        print(f"sites {', '.join(names)} take turns; each turn runs the command for {args.work} s")
        print(f"agents' logs in {workdir}\n")
        command = probe.command(probe_log, "--sleep", args.work)
        for name in names:
            log = open(workdir / f"agent-{name}.log", "ab")
            agents.append(
                subprocess.Popen(
                    [sys.executable, "-m", "enqueue", "run", str(config), name, "--repeat",
                     "-d", "2s", "-s", "6s", "-c", "0.5s", "--kill-grace", "1s", "--", *command],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                )
            )
            log.close()
        print(f"{'turn':>5}  {'site':<10} {'started (UTC)':<15} {'duration':>10} {'gap':>10}")
        shown = 0
        while shown < args.turns:
            report = checker.read(str(probe_log))
            finished = [r for r in report.runs if r.end_ns is not None]
            for i in range(shown, min(len(finished), args.turns)):
                run = finished[i]
                prev = finished[i - 1] if i else None
                gap = (run.start_ns - prev.end_ns) / 1e9 if prev and prev.end_ns else None
                started = time.strftime("%H:%M:%S", time.gmtime(run.start_ns / 1e9)) + f".{run.start_ns // 1_000_000 % 1000:03d}"
                print(f"{run.turn:>5}  {run.site:<10} {started:<15} {fmt_ms((run.end_ns - run.start_ns) / 1e9):>10} {fmt_ms(gap):>10}")
            shown = max(shown, min(len(finished), args.turns))
            for proc, name in zip(agents, names):
                if proc.poll() is not None:
                    print(f"agent {name} exited with {proc.returncode}; see {workdir / f'agent-{name}.log'}")
                    return 1
            time.sleep(0.05)
    except KeyboardInterrupt:
        interrupted = True
        print("\ninterrupted: stopping the sites")
    finally:
        stop_agents(agents)
        server.stop()

    report = checker.read(str(probe_log))
    finished = [r for r in report.runs if r.end_ns is not None][: args.turns]
    gaps = report.gaps_s[: max(0, len(finished) - 1)]
    print("\nsummary")
    for site in sorted({r.site for r in finished}):
        count = sum(1 for r in finished if r.site == site)
        print(f"  {site:<10} {count} turn{'' if count == 1 else 's'}")
    print(f"  overlaps found: {len(report.overlaps)}")
    for line in report.overlaps:
        print(f"    {line}")
    if gaps:
        ordered = sorted(gaps)
        print(f"  handoff gap: median {fmt_ms(ordered[len(ordered) // 2])}, worst {fmt_ms(ordered[-1])}"
              " (one command's end to the next one's start, including the next command's own start-up)")
    if report.overlaps:
        return 1
    return 130 if interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
