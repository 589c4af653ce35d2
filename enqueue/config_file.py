"""Reading enqueue's INI file: what is refused before parsing, and how parsing fails.

``read_file`` returns the parsed file or raises one ``ConfigError`` line
that names the file and, for a syntax error, the line number only (the line
itself might hold a password). A UTF-8 byte order mark is skipped; anything
but a regular file (a directory, a FIFO that would block the reader) is
refused before it is opened. ``misspelt_section`` turns a section spelt
almost like one of ours into an error instead of silently ignoring it as a
foreign section. ``section_values`` gives the non-empty values of one of
our sections, each with the file, section and key it came from, and
refuses a key it does not know; a password is registered for redaction
as soon as it is read.

Not here: what a value means (``enqueue.connection``, ``enqueue.config``),
nor the environment or flags that may override it.
"""

from __future__ import annotations

import configparser
import difflib
import os
import stat
from typing import Optional

from enqueue.errors import ConfigError
from enqueue.logs import register_secret
from enqueue.setting_values import RawValue

__all__ = [
    "COUCHDB_SECTION", "ENQUEUE_SECTION", "COUCHDB_KEYS", "ENQUEUE_KEYS",
    "read_file", "not_a_regular_file", "misspelt_section", "section_values",
]

COUCHDB_SECTION = "couchdb"
ENQUEUE_SECTION = "enqueue"
COUCHDB_KEYS = ("url", "database", "username", "password", "password_file", "ca_file", "request_timeout")
ENQUEUE_KEYS = (
    "heartbeat_delay", "heartbeat_stale", "conflict_delay", "kill_grace",
    "repeat", "time_format", "leader_doc", "sites_doc", "allow_cluster",
)


def not_a_regular_file(path: str) -> Optional[str]:
    """What ``path`` is when it is no regular file (reading a FIFO would hang); None for a file or no file."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    if stat.S_ISREG(mode):
        return None
    return "a directory" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) else \
        "a socket" if stat.S_ISSOCK(mode) else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else \
        "not a regular file"


def read_file(path: str) -> configparser.ConfigParser:
    """Read and parse the INI file; every failure is a one-line ``ConfigError``.

    A UTF-8 byte order mark (as some Windows editors write) is skipped;
    anything but a regular file is refused before it is opened.
    """
    kind = not_a_regular_file(path)
    if kind is not None:
        raise ConfigError(f"{path}: is {kind}, not a configuration file")
    try:
        with open(path, encoding="utf-8-sig") as handle:
            text = handle.read()
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such configuration file") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, not a configuration file") from None
    except PermissionError:
        raise ConfigError(f"{path}: cannot read the configuration file (permission denied)") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the configuration file: {exc.strerror or exc}") from None

    # [DEFAULT] would leak its keys into our sections; treat it as just another foreign section.
    parser = configparser.ConfigParser(
        interpolation=None,
        default_section="\0enqueue-no-default-section",
        inline_comment_prefixes=(";", "#"),
        strict=True,
    )
    try:
        parser.read_string(text, source=path)
    except configparser.MissingSectionHeaderError as exc:
        raise ConfigError(f"{path}: line {exc.lineno}: a setting before the first [section] header") from None
    except configparser.ParsingError as exc:
        # The offending line might hold a password: name its number only.
        lines = ", ".join(str(lineno) for lineno, _line in exc.errors)
        raise ConfigError(f"{path}: line {lines}: not a 'key = value' line") from None
    except configparser.DuplicateSectionError as exc:
        raise ConfigError(f"{path}: line {exc.lineno}: section [{exc.section}] appears twice") from None
    except configparser.DuplicateOptionError as exc:
        raise ConfigError(f"{path}: line {exc.lineno}: [{exc.section}] {exc.option} appears twice") from None
    except configparser.Error as exc:
        raise ConfigError(f"{path}: cannot parse: {type(exc).__name__}") from None
    return parser


def misspelt_section(parser: configparser.ConfigParser, path: str, section: str) -> None:
    """Refuse a section that is absent when the file has one spelt almost like it (``[couchbd]``).

    Other tools' sections are ignored on purpose; one this close to ours is
    a typo, whose settings would otherwise be silently dropped.
    """
    if parser.has_section(section):
        return
    close = difflib.get_close_matches(section, parser.sections(), n=1, cutoff=0.75)
    if close:
        raise ConfigError(f"{path}: section [{section}] not found; the file has [{close[0]}]: "
                          f"did you mean [{section}]?")


def section_values(
    parser: configparser.ConfigParser, path: str, section: str, known: tuple[str, ...]
) -> dict[str, RawValue]:
    """The non-empty values of ``section``; an unknown key is an error."""
    misspelt_section(parser, path, section)
    if not parser.has_section(section):
        return {}
    base_dir = os.path.dirname(os.path.abspath(path))
    values: dict[str, RawValue] = {}
    for key, text in parser.items(section, raw=True):
        if key not in known:
            raise ConfigError(f"{path}: [{section}] {key}: unknown key; known keys: {', '.join(known)}")
        if key == "password":
            register_secret(text.strip())
        if text.strip():
            values[key] = RawValue(text.strip(), f"{path}: [{section}] {key}", base_dir)
    return values
