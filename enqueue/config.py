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

Invariants: every problem is a ``ConfigError`` with one line naming where the
value came from (file, section and key; environment variable; flag) and what
is wrong; no message contains a password, and every password is registered
with ``enqueue.logs.register_secret`` as soon as it is read.
"""

from __future__ import annotations

import configparser
import datetime as _dt
import logging
import math
import os
import re
import stat
from dataclasses import dataclass, field
from typing import Any, Mapping, NamedTuple, Optional
from urllib.parse import unquote, urlsplit

from enqueue.durations import format_duration, parse_duration
from enqueue.errors import ConfigError
from enqueue.logs import register_secret
from enqueue.site_names import validate_site_name

__all__ = [
    "Connection",
    "Timing",
    "AgentSettings",
    "COUCHDB_SECTION",
    "ENQUEUE_SECTION",
    "COUCHDB_KEYS",
    "ENQUEUE_KEYS",
    "ENV_VARS",
    "OVERRIDE_KEYS",
    "DEFAULT_TIME_FORMAT",
    "DEFAULT_LEADER_DOC",
    "DEFAULT_SITES_DOC",
    "DEFAULT_REQUEST_TIMEOUT_S",
    "DEFAULT_KILL_GRACE_S",
    "load_connection",
    "load_agent_settings",
]

log = logging.getLogger(__name__)

COUCHDB_SECTION = "couchdb"
ENQUEUE_SECTION = "enqueue"
COUCHDB_KEYS = ("url", "database", "username", "password", "password_file", "ca_file", "request_timeout")
ENQUEUE_KEYS = (
    "heartbeat_delay", "heartbeat_stale", "conflict_delay", "kill_grace",
    "repeat", "time_format", "leader_doc", "sites_doc", "allow_cluster",
)
#: Environment variable for each ``[couchdb]`` key it can override.
ENV_VARS = {
    "url": "ENQUEUE_COUCHDB_URL",
    "database": "ENQUEUE_COUCHDB_DATABASE",
    "username": "ENQUEUE_COUCHDB_USERNAME",
    "password": "ENQUEUE_COUCHDB_PASSWORD",
    "password_file": "ENQUEUE_COUCHDB_PASSWORD_FILE",
    "ca_file": "ENQUEUE_COUCHDB_CA_FILE",
}
#: Keys ``load_agent_settings`` accepts in ``overrides`` (None means "not given").
OVERRIDE_KEYS = (
    "heartbeat_delay_s", "heartbeat_stale_s", "conflict_delay_s", "kill_grace_s",
    "repeat", "time_format", "leader_doc", "sites_doc", "wall_clock_offset_s", "allow_cluster",
)

DEFAULT_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
DEFAULT_LEADER_DOC = "enqueue_leader"
DEFAULT_SITES_DOC = "enqueue_sites"
DEFAULT_REQUEST_TIMEOUT_S = 10.0
DEFAULT_KILL_GRACE_S = 30.0

# CouchDB's own rule for database names.
_DATABASE_NAME = re.compile(r"[a-z][a-z0-9_$()+/-]*")
_LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")


# --------------------------------------------------------------------------- settings


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


@dataclass(frozen=True)
class Timing:
    """The protocol's durations, in seconds, checked against each other on construction.

    Invariants (``ConfigError`` otherwise):

    * every duration is finite, ``kill_grace_s >= 0`` and the others ``> 0``;
    * ``heartbeat_stale_s > 2 * heartbeat_delay_s``: one late heartbeat must
      not make a site stale, and a running site must be able to fence itself
      (``heartbeat_stale - heartbeat_delay`` after its last acknowledged beat)
      while at least one more beat could still have landed;
    * ``kill_grace_s <= (heartbeat_stale_s - 2 * heartbeat_delay_s) / 2``: a
      fenced command gets SIGTERM ``heartbeat_stale - heartbeat_delay -
      kill_grace`` after its last acknowledged beat and SIGKILL the grace
      later, one heartbeat before the leader may give the turn away, while
      the SIGTERM moment stays more than one heartbeat, by half the slack,
      after that beat, so the next on-time beat has time for its round trip.
    """

    heartbeat_delay_s: float = 600.0
    heartbeat_stale_s: float = 1800.0
    conflict_delay_s: float = 60.0
    kill_grace_s: float = DEFAULT_KILL_GRACE_S

    def __post_init__(self) -> None:
        for name in ("heartbeat_delay_s", "heartbeat_stale_s", "conflict_delay_s", "kill_grace_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ConfigError(f"{name[:-2]} must be a finite number of seconds, not {value!r}")
            if value < 0 or (value == 0 and name != "kill_grace_s"):
                raise ConfigError(f"{name[:-2]} must be more than 0" + (" or 0" if name == "kill_grace_s" else ""))
        delay, stale, grace = self.heartbeat_delay_s, self.heartbeat_stale_s, self.kill_grace_s
        if not stale > 2 * delay:
            raise ConfigError(
                f"heartbeat_stale ({format_duration(stale)}) must be more than 2 x heartbeat_delay "
                f"(2 x {format_duration(delay)}): one late heartbeat must neither make a site stale "
                f"nor make a running site stop its command"
            )
        if grace > max_kill_grace_s(delay, stale):
            raise ConfigError(
                f"kill_grace ({format_duration(grace)}) must be at most (heartbeat_stale - 2 x heartbeat_delay) / 2 "
                f"({format_duration(max_kill_grace_s(delay, stale))}): a fenced command must be dead a heartbeat "
                f"before the leader may give its turn away, and an on-time heartbeat must have time to be "
                f"acknowledged before the command is told to stop"
            )


def max_kill_grace_s(delay_s: float, stale_s: float) -> float:
    """The longest kill grace the timing allows (see ``Timing``); 0 when it allows none."""
    return max(0.0, (stale_s - 2 * delay_s) / 2)


@dataclass(frozen=True)
class AgentSettings:
    """Everything ``enqueue run`` needs; built by ``load_agent_settings``.

    Invariants: ``site`` is a valid site name (``enqueue.site_names``);
    ``command`` is not empty; ``leader_doc`` and ``sites_doc`` differ.
    ``wall_clock_offset_s`` shifts only the wall clock written into
    documents, to test clock skew. ``allow_cluster`` lets the agent run on a
    database that keeps more than one copy (n > 1), where a 409 is no
    linearizable compare-and-swap (see docs/GUARANTEES.md); off by default.
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

    def __post_init__(self) -> None:
        validate_site_name(self.site)
        if not self.command:
            raise ConfigError("no command given to run")
        if self.leader_doc == self.sites_doc:
            raise ConfigError(f"leader_doc and sites_doc must differ (both are {self.leader_doc!r})")


# --------------------------------------------------------------------------- reading


class _Value(NamedTuple):
    """A raw setting and where it came from, for error messages and relative paths."""

    text: str
    where: str  # "cfg.ini: [couchdb] url", "environment variable ENQUEUE_COUCHDB_URL", "--time-format"
    base_dir: Optional[str]  # directory relative paths are resolved against; None: the working directory


def _read_file(path: str) -> configparser.ConfigParser:
    """Read and parse the INI file; every failure is a one-line ``ConfigError``."""
    try:
        with open(path, encoding="utf-8") as handle:
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


def _section_values(
    parser: configparser.ConfigParser, path: str, section: str, known: tuple[str, ...]
) -> dict[str, _Value]:
    """The non-empty values of ``section``; an unknown key is an error."""
    if not parser.has_section(section):
        return {}
    base_dir = os.path.dirname(os.path.abspath(path))
    values: dict[str, _Value] = {}
    for key, text in parser.items(section, raw=True):
        if key not in known:
            raise ConfigError(f"{path}: [{section}] {key}: unknown key; known keys: {', '.join(known)}")
        if key == "password":
            register_secret(text.strip())
        if text.strip():
            values[key] = _Value(text.strip(), f"{path}: [{section}] {key}", base_dir)
    return values


def _env_value(environ: Mapping[str, str], key: str) -> Optional[_Value]:
    name = ENV_VARS[key]
    text = environ.get(name, "")
    if key == "password":
        register_secret(text)
    else:
        text = text.strip()
    return _Value(text, f"environment variable {name}", None) if text else None


def _resolve_path(value: _Value) -> str:
    path = os.path.expanduser(value.text)
    if value.base_dir and not os.path.isabs(path):
        path = os.path.join(value.base_dir, path)
    return path


def _readable_by_others(path: str) -> bool:
    try:
        return bool(os.stat(path).st_mode & (stat.S_IRGRP | stat.S_IROTH))
    except OSError:
        return False


def _read_password_file(value: _Value) -> str:
    path = _resolve_path(value)
    try:
        with open(path, encoding="utf-8") as handle:
            password = handle.read()
    except FileNotFoundError:
        raise ConfigError(f"{value.where}: password file {path} does not exist") from None
    except PermissionError:
        raise ConfigError(f"{value.where}: password file {path} is not readable (permission denied)") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{value.where}: password file {path} is not UTF-8 text") from None
    except OSError as exc:
        raise ConfigError(f"{value.where}: cannot read password file {path}: {exc.strerror or exc}") from None
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


def _parse_url(value: _Value) -> tuple[str, Optional[str], Optional[str]]:
    """Split a server URL into (url without credentials, username, password)."""
    try:
        parts = urlsplit(value.text)
        parts.port  # raises ValueError for a bad port
    except ValueError as exc:
        raise ConfigError(f"{value.where}: not a valid URL ({exc})") from None
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    register_secret(password)
    register_secret(parts.password)
    hostport = parts.netloc.rpartition("@")[2]
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{value.where}: expected http://HOST:PORT or https://HOST:PORT")
    if parts.query or parts.fragment:
        raise ConfigError(f"{value.where}: the URL must not have a query or fragment")
    url = f"{parts.scheme}://{hostport}{parts.path.rstrip('/')}"
    return url, username, password


def _parse_duration(value: _Value, *, allow_zero: bool = False) -> float:
    try:
        seconds = parse_duration(value.text)
    except ValueError as exc:
        raise ConfigError(f"{value.where}: {exc}") from None
    if seconds == 0 and not allow_zero:
        raise ConfigError(f"{value.where}: must be more than 0")
    return seconds


def _parse_bool(value: _Value) -> bool:
    states = configparser.ConfigParser.BOOLEAN_STATES
    try:
        return states[value.text.lower()]
    except KeyError:
        raise ConfigError(f"{value.where}: {value.text!r} is not true/false, yes/no, on/off or 1/0") from None


def _check_doc_id(text: str, where: str) -> str:
    if not text:
        raise ConfigError(f"{where}: must not be empty")
    if text.startswith("_"):
        raise ConfigError(f"{where}: {text!r} starts with '_', which CouchDB reserves")
    return text


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


def load_connection(
    config_path: str, environ: Mapping[str, str] = os.environ
) -> tuple[Connection, dict[str, str]]:
    """Read ``[couchdb]`` (with ``ENQUEUE_COUCHDB_*`` overrides) and the raw ``[enqueue]`` values.

    Returns the connection and ``{key: text}`` of the non-empty ``[enqueue]``
    keys, unparsed but checked to be known keys. Raises ``ConfigError``.
    """
    parser = _read_file(config_path)
    file_values = _section_values(parser, config_path, COUCHDB_SECTION, COUCHDB_KEYS)
    enqueue_values = _section_values(parser, config_path, ENQUEUE_SECTION, ENQUEUE_KEYS)

    env_values = {key: v for key in ENV_VARS if (v := _env_value(environ, key)) is not None}

    def pick(key: str) -> Optional[_Value]:
        return env_values.get(key) or file_values.get(key)

    def required(key: str) -> _Value:
        value = pick(key)
        if value is None:
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
        ca_file = _resolve_path(ca_value)
        if not os.path.isfile(ca_file) or not os.access(ca_file, os.R_OK):
            raise ConfigError(f"{ca_value.where}: CA file {ca_file} does not exist or is not readable")
        if not url.startswith("https://"):
            log.warning("ca_file %s is only used for https URLs, and the url is %s", ca_file, url)

    timeout_value = file_values.get("request_timeout")
    request_timeout_s = _parse_duration(timeout_value) if timeout_value else DEFAULT_REQUEST_TIMEOUT_S

    connection = Connection(
        url=url,
        database=database_value.text,
        username=username or None,
        password=password,
        ca_file=ca_file,
        request_timeout_s=request_timeout_s,
    )
    return connection, {key: value.text for key, value in enqueue_values.items()}


def _pick_password(
    config_path: str, file_values: Mapping[str, _Value], env_values: Mapping[str, _Value]
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
    ``Timing`` rule so that short test heartbeats need no extra setting.
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
    file_values = {key: _Value(text, f"{config_path}: [{ENQUEUE_SECTION}] {key}", None) for key, text in raw.items()}

    def flag_name(key: str) -> str:
        return "--" + (key[:-2] if key.endswith("_s") else key).replace("_", "-")

    def duration(key: str, default: float) -> tuple[float, str]:
        """The seconds for ``key`` and where they came from."""
        allow_zero = key == "kill_grace"
        given = overrides.get(key + "_s")
        if isinstance(given, str):
            return _parse_duration(_Value(given, flag_name(key), None), allow_zero=allow_zero), flag_name(key)
        if given is not None:
            return float(given), flag_name(key)
        if key in file_values:
            return _parse_duration(file_values[key], allow_zero=allow_zero), f"[{ENQUEUE_SECTION}] {key}"
        return default, "default"

    def text(key: str, default: str) -> _Value:
        given = overrides.get(key)
        if given is not None:
            return _Value(str(given), flag_name(key), None)
        return file_values.get(key) or _Value(default, f"default {key}", None)

    delay, delay_from = duration("heartbeat_delay", Timing.heartbeat_delay_s)
    stale, stale_from = duration("heartbeat_stale", Timing.heartbeat_stale_s)
    conflict, _ = duration("conflict_delay", Timing.conflict_delay_s)
    grace, grace_from = duration("kill_grace", DEFAULT_KILL_GRACE_S)
    if grace_from == "default":
        grace = min(DEFAULT_KILL_GRACE_S, max_kill_grace_s(delay, stale))
    try:
        timing = Timing(heartbeat_delay_s=delay, heartbeat_stale_s=stale, conflict_delay_s=conflict, kill_grace_s=grace)
    except ConfigError as exc:
        sources = f"heartbeat_delay: {delay_from}, heartbeat_stale: {stale_from}, kill_grace: {grace_from}"
        raise ConfigError(f"{config_path}: {exc} ({sources})") from None

    if overrides.get("repeat") is not None:
        repeat = bool(overrides["repeat"])
    elif "repeat" in file_values:
        repeat = _parse_bool(file_values["repeat"])
    else:
        repeat = False

    if overrides.get("allow_cluster") is not None:
        allow_cluster = bool(overrides["allow_cluster"])
    elif "allow_cluster" in file_values:
        allow_cluster = _parse_bool(file_values["allow_cluster"])
    else:
        allow_cluster = False

    time_format_value = text("time_format", DEFAULT_TIME_FORMAT)
    time_format = _check_time_format(time_format_value.text, time_format_value.where)
    leader_value = text("leader_doc", DEFAULT_LEADER_DOC)
    sites_value = text("sites_doc", DEFAULT_SITES_DOC)
    leader_doc = _check_doc_id(leader_value.text, leader_value.where)
    sites_doc = _check_doc_id(sites_value.text, sites_value.where)
    if leader_doc == sites_doc:
        raise ConfigError(f"{leader_value.where} and {sites_value.where}: both are {leader_doc!r}; they must differ")

    offset = overrides.get("wall_clock_offset_s")
    offset_s = float(offset) if offset is not None else 0.0
    if not math.isfinite(offset_s):
        raise ConfigError("--wall-clock-offset: must be a finite number of seconds")

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
    )
