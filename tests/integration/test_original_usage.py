"""The original tool's command line against the real server: timings it accepted still run, as it ran them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from enqueue import documents as docs

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "enqueue_command.py"


def test_stale_exactly_twice_the_delay_runs_beating_more_often_and_logs_it(config_file, database, tmp_path):
    """-d 0.02 -s 0.04 (1.2 s and 2.4 s, the shape of the original's -d 10 -s 20) was refused with exit 2."""
    log_file = tmp_path / "agent.log"
    out = tmp_path / "ran"
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "-d", "0.02", "-s", "0.04", "--log-file", str(log_file),
         str(config_file), "alpha", "--", "sh", "-c", f'echo "$ENQUEUE_TURN" > {out}'],
        capture_output=True, text=True, timeout=60, env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
    )
    assert result.returncode == 0, result.stderr
    assert out.read_text() == "1\n"
    notes = [line for line in log_file.read_text().splitlines() if "instead of every" in line]
    assert len(notes) == 1 and notes[0].endswith(
        "alpha INFO heartbeat every 0.8 s instead of every 1.2 s: heartbeat_stale (2.4 s) needs more than "
        "2 x heartbeat_delay, with room for the kill grace and a late heartbeat (the delay is the longest time "
        "between beats)")
    hb, _ = docs.parse_heartbeat(database.store.get(docs.heartbeat_id("alpha")), "alpha")
    assert hb is not None and hb.heartbeat_delay_s == pytest.approx(0.8) and hb.heartbeat_stale_s == 2.4
