"""Configuration: file, environment and flags -> frozen settings.

The file is INI and may be shared with other tools. Two sections are ours::

    [couchdb]                       [enqueue]
    url             (required)      heartbeat_delay   (10 minutes)
    database        (required)      heartbeat_stale   (30 minutes)
    username                        conflict_delay    (1 minute)
    password | password_file        kill_grace        (30 s)
    ca_file                         repeat            (false)
    request_timeout (10 s)          time_format       (%Y-%m-%d %H:%M:%S)
                                    leader_doc        (enqueue_leader)
                                    sites_doc         (enqueue_sites)
                                    allow_cluster     (false)

Durations follow ``enqueue.durations``: a bare number is minutes. Other
sections, ``[DEFAULT]`` included, are ignored; an unknown key inside one of
ours is an error. ``;`` and ``#`` start a comment, also after a value when
preceded by a space (so a password holding `` ;`` belongs in a password file).
Relative paths in the file are relative to the file's directory.

Precedence, highest first: command-line flag, environment
(``ENQUEUE_COUCHDB_*``, connection only; empty means unset), file, default.
Secrets never come from the command line.

This module builds the settings of ``enqueue run`` (``AgentSettings``) from
the connection (``enqueue.connection``), the ``[enqueue]`` values and the
flags; the durations and their rules are ``enqueue.timing``, the file itself
``enqueue.config_file``.

Invariants: every problem is a ``ConfigError`` with one line naming where the
value came from (file, section and key; environment variable; flag) and what
is wrong; no message contains a password, and every password is registered
with ``enqueue.logs.register_secret`` as soon as it is read. Not checked
here: that the server can be reached or the documents exist.
"""

from __future__ import annotations

import datetime as _dt
import math
import os
import signal
from dataclasses import dataclass
from typing import Any, Mapping, Optional

from enqueue.config_file import ENQUEUE_SECTION
from enqueue.connection import Connection, load_connection
from enqueue.durations import format_duration
from enqueue.errors import ConfigError
from enqueue.set_names import set_name_problem
from enqueue.setting_values import RawValue, parse_bool_value, parse_duration_value
from enqueue.site_names import validate_site_name
from enqueue.stop_signals import is_stop_signal, parse_stop_signal
from enqueue.timing import DEFAULT_KILL_GRACE_S, Timing, fitted_heartbeat_delay_s, max_kill_grace_s

__all__ = [
    "AgentSettings",
    "OVERRIDE_KEYS",
    "DEFAULT_TIME_FORMAT",
    "DEFAULT_LEADER_DOC",
    "DEFAULT_SITES_DOC",
    "load_agent_settings",
]

#: Keys ``load_agent_settings`` accepts in ``overrides`` (None means "not given").
OVERRIDE_KEYS = (
    "heartbeat_delay_s", "heartbeat_stale_s", "conflict_delay_s", "kill_grace_s",
    "repeat", "time_format", "leader_doc", "sites_doc", "wall_clock_offset_s", "allow_cluster",
    "between", "between_every_s", "ready",
    "stop_signal", "max_failures",
)

DEFAULT_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
DEFAULT_LEADER_DOC = "enqueue_leader"
DEFAULT_SITES_DOC = "enqueue_sites"


@dataclass(frozen=True)
class AgentSettings:
    """Everything ``enqueue run`` needs; built by ``load_agent_settings``.

    Invariants: ``site`` is a valid site name (``enqueue.site_names``);
    ``command`` is not empty; ``leader_doc`` and ``sites_doc`` differ.
    ``wall_clock_offset_s`` shifts only the wall clock written into
    documents, to test clock skew. ``allow_cluster`` lets the agent run on a
    database that keeps more than one copy (n > 1), where a 409 is no
    linearizable compare-and-swap (see docs/GUARANTEES.md); off by default.
    ``notes`` are lines for the agent to log at start-up (a heartbeat delay
    fitted to the timing, see ``fitted_heartbeat_delay_s``). ``between`` and
    ``ready`` are shell command lines run outside the site's turns
    (enqueue.side_steps); ``between_every_s`` needs ``between``.
    ``stop_signal`` starts every stop of the command (``enqueue.stop_signals``;
    SIGKILL follows a kill grace later). ``max_failures``: the site drains
    itself after that many failed turns in a row (``enqueue.failures``);
    None never.
    """

    site: str
    command: list[str]
    connection: Connection
    timing: Timing
    repeat: bool = False
    time_format: str = DEFAULT_TIME_FORMAT
    leader_doc: str = DEFAULT_LEADER_DOC
    sites_doc: str = DEFAULT_SITES_DOC
    wall_clock_offset_s: float = 0.0
    config_path: str = ""
    allow_cluster: bool = False
    notes: tuple[str, ...] = ()
    between: Optional[str] = None
    between_every_s: Optional[float] = None
    ready: Optional[str] = None
    max_wait_s: float | None = None
    """Run-once only: leave (exit 75) when no turn of mine started within this long of the start."""
    stop_signal: int = signal.SIGTERM
    max_failures: Optional[int] = None

    def __post_init__(self) -> None:
        validate_site_name(self.site)
        if not is_stop_signal(self.stop_signal):
            raise ConfigError(f"stop signal {self.stop_signal} cannot start a stop (see 'enqueue run --help')")
        if self.max_failures is not None and (isinstance(self.max_failures, bool) or self.max_failures < 1):
            raise ConfigError(f"max_failures must be a whole number of turns, at least 1, not {self.max_failures!r}")
        if not self.command:
            raise ConfigError("no command given to run")
        _check_side_commands(self.between, self.between_every_s, self.ready)
        if self.leader_doc == self.sites_doc:
            raise ConfigError(f"leader_doc and sites_doc must differ (both are {self.leader_doc!r})")
        if self.max_wait_s is not None and self.repeat:
            raise ConfigError("--max-wait is for an agent that runs once; with --repeat it would never end "
                              "(leave out one of them)")


def _between_every(given: Any) -> Optional[float]:
    if isinstance(given, str):
        return parse_duration_value(RawValue(given, "--between-every", None))
    return None if given is None else float(given)


def _check_side_commands(between: Optional[str], between_every_s: Optional[float], ready: Optional[str]) -> None:
    for option, line in (("--between", between), ("--ready", ready)):
        if line is not None and not line.strip():
            raise ConfigError(f"{option}: the command line is empty; give a shell command, or leave the option out")
    if between_every_s is not None:
        if between is None:
            raise ConfigError("--between-every needs --between CMDLINE: it says how often that command runs "
                              "again while the site waits")
        if not (math.isfinite(between_every_s) and between_every_s > 0):
            raise ConfigError("--between-every: must be a duration of more than 0")


def _check_doc_id(text: str, where: str) -> str:
    if not text:
        raise ConfigError(f"{where}: must not be empty")
    if text.startswith("_"):
        raise ConfigError(f"{where}: {text!r} starts with '_', which CouchDB reserves")
    return text


def _check_set_name(leader_doc: str, where: str) -> str:
    problem = set_name_problem(leader_doc)
    if problem is not None:
        raise ConfigError(f"{where}: {problem}; name the leader doc otherwise")
    return leader_doc


def _check_time_format(text: str, where: str) -> str:
    """A time format must render and parse back, since documents are read as well as written."""
    if not text:
        raise ConfigError(f"{where}: must not be empty")
    sample = _dt.datetime(2026, 11, 22, 3, 4, 5)
    try:
        _dt.datetime.strptime(sample.strftime(text), text)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{where}: {text!r} cannot be read back by strptime ({exc})") from None
    return text


def load_agent_settings(
    config_path: str,
    site: str,
    command: list[str],
    overrides: Optional[Mapping[str, Any]] = None,
    environ: Mapping[str, str] = os.environ,
) -> AgentSettings:
    """Build the settings of ``enqueue run``: flags (``overrides``) > environment > file > defaults.

    ``overrides`` maps names from ``OVERRIDE_KEYS`` to parsed values (durations
    as float seconds, or duration text) or None for "not given". When
    kill_grace is set nowhere, it defaults to 30 s, shortened to fit the
    ``Timing`` rule so that short test heartbeats need no extra setting. A
    heartbeat delay too long for ``heartbeat_stale`` is shortened when that
    makes the timing valid (``fitted_heartbeat_delay_s``), said in ``notes``.
    Raises ``ConfigError``.
    """
    site = validate_site_name(site, "SITENAME")
    if not command:
        raise ConfigError("no command given to run")
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(OVERRIDE_KEYS))
    if unknown:
        raise ValueError(f"unknown override keys: {', '.join(unknown)}")

    connection, raw = load_connection(config_path, environ)
    shown = os.path.abspath(config_path)
    file_values = {key: RawValue(text, f"{shown}: [{ENQUEUE_SECTION}] {key}", None) for key, text in raw.items()}

    def flag_name(key: str) -> str:
        return "--" + (key[:-2] if key.endswith("_s") else key).replace("_", "-")

    def duration(key: str, default: float) -> tuple[float, str]:
        """The seconds for ``key`` and where they came from."""
        allow_zero = key == "kill_grace"
        given = overrides.get(key + "_s")
        if isinstance(given, str):
            return parse_duration_value(RawValue(given, flag_name(key), None), allow_zero=allow_zero), flag_name(key)
        if given is not None:
            return float(given), flag_name(key)
        if key in file_values:
            return parse_duration_value(file_values[key], allow_zero=allow_zero), f"[{ENQUEUE_SECTION}] {key}"
        return default, "default"

    def text(key: str, default: str) -> RawValue:
        given = overrides.get(key)
        if given is not None:
            return RawValue(str(given), flag_name(key), None)
        return file_values.get(key) or RawValue(default, f"default {key}", None)

    delay, delay_from = duration("heartbeat_delay", Timing.heartbeat_delay_s)
    stale, stale_from = duration("heartbeat_stale", Timing.heartbeat_stale_s)
    conflict, _ = duration("conflict_delay", Timing.conflict_delay_s)
    grace, grace_from = duration("kill_grace", DEFAULT_KILL_GRACE_S)
    notes: list[str] = []
    if all(math.isfinite(v) and v > 0 for v in (delay, stale)) and math.isfinite(grace):
        fitted = fitted_heartbeat_delay_s(delay, stale, None if grace_from == "default" else grace)
        if fitted is not None:
            notes.append(_fitted_note(delay, fitted, stale))
            delay = fitted
    if grace_from == "default":
        grace = min(DEFAULT_KILL_GRACE_S, max_kill_grace_s(delay, stale))
    try:
        timing = Timing(heartbeat_delay_s=delay, heartbeat_stale_s=stale, conflict_delay_s=conflict, kill_grace_s=grace)
    except ConfigError as exc:
        sources = f"heartbeat_delay: {delay_from}, heartbeat_stale: {stale_from}, kill_grace: {grace_from}"
        raise ConfigError(f"{shown}: {exc} ({sources})") from None

    if overrides.get("repeat") is not None:
        repeat = bool(overrides["repeat"])
    elif "repeat" in file_values:
        repeat = parse_bool_value(file_values["repeat"])
    else:
        repeat = False

    if overrides.get("allow_cluster") is not None:
        allow_cluster = bool(overrides["allow_cluster"])
    elif "allow_cluster" in file_values:
        allow_cluster = parse_bool_value(file_values["allow_cluster"])
    else:
        allow_cluster = False

    time_format_value = text("time_format", DEFAULT_TIME_FORMAT)
    time_format = _check_time_format(time_format_value.text, time_format_value.where)
    leader_value = text("leader_doc", DEFAULT_LEADER_DOC)
    sites_value = text("sites_doc", DEFAULT_SITES_DOC)
    leader_doc = _check_set_name(_check_doc_id(leader_value.text, leader_value.where), leader_value.where)
    sites_doc = _check_doc_id(sites_value.text, sites_value.where)
    if leader_doc == sites_doc:
        raise ConfigError(f"{leader_value.where} and {sites_value.where}: both are {leader_doc!r}; they must differ")

    offset = overrides.get("wall_clock_offset_s")
    offset_s = float(offset) if offset is not None else 0.0
    if not math.isfinite(offset_s):
        raise ConfigError("--wall-clock-offset: must be a finite number of seconds")

    stop_signal = overrides.get("stop_signal")
    if isinstance(stop_signal, str):
        try:
            stop_signal = parse_stop_signal(stop_signal)
        except ValueError as exc:
            raise ConfigError(f"--stop-signal: {exc}") from None
    max_failures = overrides.get("max_failures")
    if max_failures is not None and (isinstance(max_failures, bool) or not isinstance(max_failures, int)
                                     or max_failures < 1):
        raise ConfigError(f"--max-failures: must be a whole number of turns, at least 1, not {max_failures!r}")

    return AgentSettings(
        site=site,
        command=list(command),
        connection=connection,
        timing=timing,
        repeat=repeat,
        time_format=time_format,
        leader_doc=leader_doc,
        sites_doc=sites_doc,
        wall_clock_offset_s=offset_s,
        config_path=config_path,
        allow_cluster=allow_cluster,
        notes=tuple(notes),
        between=overrides.get("between"),
        between_every_s=_between_every(overrides.get("between_every_s")),
        ready=overrides.get("ready"),
        stop_signal=signal.SIGTERM if stop_signal is None else int(stop_signal),
        max_failures=max_failures,
    )


def _fitted_note(asked_s: float, fitted_s: float, stale_s: float) -> str:
    return (
        f"heartbeat every {format_duration(fitted_s)} instead of every {format_duration(asked_s)}: "
        f"heartbeat_stale ({format_duration(stale_s)}) needs more than 2 x heartbeat_delay, with room for "
        f"the kill grace and a late heartbeat (the delay is the longest time between beats)"
    )
