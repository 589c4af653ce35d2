"""What enqueue needs from a database: the ``Store`` interface.

Two drivers implement it: ``enqueue.couchdb_store.CouchStore`` (CouchDB over
HTTP, the only module that imports the CouchDB client) and
``enqueue.memory_store.MemoryStore`` (in this process, for unit tests and the
simulation). The contract suite, tests/integration/test_store.py, runs against
both: whatever the protocol relies on is written down there.

The contract, in short:

* A document is a JSON object with a string ``_id``; a stored one carries
  ``_rev``, ``N-hex`` where ``N`` counts the document's writes (a deletion
  and the re-creation after it included).
* ``put`` is a compare-and-swap: with ``_rev`` it wins only if that is still
  the current revision; without ``_rev`` it creates the document only if it
  is absent (missing or deleted). A lost swap raises ``errors.Conflict`` and
  leaves the caller's dict as it was; a won one sets its ``_rev``.
* Reads say "absent" (None) for missing and deleted documents alike;
  ``deleted_rev`` tells the two apart: a deleted document has a tombstone,
  a revision like any other (its ``N`` counts the deletion too).
* Every write, a deletion included, moves the database's update sequence
  forward; the changes calls report the watched documents written after a
  position (``since``), a deletion as ``None``.
* Every failure is an ``errors.StoreError`` (``Unreachable``,
  ``AuthFailed``, ``Forbidden``, ``DatabaseMissing``, ``Conflict``) whose
  one-line message names the database and never a password.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Iterable, Iterator, List, Optional, Protocol, Union, runtime_checkable

__all__ = ["ChangeBatch", "Seq", "Store"]

#: A position in a database's changes feed, usable as ``since``: opaque to
#: callers (CouchDB 2+ answers strings, pouchdb-server and the memory driver
#: integers); ``0`` is the beginning.
Seq = Union[int, str]


@dataclass(frozen=True)
class ChangeBatch:
    """What one changes wait saw.

    ``docs`` maps each watched document that changed to its current body, or
    to ``None`` when it was deleted; it is empty when the wait timed out (or,
    on a followed feed, at a beat). ``last_seq`` is where the next wait
    should start (``since``).
    """

    docs: Dict[str, Optional[dict]] = field(default_factory=dict)
    last_seq: Optional[Seq] = None


@runtime_checkable
class Store(Protocol):
    """One database, reached with one set of credentials.

    Safe to use from two threads at once (the agent's deciding thread and its
    feed thread). No string it produces (``describe``, error messages)
    contains a password.
    """

    # ------------------------------------------------------------- naming

    @property
    def database(self) -> str:
        """The database name."""
        ...

    @property
    def url(self) -> str:
        """The server's URL, without credentials."""
        ...

    def describe(self) -> str:
        """``database 'x' at URL``, for messages; never a secret."""
        ...

    def __enter__(self) -> "Store":
        ...

    def __exit__(self, *exc_info: object) -> None:
        ...

    def close(self) -> None:
        """Release every resource; a wait pending on another thread ends with StoreError, later calls fail."""
        ...

    # ----------------------------------------------------------- database

    def check(self) -> dict:
        """The database's info document (``db_name``, ``update_seq``, ...); raises when it cannot be read."""
        ...

    def copies(self) -> int:
        """How many copies of each document the database keeps (1 unless a cluster says more)."""
        ...

    def current_seq(self) -> Optional[Seq]:
        """The database's current update sequence, usable as ``since``."""
        ...

    def create_database(self) -> bool:
        """Create the database (on a cluster: one copy, one shard); True if it was created, False if it existed."""
        ...

    def shards(self) -> Optional[Dict[str, List[str]]]:
        """Shard range -> the nodes holding a copy of it; None when the server reports none (a single node)."""
        ...

    def delete_database(self) -> None:
        """Delete the database and everything in it; no error when it does not exist."""
        ...

    def get_security(self) -> dict:
        """The database's ``_security`` object (``{}`` when none is set)."""
        ...

    def put_security(self, security: dict) -> None:
        """Replace the database's ``_security`` object."""
        ...

    # ---------------------------------------------------------- documents

    def get(self, doc_id: str) -> Optional[dict]:
        """The document's current revision, or None when it is missing or deleted."""
        ...

    def deleted_rev(self, doc_id: str) -> Optional[str]:
        """The revision of the document's tombstone when it is deleted; None when it is live or was never written.

        A deletion is a revision: deleting the document again after it was
        re-created gives another one, of a higher ``N``.
        """
        ...

    def get_many(self, doc_ids: List[str]) -> Dict[str, Optional[dict]]:
        """Every asked-for id -> its body, or None when missing or deleted; ``{}`` for no ids."""
        ...

    def list_prefix(self, prefix: str, *, limit: Optional[int] = None, descending: bool = False) -> List[dict]:
        """Live documents whose id starts with ``prefix``, in id order (reversed when
        ``descending``), at most ``limit``."""
        ...

    def put(self, doc: dict) -> str:
        """Compare-and-swap (with ``_rev``) or create-if-absent (without); returns and sets the new ``_rev``.

        Raises Conflict when the swap is lost, leaving ``doc`` unchanged.
        """
        ...

    def delete(self, doc: dict) -> None:
        """Delete the document if ``doc['_rev']`` is still its current revision, else raise Conflict.

        The deletion is a write: it moves the update sequence and shows in the changes.
        """
        ...

    # ------------------------------------------------------------ changes

    def wait_changes(self, doc_ids: Iterable[str], since: Optional[Seq], timeout_s: float) -> ChangeBatch:
        """Wait until one of ``doc_ids`` changes after ``since``, at most ``timeout_s``.

        Returns at once when a watched document changed after ``since``
        already, with the current body of every watched document that did;
        an empty batch once ``timeout_s`` has passed without one.
        """
        ...

    def follow_changes(
        self, doc_ids: Iterable[str], since: Optional[Seq], *, heartbeat_s: float
    ) -> Iterator[ChangeBatch]:
        """Follow the changes of ``doc_ids`` from ``since``, one batch per change as it lands.

        Between changes it yields an empty batch carrying the last position
        at most ``heartbeat_s`` apart, so the caller can stop or subscribe
        again with other ids. Closing the generator ends the subscription.
        """
        ...
