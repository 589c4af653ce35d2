"""Where the database lives on a CouchDB cluster, and whether enqueue may use it there.

A compare-and-swap is one only where each document has one copy: on a
cluster, a database with ``n`` > 1 lets two writers carrying the same
``_rev`` both succeed through two nodes (docs/GUARANTEES.md §5). ``enqueue
init`` therefore creates the database with ``?n=1&q=1`` (one copy, one
shard: one node holds all of it), and refuses to go on with an existing
database of ``n`` > 1 unless told.

Pure decisions over what the server reported: the database info
(``cluster.n``, ``cluster.q``) and ``GET /db/_shards`` (None when the server
has no such endpoint, as pouchdb-server: one node, honestly reported as "no
shards reported" rather than as a node name it never gave).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional, Sequence

from enqueue.errors import Forbidden
from enqueue.store import Store

__all__ = ["Placement", "placement", "read", "describe", "cluster_refusal", "cluster_warning", "create_hint"]


def create_hint(database: str) -> str:
    """How to create the database right on a cluster."""
    return f"PUT /{database}?n=1&q=1"


@dataclass(frozen=True)
class Placement:
    """What the server says about the database's copies and shards.

    ``copies`` is ``n`` (1 when the server does not say); ``shards`` is
    ``q`` (None when unknown); ``nodes`` the distinct nodes holding any
    shard, sorted; ``reported`` whether the server answered ``_shards``.
    """

    copies: int
    shards: Optional[int]
    nodes: tuple[str, ...]
    reported: bool


def _positive(value: object) -> Optional[int]:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def placement(info: Mapping[str, object], shards: Optional[Mapping[str, Sequence[str]]]) -> Placement:
    """The placement from the database info and the ``_shards`` answer (None: no such endpoint)."""
    cluster = info.get("cluster")
    cluster = cluster if isinstance(cluster, Mapping) else {}
    copies = _positive(cluster.get("n"))
    q = _positive(cluster.get("q"))
    if shards is None:
        return Placement(copies or 1, q, (), False)
    nodes = sorted({node for holders in shards.values() for node in holders})
    widest = max((len(set(holders)) for holders in shards.values()), default=0)
    return Placement(max(copies or 1, widest), q or (len(shards) or None), tuple(nodes), True)


def read(store: Store) -> Optional[Placement]:
    """The database's placement as the server reports it; None when these credentials may not ask."""
    info = store.check()
    try:
        shards = store.shards()
    except Forbidden:
        return None
    return placement(info, shards)


def describe(p: Placement) -> str:
    """Which node holds the database, in a few words for ``init`` and ``status``."""
    layout = f"n={p.copies}" + (f", q={p.shards}" if p.shards is not None else "")
    if not p.reported:
        return "one node (the server reports no shards: not a CouchDB cluster)"
    if len(p.nodes) == 1:
        return f"held by node {p.nodes[0]} ({layout})"
    if p.copies == 1:
        return f"spread over nodes {', '.join(p.nodes)} ({layout}), one copy of each document"
    return f"{p.copies} copies over nodes {', '.join(p.nodes)} ({layout})"


def cluster_refusal(p: Placement, where: str, database: str, allowed: bool) -> Optional[str]:
    """The refusal to go on with a database of several copies; None when it has one, or ``allowed``."""
    if p.copies <= 1 or allowed:
        return None
    return (f"{where} keeps {p.copies} copies of each document ({describe(p)}): there a 409 is no "
            f"compare-and-swap and two sites could both win a turn. Delete and recreate it with "
            f"{create_hint(database)} (docs/GUARANTEES.md section 5), or go on anyway with --allow-cluster")


def cluster_warning(p: Placement, where: str, database: str) -> Optional[str]:
    """A warning for a layout that works but is weaker than one node: several copies, or shards on several nodes."""
    if p.copies > 1:
        return (f"warning: {where} keeps {p.copies} copies of each document; agents refuse it unless "
                f"allow_cluster = true. {create_hint(database)} gives it one copy on one node")
    if len(p.nodes) > 1:
        return (f"warning: {where} is spread over {len(p.nodes)} nodes ({', '.join(p.nodes)}): it is available "
                f"only while all of them are; {create_hint(database)} keeps it on one node")
    return None
