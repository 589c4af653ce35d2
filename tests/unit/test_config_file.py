"""Reading the INI file: what is refused before parsing, how parsing fails, and no secret in a message."""

from __future__ import annotations

import os

import pytest

from enqueue.errors import ConfigError
from tests.support.config_files import COUCH, GOOD, SECRET, deny_reading, settings, write
from tests.support.log_state import restore_logging  # noqa: F401  (fixture)

pytestmark = pytest.mark.usefixtures("restore_logging")


def test_default_section_and_foreign_sections_are_ignored(tmp_path) -> None:
    path = write(tmp_path, "[DEFAULT]\ncolour = blue\n" + GOOD)
    assert settings(path).connection.database == "enqueue"


def test_password_never_in_syntax_error(tmp_path) -> None:
    path = write(tmp_path, COUCH + f"password {SECRET}\n")
    with pytest.raises(ConfigError) as info:
        settings(path)
    assert SECRET not in str(info.value)


def test_password_never_in_unknown_key_error(tmp_path) -> None:
    path = write(tmp_path, COUCH + f"passwd = {SECRET}\n")
    with pytest.raises(ConfigError) as info:
        settings(path)
    assert SECRET not in str(info.value) and "passwd" in str(info.value)


def test_missing_file(tmp_path) -> None:
    path = str(tmp_path / "nothere.ini")
    with pytest.raises(ConfigError, match="nothere.ini: no such configuration file"):
        settings(path)


def test_directory_is_not_a_file(tmp_path) -> None:
    with pytest.raises(ConfigError, match="is a directory"):
        settings(str(tmp_path))


def test_unreadable_file(tmp_path, monkeypatch) -> None:
    path = write(tmp_path, GOOD)
    deny_reading(path, monkeypatch)
    with pytest.raises(ConfigError, match="cannot read the configuration file"):
        settings(path)


def test_not_utf8(tmp_path) -> None:
    path = tmp_path / "bad.ini"
    path.write_bytes(b"[couchdb]\nurl = \xff\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        settings(str(path))


def test_a_relative_path_is_shown_absolute(tmp_path, monkeypatch) -> None:
    (tmp_path / "etc").mkdir()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as info:
        settings("etc/alpha.ini")
    assert str(info.value) == f"{tmp_path}/etc/alpha.ini: no such configuration file"
    write(tmp_path / "etc", "[couchdb]\nurl = http://127.0.0.1:5984\n", name="alpha.ini")
    with pytest.raises(ConfigError) as info:
        settings("etc/alpha.ini")
    assert str(info.value).startswith(f"{tmp_path}/etc/alpha.ini: [couchdb] database: missing")


def test_a_utf8_byte_order_mark_is_accepted(tmp_path) -> None:
    path = tmp_path / "bom.ini"
    path.write_bytes(b"\xef\xbb\xbf[couchdb]\nurl = http://127.0.0.1:5984\ndatabase = enqueue\n")
    assert settings(str(path)).connection.database == "enqueue"


def test_a_configuration_file_that_is_a_fifo_is_refused_at_once(tmp_path) -> None:
    fifo = tmp_path / "enqueue.ini"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError, match="is a FIFO, not a configuration file"):
        settings(str(fifo))
