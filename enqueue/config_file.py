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
from dataclasses import dataclass
from typing import Optional

from enqueue.errors import ConfigError
from enqueue.logs import register_secret
from enqueue.setting_values import RawValue

__all__ = [
    "COUCHDB_SECTION", "ENQUEUE_SECTION", "COUCHDB_KEYS", "ENQUEUE_KEYS",
    "read_file", "read_text", "TextFileWording", "not_a_regular_file", "misspelt_section", "section_values",
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


@dataclass(frozen=True)
class TextFileWording:
    """The one-line message for each way reading a text file fails, as ``str.format`` templates.

    Every template may name ``{path}`` and the caller's own names; ``not_a_file``
    also ``{kind}`` ("a directory", "a FIFO", ...), ``not_text`` ``{byte}`` (the
    offset of the first byte that does not decode), ``failed`` ``{error}``.
    """

    not_a_file: str
    missing: str
    denied: str
    not_text: str
    failed: str


def read_text(path: str, encoding: str, wording: TextFileWording, **names: str) -> str:
    """The whole text of the regular file at ``path``, or one ``ConfigError`` line in ``wording``.

    Anything but a regular file is refused before it is opened (reading a
    FIFO would hang); no message quotes the file's contents.
    """
    kind = not_a_regular_file(path)
    if kind is not None:
        raise ConfigError(wording.not_a_file.format(path=path, kind=kind, **names))
    try:
        with open(path, encoding=encoding) as handle:
            return handle.read()
    except FileNotFoundError:
        raise ConfigError(wording.missing.format(path=path, **names)) from None
    except IsADirectoryError:
        raise ConfigError(wording.not_a_file.format(path=path, kind="a directory", **names)) from None
    except PermissionError:
        raise ConfigError(wording.denied.format(path=path, **names)) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(wording.not_text.format(path=path, byte=exc.start, **names)) from None
    except OSError as exc:
        raise ConfigError(wording.failed.format(path=path, error=exc.strerror or exc, **names)) from None


_CONFIG_FILE_WORDING = TextFileWording(
    not_a_file="{path}: is {kind}, not a configuration file",
    missing="{path}: no such configuration file",
    denied="{path}: cannot read the configuration file (permission denied)",
    not_text="{path}: not UTF-8 text (byte {byte})",
    failed="{path}: cannot read the configuration file: {error}",
)


def read_file(path: str) -> configparser.ConfigParser:
    """Read and parse the INI file; every failure is a one-line ``ConfigError``.

    A UTF-8 byte order mark (as some Windows editors write) is skipped;
    anything but a regular file is refused before it is opened.
    """
    text = read_text(path, "utf-8-sig", _CONFIG_FILE_WORDING)

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
