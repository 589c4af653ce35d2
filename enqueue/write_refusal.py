"""A write the server refused (403, 401): said in my heartbeat while it lasts, or the end when none can ever pass.

Guarantees
----------
* A refusal that no write of this site can get past as configured
  (``security.locks_out``: its own heartbeat refused) ends the agent with
  ``SiteLockedOut`` (exit 4) instead of a retry forever.
* Any other refusal is said in the heartbeat's message (``status`` shows it)
  and cleared only once a heartbeat has carried it and a later step went
  through; a message that is not a refusal is never cleared here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from enqueue import security
from enqueue.errors import SiteLockedOut, StoreError

if TYPE_CHECKING:
    from enqueue.lease import Lease

REFUSED = "refused by the server: "


class WriteRefusal:
    """The refusal my heartbeat says, if any; see the module docstring."""

    def __init__(self, me: str, lease: Lease) -> None:
        self.me = me
        self.lease = lease
        self.refused_at_beat = 0

    def refused(self, exc: StoreError) -> None:
        """Say in the heartbeat (status shows it) that a write was refused; end with exit 4 if none can ever pass."""
        if security.locks_out(str(exc), self.lease.doc_id):
            raise SiteLockedOut(f"{exc}; site {self.me} cannot take part with these credentials and documents")
        self.lease.message = f"{REFUSED}{exc}"
        self.refused_at_beat = self.lease.beat_count

    def over(self) -> None:
        """Clear the refusal from the heartbeat once one heartbeat has carried it and a step has gone through."""
        message = self.lease.message
        if message is not None and message.startswith(REFUSED) and self.lease.beat_count > self.refused_at_beat + 1:
            self.lease.message = None
