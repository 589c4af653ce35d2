"""How ``enqueue status`` prints an overview: the table for people, the object for ``--json``.

Pure presentation of an ``Overview`` (see ``enqueue.commands.status_overview``
for what each field means): nothing here reads or decides anything.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from enqueue import documents as docs
from enqueue import table
from enqueue.commands.status_overview import LOOPING, MISSING, Overview, SiteView
from enqueue.durations import format_age, format_duration

__all__ = ["JSON_FORMAT", "to_json", "render_text"]

#: Version of the ``--json`` layout; bumped only when a key changes meaning or goes away.
JSON_FORMAT = 1


def _zone_suffix(time_format: str) -> str:
    return "" if "%z" in time_format or "%Z" in time_format else " UTC"


def to_json(ov: Overview) -> dict[str, Any]:
    """The ``--json`` object; its keys are documented in docs/OPERATIONS.md and stay stable."""
    out: dict[str, Any] = {"format": JSON_FORMAT}
    out.update(asdict(ov))
    del out["time_format"]
    out["rotation"] = list(ov.rotation)
    out["sites"] = [{k: _rounded(v) for k, v in asdict(site).items()} for site in ov.sites]
    out["problems"] = list(ov.problems)
    if out["turn"] is not None:
        out["turn"] = {k: _rounded(v) for k, v in out["turn"].items()}
    out["watched_s"] = _rounded(out["watched_s"])
    out["nodes"] = list(ov.nodes)
    return out


def _rounded(value: Any) -> Any:
    """Seconds to the millisecond: more digits would only be noise."""
    return round(value, 3) if isinstance(value, float) else value


def _dash(value: Any) -> str:
    return "-" if value is None or value == "" else str(value)


def _turn_line(ov: Overview) -> str:
    turn = ov.turn
    if turn is None:
        return "none granted yet"
    zone = _zone_suffix(ov.time_format)
    since = f"{turn.since}{zone}" if turn.since else "an unknown time"
    who = f"{turn.number}, {_dash(turn.site)}"
    if turn.state == docs.RUNNING:
        line = f"{who}, running since {since}" + (f" ({format_duration(turn.for_s)})" if turn.for_s is not None else "")
    elif turn.state == docs.GRANTED:
        line = f"{who}, granted at {since}" + (f" ({format_age(turn.for_s)})" if turn.for_s is not None else "") \
            + ", not started yet"
    else:
        line = f"{who}, done at {since}" + (f" ({format_age(turn.for_s)})" if turn.for_s is not None else "")
        outcome = ", ".join(x for x in (turn.last_how, None if turn.last_exit_code is None
                                         else f"exit code {turn.last_exit_code}") if x)
        if outcome:
            line += f": {outcome}"
    if turn.skip_requested:
        line += "; skip requested"
    return line


def _heartbeat_cell(site: SiteView) -> str:
    if site.liveness == MISSING:
        return "no heartbeat"
    age = f", {format_age(site.beat_age_s)}" if site.beat_age_s is not None else ", time unreadable"
    why = f" ({site.left_because})" if site.left_because and site.state == docs.LEFT else ""
    return f"{site.liveness}{age}{why}"


def _looping_note(ov: Overview) -> str:
    """Who is between iterations of its loop, for the leader and rotation lines (empty when nobody is)."""
    looping = [site.name for site in ov.sites if site.liveness == LOOPING]
    return f" (between loop iterations: {', '.join(looping)})" if looping else ""


def _observed_cell(site: SiteView, watched_s: float) -> str:
    if site.observed_age_s is None:
        return "-"
    if site.observed_change:
        return f"changed {format_age(site.observed_age_s)}"
    if watched_s < 1.0:
        return "no change yet"
    return f"no change in {format_duration(watched_s)}"


def _stale_note(ov: Overview) -> str:
    """What "stale" means in this table: one duration when every site announces the same, else per site."""
    if ov.heartbeat_stale_s is None:
        return "Stale: no beat for the heartbeat_stale each site runs with."
    return f"Stale: no beat for {format_duration(ov.heartbeat_stale_s)}."


def _last_exit_cell(site: SiteView) -> str:
    if site.last_exit_code is not None:
        return str(site.last_exit_code)
    return site.last_how or "-"


def render_text(ov: Overview) -> str:
    """The human-readable status: a header, the sites table, and a note on what the ages mean."""
    zone = _zone_suffix(ov.time_format)
    lines = [f"enqueue status of database {ov.database!r} at {ov.server}, {ov.checked_at}{zone}"]
    leader = f"none{_looping_note(ov)}" if ov.leader is None else f"{ov.leader} (term {ov.leader_term})"
    lines.append(f"leader:   {leader}")
    if ov.paused:
        details = " ".join(x for x in (
            f"since {ov.paused_at}{zone}" if ov.paused_at else None,
            f"by {ov.paused_by}" if ov.paused_by else None,
            f"(reason: {ov.paused_reason})" if ov.paused_reason else None,
        ) if x)
        lines.append("paused:   yes" + (f", {details}" if details else ""))
    else:
        lines.append("paused:   no")
    lines.append(f"turn:     {_turn_line(ov)}")
    lines.append(f"rotation: {', '.join(ov.rotation) if ov.rotation else 'nobody' + _looping_note(ov)}")
    if ov.placement is not None:
        lines.append(f"database: {ov.placement}")
    lines.append("")
    if ov.sites:
        header = ["SITE", "HOST", "STATE", "HEARTBEAT"]
        watching = ov.watched_s is not None
        if watching:
            header.append("OBSERVED")
        header += ["DRAINED", "LAST EXIT", "DURATION", "TURNS", "NOTE"]
        rows = []
        for site in ov.sites:
            row = [site.name, _dash(site.host), _dash(site.state), _heartbeat_cell(site)]
            if watching:
                row.append(_observed_cell(site, ov.watched_s or 0.0))
            notes = [x for x in (site.role, f"drained: {site.drained_reason}" if site.drained_reason else None,
                                 site.message) if x]
            row += [
                "yes" if site.drained else "no",
                _last_exit_cell(site),
                "-" if site.last_duration_s is None else format_duration(site.last_duration_s),
                str(site.turns_taken),
                "; ".join(notes) or "",
            ]
            rows.append(row)
        lines += table.render(header, rows)
        lines.append("")
        note = ("Heartbeat ages compare each site's clock with this host's: a guide for people, not what the "
                f"agents decide by. {_stale_note(ov)}")
        if ov.watched_s is not None:
            note += " OBSERVED: when this watch saw the heartbeat change, on this host's own clock."
        lines.append(note)
    else:
        lines.append("no sites registered")
    for problem in ov.problems:
        lines.append(f"problem: {problem}")
    return "\n".join(lines)
