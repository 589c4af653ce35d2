"""Agent processes for integration tests: start, signal, and read what they did.

Agents run as real processes (``python -m enqueue run``) against the test
server, each with its own log file; their commands are ``tools.chaos.probe`` so the
history checker can judge what actually ran. Everything started here is
killed at the end of the test.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import psutil

from tools.chaos import checker, probe

# Short timings: heartbeat every 0.5 s, stale after 2 s.
DELAY = "0.5s"
STALE = "2s"
CONFLICT = "0.2s"
GRACE = "0.3s"
DELAY_S, STALE_S = 0.5, 2.0


def wait_until(what: str, condition: Callable[[], object], timeout_s: float = 20.0, every_s: float = 0.02) -> object:
    """Re-check ``condition`` until it is truthy; fail the test with ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(every_s)


@dataclass
class AgentProcess:
    site: str
    proc: subprocess.Popen
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout_s: float = 20.0) -> int:
        return self.proc.wait(timeout=timeout_s)


@dataclass
class Sites:
    """A set of agents sharing one database, one probe log and one lock file."""

    config: Path
    workdir: Path
    agents: dict[str, AgentProcess] = field(default_factory=dict)

    @property
    def probe_log(self) -> Path:
        return self.workdir / "probe.log"

    def start(
        self,
        site: str,
        *,
        repeat: bool = True,
        sleep_s: float = 0.2,
        command: list[str] | None = None,
        extra: list[str] = (),
        env: dict[str, str] | None = None,
    ) -> AgentProcess:
        if command is None:
            command = [sys.executable, probe.PATH, str(self.probe_log), "--sleep", str(sleep_s)]
        argv = [sys.executable, "-m", "enqueue", "run", str(self.config), site,
                "-d", DELAY, "-s", STALE, "-c", CONFLICT, "--kill-grace", GRACE, *extra]
        if repeat:
            argv.append("--repeat")
        argv += ["--", *command]
        log_path = self.workdir / f"agent-{site}.log"
        out = open(log_path, "ab")
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, **(env or {})})
        out.close()
        agent = AgentProcess(site, proc, log_path)
        self.agents[site] = agent
        return agent

    def report(self) -> checker.Report:
        return checker.read(str(self.probe_log))

    def wait_runs(self, count: int, timeout_s: float = 30.0) -> checker.Report:
        """Wait until ``count`` commands have finished; return the history."""
        def enough() -> checker.Report | None:
            report = self.report()
            done = [r for r in report.runs if r.end_ns is not None]
            return report if len(done) >= count else None
        return wait_until(f"{count} finished turns", enough, timeout_s)  # type: ignore[return-value]

    def stop_all(self) -> None:
        """Kill every agent and everything it started (supervisors, commands), all at once."""
        family: list[psutil.Process] = []
        for agent in self.agents.values():
            try:
                family += psutil.Process(agent.proc.pid).children(recursive=True)
            except psutil.NoSuchProcess:
                pass
        for pid in [a.proc.pid for a in self.agents.values()] + [p.pid for p in family]:
            try:
                os.kill(pid, signal.SIGCONT)
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        for agent in self.agents.values():
            agent.proc.wait(timeout=10)
        psutil.wait_procs(family, timeout=5)
