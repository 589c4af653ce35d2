"""An embedded CouchDB-compatible server for development, demos and tests.

``DevServer`` runs pouchdb-server (installed under ``devserver/`` by
``scripts/bootstrap``) on the loopback interface, in memory or on disk, with
or without an admin account. It is not a production server: it has no
clustering and crashes when a client without credentials asks it to create a
database while an admin account exists.

The server runs in a private temporary directory (it writes ``config.json``
and ``log.txt`` where it runs), in its own session, so ``stop()`` can end it
and anything it started. The admin password reaches it through that
directory's config file, never through its command line.

pouchdb-server lets an account write its own ``_users`` document as if it
were an admin (it adds ``_admin`` to the writer's roles), so any account
could give itself any role. CouchDB refuses that; so that tests and demos
meet the same rule, ``start()`` installs ``_design/enqueue_users`` in
``_users``: an account writing its own document may change its password,
not its name, type or roles.
"""

from __future__ import annotations

import atexit
import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import List, Optional, Union

from enqueue.errors import EnqueueError

__all__ = ["DevServer", "DevServerError", "find_executable"]

ENV_EXECUTABLE = "ENQUEUE_POUCHDB_SERVER"
REPO_DIR = Path(__file__).resolve().parent.parent
BUNDLED_EXECUTABLE = REPO_DIR / "devserver" / "node_modules" / ".bin" / "pouchdb-server"
#: Preloaded into the server: a continuous changes feed is cancelled when its client goes away, as CouchDB
#: does (express-pouchdb keeps serving it, and running it at every write, for the rest of the server's life).
CANCEL_CLOSED_FEEDS = REPO_DIR / "devserver" / "cancel-closed-feeds.js"

_PORT_ATTEMPTS = 5

USERS_DESIGN_ID = "_design/enqueue_users"
# What CouchDB refuses a non-admin writing its own _users document. ADMIN is the
# configured admin's name: pouchdb-server gives every writer of its own document
# the _admin role, so that role alone does not tell the admin apart.
_USERS_RULES = """function (newDoc, oldDoc, userCtx) {
  var ADMIN = %s;
  if (!oldDoc || !userCtx || userCtx.name !== oldDoc.name || userCtx.name === ADMIN) {
    return;
  }
  if (newDoc._deleted === true) {
    return;
  }
  var before = (oldDoc.roles || []).slice().sort(), after = (newDoc.roles || []).slice().sort();
  if (JSON.stringify(before) !== JSON.stringify(after)) {
    throw({forbidden: "Only _admin may edit roles"});
  }
  if (newDoc.name !== oldDoc.name || newDoc.type !== oldDoc.type) {
    throw({forbidden: "Only _admin may change a user's name or type"});
  }
}"""


class DevServerError(EnqueueError):
    """The embedded server could not be found, started or stopped."""


def find_executable() -> str:
    """The pouchdb-server to run: ``$ENQUEUE_POUCHDB_SERVER``, else the one
    ``scripts/bootstrap`` installs in the repository, else one on ``PATH``."""
    configured = os.environ.get(ENV_EXECUTABLE)
    if configured:
        if not os.access(configured, os.X_OK):
            raise DevServerError(f"{ENV_EXECUTABLE}={configured} is not an executable file")
        return configured
    if os.access(BUNDLED_EXECUTABLE, os.X_OK):
        return str(BUNDLED_EXECUTABLE)
    found = shutil.which("pouchdb-server")
    if found:
        return found
    raise DevServerError(
        "pouchdb-server is not installed: run scripts/bootstrap "
        f"(or point {ENV_EXECUTABLE} at a pouchdb-server executable)"
    )


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that only the owner can ever read it."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        os.fchmod(handle.fileno(), 0o600)
        handle.write(text)


class DevServer:
    """One pouchdb-server process on ``host:port``.

    Invariant: while ``running`` is true exactly one server process (and its
    process group) belongs to this object and answers on ``url``; after
    ``stop()`` none does, and the private working directory is gone.
    """

    def __init__(
        self,
        *,
        port: Optional[int] = None,
        data_dir: Optional[Union[str, os.PathLike]] = None,
        admin_user: Optional[str] = None,
        admin_password: Optional[str] = None,
        host: str = "127.0.0.1",
        executable: Optional[str] = None,
        start_timeout_s: float = 30.0,
        stop_grace_s: float = 5.0,
        log_level: str = "warning",
    ) -> None:
        """Describe a server; nothing runs until ``start()`` (or ``with``).

        ``data_dir`` keeps the databases on disk there (surviving
        ``restart()``); without it they live in memory. An admin account is
        created when both ``admin_user`` and ``admin_password`` are given.
        ``log_level`` is CouchDB's (``info`` logs every request, which costs
        about a millisecond each).
        """
        if (admin_user is None) != (admin_password is None):
            raise DevServerError("an admin account needs both a user name and a password")
        if admin_user is not None and (not admin_user or not admin_password):
            raise DevServerError("the admin user name and password must not be empty")
        self.host = host
        self.port: Optional[int] = port
        self.data_dir: Optional[Path] = Path(data_dir).resolve() if data_dir is not None else None
        self.admin_user = admin_user
        self._admin_password = admin_password
        self._executable = executable
        self._start_timeout_s = start_timeout_s
        self._stop_grace_s = stop_grace_s
        self._log_level = log_level
        self._workdir: Optional[Path] = None
        self._process: Optional[subprocess.Popen] = None
        self._instance = ""

    # --------------------------------------------------------------- naming

    @property
    def url(self) -> str:
        """The server's base URL, without credentials."""
        if self.port is None:
            raise DevServerError("the dev server has not been started")
        return f"http://{self.host}:{self.port}"

    @property
    def admin_password(self) -> Optional[str]:
        """The admin account's password (kept out of ``repr``)."""
        return self._admin_password

    @property
    def pid(self) -> Optional[int]:
        """The server process id while it runs."""
        return self._process.pid if self._process is not None else None

    @property
    def running(self) -> bool:
        """True while the server process is alive."""
        return self._process is not None and self._process.poll() is None

    def __repr__(self) -> str:
        where = f"on disk at {self.data_dir}" if self.data_dir else "in memory"
        state = f"at {self.url}" if self.running else "stopped"
        return f"<DevServer {where}, {state}>"

    def __enter__(self) -> "DevServer":
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # ---------------------------------------------------------- life cycle

    def start(self) -> "DevServer":
        """Start the server and return once it answers on ``url``."""
        if self.running:
            return self
        executable = self._executable or find_executable()
        if self.data_dir is not None:
            self.data_dir.mkdir(parents=True, exist_ok=True)
        if self._workdir is None:
            self._workdir = Path(tempfile.mkdtemp(prefix="enqueue-devserver-"))
        fixed_port = self.port is not None
        last_error = ""
        for _attempt in range(1 if fixed_port else _PORT_ATTEMPTS):
            if not fixed_port:
                self.port = _free_port(self.host)
            try:
                self._launch(executable)
                atexit.register(self.stop)
                return self
            except DevServerError as exc:
                last_error = str(exc)
                if fixed_port or "EADDRINUSE" not in self._output_tail():
                    break
        self._cleanup_workdir()
        raise DevServerError(last_error)

    def _launch(self, executable: str) -> None:
        assert self._workdir is not None and self.port is not None
        # A fresh identity per launch tells our server's answer from that of
        # anything else that might hold the port.
        self._instance = uuid.uuid4().hex
        config: dict = {
            "couchdb": {"uuid": self._instance},
            "log": {"file": str(self._workdir / "log.txt"), "level": self._log_level},
        }
        if self.admin_user is not None:
            config["admins"] = {self.admin_user: self._admin_password}
        config_path = self._workdir / "config.json"
        _write_private(config_path, json.dumps(config))
        argv: List[str] = [
            executable,
            "--host", self.host,
            "--port", str(self.port),
            "--config", str(config_path),
            "--no-stdout-logs",
            "--no-color",
        ]
        if self.data_dir is not None:
            argv += ["--dir", str(self.data_dir)]
        else:
            argv += ["--in-memory"]
        env = dict(os.environ)
        if CANCEL_CLOSED_FEEDS.is_file():
            env["NODE_OPTIONS"] = f'{env.get("NODE_OPTIONS", "")} --require "{CANCEL_CLOSED_FEEDS}"'.strip()
        with open(self._workdir / "output.txt", "wb") as output:
            self._process = subprocess.Popen(
                argv,
                cwd=self._workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            self._wait_until_answering()
            self._install_users_rules()
        except BaseException:
            self._terminate()
            raise

    def _users_request(self, method: str, body: Optional[dict] = None) -> dict:
        request = urllib.request.Request(
            f"{self.url}/_users/{USERS_DESIGN_ID}", method=method,
            data=None if body is None else json.dumps(body).encode(), headers={"Content-Type": "application/json"},
        )
        if self.admin_user is not None:
            token = base64.b64encode(f"{self.admin_user}:{self._admin_password}".encode()).decode()
            request.add_header("Authorization", f"Basic {token}")
        with urllib.request.urlopen(request, timeout=10) as response:
            answer = json.loads(response.read().decode("utf-8"))
        return answer if isinstance(answer, dict) else {}

    def _install_users_rules(self) -> None:
        """Make ``_users`` refuse what CouchDB refuses an account writing its own document (once per data)."""
        wanted = {"_id": USERS_DESIGN_ID, "language": "javascript",
                  "validate_doc_update": _USERS_RULES % json.dumps(self.admin_user)}
        try:
            current = self._users_request("GET")
        except urllib.error.HTTPError as exc:
            if exc.code != 404:
                raise DevServerError(f"cannot read _users/{USERS_DESIGN_ID}: HTTP {exc.code}") from None
            current = {}
        if current.get("validate_doc_update") == wanted["validate_doc_update"]:
            return
        if "_rev" in current:
            wanted["_rev"] = current["_rev"]
        try:
            self._users_request("PUT", wanted)
        except (OSError, ValueError) as exc:
            raise DevServerError(f"cannot install the _users rules: {exc}") from None

    def _wait_until_answering(self) -> None:
        deadline = time.monotonic() + self._start_timeout_s
        while True:
            assert self._process is not None
            if self._process.poll() is not None:
                raise DevServerError(f"pouchdb-server on port {self.port} ended while starting: {self.ended_because()}")
            if self._answers():
                return
            if time.monotonic() > deadline:
                raise DevServerError(
                    f"pouchdb-server did not answer on {self.url} within {self._start_timeout_s:g} s"
                )
            time.sleep(0.05)

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/", timeout=2) as response:
                info = json.loads(response.read().decode("utf-8"))
        except (OSError, ValueError, urllib.error.URLError):
            return False
        return isinstance(info, dict) and info.get("uuid") == self._instance

    def ended_because(self) -> str:
        """Why the server process ended: its exit code or signal, and its last lines of output."""
        process = self._process
        code = None if process is None else process.poll()
        if code is None:
            how = "it has not ended"
        elif code < 0:
            try:
                how = f"killed by signal {signal.Signals(-code).name}"
            except ValueError:
                how = f"killed by signal {-code}"
        else:
            how = f"exit code {code}"
        return f"{how}; its last output: {self._output_tail() or 'none'}"

    def _output_tail(self) -> str:
        if self._workdir is None:
            return ""
        try:
            text = (self._workdir / "output.txt").read_text(errors="replace")
        except OSError:
            return ""
        lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
        return " | ".join(lines[-6:])

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after the grace period) and
        remove its working directory; the data directory stays."""
        self._terminate()
        self._cleanup_workdir()
        atexit.unregister(self.stop)

    def restart(self) -> "DevServer":
        """Stop and start again on the same port; on-disk data survives."""
        if self.data_dir is None:
            raise DevServerError("an in-memory dev server loses its data on restart; give it a data_dir")
        self._terminate()
        return self.start()

    def _terminate(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        # The server leads its own session: signal the whole group so nothing
        # it may have started is left behind.
        self._signal_group(process, signal.SIGTERM)
        try:
            process.wait(timeout=self._stop_grace_s)
        except subprocess.TimeoutExpired:
            self._signal_group(process, signal.SIGKILL)
            process.wait()
        self._signal_group(process, signal.SIGKILL)

    @staticmethod
    def _signal_group(process: subprocess.Popen, signum: int) -> None:
        try:
            os.killpg(process.pid, signum)
        except (ProcessLookupError, PermissionError):
            pass

    def _cleanup_workdir(self) -> None:
        workdir, self._workdir = self._workdir, None
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)
