"""Failed turns in a row, and the drain a site writes on itself after too many (``enqueue run --max-failures K``).

What counts: only turns whose command ended by itself say anything about
the command. A turn whose command exited with a code other than 0, or
could not be started at all (``failed to start`` with 126 or 127; not a
start refused for want of lease time, which has no exit code), is a failure;
one that exited 0 ends the run of failures. Every other ending (fenced,
revoked, skipped, stopped, not started, abandoned, supervisor died, and
any ending after the turn was taken away) is about the site, the database
or an operator, not the command: it neither counts nor ends the run.

The run is kept in the site's heartbeat (``FAILED_IN_A_ROW``,
``LAST_FAILED_EXIT_CODE``), so the agents of a run-once loop, one per
turn, carry it from one to the next.

Guarantees: every function is pure. ``self_drained_entry`` changes a
registry entry in the one way the access rules let a site change its own
(``enqueue/validate_doc_update.js``): from not drained to drained, by
itself, saying why and with what exit code, and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional

from enqueue.outcomes import Outcome

__all__ = ["FAILED_IN_A_ROW", "LAST_FAILED_EXIT_CODE", "SELF_DRAIN_FIELDS", "MAX_REASON_CHARS",
           "FailureRun", "after_turn", "drain_due", "self_drained_entry"]

FAILED_IN_A_ROW = "failed_in_a_row"
LAST_FAILED_EXIT_CODE = "last_failed_exit_code"
#: The fields a site's drain of itself sets in its registry entry (``drained`` is true, ``drained_by`` the site).
SELF_DRAIN_FIELDS = ("drained", "drained_by", "drained_at", "drained_reason", "drained_exit_code", "drained_failures")
#: The access rules refuse a longer reason: every agent reads the registry on every heartbeat.
MAX_REASON_CHARS = 500


@dataclass(frozen=True)
class FailureRun:
    """How many turns in a row this site's command failed, and how the last of them ended."""

    count: int = 0
    last_exit_code: Optional[int] = None
    last_turn: Optional[int] = None


def after_turn(run: FailureRun, how: str, exit_code: Optional[int], turn: int) -> FailureRun:
    """The run after a turn recorded with ``how`` and ``exit_code`` (see the module docstring for what counts)."""
    if how in (Outcome.EXITED, Outcome.FAILED_TO_START) and exit_code not in (0, None):
        return FailureRun(run.count + 1, exit_code, turn)
    if how == Outcome.EXITED and exit_code == 0:
        return FailureRun()
    return run


def drain_due(run: FailureRun, max_failures: Optional[int]) -> bool:
    """The site must drain itself: ``max_failures`` is set and the run has reached it."""
    return max_failures is not None and run.count >= max_failures


def drain_reason(run: FailureRun) -> str:
    """What the registry, ``sites list`` and ``status`` say about a site that drained itself."""
    last = "" if run.last_turn is None else f"turn {run.last_turn}, "
    code = "no exit code" if run.last_exit_code is None else f"exit code {run.last_exit_code}"
    return f"its command failed {run.count} turns in a row (last: {last}{code})"


def self_drained_entry(entry: Mapping[str, Any], site: str, run: FailureRun, now_text: str) -> dict[str, Any]:
    """``site``'s registry ``entry`` drained by ``site`` itself after ``run``: every other field kept as it is."""
    out = dict(entry)
    out.update(drained=True, drained_by=site, drained_at=now_text, drained_reason=drain_reason(run)[:MAX_REASON_CHARS],
               drained_exit_code=run.last_exit_code, drained_failures=run.count)
    return out
