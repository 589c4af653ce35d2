"""The agent replaced by a fake module, so command-line tests need no server.

``agent`` (a fixture) puts a module named ``enqueue.agent_process`` in
``sys.modules`` whose ``run_agent`` records the settings it is given and
returns or raises what ``result`` says; ``config`` is a configuration file
naming a server nobody will reach.
"""

from __future__ import annotations

import sys
import types
from typing import Callable, Optional

import pytest

from enqueue.config import AgentSettings

CONFIG = """\
[couchdb]
url = http://127.0.0.1:5984
database = enqueue
"""


class FakeAgent:
    """Stands in for ``enqueue.agent_process``: records the settings, returns or raises what it is told."""

    def __init__(self) -> None:
        self.settings: Optional[AgentSettings] = None
        self.result: Callable[[], int] = lambda: 0

    def run_agent(self, settings: AgentSettings) -> int:
        self.settings = settings
        return self.result()


@pytest.fixture
def agent(monkeypatch: pytest.MonkeyPatch) -> FakeAgent:
    fake = FakeAgent()
    module = types.ModuleType("enqueue.agent_process")
    module.run_agent = fake.run_agent  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "enqueue.agent_process", module)
    return fake


@pytest.fixture
def config(tmp_path) -> str:
    path = tmp_path / "enqueue.ini"
    path.write_text(CONFIG)
    path.chmod(0o600)
    return str(path)
