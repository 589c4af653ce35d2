"""The store interface and its two drivers agree call for call.

What each call does is the contract suite's business
(tests/integration/test_store.py, run on both drivers); here: every call of
``enqueue.store.Store`` exists on both drivers with the same parameters, so
code typed against the interface runs on either.
"""

from __future__ import annotations

import inspect

import pytest

from enqueue.couchdb_store import CouchStore
from enqueue.memory_store import MemoryStore
from enqueue.store import Store

CALLS = sorted(
    name for name, value in vars(Store).items()
    if (callable(value) or isinstance(value, property))
    and (not name.startswith("_") or name in ("__enter__", "__exit__"))
)


def _parameters(call: object) -> list[tuple[str, object, object]]:
    return [(p.name, p.kind, p.default) for p in inspect.signature(call).parameters.values()]  # type: ignore[arg-type]


def test_the_interface_names_every_call_the_protocol_uses():
    assert CALLS == sorted([
        "__enter__", "__exit__", "check", "close", "copies", "create_database", "current_seq", "database",
        "delete", "delete_database", "deleted_rev", "describe", "follow_changes", "get", "get_many", "get_security",
        "list_prefix", "put", "put_security", "shards", "url", "wait_changes",
    ])


@pytest.mark.parametrize("driver", [CouchStore, MemoryStore])
@pytest.mark.parametrize("name", CALLS)
def test_each_driver_has_each_call_with_the_interfaces_parameters(driver, name):
    wanted, actual = getattr(Store, name), getattr(driver, name)
    if isinstance(wanted, property):
        assert isinstance(actual, property), f"{driver.__name__}.{name} is no property"
        return
    assert _parameters(actual) == _parameters(wanted), f"{driver.__name__}.{name}"
