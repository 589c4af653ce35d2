"""enqueue: many sites take turns running one command, coordinated through CouchDB.

The Python API (see the README's "Python API"):

* ``enqueue.run(config, site, argv, **options) -> int``: wait for the site's
  turn, run ``argv`` under the same agent and supervisor as ``enqueue run``,
  return its exit code.
* ``with enqueue.turn(config, site, **options) as t:``: hold the site's turn
  while in-process code runs; ``t.number`` is the fencing token, ``t.lost``
  an Event, ``t.check()`` raises ``TurnLost``.

Errors are ``EnqueueError`` subclasses (``ConfigError`` for bad options);
each has the ``exit_code`` the ``enqueue`` command would exit with. Nothing
here installs a signal handler, exits or configures logging: enqueue logs to
the ``enqueue`` loggers, and the caller decides where that goes (add
``enqueue.logs.RedactingFilter`` to a handler to keep secrets out of it).

``import enqueue`` stays cheap: the agent loads when ``run`` or ``turn`` is
first called.
"""

from __future__ import annotations

from enqueue.errors import ConfigError, EnqueueError, TurnLost

# Not typing.TYPE_CHECKING: the supervisor imports this package, and typing costs it about 1 MB.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import os
    import threading
    from typing import ContextManager, Mapping, Sequence

    from enqueue.in_process_turn import Turn

__version__ = "0.1.0"
__all__ = ["run", "turn", "TurnLost", "EnqueueError", "ConfigError", "__version__"]


def run(config: str | os.PathLike[str], site: str, argv: Sequence[str], *, stop: threading.Event | None = None,
        handle_signals: bool = False, environ: Mapping[str, str] | None = None, **options: object) -> int:
    """Wait for ``site``'s turn, run ``argv`` in it as ``enqueue run`` does, and return the command's exit code.

    ``config`` is the configuration file (the ``ENQUEUE_COUCHDB_*`` variables of
    ``environ``, default ``os.environ``, override its connection settings).
    ``argv`` is a list of strings, run without a shell. The command runs under
    the supervisor of ``enqueue run``: it is killed by its lease's deadline even
    if this process freezes, gets ``ENQUEUE_SITE``, ``ENQUEUE_TURN`` and
    ``ENQUEUE_LEADER`` in its environment, and its turn is recorded.

    Options, as ``enqueue run``'s flags (None: from the file, else the default):
    ``heartbeat_delay``, ``heartbeat_stale``, ``conflict_delay``, ``kill_grace``
    (a number of seconds, a ``timedelta``, or text as in the file: ``"30s"``,
    ``"2m"``, a bare ``"10"`` being minutes), ``repeat`` (take turns until
    stopped; the return value is then the last command's), ``allow_cluster``,
    ``time_format``, ``leader_doc``, ``sites_doc``, ``wall_clock_offset``.

    Usable from any thread. ``stop``: a ``threading.Event``; once set, the
    command is stopped (SIGTERM, SIGKILL after ``kill_grace``), the turn handed
    on and 143 returned, as after SIGTERM to ``enqueue run``. No signal handler
    is installed unless ``handle_signals=True`` (main thread only): SIGTERM and
    SIGINT then stop it (143, 130) and the previous handlers are put back.

    Raises ``ConfigError`` for a bad option or configuration, ``SiteInUse`` when
    the site already has an agent in this process or on this host, and the
    other ``EnqueueError`` subclasses where ``enqueue run`` would exit with
    their ``exit_code`` (database unreachable, credentials refused, ...).
    """
    from enqueue import api

    return api.run(config, site, argv, stop=stop, handle_signals=handle_signals, environ=environ, **options)


def turn(config: str | os.PathLike[str], site: str, *, stop: threading.Event | None = None,
         environ: Mapping[str, str] | None = None, **options: object) -> ContextManager[Turn]:
    """Hold ``site``'s turn while the ``with`` block runs: ``with enqueue.turn(config, site) as t: ...``.

    Entering waits for the site's turn (an agent runs in a background thread
    and heartbeats while the block runs); ``t.number`` is the turn's number,
    the fencing token, higher than every earlier turn's. Leaving ends the turn
    like a command's end: exit code 0, or 1 when the block raised (the
    exception propagates), recorded as any turn is, and handed on.

    ``t.lost`` (a ``threading.Event``) is set when the turn can no longer be
    counted on: the lease could not be renewed in time (the moment the
    supervisor would send a command SIGTERM), the turn was revoked or skipped
    (``enqueue skip``), ``stop`` was set, or the agent ended. ``t.check()``
    raises ``TurnLost`` then; call it before each irreversible step.

    This cooperative form cannot fence in-process code the way the supervisor
    fences a command, no more than kazoo's or tooz's locks can: nothing kills
    the block when the turn is lost, and a step that passed ``t.check()`` may
    still run after the lease ran out (a pause, a slow call). Where the block
    writes to another system, pass ``t.number`` along and have that system
    refuse a token lower than one it has seen: that, not the check, keeps a
    late writer out. For work that must be stopped, use ``enqueue.run``.

    Options: those of ``run`` but ``repeat``. Raises as ``run`` does, and
    ``TurnLost`` when the agent ends before the turn begins (``stop`` set, or
    the turn skipped before it started).
    """
    from enqueue import api

    return api.turn(config, site, stop=stop, environ=environ, **options)
