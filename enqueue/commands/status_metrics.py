"""``enqueue status --prometheus``: the overview in the Prometheus text exposition format.

For node_exporter's textfile collector or a cron job that scrapes once. The
formatting is prometheus_client's own (``generate_latest`` over a registry
holding one collector of this picture), so escaping, types and help lines
follow the format exactly; the library is the optional extra ``[metrics]``
and is imported only when ``--prometheus`` is asked for.

Every value comes from one ``Overview``: nothing here reads or decides.
Unknown values (no turn yet, a site without a beat time or without an exit
code) are left out rather than written as 0, which would read as a fact.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Iterator

from enqueue import documents as docs
from enqueue.commands.status_overview import ALIVE, LOOPING, Overview
from enqueue.errors import ConfigError

__all__ = ["PREFIX", "check_library", "exposition"]

PREFIX = "enqueue"


def _library() -> tuple[ModuleType, ModuleType]:
    """prometheus_client and its core module, or one line on how to install them."""
    try:
        client = importlib.import_module("prometheus_client")
        core = importlib.import_module("prometheus_client.core")
    except ModuleNotFoundError as exc:
        if exc.name is not None and not exc.name.startswith("prometheus_client"):
            raise
        raise ConfigError("--prometheus needs the prometheus_client library: "
                          "pip install 'enqueue[metrics]' (or pip install prometheus_client)") from None
    return client, core


def check_library() -> None:
    """Raise the one-line ``ConfigError`` when prometheus_client is not installed."""
    _library()


class _OverviewCollector:
    """A collector that yields the metric families of one overview, then nothing else."""

    def __init__(self, ov: Overview, core: ModuleType) -> None:
        self.ov = ov
        self.core = core

    def collect(self) -> Iterator[object]:
        ov, core = self.ov, self.core
        gauge, state_set = core.GaugeMetricFamily, core.StateSetMetricFamily

        def family(name: str, text: str, labels: tuple[str, ...] = ()) -> object:
            return gauge(f"{PREFIX}_{name}", text, labels=("database",) + labels)

        turn = family("turn", "Number of the turn named in the leader doc (the fencing token last granted)")
        handoff = family("seconds_since_handoff",
                         "Seconds since the current turn was granted, by this host's clock")
        paused = family("paused", "1 when production is paused (no new turn is granted)")
        if ov.turn is not None:
            turn.add_metric([ov.database], ov.turn.number)
            if ov.turn.handoff_s is not None:
                handoff.add_metric([ov.database], ov.turn.handoff_s)
        paused.add_metric([ov.database], 1 if ov.paused else 0)
        yield turn
        yield handoff
        yield paused

        site = ("site",)
        alive = family("site_alive", "1 when the site's heartbeat is fresh, or its loop is between two "
                       "run-once agents (looping, see 'enqueue status')", site)
        states = state_set(f"{PREFIX}_site_state", "The state the site's heartbeat announces",
                           labels=("database", "site"))
        drained = family("site_drained", "1 when the site is drained (gets no new turn)", site)
        taken = family("site_turns_taken", "Turns the site ran, counted from the turn records left after pruning",
                       site)
        exit_code = family("site_last_exit_code", "Exit code of the site's last recorded turn", site)
        beat_age = family("site_seconds_since_beat",
                          "Seconds since the site's last heartbeat, its beat time against this host's clock", site)
        for view in ov.sites:
            labels = [ov.database, view.name]
            alive.add_metric(labels, 1 if view.liveness in (ALIVE, LOOPING) else 0)
            if view.state is not None:
                known = list(docs.SITE_STATES) + ([view.state] if view.state not in docs.SITE_STATES else [])
                states.add_metric(labels, {state: state == view.state for state in known})
            drained.add_metric(labels, 1 if view.drained else 0)
            taken.add_metric(labels, view.turns_taken)
            if view.last_exit_code is not None:
                exit_code.add_metric(labels, view.last_exit_code)
            if view.beat_age_s is not None:
                beat_age.add_metric(labels, view.beat_age_s)
        yield from (alive, states, drained, taken, exit_code, beat_age)

    def describe(self) -> list[object]:
        return []


def exposition(ov: Overview) -> str:
    """The overview as Prometheus text; ``ConfigError`` when prometheus_client is not installed."""
    client, core = _library()
    registry = client.CollectorRegistry(auto_describe=False)
    registry.register(_OverviewCollector(ov, core))
    return client.generate_latest(registry).decode("utf-8")
