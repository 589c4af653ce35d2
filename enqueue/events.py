"""What happens to an agent from outside: the events ``Agent.handle`` takes.

Each event is a frozen value. The driver (enqueue.agent_process) makes them
from the changes feed, the command's supervisor and signals; a simulation
makes them itself.

* ``DocChanged``: the feed delivered the current body of a followed
  document (``None``: deleted). Deliveries of one document come in the
  server's order; an older revision than the agent holds is dropped.
* ``FeedFailed`` / ``FeedResumed``: the feed stopped working / works again
  (each reported once per failure).
* ``CommandStarted``, ``CommandEnded``, ``StartFailed``, ``SupervisorDied``:
  what the runner reports for a turn's command; every start is answered by
  ``StartFailed``, or ``CommandStarted`` then ``CommandEnded``, or (with or
  without ``CommandStarted``) ``SupervisorDied``.
* ``StopRequested``: the agent was told to stop (by a signal, ``signum``;
  the exit code is then ``128 + signum``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Union


@dataclass(frozen=True)
class DocChanged:
    """A followed document changed; ``doc`` is its new body, None when deleted."""

    doc_id: str
    doc: Mapping[str, Any] | None


@dataclass(frozen=True)
class FeedFailed:
    """The changes feed failed; the agent reads everything once it is back."""

    error: Exception


@dataclass(frozen=True)
class FeedResumed:
    """The changes feed works again after a failure."""


@dataclass(frozen=True)
class CommandStarted:
    """The command of ``turn`` runs as process ``pid``, the leader of its own process group."""

    turn: int
    pid: int | None


@dataclass(frozen=True)
class CommandEnded:
    """The command of ``turn`` is dead and its process group empty.

    ``how`` is an ``Outcome`` value (exited, fenced, stopped, agent-gone);
    with ``stopped``, ``reason`` is the reason the agent gave.
    ``exit_code`` follows the shell (128 + signal number when killed).
    """

    turn: int
    exit_code: int | None
    how: str
    reason: str | None = None
    error: str | None = None
    duration_s: float | None = None
    signal: str | None = None


@dataclass(frozen=True)
class StartFailed:
    """The command of ``turn`` was not started (``error`` says why; ``exit_code`` 126/127 or None)."""

    turn: int
    exit_code: int | None = None
    error: str | None = None
    how: str | None = None


@dataclass(frozen=True)
class SupervisorDied:
    """The supervisor went away; the command of ``turn`` (if any) is dead with it."""

    turn: int | None
    error: str | None = None


@dataclass(frozen=True)
class StopRequested:
    """The agent must stop: end its command, hand over, say it left, and exit with ``128 + signum``."""

    signum: int


@dataclass(frozen=True)
class SideCommandEnded:
    """The side command ``name`` (``between`` or ``ready``) ended with ``exit_code``; ``first_line`` of its output."""

    name: str
    exit_code: int | None
    first_line: str | None = None
    duration_s: float | None = None


RunnerReport = Union[CommandStarted, CommandEnded, StartFailed, SupervisorDied]
Event = Union[DocChanged, FeedFailed, FeedResumed, CommandStarted, CommandEnded, StartFailed, SupervisorDied,
              StopRequested, SideCommandEnded]
