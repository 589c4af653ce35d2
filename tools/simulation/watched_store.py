"""The simulation's database: ``enqueue.memory_store.MemoryStore``, telling the simulation of every applied write.

``on_change(doc_id, body)`` hears each write that took effect (``None`` for
a deletion), in the order the database applied them: the simulation turns
them into feed deliveries and into the turns' true story. Nothing else is
changed: every call is the memory driver's own.
"""

from __future__ import annotations

from typing import Callable, Dict, List, Optional

from enqueue.memory_store import MemoryStore

ChangeHook = Callable[[str, Optional[dict]], None]


class WatchedStore:
    """A memory-store database whose applied writes are reported to ``on_change``."""

    def __init__(self, seed: int, on_change: ChangeHook) -> None:
        self._store = MemoryStore("sim", seed=seed)
        self._on_change = on_change

    def describe(self) -> str:
        return self._store.describe()

    def check(self) -> dict:
        return self._store.check()

    def copies(self) -> int:
        return self._store.copies()

    def current_seq(self) -> object:
        return self._store.current_seq()

    def get(self, doc_id: str) -> Optional[dict]:
        return self._store.get(doc_id)

    def deleted_rev(self, doc_id: str) -> Optional[str]:
        return self._store.deleted_rev(doc_id)

    def get_many(self, doc_ids: List[str]) -> Dict[str, Optional[dict]]:
        return self._store.get_many(doc_ids)

    def list_prefix(self, prefix: str, *, limit: Optional[int] = None, descending: bool = False) -> List[dict]:
        return self._store.list_prefix(prefix, limit=limit, descending=descending)

    def put(self, doc: dict) -> str:
        rev = self._store.put(doc)
        self._on_change(doc["_id"], self._store.get(doc["_id"]))
        return rev

    def delete(self, doc: dict) -> None:
        self._store.delete(doc)
        self._on_change(doc["_id"], None)

    def close(self) -> None:
        self._store.close()
