"""What a chaos run proves: invariants judged from evidence the agents cannot fake.

Evidence:

* the probe log (``tools.chaos.probe`` via ``tools.chaos.checker``): every command's
  own start and end, and ``overlap`` lines written when a command found
  another one's ``flock`` still held, which the kernel holds exactly as long
  as that process lives;
* the documents left in the database: the leader doc's turn number (one per
  grant) and the turn records ``enqueue_turn:<n>``;
* the harness's own list of faults with the moments they began and healed,
  and what it saw of the agent processes.

Invariants (each failure is one line in ``violations``):

1. no two commands ran at once;
2. fencing tokens: every command ran under its own ``ENQUEUE_TURN``, and in
   start order the turns strictly increase;
3. every turn that was granted and is over has a record (1 .. turn-1, and
   the last one too when the leader doc says it is done), each record
   parses, and a command's record names the site that ran it;
4. after each fault, every stretch with no command running, from the
   fault's start until a command starts after it healed, is at most
   ``heartbeat_stale + heartbeat_delay + margin``: the other sites must
   route around a frozen or cut-off site while the fault lasts. A fault
   marked ``from_heal`` counts from its heal instead: an outage of the whole
   system (the server restarting), when nothing can run, and an agent
   killed and started again, whose heal is the moment it is back (a site
   that comes back just before the others would have called it stale makes
   them wait for it, then waits ``heartbeat_stale - heartbeat_delay`` for its
   predecessor's lease to run out: up to ``2 x heartbeat_stale -
   heartbeat_delay`` after the kill, plus its own start-up; ``stall_from_start_s``
   shows that figure);
5. the leader doc parses at the end, and no agent crashed or printed a
   traceback (the harness reports those).

A command killed with SIGKILL leaves no end line; its end is then taken to
be the start of the first fault after it began (the fault that killed it),
or the next command's start, whichever is first. Such runs are counted.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple

from enqueue import documents as docs
from tools.chaos.checker import Report as History

__all__ = ["Fault", "Limits", "judge", "summary"]

_NS = 1_000_000_000


@dataclass
class Fault:
    """One injected fault: when it began and when it was healed (unix ns), and what it hit."""

    kind: str
    site: Optional[str]
    start_ns: int
    heal_ns: int
    detail: str = ""
    from_heal: bool = False

    @property
    def counted_from_ns(self) -> int:
        """Where a stall starts to count: from the heal when ``from_heal``, else from the start."""
        return self.heal_ns if self.from_heal else self.start_ns


@dataclass(frozen=True)
class Limits:
    """The timing the run used, and the stall bound derived from it."""

    heartbeat_delay_s: float
    heartbeat_stale_s: float
    margin_s: float

    @property
    def bound_s(self) -> float:
        """The longest stall allowed after a fault: stale + delay + margin."""
        return self.heartbeat_stale_s + self.heartbeat_delay_s + self.margin_s


@dataclass
class _Busy:
    start_ns: int
    end_ns: int
    estimated: bool


def _busy_intervals(history: History, faults: List[Fault]) -> Tuple[List[_Busy], int]:
    """Each command's [start, end]; ends missing from the log are estimated (see module doc)."""
    runs = sorted(history.runs, key=lambda r: r.start_ns)
    fault_starts = sorted(f.start_ns for f in faults)
    out: List[_Busy] = []
    estimated = 0
    for i, run in enumerate(runs):
        if run.end_ns is not None:
            out.append(_Busy(run.start_ns, run.end_ns, False))
            continue
        candidates = [s for s in fault_starts if s >= run.start_ns][:1]
        if i + 1 < len(runs):
            candidates.append(runs[i + 1].start_ns)
        end = min(candidates) if candidates else run.start_ns
        out.append(_Busy(run.start_ns, max(end, run.start_ns), True))
        estimated += 1
    return out, estimated


def _idle_intervals(busy: List[_Busy], until_ns: int) -> List[Tuple[int, Optional[int]]]:
    """Stretches with no command running, after the first command: (from, to); ``to`` None if still idle."""
    idle: List[Tuple[int, Optional[int]]] = []
    if not busy:
        return idle
    ordered = sorted(busy, key=lambda b: b.start_ns)
    covered_until = ordered[0].end_ns
    for b in ordered[1:]:
        if b.start_ns > covered_until:
            idle.append((covered_until, b.start_ns))
        covered_until = max(covered_until, b.end_ns)
    if covered_until < until_ns:
        idle.append((covered_until, None))
    return idle


def _stall(fault: Fault, starts: List[int], idle: List[Tuple[int, Optional[int]]], end_ns: int,
           bound_s: float) -> Dict[str, Any]:
    """The longest idle stretch from the fault's start until a command starts after it healed."""
    resumed = next((s for s in starts if s > fault.heal_ns), None)
    horizon = resumed if resumed is not None else end_ns
    def longest_from(origin: int) -> float:
        longest = 0.0
        for begin, finish in idle:
            finish_ns = finish if finish is not None else end_ns
            if finish_ns <= origin or begin >= horizon:
                continue
            longest = max(longest, (finish_ns - max(begin, origin)) / _NS)
        return longest

    longest = longest_from(fault.counted_from_ns)
    out: Dict[str, Any] = {
        "stall_s": round(longest, 3),
        "stall_from_start_s": round(longest_from(fault.start_ns), 3),
        "resumed_after_heal_s": None if resumed is None else round((resumed - fault.heal_ns) / _NS, 3),
    }
    if resumed is None and (end_ns - fault.heal_ns) / _NS < bound_s and longest <= bound_s:
        out["within_bound"] = None  # the run ended before the bound could be checked
    else:
        out["within_bound"] = longest <= bound_s and resumed is not None
    return out


def _records(raw_records: Iterable[Mapping[str, Any]], violations: List[str]) -> Dict[int, Tuple[docs.TurnRecord, Mapping[str, Any]]]:
    found: Dict[int, Tuple[docs.TurnRecord, Mapping[str, Any]]] = {}
    for raw in raw_records:
        rec, problems = docs.parse_turn_record(raw)
        if rec is None:
            violations.append(f"turn record {raw.get('_id')} does not parse: {'; '.join(problems)}")
            continue
        if raw.get("_id") != docs.turn_record_id(rec.turn):
            violations.append(f"turn record {raw.get('_id')} holds turn {rec.turn}")
        found[rec.turn] = (rec, raw)
    return found


def _category(how: str) -> str:
    if how == "exited":
        return "completed"
    if "revoked" in how or how == "not started":
        return "revoked"
    if how == "abandoned":
        return "abandoned"
    return "ended otherwise"


def judge(
    history: History,
    faults: List[Fault],
    leader_raw: Optional[Mapping[str, Any]],
    raw_records: Iterable[Mapping[str, Any]],
    limits: Limits,
    run_end_ns: int,
    agent_problems: Iterable[str] = (),
    leader_doc_id: str = "enqueue_leader",
) -> Dict[str, Any]:
    """The report of one run (JSON-ready); ``ok`` is true when no invariant failed."""
    violations: List[str] = []

    # 1. Overlaps, from the probes' own records.
    violations += [f"overlap: {o}" for o in history.overlaps]

    # 2. Fencing tokens.
    runs = sorted(history.runs, key=lambda r: r.start_ns)
    seen: Dict[int, str] = {}
    previous: Optional[int] = None
    for run in runs:
        try:
            turn = int(run.turn)
        except ValueError:
            violations.append(f"a command at site {run.site} (pid {run.pid}) ran without a turn number")
            continue
        if turn in seen:
            violations.append(f"turn {turn} ran twice: at {seen[turn]} and at {run.site}")
        elif previous is not None and turn < previous:
            violations.append(f"turn {turn} at {run.site} started after turn {previous}: tokens went back")
        seen.setdefault(turn, run.site)
        previous = turn if previous is None else max(previous, turn)

    # 3. Turn records.
    leader, problems = docs.parse_leader(leader_raw, leader_doc_id)
    if leader is None:
        violations.append(f"the leader doc does not parse at the end: {'; '.join(problems) or 'missing'}")
    records = _records(raw_records, violations)
    granted = leader.turn if leader is not None else max(records, default=0)
    expected = set(range(1, granted))
    if leader is not None and leader.status == docs.DONE and granted > 0:
        expected.add(granted)
    missing = sorted(expected - set(records))
    if missing:
        violations.append(f"{len(missing)} turn(s) without a record: {_ranges(missing)}")
    for run in runs:
        try:
            turn = int(run.turn)
        except ValueError:
            continue
        entry = records.get(turn)
        if entry is not None and entry[0].site != run.site:
            violations.append(f"turn {turn} ran at {run.site} but its record names {entry[0].site}")
    by_how: Dict[str, int] = {}
    categories: Dict[str, int] = {}
    for rec, _raw in records.values():
        by_how[rec.how] = by_how.get(rec.how, 0) + 1
        cat = _category(rec.how)
        categories[cat] = categories.get(cat, 0) + 1
    runner_reports = sum(1 for _rec, raw in records.values() if "runner_report" in raw)

    # 4. Stalls after faults.
    busy, estimated = _busy_intervals(history, faults)
    idle = _idle_intervals(busy, run_end_ns)
    starts = [r.start_ns for r in runs]
    fault_rows = []
    origin = min([f.start_ns for f in faults] + [r.start_ns for r in runs] + [run_end_ns])
    for f in faults:
        row: Dict[str, Any] = {
            "kind": f.kind,
            "site": f.site,
            "at_s": round((f.start_ns - origin) / _NS, 3),
            "lasted_s": round((f.heal_ns - f.start_ns) / _NS, 3),
            "stall_counted_from": "heal" if f.from_heal else "start",
            "detail": f.detail,
        }
        row.update(_stall(f, starts, idle, run_end_ns, limits.bound_s))
        fault_rows.append(row)
        if row["within_bound"] is False:
            if row["resumed_after_heal_s"] is None:
                violations.append(f"{f.kind} at {row['at_s']} s ({f.site}): no command started after it healed")
            else:
                violations.append(
                    f"{f.kind} at {row['at_s']} s ({f.site}): stalled {row['stall_s']} s, "
                    f"bound {limits.bound_s:g} s"
                )
    per_kind: Dict[str, float] = {}
    for row in fault_rows:
        per_kind[row["kind"]] = max(per_kind.get(row["kind"], 0.0), row["stall_s"])

    # 5. What the harness saw of the agents.
    problems_seen = list(agent_problems)
    violations += problems_seen

    per_site: Dict[str, int] = {}
    for run in runs:
        per_site[run.site] = per_site.get(run.site, 0) + 1
    return {
        "ok": not violations,
        "violations": violations,
        "limits": {**asdict(limits), "bound_s": limits.bound_s},
        "commands": {
            "started": len(runs),
            "ended_in_log": sum(1 for r in runs if r.end_ns is not None),
            "killed_without_end_line": estimated,
            "per_site": dict(sorted(per_site.items())),
            "median_handoff_s": None if history.median_gap_s is None else round(history.median_gap_s, 4),
        },
        "overlaps": list(history.overlaps),
        "turns": {
            "granted": granted,
            "recorded": len(records),
            "missing": missing,
            "completed": categories.get("completed", 0),
            "revoked": categories.get("revoked", 0),
            "abandoned": categories.get("abandoned", 0),
            "ended_otherwise": categories.get("ended otherwise", 0),
            "by_how": dict(sorted(by_how.items())),
            "with_runner_report": runner_reports,
            "final_status": None if leader is None else leader.status,
        },
        "faults": fault_rows,
        "stalls": {
            "bound_s": limits.bound_s,
            "longest_s": max((r["stall_s"] for r in fault_rows), default=0.0),
            "per_kind": dict(sorted(per_kind.items())),
        },
        "agent_problems": problems_seen,
    }


def _ranges(numbers: List[int]) -> str:
    """``[1, 2, 3, 7]`` -> ``"1-3, 7"``."""
    parts: List[str] = []
    start = prev = None
    for n in numbers:
        if start is None:
            start = prev = n
        elif n == prev + 1:  # type: ignore[operator]
            prev = n
        else:
            parts.append(f"{start}-{prev}" if start != prev else str(start))
            start = prev = n
    if start is not None:
        parts.append(f"{start}-{prev}" if start != prev else str(start))
    return ", ".join(parts)


def summary(report: Mapping[str, Any]) -> str:
    """A readable account of ``report`` (from ``judge`` plus the harness's ``run`` section)."""
    lines: List[str] = []
    run = report.get("run", {})
    if run:
        lines.append(
            f"chaos run: seed {run.get('seed')}, {run.get('agents')} agents, {run.get('duration_s')} s, "
            f"partitions by {run.get('partition')}, heartbeat {report['limits']['heartbeat_delay_s']:g} s, "
            f"stale {report['limits']['heartbeat_stale_s']:g} s"
        )
        if "harness_max_oversleep_s" in run:
            lines.append(
                f"machine: load average {', '.join(f'{x:.1f}' for x in run.get('load_average', []))}; "
                f"the harness woke up to {run['harness_max_oversleep_s']:.3f} s late"
            )
    c, t, s = report["commands"], report["turns"], report["stalls"]
    handoff = "-" if c["median_handoff_s"] is None else f"{c['median_handoff_s'] * 1000:.1f} ms"
    lines.append(
        f"commands: {c['started']} started, {c['ended_in_log']} ended in the log, "
        f"{c['killed_without_end_line']} killed without an end line; median handoff {handoff}"
    )
    lines.append(
        f"turns: {t['granted']} granted, {t['recorded']} recorded ({t['completed']} completed, "
        f"{t['revoked']} revoked, {t['abandoned']} abandoned, {t['ended_otherwise']} ended otherwise), "
        f"{len(t['missing'])} missing"
    )
    lines.append("turns per site: " + ", ".join(f"{k} {v}" for k, v in c["per_site"].items()))
    lines.append(f"overlaps: {len(report['overlaps'])}")
    lines.append(f"faults: {len(report['faults'])}; stall bound {s['bound_s']:g} s, longest {s['longest_s']:g} s")
    for row in report["faults"]:
        mark = {True: "ok", False: "OVER", None: "n/a"}[row["within_bound"]]
        resumed = row["resumed_after_heal_s"]
        basis = "from heal " if row["stall_counted_from"] == "heal" else "from start"
        lines.append(
            f"  {row['at_s']:8.2f} s  {row['kind']:<16} {str(row['site']):<10} lasted {row['lasted_s']:6.2f} s  "
            f"stall {row['stall_s']:6.2f} s {basis} ({row['stall_from_start_s']:.2f} s from start)  "
            f"resumed {'-' if resumed is None else f'{resumed:.2f} s'} after heal  {mark}"
        )
    if report["violations"]:
        lines.append(f"FAILED: {len(report['violations'])} violation(s)")
        lines += [f"  - {v}" for v in report["violations"]]
    else:
        lines.append("PASSED: no overlaps, no lost turns, every stall within the bound")
    return "\n".join(lines)
