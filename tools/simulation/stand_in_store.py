"""A stand-in for ``enqueue.memory_store.MemoryStore`` until that driver lands.

One database in memory with a single CouchDB node's rules: a write carrying
the current ``_rev`` wins, any other write to an existing document is a
``Conflict``; a write without ``_rev`` creates the document only when it is
missing or deleted; revisions count up across a deletion (``4-...`` deleted,
``5-...`` created again), as CouchDB's do. Bodies are copied in and out, so
no caller shares a dictionary with the store. ``on_change`` hears every
applied write (the id and the new body, ``None`` for a deletion).
"""

from __future__ import annotations

import json
from typing import Callable, Dict, List, Optional

from enqueue.errors import Conflict

ChangeHook = Callable[[str, Optional[dict]], None]


def _copy(body: dict) -> dict:
    return json.loads(json.dumps(body))


class StandInStore:
    """The store methods the agent calls, on documents held in memory."""

    def __init__(self, name: str = "sim") -> None:
        self.name = name
        self._docs: Dict[str, dict] = {}
        self._generation: Dict[str, int] = {}
        self._seq = 0
        self.on_change: Optional[ChangeHook] = None

    def describe(self) -> str:
        return f"database {self.name!r} in memory"

    def check(self) -> dict:
        return {"db_name": self.name, "update_seq": self._seq, "doc_count": len(self._docs)}

    def copies(self) -> int:
        return 1

    def current_seq(self) -> int:
        return self._seq

    def get(self, doc_id: str) -> Optional[dict]:
        body = self._docs.get(doc_id)
        return None if body is None else _copy(body)

    def get_many(self, doc_ids: List[str]) -> Dict[str, Optional[dict]]:
        return {doc_id: self.get(doc_id) for doc_id in dict.fromkeys(doc_ids)}

    def list_prefix(self, prefix: str, *, limit: Optional[int] = None, descending: bool = False) -> List[dict]:
        ids = sorted((i for i in self._docs if i.startswith(prefix)), reverse=descending)
        if limit is not None:
            ids = ids[:limit]
        return [_copy(self._docs[i]) for i in ids]

    def put(self, doc: dict) -> str:
        doc_id = doc["_id"]
        current = self._docs.get(doc_id)
        rev = doc.get("_rev")
        if current is None and rev is not None or current is not None and rev != current["_rev"]:
            raise Conflict(f"document {doc_id!r} in {self.describe()}: write: conflict")
        gen = self._generation.get(doc_id, 0) + 1
        self._seq += 1
        new_rev = f"{gen}-{self._seq:08x}"
        stored = _copy(doc)
        stored["_rev"] = new_rev
        self._docs[doc_id] = stored
        self._generation[doc_id] = gen
        doc["_rev"] = new_rev
        self._changed(doc_id, stored)
        return new_rev

    def delete(self, doc: dict) -> None:
        doc_id = doc["_id"]
        current = self._docs.get(doc_id)
        if current is None or doc.get("_rev") != current["_rev"]:
            raise Conflict(f"document {doc_id!r} in {self.describe()}: delete: conflict")
        del self._docs[doc_id]
        self._generation[doc_id] = self._generation.get(doc_id, 0) + 1
        self._seq += 1
        self._changed(doc_id, None)

    def close(self) -> None:
        pass

    def _changed(self, doc_id: str, body: Optional[dict]) -> None:
        if self.on_change is not None:
            self.on_change(doc_id, None if body is None else _copy(body))
