"""Running admin commands in-process, and writing the shared documents the way agents do.

``Cli`` calls ``enqueue.cli.main`` and returns the exit code with what went
to stdout and stderr. The ``put_*`` helpers write documents in the shapes
``enqueue.documents`` renders, with times relative to now in the default
time format, so a test can stage any situation without running an agent.
``RacingStore`` wraps a store so that a test can slip another writer's change
in between a command's read and its write.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import pytest

from enqueue import cli, steering
from enqueue import documents as docs
from enqueue.config import DEFAULT_TIME_FORMAT
from tests.support.log_state import logging_restored

LEADER = "enqueue_leader"
SITES = "enqueue_sites"


@dataclass
class Result:
    code: int
    out: str
    err: str


class Cli:
    """``enqueue`` in this process, against one configuration file."""

    def __init__(self, capsys: Any, config: Path) -> None:
        self.capsys = capsys
        self.config = str(config)

    def __call__(self, command: str, *args: Any) -> Result:
        self.capsys.readouterr()
        code = cli.main([command, self.config, *[str(a) for a in args]])
        captured = self.capsys.readouterr()
        return Result(code, captured.out, captured.err)

    def bare(self, *args: Any) -> Result:
        """``enqueue ARGS...`` without the configuration file put in."""
        self.capsys.readouterr()
        code = cli.main([str(a) for a in args])
        captured = self.capsys.readouterr()
        return Result(code, captured.out, captured.err)

    def help_text(self, command: str) -> str:
        """``enqueue COMMAND --help``, which must exit 0, with its white space folded to single spaces."""
        result = self.bare(command, "--help")
        assert result.code == 0, result.err
        return " ".join(result.out.split())


@pytest.fixture
def enqueue_cli(capsys: Any, config_file: Path) -> Iterator[Cli]:
    """Run commands against the test database; leaves logging as it found it."""
    with logging_restored():
        yield Cli(capsys, config_file)


def time_text(seconds_ago: float = 0.0) -> str:
    """This host's UTC time ``seconds_ago`` in the default document format."""
    moment = _dt.datetime.now(_dt.timezone.utc) - _dt.timedelta(seconds=seconds_ago)
    return moment.strftime(DEFAULT_TIME_FORMAT)


def put_leader(store: Any, **fields: Any) -> dict:
    """Write (or overwrite) the leader doc: the first-created one with ``fields`` replaced."""
    doc = replace(docs.new_leader_doc(LEADER), **fields)
    body = docs.render_leader(doc)
    current = store.get(LEADER)
    if current is not None:
        body["_rev"] = current["_rev"]
    store.put(body)
    return body


def put_sites(store: Any, entries: dict[str, dict]) -> dict:
    """Write the sites doc with these entries (a heartbeat_doc is filled in when missing)."""
    full = {name: {"heartbeat_doc": docs.heartbeat_id(name), "drained": False, "added_at": time_text(3600), **e}
            for name, e in entries.items()}
    body = docs.render_sites(docs.new_sites_doc(SITES), full)
    current = store.get(SITES)
    if current is not None:
        body["_rev"] = current["_rev"]
    store.put(body)
    return body


def put_heartbeat(store: Any, site: str, *, seconds_ago: float = 1.0, state: str = docs.WAITING,
                  extra: Optional[dict] = None, **fields: Any) -> dict:
    """Write a site's heartbeat, beaten ``seconds_ago`` by its own (our) clock."""
    hb = docs.Heartbeat(site=site, state=state, host=f"{site}-host", pid=100, instance="i", beat=7,
                        time=time_text(seconds_ago), **fields)
    body = docs.render_heartbeat(hb, extra or {})
    current = store.get(docs.heartbeat_id(site))
    if current is not None:
        body["_rev"] = current["_rev"]
    store.put(body)
    return body


def put_record(store: Any, turn: int, site: str, *, how: str = "exited", exit_code: Optional[int] = 0,
               duration_s: float = 12.0, note: Optional[str] = None) -> dict:
    """Write the turn record of a finished turn."""
    rec = docs.TurnRecord(turn=turn, site=site, how=how, exit_code=exit_code, host=f"{site}-host", leader="alpha",
                          started_at=time_text(600 - turn), ended_at=time_text(590 - turn), duration_s=duration_s,
                          note=note)
    body = docs.render_turn_record(rec)
    store.put(body)
    return body


class RacingStore:
    """A store whose next write (``put`` or ``delete``) to ``doc_id`` is preceded by ``meanwhile()``.

    That is exactly the window a compare-and-swap exists for: the command has
    read the document, somebody else writes it, then the command writes.
    ``writes`` counts the command's write attempts to ``doc_id``.
    """

    def __init__(self, store: Any, doc_id: str, meanwhile: Callable[[], None], times: int = 1) -> None:
        self._store = store
        self._doc_id = doc_id
        self._meanwhile = meanwhile
        self._left = times
        self.writes = 0

    def _before_write(self, doc: dict) -> None:
        if doc.get("_id") == self._doc_id:
            self.writes += 1
            if self._left > 0:
                self._left -= 1
                self._meanwhile()

    def put(self, doc: dict) -> str:
        self._before_write(doc)
        return self._store.put(doc)

    def delete(self, doc: dict) -> None:
        self._before_write(doc)
        self._store.delete(doc)

    def close(self) -> None:
        """The test's own store outlives the command."""

    def __enter__(self) -> "RacingStore":
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def race(monkeypatch: Any, store: Any, doc_id: str, meanwhile: Callable[[], None], times: int = 1) -> RacingStore:
    """Make admin commands use a ``RacingStore`` over ``store`` (the test database's own)."""
    racing = RacingStore(store, doc_id, meanwhile, times)
    monkeypatch.setattr(steering, "open_store", lambda settings: racing)
    return racing
