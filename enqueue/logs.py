"""Logging for every enqueue command: one format, UTC times, no secrets.

Text lines look like ``2026-11-22T03:04:05.123Z alpha INFO message`` (UTC,
ISO-8601 with ``Z``, then the site name or ``-``); ``--log-format json``
writes one JSON object per line with ``time``, ``site``, ``level``,
``logger``, ``message`` and any ``extra=`` fields.

Invariant: nothing that leaves a handler installed by ``setup_logging``
contains a registered secret, an ``Authorization`` header value, a CouchDB
``AuthSession`` cookie or the password of a ``user:pass@`` URL -- not in the
message, its arguments, extra fields, exception text nor traceback. The
redaction happens twice: a filter rewrites each record before any handler
formats it, and the formatters redact their final output as well, so text
added during formatting is covered too.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import importlib
import json
import logging
import re
import sys
import threading
import time
import traceback
from typing import Any
from urllib.parse import quote

from enqueue.errors import ConfigError

__all__ = [
    "LEVELS",
    "FORMATS",
    "REDACTED",
    "register_secret",
    "redact",
    "setup_logging",
    "set_site",
    "add_logging_arguments",
    "final_error_line",
    "RedactingFilter",
]

LEVELS = ("debug", "info", "warning", "error", "critical")
FORMATS = ("text", "json")
REDACTED = "***"

_secrets: set[str] = set()
_secrets_lock = threading.Lock()
_site: str | None = None
_format = "text"

# ``Authorization: Basic abc``, ``'Authorization': 'Basic abc'``, ``authorization=abc``:
# keep the header name and the scheme, drop the credentials.
_AUTH_HEADER = re.compile(
    r"""(?i)(\b(?:proxy-)?authorization['"]?\s*[:=]\s*['"]?)"""
    r"""((?:basic|bearer|digest|token)\s+)?[^\s'",;}\]]+"""
)
_AUTH_COOKIE = re.compile(r"(?i)(\bAuthSession=)[^\s;'\",}]+")
# ``scheme://user:password@host``: keep the user name, drop the password.
_URL_USERINFO = re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://[^\s/:@'\"]*:)[^\s/@'\"]*@")

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD_ATTRS = frozenset(
    vars(logging.LogRecord("x", logging.INFO, "x", 0, "x", None, None)).keys()
) | {"message", "asctime", "site"}


def register_secret(value: str | None) -> None:
    """Make every later log line replace ``value`` (and its URL-encoded form) with ``***``.

    Empty values are ignored: redacting "" would be meaningless.
    """
    if not value:
        return
    with _secrets_lock:
        _secrets.add(value)
        encoded = quote(value, safe="")
        if encoded != value:
            _secrets.add(encoded)


def _forget_secrets() -> None:
    """Drop every registered secret; for tests only."""
    with _secrets_lock:
        _secrets.clear()


def redact(text: str) -> str:
    """Return ``text`` with secrets, Authorization values and URL passwords replaced by ``***``."""
    if not text:
        return text
    with _secrets_lock:
        # Longest first, so a secret that contains another is replaced whole.
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    text = _AUTH_HEADER.sub(lambda m: m.group(1) + (m.group(2) or "") + REDACTED, text)
    text = _AUTH_COOKIE.sub(lambda m: m.group(1) + REDACTED, text)
    text = _URL_USERINFO.sub(lambda m: m.group(1) + REDACTED + "@", text)
    return text


def _redact_value(value: Any) -> Any:
    """Redact strings, and strings inside lists, tuples and dicts; leave other values alone."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, (list, tuple)):
        return type(value)(_redact_value(v) for v in value)
    if isinstance(value, dict):
        return {k: _redact_value(v) for k, v in value.items()}
    return value


class RedactingFilter(logging.Filter):
    """Rewrite a record in place so that no later handler can see a secret.

    The message is rendered with its arguments and redacted; exception and
    stack text are rendered and redacted into ``exc_text``/``stack_info``;
    string ``extra=`` fields are redacted. The record always passes.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not lose the line
            message = f"{record.msg!r} % {record.args!r}"
        record.msg = redact(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        for key, value in list(vars(record).items()):
            if key not in _STANDARD_ATTRS:
                setattr(record, key, _redact_value(value))
        if not getattr(record, "site", None):
            record.site = _site or "-"
        return True


def _utc_timestamp(created: float) -> str:
    """``2026-11-22T03:04:05.123Z`` for a record's creation time."""
    moment = _dt.datetime.fromtimestamp(created, _dt.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD_ATTRS and not k.startswith("_")}


class TextFormatter(logging.Formatter):
    """``TIME SITE LEVEL message key=value ...`` with exception text on the following lines."""

    def format(self, record: logging.LogRecord) -> str:
        line = f"{_utc_timestamp(record.created)} {getattr(record, 'site', None) or _site or '-'} " \
               f"{record.levelname} {record.getMessage()}"
        extras = _extras(record)
        if extras:
            line += " " + " ".join(f"{k}={v}" for k, v in sorted(extras.items()))
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line += "\n" + record.exc_text
        if record.stack_info:
            line += "\n" + self.formatStack(record.stack_info)
        return redact(line)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, site, level, logger, message, extras, and ``exception``."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": _utc_timestamp(record.created),
            "site": getattr(record, "site", None) or _site,
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in _extras(record).items():
            entry.setdefault(key, value)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = record.stack_info
        return redact(json.dumps(entry, default=str, ensure_ascii=False))


def final_error_line(prog: str, message: str, exit_code: int) -> str:
    """The last line a failing command prints: ``prog: message``, or a JSON object under ``--log-format json``.

    The JSON form has the keys of a log line plus ``exit_code``, so a
    collector that reads the log reads the reason a command ended too.
    """
    if _format != "json":
        return redact(f"{prog}: {message}")
    entry = {"time": _utc_timestamp(time.time()), "site": _site, "level": "ERROR", "logger": prog,
             "message": message, "exit_code": exit_code}
    return redact(json.dumps(entry, ensure_ascii=False))


def set_site(site: str | None) -> None:
    """Name the site shown on every later log line (``-`` when None)."""
    global _site
    _site = site


def setup_logging(
    level: str = "info",
    log_file: str | None = None,
    fmt: str = "text",
    site: str | None = None,
) -> logging.Handler:
    """Send all logging (enqueue's and libraries') to stderr, or to ``log_file`` when given.

    Calling it again replaces the handler installed before. A log file is
    opened in append mode and reopened when it is rotated away. Raises
    ``ConfigError`` for an unknown level or format or a file that cannot be
    opened. Returns the installed handler.
    """
    level_name = (level or "info").lower()
    if level_name not in LEVELS:
        raise ConfigError(f"log level {level!r} is not one of {', '.join(LEVELS)}")
    if fmt not in FORMATS:
        raise ConfigError(f"log format {fmt!r} is not one of {', '.join(FORMATS)}")
    set_site(site)
    global _format
    _format = fmt
    handler: logging.Handler
    if log_file:
        try:
            # Only with a log file: about 1 MB an agent logging to stderr does not load.
            handlers = importlib.import_module("logging.handlers")
            handler = handlers.WatchedFileHandler(log_file, encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"log file {log_file}: cannot open: {exc.strerror or exc}") from None
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RedactingFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    # Marks our handler so that a second call replaces it and leaves others' handlers alone.
    setattr(handler, "_enqueue_handler", True)

    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_enqueue_handler", False):
            root.removeHandler(old)
            old.close()
    root.addHandler(handler)
    root.setLevel(getattr(logging, level_name.upper()))
    logging.captureWarnings(True)
    return handler


def add_logging_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--log-level``, ``--log-file`` and ``--log-format`` to ``parser``."""
    group = parser.add_argument_group("logging")
    group.add_argument(
        "--log-level", choices=LEVELS, default="info", metavar="LEVEL",
        help=f"one of {', '.join(LEVELS)} (default: info)",
    )
    group.add_argument(
        "--log-file", metavar="PATH", default=None,
        help="append the log to PATH instead of stderr (reopened when rotated)",
    )
    group.add_argument(
        "--log-format", choices=FORMATS, default="text", metavar="FORMAT",
        help="text (default) or json, one object per line",
    )

