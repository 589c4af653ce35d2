"""What an agent knows of its own turn in progress: how its command ended, and its writes never answered.

Plain values, no store access: ``enqueue.own_turn`` acts on them.
"""

from __future__ import annotations

from dataclasses import dataclass

from enqueue import documents as docs


@dataclass(frozen=True)
class Ending:
    """How the command of a turn ended, as the runner reported it (or as the agent decided)."""

    exit_code: int | None
    how: str
    error: str | None = None
    duration_s: float | None = None
    ended_text: str | None = None
    """When the command ended (the documents' time format), from its own end, not from when it is written."""


@dataclass(frozen=True)
class UnansweredConfirm:
    """A confirm whose answer never came: the turn, the ``started_at`` it wrote, the lease it was sent under."""

    turn: int
    started_text: str | None
    deadline: float


@dataclass(frozen=True)
class UnansweredFinish:
    """A finishing write whose answer never came: the turn, and what it wrote of the turn's end."""

    turn: int
    ended_text: str | None
    how: str
    exit_code: int | None

    def went_through(self, doc: docs.LeaderDoc) -> bool:
        """``doc`` shows this very write as the one that ended the turn (its ``ended_at``, how and exit code)."""
        return (doc.ended_at, doc.last_how, doc.last_exit_code) == (self.ended_text, self.how, self.exit_code)


def ended_turn(doc: docs.LeaderDoc) -> int | None:
    """The turn whose end the leader doc's ``ended_at``, ``last_how`` and ``last_exit_code`` describe."""
    if doc.status == docs.DONE:
        return doc.turn
    return doc.turn - 1 if doc.turn_active and doc.turn > 0 else None


@dataclass
class TurnInProgress:
    """The turn this agent confirmed, from the confirm until it is marked done (or found lost)."""

    turn: int
    started_mono: float
    started_text: str | None
    stop_sent: str | None = None
    pid: int | None = None
    ending: Ending | None = None

    @property
    def command_may_run(self) -> bool:
        """Its command may still be alive: no ending reported yet."""
        return self.ending is None
