"""How long a run-once agent waits for its turn (``enqueue run --max-wait D``) before it gives up and leaves.

Guarantees: the agent gives up only when ``--max-wait`` was given, its time
has passed since the agent started, and no turn of this site has started
or is on record as running (``may_give_up``): a turn once begun is always
finished and recorded, never abandoned for the wait. Giving up ends the
agent with ``NoTurnInTime`` (exit 75), after it left cleanly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from enqueue import turns
from enqueue.durations import format_duration
from enqueue.errors import NoTurnInTime

if TYPE_CHECKING:
    from enqueue.own_turn import OwnTurn
    from enqueue.view import View


class MaxWait:
    """The run-once agent's wait for a turn, with its end (monotonic seconds); see the module docstring."""

    def __init__(self, me: str, max_wait_s: float | None, own: OwnTurn, view: View) -> None:
        self.me = me
        self.max_wait_s = max_wait_s
        self.own = own
        self.view = view
        self.ends_at: float | None = None

    def begin(self, now: float) -> None:
        """The agent started (registered and beat once) at ``now``: the wait runs from here."""
        if self.max_wait_s is not None:
            self.ends_at = now + self.max_wait_s

    def may_give_up(self) -> bool:
        """Run-once with --max-wait, and no turn of mine has started or is on record as running."""
        return self.ends_at is not None and self.own.current is None and self.own.turns_done == 0 and \
            not turns.holds_running(self.view.leader, self.me)

    def wake_at(self) -> float | None:
        """The moment to look again for giving up; None when the agent may not give up."""
        return self.ends_at if self.may_give_up() else None

    def over(self, now: float) -> bool:
        """The wait has run out at ``now`` and the agent may give up."""
        return self.ends_at is not None and now >= self.ends_at and self.may_give_up()

    def error(self) -> NoTurnInTime:
        """What the agent says when it gave up."""
        assert self.max_wait_s is not None
        return NoTurnInTime(f"site {self.me} got no turn within {format_duration(self.max_wait_s)} (--max-wait): it "
                            "left the rotation (a site loop goes on with its next iteration)")
