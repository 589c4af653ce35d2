"""A picture of who ran when: the turn records drawn as an SVG timeline.

One lane per site; each turn is a bar from its start to its end, coloured by
how it ended (``OUTCOMES``). Where bars would be thinner than a pixel, the
turns that share those pixels of one lane become one aggregate bar,
coloured by the most serious outcome among them and titled with their
counts, so thousands of turns stay readable. Gaps between consecutive turns
are visible as empty space; a gap wide enough on the picture is marked and
labelled with its length. A pause is shaded: the turn records do not say
when production was paused, so the only pause drawn is the one the leader
doc reports now (from its ``paused_at`` to the time of drawing).

Everything here is a pure function of the parsed records, the time format
and the moment of drawing: nothing reads the database. Times are the
writers' wall clocks as stored, so sites whose clocks disagree can make a
gap look negative; such a gap is shown as it is.
"""

from __future__ import annotations

import datetime as _dt
import html
import math
from dataclasses import dataclass
from typing import Iterable, Optional, Sequence

from enqueue import documents as docs
from enqueue.clock import UTC
from enqueue.durations import format_duration
from enqueue.outcomes import Outcome, was_revoked

__all__ = [
    "OUTCOMES",
    "Span",
    "Pause",
    "outcome",
    "spans",
    "gaps_before",
    "render_svg",
    "render_html",
]

#: Outcome classes, most serious first, with their colours.
OUTCOMES: dict[str, str] = {
    "abandoned": "#8c564b",
    "revoked": "#9467bd",
    "fenced": "#ff7f0e",
    "failed": "#d62728",
    "skipped": "#7f8c9a",
    "exited 0": "#2ca02c",
}
_SEVERITY = {name: rank for rank, name in enumerate(OUTCOMES)}

WIDTH = 1200
_LEFT = 120
_RIGHT = 40
_TOP = 44
_LANE = 30
_BAR = 20
_LEGEND = 74
#: A gap is labelled when it is at least this wide on the picture.
LABEL_GAP_PX = 56.0
#: Bars are at least this wide, so a turn of no duration still shows.
MIN_BAR_PX = 1.0
#: Turns thinner than a pixel are gathered in columns this wide.
AGGREGATE_PX = 2.0
_TICK_STEPS_S = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400,
                 172800, 604800)


@dataclass(frozen=True)
class Span:
    """One turn placed in time (UTC). ``start`` equals ``end`` when the record gives no duration."""

    turn: int
    site: str
    how: str
    exit_code: Optional[int]
    start: _dt.datetime
    end: _dt.datetime
    outcome: str

    @property
    def duration_s(self) -> float:
        return (self.end - self.start).total_seconds()


@dataclass(frozen=True)
class Pause:
    """A shaded stretch: production paused from ``start`` to ``end``."""

    start: _dt.datetime
    end: _dt.datetime
    label: str


def outcome(how: str, exit_code: Optional[int]) -> str:
    """The outcome class of a record's ``how`` and exit code (a key of ``OUTCOMES``).

    ``exited`` with 0 is the only success; a command that exited otherwise,
    could not start, lost its supervisor or its agent, or was stopped failed;
    a turn taken away (before or after its start) is revoked.
    """
    if how == Outcome.EXITED:
        return "exited 0" if exit_code == 0 else "failed"
    if how in (Outcome.FENCED, Outcome.ABANDONED, Outcome.SKIPPED):
        return str(how)
    if how == Outcome.NOT_STARTED or was_revoked(how):
        return "revoked"
    return "failed"


def _parse(text: Optional[str], time_format: str) -> Optional[_dt.datetime]:
    if not text:
        return None
    try:
        moment = _dt.datetime.strptime(text, time_format)
    except (ValueError, TypeError):
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _placed(start: Optional[_dt.datetime], end: Optional[_dt.datetime], duration_s: Optional[float],
            resolution_s: float) -> Optional[tuple[_dt.datetime, _dt.datetime]]:
    """Start and end of a turn from its stored times (truncated to ``resolution_s``) and its exact duration.

    With both times and the duration, the start is the middle of the moments
    that agree with all three, so a 0.4 s turn is 0.4 s long, not 0 or 1 s.
    """
    one = _dt.timedelta(seconds=resolution_s)
    if duration_s is not None and duration_s >= 0:
        length = _dt.timedelta(seconds=duration_s)
        if start is not None and end is not None:
            low, high = max(start, end - length), min(start + one, end + one - length)
            begin = low + (high - low) / 2 if high >= low else start
            return begin, begin + length
        if start is not None:
            return start, start + length
        if end is not None:
            return end - length, end
    if start is None and end is None:
        return None
    start = start or end
    end = end or start
    assert start is not None and end is not None
    return min(start, end), end


def spans(records: Iterable[docs.TurnRecord], time_format: str) -> list[Span]:
    """The records that can be placed in time, in turn order; a record with neither time is left out.

    Stored times are truncated to the second (unless ``time_format`` has
    ``%f``); ``duration_s`` is exact and sets each bar's length.
    """
    resolution_s = 1e-6 if "%f" in time_format else 1.0
    out = []
    for rec in records:
        placed = _placed(_parse(rec.started_at, time_format), _parse(rec.ended_at, time_format), rec.duration_s,
                         resolution_s)
        if placed is not None:
            out.append(Span(rec.turn, rec.site, rec.how, rec.exit_code, placed[0], placed[1],
                            outcome(rec.how, rec.exit_code)))
    return sorted(out, key=lambda s: s.turn)


def gaps_before(placed: Sequence[Span]) -> dict[int, float]:
    """Seconds between the end of the previous turn (by number) and the start of each turn.

    The first turn of ``placed`` has no gap. Negative when the stored times
    overlap (clocks apart, or a turn taken away while its command still ran).
    """
    ordered = sorted(placed, key=lambda s: s.turn)
    return {cur.turn: (cur.start - prev.end).total_seconds() for prev, cur in zip(ordered, ordered[1:])}


# ----------------------------------------------------------------------------- drawing


@dataclass(frozen=True)
class _Bar:
    x: float
    width: float
    outcome: str
    title: str
    aggregate: bool


def _fmt_time(moment: _dt.datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def _bar_title(span: Span) -> str:
    code = "-" if span.exit_code is None else str(span.exit_code)
    return (f"turn {span.turn}, {span.site}: {span.how}, exit code {code}; started {_fmt_time(span.start)} UTC, "
            f"took {format_duration(span.duration_s)}")


def _aggregate_title(group: Sequence[Span]) -> str:
    counts: dict[str, int] = {}
    for span in group:
        counts[span.outcome] = counts.get(span.outcome, 0) + 1
    parts = ", ".join(f"{counts[name]} {name}" for name in OUTCOMES if name in counts)
    first, last = group[0], group[-1]
    return (f"turns {first.turn}-{last.turn}, {first.site}: {len(group)} turns ({parts}); "
            f"from {_fmt_time(first.start)} to {_fmt_time(max(s.end for s in group))} UTC")


def _worst(group: Sequence[Span]) -> str:
    return min((s.outcome for s in group), key=_SEVERITY.__getitem__)


def _lane_bars(lane: Sequence[Span], x_of: "_Scale") -> list[_Bar]:
    """The bars of one lane: a turn at least a pixel wide alone; thinner ones merged.

    Thin turns are gathered per ``AGGREGATE_PX`` column, each column taking
    the most serious outcome in it; neighbouring columns of one outcome
    become one bar. So a single failure among thousands of successes shows
    as a thin mark of its own colour, not as a long bar of it.
    """
    bars: list[_Bar] = []
    run: list[Span] = []  # thin turns of consecutive columns with one outcome
    run_outcome, run_last_column = "", -2
    column: list[Span] = []
    column_index = -2

    def flush_run() -> None:
        nonlocal run_outcome
        if not run:
            return
        x = x_of(run[0].start)
        width = max(MIN_BAR_PX, max(x_of(s.end) for s in run) - x)
        if len(run) == 1:
            bars.append(_Bar(x, width, run[0].outcome, _bar_title(run[0]), False))
        else:
            bars.append(_Bar(x, width, run_outcome, _aggregate_title(run), True))
        run.clear()
        run_outcome = ""

    def close_column() -> None:
        nonlocal run_outcome, run_last_column
        if not column:
            return
        worst = _worst(column)
        if run and (worst != run_outcome or column_index > run_last_column + 1):
            flush_run()
        run.extend(column)
        run_outcome, run_last_column = worst, column_index
        column.clear()

    for span in sorted(lane, key=lambda s: (s.start, s.turn)):
        x, width = x_of(span.start), x_of(span.end) - x_of(span.start)
        if width >= MIN_BAR_PX:
            close_column()
            flush_run()
            bars.append(_Bar(x, width, span.outcome, _bar_title(span), False))
            continue
        index = int((x - x_of.left) // AGGREGATE_PX)
        if index != column_index:
            close_column()
            column_index = index
        column.append(span)
    close_column()
    flush_run()
    return bars


class _Scale:
    """Maps a UTC time to an x coordinate of the plot."""

    def __init__(self, start: _dt.datetime, end: _dt.datetime, left: float, width: float) -> None:
        self.start = start
        self.seconds = max((end - start).total_seconds(), 1e-3)
        self.left = left
        self.width = width

    def __call__(self, moment: _dt.datetime) -> float:
        return self.left + (moment - self.start).total_seconds() / self.seconds * self.width


def _ticks(start: _dt.datetime, seconds: float) -> tuple[float, list[_dt.datetime]]:
    step = next((s for s in _TICK_STEPS_S if seconds / s <= 10), _TICK_STEPS_S[-1])
    epoch = start.timestamp()
    first = math.ceil(epoch / step) * step
    count = int((epoch + seconds - first) // step) + 1
    return step, [_dt.datetime.fromtimestamp(first + i * step, UTC) for i in range(max(0, count))]


def _tick_label(moment: _dt.datetime, step: float, seconds: float) -> str:
    if seconds > 86400 or step >= 86400:
        return moment.strftime("%m-%d %H:%M")
    return moment.strftime("%H:%M:%S" if step < 60 else "%H:%M")


def _esc(text: str) -> str:
    return html.escape(text, quote=True)


def render_svg(placed: Sequence[Span], *, title: str, pause: Optional[Pause] = None,
               width: int = WIDTH) -> str:
    """The timeline of ``placed`` as a standalone SVG document.

    Invariant: one ``<g class="lane">`` per site (sorted by name), every bar
    a ``<rect class="bar ...">`` with a ``<title>``, no bar thinner than
    ``MIN_BAR_PX``.
    """
    sites = sorted({s.site for s in placed})
    plot_w = width - _LEFT - _RIGHT
    height = _TOP + _LANE * max(1, len(sites)) + _LEGEND
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
           f"<title>{_esc(title)}</title>",
           f'<rect x="0" y="0" width="{width}" height="{height}" fill="#ffffff"/>',
           f'<text x="{_LEFT}" y="16" font-size="14" font-weight="bold">{_esc(title)}</text>']
    if not placed:
        out.append(f'<text x="{_LEFT}" y="{_TOP + 18}">no turn records to draw</text></svg>')
        return "\n".join(out)
    start = min(s.start for s in placed)
    end = max(s.end for s in placed)
    if pause is not None:
        end = max(end, pause.end)
    scale = _Scale(start, end, _LEFT, plot_w)
    lanes_bottom = _TOP + _LANE * len(sites)

    step, ticks = _ticks(start, scale.seconds)
    out.append('<g class="axis" stroke="#dddddd">')
    for tick in ticks:
        x = scale(tick)
        out.append(f'<line x1="{x:.2f}" y1="{_TOP - 6}" x2="{x:.2f}" y2="{lanes_bottom}"/>')
        out.append(f'<text x="{x:.2f}" y="{_TOP - 10}" text-anchor="middle" stroke="none" fill="#555555">'
                   f"{_tick_label(tick, step, scale.seconds)}</text>")
    out.append("</g>")

    for index, site in enumerate(sites):
        y = _TOP + index * _LANE
        out.append(f'<g class="lane" data-site="{_esc(site)}">')
        out.append(f'<rect class="lane-background" x="{_LEFT}" y="{y}" width="{plot_w}" height="{_LANE}" '
                   f'fill="{"#f6f6f6" if index % 2 else "#ffffff"}"/>')
        out.append(f'<text x="{_LEFT - 8}" y="{y + _LANE / 2 + 4}" text-anchor="end">{_esc(site)}</text>')
        bar_y = y + (_LANE - _BAR) / 2
        for bar in _lane_bars([s for s in placed if s.site == site], scale):
            kind = "bar aggregate" if bar.aggregate else "bar"
            slug = bar.outcome.replace(" ", "-")
            out.append(f'<rect class="{kind} {slug}" x="{bar.x:.2f}" y="{bar_y}" width="{bar.width:.2f}" '
                       f'height="{_BAR}" fill="{OUTCOMES[bar.outcome]}"><title>{_esc(bar.title)}</title></rect>')
        out.append("</g>")

    if pause is not None:
        x0, x1 = scale(pause.start), scale(pause.end)
        out.append(f'<rect class="pause" x="{x0:.2f}" y="{_TOP}" width="{max(MIN_BAR_PX, x1 - x0):.2f}" '
                   f'height="{lanes_bottom - _TOP}" fill="#f5c400" fill-opacity="0.25">'
                   f"<title>{_esc(pause.label)}</title></rect>")

    ordered = sorted(placed, key=lambda s: s.turn)
    for prev, cur in zip(ordered, ordered[1:]):
        x0, x1 = scale(prev.end), scale(cur.start)
        if x1 - x0 < LABEL_GAP_PX:
            continue
        gap = format_duration((cur.start - prev.end).total_seconds())
        mid = (x0 + x1) / 2
        out.append(f'<g class="gap"><line x1="{x0:.2f}" y1="{lanes_bottom + 8}" x2="{x1:.2f}" '
                   f'y2="{lanes_bottom + 8}" stroke="#444444" stroke-dasharray="3,2"/>'
                   f'<text x="{mid:.2f}" y="{lanes_bottom + 22}" text-anchor="middle" fill="#444444">{_esc(gap)}'
                   f"</text><title>{_esc(f'no turn for {gap} between turn {prev.turn} and turn {cur.turn}')}"
                   "</title></g>")

    legend_y = lanes_bottom + 40
    counts: dict[str, int] = {}
    for span in placed:
        counts[span.outcome] = counts.get(span.outcome, 0) + 1
    x = float(_LEFT)
    out.append('<g class="legend">')
    for name in reversed(list(OUTCOMES)):
        label = f"{name} ({counts.get(name, 0)})"
        out.append(f'<rect x="{x:.0f}" y="{legend_y - 10}" width="12" height="12" fill="{OUTCOMES[name]}"/>'
                   f'<text x="{x + 16:.0f}" y="{legend_y}">{_esc(label)}</text>')
        x += 24 + 7 * len(label)
    out.append(f'<rect x="{x:.0f}" y="{legend_y - 10}" width="12" height="12" fill="#f5c400" fill-opacity="0.4"/>'
               f'<text x="{x + 16:.0f}" y="{legend_y}">paused</text>')
    note = ("Turns thinner than a pixel are merged, coloured by the most serious outcome among them (hover for "
            "counts). Pauses: the records keep none; only a pause in force now is shaded.")
    out.append(f'<text x="{_LEFT}" y="{legend_y + 20}" fill="#555555">{_esc(note)}</text></g>')
    out.append("</svg>")
    return "\n".join(out)


def render_html(svg: str, *, title: str) -> str:
    """A page holding ``svg``, for a browser."""
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{_esc(title)}</title>"
            "<style>body{font-family:sans-serif;margin:16px}</style></head>\n<body>\n"
            f"{svg}\n</body></html>\n")
