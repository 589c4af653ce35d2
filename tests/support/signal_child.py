"""One process that runs a real agent again and again, for the stop-signal test.

``python -m tests.support.signal_child SITE ROUNDS`` runs the agent of SITE
(``--repeat``, short timings, ``sleep 0.05`` as its command) ROUNDS times in
a row, through the real process driver: its signal handling, its inbox, the
feed thread and a real command supervisor. It prints ``ready`` when an agent
has registered (its stop-signal handlers are in place by then) and ``exit
CODE`` when that agent has returned; the test process sends the signals.

The agents share a small in-process store (``TinyStore``): what is under
test is how a process takes its stop signals, not coordination, and a store
that answers at once is what makes hundreds of agent lives affordable.
``faulthandler`` dumps every thread's stack to stderr on SIGUSR1, so a hang
shows where it hangs.
"""

from __future__ import annotations

import copy
import faulthandler
import logging
import signal
import sys
import threading
from typing import Iterator

from enqueue import agent as agent_module
from enqueue.config import AgentSettings, Connection, Timing
from enqueue.errors import Conflict
from enqueue.store import ChangeBatch


class TinyStore:
    """Documents in a dict with CouchDB's compare-and-swap on ``_rev`` and a changes feed."""

    def __init__(self) -> None:
        self._docs: dict[str, dict] = {}
        self._seq = 0
        self._changed: list[tuple[int, str]] = []
        self._cond = threading.Condition()

    def check(self) -> dict:
        return {}

    def copies(self) -> int:
        return 1

    def describe(self) -> str:
        return "an in-process test store"

    def current_seq(self) -> int:
        with self._cond:
            return self._seq

    def get(self, doc_id: str) -> dict | None:
        with self._cond:
            doc = self._docs.get(doc_id)
            return copy.deepcopy(doc) if doc is not None else None

    def get_many(self, doc_ids: list[str]) -> dict[str, dict | None]:
        return {doc_id: self.get(doc_id) for doc_id in doc_ids}

    def list_prefix(self, prefix: str, *, limit: int | None = None, descending: bool = False) -> list[dict]:
        with self._cond:
            ids = sorted((i for i in self._docs if i.startswith(prefix)), reverse=descending)[:limit]
            return [copy.deepcopy(self._docs[i]) for i in ids]

    def put(self, doc: dict) -> str:
        with self._cond:
            current = self._docs.get(doc["_id"])
            if (current or {}).get("_rev") != doc.get("_rev"):
                raise Conflict(f"{doc['_id']}: conflict")
            generation = int(str(current["_rev"]).split("-")[0]) + 1 if current else 1
            rev = f"{generation}-{self._seq + 1}"
            self._docs[doc["_id"]] = {**copy.deepcopy(doc), "_rev": rev}
            self._seq += 1
            self._changed.append((self._seq, doc["_id"]))
            self._cond.notify_all()
            return rev

    def follow_changes(self, doc_ids, since, *, heartbeat_s: float) -> Iterator[ChangeBatch]:
        watched = set(doc_ids)
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._seq > since, timeout=heartbeat_s)
                ids = {i for seq, i in self._changed if seq > since and i in watched}
                batch = ChangeBatch({i: copy.deepcopy(self._docs.get(i)) for i in sorted(ids)}, self._seq)
            since = batch.last_seq
            yield batch

    def close(self) -> None:
        pass


def _runner_on(store: TinyStore):
    """The real process driver run on ``store`` (the agent before that driver existed: the same, run against it)."""
    if hasattr(agent_module, "run_agent"):
        return lambda settings: agent_module.Agent(settings, store).run()  # type: ignore[attr-defined]
    from enqueue import agent_process

    return lambda settings: agent_process.run(settings, store)


class _SayReady(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("registered as site"):
            print("ready", flush=True)


def main(argv: list[str]) -> int:
    site, rounds = argv[0], int(argv[1])
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s " + site + " %(levelname)s %(message)s")
    logging.getLogger().addHandler(_SayReady())
    settings = AgentSettings(site=site, command=["sleep", "0.05"], repeat=True,
                             connection=Connection("http://127.0.0.1:9", "unused"),
                             timing=Timing(heartbeat_delay_s=0.5, heartbeat_stale_s=2.0, conflict_delay_s=0.2,
                                           kill_grace_s=0.3))
    run = _runner_on(TinyStore())
    for _ in range(rounds):
        print(f"exit {run(settings)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
