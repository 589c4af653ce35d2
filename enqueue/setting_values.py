"""A raw setting and where it came from, and the parsers that name that place when they refuse it.

Settings come from the INI file, the environment and command-line flags;
each raw text travels as a ``RawValue`` with ``where`` (``/abs/cfg.ini:
[couchdb] url``, ``environment variable ENQUEUE_COUCHDB_URL``,
``--time-format``) and the directory its relative paths are relative to.

Guarantees: every refusal is one ``ConfigError`` line that starts with
``where``; no parser here logs or registers anything, so a secret is safe
only once its reader has registered it (``enqueue.logs.register_secret``).
Not here: which settings exist or which source wins.
"""

from __future__ import annotations

import configparser
import os
from typing import NamedTuple, Optional

from enqueue.durations import parse_duration
from enqueue.errors import ConfigError

__all__ = ["RawValue", "resolve_path", "parse_duration_value", "parse_bool_value"]


class RawValue(NamedTuple):
    """A raw setting and where it came from, for error messages and relative paths."""

    text: str
    where: str  # "cfg.ini: [couchdb] url", "environment variable ENQUEUE_COUCHDB_URL", "--time-format"
    base_dir: Optional[str]  # directory relative paths are resolved against; None: the working directory


def resolve_path(value: RawValue) -> str:
    """The path ``value`` names: ``~`` expanded, relative to ``base_dir`` when it has one."""
    path = os.path.expanduser(value.text)
    if value.base_dir and not os.path.isabs(path):
        path = os.path.join(value.base_dir, path)
    return path


def parse_duration_value(value: RawValue, *, allow_zero: bool = False) -> float:
    """Seconds, as ``enqueue.durations`` reads them; 0 only when ``allow_zero``."""
    try:
        seconds = parse_duration(value.text)
    except ValueError as exc:
        raise ConfigError(f"{value.where}: {exc}") from None
    if seconds == 0 and not allow_zero:
        raise ConfigError(f"{value.where}: must be more than 0")
    return seconds


def parse_bool_value(value: RawValue) -> bool:
    """A boolean as INI files spell it: true/false, yes/no, on/off, 1/0."""
    states = configparser.ConfigParser.BOOLEAN_STATES
    try:
        return states[value.text.lower()]
    except KeyError:
        raise ConfigError(f"{value.where}: {value.text!r} is not true/false, yes/no, on/off or 1/0") from None
