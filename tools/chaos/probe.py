"""A command that records its own turn, for demos, tests, benchmarks and chaos runs.

    python tools/chaos/probe.py LOG [--lock FILE] [--sleep S] [--exit N] [--ignore-term] [--spew BYTES]

Appends one line when it starts and one when it ends to LOG (a single
``write`` on an ``O_APPEND`` file, so lines from many processes never mix):

    start <site> <turn> <unix time ns> <pid>
    end   <site> <turn> <unix time ns> <pid> <how>

While it runs it holds an exclusive ``flock`` on ``--lock`` (default: LOG +
``.lock``). The kernel drops that lock when the process dies, however it dies,
so a probe that finds the lock taken has proof that another command is still
alive: it writes ``overlap`` with the holder's line and goes on. The checker
(``tools.chaos.checker``) reads these lines; it does not trust agents' logs.

It runs by file path (``command`` builds the argv), so it needs neither an
installed package nor an import path: agents may run it from any directory.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import signal
import sys
import time


PATH = os.path.abspath(__file__)


def command(log: object, *args: object) -> list[str]:
    """The argv of a probe that appends to ``log``, runnable from any directory."""
    return [sys.executable, PATH, str(log), *(str(a) for a in args)]


def _append(path: str, line: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tools/chaos/probe.py", description=__doc__.splitlines()[0])
    parser.add_argument("log")
    parser.add_argument("--lock")
    parser.add_argument("--sleep", type=float, default=0.0, help="seconds to run (default 0)")
    parser.add_argument("--exit", type=int, default=0, dest="code", help="exit code (default 0)")
    parser.add_argument("--ignore-term", action="store_true", help="ignore SIGTERM (must be killed)")
    parser.add_argument("--spew", type=int, default=0, help="bytes to print to stdout")
    args = parser.parse_args(argv)

    site = os.environ.get("ENQUEUE_SITE", "-")
    turn = os.environ.get("ENQUEUE_TURN", "-")
    pid = os.getpid()
    how = ["exited"]

    def on_term(signum: int, _frame: object) -> None:
        how[0] = "terminated"
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, signal.SIG_IGN if args.ignore_term else on_term)
    lock_fd = os.open(args.lock or args.log + ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        _append(args.log, f"overlap {site} {turn} {time.time_ns()} {pid}")
        fcntl.flock(lock_fd, fcntl.LOCK_EX)
    _append(args.log, f"start {site} {turn} {time.time_ns()} {pid}")
    code = args.code
    try:
        if args.spew:
            chunk = b"x" * 65535 + b"\n"
            left = args.spew
            while left > 0:
                sys.stdout.buffer.write(chunk[: min(left, len(chunk))])
                left -= len(chunk)
            sys.stdout.flush()
        if args.sleep:
            time.sleep(args.sleep)
    except SystemExit as stop:
        code = int(stop.code or 0)
    _append(args.log, f"end {site} {turn} {time.time_ns()} {pid} {how[0]}")
    return code


if __name__ == "__main__":
    sys.exit(main())
