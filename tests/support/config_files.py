"""Configuration files for the tests of the configuration modules: a good file, writers, the loader."""

from __future__ import annotations

import builtins
import os
import textwrap
from pathlib import Path
from typing import Optional

from enqueue.config import AgentSettings, load_agent_settings


SECRET = "S3cret-value-42"


GOOD = f"""
[couchdb]
url = http://127.0.0.1:5984/   ; a comment after the value
database = enqueue
username = site_alpha
password = {SECRET}

[enqueue]
heartbeat_delay = 1
heartbeat_stale = 5

[some_other_tool]
anything = goes
"""


COUCH = "[couchdb]\nurl = http://127.0.0.1:5984\ndatabase = enqueue\n"


def write(tmp_path: Path, text: str, name: str = "enqueue.ini", mode: int = 0o600) -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    path.chmod(mode)
    return str(path)


def settings(path: str, overrides: Optional[dict] = None, environ: Optional[dict] = None,
             site: str = "alpha", command: Optional[list] = None) -> AgentSettings:
    return load_agent_settings(path, site, command or ["true"], overrides or {}, environ or {})


def deny_reading(path: str, monkeypatch) -> None:
    """Make ``path`` unreadable: by its mode, and, for root (who reads everything), by refusing to open it."""
    os.chmod(path, 0o000)
    if os.geteuid() != 0:
        return
    real_open = builtins.open

    def refusing_open(file, *args, **kwargs):
        if os.path.abspath(str(file)) == os.path.abspath(path):
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", refusing_open)
