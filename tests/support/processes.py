"""Processes started by a test: reaping them, waiting for them, and lines they write to a pipe.

``no_leftovers`` (autouse where it is imported) makes the calling test fail
when any process it started outlives it; ``Fifo`` is a named pipe a command
writes lines to, so a test waits on an event rather than a sleep.
"""

from __future__ import annotations

import ctypes
import os
import select
import signal
import subprocess
import time
from pathlib import Path
from typing import Iterator, List

import psutil
import pytest

TIMEOUT = 5.0
PR_SET_CHILD_SUBREAPER = 36


def set_subreaper(on: bool) -> None:
    """Orphans of the processes under test come to us, so we can reap them
    even where init does not."""
    libc = ctypes.CDLL(None, use_errno=True)
    assert libc.prctl(PR_SET_CHILD_SUBREAPER, int(on), 0, 0, 0) == 0


def wait_gone(pid: int, timeout: float = TIMEOUT) -> bool:
    """True once ``pid`` no longer exists; reaps it if it became our child."""
    end = time.monotonic() + timeout
    while True:
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        if not psutil.pid_exists(pid):
            return True
        if time.monotonic() >= end:
            return False
        time.sleep(0.005)


@pytest.fixture(autouse=True)
def no_leftovers() -> Iterator[List[int]]:
    """Fail the test if any process it started outlives it; the yielded list
    takes pids that may have left our process tree."""
    set_subreaper(True)
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    tracked: List[int] = []
    yield tracked
    candidates = {p.pid for p in psutil.Process().children(recursive=True)} - before
    candidates |= {pid for pid in tracked if psutil.pid_exists(pid)}
    stuck = [pid for pid in sorted(candidates) if not wait_gone(pid)]
    for pid in stuck:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        wait_gone(pid)
    set_subreaper(False)
    assert not stuck, f"processes left behind: {stuck}"


class Fifo:
    """A named pipe a command writes lines to, so the test can wait for it."""

    def __init__(self, path: Path) -> None:
        os.mkfifo(path)
        self.path = str(path)
        self.fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        # A writer of our own keeps the read end from seeing EOF between lines.
        self._keep = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        self._buffer = b""

    def line(self, timeout: float = TIMEOUT) -> str:
        end = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            left = end - time.monotonic()
            assert left > 0 and select.select([self.fd], [], [], left)[0], "no line from the command"
            self._buffer += os.read(self.fd, 4096)
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.decode()

    def close(self) -> None:
        os.close(self.fd)
        os.close(self._keep)


def reap(proc: subprocess.Popen) -> None:
    """Kill ``proc`` if it still runs, wait for it and close its pipes: the end of every test that started it."""
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()
