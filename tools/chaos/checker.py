"""The history checker: reads the probes' own start/end lines and judges them.

It proves or refutes "never two commands at once" from what the commands
themselves wrote (``tools.chaos.probe``), not from what the agents claim:

* an ``overlap`` line means a probe found another probe's lock held (the
  kernel holds that lock exactly as long as the other process lives);
* two [start, end] intervals that intersect are an overlap too.

It also measures handoff gaps (one command's end to the next one's start)
for demos, benchmarks and chaos reports.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field


@dataclass
class Run:
    """One command's life as the probe recorded it; ``end_ns`` is None if it was killed."""

    site: str
    turn: str
    pid: int
    start_ns: int
    end_ns: int | None = None
    how: str | None = None


@dataclass
class Report:
    """What the history shows."""

    runs: list[Run] = field(default_factory=list)
    overlaps: list[str] = field(default_factory=list)
    gaps_s: list[float] = field(default_factory=list)

    @property
    def order(self) -> list[str]:
        return [run.site for run in self.runs]

    @property
    def median_gap_s(self) -> float | None:
        return statistics.median(self.gaps_s) if self.gaps_s else None


def read(path: str) -> Report:
    """Parse a probe log into a report; unparseable lines are ignored."""
    report = Report()
    by_pid: dict[int, Run] = {}
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            lines = fh.read().splitlines()
    except FileNotFoundError:
        return report
    for line in lines:
        parts = line.split()
        if len(parts) < 5:
            continue
        kind, site, turn, ns, pid = parts[:5]
        try:
            when, who = int(ns), int(pid)
        except ValueError:
            continue
        if kind == "start":
            run = Run(site=site, turn=turn, pid=who, start_ns=when)
            by_pid[who] = run
            report.runs.append(run)
        elif kind == "end" and who in by_pid:
            by_pid[who].end_ns = when
            by_pid[who].how = parts[5] if len(parts) > 5 else None
        elif kind == "overlap":
            report.overlaps.append(f"site {site} turn {turn} (pid {who}) started while another command still ran")
    report.runs.sort(key=lambda r: r.start_ns)
    previous: Run | None = None
    for run in report.runs:
        if previous is not None:
            if previous.end_ns is None or previous.end_ns > run.start_ns:
                if previous.end_ns is not None:
                    report.overlaps.append(
                        f"site {run.site} turn {run.turn} started {(previous.end_ns - run.start_ns) / 1e9:.3f} s "
                        f"before site {previous.site} turn {previous.turn} ended"
                    )
            else:
                report.gaps_s.append((run.start_ns - previous.end_ns) / 1e9)
        previous = run
    return report
