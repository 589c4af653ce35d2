"""How a turn ended: the one vocabulary of outcomes.

Every component that says how a turn or a command ended uses these words:
the supervisor (``exited``, ``fenced``, ``stopped``, ``agent-gone``), the
agent (``failed to start``, ``supervisor died``, ``abandoned``, the stop
reasons ``revoked``, ``skipped`` and ``stopped``), the leader (``revoked``,
``not started``), a repaired leader doc (``repaired``), and the records and
the status and history commands that show them.

Guarantee: each member's value is the exact string stored in documents
(``how`` of a turn record, ``last_how`` of the leader doc); documents are a
stored format, so a value never changes. Members are ``str``: they compare
equal to, and serialise as, their value.

Not an outcome: the supervisor's own stop reasons (``shutdown``,
``terminated``), carried in an exited event's ``reason`` with ``how:
stopped``.
"""

from __future__ import annotations

import enum


class Outcome(str, enum.Enum):
    """How a turn (or its command) ended; the value is what documents store."""

    EXITED = "exited"
    """The command ended on its own (any exit code)."""
    FENCED = "fenced"
    """The command was killed at its deadline: its lease ran out."""
    STOPPED = "stopped"
    """The agent stopped the command because the agent itself was told to stop."""
    AGENT_GONE = "agent-gone"
    """The supervisor stopped the command because the agent went away."""
    REVOKED = "revoked"
    """The turn was taken away while its command ran (by the leader, or the site saw it lost)."""
    SKIPPED = "skipped"
    """An admin ended the turn (``enqueue skip``)."""
    NOT_STARTED = "not started"
    """The leader took back a granted turn its site never confirmed."""
    ABANDONED = "abandoned"
    """A later agent of the site ended a turn an earlier agent left running."""
    FAILED_TO_START = "failed to start"
    """The command could not be started."""
    SUPERVISOR_DIED = "supervisor died"
    """The command's supervisor went away during the turn."""
    REPAIRED = "repaired"
    """The leader doc was rebuilt (``last_how`` only): the turn before it is unknown."""

    def __str__(self) -> str:
        return self.value


SHUTDOWN = "shutdown"
"""The supervisor's stop reason when the agent closes it."""
TERMINATED = "terminated"
"""The supervisor's stop reason when it was sent SIGTERM."""

AFTER_REVOCATION = " after revocation"


def after_revocation(how: str) -> str:
    """How a command ended whose turn had already been taken away: ``exited after revocation``."""
    return f"{how}{AFTER_REVOCATION}"


def was_revoked(how: str) -> bool:
    """The turn was taken away, before or while its command ran (``revoked``, ``... after revocation``)."""
    return how == Outcome.REVOKED or how.endswith(AFTER_REVOCATION)
