"""The Python API behind ``enqueue.run`` and ``enqueue.turn`` (their docstrings, in enqueue/__init__.py, are the reference).

Both drive the same agent as ``enqueue run`` (enqueue.agent_process), from
the caller's thread or a background one, with no signal handler, exit or
logging configuration of their own: records go to the ``enqueue.*``
loggers, errors are raised as ``EnqueueError`` subclasses.

Guarantees
----------
* Options are checked before anything touches the database: a bad one
  raises ``ConfigError`` naming the option, its value and what is expected.
* One agent per site and database in this process at a time (``SiteInUse``
  otherwise): two agents of one site in one process would share a pid, which
  the check against twins on one host cannot tell apart.
* ``turn`` leaves the site's turn only through the agent: the block's end is
  reported to it, and the agent records the turn and hands it on before the
  ``with`` statement returns (or re-raises the block's exception).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import logging
import math
import os
import signal
import threading
from typing import Any, Iterator, Mapping, Sequence

from enqueue.agent_process import run_agent
from enqueue.config import AgentSettings, load_agent_settings
from enqueue.durations import parse_duration
from enqueue.errors import ConfigError, SiteInUse, TurnLost
from enqueue.in_process_turn import BlockRunner, Turn

log = logging.getLogger("enqueue.api")

DURATION_OPTIONS = ("heartbeat_delay", "heartbeat_stale", "conflict_delay", "kill_grace")
FLAG_OPTIONS = ("repeat", "allow_cluster")
TEXT_OPTIONS = ("time_format", "leader_doc", "sites_doc")
NUMBER_OPTIONS = ("wall_clock_offset",)
#: The options of ``enqueue.run``; ``enqueue.turn`` takes them all but ``repeat``.
OPTIONS = DURATION_OPTIONS + FLAG_OPTIONS + TEXT_OPTIONS + NUMBER_OPTIONS
#: What ``enqueue.turn`` runs instead of a command, as the agent's log shows it.
IN_PROCESS_COMMAND = ("(in-process block)",)

_claims: set[tuple[str, str, str]] = set()
_claims_lock = threading.Lock()


def _duration(caller: str, name: str, value: object) -> float:
    """Seconds from a number of seconds, a ``timedelta`` or duration text (``"30s"``; a bare number is minutes)."""
    shown = f"{caller}: {name}={value!r}"
    if isinstance(value, _dt.timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, str):
        try:
            seconds = parse_duration(value)
        except ValueError as exc:
            raise ConfigError(f"{shown}: {exc}") from None
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        raise ConfigError(f"{shown}: expected seconds (a number), a timedelta or text like '30s'")
    if not math.isfinite(seconds) or seconds < 0:
        raise ConfigError(f"{shown}: must be a finite number of seconds, not negative")
    if seconds == 0 and name != "kill_grace":
        raise ConfigError(f"{shown}: must be more than 0")
    return seconds


def overrides_from(caller: str, options: Mapping[str, object]) -> dict[str, Any]:
    """``options`` (``OPTIONS`` names, None meaning "not given") as ``load_agent_settings`` overrides.

    Raises ``ConfigError`` naming the first unknown or ill-typed option.
    """
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise ConfigError(f"{caller}: unknown option {unknown[0]!r}; the options are {', '.join(OPTIONS)}")
    overrides: dict[str, Any] = {}
    for name, value in options.items():
        if value is None:
            continue
        if name in DURATION_OPTIONS:
            overrides[name + "_s"] = _duration(caller, name, value)
        elif name in FLAG_OPTIONS:
            if not isinstance(value, bool):
                raise ConfigError(f"{caller}: {name}={value!r}: expected True or False")
            overrides[name] = value
        elif name in TEXT_OPTIONS:
            if not isinstance(value, str):
                raise ConfigError(f"{caller}: {name}={value!r}: expected text")
            overrides[name] = value
        else:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ConfigError(f"{caller}: {name}={value!r}: expected a finite number of seconds")
            overrides[name + "_s"] = float(value)
    return overrides


def _argv(argv: object) -> list[str]:
    if isinstance(argv, (str, bytes)) or not isinstance(argv, Sequence):
        raise ConfigError(f"enqueue.run: argv={argv!r}: expected a list of strings, such as ['ls', '-l'], "
                          f"not one string")
    words = [os.fspath(word) if isinstance(word, os.PathLike) else word for word in argv]
    if not words or not all(isinstance(word, str) for word in words):
        raise ConfigError(f"enqueue.run: argv={argv!r}: expected a non-empty list of strings")
    return words


def load_settings(caller: str, config: str | os.PathLike[str], site: str, command: Sequence[str],
                  options: Mapping[str, object], environ: Mapping[str, str] | None) -> AgentSettings:
    """The agent's settings from the file ``config``, the environment and ``options``, as ``enqueue run`` builds them."""
    if not isinstance(site, str):
        raise ConfigError(f"{caller}: site={site!r}: expected the site's name as text")
    overrides = overrides_from(caller, options)
    try:
        settings = load_agent_settings(os.fspath(config), site, list(command), overrides,
                                       os.environ if environ is None else environ)
    except ConfigError as exc:
        raise ConfigError(_named_as_options(str(exc), caller, options)) from None
    for note in settings.notes:
        log.info("%s", note)
    return settings


def _named_as_options(message: str, caller: str, options: Mapping[str, object]) -> str:
    """``message`` with the flags of ``enqueue run`` it names as the options given here (``--kill-grace`` ->
    ``enqueue.run(kill_grace=0.3)``)."""
    for name, value in options.items():
        if value is not None:
            message = message.replace("--" + name.replace("_", "-"), f"{caller}({name}={value!r})")
    return message


@contextlib.contextmanager
def claimed(settings: AgentSettings) -> Iterator[None]:
    """Hold the site's one agent slot in this process while the block runs; ``SiteInUse`` if taken."""
    key = (settings.connection.url, settings.connection.database, settings.site)
    with _claims_lock:
        if key in _claims:
            raise SiteInUse(f"site {settings.site} already has an agent in this process; run each site once")
        _claims.add(key)
    try:
        yield
    finally:
        with _claims_lock:
            _claims.discard(key)


def _check_signal_thread(handle_signals: bool) -> None:
    if handle_signals and threading.current_thread() is not threading.main_thread():
        raise ConfigError("enqueue.run: handle_signals=True works only in the main thread (Python delivers "
                          "signals there); pass stop=threading.Event() to stop it from another thread")


def run(config: str | os.PathLike[str], site: str, argv: Sequence[str], *, stop: threading.Event | None = None,
        handle_signals: bool = False, environ: Mapping[str, str] | None = None, **options: object) -> int:
    """``enqueue.run``: see its docstring in enqueue/__init__.py."""
    if not isinstance(handle_signals, bool):
        raise ConfigError(f"enqueue.run: handle_signals={handle_signals!r}: expected True or False")
    _check_signal_thread(handle_signals)
    settings = load_settings("enqueue.run", config, site, _argv(argv), options, environ)
    with claimed(settings):
        return run_agent(settings, catch_signals=handle_signals, stop=stop)


def _join(thread: threading.Thread, runner: BlockRunner) -> None:
    """Wait for the agent to record the turn and leave; an interrupt asks it to stop, then waits again."""
    try:
        thread.join()
    except BaseException:
        runner.interrupt(signal.SIGINT)
        thread.join()
        raise


@contextlib.contextmanager
def turn(config: str | os.PathLike[str], site: str, *, stop: threading.Event | None = None,
         environ: Mapping[str, str] | None = None, **options: object) -> Iterator[Turn]:
    """``enqueue.turn``: see its docstring in enqueue/__init__.py."""
    if "repeat" in options:
        raise ConfigError("enqueue.turn: repeat is not an option here: one 'with' holds one turn "
                          "(loop over enqueue.turn to take more)")
    settings = load_settings("enqueue.turn", config, site, IN_PROCESS_COMMAND, options, environ)
    with claimed(settings):
        runner = BlockRunner(settings.site, settings.timing.kill_grace_s)
        outcome: dict[str, Any] = {}

        def agent() -> None:
            try:
                outcome["exit_code"] = run_agent(settings, catch_signals=False, stop=stop, make_runner=runner.attach)
            except BaseException as exc:  # handed to the caller's thread
                outcome["error"] = exc
            finally:
                runner.agent_ended()

        thread = threading.Thread(target=agent, name=f"enqueue-agent-{settings.site}", daemon=True)
        thread.start()
        try:
            held = runner.wait_for_turn()
        except BaseException:  # interrupted while waiting: no block will run
            runner.interrupt(signal.SIGINT)
            runner.end(1, "the caller stopped waiting")
            _join(thread, runner)
            raise
        if held is None:
            _join(thread, runner)
            if "error" in outcome:
                raise outcome["error"]
            raise TurnLost(f"site {settings.site}'s agent ended before its turn began "
                           f"(exit code {outcome.get('exit_code')}: stopped, or the turn was skipped or "
                           f"could not start)")
        try:
            yield held
        except BaseException as exc:
            runner.end(1, f"the block raised {type(exc).__name__}")
            _join(thread, runner)
            raise
        runner.end(0)
        _join(thread, runner)
        if "error" in outcome:
            raise outcome["error"]
