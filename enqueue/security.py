"""Enforce the protocol on the server: the ``_security`` object and ``_design/enqueue``.

``install`` makes a database refuse every write a site's own account may
not make. Two pieces do it:

* the ``_security`` object names the site role as members (they may read
  and write documents) and the admin role as database admins (they may also
  change design documents and ``_security``); accounts with neither role
  cannot use the database at all;
* the design document ``_design/enqueue`` holds a ``validate_doc_update``
  function (``validate_doc_update.js`` next to this module) that judges every
  write by a site account against the protocol: a site writes its own
  heartbeat, adds only itself to the registry, claims leadership only for
  itself, grants only while it leads, confirms and finishes only its own
  turn, and never pauses, drains, deletes or writes an unknown document.

What it does not guarantee: the server sees one write at a time and not the
clocks, so it cannot tell whether a leader is really stale (any site may
claim leadership; the claim is still a compare-and-swap), nor whether the
leader of the moment writes a turn record. See docs/SECURITY.md.

``install`` needs admin credentials and is idempotent: it changes only what
differs and keeps names and roles an operator added to ``_security``. One
database may hold several document sets (``-L``/``-S``): the design
document lists every set installed so far, and installing one more keeps
the others usable for the sites.
"""

from __future__ import annotations

import json
import re
from importlib import resources
from typing import Any, Mapping, NamedTuple, Optional, Sequence

from enqueue.config import DEFAULT_LEADER_DOC, DEFAULT_SITES_DOC
from enqueue.documents import heartbeat_prefix, turn_prefix
from enqueue.errors import ConfigError, Conflict, StoreError
from enqueue.store import Store

__all__ = [
    "DESIGN_DOC_ID",
    "DEFAULT_SITE_ROLE",
    "DEFAULT_ADMIN_ROLE",
    "DocumentSet",
    "DEFAULT_SET",
    "VALIDATOR_VERSION",
    "validator_source",
    "security_object",
    "design_document",
    "install",
    "installed_settings",
    "refusal_token",
    "refused_for",
]

DESIGN_DOC_ID = "_design/enqueue"
DEFAULT_SITE_ROLE = "enqueue_site"
DEFAULT_ADMIN_ROLE = "enqueue_admin"
#: Grows when the rules change, so a reader of the design document can tell them apart. Version 4: only an
#: admin creates a leader doc (also after a deletion), a site rewrites one that does not parse only at the turn
#: its repair resumes at, and the refusals readers act on carry a token (``refusal_token``). Version 5: each
#: document set has its own heartbeat ids (``documents.heartbeat_prefix``); older rules refuse a named set's.
#: Version 6: a site ends its own granted turn (started on the grant alone); ``grantee`` is kept. Version 7: the
#: finishing write carries the site's record of its turn (``last_record``), and the next holder stores a copy.
VALIDATOR_VERSION = 7


class DocumentSet(NamedTuple):
    """One rotation's shared documents: its leader doc and sites doc (turn records follow the leader doc)."""

    leader_doc: str
    sites_doc: str


DEFAULT_SET = DocumentSet(DEFAULT_LEADER_DOC, DEFAULT_SITES_DOC)

_VALIDATOR_FILE = "validate_doc_update.js"
_SETTINGS_LINE = re.compile(r"^(\s*var SETTINGS = ).*;$", re.MULTILINE)
# CouchDB's rule for role names is loose; ours keeps them readable and never special ("_admin").
_ROLE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_INSTALL_ATTEMPTS = 3


def _check_role(role: str, what: str) -> str:
    if not isinstance(role, str) or not _ROLE_NAME.fullmatch(role):
        raise ConfigError(f"{what} {role!r} is invalid: use 1-64 letters, digits, '_', '.' or '-', not starting with '_'")
    return role


def validator_source(
    *,
    site_role: str = DEFAULT_SITE_ROLE,
    admin_role: str = DEFAULT_ADMIN_ROLE,
    sets: Sequence[DocumentSet] = (DEFAULT_SET,),
) -> str:
    """The ``validate_doc_update`` function as installed: the file's function with its settings filled in.

    The file's header comment is left out: the server evaluates the text as
    one expression, which must start with ``function``.
    """
    text = resources.files("enqueue").joinpath(_VALIDATOR_FILE).read_text(encoding="utf-8")
    start = re.search(r"^function\b", text, re.MULTILINE)
    if start is None:
        raise RuntimeError(f"{_VALIDATOR_FILE} holds no function")
    settings = json.dumps({
        "site_role": site_role,
        "admin_role": admin_role,
        "sets": [{"leader_doc": s.leader_doc, "sites_doc": s.sites_doc, "turn_prefix": turn_prefix(s.leader_doc),
                  "heartbeat_prefix": heartbeat_prefix(s.leader_doc)}
                 for s in sets],
    })
    source, count = _SETTINGS_LINE.subn(lambda m: f"{m.group(1)}{settings};", text[start.start():], count=1)
    if count != 1:
        raise RuntimeError(f"{_VALIDATOR_FILE} has no SETTINGS line to fill in")
    return source.rstrip() + "\n"


def _with_role(section: Any, role: str) -> dict:
    """``section`` (``{"names": [...], "roles": [...]}``) with ``role`` among its roles; other entries kept."""
    out = dict(section) if isinstance(section, Mapping) else {}
    names = out.get("names")
    roles = out.get("roles")
    out["names"] = list(names) if isinstance(names, list) else []
    out["roles"] = list(roles) if isinstance(roles, list) else []
    if role not in out["roles"]:
        out["roles"].append(role)
    return out


def security_object(existing: Optional[Mapping[str, Any]], *, site_role: str, admin_role: str) -> dict:
    """The ``_security`` object with the site role among the members and the admin role among the admins.

    Names and roles already there stay: an operator may have added some.
    """
    out = dict(existing) if isinstance(existing, Mapping) else {}
    out["admins"] = _with_role(out.get("admins"), admin_role)
    out["members"] = _with_role(out.get("members"), site_role)
    return out


def installed_sets(existing: Optional[Mapping[str, Any]]) -> list[DocumentSet]:
    """The document sets a stored ``_design/enqueue`` covers (version 1 recorded a single one)."""
    settings = existing.get("enqueue") if isinstance(existing, Mapping) else None
    if not isinstance(settings, Mapping):
        return []
    listed = settings.get("sets")
    if not isinstance(listed, list):
        listed = [settings]
    out: list[DocumentSet] = []
    for entry in listed:
        if isinstance(entry, Mapping) and isinstance(entry.get("leader_doc"), str) \
                and isinstance(entry.get("sites_doc"), str):
            found = DocumentSet(entry["leader_doc"], entry["sites_doc"])
            if found not in out:
                out.append(found)
    return out


def design_document(
    existing: Optional[Mapping[str, Any]],
    *,
    site_role: str,
    admin_role: str,
    sets: Sequence[DocumentSet],
) -> dict:
    """``_design/enqueue`` as it should be, carrying ``existing``'s ``_rev`` and any other fields in it."""
    out = {k: v for k, v in existing.items()} if isinstance(existing, Mapping) else {}
    out.update(
        {
            "_id": DESIGN_DOC_ID,
            "language": "javascript",
            "validate_doc_update": validator_source(site_role=site_role, admin_role=admin_role, sets=sets),
            "enqueue": {
                "version": VALIDATOR_VERSION,
                "site_role": site_role,
                "admin_role": admin_role,
                "sets": [{"leader_doc": s.leader_doc, "sites_doc": s.sites_doc} for s in sets],
                "rules": "docs/SECURITY.md",
            },
        }
    )
    return out


def _with_set(installed: list[DocumentSet], wanted: DocumentSet) -> list[DocumentSet]:
    """``installed`` plus ``wanted``; a set naming either document differently is a separate set."""
    for existing in installed:
        if wanted.leader_doc in existing or wanted.sites_doc in existing:
            if existing != wanted:
                raise ConfigError(
                    f"document set {wanted.leader_doc}/{wanted.sites_doc} shares a document with the installed set "
                    f"{existing.leader_doc}/{existing.sites_doc}; give each set its own leader doc and sites doc"
                )
    return installed if wanted in installed else installed + [wanted]


#: The rules' tokens (validate_doc_update.js names the same): a document no installed set knows, and a leader
#: doc that only an admin may write afresh (missing, or a rewrite of one that does not parse that the rules
#: cannot allow this site).
UNKNOWN_DOCUMENT_TOKEN = "unknown-document"
ADMIN_REBUILDS_TOKEN = "admin-rebuilds-leader-doc"
#: How rules before version 4 worded the refusal of an unknown document (they carried no token).
_UNKNOWN_DOCUMENT_BEFORE_4 = "is not a document enqueue uses"


def refusal_token(token: str) -> str:
    """The text a refusal carries for ``token``: ``[enqueue:<token>]``."""
    return f"[enqueue:{token}]"


def refused_for(refusal: str, token: str) -> bool:
    """Whether a refusal's text (a Forbidden's) carries the rules' ``token``."""
    return refusal_token(token) in refusal


def uncovered_set_problem(design: Optional[Mapping[str, Any]], leader_doc: str, sites_doc: str) -> Optional[str]:
    """One line when the installed rules do not cover this document set (sites get 403 there); else None."""
    if not isinstance(design, Mapping) or not isinstance(design.get("validate_doc_update"), str):
        return None
    sets = installed_sets(design)
    if DocumentSet(leader_doc, sites_doc) in sets:
        return None
    covered = ", ".join(f"{s.leader_doc}/{s.sites_doc}" for s in sets) or "none"
    options = "" if (leader_doc, sites_doc) == DEFAULT_SET else f" -L {leader_doc} -S {sites_doc}"
    return (f"the access rules ({DESIGN_DOC_ID}) cover the document sets {covered}, not {leader_doc}/{sites_doc}: "
            f"site accounts are refused every write to it; run 'enqueue init CONFIG{options}' with an admin's "
            f"credentials")


def locks_out(refusal: str, own_heartbeat_id: str) -> bool:
    """Whether a refusal (a Forbidden's or AuthFailed's text) means this site can never take part as configured.

    True when its own heartbeat is refused (the account cannot act as the
    site, lost its role or its password) or the rules know none of the
    document (its set is not installed).
    Any other refusal may pass once the documents change, so the agent retries.
    """
    return refused_for(refusal, UNKNOWN_DOCUMENT_TOKEN) or _UNKNOWN_DOCUMENT_BEFORE_4 in refusal or \
        f"document {own_heartbeat_id!r}" in refusal


def installed_settings(store: Store) -> Optional[dict]:
    """The settings recorded in the database's ``_design/enqueue`` (roles, document ids), or None."""
    doc = store.get(DESIGN_DOC_ID)
    settings = doc.get("enqueue") if isinstance(doc, dict) else None
    return dict(settings) if isinstance(settings, dict) else None


def install(
    store: Store,
    *,
    site_role: str = DEFAULT_SITE_ROLE,
    admin_role: str = DEFAULT_ADMIN_ROLE,
    leader_doc: str = DEFAULT_LEADER_DOC,
    sites_doc: str = DEFAULT_SITES_DOC,
) -> list[str]:
    """Install or update the ``_security`` object and ``_design/enqueue``; return what was done, one line each.

    Needs an admin's store (server admin, or admin of this database).
    Writing it twice changes nothing the second time. The document sets
    installed before stay covered. Raises StoreError (Forbidden or
    AuthFailed without admin rights) and ConfigError for bad role names or
    a set that shares a document with an installed one.
    """
    _check_role(site_role, "site role")
    _check_role(admin_role, "admin role")
    if site_role == admin_role:
        raise ConfigError(f"the site role and the admin role must differ (both are {site_role!r})")
    lines: list[str] = []

    # 1. The validation function first: a database that opens to the site
    #    role must already refuse what a site may not write.
    for _ in range(_INSTALL_ATTEMPTS):
        current = store.get(DESIGN_DOC_ID)
        sets = _with_set(installed_sets(current), DocumentSet(leader_doc, sites_doc))
        wanted = design_document(current, site_role=site_role, admin_role=admin_role, sets=sets)
        covered = ", ".join(f"{s.leader_doc}/{s.sites_doc}" for s in sets)
        if current == wanted:
            lines.append(f"design document {DESIGN_DOC_ID} is up to date "
                         f"(validation rules version {VALIDATOR_VERSION}; document sets {covered})")
            break
        try:
            store.put(wanted)
        except Conflict:
            continue
        verb = "installed" if current is None else "updated"
        lines.append(f"{verb} design document {DESIGN_DOC_ID} (validation rules version {VALIDATOR_VERSION}; "
                     f"document sets {covered})")
        break
    else:
        raise StoreError(f"{DESIGN_DOC_ID} kept changing while it was being installed; try again")

    # 2. Then who may use the database at all.
    current_security = store.get_security()
    wanted_security = security_object(current_security, site_role=site_role, admin_role=admin_role)
    if current_security == wanted_security:
        lines.append(f"security: members have role {site_role}, admins role {admin_role} (unchanged)")
    else:
        store.put_security(wanted_security)
        lines.append(f"security: members now have role {site_role}, admins role {admin_role}")
    return lines
