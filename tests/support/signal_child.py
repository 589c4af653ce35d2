"""One process that runs a real agent again and again, for the stop-signal test.

``python -m tests.support.signal_child SITE ROUNDS`` runs the agent of SITE
(``--repeat``, short timings, ``sleep 0.05`` as its command) ROUNDS times in
a row, through the real process driver: its signal handling, its inbox, the
feed thread and a real command supervisor. It prints ``ready`` when an agent
has registered (its stop-signal handlers are in place by then) and ``exit
CODE`` when that agent has returned; the test process sends the signals.

The agents share the in-memory store driver: what is under test is how a
process takes its stop signals, not coordination, and a store that answers
at once is what makes hundreds of agent lives affordable.
``faulthandler`` dumps every thread's stack to stderr on SIGUSR1, so a hang
shows where it hangs.
"""

from __future__ import annotations

import faulthandler
import logging
import signal
import sys

from enqueue import agent_process
from enqueue.config import AgentSettings, Connection, Timing
from enqueue.memory_store import MemoryStore


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
    store = MemoryStore("signals")
    for _ in range(rounds):
        print(f"exit {agent_process.run(settings, store)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
