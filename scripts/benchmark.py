#!/usr/bin/env python3
"""Benchmarks: handoff latency and failover time, printed as figures.

    scripts/benchmark [--turns 200] [--sites N] [--delay 0.5s] [--stale 2s] [--url URL]
                      [--etcd] [--loop] [--skip-failover] [--max-seconds 300] [--breakdown]

Handoff latency is measured from the commands' own records: one command's
end to the next command's start, for a trivial shell command (two `date`
calls appending to a file). Every run is on 3 sites; with --sites N (N > 3) a
second run in the same invocation has N sites on the same server, for the
scale figure: the time from the first agent's launch until every site has had
a turn, and the handoff gaps next to the 3-site ones. Failover (3 sites) is
measured after SIGKILL of the leader (until the leader doc names a new one)
and of the running agent (until the next command starts), with the given
heartbeat timings.

For every run it also measures, with psutil: the CPU time of a waiting agent
per handoff it is not part of (its process's user+system CPU over the
measured turns, divided by the handoffs in that window that neither ended nor
started its command; the median over the agents that did not lead; the
leader's CPU per handoff is given apart), the server's CPU per handoff (local
servers only), and the largest resident memory of an agent, of its
supervisor and of the server seen over the run.

With --etcd, the same shell command is serialised by `etcdctl lock` against a
local etcd (Debian packages etcd-server and etcd-client; loopback only) with
the same numbers of looping clients, measured the same way (a client's CPU
is its shell loop's and its etcdctl processes'), and printed beside ours.

With --loop the same 3 sites also run the original way, in the same
invocation: each in sites/enqueue-loop.sh, one run-once agent per iteration
(`enqueue run` without --repeat), a 0.05 s monitoring step and no pause, and
their handoffs are printed beside the --repeat ones, with the elections, the
leadership handoffs and the leader term the loop's agents went through. It
runs twice: with the trivial command, where a handoff of the loop mostly
waits for the start-up of the next agent (nobody else is waiting when a
turn ends: an agent takes longer to start than the others' turns last),
and with a command that holds its turn for --loop-hold (default 1s), so
that the other sites' agents are back and waiting when a turn ends, next
to --repeat with that same command: the handoff itself, loop against
--repeat.

With --breakdown the agents log at debug level and the 3-site run's handoffs
are split into their stages (the finishing site's writes, the changes feed and
the next site's confirm, the start message, the exec and the command's first
line), from the agents' log times and the commands' own records.

Every run is bounded (--max-seconds) and ends every process it started.
Nothing here asserts: it prints figures to compare.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import threading
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from enqueue import documents as docs  # noqa: E402
from enqueue.couchdb_store import CouchStore  # noqa: E402
from enqueue.devserver import DevServer  # noqa: E402
from enqueue.durations import parse_duration  # noqa: E402
from tools.chaos import checker  # noqa: E402

PROBE_SH = (
    'echo "start $ENQUEUE_SITE $ENQUEUE_TURN $(date +%s%N) $$" >> "$0"; '
    'echo "end $ENQUEUE_SITE $ENQUEUE_TURN $(date +%s%N) $$ exited" >> "$0"'
)
# For failover: a command long enough to be running when its agent is killed.
PROBE_SH_LONG = PROBE_SH.replace('; echo "end', '; sleep 5; echo "end')
# The handoff runs' command: the trivial one, but the first turn to find "$0.hold" removes it and holds its turn
# for QUIET_S: a stretch with no handoff at all, to measure what waiting costs when nothing happens. A turn that
# finds no such file pays one test built into the shell.
QUIET_S = 6.0
PROBE_SH_QUIET = PROBE_SH.replace(
    '; echo "end', f'; if [ -e "$0.hold" ]; then rm -f "$0.hold"; sleep {QUIET_S:g}; fi; echo "end')
# A site drained from the start (`enqueue sites drain`), so it is offered no turn, but otherwise waiting like the
# others: it beats, follows the same documents and wakes for every handoff, so its CPU is a bystander's.
BYSTANDER = "bystander"


def quantile_ms(values: list[float], p: float) -> float | None:
    if not values:
        return None
    v = sorted(values)
    return v[min(len(v) - 1, int(p * len(v)))] * 1000


def cpu_s(proc: psutil.Process, with_children: bool = False) -> float:
    """User+system CPU of ``proc`` (and, if asked, of its reaped and live children); 0 once it is gone."""
    try:
        t = proc.cpu_times()
        total = t.user + t.system
        if with_children:
            total += t.children_user + t.children_system
            for child in proc.children(recursive=True):
                try:
                    c = child.cpu_times()
                    total += c.user + c.system
                except psutil.Error:
                    pass
        return total
    except psutil.Error:
        return 0.0


def run_time_s(pid: int) -> float:
    """CPU time of ``pid``'s live threads to the nanosecond (the scheduler's own count; /proc's user and system
    times come in 10 ms ticks, too coarse for a few seconds of a waiting agent); 0 once it is gone."""
    total = 0
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{task}/schedstat") as fh:
                    total += int(fh.read().split()[0])
            except (OSError, ValueError, IndexError):
                pass
    except OSError:
        return 0.0
    return total / 1e9


@dataclass
class Figures:
    """What one run measured; None where it does not apply."""

    label: str
    sites: int
    handoffs: int = 0
    p50_ms: float | None = None
    p90_ms: float | None = None
    overlaps: int = 0
    all_turned_s: float | None = None
    turned: int = 0
    waiting_cpu_ms: float | None = None
    bystander_handoff_ms: float | None = None
    idle_per_beat_ms: float | None = None
    idle_per_s_ms: float | None = None
    beats_per_s: float | None = None
    leader_cpu_ms: float | None = None
    server_cpu_ms: float | None = None
    agent_rss_mb: float | None = None
    supervisor_rss_mb: float | None = None
    server_rss_mb: float | None = None


@dataclass
class Watched:
    """The processes of one run, their largest resident memory seen, and CPU snapshots."""

    clients: dict[str, psutil.Process] = field(default_factory=dict)
    server: psutil.Process | None = None
    clients_with_children: bool = False
    rss: dict[str, int] = field(default_factory=dict)
    # The bystander's heartbeat count, taken with every snapshot (as "<beats>", and its CPU to the ns as
    # "<bystander>") when set.
    beats: Callable[[], int | None] | None = None

    def snapshot(self) -> dict[str, float]:
        cpu = {site: cpu_s(p, self.clients_with_children) for site, p in self.clients.items()}
        if self.server is not None:
            cpu["<server>"] = cpu_s(self.server)
        beats = self.beats() if self.beats is not None else None
        if beats is not None:
            cpu["<beats>"] = float(beats)
            cpu["<bystander>"] = run_time_s(self.clients[BYSTANDER].pid)
        return cpu

    def sample_memory(self) -> None:
        """Note the largest RSS of each kind of process: client (agent / etcdctl), supervisor, server."""
        for proc in list(self.clients.values()):
            try:
                kids = proc.children(recursive=True)
                self._note("client", proc if not self.clients_with_children else None)
                for kid in kids:
                    line = " ".join(kid.cmdline())
                    if "enqueue.supervisor" in line:
                        self._note("supervisor", kid)
                    elif "etcdctl" in line:
                        self._note("client", kid)
            except psutil.Error:
                pass
        if self.server is not None:
            self._note("server", self.server)

    def _note(self, kind: str, proc: psutil.Process | None) -> None:
        if proc is None:
            return
        try:
            self.rss[kind] = max(self.rss.get(kind, 0), proc.memory_info().rss)
        except psutil.Error:
            pass


class MemorySampler:
    """A thread sampling ``watched.sample_memory`` every ``period_s`` until stopped."""

    def __init__(self, watched: Watched, period_s: float) -> None:
        self.watched = watched
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(period_s,), daemon=True)
        self._thread.start()

    def _run(self, period_s: float) -> None:
        while not self._stop.wait(period_s):
            self.watched.sample_memory()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)


@dataclass
class Quiet:
    """The bystander's CPU and own heartbeat count at both ends of a stretch with no handoff, and its length."""

    seconds: float
    cpu_s: float
    beats: int


def beat_number(bench: "Bench", site: str) -> int | None:
    """How many times ``site``'s heartbeat doc was written so far (its revision's number); None if unreadable."""
    try:
        rev = (bench.store.get(docs.heartbeat_id(site)) or {}).get("_rev", "")
        return int(rev.split("-", 1)[0])
    except Exception:  # noqa: BLE001 - a figure left out, not a failed run
        return None


def split_bystander(fig: Figures, quiet: Quiet | None, window_s: float, window_cpu_s: float,
                    window_beats: int | None, handoffs: int) -> None:
    """The bystander's CPU, split: what waiting costs per own heartbeat and per second with nothing happening
    (its beats, the feed's beats, the leader's heartbeats on its feed), and what each handoff adds on top."""
    if quiet is None or quiet.seconds <= 0:
        return
    fig.idle_per_s_ms = quiet.cpu_s * 1000 / quiet.seconds
    fig.idle_per_beat_ms = quiet.cpu_s * 1000 / quiet.beats if quiet.beats > 0 else None
    if window_beats is not None and window_s > 0:
        fig.beats_per_s = window_beats / window_s
    if handoffs:
        fig.bystander_handoff_ms = (window_cpu_s - quiet.cpu_s / quiet.seconds * window_s) * 1000 / handoffs


def measure(fig: Figures, report: checker.Report, launched_ns: int, sites: list[str],
            window: tuple[int, int], cpu: tuple[dict[str, float], dict[str, float]], leader: str | None,
            watched: Watched) -> Figures:
    """Fill ``fig`` from the run's log and its CPU snapshots taken at ``window`` (unix ns) start and end."""
    runs = report.runs
    fig.overlaps = len(report.overlaps)
    first: dict[str, int] = {}
    for run in runs:
        first.setdefault(run.site, run.start_ns)
    fig.turned = len([s for s in sites if s in first])
    if fig.turned == len(sites):
        fig.all_turned_s = (max(first.values()) - launched_ns) / 1e9
    fig.handoffs = len(report.gaps_s)
    fig.p50_ms, fig.p90_ms = quantile_ms(report.gaps_s, 0.5), quantile_ms(report.gaps_s, 0.9)
    pairs = [(a.site, b.site) for a, b in zip(runs, runs[1:]) if window[0] <= b.start_ns <= window[1]]
    before, after = cpu
    per_waiting = []
    for site in sites:
        used = after.get(site, 0.0) - before.get(site, 0.0)
        apart = len([p for p in pairs if site not in p])
        if site == leader:
            fig.leader_cpu_ms = used * 1000 / len(pairs) if pairs else None
        elif apart and site in before:
            per_waiting.append(used * 1000 / apart)
    fig.waiting_cpu_ms = statistics.median(per_waiting) if per_waiting else None
    if "<server>" in before and pairs:
        fig.server_cpu_ms = (after["<server>"] - before["<server>"]) * 1000 / len(pairs)
    mb = {k: v / 2**20 for k, v in watched.rss.items()}
    fig.agent_rss_mb, fig.supervisor_rss_mb, fig.server_rss_mb = mb.get("client"), mb.get("supervisor"), mb.get("server")
    return fig


_LOGGED = re.compile(r"^(\S+Z) \S+ \w+ (command of turn|finished turn|confirmed turn|starting turn|started turn) (\d+)")


def breakdown(workdir: Path, log: Path, agent_logs: str = "agent-*.log") -> list[str]:
    """Where the handoffs of a run went, from the agents' debug logs (to the ms) and the commands' records."""
    at: dict[tuple[str, int], float] = {}
    for path in workdir.glob(agent_logs):
        for line in path.read_text(errors="replace").splitlines():
            m = _LOGGED.match(line)
            if m:
                moment = datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
                at.setdefault((m.group(2), int(m.group(3))), moment.timestamp())
    stages: dict[str, list[float]] = {
        "command's end -> its agent has the supervisor's report": [],
        "-> the finishing site's done + grant answered (one compare-and-swap, carrying the record)": [],
        "-> the next site decides to start (changes feed; then its confirm, on the slow path only)": [],
        "-> the start message sent to the supervisor": [],
        "-> the command's first line (supervisor, exec, the shell forks date)": [],
    }
    runs = [r for r in checker.read(str(log)).runs if r.end_ns and r.turn.isdigit()]
    for a, b in zip(runs, runs[1:]):
        ta, tb = int(a.turn), int(b.turn)
        # The next site either started on the grant alone or confirmed first (the slow path).
        decided = ("starting turn", tb) if ("starting turn", tb) in at else ("confirmed turn", tb)
        keys = [("command of turn", ta), ("finished turn", ta), decided, ("started turn", tb)]
        if tb != ta + 1 or any(k not in at for k in keys):
            continue
        moments = [a.end_ns / 1e9, *(at[k] for k in keys), b.start_ns / 1e9]
        for values, (x, y) in zip(stages.values(), zip(moments, moments[1:])):
            values.append((y - x) * 1000)
    return [f"  {name}: p50 {statistics.median(v):.1f} ms (n={len(v)})" for name, v in stages.items() if v]


def table(figures: list[Figures]) -> str:
    """The figures of every run, one column per run."""
    def ms3(v: float | None) -> str:
        return "-" if v is None else f"{v:.3f} ms"

    def fmt(v: object, unit: str = "") -> str:
        if v is None:
            return "-"
        return f"{v:.1f}{unit}" if isinstance(v, float) else f"{v}{unit}"

    rows = [
        ("sites", lambda f: fmt(f.sites)),
        ("handoffs measured", lambda f: fmt(f.handoffs)),
        ("handoff p50", lambda f: fmt(f.p50_ms, " ms")),
        ("handoff p90", lambda f: fmt(f.p90_ms, " ms")),
        ("overlaps", lambda f: fmt(f.overlaps)),
        ("every site had a turn after", lambda f: fmt(f.all_turned_s, " s") if f.all_turned_s is not None
         else f"{f.turned} of {f.sites} did"),
        ("waiting client CPU per handoff", lambda f: ms3(f.waiting_cpu_ms)),
        ("bystander CPU per handoff, idle deducted", lambda f: ms3(f.bystander_handoff_ms)),
        ("bystander idle CPU per own heartbeat", lambda f: ms3(f.idle_per_beat_ms)),
        ("bystander idle CPU per second", lambda f: ms3(f.idle_per_s_ms)),
        ("bystander heartbeats per second", lambda f: fmt(f.beats_per_s)),
        ("leader CPU per handoff", lambda f: fmt(f.leader_cpu_ms, " ms")),
        ("server CPU per handoff", lambda f: fmt(f.server_cpu_ms, " ms")),
        ("client RSS, max (agent / etcdctl)", lambda f: fmt(f.agent_rss_mb, " MB")),
        ("supervisor RSS, max", lambda f: fmt(f.supervisor_rss_mb, " MB")),
        ("server RSS, max", lambda f: fmt(f.server_rss_mb, " MB")),
    ]
    width = max(len(r[0]) for r in rows)
    cols = [[f.label] + [r[1](f) for r in rows] for f in figures]
    widths = [max(len(c) for c in col) for col in cols]
    lines = [" " * width + "  " + "  ".join(col[0].rjust(w) for col, w in zip(cols, widths))]
    for i, (name, _) in enumerate(rows, start=1):
        lines.append(name.ljust(width) + "  " + "  ".join(col[i].rjust(w) for col, w in zip(cols, widths)))
    return "\n".join(lines)


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

    def start(self, site: str, log: Path, probe: str = PROBE_SH, options: tuple[str, ...] = ()) -> None:
        out = open(self.workdir / f"agent-{site}.log", "ab")
        self.agents[site] = subprocess.Popen(
            [sys.executable, "-m", "enqueue", "run", str(self.config), site, "--repeat",
             "-d", self.args.delay, "-s", self.args.stale, "-c", "0.2s", *self.args.agent_args, *options, "--",
             "/bin/sh", "-c", probe, str(log)],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
        )
        out.close()

    def drain(self, site: str) -> None:
        """Keep ``site`` out of the rotation, as an admin would."""
        subprocess.run([sys.executable, "-m", "enqueue", "sites", str(self.config), "drain", site, "--reason",
                        "benchmark bystander"], check=True, stdout=subprocess.DEVNULL)

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


def holding(seconds: float) -> str:
    """The trivial command, holding its turn for ``seconds`` between its two lines."""
    return PROBE_SH.replace('; echo "end', f'; sleep {seconds:g}; echo "end')


def handoff(bench: Bench, sites: list[str], label: str, server_pid: int | None, probe: str = PROBE_SH) -> Figures:
    """Run ``sites`` until every one has had a turn and ``--turns`` handoffs followed the first five.

    With the trivial command on 3 sites, a bystander site runs beside them, and after the measured handoffs
    one turn holds for QUIET_S, so that the bystander's CPU can be split into waiting and handoffs
    (``split_bystander``). A bystander that is not up in time is left out of the figures, not the run.
    """
    log = bench.workdir / f"handoff-{len(sites)}-{label.replace(' ', '-')}.log"
    quiet = probe == PROBE_SH and len(sites) == 3
    watched = Watched(server=psutil.Process(server_pid) if server_pid else None)
    launched_ns = time.time_ns()
    for site in sites:
        bench.start(site, log, PROBE_SH_QUIET if quiet else probe)
        watched.clients[site] = psutil.Process(bench.agents[site].pid)
    sampler = MemorySampler(watched, max(0.25, len(sites) / 200))
    first = 5
    try:
        if quiet:
            try:
                _start_bystander(bench, log, watched)
            except (SystemExit, subprocess.CalledProcessError) as exc:
                print(f"benchmark: no bystander figures: {exc}")
                quiet = False
                watched.beats = None
                watched.clients.pop(BYSTANDER, None)
                late = bench.agents.pop(BYSTANDER, None)
                if late is not None:
                    late.kill()
                    late.wait()
            first = max(first, len([r for r in checker.read(str(log)).runs if r.end_ns]) + 1)
        window_start, window_end = _measuring_window(bench, log, sites, watched, first)
        still = _quiet_stretch(bench, log, watched) if quiet else None
        leader = bench.leader()
    finally:
        sampler.stop()
        bench.stop()
    report = checker.read(str(log))
    report.gaps_s = report.gaps_s[first:]  # the first turns include start-up, the first election (and the drain)
    start = window_start or window_end
    fig = measure(Figures(label, len(sites)), report, launched_ns, sites, (start[0], window_end[0]),
                  (start[1], window_end[1]), leader.leader if leader else None, watched)
    if quiet and window_start is not None and "<bystander>" in window_start[1] and "<bystander>" in window_end[1] \
            and (not leader or leader.leader != BYSTANDER):
        handoffs = len([r for r in report.runs if start[0] <= r.start_ns <= window_end[0]])
        first, last = window_start[1].get("<beats>"), window_end[1].get("<beats>")
        beats_in = int(last - first) if first is not None and last is not None else None
        split_bystander(fig, still, (window_end[0] - start[0]) / 1e9,
                        window_end[1]["<bystander>"] - window_start[1]["<bystander>"], beats_in, handoffs)
    return fig


def _start_bystander(bench: Bench, log: Path, watched: Watched) -> None:
    """Start the bystander once a leader is elected (so that it is not the one), drain it, and return once it
    is past its start-up (a few beats in), so that its CPU from now on is waiting alone."""
    wait_for("the first turn", lambda: checker.read(str(log)).runs, bench.args.max_seconds)
    bench.start(BYSTANDER, log)
    watched.clients[BYSTANDER] = psutil.Process(bench.agents[BYSTANDER].pid)
    watched.beats = lambda: beat_number(bench, BYSTANDER)
    wait_for("the bystander's registration", lambda: watched.beats(), bench.args.max_seconds)
    bench.drain(BYSTANDER)
    wait_for("the bystander's heartbeats", lambda: (watched.beats() or 0) >= 4, bench.args.max_seconds)


def _quiet_stretch(bench: Bench, log: Path, watched: Watched) -> Quiet | None:
    """Have the next turn hold for QUIET_S; the bystander's CPU and beats over the middle of that hold.

    None if no turn held (the run was over, or a handoff came within the stretch).
    """
    hold = Path(f"{log}.hold")
    hold.touch()
    asked_ns = time.time_ns()
    held = None
    deadline = time.monotonic() + 30
    while held is None and time.monotonic() < deadline:
        if not hold.exists():
            runs = checker.read(str(log)).runs
            held = next((r for r in runs if r.start_ns >= asked_ns and r.end_ns is None), None)
        time.sleep(0.01)
    if held is None:
        hold.unlink(missing_ok=True)
        return None
    time.sleep(0.3)
    pid = watched.clients[BYSTANDER].pid
    t0, cpu0, beat0 = time.monotonic(), run_time_s(pid), beat_number(bench, BYSTANDER)
    time.sleep(QUIET_S - 1.0)
    t1, cpu1, beat1 = time.monotonic(), run_time_s(pid), beat_number(bench, BYSTANDER)
    if any(r.start_ns > held.start_ns for r in checker.read(str(log)).runs) or beat0 is None or beat1 is None:
        return None
    return Quiet(seconds=t1 - t0, cpu_s=cpu1 - cpu0, beats=beat1 - beat0)


def _measuring_window(bench: Bench, log: Path, sites: list[str], watched: Watched, first: int = 5
                      ) -> tuple[tuple[int, dict[str, float]] | None, tuple[int, dict[str, float]]]:
    """Follow the probe log until ``--turns`` handoffs after the first ``first`` and every site had a turn.

    Returns the window's start (after turn ``first``; None if it never came) and end, each as the
    time and a snapshot of the watched processes' CPU.
    """
    deadline = time.monotonic() + bench.args.max_seconds
    window_start: tuple[int, dict[str, float]] | None = None
    while time.monotonic() < deadline:
        runs = [r for r in checker.read(str(log)).runs if r.end_ns]
        if window_start is None and len(runs) >= first:
            window_start = (time.time_ns(), watched.snapshot())
        if len(runs) >= bench.args.turns + first and len({r.site for r in runs}) == len(sites):
            break
        time.sleep(0.05)
    window_end = (time.time_ns(), watched.snapshot())
    return window_start, window_end


LOOP = Path(__file__).resolve().parent.parent / "sites" / "enqueue-loop.sh"


def loop_handoff(bench: Bench, sites: list[str], label: str, server_pid: int | None,
                 probe: str = PROBE_SH) -> tuple[Figures, str]:
    """``sites`` each in the site loop (a run-once agent per iteration); the figures and the leadership line."""
    log = bench.workdir / f"loop-{len(sites)}-{label.replace(' ', '-')}.log"
    watched = Watched(server=psutil.Process(server_pid) if server_pid else None)
    launched_ns = time.time_ns()
    agent_logs = {site: bench.workdir / f"loop-agent-{site}-{label.replace(' ', '-')}.log" for site in sites}
    for site in sites:
        run_options = [f"--heartbeat-delay={bench.args.delay}", f"--heartbeat-stale={bench.args.stale}",
                       "--conflict-delay=0.2s", f"--log-file={agent_logs[site]}", *bench.args.agent_args]
        bench.agents[site] = subprocess.Popen(
            ["bash", str(LOOP), "--run-once", "--enqueue", f"{sys.executable} -m enqueue", "--monitor", "sleep 0.05",
             "--pause", "0", *[f"--run-option={o}" for o in run_options], str(bench.config), site,
             "--", "/bin/sh", "-c", probe, str(log)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
    try:
        window_start, window_end = _measuring_window(bench, log, sites, watched)
    finally:
        bench.stop()
    leader = bench.leader()
    report = checker.read(str(log))
    turns = len(report.runs)
    report.gaps_s = report.gaps_s[5:]
    start = window_start or window_end
    fig = measure(Figures(label, len(sites)), report, launched_ns, sites, (start[0], window_end[0]),
                  (start[1], window_end[1]), None, watched)
    lines = [line for path in agent_logs.values() if path.exists() for line in path.read_text().splitlines()]
    elected = sum("elected leader" in line for line in lines)
    handed = sum("handed the leadership to" in line for line in lines)
    term = leader.leader_term if leader else None
    return fig, (f"{label}: {turns} turns, {elected} elections, {handed} leadership handoffs at the end of a "
                 f"turn, leader term {term} at the end")


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


class Etcd:
    """One etcd server on loopback ports, in its own session."""

    def __init__(self, workdir: Path) -> None:
        self.etcd, self.etcdctl = shutil.which("etcd"), shutil.which("etcdctl")
        self.workdir = workdir
        self.server: subprocess.Popen | None = None
        self.endpoint = ""

    def start(self) -> bool:
        if not self.etcd or not self.etcdctl:
            print("etcd: not installed (apt-get install etcd-server etcd-client); skipped")
            return False
        port, peer = _free_port(), _free_port()
        self.endpoint = f"http://127.0.0.1:{port}"
        self.server = subprocess.Popen(
            [self.etcd, "--data-dir", str(self.workdir / "etcd"), "--listen-client-urls", self.endpoint,
             "--advertise-client-urls", self.endpoint, "--listen-peer-urls", f"http://127.0.0.1:{peer}",
             "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
             "--initial-cluster", f"default=http://127.0.0.1:{peer}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        wait_for("etcd", lambda: subprocess.run([self.etcdctl, f"--endpoints={self.endpoint}", "endpoint", "health"],
                                                capture_output=True).returncode == 0, 30)
        return True

    def stop(self) -> None:
        if self.server is not None:
            _kill_group(self.server)
            self.server = None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def etcd_handoff(etcd: Etcd, clients: int, args: argparse.Namespace, label: str) -> Figures:
    """The same command under `etcdctl lock`, ``clients`` shell loops taking turns, measured like ours."""
    log = etcd.workdir / f"etcd-{clients}.log"
    assert etcd.server is not None
    watched = Watched(server=psutil.Process(etcd.server.pid), clients_with_children=True)
    names = [f"c{i}" for i in range(clients)]
    loops: list[subprocess.Popen] = []
    launched_ns = time.time_ns()
    lock = f"bench{clients}"
    sampler = None
    try:
        for name in names:
            env = {**os.environ, "ENQUEUE_SITE": name, "ENQUEUE_TURN": "-", "ETCDCTL_API": "3"}
            script = (f'while :; do "{etcd.etcdctl}" --endpoints={etcd.endpoint} lock {lock} -- /bin/sh -c '
                      f'\'{PROBE_SH}\' "{log}" || exit 1; done')
            loops.append(subprocess.Popen(["/bin/sh", "-c", script], env=env, start_new_session=True,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            watched.clients[name] = psutil.Process(loops[-1].pid)
        sampler = MemorySampler(watched, max(0.25, clients / 200))
        deadline = time.monotonic() + args.max_seconds
        window_start = None
        while time.monotonic() < deadline:
            runs = [r for r in checker.read(str(log)).runs if r.end_ns]
            if window_start is None and len(runs) >= 5:
                window_start = (time.time_ns(), watched.snapshot())
            if len(runs) >= args.turns + 5 and len({r.site for r in runs}) == clients:
                break
            time.sleep(0.05)
        window_end = (time.time_ns(), watched.snapshot())
    finally:
        if sampler is not None:
            sampler.stop()
        for p in loops:
            _kill_group(p)
    report = checker.read(str(log))
    report.gaps_s = report.gaps_s[5:]
    start = window_start or window_end
    return measure(Figures(label, clients), report, launched_ns, names, (start[0], window_end[0]),
                   (start[1], window_end[1]), None, watched)


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def main() -> int:
    signal.signal(signal.SIGTERM, _interrupt)
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--turns", type=int, default=200, help="handoffs to measure per run (default 200)")
    p.add_argument("--sites", type=int, default=3,
                   help="with N > 3, a second run with N sites on the same server (default 3: one run)")
    p.add_argument("--max-seconds", type=float, default=300.0,
                   help="bound on each run; a run that had not finished by then is measured as far as it got")
    p.add_argument("--delay", default="0.5s", help="heartbeat delay of every agent (default 0.5s)")
    p.add_argument("--stale", default="2s", help="heartbeat stale of every agent (default 2s)")
    p.add_argument("--failover-rounds", type=int, default=3)
    p.add_argument("--skip-failover", action="store_true")
    p.add_argument("--etcd", action="store_true", help="also measure etcdctl lock on the same command")
    p.add_argument("--loop", action="store_true",
                   help="also run the 3 sites in sites/enqueue-loop.sh, one run-once agent per iteration with a "
                        "0.05 s monitoring step, and print its handoffs beside the --repeat ones")
    p.add_argument("--loop-hold", default="1s",
                   help="with --loop: how long the command of the second pair of runs holds its turn, long enough "
                        "for the other sites' agents to be waiting when a turn ends (default 1s)")
    p.add_argument("--url", help="a CouchDB URL to use instead of the embedded server")
    p.add_argument("--agent-arg", action="append", default=[], dest="agent_args",
                   help="an extra option for every agent, e.g. --agent-arg=--log-level=debug")
    p.add_argument("--keep", action="store_true", help="keep the work directory (agents' logs)")
    p.add_argument("--breakdown", action="store_true",
                   help="run the agents with debug logs and print where the 3-site handoffs went (log times are "
                        "to the ms; the logging itself costs a little)")
    args = p.parse_args()
    if args.breakdown:
        args.agent_args.append("--log-level=debug")
    if args.sites < 2:
        p.error("--sites needs at least 2")
    counts = [3] + ([args.sites] if args.sites > 3 else [])

    def names(n: int) -> list[str]:
        return [f"site{i:03d}" for i in range(n)]

    workdir = Path(tempfile.mkdtemp(prefix="enqueue-bench-"))
    server = None
    figures: list[Figures] = []
    stages: list[str] = []
    loop_lines: list[str] = []
    loop_stages: list[tuple[str, list[str]]] = []
    try:
        if args.url:
            url = args.url
        else:
            server = DevServer().start()
            url = server.url
        load = os.getloadavg()
        print(f"server: {'given URL' if args.url else 'embedded pouchdb-server (in memory)'}; "
              f"runs of {', '.join(map(str, counts))} sites; trivial shell command; {os.cpu_count()} CPUs; "
              f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
        for n in counts:
            bench = Bench(args, workdir, url)
            try:
                figures.append(handoff(bench, names(n), f"enqueue {n}", server.pid if server else None))
            finally:
                bench.close()
            if args.breakdown and n == 3:
                stages = breakdown(workdir, workdir / "handoff-3-enqueue-3.log")
                for line in workdir.glob("agent-*.log"):
                    line.unlink()
            if args.loop and n == 3:
                pid = server.pid if server else None
                hold = holding(parse_duration(args.loop_hold))
                runs = [("loop 3", loop_handoff, PROBE_SH), (f"enqueue 3, {args.loop_hold}", handoff, hold),
                        (f"loop 3, {args.loop_hold}", loop_handoff, hold)]
                for label, run, probe in runs:
                    bench = Bench(args, workdir, url)
                    try:
                        got = run(bench, names(3), label, pid, probe)
                    finally:
                        bench.close()
                    if isinstance(got, tuple):
                        figures.append(got[0])
                        loop_lines.append(got[1])
                    else:
                        figures.append(got)
                    if args.breakdown:
                        tag = label.replace(" ", "-")
                        log = workdir / (f"loop-3-{tag}.log" if run is loop_handoff else f"handoff-3-{tag}.log")
                        pattern = f"loop-agent-*-{tag}.log" if run is loop_handoff else "agent-*.log"
                        loop_stages.append((label, breakdown(workdir, log, pattern)))
                        for path in workdir.glob("agent-*.log"):
                            path.unlink()
        if not args.skip_failover:
            bench = Bench(args, workdir, url)
            try:
                leader_s, runner_s = failover(bench, names(3), args.failover_rounds)
            finally:
                bench.close()
            print(f"failover after SIGKILL of the leader (delay {args.delay}, stale {args.stale}): "
                  + ", ".join(f"{s:.2f} s" for s in leader_s))
            print("next command after SIGKILL of the running agent: " + ", ".join(f"{s:.2f} s" for s in runner_s))
        if server is not None:
            server.stop()
            server = None
        if args.etcd:
            etcd = Etcd(workdir)
            try:
                if etcd.start():
                    for n in counts:
                        figures.append(etcd_handoff(etcd, n, args, f"etcd {n}"))
            finally:
                etcd.stop()
        print(table(figures))
        if args.breakdown:
            print("where a 3-site handoff went (medians):")
            print("\n".join(stages) or "  no complete handoff in the logs")
            for label, lines in loop_stages:
                print(f"where a handoff of '{label}' went (medians):")
                print("\n".join(lines) or "  no complete handoff in the logs")
        for f in figures:
            print(f"{f.label}: handoff {quantiles_of(f)}")
        for line in loop_lines:
            print(line)
        by_label = {f.label: f for f in figures}
        for loop_label, repeat_label in (("loop 3", "enqueue 3"),
                                         (f"loop 3, {args.loop_hold}", f"enqueue 3, {args.loop_hold}")):
            a, b = by_label.get(loop_label), by_label.get(repeat_label)
            if a and b and a.p50_ms and b.p50_ms:
                print(f"{loop_label} / {repeat_label} (--repeat): handoff p50 ratio {a.p50_ms / b.p50_ms:.2f}")
        load = os.getloadavg()
        print(f"load average at the end {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
    finally:
        if server is not None:
            server.stop()
        if args.keep:
            print(f"logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


def quantiles_of(f: Figures) -> str:
    return f"p50 {f.p50_ms:.1f} ms, p90 {f.p90_ms:.1f} ms over {f.handoffs}" if f.p50_ms is not None else "no samples"


if __name__ == "__main__":
    sys.exit(main())
