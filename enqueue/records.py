"""Turn records: one document per finished turn, written once by the site or the leader that ended it.

``write_once`` creates the record of a turn, or completes what is already
stored under its id, so that ``enqueue history`` can read every turn:

* an identical try whose answer was lost: nothing left to do;
* the leader's record of taking the turn away (``revoked``, ``not
  started``), when the writer is the site that ran it: the site's own report
  is added under ``runner_report``, once;
* a document that does not parse, or names another turn: replaced, its old
  content kept under ``replaced``, with a warning.

Not guaranteed: that a record another writer changes at the same moment is
completed; that loses a compare-and-swap, is logged, and the stored record
stays as the other writer left it.

A ``RecordQueue`` holds the records a writer still owes: each is written
now or, if the database is away, at the next ``flush``, in order, and leaves
the queue only once stored.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from enqueue import documents as docs
from enqueue.documents import TurnRecord
from enqueue.errors import Conflict, Forbidden

if TYPE_CHECKING:
    from enqueue.store import Store

log = logging.getLogger("enqueue.records")

_REPORT_FIELDS = ("site", "how", "exit_code", "ended_at", "duration_s")


def write_once(store: Store, rec: TurnRecord, me: str) -> None:
    """Store ``rec`` (written by site ``me``), or complete the record already stored for its turn."""
    body = docs.render_turn_record(rec)
    doc_id = body["_id"]
    try:
        store.put(body)
        return
    except Conflict:
        pass
    existing = store.get(doc_id)
    parsed, problems = docs.parse_turn_record(existing)
    try:
        if existing is None:
            store.put(body)
        elif parsed is None or parsed.turn != rec.turn:
            log.warning("turn record %s does not parse (%s); replacing it, old content kept under 'replaced'",
                        doc_id, "; ".join(problems) or f"it names turn {parsed.turn if parsed else '?'}")
            body["_rev"] = existing["_rev"]
            body["replaced"] = {k: v for k, v in existing.items() if not k.startswith("_")}
            store.put(body)
        elif rec.site == me and parsed.site == rec.site and parsed.how != rec.how \
                and "runner_report" not in existing:
            existing["runner_report"] = {k: body[k] for k in _REPORT_FIELDS}
            store.put(existing)
    except (Conflict, Forbidden) as exc:
        log.warning("could not complete turn record %s: %s", doc_id, exc)


class RecordQueue:
    """The turn records site ``me`` still has to write, oldest first."""

    def __init__(self, store: Store, me: str) -> None:
        self._store = store
        self._me = me
        self.pending: list[TurnRecord] = []

    def add(self, rec: TurnRecord) -> None:
        """Queue ``rec`` and try to write everything queued (a StoreError leaves it queued)."""
        self.pending.append(rec)
        self.flush()

    def write_now(self, rec: TurnRecord) -> None:
        """Write ``rec`` now, outside the queue (a StoreError is the caller's to handle)."""
        write_once(self._store, rec, self._me)

    def flush(self) -> None:
        """Write the queued records in order; stops at the first that fails (StoreError)."""
        while self.pending:
            write_once(self._store, self.pending[0], self._me)
            self.pending.pop(0)
