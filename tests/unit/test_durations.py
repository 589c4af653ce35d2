"""Durations: bare numbers are minutes, suffixes s/m/h; human formatting."""

from __future__ import annotations

import pytest

from enqueue.durations import format_age, format_duration, parse_duration


@pytest.mark.parametrize(
    "text, seconds",
    [
        ("10", 600.0),
        ("1", 60.0),
        ("0.05", 3.0),
        ("0.5", 30.0),
        (".5", 30.0),
        ("0", 0.0),
        ("30s", 30.0),
        ("2m", 120.0),
        ("1h", 3600.0),
        ("1.5h", 5400.0),
        ("2M", 120.0),
        (" 3 s ", 3.0),
        ("+5s", 5.0),
    ],
)
def test_parse(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "text, reason",
    [
        ("", "empty"),
        ("   ", "empty"),
        ("-1", "negative"),
        ("-30s", "negative"),
        ("abc", "not a duration"),
        ("10 minutes", "not a duration"),
        ("1e3", "not a duration"),
        ("inf", "not a duration"),
        ("nan", "not a duration"),
        ("5d", "not a duration"),
        ("1h30m", "not a duration"),
        ("9" * 400, "too large"),
    ],
)
def test_parse_rejects(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason) as info:
        parse_duration(text)
    assert "\n" not in str(info.value)
    assert len(str(info.value)) < 120


def test_parse_rejects_non_text() -> None:
    with pytest.raises(ValueError):
        parse_duration(10)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "seconds, text",
    [
        (0, "0 s"),
        (3, "3 s"),
        (0.5, "0.5 s"),
        (2.25, "2.2 s"),
        (59, "59 s"),
        (60, "1 min"),
        (125, "2 min 5 s"),
        (3600, "1 h"),
        (3720, "1 h 2 min"),
        (3725, "1 h 2 min"),
        (-5, "-5 s"),
    ],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_format_age() -> None:
    assert format_age(12) == "12 s ago"
    assert format_age(125) == "2 min 5 s ago"
    # A timestamp from a clock ahead of ours is not "in the past".
    assert format_age(-12) == "in 12 s"
