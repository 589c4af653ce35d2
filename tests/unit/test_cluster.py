"""A database with more than one copy (n > 1) is refused unless the operator opts in.

On a CouchDB cluster two writers carrying the same ``_rev`` can both be
acknowledged (201 + 202) through different nodes, so a 409 is no
linearizable compare-and-swap (docs/PROTOCOL.md §6.3). The agent reads the database's
``n`` before it writes anything and stops with exit code 6 and one line;
``--allow-cluster`` (or ``[enqueue] allow_cluster = true``) lets it go on.

The store here is a fake that answers only the calls the start-up check
makes and fails the test on any other call before the check has passed,
so "refused" provably means "refused before the first write".
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, List

import pytest

from enqueue import agent_process, cli, couchdb_store, logs
from enqueue.config import load_agent_settings
from enqueue.errors import EXIT_CLUSTER_REFUSED, ClusterRefused
from tests.support.log_state import restore_logging  # noqa: F401  (fixture)

pytestmark = pytest.mark.usefixtures("restore_logging")

PASSWORD = "cluster-secret-9f3"


class Proceeded(Exception):
    """The agent went past the cluster check and made its first write."""


class ClusterStore:
    """Reports ``n`` copies; records every call; the first write raises ``Proceeded``."""

    database = "enqueue"

    def __init__(self, copies: int) -> None:
        self.n = copies
        self.calls: List[str] = []
        self.closed = False

    def check(self) -> dict:
        self.calls.append("check")
        return {"db_name": "enqueue", "cluster": {"n": self.n, "q": 2}, "update_seq": "0"}

    def copies(self) -> int:
        self.calls.append("copies")
        return self.n

    def describe(self) -> str:
        return "database 'enqueue' at http://127.0.0.1:5984"

    def list_prefix(self, prefix: str, *, limit: Any = None, descending: bool = False) -> List[dict]:
        # Read after the check: whether the database ever held a turn (it did not).
        self.calls.append(f"list {prefix}")
        return []

    def deleted_rev(self, doc_id: str) -> Any:
        # Read after the check too: whether the leader doc was deleted (it never existed).
        self.calls.append(f"deleted_rev {doc_id}")
        return None

    def put(self, doc: dict) -> str:
        self.calls.append(f"put {doc.get('_id')}")
        raise Proceeded(doc.get("_id"))

    def close(self) -> None:
        self.closed = True

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"unexpected store call before the cluster check: {name}")


@pytest.fixture
def config(tmp_path: Path) -> str:
    path = tmp_path / "enqueue.ini"
    path.write_text(
        "[couchdb]\nurl = http://127.0.0.1:5984\ndatabase = enqueue\n"
        f"username = admin\npassword = {PASSWORD}\n"
    )
    path.chmod(0o600)
    return str(path)


def settings(config: str, **overrides: Any):
    return load_agent_settings(config, "alpha", ["true"], overrides, {})


@pytest.mark.parametrize("copies", [2, 3])
def test_the_agent_refuses_a_database_with_several_copies_before_any_write(config, copies) -> None:
    store = ClusterStore(copies)
    with pytest.raises(ClusterRefused) as caught:
        agent_process.run(settings(config), store)
    message = str(caught.value)
    assert f"n={copies}" in message and "\n" not in message
    assert "PUT /enqueue?n=1&q=1" in message  # ?n=1 alone would let q spread the shards over nodes
    assert caught.value.exit_code == EXIT_CLUSTER_REFUSED == 6
    assert [c for c in store.calls if c.startswith("put")] == []


def test_one_copy_is_not_refused(config) -> None:
    store = ClusterStore(1)
    with pytest.raises(Proceeded):
        agent_process.run(settings(config), store)


@pytest.mark.parametrize("how", ["flag", "file"])
def test_the_opt_in_lets_the_agent_go_on(config, how) -> None:
    if how == "file":
        with open(config, "a") as handle:
            handle.write("[enqueue]\nallow_cluster = yes\n")
        s = settings(config)
    else:
        s = settings(config, allow_cluster=True)
    assert s.allow_cluster is True
    store = ClusterStore(3)
    with pytest.raises(Proceeded):
        agent_process.run(s, store)
    assert store.calls[:2] == ["check", "copies"]


def test_allow_cluster_is_off_by_default(config) -> None:
    assert settings(config).allow_cluster is False


def test_the_command_line_exits_6_with_one_line_and_no_secret(config, monkeypatch, capsys) -> None:
    store = ClusterStore(3)
    monkeypatch.setattr(couchdb_store, "open_store", lambda connection: store)
    code = cli.main(["run", config, "alpha", "--", sys.executable, "-c", "pass"])
    out, err = capsys.readouterr()
    assert code == EXIT_CLUSTER_REFUSED
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("enqueue: ") and "n=3" in lines[0]
    assert PASSWORD not in out + err
    assert "Traceback" not in err
    assert store.closed


def test_the_command_line_opt_in_reaches_the_first_write(config, monkeypatch, capsys) -> None:
    store = ClusterStore(3)
    monkeypatch.setattr(couchdb_store, "open_store", lambda connection: store)
    code = cli.main(["run", config, "alpha", "--allow-cluster", "--", sys.executable, "-c", "pass"])
    err = capsys.readouterr().err
    # The fake store's first write fails the run on purpose: proof the check let it through.
    assert code == 1 and "Proceeded" in err
    assert [c for c in store.calls if not c.startswith(("list ", "deleted_rev "))][:3] == ["check", "copies",
                                                                                      "put enqueue_leader"]


def test_a_bad_allow_cluster_value_is_a_config_error(config, capsys) -> None:
    with open(config, "a") as handle:
        handle.write("[enqueue]\nallow_cluster = perhaps\n")
    code = cli.main(["run", config, "alpha", "--", "true"])
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and "allow_cluster" in err
