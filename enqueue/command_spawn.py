"""Starting the command: the process the supervisor builds for it, from a spare child (docs/PROTOCOL.md §3.6).

Forking a Python process and running Python in the child before exec costs
over a millisecond (copy-on-write faults). So a spare child is forked ahead
of time, does everything but exec, and waits for its argv on a pipe:
starting a command is then one write and one exec. The supervisor
(``enqueue.supervisor``) forks the spare only while no command runs (at
start-up and shortly after each turn), so the fork competes with neither a
command's start nor the report of its end.

Guarantees
----------
* The command runs in a session (and process group) of its own.
* It inherits stdin/stdout/stderr and no other file descriptor of the
  supervisor; its environment is the supervisor's plus the additions it
  was started with; its signal dispositions are the agent's (recorded by
  ``take_over_terminal_signals``), with those Python ignores at start-up
  back at their default, and no signal blocked.
* On Linux it is SIGKILLed when the supervisor dies (``PR_SET_PDEATHSIG``),
  also when the supervisor died before that was set up.
* ``Spawner.spawn`` returns only once exec has succeeded, or raises the
  OSError that made it fail, with the child reaped.

Not guaranteed: a parent-death signal outside Linux, nor anything about
processes the command puts in other sessions or groups.
"""

from __future__ import annotations

import errno
import gc
import json
import os
import signal
import sys

from enqueue.errors import EXIT_NOT_FOUND

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36

# The terminal sends these to the whole foreground group, agent included.
_AGENT_DECIDES = (signal.SIGINT, signal.SIGQUIT, signal.SIGHUP)
# A stopped supervisor would keep no deadline.
_NEVER_STOP = (signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU)
# Python ignores these at start-up; a command expects them at their default.
_PYTHON_IGNORES = (signal.SIGPIPE, signal.SIGXFSZ)

# Not typing.TYPE_CHECKING: importing typing costs the supervisor about 1 MB of resident memory.
TYPE_CHECKING = False
if TYPE_CHECKING:  # the supervisor starts on every agent start: keep its imports few
    from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

    Prctl = Callable[[int, int, int, int, int], int]
    Dispositions = List[Tuple[int, Any]]


def load_prctl() -> Optional[Prctl]:
    """Return libc's prctl on Linux, else None (no parent-death signal there)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
        prctl.argtypes = [ctypes.c_int] + [ctypes.c_ulong] * 4
        prctl.restype = ctypes.c_int
    except (OSError, AttributeError):
        return None

    def call(option: int, a: int, b: int, c: int, d: int) -> int:
        if prctl(option, a, b, c, d) != 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code))
        return 0

    return call


def take_over_terminal_signals() -> Dispositions:
    """Ignore the terminal's and job control's signals in this process; return
    the dispositions the command should get instead (the ones this process had
    for those; the default for those Python ignores and for SIGTERM and SIGCHLD,
    which the supervisor handles itself)."""
    inherited: Dispositions = []
    for sig in _AGENT_DECIDES + _NEVER_STOP:
        current = signal.getsignal(sig)
        inherited.append((sig, signal.SIG_IGN if current == signal.SIG_IGN else signal.SIG_DFL))
        signal.signal(sig, signal.SIG_IGN)
    for sig in _PYTHON_IGNORES + (signal.SIGTERM, signal.SIGCHLD):
        inherited.append((sig, signal.SIG_DFL))
    return inherited


class _Spare:
    """A forked child waiting for a command on ``go_w``. It writes ``+`` to
    ``err_r`` when it has the command, then either execs (the close-on-exec
    pipe ends) or writes ``errno:text`` and exits."""

    __slots__ = ("pid", "go_w", "err_r")

    def __init__(self, pid: int, go_w: int, err_r: int) -> None:
        self.pid = pid
        self.go_w = go_w
        self.err_r = err_r


class Spawner:
    """Keeps at most one spare child and runs commands in it; see the module docstring."""

    def __init__(self, prctl: Optional[Prctl], log: Callable[[str], None]) -> None:
        self._prctl = prctl
        self._log = log
        self._spare: Optional[_Spare] = None
        self._close_in_child: Sequence[int] = ()
        self._inherited: Dispositions = []

    def set_up_children(self, close_fds: Sequence[int], inherited: Dispositions) -> None:
        """Every child forked from now on closes ``close_fds`` and takes the signal dispositions ``inherited``."""
        self._close_in_child = tuple(close_fds)
        self._inherited = list(inherited)

    @property
    def has_spare(self) -> bool:
        return self._spare is not None

    def is_spare(self, pid: int) -> bool:
        """``pid`` is the spare child's (a child that died while waiting is then discarded by the caller)."""
        return self._spare is not None and pid == self._spare.pid

    def refill(self) -> None:
        """Have a spare child ready for the next start, if the system lets us
        fork now (otherwise the next start forks one itself)."""
        if self._spare is not None:
            return
        try:
            self._spare = self._prepare_spare()
        except OSError as exc:
            self._log(f"cannot fork a spare child: {exc.strerror}")

    def discard(self) -> None:
        """Let the spare child exit (its pipe closes) and reap it."""
        spare, self._spare = self._spare, None
        if spare is None:
            return
        os.close(spare.go_w)
        os.close(spare.err_r)
        try:
            os.waitpid(spare.pid, 0)
        except ChildProcessError:
            pass

    def spawn(self, argv: List[str], additions: Dict[str, str]) -> int:
        """Exec ``argv`` in the spare child, with this process's environment plus ``additions``; return its
        pid once exec has succeeded, or raise the OSError that made it fail (the child is then reaped). A
        spare that died before taking the command is replaced once.

        Only the additions go down the pipe: the spare has this process's environment already (it is a
        fork, and the supervisor never changes its own), and the whole of it was most of each start's bytes
        to encode and decode."""
        job = json.dumps({"argv": argv, "env": additions}).encode()
        for _attempt in range(2):
            spare, self._spare = self._spare or self._prepare_spare(), None
            report = b""
            try:
                view = memoryview(job)
                while view:
                    view = view[os.write(spare.go_w, view):]
            except BrokenPipeError:
                pass
            finally:
                os.close(spare.go_w)
            try:
                while True:
                    chunk = os.read(spare.err_r, 4096)
                    if not chunk:
                        break
                    report += chunk
            finally:
                os.close(spare.err_r)
            if report == b"+":  # took the command, then close-on-exec ended the pipe
                return spare.pid
            os.waitpid(spare.pid, 0)
            if report.startswith(b"+"):
                code_text, _, text = report[1:].decode("utf-8", "replace").partition(":")
                code = int(code_text) if code_text.isdigit() else 0
                raise OSError(code or errno.EPERM, text.splitlines()[0] if text else "failed")
            self._log(f"spare child {spare.pid} was gone before it got a command; forking another")
        raise OSError(errno.EAGAIN, "could not get a child process to run the command")

    def _prepare_spare(self) -> _Spare:
        """Fork a spare child that is ready to exec; it exits quietly if its
        pipe closes without a command."""
        go_r, go_w = os.pipe()
        err_r, err_w = os.pipe()
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child, until exec
            try:
                os.close(go_w)
                os.close(err_r)
                self._become_command(parent)
                # Take the copy-on-write faults of decoding a command now,
                # while idle, rather than on the start path; and let no
                # garbage collection touch every page before exec.
                gc.disable()
                json.loads(json.dumps({"argv": [""], "env": {"ENQUEUE_SITE": "", "ENQUEUE_TURN": ""}}))
                environment = dict(os.environ)
                job = b""
                while True:
                    chunk = os.read(go_r, 65536)
                    if not chunk:
                        break
                    job += chunk
                if not job:
                    os._exit(0)
                os.write(err_w, b"+")
                command = json.loads(job)
                environment.update(command["env"])
                os.execvpe(command["argv"][0], command["argv"], environment)
            except BaseException as exc:  # noqa: B902 - anything must reach the parent
                code = exc.errno if isinstance(exc, OSError) and exc.errno else 0
                text = exc.strerror if isinstance(exc, OSError) and exc.strerror else repr(exc)
                try:
                    os.write(err_w, f"{code}:{text}".encode("utf-8", "replace"))
                except OSError:
                    pass
            finally:
                os._exit(EXIT_NOT_FOUND)
        os.close(go_r)
        os.close(err_w)
        return _Spare(pid=pid, go_w=go_w, err_r=err_r)

    def _become_command(self, parent: int) -> None:  # pragma: no cover - child
        """In a forked child: let go of the supervisor's fds and signal set-up,
        start a session, and arrange to die with the supervisor."""
        signal.set_wakeup_fd(-1)
        for fd in self._close_in_child:
            os.close(fd)
        for sig, disposition in self._inherited:
            signal.signal(sig, disposition)
        signal.pthread_sigmask(signal.SIG_SETMASK, ())
        os.setsid()
        if self._prctl is not None:
            self._prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
            if os.getppid() != parent:  # the supervisor died before prctl took hold
                os._exit(128 + signal.SIGKILL)
