"""The registry (sites doc): entries parsed one by one, rendering that rewrites only the entries it is given."""

from __future__ import annotations

import pytest

from enqueue.documents.ids import heartbeat_id
from enqueue.documents.registry import new_sites_doc, parse_sites, render_sites
from tests.support.documents import stored

SITES_ID = "enqueue_sites"


def good_sites_raw() -> dict:
    return {
        "_id": SITES_ID,
        "_rev": "4-s",
        "type": "enqueue_sites",
        "schema": 1,
        "admin_note": "keep me",
        "sites": {
            "alpha": {"heartbeat_doc": heartbeat_id("alpha"), "drained": False, "added_at": "x"},
            "beta": {"heartbeat_doc": "custom:beta", "drained": True},
            "gamma": {},
        },
    }


def test_sites_parse() -> None:
    doc, problems = parse_sites(good_sites_raw(), SITES_ID)
    assert problems == [] and doc is not None
    assert sorted(doc.sites) == ["alpha", "beta", "gamma"]
    assert doc.sites["beta"].heartbeat_doc == "custom:beta" and doc.sites["beta"].drained
    assert doc.sites["gamma"].heartbeat_doc == heartbeat_id("gamma") and not doc.sites["gamma"].drained
    assert doc.rev == "4-s"


@pytest.mark.parametrize("raw", [good_sites_raw(), render_sites(new_sites_doc(SITES_ID))], ids=["full", "new"])
def test_sites_round_trip(raw: dict) -> None:
    doc, _ = parse_sites(raw, SITES_ID)
    assert doc is not None
    body = stored(render_sites(doc))
    again, problems = parse_sites(body, SITES_ID)
    assert problems == []
    assert again == doc
    assert body.get("_rev") == doc.rev


def test_names_the_server_refuses_are_ignored() -> None:
    """A trailing newline passes a ``^...$`` pattern in Python but not the server's rule."""
    raw = good_sites_raw()
    raw["sites"]["delta\n"] = {}
    doc, problems = parse_sites(raw, SITES_ID)
    assert doc is not None and sorted(doc.sites) == ["alpha", "beta", "gamma"]
    assert problems == ["site name 'delta\\n' is not valid; entry ignored"]


def test_sites_render_keeps_unknown_fields() -> None:
    doc, _ = parse_sites(good_sites_raw(), SITES_ID)
    assert doc is not None
    body = render_sites(doc, {"delta": {"heartbeat_doc": heartbeat_id("delta")}})
    assert body["admin_note"] == "keep me"
    assert body["sites"]["alpha"]["added_at"] == "x"
    parsed, _ = parse_sites(body, SITES_ID)
    assert parsed is not None and sorted(parsed.sites) == ["alpha", "beta", "delta", "gamma"]


def test_sites_changes_and_removal() -> None:
    doc, _ = parse_sites(good_sites_raw(), SITES_ID)
    assert doc is not None
    body = render_sites(doc, {"beta": {"heartbeat_doc": "custom:beta", "drained": False}, "gamma": None})
    parsed, _ = parse_sites(body, SITES_ID)
    assert parsed is not None
    assert sorted(parsed.sites) == ["alpha", "beta"]
    assert not parsed.sites["beta"].drained
    assert render_sites(doc)["sites"] == good_sites_raw()["sites"], "rendering must not change the parsed doc's raw"


@pytest.mark.parametrize(
    "name, entry, problem",
    [
        ("bad name", {"heartbeat_doc": "x"}, "not valid"),
        ("-dash", {}, "not valid"),
        ("delta", "not an object", "not an object"),
        ("delta", ["x"], "not an object"),
    ],
)
def test_sites_bad_entry_is_skipped_and_kept_on_render(name: str, entry, problem: str) -> None:
    raw = good_sites_raw()
    raw["sites"][name] = entry
    doc, problems = parse_sites(raw, SITES_ID)
    assert doc is not None
    assert name not in doc.sites
    assert sorted(doc.sites) == ["alpha", "beta", "gamma"]
    assert any(problem in p for p in problems), problems
    body = render_sites(doc, {"alpha": {"heartbeat_doc": heartbeat_id("alpha"), "drained": True}})
    assert body["sites"][name] == entry, "another site's write must leave the bad entry as it was"
    assert body["sites"]["alpha"]["drained"] is True
    assert body["sites"]["beta"] == raw["sites"]["beta"]


@pytest.mark.parametrize(
    "entry, field, attr, default",
    [
        ({"heartbeat_doc": 5}, "heartbeat_doc", "heartbeat_doc", heartbeat_id("delta")),
        ({"drained": "yes"}, "drained", "drained", True),
        ({"drained": 1}, "drained", "drained", True),
    ],
)
def test_sites_entry_field_with_wrong_type_falls_back(entry: dict, field: str, attr: str, default) -> None:
    raw = good_sites_raw()
    raw["sites"]["delta"] = entry
    doc, problems = parse_sites(raw, SITES_ID)
    assert doc is not None
    assert getattr(doc.sites["delta"], attr) == default
    assert any("delta" in p and f"'{field}'" in p for p in problems), problems
    body = render_sites(doc, {"alpha": {"heartbeat_doc": heartbeat_id("alpha")}})
    assert body["sites"]["delta"] == entry


@pytest.mark.parametrize("sites", [None, [], "alpha", 3])
def test_sites_without_an_object_of_entries_does_not_parse(sites) -> None:
    raw = good_sites_raw()
    raw["sites"] = sites
    doc, problems = parse_sites(raw, SITES_ID)
    assert doc is None
    assert any("'sites'" in p for p in problems)


@pytest.mark.parametrize("raw", [[1, 2], "x"])
def test_sites_not_an_object(raw) -> None:
    assert parse_sites(raw, SITES_ID) == (None, ["document is not an object"])


def test_sites_absent() -> None:
    assert parse_sites(None, SITES_ID) == (None, [])
