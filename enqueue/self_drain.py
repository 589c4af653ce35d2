"""The site's drain of its own registry entry after ``--max-failures`` failed turns in a row: the writes.

``enqueue.failures`` holds the pure rules (what counts as a failure, when
the drain is due, what the drained entry says); this module keeps the run
of failed turns across the agents of a run-once loop (in the heartbeat) and
writes the drain.

Guarantees
----------
* Once the drain is due, the agent takes no granted turn (``drained`` or
  ``due`` holds) until the entry says drained: the write is a
  compare-and-swap over the registry the view holds (a 409 re-reads and the
  agent decides again), changing my own entry only, the one way the access
  rules allow (``failures.self_drained_entry``).
* Rules that refuse the drain (older than --max-failures) end the agent
  with ``SiteLockedOut`` after it left: it never takes more turns instead.
* After the drain (or finding the entry already drained) the run of failures
  starts again from nothing, so the drain is written once per run.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Callable

from enqueue import documents as docs
from enqueue import failures
from enqueue.errors import Forbidden, SiteLockedOut

if TYPE_CHECKING:
    from enqueue.config import AgentSettings
    from enqueue.documents import Heartbeat
    from enqueue.own_turn import OwnTurn
    from enqueue.shared_docs import SharedDocs
    from enqueue.view import View

log = logging.getLogger("enqueue.agent")


class SelfDrain:
    """One agent's drain of itself; see the module docstring."""

    def __init__(self, settings: AgentSettings, view: View, shared: SharedDocs, own: OwnTurn,
                 now_text: Callable[[], str]) -> None:
        self.s = settings
        self.me = settings.site
        self.view = view
        self.shared = shared
        self.own = own
        self.now_text = now_text

    def carry_on(self, previous: Heartbeat | None) -> None:
        """Go on from the run of failed turns my ``previous`` heartbeat (of the agent before me) says."""
        if previous is not None:
            # A run-once loop starts one agent per turn: the run of failed turns goes on from the last one's.
            self.own.failures = failures.FailureRun(previous.failed_in_a_row, previous.last_failed_exit_code)

    def heartbeat_fields(self) -> dict[str, int | None]:
        """The run of failed turns, as my heartbeat carries it to the next agent of a run-once loop."""
        return {failures.FAILED_IN_A_ROW: self.own.failures.count,
                failures.LAST_FAILED_EXIT_CODE: self.own.failures.last_exit_code}

    def drained(self) -> bool:
        """My registry entry, as the view holds it, says drained."""
        entry = self.view.registry.sites.get(self.me) if self.view.registry else None
        return entry is not None and entry.drained

    def holds_me_out(self) -> bool:
        """I take no granted turn: my entry says drained, or my drain is due."""
        return self.drained() or self.due()

    def due(self) -> bool:
        """My command failed ``max_failures`` turns in a row and I have not drained myself yet."""
        return failures.drain_due(self.own.failures, self.s.max_failures)

    def drain(self, leave: Callable[[], object]) -> bool:
        """Drain my own registry entry (``leave`` first when the rules refuse it); True: decide again."""
        run = self.own.failures
        registry = self.view.registry
        if registry is None or self.me not in registry.sites:
            return False
        if not self.drained():
            stored = registry.raw.get("sites", {}).get(self.me)
            own_heartbeat = docs.heartbeat_id(self.me, self.view.leader_doc)
            entry = dict(stored) if isinstance(stored, dict) else {"heartbeat_doc": own_heartbeat}
            try:
                if not self.shared.cas_own_entry(failures.self_drained_entry(entry, self.me, run, self.now_text())):
                    return True
            except Forbidden as exc:
                # Rules older than --max-failures: taking more turns is what the drain is there to prevent.
                leave()
                raise SiteLockedOut(f"site {self.me} must drain itself ({failures.drain_reason(run)}) but the access "
                                    f"rules refuse it ({exc}); update them with 'enqueue init' (a server admin's "
                                    f"credentials), or drain it with 'enqueue sites CONFIG drain {self.me}'") from None
            log.error("drained site %s: %s; it gets no turn until 'enqueue sites %s undrain %s'", self.me,
                      failures.drain_reason(run), self.s.config_path or "CONFIG", self.me)
        else:
            log.warning("site %s is already drained; its command failed %d turns in a row", self.me, run.count)
        self.own.failures = failures.FailureRun()
        return True
