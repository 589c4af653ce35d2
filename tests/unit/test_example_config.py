"""config/enqueue.example.ini: loads as it is, and names every key the configuration knows."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from enqueue import config, config_file, connection, timing

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "enqueue.example.ini"


def test_the_example_loads_and_its_values_are_the_defaults(tmp_path) -> None:
    path = tmp_path / "enqueue.ini"
    shutil.copy(EXAMPLE, path)
    settings = config.load_agent_settings(str(path), "alpha", ["true"], environ={})
    assert settings.connection.request_timeout_s == connection.DEFAULT_REQUEST_TIMEOUT_S
    assert settings.timing == timing.Timing()
    assert (settings.time_format, settings.leader_doc, settings.sites_doc, settings.repeat) == (
        config.DEFAULT_TIME_FORMAT, config.DEFAULT_LEADER_DOC, config.DEFAULT_SITES_DOC, False)


def test_the_example_documents_every_key() -> None:
    text = EXAMPLE.read_text()
    sections = re.split(r"^\[(\w+)\]$", text, flags=re.MULTILINE)
    keys = {name: set(re.findall(r"^#? ?(\w+) = ", body, flags=re.MULTILINE))
            for name, body in zip(sections[1::2], sections[2::2])}
    assert keys[config_file.COUCHDB_SECTION] == set(config_file.COUCHDB_KEYS)
    assert keys[config_file.ENQUEUE_SECTION] == set(config_file.ENQUEUE_KEYS)
