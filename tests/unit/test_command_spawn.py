"""Starting the command from a spare child: session, environment, exec failures (docs/PROTOCOL.md §3.6).

The supervisor's own tests (test_supervisor.py) check the same through its
pipes; these drive the ``Spawner`` directly, in the test process.
"""

from __future__ import annotations

import errno
import os
import signal
import sys
from pathlib import Path
from typing import Iterator, List

import psutil
import pytest

from enqueue.command_spawn import Spawner, load_prctl

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux process semantics")


@pytest.fixture
def spawner() -> Iterator[Spawner]:
    logged: List[str] = []
    spawner = Spawner(load_prctl(), logged.append)
    spawner.set_up_children((), [(signal.SIGPIPE, signal.SIG_DFL)])
    yield spawner
    spawner.discard()
    assert not spawner.has_spare


def exit_code(pid: int) -> int:
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def test_the_command_runs_in_a_session_of_its_own_with_the_additions(spawner: Spawner, tmp_path: Path) -> None:
    out = tmp_path / "out"
    script = f'echo "$(ps -o sid= -p $$) $ADDED" > {out}'
    pid = spawner.spawn(["sh", "-c", script], {"ADDED": "yes"})
    assert exit_code(pid) == 0
    sid, added = out.read_text().split()
    assert (int(sid), added) == (pid, "yes")


def test_the_command_has_this_processs_environment_with_the_additions_on_top(
        spawner: Spawner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INHERITED", "kept")
    monkeypatch.setenv("REPLACED", "old")
    spawner.refill()  # forked now: the environment as it is
    out = tmp_path / "out"
    pid = spawner.spawn(["sh", "-c", f'echo "$INHERITED $REPLACED $ADDED" > {out}'], {"REPLACED": "new", "ADDED": "yes"})
    assert exit_code(pid) == 0
    assert out.read_text().split() == ["kept", "new", "yes"]


def test_a_spare_is_forked_ahead_and_used_by_the_next_start(spawner: Spawner) -> None:
    spawner.refill()
    assert spawner.has_spare
    pid = spawner.spawn(["sh", "-c", "exit 4"], {})
    assert not spawner.has_spare
    assert exit_code(pid) == 4


def test_a_command_that_cannot_run_raises_its_error_and_its_child_is_reaped(spawner: Spawner) -> None:
    spawner.refill()
    spare_pid = _spare_pid(spawner)
    with pytest.raises(OSError) as caught:
        spawner.spawn(["no-such-command-here"], {"PATH": "/nonexistent"})
    assert caught.value.errno == errno.ENOENT
    with pytest.raises(ChildProcessError):
        os.waitpid(spare_pid, os.WNOHANG)


def test_a_spare_that_died_is_replaced(spawner: Spawner) -> None:
    spawner.refill()
    spare_pid = _spare_pid(spawner)
    os.kill(spare_pid, signal.SIGKILL)
    pid = spawner.spawn(["sh", "-c", "exit 6"], {})
    assert pid != spare_pid
    assert exit_code(pid) == 6
    with pytest.raises(ChildProcessError):
        os.waitpid(spare_pid, os.WNOHANG)


def _spare_pid(spawner: Spawner) -> int:
    (child,) = [c for c in psutil.Process().children() if spawner.is_spare(c.pid)]
    return child.pid
