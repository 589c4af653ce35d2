"""Stop signals in quick succession never hang a stopping agent.

Found: in a site loop under screen or tmux, Ctrl-C sends SIGINT to the whole
foreground group and the loop then forwards SIGTERM. The agent's signal
handler put the signal into a ``queue.Queue``; the second signal's handler
ran inside the first one's ``put`` and waited forever on the queue's lock,
which the same thread held (about 1 stop in 24 with the signals 0.1 ms
apart). Only SIGKILL ended it, and the site held its turn until its lease ran
out.

Now: the handler only appends the signal number to a deque (no lock), and
the interpreter's own handler wakes the agent through a self-pipe
(``signal.set_wakeup_fd``).

The test sends 200 pairs, SIGINT then SIGTERM a random fraction of a
millisecond apart, each at a random moment of a real agent's life (waiting,
beating, running its command, finishing a turn), from another process, in
four lanes at once. Each lane is one process that runs the real agent and
its process driver (signal handling, feed thread, command supervisor) once
per pair, on the in-memory store driver (tests/support/signal_child.py); every
agent must return ``128 + signal`` on its own. A hang is reported with the
stacks of its threads.
"""

from __future__ import annotations

import os
import queue
import random
import signal
import subprocess
import sys
import threading
import time

PAIRS = 200
LANES = 4
# Far longer than a clean stop takes (the command's kill grace, then a few writes), even under load.
EXIT_TIMEOUT_S = 20.0
HEARTBEAT_DELAY_S = 0.5


def _signal_pair(pid: int, gap_s: float) -> None:
    """SIGINT, then SIGTERM ``gap_s`` later (a busy wait: a sleep would be far too coarse)."""
    os.kill(pid, signal.SIGINT)
    until = time.perf_counter() + gap_s
    while time.perf_counter() < until:
        pass
    os.kill(pid, signal.SIGTERM)


class Lane:
    """One child process running agents of one site in a row, and its answers line by line."""

    def __init__(self, site: str, rounds: int, log_path) -> None:
        self.log_path = log_path
        with open(log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tests.support.signal_child", site, str(rounds)],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log, text=True)
        self.lines: "queue.Queue[str]" = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.strip())
        self.lines.put("eof")

    def next_line(self, timeout_s: float) -> str:
        try:
            return self.lines.get(timeout=timeout_s)
        except queue.Empty:
            return "hung"

    def dump_stacks(self) -> None:
        """Have a hung child write every thread's stack into its log (faulthandler on SIGUSR1)."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGUSR1)
            until = time.monotonic() + 10
            while "Thread 0x" not in self.log_path.read_text(errors="replace") and time.monotonic() < until:
                time.sleep(0.05)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        self._reader.join(10)


def test_sigint_then_sigterm_at_random_moments_never_hangs_a_stopping_agent(tmp_path):
    seed = int(os.environ.get("ENQUEUE_TEST_SEED", random.randrange(1 << 30)))
    print(f"seed {seed}")
    rounds = PAIRS // LANES
    lanes = [Lane(f"lane{i}", rounds, tmp_path / f"lane{i}.log") for i in range(LANES)]
    outcomes: dict[int, list[str]] = {i: [] for i in range(LANES)}

    def drive(index: int) -> None:
        lane, rng = lanes[index], random.Random(seed + index)
        for _ in range(rounds):
            ready = lane.next_line(60.0)
            if ready != "ready":
                outcomes[index].append(f"not ready: {ready}")
                return
            time.sleep(rng.uniform(0.0, 1.5 * HEARTBEAT_DELAY_S))  # the moment of the agent's life the pair lands in
            _signal_pair(lane.proc.pid, rng.uniform(0.0, 0.0003))
            answer = lane.next_line(EXIT_TIMEOUT_S)
            outcomes[index].append(answer)
            if not answer.startswith("exit "):
                lane.dump_stacks()
                return

    threads = [threading.Thread(target=drive, args=(i,)) for i in range(LANES)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        for lane in lanes:
            lane.kill()
    clean = {f"exit {128 + signal.SIGINT}", f"exit {128 + signal.SIGTERM}"}
    unclean = {i: [a for a in answers if a not in clean] for i, answers in outcomes.items()}
    logs = {lane.log_path.name: lane.log_path.read_text(errors="replace") for lane in lanes}
    hung = {name: text[text.find("Thread 0x"):][:3000] for name, text in logs.items() if "Thread 0x" in text}
    assert sum(len(a) for a in outcomes.values()) == PAIRS and not any(unclean.values()), \
        f"seed {seed}: stops that did not end cleanly, by lane: {unclean}; stacks: {hung}"
    assert not any("Traceback" in text for text in logs.values())
