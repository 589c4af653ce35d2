"""A site's own side of a turn: confirm it, finish it, notice losing it.

* ``confirm``: the granted site marks its turn ``running`` by compare-and-swap
  *before* it starts the command (docs/PROTOCOL.md §3.5); a grant it read late, after
  the leader re-granted, fails with 409 and nothing starts.
* ``finish``: the site marks its turn ``done`` and, in the same write, passes
  the next turn along the leader's published rotation and carries the turn's
  record (``last_record``), so a handoff costs one write (docs/PROTOCOL.md
  §3.8). The leader decided who is in the rotation; the finishing site may
  only take itself out (when it does not repeat).
* ``hand_leadership``: a finishing site that leads and is about to leave
  (run-once) names a live waiting site as leader in that same write, so no
  election follows its turn (docs/PROTOCOL.md §3.3.5).
* ``lost_reason``: why a command that runs here must stop now. A turn this
  site started on its grant alone (docs/PROTOCOL.md §3.5.7) stays
  ``granted`` while it runs: what ends it is a write that ends or passes it.

Pure functions of the leader doc.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Collection, Mapping

from enqueue.documents import DONE, GRANTED, RUNNING, Heartbeat, LeaderDoc, TurnRecord
from enqueue.outcomes import Outcome
from enqueue.rotation import next_after, rotation_after_finish, successor
from enqueue.scheduler import grant, grantee_of


def granted_to_me(doc: LeaderDoc | None, me: str) -> bool:
    """The leader doc grants ``me`` a turn I have not confirmed yet."""
    return doc is not None and doc.running == me and doc.status == GRANTED


def confirm(doc: LeaderDoc, me: str, now_text: str) -> LeaderDoc:
    """``doc`` with my granted turn marked running."""
    assert granted_to_me(doc, me)
    return replace(doc, status=RUNNING, started_at=now_text, updated_by=me, updated_at=now_text)


def finish(
    doc: LeaderDoc, me: str, exit_code: int | None, how: str, i_repeat: bool, now_text: str,
    heirs: Collection[str] = (), heartbeats: Mapping[str, Heartbeat | None] = {},
    record: TurnRecord | None = None,
) -> tuple[LeaderDoc, str | None]:
    """``doc`` with my running turn done, and the next turn passed on if one may be.

    Returns the new doc and the site the next turn went to (None when paused
    or nobody is in the rotation: the leader grants later). ``heirs``: the
    sites a leader that is leaving may hand its leadership to
    (``hand_leadership``); empty when this agent stays. ``heartbeats``: the
    ones I hold, so the grant can name the successor's agent instance
    (``scheduler.grant``). ``record``: my record of the turn, carried in
    ``last_record`` in place of the one there, which the caller must know
    stored (docs/PROTOCOL.md §3.8.2); without one, ``last_record`` stays.
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
        last_record=doc.last_record if record is None else record,
    )
    nxt = None if doc.paused else successor(me, doc.rotation, i_repeat)
    if nxt is not None:
        done = grant(done, nxt, rotation, me, now_text, grantee_of(heartbeats, nxt))
    return hand_leadership(done, me, nxt, heirs), nxt


def hand_leadership(doc: LeaderDoc, me: str, nxt: str | None, heirs: Collection[str]) -> LeaderDoc:
    """``doc`` with my leadership handed to one of ``heirs``, if I lead and one is there.

    ``heirs`` are the sites the leaving leader sees alive and waiting (the
    rotation it would publish, ``rotation.eligible_sites``). The heir is
    ``nxt``, the site granted the next turn, when it is one of them (it is
    busy with the leader doc already), else the first heir after me in
    alphabetical order. The term grows by one, as at an election. Leadership
    protects nothing by itself (docs/PROTOCOL.md §3.3.4): this only spares
    the election that would follow my step-down.
    """
    candidates = [site for site in heirs if site != me]
    if doc.leader != me or not candidates:
        return doc
    heir = nxt if nxt in candidates else next_after(me, candidates)
    return replace(doc, leader=heir, leader_term=doc.leader_term + 1)


def lost_reason(doc: LeaderDoc | None, me: str, turn: int) -> str | None:
    """Why my running command of ``turn`` must stop now, or None if it may go on.

    A leader doc that does not parse (``None``) counts as losing the turn:
    nobody can vouch for it any more.
    """
    if doc is None:
        return Outcome.REVOKED
    if not doc.holds(me, turn) or not doc.may_run:
        return Outcome.REVOKED
    if doc.skip_turn == turn:
        return Outcome.SKIPPED
    return None


def holds_running(doc: LeaderDoc | None, me: str) -> bool:
    """The leader doc says ``me`` runs the current turn (whether or not this agent started it)."""
    return doc is not None and doc.running == me and doc.status == RUNNING


def still_mine(doc: LeaderDoc | None, me: str, turn: int) -> bool:
    """The turn I ran is still recorded as mine: running, or granted to my agent (so I may mark it done).

    A turn I started on its grant alone stays ``granted`` (docs/PROTOCOL.md
    §3.5.7): only a write that ends or passes it moves it on.
    """
    return doc is not None and doc.holds(me, turn) and doc.may_run

