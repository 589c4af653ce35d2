#!/usr/bin/env python3
"""Benchmarks: handoff latency and failover time, printed as figures.

    scripts/benchmark [--turns 200] [--sites 3] [--delay 0.5s] [--stale 2s] [--url URL]
                      [--etcd] [--skip-failover]

Handoff latency is measured from the commands' own records: one command's
end to the next command's start, for a trivial shell command (two `date`
calls appending to a file). Failover is measured after SIGKILL of the
leader (until the leader doc names a new one) and of the running agent
(until the next command starts), with the given heartbeat timings.

With --etcd, the same shell command is serialised by `etcdctl lock` against a
local etcd (Debian packages etcd-server and etcd-client) with the same number
of looping clients, and its handoff gaps are printed beside ours.

Nothing here asserts: it prints figures to compare.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from enqueue import documents as docs  # noqa: E402
from enqueue.couchdb_store import CouchStore  # noqa: E402
from enqueue.devserver import DevServer  # noqa: E402
from tools.chaos import checker  # noqa: E402

PROBE_SH = (
    'echo "start $ENQUEUE_SITE $ENQUEUE_TURN $(date +%s%N) $$" >> "$0"; '
    'echo "end $ENQUEUE_SITE $ENQUEUE_TURN $(date +%s%N) $$ exited" >> "$0"'
)
# For failover: a command long enough to be running when its agent is killed.
PROBE_SH_LONG = PROBE_SH.replace('; echo "end', '; sleep 5; echo "end')


def quantiles(values: list[float]) -> str:
    if not values:
        return "no samples"
    v = sorted(values)

    def q(p: float) -> float:
        return v[min(len(v) - 1, int(p * len(v)))] * 1000

    return f"n={len(v)} p50={q(0.5):.1f} ms p90={q(0.9):.1f} ms p99={q(0.99):.1f} ms max={v[-1] * 1000:.1f} ms"


class Bench:
    def __init__(self, args: argparse.Namespace, workdir: Path, url: str) -> None:
        self.args = args
        self.workdir = workdir
        self.url = url
        self.agents: dict[str, subprocess.Popen] = {}
        self.db = f"enqueue_bench_{os.getpid()}_{int(time.time())}"
        self.store = CouchStore(url, self.db)
        self.store.create_database()
        self.config = workdir / "bench.ini"
        self.config.write_text(f"[couchdb]\nurl = {url}\ndatabase = {self.db}\n")

    def start(self, site: str, log: Path, probe: str = PROBE_SH) -> None:
        out = open(self.workdir / f"agent-{site}.log", "ab")
        self.agents[site] = subprocess.Popen(
            [sys.executable, "-m", "enqueue", "run", str(self.config), site, "--repeat",
             "-d", self.args.delay, "-s", self.args.stale, "-c", "0.2s", *self.args.agent_args, "--",
             "/bin/sh", "-c", probe, str(log)],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
        )
        out.close()

    def stop(self) -> None:
        for proc in self.agents.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.agents.values():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.agents.clear()

    def leader(self) -> docs.LeaderDoc | None:
        return docs.parse_leader(self.store.get("enqueue_leader"), "enqueue_leader")[0]

    def close(self) -> None:
        self.stop()
        self.store.delete_database()
        self.store.close()


def wait_for(what: str, condition, timeout_s: float = 60.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.005)
    raise SystemExit(f"benchmark: timed out waiting for {what}")


def handoff(bench: Bench, sites: list[str]) -> checker.Report:
    log = bench.workdir / "handoff.log"
    for site in sites:
        bench.start(site, log)
    wait_for(f"{bench.args.turns} turns",
             lambda: len([r for r in checker.read(str(log)).runs if r.end_ns]) >= bench.args.turns + 5, 600)
    bench.stop()
    report = checker.read(str(log))
    report.gaps_s = report.gaps_s[5:]  # the first turns include start-up and the first election
    return report


def failover(bench: Bench, sites: list[str], rounds: int) -> tuple[list[float], list[float]]:
    leader_s: list[float] = []
    runner_s: list[float] = []
    for i in range(rounds):
        log = bench.workdir / f"failover-{i}.log"
        for site in sites:
            bench.start(site, log)
        wait_for("turns", lambda: len(checker.read(str(log)).runs) >= 6)
        old = bench.leader().leader
        bench.agents[old].kill()
        bench.agents[old].wait()
        killed = time.monotonic()
        wait_for("a new leader", lambda: (bench.leader().leader or old) != old)
        leader_s.append(time.monotonic() - killed)
        bench.stop()
        log = bench.workdir / f"failover-runner-{i}.log"
        for site in sites:
            bench.start(site, log, PROBE_SH_LONG)
        running = wait_for("a long command", lambda: next(iter(checker.read(str(log)).runs), None))
        bench.agents[running.site].kill()
        bench.agents[running.site].wait()
        killed_ns = time.time_ns()
        nxt = wait_for("the next command", lambda: next((r for r in checker.read(str(log)).runs
                                                          if r.start_ns > killed_ns), None))
        runner_s.append((nxt.start_ns - killed_ns) / 1e9)
        bench.stop()
    return leader_s, runner_s


def etcd_handoff(workdir: Path, clients: int, turns: int) -> checker.Report | None:
    etcd, etcdctl = shutil.which("etcd"), shutil.which("etcdctl")
    if not etcd or not etcdctl:
        print("etcd: not installed (apt-get install etcd-server etcd-client); skipped")
        return None
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        peer = s.getsockname()[1]
    endpoint = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [etcd, "--data-dir", str(workdir / "etcd"), "--listen-client-urls", endpoint,
         "--advertise-client-urls", endpoint, "--listen-peer-urls", f"http://127.0.0.1:{peer}",
         "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
         "--initial-cluster", f"default=http://127.0.0.1:{peer}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    log = workdir / "etcd.log"
    loops = []
    try:
        wait_for("etcd", lambda: subprocess.run([etcdctl, f"--endpoints={endpoint}", "endpoint", "health"],
                                                capture_output=True).returncode == 0, 30)
        for i in range(clients):
            env = {**os.environ, "ENQUEUE_SITE": f"c{i}", "ENQUEUE_TURN": "-", "ETCDCTL_API": "3"}
            script = (f'while :; do "{etcdctl}" --endpoints={endpoint} lock bench -- /bin/sh -c \'{PROBE_SH}\' '
                      f'"{log}" || exit 1; done')
            loops.append(subprocess.Popen(["/bin/sh", "-c", script], env=env, start_new_session=True,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_for("etcd turns", lambda: len(checker.read(str(log)).runs) >= turns + 5, 600)
    finally:
        for p in loops + [server]:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait()
    report = checker.read(str(log))
    report.gaps_s = report.gaps_s[5:]
    return report


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def main() -> int:
    signal.signal(signal.SIGTERM, _interrupt)
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--turns", type=int, default=200)
    p.add_argument("--sites", type=int, default=3)
    p.add_argument("--delay", default="0.5s", help="heartbeat delay for the failover runs (default 0.5s)")
    p.add_argument("--stale", default="2s", help="heartbeat stale for the failover runs (default 2s)")
    p.add_argument("--failover-rounds", type=int, default=3)
    p.add_argument("--skip-failover", action="store_true")
    p.add_argument("--etcd", action="store_true", help="also measure etcdctl lock on the same command")
    p.add_argument("--url", help="a CouchDB URL to use instead of the embedded server")
    p.add_argument("--agent-arg", action="append", default=[], dest="agent_args",
                   help="an extra option for every agent, e.g. --agent-arg=--log-level=debug")
    p.add_argument("--keep", action="store_true", help="keep the work directory (agents' logs)")
    args = p.parse_args()
    names = [f"site{chr(ord('a') + i)}" for i in range(args.sites)]
    workdir = Path(tempfile.mkdtemp(prefix="enqueue-bench-"))
    server = None
    try:
        if args.url:
            url = args.url
        else:
            server = DevServer().start()
            url = server.url
        print(f"server: {'given URL' if args.url else 'embedded pouchdb-server (in memory)'}; "
              f"{args.sites} sites; trivial shell command; {os.cpu_count()} CPUs")
        bench = Bench(args, workdir, url)
        try:
            report = handoff(bench, names)
            print(f"enqueue handoff: {quantiles(report.gaps_s)}; overlaps: {len(report.overlaps)}")
            if not args.skip_failover:
                leader_s, runner_s = failover(bench, names, args.failover_rounds)
                print(f"failover after SIGKILL of the leader (delay {args.delay}, stale {args.stale}): "
                      + ", ".join(f"{s:.2f} s" for s in leader_s))
                print("next command after SIGKILL of the running agent: " + ", ".join(f"{s:.2f} s" for s in runner_s))
        finally:
            bench.close()
        if args.etcd:
            etcd = etcd_handoff(workdir, args.sites, args.turns)
            if etcd is not None:
                print(f"etcdctl lock handoff: {quantiles(etcd.gaps_s)}; overlaps: {len(etcd.overlaps)}")
    finally:
        if server is not None:
            server.stop()
        if args.keep:
            print(f"logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
