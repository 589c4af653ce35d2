"""The CouchDB server the tests talk to, and fresh databases on it.

The server is chosen once per test session, first match wins:

1. ``ENQUEUE_TEST_COUCHDB_URL``: a real CouchDB (credentials may be in the URL);
2. a CouchDB 3 container, when a Docker engine answers (``ENQUEUE_TEST_DOCKER=0``
   skips this);
3. the embedded pouchdb-server (``enqueue.devserver``), in memory.
"""

from __future__ import annotations

import os
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from contextlib import contextmanager
from typing import Callable, Iterator, Optional, Set

from enqueue import errors
from enqueue.couchdb_store import CouchStore
from enqueue.devserver import DevServer
from enqueue.urls import split_url

ENV_URL = "ENQUEUE_TEST_COUCHDB_URL"
ENV_DOCKER = "ENQUEUE_TEST_DOCKER"
COUCHDB_IMAGE = "couchdb:3.4"
DATABASE_PREFIX = "enqueue_test_"

#: Process ids of servers that live for the whole session (not leaks).
SESSION_PIDS: Set[int] = set()


@dataclass
class CouchServer:
    """A server for tests: ``url`` has no credentials; ``username``/``password``
    are an admin's (None when the server needs none); ``kind`` is "env",
    "container" or "embedded"."""

    url: str
    username: Optional[str]
    password: Optional[str] = field(repr=False)
    kind: str
    devserver: Optional[DevServer] = None
    _stop: Optional[Callable[[], None]] = field(default=None, repr=False)

    def store(self, database: str, **options: object) -> CouchStore:
        """A Store on ``database`` with this server's credentials."""
        return CouchStore(self.url, database, username=self.username, password=self.password, **options)  # type: ignore[arg-type]

    def restart(self) -> None:
        """Restart the server keeping its data (only an on-disk embedded server can)."""
        if self.devserver is None or self.devserver.data_dir is None:
            raise RuntimeError(f"a {self.kind} test server cannot be restarted; use the disk_server fixture")
        self.devserver.restart()

    def stop(self) -> None:
        """Stop the server if the tests started it."""
        stop, self._stop = self._stop, None
        if stop is not None:
            stop()


@dataclass
class Database:
    """A fresh database for one test; ``store`` is a Store on it."""

    name: str
    server: CouchServer
    store: CouchStore

    def config_file(self, directory: Path) -> Path:
        """Write an enqueue INI config for this database into ``directory`` and return its path.

        Credentials, when the server has any, go to a password file of mode 0600.
        """
        directory.mkdir(parents=True, exist_ok=True)
        lines = ["[couchdb]", f"url = {self.server.url}", f"database = {self.name}"]
        if self.server.username is not None:
            password_file = directory / "couchdb-password"
            fd = os.open(password_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write((self.server.password or "") + "\n")
            lines += [f"username = {self.server.username}", f"password_file = {password_file}"]
        path = directory / "enqueue.ini"
        path.write_text("\n".join(lines) + "\n")
        return path

    def drop(self) -> None:
        """Delete the database and close the store."""
        try:
            self.store.delete_database()
        finally:
            self.store.close()


def create_database(server: CouchServer) -> Database:
    """A new, empty database with a unique name."""
    name = DATABASE_PREFIX + secrets.token_hex(6)
    store = server.store(name)
    if not store.create_database():
        store.close()
        raise RuntimeError(f"test database {name} already existed")
    return Database(name, server, store)


# ---------------------------------------------------------------- selection


@contextmanager
def with_admin(server: CouchServer) -> Iterator[CouchServer]:
    """A server that has an admin account and checks passwords: ``server`` if it does, else an embedded one."""
    if server.username is not None:
        yield server
        return
    own = DevServer(admin_user="admin", admin_password="right-" + os.urandom(6).hex())
    own.start()
    try:
        yield CouchServer(own.url, own.admin_user, own.admin_password, "embedded", devserver=own)
    finally:
        own.stop()


def start_server() -> CouchServer:
    """The session's server, chosen as the module docstring says."""
    url = os.environ.get(ENV_URL)
    if url:
        return _env_server(url)
    if os.environ.get(ENV_DOCKER, "1") != "0" and docker_available():
        return _container_server()
    return start_embedded()


def _env_server(url: str) -> CouchServer:
    parts = split_url(url)
    server = CouchServer(parts.base, parts.username, parts.password if parts.username else None, "env")
    probe = server.store("_users")
    try:
        probe.check()
    except errors.DatabaseMissing:
        pass  # a fresh single node has no _users yet; the server answered all the same
    except errors.StoreError as exc:
        raise RuntimeError(f"{ENV_URL} names a server the tests cannot use: {exc}") from None
    finally:
        probe.close()
    return server


def docker_available(timeout_s: float = 2.0) -> bool:
    """True when a Docker engine answers within ``timeout_s``; never hangs longer."""
    if not os.environ.get("DOCKER_HOST") and not any(
        os.path.exists(path) for path in ("/var/run/docker.sock", os.path.expanduser("~/.docker/run/docker.sock"))
    ):
        return False
    try:
        import docker

        client = docker.from_env(timeout=timeout_s)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:
        return False


def _container_server() -> CouchServer:
    from testcontainers.core.container import DockerContainer

    username, password = "admin", secrets.token_urlsafe(12)
    container = (
        DockerContainer(COUCHDB_IMAGE)
        .with_env("COUCHDB_USER", username)
        .with_env("COUCHDB_PASSWORD", password)
        .with_exposed_ports(5984)
    )
    container.start()
    try:
        host = container.get_container_host_ip()
        url = f"http://{host}:{container.get_exposed_port(5984)}"
        server = CouchServer(url, username, password, "container", _stop=container.stop)
        _create_system_databases(server, timeout_s=120.0)
        return server
    except BaseException:
        container.stop()
        raise


def _create_system_databases(server: CouchServer, timeout_s: float) -> None:
    """Create _users and _replicator (a fresh single node lacks them), retrying
    until the server has finished starting or ``timeout_s`` has passed."""
    deadline = time.monotonic() + timeout_s
    for name in ("_users", "_replicator"):
        store = server.store(name, request_timeout_s=5.0)
        try:
            while True:
                try:
                    store.create_database()
                    break
                except errors.StoreError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.5)
        finally:
            store.close()


def _embedded(devserver: DevServer, session: bool) -> CouchServer:
    devserver.start()
    pid = devserver.pid
    if session and pid is not None:
        SESSION_PIDS.add(pid)

    def stop() -> None:
        SESSION_PIDS.discard(pid or -1)
        devserver.stop()

    return CouchServer(
        devserver.url, devserver.admin_user, devserver.admin_password, "embedded", devserver=devserver, _stop=stop
    )


def start_embedded() -> CouchServer:
    """The embedded server in memory, for the whole session."""
    return _embedded(DevServer(), session=True)


def start_disk_server(data_dir: Path) -> CouchServer:
    """An embedded server keeping its data in ``data_dir``; ``restart()`` keeps the data."""
    return _embedded(DevServer(data_dir=data_dir), session=False)
