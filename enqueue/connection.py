"""Where the shared database is and how to log in: ``[couchdb]`` and ``ENQUEUE_COUCHDB_*``.

``load_connection`` reads the ``[couchdb]`` section of the INI file
(``enqueue.config_file``), lets every non-empty ``ENQUEUE_COUCHDB_*``
variable override its key (``request_timeout`` comes from the file only),
and builds one ``Connection``. It also hands back the raw ``[enqueue]``
values, checked to be known keys, for ``enqueue.config`` to parse.

Guarantees: every problem is one ``ConfigError`` line naming where the value
came from; no message contains a password, and every password (inline, in a
password file, or in the url) is registered with
``enqueue.logs.register_secret`` as soon as it is read; a ``Connection``'s
url never carries credentials. Not guaranteed: that the server exists or
accepts the credentials (nothing here touches the network).
"""

from __future__ import annotations

import logging
import math
import os
import re
import stat
from dataclasses import dataclass, field
from typing import Mapping, Optional
from urllib.parse import urlsplit

from enqueue import hints
from enqueue.config_file import (
    COUCHDB_KEYS, COUCHDB_SECTION, ENQUEUE_KEYS, ENQUEUE_SECTION, TextFileWording, read_file, read_text,
    section_values,
)
from enqueue.errors import ConfigError
from enqueue.logs import register_secret
from enqueue.setting_values import RawValue
from enqueue.setting_values import parse_duration_value, resolve_path
from enqueue.urls import BadUrl, split_url

__all__ = ["Connection", "CONNECTION_ENV_PREFIX", "ENV_VARS", "DEFAULT_REQUEST_TIMEOUT_S", "load_connection"]

# The configuration's warnings keep the logger name they always had: JSON logs carry it.
log = logging.getLogger("enqueue.config")

#: Every environment variable of enqueue's connection settings starts so; none reaches the command.
CONNECTION_ENV_PREFIX = "ENQUEUE_COUCHDB_"
#: Environment variable for each ``[couchdb]`` key it can override.
ENV_VARS = {
    "url": "ENQUEUE_COUCHDB_URL",
    "database": "ENQUEUE_COUCHDB_DATABASE",
    "username": "ENQUEUE_COUCHDB_USERNAME",
    "password": "ENQUEUE_COUCHDB_PASSWORD",
    "password_file": "ENQUEUE_COUCHDB_PASSWORD_FILE",
    "ca_file": "ENQUEUE_COUCHDB_CA_FILE",
}
DEFAULT_REQUEST_TIMEOUT_S = 10.0

# CouchDB's own rule for database names.
_DATABASE_NAME = re.compile(r"[a-z][a-z0-9_$()+/-]*")
_LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")


@dataclass(frozen=True)
class Connection:
    """Where the shared database is and how to log in.

    ``url`` never carries credentials (they are moved to ``username`` and
    ``password``); it has no trailing slash. ``password`` is left out of
    ``repr``. ``username`` and ``password`` are both set or both None.
    """

    url: str
    database: str
    username: Optional[str] = None
    password: Optional[str] = field(default=None, repr=False)
    ca_file: Optional[str] = None
    request_timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S
    #: Where each setting came from (``url``, ``database``, ``username``, ``password``), for messages:
    #: ``/abs/cfg.ini: [couchdb] url`` or ``environment variable ENQUEUE_COUCHDB_URL``.
    sources: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        if "@" in urlsplit(self.url).netloc:
            raise ConfigError("the connection url must not carry credentials; use username and password")
        if (self.username is None) != (self.password is None):
            raise ConfigError("the connection needs both a username and a password, or neither")
        if not (self.request_timeout_s > 0 and math.isfinite(self.request_timeout_s)):
            raise ConfigError("request_timeout must be more than 0")

    def describe(self) -> str:
        """``database 'x' at URL``, for messages; never shows a secret."""
        return f"database {self.database!r} at {self.url}"


def _env_value(environ: Mapping[str, str], key: str) -> Optional[RawValue]:
    name = ENV_VARS[key]
    text = environ.get(name, "")
    if key == "password":
        register_secret(text)
    else:
        text = text.strip()
    return RawValue(text, f"environment variable {name}", None) if text else None


def _readable_by_others(path: str) -> bool:
    try:
        return bool(os.stat(path).st_mode & (stat.S_IRGRP | stat.S_IROTH))
    except OSError:
        return False


_PASSWORD_FILE_WORDING = TextFileWording(
    not_a_file="{where}: password file {path} is {kind}, not a file holding the password",
    missing="{where}: password file {path} does not exist",
    denied="{where}: password file {path} is not readable (permission denied)",
    not_text="{where}: password file {path} is not UTF-8 text",
    failed="{where}: cannot read password file {path}: {error}",
)


def _read_password_file(value: RawValue) -> str:
    path = resolve_path(value)
    password = read_text(path, "utf-8", _PASSWORD_FILE_WORDING, where=value.where)
    # Only the line ending an editor adds is dropped; other whitespace may be part of the password.
    password = password.rstrip("\r\n")
    register_secret(password)
    if not password:
        raise ConfigError(f"{value.where}: password file {path} is empty")
    if "\n" in password:
        raise ConfigError(f"{value.where}: password file {path} holds more than one line")
    if _readable_by_others(path):
        log.warning("password file %s can be read by group or others; consider chmod 600", path)
    return password


def _parse_url(value: RawValue) -> tuple[str, Optional[str], Optional[str]]:
    """Split a server URL into (url without credentials, username, password)."""
    try:
        url = split_url(value.text)
    except BadUrl as exc:
        raise ConfigError(f"{value.where}: {exc}") from None
    register_secret(url.password)
    register_secret(url.raw_password)
    return url.base, url.username, url.password


def load_connection(
    config_path: str, environ: Mapping[str, str] = os.environ
) -> tuple[Connection, dict[str, str]]:
    """Read ``[couchdb]`` (with ``ENQUEUE_COUCHDB_*`` overrides) and the raw ``[enqueue]`` values.

    Returns the connection and ``{key: text}`` of the non-empty ``[enqueue]``
    keys, unparsed but checked to be known keys. Raises ``ConfigError``;
    messages name the file by its absolute path, wherever it was run from.
    """
    config_path = os.path.abspath(config_path)
    parser = read_file(config_path)
    file_values = section_values(parser, config_path, COUCHDB_SECTION, COUCHDB_KEYS)
    enqueue_values = section_values(parser, config_path, ENQUEUE_SECTION, ENQUEUE_KEYS)

    env_values = {key: v for key in ENV_VARS if (v := _env_value(environ, key)) is not None}

    def pick(key: str) -> Optional[RawValue]:
        return env_values.get(key) or file_values.get(key)

    def required(key: str) -> RawValue:
        value = pick(key)
        if value is None:
            if not parser.has_section(COUCHDB_SECTION):
                found = ", ".join(f"[{name}]" for name in parser.sections()) or "none"
                raise ConfigError(
                    f"{config_path}: section [{COUCHDB_SECTION}] not found (sections in the file: {found}); "
                    f"it needs {key} (or set {ENV_VARS[key]})"
                )
            raise ConfigError(
                f"{config_path}: [{COUCHDB_SECTION}] {key}: missing (required; "
                f"or set {ENV_VARS[key]})"
            )
        return value

    url, url_username, url_password = _parse_url(required("url"))
    if url_password and not env_values.get("url") and _readable_by_others(config_path):
        log.warning("%s holds a password in its url and can be read by group or others", config_path)
    if url_username or url_password:
        log.warning(
            "credentials in the CouchDB url are discouraged; use username and password_file "
            "in [%s] or the ENQUEUE_COUCHDB_* environment variables", COUCHDB_SECTION,
        )

    database_value = required("database")
    if not _DATABASE_NAME.fullmatch(database_value.text):
        raise ConfigError(
            f"{database_value.where}: {database_value.text!r} is not a CouchDB database name "
            f"(a lowercase letter, then a-z, 0-9, _ $ ( ) + - /)"
        )

    password = _pick_password(config_path, file_values, env_values)
    username_value = pick("username")
    username = username_value.text if username_value else url_username
    if password is None:
        password = url_password
    if username and password is None:
        raise ConfigError(
            f"{config_path}: [{COUCHDB_SECTION}] username {username!r} has no password "
            f"(set password_file, or {ENV_VARS['password_file']} or {ENV_VARS['password']})"
        )
    if password is not None and not username:
        raise ConfigError(
            f"{config_path}: [{COUCHDB_SECTION}] a password is set but no username "
            f"(set username or {ENV_VARS['username']})"
        )
    if password is not None and url.startswith("http://") and urlsplit(url).hostname not in _LOOPBACK_HOSTS:
        log.warning("the CouchDB password is sent over plain http to %s; prefer https", url)

    ca_file: Optional[str] = None
    ca_value = pick("ca_file")
    if ca_value is not None:
        ca_file = resolve_path(ca_value)
        if not os.path.isfile(ca_file) or not os.access(ca_file, os.R_OK):
            raise ConfigError(f"{ca_value.where}: CA file {ca_file} does not exist or is not readable")
        if not url.startswith("https://"):
            log.warning("ca_file %s is only used for https URLs, and the url is %s", ca_file, url)

    timeout_value = file_values.get("request_timeout")
    request_timeout_s = parse_duration_value(timeout_value) if timeout_value else DEFAULT_REQUEST_TIMEOUT_S

    url_value = required("url")
    sources = {"url": url_value.where, "database": database_value.where}
    if username_value is not None:
        sources["username"] = username_value.where
    elif url_username:
        sources["username"] = url_value.where
    password_source = _password_source(file_values, env_values)
    if password_source is not None:
        sources["password"] = password_source
    elif url_password is not None:
        sources["password"] = f"the password in the url ({url_value.where})"
    connection = Connection(
        url=url,
        database=database_value.text,
        username=username or None,
        password=password,
        ca_file=ca_file,
        request_timeout_s=request_timeout_s,
        sources=sources,
    )
    hints.remember(connection)
    return connection, {key: value.text for key, value in enqueue_values.items()}


def _password_source(file_values: Mapping[str, RawValue], env_values: Mapping[str, RawValue]) -> Optional[str]:
    """Where the password was read, as ``_pick_password`` chose it: a password file by its path, or a setting."""
    for values in (env_values, file_values):
        if values.get("password_file"):
            return f"password file {resolve_path(values['password_file'])} ({values['password_file'].where})"
        if values.get("password"):
            return values["password"].where
    return None


def _pick_password(
    config_path: str, file_values: Mapping[str, RawValue], env_values: Mapping[str, RawValue]
) -> Optional[str]:
    """The password from the environment, else the file; never both forms from one source."""
    for values, source in ((env_values, "environment"), (file_values, "file")):
        inline, from_file = values.get("password"), values.get("password_file")
        if inline and from_file:
            if source == "environment":
                raise ConfigError(f"set {ENV_VARS['password']} or {ENV_VARS['password_file']}, not both")
            raise ConfigError(f"{config_path}: [{COUCHDB_SECTION}] set password or password_file, not both")
        if from_file:
            return _read_password_file(from_file)
        if inline:
            if source == "file" and _readable_by_others(config_path):
                log.warning(
                    "%s holds a password and can be read by group or others; chmod 600 it "
                    "or move the password to a password_file", config_path,
                )
            return inline.text
    return None
