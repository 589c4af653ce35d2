"""Fixtures for every suite.

``couch_server``  (session)  the server the tests talk to, see tests.support.servers
``database``                 a fresh database on it (``name``, ``store``, ``config_file(dir)``), deleted afterwards
``config_file``              the path of an enqueue INI config for ``database``
``disk_server``              an embedded server on disk in ``tmp_path``, with ``restart()``

Every test must leave no process and no thread behind: a test that does fails.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Iterator, List

import psutil
import pytest

from tests.support import servers

_LEAK_GRACE_S = 3.0


@pytest.fixture(scope="session")
def couch_server() -> Iterator[servers.CouchServer]:
    server = servers.start_server()
    yield server
    server.stop()


@pytest.fixture
def database(couch_server: servers.CouchServer) -> Iterator[servers.Database]:
    db = servers.create_database(couch_server)
    yield db
    db.drop()


@pytest.fixture
def config_file(database: servers.Database, tmp_path: Path) -> Path:
    return database.config_file(tmp_path / "config")


@pytest.fixture
def disk_server(tmp_path: Path) -> Iterator[servers.CouchServer]:
    server = servers.start_disk_server(tmp_path / "couch-data")
    yield server
    server.stop()


def _live_children() -> List[psutil.Process]:
    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            if child.pid not in servers.SESSION_PIDS and child.status() != psutil.STATUS_ZOMBIE:
                found.append(child)
        except psutil.NoSuchProcess:
            pass
    return found


def _describe(process: psutil.Process) -> str:
    try:
        return f"{process.pid} {' '.join(process.cmdline())[:120]}"
    except psutil.Error:
        return str(process.pid)


@pytest.fixture(autouse=True)
def _no_leftover_processes_or_threads() -> Iterator[None]:
    """Fail a test that leaves a child process or a thread running.

    Autouse fixtures are set up first and torn down last, so this runs after
    the test's own fixtures have cleaned up.
    """
    threads_before = set(threading.enumerate())
    children_before = {p.pid for p in _live_children()}
    yield
    deadline = time.monotonic() + _LEAK_GRACE_S
    while True:
        threads = [t for t in threading.enumerate() if t not in threads_before and t.is_alive()]
        children = [p for p in _live_children() if p.pid not in children_before]
        if not threads and not children:
            return
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
    leaks = [f"thread {t.name}" for t in threads] + [f"process {_describe(p)}" for p in children]
    pytest.fail("the test left running: " + "; ".join(leaks), pytrace=False)
