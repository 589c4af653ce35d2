"""The protocol's durations: the rules that tie them together, and the fitted heartbeat delay."""

from __future__ import annotations

import itertools

import pytest

from enqueue.errors import ConfigError
from enqueue.timing import Timing, fitted_heartbeat_delay_s
from tests.support.log_state import restore_logging  # noqa: F401  (fixture)

pytestmark = pytest.mark.usefixtures("restore_logging")


def test_a_fitted_delay_always_makes_a_valid_timing_with_the_margin() -> None:
    seconds = [0.5, 1, 2, 5, 10, 30, 60, 100, 300, 600, 1200, 1800, 3600]
    for delay, stale in itertools.product(seconds, seconds):
        for grace in (None, 0.0, 0.1, 1.0, 30.0, 300.0):
            fitted = fitted_heartbeat_delay_s(delay, stale, grace)
            if fitted is None:
                continue
            default_grace = min(30.0, stale / 6)
            effective_grace = default_grace if grace is None else grace
            assert 0 < fitted < delay
            Timing(heartbeat_delay_s=fitted, heartbeat_stale_s=stale, kill_grace_s=effective_grace)
            slack = stale - 2 * fitted
            assert slack == pytest.approx(effective_grace + max(effective_grace, default_grace))


@pytest.mark.parametrize(
    "kwargs, expected",
    [
        ({"heartbeat_delay_s": 0}, "heartbeat_delay must be more than 0"),
        ({"conflict_delay_s": -1}, "conflict_delay must be more than 0"),
        ({"kill_grace_s": -1}, "kill_grace must be more than 0 or 0"),
        ({"heartbeat_stale_s": float("inf")}, "heartbeat_stale must be a finite number"),
        ({"heartbeat_stale_s": 1200}, "heartbeat_stale (20 min) must be more than 2 x heartbeat_delay"),
        ({"heartbeat_stale_s": 1230, "kill_grace_s": 31}, "kill_grace (31 s) must be at most"),
    ],
)
def test_timing_rules(kwargs: dict, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        Timing(**kwargs)
    assert expected in str(info.value)
    assert "\n" not in str(info.value)


def test_timing_edge_cases_allowed() -> None:
    timing = Timing(heartbeat_delay_s=10, heartbeat_stale_s=20.001, kill_grace_s=0)
    assert (timing.heartbeat_stale_s, timing.kill_grace_s) == (20.001, 0)
    assert Timing(heartbeat_delay_s=10, heartbeat_stale_s=50, kill_grace_s=15).kill_grace_s == 15
