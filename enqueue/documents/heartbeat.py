"""A site's heartbeat doc: proof of life, what the site wants, and the timing it runs with (docs/PROTOCOL.md §2).

Guarantees: ``parse_heartbeat`` never raises; a bad ``state`` makes the site
want nothing, and a timing that is not a positive number reads as not
announced. ``render_heartbeat`` carries the ``_rev`` it replaces. Not here:
when a heartbeat is stale (``enqueue.liveness``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from enqueue.config import DEFAULT_LEADER_DOC
from enqueue.documents.fields import Fields, document_parser
from enqueue.documents.ids import RUNNING, SCHEMA_VERSION, SITE_STATES, WAITING, heartbeat_id

#: Why an agent said ``left`` (its heartbeat's ``left_because``): it ran its one turn (run-once), or it got
#: no turn within --max-wait, both the normal end of one iteration of a site loop; or it was stopped.
LEFT_TURN_DONE = "turn done"
LEFT_MAX_WAIT = "max wait"
LEFT_STOPPED = "stopped"
LEFT_REASONS = (LEFT_TURN_DONE, LEFT_MAX_WAIT, LEFT_STOPPED)
#: The reasons that mean a site loop goes on and starts the next agent (``status`` shows ``looping``).
LEFT_TO_LOOP = (LEFT_TURN_DONE, LEFT_MAX_WAIT)
#: A heartbeat field for a condition only an admin can end (an agent sets it while the condition lasts).
PROBLEM_FIELD = "problem"


@dataclass(frozen=True)
class Heartbeat:
    """A site's own document: proof of life and what the site wants."""

    site: str
    state: str | None = None
    repeat: bool = False
    host: str | None = None
    pid: int | None = None
    instance: str | None = None
    beat: int = 0
    time: str | None = None
    turn: int | None = None
    message: str | None = None
    rev: str | None = None
    # The timing the site's agent runs with, announced so that a leader with
    # other settings still waits out this site's lease (None: not announced).
    heartbeat_delay_s: float | None = None
    heartbeat_stale_s: float | None = None
    # The first line of output of the readiness check that failed (state ``not_ready``), for status.
    not_ready: str | None = None
    left_because: str | None = None
    """With ``state: left``, why the agent left (``LEFT_REASONS``); None from an agent that did not say."""
    # Its command's failed turns in a row, and the last one's exit code (enqueue.failures).
    failed_in_a_row: int = 0
    last_failed_exit_code: int | None = None

    @property
    def wants_turn(self) -> bool:
        """The site asks for a turn now, or right after the one it is running (``wants_turn``)."""
        return wants_turn(self.state, self.repeat)

    @property
    def lease_s(self) -> float | None:
        """How long after sending an acknowledged beat this site's command may live; None if not announced."""
        if self.heartbeat_delay_s is None or self.heartbeat_stale_s is None:
            return None
        return max(0.0, self.heartbeat_stale_s - self.heartbeat_delay_s)


def wants_turn(state: str | None, repeat: bool) -> bool:
    """The one rule for whether a site in ``state`` asks for a turn: waiting, or running with --repeat.

    ``between`` (its side command runs), ``not_ready`` (its readiness check
    has not passed), ``idle``, ``left`` and a state that does not parse ask
    for none: the leader offers no turn then, and the site starts none.
    """
    return state == WAITING or (state == RUNNING and repeat)


@document_parser
def parse_heartbeat(raw: Mapping[str, Any] | None, site: str) -> tuple[Heartbeat | None, list[str]]:
    """Parse a heartbeat; a bad ``state`` makes the site want nothing, never a crash."""
    f = Fields(raw)
    hb = Heartbeat(
        site=site,
        state=f.choice("state", SITE_STATES),
        repeat=f.flag("repeat"),
        host=f.text("host"),
        pid=f.integer("pid", None),
        instance=f.text("instance"),
        beat=f.integer("beat") or 0,
        time=f.text("time"),
        turn=f.integer("turn", None),
        message=f.text("message"),
        rev=raw.get("_rev"),
        heartbeat_delay_s=f.seconds("heartbeat_delay_s"),
        heartbeat_stale_s=f.seconds("heartbeat_stale_s"),
        not_ready=f.text("not_ready"),
        left_because=f.choice("left_because", LEFT_REASONS),
        failed_in_a_row=max(0, f.integer("failed_in_a_row") or 0),
        last_failed_exit_code=f.integer("last_failed_exit_code", None),
    )
    return hb, f.problems


def render_heartbeat(hb: Heartbeat, extra: Mapping[str, Any] = {},
                     leader_doc: str = DEFAULT_LEADER_DOC) -> dict[str, Any]:
    """The stored form of a heartbeat in the set ``leader_doc`` leads, carrying the ``_rev`` it replaces."""
    out: dict[str, Any] = {
        "_id": heartbeat_id(hb.site, leader_doc),
        "type": "enqueue_heartbeat",
        "schema": SCHEMA_VERSION,
        "site": hb.site,
        "state": hb.state,
        "repeat": hb.repeat,
        "host": hb.host,
        "pid": hb.pid,
        "instance": hb.instance,
        "beat": hb.beat,
        "time": hb.time,
        "turn": hb.turn,
        "message": hb.message,
        "heartbeat_delay_s": hb.heartbeat_delay_s,
        "heartbeat_stale_s": hb.heartbeat_stale_s,
    }
    if hb.not_ready is not None:
        out["not_ready"] = hb.not_ready
    if hb.left_because is not None:
        out["left_because"] = hb.left_because
    out.update(extra)
    if hb.rev is not None:
        out["_rev"] = hb.rev
    return out
