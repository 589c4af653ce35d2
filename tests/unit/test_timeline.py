"""enqueue.timeline: turn records drawn as SVG, parsed back with xml.etree -- no server."""

from __future__ import annotations

import datetime as _dt
import xml.etree.ElementTree as ET

import pytest

from enqueue import timeline
from enqueue.documents import TurnRecord

FMT = "%Y-%m-%d %H:%M:%S"
T0 = _dt.datetime(2026, 5, 1, 12, 0, 0, tzinfo=_dt.timezone.utc)
NS = {"s": "http://www.w3.org/2000/svg"}


def at(seconds: float) -> str:
    return (T0 + _dt.timedelta(seconds=seconds)).strftime(FMT)


def record(turn: int, site: str, start: float | None, end: float | None, how: str = "exited",
           code: int | None = 0, duration: float | None = None) -> TurnRecord:
    return TurnRecord(turn=turn, site=site, how=how, exit_code=code,
                      started_at=None if start is None else at(start), ended_at=None if end is None else at(end),
                      duration_s=duration if duration is not None else (None if start is None or end is None
                                                                      else end - start))


def draw(records, **kw) -> ET.Element:
    svg = timeline.render_svg(timeline.spans(records, FMT), title="test", **kw)
    return ET.fromstring(svg)


def lanes(root: ET.Element) -> dict[str, list[ET.Element]]:
    return {g.get("data-site"): g.findall("s:rect[@class]", NS) for g in root.iter(f"{{{NS['s']}}}g")
            if g.get("class") == "lane"}


def title(element: ET.Element) -> str:
    return element.find("s:title", NS).text


@pytest.mark.parametrize("how, code, expected", [
    ("exited", 0, "exited 0"), ("exited", 3, "failed"), ("failed to start", 127, "failed"),
    ("supervisor died", None, "failed"), ("fenced", 143, "fenced"), ("revoked", None, "revoked"),
    ("not started", None, "revoked"), ("exited after revocation", 0, "revoked"),
    ("abandoned", None, "abandoned"), ("skipped", 143, "skipped"),
])
def test_outcome_classes(how, code, expected):
    assert timeline.outcome(how, code) == expected


def test_one_lane_per_site_and_a_titled_bar_per_turn():
    root = draw([record(1, "bravo", 0, 60), record(2, "alpha", 70, 100, code=3),
                 record(3, "charlie", 100, 130, how="fenced", code=143)])
    found = lanes(root)
    assert list(found) == ["alpha", "bravo", "charlie"]
    bars = {site: [r for r in rects if "bar" in r.get("class").split()] for site, rects in found.items()}
    assert [len(b) for b in bars.values()] == [1, 1, 1]
    alpha = bars["alpha"][0]
    assert alpha.get("class") == "bar failed" and alpha.get("fill") == timeline.OUTCOMES["failed"]
    assert title(alpha) == "turn 2, alpha: exited, exit code 3; started 2026-05-01 12:01:10 UTC, took 30 s"
    assert bars["charlie"][0].get("class") == "bar fenced"
    # Bars are placed in time: bravo's 60 s are twice alpha's 30 s wide, and alpha starts after bravo ends.
    width = {site: float(b[0].get("width")) for site, b in bars.items()}
    assert width["bravo"] == pytest.approx(2 * width["alpha"], rel=1e-3)
    assert float(alpha.get("x")) > float(bars["bravo"][0].get("x")) + width["bravo"]


def test_a_long_gap_is_labelled_and_short_ones_are_not():
    root = draw([record(1, "alpha", 0, 10), record(2, "bravo", 10.5, 20), record(3, "alpha", 3620, 3630)])
    gaps = [g for g in root.iter(f"{{{NS['s']}}}g") if g.get("class") == "gap"]
    assert len(gaps) == 1
    assert gaps[0].find("s:text", NS).text == "1 h"
    assert title(gaps[0]) == "no turn for 1 h between turn 2 and turn 3"


def test_thousands_of_turns_are_merged_where_bars_get_thinner_than_a_pixel():
    records = [record(t, "alpha" if t % 2 else "bravo", t * 2.0, t * 2.0 + 1.5, code=0 if t != 1501 else 9)
               for t in range(1, 5001)]
    root = draw(records)
    found = lanes(root)
    bars = [r for rects in found.values() for r in rects if "bar" in r.get("class").split()]
    assert len(bars) < 2 * 1200  # at most about one per pixel column per lane
    assert all(float(r.get("width")) >= timeline.MIN_BAR_PX for r in bars)
    aggregates = [r for r in bars if "aggregate" in r.get("class").split()]
    assert aggregates and all(title(r).startswith("turns ") for r in aggregates)
    counted = sum(int(title(r).split(": ")[1].split(" turns")[0]) for r in aggregates)
    singles = len(bars) - len(aggregates)
    assert counted + singles == 5000
    # The one failure among thousands of successes colours the bar that holds it.
    failed = [r for r in aggregates if "1 failed" in title(r)]
    assert len(failed) == 1 and failed[0].get("class") == "bar aggregate failed"


def test_few_turns_are_never_merged():
    root = draw([record(t, "alpha", t * 100.0, t * 100.0 + 50) for t in range(1, 6)])
    bars = [r for r in lanes(root)["alpha"] if "bar" in r.get("class").split()]
    assert len(bars) == 5 and not any("aggregate" in r.get("class") for r in bars)


def test_a_bar_is_as_long_as_the_turn_though_its_times_are_stored_to_the_second():
    placed = timeline.spans([TurnRecord(turn=1, site="a", how="exited", exit_code=0, started_at=at(10),
                                        ended_at=at(10), duration_s=0.4),
                             TurnRecord(turn=2, site="b", how="exited", exit_code=0, started_at=at(10),
                                        ended_at=at(11), duration_s=0.4)], FMT)
    assert [s.duration_s for s in placed] == pytest.approx([0.4, 0.4])
    # Turn 1 lies within second 10; turn 2 began in second 10 and ended in second 11.
    assert placed[0].start >= T0 + _dt.timedelta(seconds=10) and placed[0].end < T0 + _dt.timedelta(seconds=11)
    assert placed[1].start > T0 + _dt.timedelta(seconds=10.6) and placed[1].end > T0 + _dt.timedelta(seconds=11)


def test_a_turn_without_duration_still_shows_and_one_without_times_is_left_out():
    placed = timeline.spans([record(1, "alpha", 0, 60), record(2, "alpha", None, 90, how="revoked", code=None),
                             TurnRecord(turn=3, site="alpha", how="abandoned")], FMT)
    assert [s.turn for s in placed] == [1, 2]
    assert placed[1].start == placed[1].end
    root = ET.fromstring(timeline.render_svg(placed, title="t"))
    bars = [r for r in lanes(root)["alpha"] if "bar" in r.get("class").split()]
    assert float(bars[1].get("width")) == timeline.MIN_BAR_PX and bars[1].get("class") == "bar revoked"


def test_the_current_pause_is_shaded_to_the_moment_of_drawing():
    pause = timeline.Pause(T0 + _dt.timedelta(seconds=100), T0 + _dt.timedelta(seconds=400), "paused by admin")
    root = draw([record(1, "alpha", 0, 60), record(2, "bravo", 60, 100)], pause=pause)
    shaded = [r for r in root.iter(f"{{{NS['s']}}}rect") if r.get("class") == "pause"]
    assert len(shaded) == 1 and title(shaded[0]) == "paused by admin"
    background, bar = lanes(root)["alpha"][0], lanes(root)["alpha"][1]
    # The picture runs to the pause's end: the 60 s bar (placed at 0.5 s, within its stored second) takes
    # 60 / 399.5 of the plot.
    assert float(bar.get("width")) == pytest.approx(float(background.get("width")) * 60 / 399.5, rel=1e-3)


def test_gaps_before_each_turn():
    placed = timeline.spans([record(1, "alpha", 0, 10), record(2, "bravo", 13, 20), record(4, "alpha", 19, 30)],
                            FMT)
    assert timeline.gaps_before(placed) == {2: 3.0, 4: -1.0}


def test_no_records_still_make_a_valid_picture_and_html_holds_it():
    svg = timeline.render_svg([], title="empty")
    assert "no turn records" in ET.fromstring(svg).find("s:text[2]", NS).text
    page = timeline.render_html(svg, title="empty <db>")
    assert page.startswith("<!DOCTYPE html>") and "<title>empty &lt;db&gt;</title>" in page and svg in page
