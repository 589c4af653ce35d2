"""Logging: line format, UTC times, JSON, and redaction of secrets everywhere."""

from __future__ import annotations

import argparse
import json
import logging
import re

import pytest

from enqueue import logs
from enqueue.errors import ConfigError
from tests.support.log_state import restore_logging  # noqa: F401  (fixture)

pytestmark = pytest.mark.usefixtures("restore_logging")

SECRET = "hunter2-Zq!"
TEXT_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (\S+) (\w+) (.*)$")


def _log_to(tmp_path, fmt: str = "text", site: str | None = "alpha"):
    path = tmp_path / "enqueue.log"
    logs.setup_logging("debug", str(path), fmt, site)
    return path


def test_text_line_format(tmp_path) -> None:
    path = _log_to(tmp_path)
    logging.getLogger("enqueue.test").info("hello %s", "world")
    line = path.read_text().strip()
    match = TEXT_LINE.match(line)
    assert match, line
    assert match.groups() == ("alpha", "INFO", "hello world")


def test_site_dash_when_unknown(tmp_path) -> None:
    path = _log_to(tmp_path, site=None)
    logging.getLogger("enqueue.test").warning("x")
    assert TEXT_LINE.match(path.read_text().strip()).group(1) == "-"


def test_time_is_utc(tmp_path) -> None:
    path = _log_to(tmp_path)
    record = logging.LogRecord("enqueue.test", logging.INFO, __file__, 1, "at epoch", None, None)
    record.created = 0.0
    logging.getLogger("enqueue.test").handle(record)
    assert path.read_text().startswith("1970-01-01T00:00:00.000Z alpha INFO at epoch")


def test_json_format(tmp_path) -> None:
    path = _log_to(tmp_path, fmt="json")
    logging.getLogger("enqueue.test").info("granted %d", 7, extra={"turn": 7, "to_site": "beta"})
    entry = json.loads(path.read_text())
    assert entry["site"] == "alpha"
    assert entry["level"] == "INFO"
    assert entry["message"] == "granted 7"
    assert entry["turn"] == 7 and entry["to_site"] == "beta"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", entry["time"])


def test_redacts_registered_secret_in_message_and_args(tmp_path) -> None:
    path = _log_to(tmp_path)
    logs.register_secret(SECRET)
    log = logging.getLogger("enqueue.test")
    log.info("password is " + SECRET)
    log.info("password is %s", SECRET)
    log.info("extra", extra={"detail": {"pw": SECRET}})
    text = path.read_text()
    assert SECRET not in text
    assert text.count(logs.REDACTED) == 3


def test_redacts_url_encoded_secret(tmp_path) -> None:
    path = _log_to(tmp_path)
    logs.register_secret("p@ss word")
    logging.getLogger("enqueue.test").info("GET http://127.0.0.1:5984/?x=p%40ss%20word")
    assert "p%40ss%20word" not in path.read_text()


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_redacts_exception_and_traceback(tmp_path, fmt: str) -> None:
    path = _log_to(tmp_path, fmt=fmt)
    logs.register_secret(SECRET)

    def failing(password: str) -> None:
        raise RuntimeError(f"login failed with {password}")

    try:
        failing(SECRET)
    except RuntimeError:
        logging.getLogger("enqueue.test").exception("request failed")
    text = path.read_text()
    assert "RuntimeError: login failed with ***" in (text if fmt == "text" else json.loads(text)["exception"])
    assert "Traceback" in text
    assert SECRET not in text


def test_redaction_reaches_other_handlers_after_ours(tmp_path) -> None:
    """The filter rewrites the record itself, so a handler added later sees no secret either."""
    _log_to(tmp_path)
    logs.register_secret(SECRET)
    seen: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record.getMessage())

    collector = Collect()
    logging.getLogger().addHandler(collector)
    logging.getLogger("enqueue.test").info("x %s", SECRET)
    assert seen == ["x ***"]


@pytest.mark.parametrize(
    "text, leaked",
    [
        ("Authorization: Basic YWxwaGE6c2VjcmV0", "YWxwaGE6c2VjcmV0"),
        ("headers={'Authorization': 'Bearer abc.def.ghi'}", "abc.def.ghi"),
        ("authorization=xyz123", "xyz123"),
        ("Cookie: AuthSession=YWxwaGE6NjU0MzIx; Path=/", "YWxwaGE6NjU0MzIx"),
        ("connecting to http://alpha:pa55word@db.example:5984/enqueue", "pa55word"),
        ("https://alpha:p%40ss@db.example", "p%40ss"),
    ],
)
def test_redact_patterns(text: str, leaked: str) -> None:
    result = logs.redact(text)
    assert leaked not in result
    assert logs.REDACTED in result


def test_redact_keeps_harmless_text() -> None:
    assert logs.redact("GET http://db.example:5984/enqueue 200") == "GET http://db.example:5984/enqueue 200"
    assert logs.redact("http://alpha@db.example") == "http://alpha@db.example"


def test_empty_secret_is_ignored() -> None:
    logs.register_secret("")
    logs.register_secret(None)
    assert logs.redact("nothing to hide") == "nothing to hide"


def test_setup_twice_replaces_handler(tmp_path) -> None:
    first = tmp_path / "a.log"
    second = tmp_path / "b.log"
    logs.setup_logging("info", str(first))
    logs.setup_logging("info", str(second))
    logging.getLogger("enqueue.test").info("once")
    assert first.read_text() == ""
    assert "once" in second.read_text()


def test_level_filters(tmp_path) -> None:
    path = tmp_path / "l.log"
    logs.setup_logging("warning", str(path))
    logging.getLogger("enqueue.test").info("quiet")
    logging.getLogger("enqueue.test").warning("loud")
    assert "quiet" not in path.read_text() and "loud" in path.read_text()


@pytest.mark.parametrize("kwargs", [{"level": "chatty"}, {"fmt": "xml"}, {"log_file": "missing-dir/x.log"}])
def test_bad_setup_is_config_error(kwargs, tmp_path) -> None:
    if "log_file" in kwargs:
        kwargs = {"log_file": str(tmp_path / kwargs["log_file"])}
    with pytest.raises(ConfigError):
        logs.setup_logging(**kwargs)


def test_add_logging_arguments() -> None:
    parser = argparse.ArgumentParser()
    logs.add_logging_arguments(parser)
    args = parser.parse_args([])
    assert (args.log_level, args.log_file, args.log_format) == ("info", None, "text")
    args = parser.parse_args(["--log-level", "debug", "--log-file", "x.log", "--log-format", "json"])
    assert (args.log_level, args.log_file, args.log_format) == ("debug", "x.log", "json")
