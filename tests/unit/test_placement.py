"""enqueue.placement: which node holds the database, and when a cluster layout is refused -- no server."""

from __future__ import annotations

import pytest

from enqueue import placement as pl

ONE_NODE = {"00000000-ffffffff": ["couchdb@10.0.0.1"]}
THREE_COPIES = {"00000000-7fffffff": ["a@x", "b@x", "c@x"], "80000000-ffffffff": ["a@x", "b@x", "c@x"]}
TWO_SHARDS = {"00000000-7fffffff": ["a@x"], "80000000-ffffffff": ["b@x"]}


def info(n=None, q=None) -> dict:
    return {"db_name": "enqueue", "cluster": {"n": n, "q": q}} if n or q else {"db_name": "enqueue"}


def test_a_server_without_a_shards_endpoint_is_one_node_said_honestly():
    p = pl.placement(info(), None)
    assert p == pl.Placement(copies=1, shards=None, nodes=(), reported=False)
    assert pl.describe(p) == "one node (the server reports no shards: not a CouchDB cluster)"
    assert pl.cluster_refusal(p, "database 'enqueue'", "enqueue", allowed=False) is None
    assert pl.cluster_warning(p, "database 'enqueue'", "enqueue") is None


def test_one_copy_in_one_shard_names_its_node():
    p = pl.placement(info(1, 1), ONE_NODE)
    assert pl.describe(p) == "held by node couchdb@10.0.0.1 (n=1, q=1)"
    assert pl.cluster_refusal(p, "db", "enqueue", allowed=False) is None
    assert pl.cluster_warning(p, "db", "enqueue") is None


def test_several_copies_are_refused_unless_allowed_and_the_hint_says_n1_q1():
    p = pl.placement(info(3, 2), THREE_COPIES)
    assert (p.copies, p.shards, p.nodes) == (3, 2, ("a@x", "b@x", "c@x"))
    refusal = pl.cluster_refusal(p, "database 'enqueue' at http://x", "enqueue", allowed=False)
    assert refusal is not None and "keeps 3 copies" in refusal and "PUT /enqueue?n=1&q=1" in refusal
    assert "--allow-cluster" in refusal
    assert pl.cluster_refusal(p, "db", "enqueue", allowed=True) is None
    warning = pl.cluster_warning(p, "db", "enqueue")
    assert warning is not None and "?n=1&q=1" in warning


def test_copies_come_from_the_shards_when_the_info_does_not_say():
    assert pl.placement(info(), THREE_COPIES).copies == 3


def test_one_copy_spread_over_two_nodes_is_allowed_with_a_warning():
    p = pl.placement(info(1, 2), TWO_SHARDS)
    assert pl.cluster_refusal(p, "db", "enqueue", allowed=False) is None
    assert pl.describe(p) == "spread over nodes a@x, b@x (n=1, q=2), one copy of each document"
    warning = pl.cluster_warning(p, "db", "enqueue")
    assert warning is not None and "available only while all of them are" in warning and "?n=1&q=1" in warning


@pytest.mark.parametrize("bad", [{"cluster": "n=3"}, {"cluster": {"n": True}}, {"cluster": {"n": -1}}])
def test_nonsense_in_the_info_counts_as_not_said(bad):
    assert pl.placement(bad, None).copies == 1
