"""The registry: every site that ever joined, and the admin's flags per site (docs/PROTOCOL.md §2).

Guarantees: ``parse_sites`` never raises and skips, with a problem noted, an
entry that does not parse; ``render_sites`` rewrites only the entries it is
given, keeping every other stored entry exactly as it is (even one that did
not parse), so one site's write never rewrites another's. Not here: who may
join or be drained.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from enqueue.config import DEFAULT_LEADER_DOC
from enqueue.documents.fields import Fields, document_parser
from enqueue.documents.ids import SCHEMA_VERSION, heartbeat_id
from enqueue.site_names import is_site_name


@dataclass(frozen=True)
class SiteEntry:
    """One site in the registry, with the admin's flags for it."""

    name: str
    heartbeat_doc: str
    drained: bool = False


@dataclass(frozen=True)
class SitesDoc:
    """The registry: every site that ever joined, and the admin flags per site."""

    doc_id: str
    rev: str | None = None
    sites: Mapping[str, SiteEntry] = field(default_factory=dict)
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)


@document_parser
def parse_sites(raw: Mapping[str, Any] | None, doc_id: str,
                leader_doc: str = DEFAULT_LEADER_DOC) -> tuple[SitesDoc | None, list[str]]:
    """Parse the registry of the set ``leader_doc`` leads; entries that do not parse are skipped with a problem
    noted, and an entry naming no heartbeat doc has its site's heartbeat of that set."""
    entries = raw.get("sites")
    if not isinstance(entries, Mapping):
        return None, [f"field 'sites' should be an object of site entries, not {entries!r:.60}"]
    problems: list[str] = []
    sites: dict[str, SiteEntry] = {}
    for name, entry in entries.items():
        if not is_site_name(name):
            problems.append(f"site name {name!r:.60} is not valid; entry ignored")
            continue
        if not isinstance(entry, Mapping):
            problems.append(f"entry for site '{name}' is not an object; entry ignored")
            continue
        f = Fields(entry)
        hb = f.text("heartbeat_doc") or heartbeat_id(name, leader_doc)
        drained = f.flag("drained", if_malformed=True)
        problems.extend(f"site '{name}': {p}" for p in f.problems)
        sites[name] = SiteEntry(name=name, heartbeat_doc=hb, drained=drained)
    return SitesDoc(doc_id=doc_id, rev=raw.get("_rev"), sites=sites, raw=dict(raw)), problems


def new_sites_doc(doc_id: str) -> SitesDoc:
    """The registry as first created: empty."""
    return SitesDoc(doc_id=doc_id)


def render_sites(doc: SitesDoc, changed: Mapping[str, Mapping[str, Any] | None] = {}) -> dict[str, Any]:
    """The stored registry with the entries in ``changed`` replaced (``None`` removes one).

    Entries not in ``changed`` are kept exactly as stored, even ones that did
    not parse, so one site's write never rewrites another's entry.
    """
    out = {k: v for k, v in doc.raw.items()}
    entries = dict(out.get("sites") or {}) if isinstance(out.get("sites"), Mapping) else {}
    for name, entry in changed.items():
        if entry is None:
            entries.pop(name, None)
        else:
            entries[name] = dict(entry)
    out.update({"_id": doc.doc_id, "type": "enqueue_sites", "schema": SCHEMA_VERSION, "sites": entries})
    if doc.rev is not None:
        out["_rev"] = doc.rev
    else:
        out.pop("_rev", None)
    return out
