"""A launcher like srun, mpirun or ``ssh -tt``: starts work elsewhere and passes on one signal only.

``python tests/support/fake_launcher.py SIG DIR`` starts the "remote work"
(this module again, with ``--work``) in a session and process group of its
own, where enqueue's fence does not reach, then waits for it and exits with
its exit code. Signal SIG it forwards to the work's group; every other
signal does to the launcher what it does by default (SIGTERM ends it,
leaving the work running, as it would an ssh client whose remote command
knows nothing of it).

The work writes ``DIR/work.pid`` once its handlers are in place, the
launcher ``DIR/launcher.ready`` once it knows the work's group; when a signal reaches it,
``DIR/work.stopped`` holding the signal's name; it then exits with
``WORK_STOPPED_EXIT``. Otherwise it waits for ever. Files are written whole
(a temporary name, then a rename), so a reader never sees half of one.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

PATH = os.path.abspath(__file__)
WORK_STOPPED_EXIT = 7
_CAUGHT = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2, signal.SIGQUIT)


def _write(path: Path, text: str) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def work(directory: Path) -> int:
    """The remote work: say when a signal reached it, then end."""
    def stop(signum: int, _frame: object) -> None:
        _write(directory / "work.stopped", signal.Signals(signum).name)
        os._exit(WORK_STOPPED_EXIT)

    for sig in _CAUGHT:
        signal.signal(sig, stop)
    _write(directory / "work.pid", str(os.getpid()))
    while True:
        signal.pause()


def launch(forwarded: int, directory: Path) -> int:
    """Start the work in a group of its own, forward ``forwarded`` to it, exit with its exit code."""
    work_pgid: list[int] = []

    def forward(signum: int, _frame: object) -> None:
        if work_pgid:
            os.killpg(work_pgid[0], signum)

    signal.signal(forwarded, forward)
    child = subprocess.Popen([sys.executable, PATH, "--work", str(directory)],
                             start_new_session=True, stdin=subprocess.DEVNULL)
    work_pgid.append(child.pid)
    _write(directory / "launcher.ready", str(os.getpid()))
    while True:
        try:
            code = child.wait()
            break
        except InterruptedError:
            continue
    return code if code >= 0 else 128 - code


def main(argv: list[str]) -> int:
    if argv[0] == "--work":
        return work(Path(argv[1]))
    return launch(int(signal.Signals["SIG" + argv[0].upper().removeprefix("SIG")]), Path(argv[1]))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
