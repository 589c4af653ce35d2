"""``enqueue dev-server``: run the embedded CouchDB-compatible server until stopped.

Prints the server's URL (without credentials) on one line once it answers,
then runs until SIGTERM or SIGINT, stops the server and exits 0. For
development and demos only: pouchdb-server is no production server.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from typing import Any, Dict, Optional

from enqueue.devserver import DevServer, DevServerError
from enqueue.errors import EXIT_OK, ConfigError

NAME = "dev-server"
HELP = "run the embedded CouchDB-compatible server (pouchdb-server) for development and demos"

_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the dev server's options to ``parser``."""
    parser.add_argument("--port", type=int, default=None, help="port on 127.0.0.1 (default: a free one)")
    parser.add_argument("--data", metavar="DIR", default=None,
                        help="keep the databases on disk in DIR (default: in memory, lost on exit)")
    parser.add_argument("--admin-user", metavar="USER", default=None, help="create this admin account")
    parser.add_argument("--admin-password-file", metavar="FILE", default=None,
                        help="file whose first line is the admin password (needs --admin-user)")


def _read_password(path: str) -> str:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read the admin password file {path}: {exc.strerror or exc}") from None
    lines = text.splitlines()
    password = lines[0] if lines else ""
    if not password:
        raise ConfigError(f"the admin password file {path} is empty")
    return password


def execute(args: argparse.Namespace) -> int:
    """Start the server, print its URL, serve until SIGTERM/SIGINT, stop it; 0 on a clean stop."""
    if (args.admin_user is None) != (args.admin_password_file is None):
        raise ConfigError("--admin-user and --admin-password-file go together")
    if args.port is not None and not 0 < args.port < 65536:
        raise ConfigError(f"--port must be between 1 and 65535, got {args.port}")
    password: Optional[str] = _read_password(args.admin_password_file) if args.admin_password_file else None

    stop = threading.Event()
    previous: Dict[int, Any] = {}

    def on_signal(signum: int, _frame: object) -> None:
        stop.set()

    for signum in _STOP_SIGNALS:
        previous[signum] = signal.signal(signum, on_signal)
    server = DevServer(port=args.port, data_dir=args.data, admin_user=args.admin_user, admin_password=password)
    try:
        server.start()
        print(server.url, flush=True)
        while not stop.wait(0.5):
            if not server.running:
                raise DevServerError(f"pouchdb-server on {server.url} ended unexpectedly: {server.ended_because()}")
    finally:
        server.stop()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    print(f"dev server on {server.url} stopped", file=sys.stderr)
    return EXIT_OK
