"""A site's own side of a turn: confirm it, finish it, notice losing it.

* ``confirm``: the granted site marks its turn ``running`` by compare-and-swap
  *before* it starts the command (DESIGN §3.5); a grant it read late, after
  the leader re-granted, fails with 409 and nothing starts.
* ``finish``: the site marks its turn ``done`` and, in the same write, passes
  the next turn along the leader's published rotation, so a handoff costs one
  write (DESIGN §3.7). The leader decided who is in the rotation; the
  finishing site may only take itself out (when it does not repeat).
* ``lost_reason``: why a command that runs here must stop now.

Pure functions of the leader doc.
"""

from __future__ import annotations

from dataclasses import replace

from enqueue.documents import DONE, GRANTED, RUNNING, LeaderDoc
from enqueue.outcomes import Outcome
from enqueue.rotation import rotation_after_finish, successor
from enqueue.scheduler import grant


def granted_to_me(doc: LeaderDoc | None, me: str) -> bool:
    """The leader doc grants ``me`` a turn I have not confirmed yet."""
    return doc is not None and doc.running == me and doc.status == GRANTED


def confirm(doc: LeaderDoc, me: str, now_text: str) -> LeaderDoc:
    """``doc`` with my granted turn marked running."""
    assert granted_to_me(doc, me)
    return replace(doc, status=RUNNING, started_at=now_text, updated_by=me, updated_at=now_text)


def finish(
    doc: LeaderDoc, me: str, exit_code: int | None, how: str, i_repeat: bool, now_text: str
) -> tuple[LeaderDoc, str | None]:
    """``doc`` with my running turn done, and the next turn passed on if one may be.

    Returns the new doc and the site the next turn went to (None when paused
    or nobody is in the rotation: the leader grants later).
    """
    rotation = rotation_after_finish(me, doc.rotation, i_repeat)
    done = replace(
        doc,
        status=DONE,
        last_exit_code=exit_code,
        last_how=how,
        ended_at=now_text,
        skip_turn=None,
        rotation=rotation,
        updated_by=me,
        updated_at=now_text,
    )
    nxt = None if doc.paused else successor(me, doc.rotation, i_repeat)
    if nxt is None:
        return done, None
    return grant(done, nxt, rotation, me, now_text), nxt


def lost_reason(doc: LeaderDoc | None, me: str, turn: int) -> str | None:
    """Why my running command of ``turn`` must stop now, or None if it may go on.

    A leader doc that does not parse (``None``) counts as losing the turn:
    nobody can vouch for it any more.
    """
    if doc is None:
        return Outcome.REVOKED
    if not doc.holds(me, turn) or doc.status != RUNNING:
        return Outcome.REVOKED
    if doc.skip_turn == turn:
        return Outcome.SKIPPED
    return None


def holds_running(doc: LeaderDoc | None, me: str) -> bool:
    """The leader doc says ``me`` runs the current turn (whether or not this agent started it)."""
    return doc is not None and doc.running == me and doc.status == RUNNING


def still_mine(doc: LeaderDoc | None, me: str, turn: int) -> bool:
    """The turn I ran is still recorded as mine and running (so I may mark it done)."""
    return doc is not None and doc.holds(me, turn) and doc.status == RUNNING

