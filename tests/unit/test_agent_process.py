"""The driver's start-up: the supervisor comes up while the agent registers, and its errors still count."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Callable

import pytest

from enqueue import agent_process
from enqueue.config import load_agent_settings
from enqueue.errors import SiteInUse
from enqueue.events import Event
from enqueue.memory_store import MemoryStore
from enqueue.runner import RunnerError

#: A bound on waiting for the other thread, so that a broken order fails instead of hanging.
_BOUND_S = 10.0


class OpeningRunner:
    """A runner whose ``open`` says it began, then fails with ``error`` (it never has to run a command)."""

    def __init__(self, error: BaseException) -> None:
        self.began = threading.Event()
        self.error = error
        self.closed = False

    def open(self) -> None:
        self.began.set()
        raise self.error

    def start(self, turn: int, argv: list[str], env: dict[str, str], deadline: float) -> None:
        raise AssertionError("no command is started here")

    def extend(self, deadline: float) -> None:
        pass

    def stop(self, reason: str) -> None:
        pass

    def close(self) -> None:
        self.closed = True


class WaitingForTheRunnerStore(MemoryStore):
    """A memory store whose first heartbeat write waits until the runner has begun to open."""

    def __init__(self, runner: OpeningRunner, database: str = "enqueue") -> None:
        super().__init__(database)
        self.runner = runner
        self.waited: bool | None = None

    def put(self, doc: dict) -> str:
        if self.waited is None and str(doc.get("_id", "")).startswith("enqueue_heartbeat:"):
            self.waited = self.runner.began.wait(_BOUND_S)
        return super().put(doc)


def settings(tmp_path: Path):
    path = tmp_path / "enqueue.ini"
    path.write_text("[couchdb]\nurl = http://127.0.0.1:5984\ndatabase = enqueue\n")
    return load_agent_settings(str(path), "alpha", ["true"], {}, {})


def maker(runner: OpeningRunner) -> Callable[[Callable[[Event], None]], OpeningRunner]:
    return lambda put: runner


def test_the_supervisor_starts_while_the_agent_registers_and_its_failure_is_raised(tmp_path) -> None:
    runner = OpeningRunner(RunnerError("runner: the supervisor did not start (test)"))
    store = WaitingForTheRunnerStore(runner)
    with pytest.raises(RunnerError, match="did not start"):
        agent_process.run(settings(tmp_path), store, catch_signals=False, make_runner=maker(runner))
    assert store.waited is True, "the runner began to open before the first heartbeat was written"
    assert runner.closed


def test_an_error_of_the_start_itself_wins_over_the_runners(tmp_path) -> None:
    runner = OpeningRunner(RunnerError("runner: the supervisor did not start (test)"))

    class TwinStore(MemoryStore):
        def get_many(self, doc_ids: list[str]) -> dict:
            raise SiteInUse("site alpha has a live agent on this host (test)")

    with pytest.raises(SiteInUse):
        agent_process.run(settings(tmp_path), TwinStore("enqueue"), catch_signals=False, make_runner=maker(runner))
    assert runner.closed
