"""The embedded dev server: starts, answers, keeps data on disk, stops without leftovers."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import textwrap
import urllib.request
from pathlib import Path

import psutil
import pytest

from enqueue import devserver as devserver_module
from enqueue import errors
from enqueue.couchdb_store import CouchStore
from enqueue.devserver import DevServer, DevServerError
from tests.support.processes import reap


def answers(url: str) -> dict:
    with urllib.request.urlopen(url + "/", timeout=5) as response:
        return json.loads(response.read().decode("utf-8"))


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_an_in_memory_server_starts_answers_and_stops_without_leftovers():
    server = DevServer()
    with server:
        assert server.running and server.url.startswith("http://127.0.0.1:")
        assert "version" in answers(server.url)
        pid = server.pid
        workdir = server._workdir
        assert workdir is not None and workdir.is_dir()
        assert Path(psutil.Process(pid).cwd()) == workdir, "the server runs in its private directory"
    assert not server.running
    assert gone(pid)
    assert not workdir.exists()
    with pytest.raises(OSError):
        answers(server.url)


def test_a_continuous_changes_feed_is_cancelled_when_its_client_goes_away():
    """As CouchDB does; pouchdb-server alone would run the feed at every write for the rest of its life."""
    import http.client
    import time

    with DevServer() as server:
        store = CouchStore(server.url, "feeds")
        store.create_database()
        host, port = server.url.split("//")[1].split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        conn.request("POST", "/feeds/_changes?feed=continuous&filter=_doc_ids&heartbeat=200",
                     body=json.dumps({"doc_ids": ["a"]}), headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        assert response.status == 200
        response.read1(1)  # the feed is open and served (a heartbeat's newline)
        output = server._workdir / "output.txt"
        assert "cancelled the continuous changes feed" not in output.read_text()
        conn.close()
        deadline = time.monotonic() + 20
        while "cancelled the continuous changes feed" not in output.read_text():
            assert time.monotonic() < deadline, f"the feed was never cancelled: {server._output_tail()}"
            time.sleep(0.05)
        store.put({"_id": "a"})
        assert "version" in answers(server.url), "the server goes on serving after the cancel and a write"


def test_on_disk_data_survives_a_restart(disk_server):
    store = disk_server.store("kept")
    try:
        store.create_database()
        doc = {"_id": "leader", "turn": 7}
        store.put(doc)
        old_pid = disk_server.devserver.pid
        disk_server.restart()
        assert disk_server.devserver.pid != old_pid and gone(old_pid)
        assert store.get("leader") == doc
        assert answers(disk_server.url)["pouchdb-adapters"] != ["memory"]
    finally:
        store.close()
    assert any(disk_server.devserver.data_dir.iterdir())


def test_the_admin_account_works_and_its_password_stays_off_the_command_line():
    password = "pw-" + os.urandom(6).hex()
    with DevServer(admin_user="boss", admin_password=password) as server:
        assert password not in " ".join(psutil.Process(server.pid).cmdline())
        assert password not in (server._workdir / "config.json").read_text(), "stored hashed"
        assert password not in repr(server)
        admin = CouchStore(server.url, "db", username="boss", password=password)
        stranger = CouchStore(server.url, "db", username="boss", password="nope")
        try:
            assert admin.create_database() is True
            with pytest.raises(errors.AuthFailed):
                stranger.check()
            assert admin.check()["db_name"] == "db"
        finally:
            admin.close()
            stranger.close()


def test_an_in_memory_server_refuses_to_restart():
    server = DevServer()
    with pytest.raises(DevServerError, match="data_dir"):
        server.restart()


def test_a_missing_executable_says_to_run_bootstrap(monkeypatch, tmp_path):
    monkeypatch.delenv(devserver_module.ENV_EXECUTABLE, raising=False)
    monkeypatch.setattr(devserver_module, "BUNDLED_EXECUTABLE", tmp_path / "absent")
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(DevServerError, match="scripts/bootstrap"):
        devserver_module.find_executable()
    monkeypatch.setenv(devserver_module.ENV_EXECUTABLE, str(tmp_path / "nowhere"))
    with pytest.raises(DevServerError, match=devserver_module.ENV_EXECUTABLE):
        DevServer().start()


STUBBORN_SERVER = """\
#!{python}
# Stands in for pouchdb-server: answers GET / with the configured uuid,
# accepts every PUT (the _users rules), ignores SIGTERM, and has a child in
# its process group.
import json, signal, subprocess, sys, time
from http.server import BaseHTTPRequestHandler, HTTPServer
args = sys.argv[1:]
port = int(args[args.index("--port") + 1])
config = json.load(open(args[args.index("--config") + 1]))
signal.signal(signal.SIGTERM, signal.SIG_IGN)
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
open("child.pid", "w").write(str(child.pid))
class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({{"uuid": config["couchdb"]["uuid"], "version": "stub"}}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def do_PUT(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(201)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{{}}")
    def log_message(self, *a):
        pass
HTTPServer(("127.0.0.1", port), Handler).serve_forever()
"""


def test_stop_kills_a_server_that_ignores_sigterm_and_its_whole_group(tmp_path):
    script = tmp_path / "stubborn-server"
    script.write_text(STUBBORN_SERVER.format(python=sys.executable))
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    server = DevServer(executable=str(script), stop_grace_s=0.5)
    server.start()
    pid = server.pid
    child_pid = int((server._workdir / "child.pid").read_text())
    assert answers(server.url)["version"] == "stub"
    server.stop()
    assert gone(pid)
    psutil.wait_procs([p for p in [_process(child_pid)] if p], timeout=5)
    assert gone(child_pid)


def _process(pid: int):
    try:
        return psutil.Process(pid)
    except psutil.NoSuchProcess:
        return None


DEV_SERVER_COMMAND = textwrap.dedent(
    """\
    import argparse, sys
    from enqueue.commands import dev_server
    parser = argparse.ArgumentParser()
    dev_server.configure(parser)
    sys.exit(dev_server.execute(parser.parse_args(sys.argv[1:])))
    """
)


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_the_dev_server_command_prints_its_url_and_stops_cleanly(tmp_path, stop_signal):
    password_file = tmp_path / "pw"
    password_file.write_text("cmd-secret\n")
    proc = subprocess.Popen(
        [sys.executable, "-c", DEV_SERVER_COMMAND, "--data", str(tmp_path / "data"),
         "--admin-user", "admin", "--admin-password-file", str(password_file)],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:"), proc.stderr.read() if proc.poll() is not None else url
        assert "version" in answers(url)
        node = psutil.Process(proc.pid).children(recursive=True)
        assert node, "the server runs as a child of the command"
        store = CouchStore(url, "x", username="admin", password="cmd-secret")
        try:
            assert store.create_database() is True
        finally:
            store.close()
        proc.send_signal(stop_signal)
        assert proc.wait(timeout=20) == 0
        assert all(gone(p.pid) for p in node)
    finally:
        reap(proc)


def test_the_dev_server_command_says_why_the_server_ended():
    proc = subprocess.Popen([sys.executable, "-m", "enqueue", "dev-server"], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:"), proc.stderr.read() if proc.poll() is not None else url
        node = [p for p in psutil.Process(proc.pid).children(recursive=True) if "node" in p.name()]
        assert node, "pouchdb-server runs under the command"
        for process in node:
            process.kill()
        assert proc.wait(timeout=20) == 1
        err = proc.stderr.read().strip().splitlines()
        assert err[-1].startswith(f"enqueue: pouchdb-server on {url} ended unexpectedly: killed by signal SIGKILL; "
                                  "its last output: "), err
    finally:
        reap(proc)


def test_a_server_that_cannot_start_says_its_exit_code_and_last_output(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(DevServerError) as info:
            DevServer(port=port).start()
    message = str(info.value)
    assert message.startswith(f"pouchdb-server on port {port} ended while starting: exit code "), message
    assert "its last output: " in message and "in use" in message
