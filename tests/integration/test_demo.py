"""scripts/demo.py, the first thing a newcomer runs: its order, its summary, and what it leaves behind."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from enqueue import errors
from tests.support import servers

DEMO = Path(__file__).resolve().parents[2] / "scripts" / "demo.py"
ROW = re.compile(r"^\s*(\d+)\s+(\S+)\s+\d\d:\d\d:\d\d\.\d{3}\s")
COUNT = re.compile(r"^  (\S+)\s+(\d+) turns?$")
SITES = ["alpha", "bravo", "charlie"]


def demo_argv(*args: str) -> list[str]:
    return [sys.executable, str(DEMO), "--work", "0.1", *args]


def environment(tmp: Path) -> dict[str, str]:
    tmp.mkdir(exist_ok=True)
    return {**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, "TMPDIR": str(tmp)}


def rows(out: str) -> list[tuple[int, str]]:
    return [(int(m.group(1)), m.group(2)) for m in map(ROW.match, out.splitlines()) if m]


def counts(out: str) -> dict[str, int]:
    summary = out.split("\nsummary\n", 1)[1]
    return {m.group(1): int(m.group(2)) for m in map(COUNT.match, summary.splitlines()) if m}


def server_options(server: servers.CouchServer, directory: Path) -> list[str]:
    if server.username is None:
        return []
    password_file = directory / "admin-password"
    password_file.write_text((server.password or "") + "\n")
    password_file.chmod(0o600)
    return ["--username", server.username, "--password-file", str(password_file)]


def test_on_a_real_server_turn_1_goes_to_alpha_in_order_and_nothing_is_left_behind(couch_server, tmp_path):
    tmp = tmp_path / "tmp"
    result = subprocess.run(
        demo_argv("--turns", "6", "--url", couch_server.url, *server_options(couch_server, tmp_path)),
        env=environment(tmp), capture_output=True, text=True, timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert rows(result.stdout) == list(enumerate(SITES * 2, start=1)), result.stdout
    assert counts(result.stdout) == {"alpha": 2, "bravo": 2, "charlie": 2}
    assert "overlaps found: 0" in result.stdout
    assert list(tmp.iterdir()) == []  # the working folder is gone
    database = re.search(r"database (enqueue_demo_[0-9a-f]+) \(deleted at the end\)", result.stdout).group(1)
    store = couch_server.store(database)
    try:
        with pytest.raises(errors.DatabaseMissing):
            store.check()
    finally:
        store.close()


def test_interrupted_its_summary_counts_exactly_the_rows_shown(tmp_path):
    """On its own embedded server; Ctrl-C (SIGINT) mid-run, as a newcomer would."""
    tmp = tmp_path / "tmp"
    proc = subprocess.Popen(demo_argv("--turns", "1000"), env=environment(tmp), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        seen = []
        for line in proc.stdout:  # type: ignore[union-attr]
            seen.append(line)
            if len(rows("".join(seen))) == 4:
                break
        proc.send_signal(signal.SIGINT)
        rest = proc.stdout.read()  # type: ignore[union-attr]
        assert proc.wait(timeout=60) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()  # type: ignore[union-attr]
    out = "".join(seen) + rest
    shown = rows(out)
    assert [site for _, site in shown[:4]] == SITES + ["alpha"], out
    tally = {site: sum(1 for _, s in shown if s == site) for site in SITES}
    assert counts(out) == {site: n for site, n in tally.items() if n}, out
    assert list(tmp.iterdir()) == []
