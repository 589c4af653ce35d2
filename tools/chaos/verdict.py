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
2. no fencing token started twice: every command ran under its own
   ``ENQUEUE_TURN`` (no token started by two commands), in start order the
   turns strictly increase, and the leader doc does not end below a turn
   that ran or was recorded;
3. every turn that was granted and is over has a record, stored or carried
   in the leader doc (1 .. turn-1, and
   the last one too when the leader doc says it is done, and every turn a
   command ran under above the leader doc's), each record parses, a
   command's record names the site that ran it, and no turn whose command
   started reads (``records.outcome``) as ``not started``;
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
   traceback (the harness reports those);
6. under site accounts (``--site-accounts``), a deletion's stall may last
   its ``extra_bound_s`` longer (the admin's longest reaction plus the
   repair's wait, ``tools.chaos.admin.allowance_s``), and its repair must
   be the admin's own, with the sites saying they wait for it
   (``tools.chaos.admin.violations``).

Each overlap and each token started twice or out of order names the last
fault that began before it (``after``), and each turn without a record the
faults under way between the last command start below that turn and the
first one above it (``around``): which fault preceded which violation.

A command killed with SIGKILL leaves no end line; its end is then taken to
be the start of the first fault after it began (the fault that killed it),
or the next command's start, whichever is first; but when the next command
waited for its lock (an overlap), the next start, which is when the kernel
freed the lock of the dead one. Such runs are counted.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple

from enqueue import documents as docs
from enqueue.records import REVOKER_REPORT, RUNNER_REPORT
from enqueue.records import outcome as read_outcome
from tools.chaos.admin import Repair
from tools.chaos.admin import violations as repair_violations
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
    # For delete-leader: the turn the deleted leader doc held (the repair resumes above it, at a jump).
    turn: Optional[int] = None
    # Under site accounts: what the stall may last beyond the bound while it waits on the admin
    # (``tools.chaos.admin.allowance_s``), and the admin's repair.
    extra_bound_s: float = 0.0
    repair: Optional[Repair] = None

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
        if i + 1 < len(runs) and runs[i + 1].overlap_ns is not None and runs[i + 1].overlap_ns >= run.start_ns:
            # The next probe waited for this one's lock: the kernel freed it when this command died.
            end = runs[i + 1].start_ns
        else:
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


def _turn_of(run: Any) -> Optional[int]:
    try:
        return int(run.turn)
    except ValueError:
        return None


def _fault_name(fault: Fault, origin: int) -> str:
    return f"{fault.kind} at {(fault.start_ns - origin) / _NS:.2f} s ({fault.site or 'all'})"


def _after(faults: List[Fault], at_ns: int, origin: int) -> Optional[str]:
    """The last fault that began at or before ``at_ns`` (what a violation seen then followed), named."""
    before = [f for f in faults if f.start_ns <= at_ns]
    if not before:
        return None
    last = max(before, key=lambda f: f.start_ns)
    name = _fault_name(last, origin)
    if last.heal_ns < at_ns:
        name += f", healed {(at_ns - last.heal_ns) / _NS:.2f} s before"
    return name


def _said(after: Optional[str]) -> str:
    return f" (after {after})" if after else " (before any fault)"


def _fencing(runs: List[Any], faults: List[Fault], origin: int) -> Tuple[Dict[str, Any], Dict[Tuple[int, int], Optional[str]]]:
    """Every token started by more than one command, and every start under a token below the one before.

    ``runs`` are in start order. Tokens going back start an episode that
    lasts while the starts stay below the highest token seen before it: a
    start of a used token inside one is put down to the fault that preceded
    the episode (what reset the numbering), else to the fault before that
    start. Returns the report section and, for every repeated start
    (pid, start ns), what it is put down to.
    """
    starts: Dict[int, List[Any]] = {}
    cause: Dict[Tuple[int, int], Optional[str]] = {}
    went_back: List[Dict[str, Any]] = []
    without_turn: List[Dict[str, Any]] = []
    highest: Optional[int] = None
    previous: Optional[int] = None
    episode: Optional[str] = None
    for run in runs:
        turn = _turn_of(run)
        if turn is None:
            without_turn.append({"site": run.site, "pid": run.pid})
            continue
        if previous is not None and turn < previous:
            episode = _after(faults, run.start_ns, origin)
            went_back.append({"turn": turn, "site": run.site, "at_s": round((run.start_ns - origin) / _NS, 3),
                              "previous": previous, "highest_before": highest, "after": episode})
        elif highest is not None and turn > highest:
            episode = None
        starts.setdefault(turn, []).append(run)
        if len(starts[turn]) > 1:
            below = highest is not None and turn <= highest and episode is not None
            cause[(run.pid, run.start_ns)] = episode if below else _after(faults, run.start_ns, origin)
        highest = turn if highest is None else max(highest, turn)
        previous = turn
    twice = sorted(((t, rs) for t, rs in starts.items() if len(rs) > 1), key=lambda item: item[1][1].start_ns)
    started_twice = [
        {
            "turn": turn,
            "starts": [{"site": r.site, "pid": r.pid, "at_s": round((r.start_ns - origin) / _NS, 3),
                        "after": cause.get((r.pid, r.start_ns))} for r in rs],
            "after": cause.get((rs[1].pid, rs[1].start_ns)),
        }
        for turn, rs in twice
    ]
    return {"starts": sum(len(rs) for rs in starts.values()), "distinct": len(starts),
            "started_twice": started_twice, "went_back": went_back, "without_turn": without_turn,
            "leader_turn_below": None}, cause


def _by_cause(rows: List[Dict[str, Any]]) -> List[Tuple[Optional[str], List[Dict[str, Any]]]]:
    """``rows`` grouped by their ``after``, in order of first appearance."""
    groups: Dict[Optional[str], List[Dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(row["after"], []).append(row)
    return list(groups.items())


def _around(faults: List[Fault], runs: List[Any], turn: int, origin: int, end_ns: int) -> List[str]:
    """The faults that were under way while ``turn`` could have ended: from the last command start
    under a lower turn to the first start under a higher one (run start / end when there is none)."""
    lower = [r.start_ns for r in runs if (_turn_of(r) or 0) < turn]
    higher = [r.start_ns for r in runs if (_turn_of(r) or 0) > turn]
    low = max(lower, default=origin)
    high = min((h for h in higher if h >= low), default=end_ns)
    inside = [f for f in faults if f.start_ns <= high and f.heal_ns >= low]
    if not inside:
        last = _after(faults, high, origin)
        return [last] if last else []
    return [_fault_name(f, origin) for f in sorted(inside, key=lambda f: f.start_ns)]


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

    origin = min([f.start_ns for f in faults] + [r.start_ns for r in history.runs] + [run_end_ns])
    runs = sorted(history.runs, key=lambda r: r.start_ns)

    # 1. Overlaps, from the probes' own records, each with the fault it followed.
    overlap_at = list(history.overlap_at_ns) + [None] * (len(history.overlaps) - len(history.overlap_at_ns))
    waited = {r.overlap_ns: r for r in runs if r.overlap_ns is not None}
    overlap_rows = []
    for text, at_ns in zip(history.overlaps, overlap_at):
        after = _after(faults, at_ns, origin) if at_ns is not None else None
        blocked = waited.get(at_ns)
        overlap_rows.append({"what": text, "at_s": None if at_ns is None else round((at_ns - origin) / _NS, 3),
                             "after": after,
                             # How long it waited for the other command's lock: how long both were alive.
                             "waited_s": None if blocked is None else round((blocked.start_ns - at_ns) / _NS, 3)})
        violations.append(f"overlap: {text}{_said(after)}")

    # 2. Fencing tokens: no token started twice, and in start order they only go up.
    fencing, repeat_cause = _fencing(runs, faults, origin)
    repeats = [{"turn": row["turn"], "first": row["starts"][0], "again": start, "after": start["after"]}
               for row in fencing["started_twice"] for start in row["starts"][1:]]
    repeats.sort(key=lambda r: r["again"]["at_s"])
    for after, rows in _by_cause(repeats):
        first = rows[0]
        one, two = first["first"], first["again"]
        tokens = _ranges(sorted({row["turn"] for row in rows}))
        violations.append(
            f"fencing token{'s' if len(rows) > 1 else ''} {tokens} started twice ({len(rows)} repeated starts; "
            f"the first: {first['turn']} at {one['site']} ({one['at_s']:.2f} s) and again at {two['site']} "
            f"({two['at_s']:.2f} s)){_said(after)}"
        )
    for row in fencing["went_back"]:
        violations.append(
            f"fencing token {row['turn']} at {row['site']} ({row['at_s']:.2f} s) started after turn "
            f"{row['previous']}: tokens went back{_said(row['after'])}"
        )
    for row in fencing["without_turn"]:
        violations.append(f"a command at site {row['site']} (pid {row['pid']}) ran without a turn number")

    # 3. Turn records.
    leader, problems = docs.parse_leader(leader_raw, leader_doc_id)
    if leader is None:
        violations.append(f"the leader doc does not parse at the end: {'; '.join(problems) or 'missing'}")
    records = _records(raw_records, violations)
    granted = leader.turn if leader is not None else max(records, default=0)
    expected = set(range(1, granted))
    if leader is not None and leader.status == docs.DONE and granted > 0:
        expected.add(granted)
    ran = {t for t in (_turn_of(r) for r in runs) if t is not None}
    if leader is not None:
        # Turns that ran above the leader doc's turn are over too: the token went back under them.
        expected |= {t for t in ran if t > granted}
        highest = max(ran | set(records), default=0)
        if highest > granted:
            fencing["leader_turn_below"] = {"leader_turn": granted, "highest_known": highest}
            violations.append(f"the leader doc ends at turn {granted}, below turn {highest} that ran or was "
                              f"recorded: the fencing token went back")
    # A repair after a deletion resumes at the revision count (docs/PROTOCOL.md §3.11): the numbers between
    # the deleted doc's turn and the next one that ran or was recorded were never granted.
    seen = ran | set(records)
    skipped: set = set()
    for fault in faults:
        if fault.kind == "delete-leader" and fault.turn is not None:
            above = [t for t in seen if t > fault.turn]
            skipped |= set(range(fault.turn + 1, min(above) if above else granted + 1))
    if leader is not None and leader.status == docs.DONE and leader.last_how == "repaired":
        skipped.add(granted)  # the turn a repair wrote, never granted
    expected -= skipped - seen
    # The record the leader doc carries (the last finishing write's, docs/PROTOCOL.md §3.8.2) is that turn's too.
    carried = {leader.last_record.turn} if leader is not None and leader.last_record is not None else set()
    missing = sorted(expected - set(records) - carried)
    missing_rows = [{"turn": t, "around": _around(faults, runs, t, origin, run_end_ns)} for t in missing]
    if missing:
        suspects = list(dict.fromkeys(a for row in missing_rows for a in row["around"]))
        around = f" (around {'; '.join(suspects[:5])}{'; ...' if len(suspects) > 5 else ''})" if suspects else ""
        violations.append(f"{len(missing)} turn(s) without a record: {_ranges(missing)}{around}")
    # A token started twice has one record for two turns: put down to what made the token repeat.
    misnamed = []
    for run in runs:
        turn = _turn_of(run)
        entry = records.get(turn) if turn is not None else None
        if entry is not None and entry[0].site != run.site:
            key = (run.pid, run.start_ns)
            after = repeat_cause[key] if key in repeat_cause else _after(faults, run.start_ns, origin)
            misnamed.append({"turn": turn, "ran_at": run.site, "record_names": entry[0].site, "after": after})
    for after, rows in _by_cause(misnamed):
        listed = ", ".join(f"turn {r['turn']} ran at {r['ran_at']} but its record names {r['record_names']}"
                           for r in rows[:3])
        more = f" and {len(rows) - 3} more" if len(rows) > 3 else ""
        violations.append(f"{listed}{more}{_said(after)}")
    # A turn whose command started must not read as never started (docs/PROTOCOL.md §5.4.1).
    unstarted = sorted({t for t in ran if t in records and read_outcome(*records[t]).how == "not started"})
    if unstarted:
        violations.append(f"turn(s) {_ranges(unstarted)} ran, but their records read as 'not started'")
    by_how: Dict[str, int] = {}
    categories: Dict[str, int] = {}
    for rec, _raw in records.values():
        by_how[rec.how] = by_how.get(rec.how, 0) + 1
        cat = _category(rec.how)
        categories[cat] = categories.get(cat, 0) + 1
    runner_reports = sum(1 for _rec, raw in records.values() if RUNNER_REPORT in raw)
    revoker_reports = sum(1 for _rec, raw in records.values() if REVOKER_REPORT in raw)

    # 4. Stalls after faults.
    busy, estimated = _busy_intervals(history, faults)
    idle = _idle_intervals(busy, run_end_ns)
    starts = [r.start_ns for r in runs]
    fault_rows = []
    for f in faults:
        row: Dict[str, Any] = {
            "kind": f.kind,
            "site": f.site,
            "at_s": round((f.start_ns - origin) / _NS, 3),
            "lasted_s": round((f.heal_ns - f.start_ns) / _NS, 3),
            "stall_counted_from": "heal" if f.from_heal else "start",
            "detail": f.detail,
        }
        bound_s = limits.bound_s + f.extra_bound_s
        row.update(_stall(f, starts, idle, run_end_ns, bound_s))
        row["bound_s"] = round(bound_s, 3)
        if f.repair is not None:
            row["repair"] = asdict(f.repair)
            violations.extend(repair_violations(f.repair, f"{f.kind} at {row['at_s']} s ({f.site})",
                                                limits.heartbeat_delay_s, limits.heartbeat_stale_s, limits.margin_s))
        fault_rows.append(row)
        if row["within_bound"] is False:
            if row["resumed_after_heal_s"] is None:
                violations.append(f"{f.kind} at {row['at_s']} s ({f.site}): no command started after it healed")
            else:
                violations.append(
                    f"{f.kind} at {row['at_s']} s ({f.site}): stalled {row['stall_s']} s, "
                    f"bound {bound_s:g} s"
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
        "overlap_detail": overlap_rows,
        "fencing": fencing,
        "turns": {
            "granted": granted,
            "recorded": len(records),
            "missing": missing,
            "missing_detail": missing_rows,
            "skipped_by_repairs": len(skipped - seen),
            "completed": categories.get("completed", 0),
            "revoked": categories.get("revoked", 0),
            "abandoned": categories.get("abandoned", 0),
            "ended_otherwise": categories.get("ended otherwise", 0),
            "by_how": dict(sorted(by_how.items())),
            "with_runner_report": runner_reports,
            "with_revoker_report": revoker_reports,
            "ran_but_read_not_started": unstarted,
            "final_status": None if leader is None else leader.status,
        },
        "faults": fault_rows,
        "stalls": {
            "bound_s": limits.bound_s,
            "longest_s": max((r["stall_s"] for r in fault_rows), default=0.0),
            "per_kind": dict(sorted(per_kind.items())),
        },
        "agent_problems": problems_seen,
        "repairs": _repairs(faults),
    }


def _repairs(faults: List[Fault]) -> Dict[str, Any]:
    """How the admin's repairs went: how many ran, rebuilt the leader doc, and were seen waited for."""
    done = [f.repair for f in faults if f.repair is not None]
    return {
        "run": len(done),
        "rebuilt_by_admin": sum(1 for r in done if r.exit_code == 0 and r.rebuilt_turn is not None),
        "said_in_heartbeat": sum(1 for r in done if r.said_in_heartbeat),
        "said_in_log": sum(1 for r in done if r.said_in_log),
        "longest_missing_s": round(max((r.missing_s for r in done), default=0.0), 3),
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
        f"turns: {t['granted']} numbered ({t.get('skipped_by_repairs', 0)} skipped by repairs), "
        f"{t['recorded']} recorded ({t['completed']} completed, "
        f"{t['revoked']} revoked, {t['abandoned']} abandoned, {t['ended_otherwise']} ended otherwise), "
        f"{len(t['missing'])} missing; reports added: {t.get('with_runner_report', 0)} by runners, "
        f"{t.get('with_revoker_report', 0)} by revokers"
    )
    lines.append("turns per site: " + ", ".join(f"{k} {v}" for k, v in c["per_site"].items()))
    lines.append(f"overlaps: {len(report['overlaps'])}")
    fencing = report.get("fencing") or {}
    if fencing:
        lines.append(
            f"fencing tokens: {fencing['distinct']} distinct in {fencing['starts']} starts, "
            f"{len(fencing['started_twice'])} started twice, "
            f"{len(fencing['went_back'])} out of order"
            + (f"; the leader doc ends at turn {fencing['leader_turn_below']['leader_turn']}, below "
               f"{fencing['leader_turn_below']['highest_known']}" if fencing.get("leader_turn_below") else "")
        )
    extra = max((row.get("bound_s", s["bound_s"]) for row in report["faults"]), default=s["bound_s"])
    lines.append(f"faults: {len(report['faults'])}; stall bound {s['bound_s']:g} s"
                 + (f" ({extra:g} s after a deletion the admin repairs)" if extra > s["bound_s"] else "")
                 + f", longest {s['longest_s']:g} s")
    repairs = report.get("repairs") or {}
    if repairs.get("run"):
        lines.append(f"repairs by the admin: {repairs['rebuilt_by_admin']} of {repairs['run']} rebuilt the leader doc; "
                     f"sites said they waited in heartbeats after {repairs['said_in_heartbeat']}, in logs after "
                     f"{repairs['said_in_log']}; the doc was missing up to {repairs['longest_missing_s']:g} s")
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
        lines.append("PASSED: no overlaps, no fencing token started twice, no lost turns, every stall within the bound")
    return "\n".join(lines)
