"""``enqueue init CONFIG``: create the database and the shared documents, install the access rules.

Steps, each idempotent (running ``init`` again changes nothing and says so):

1. the database: created when missing, which needs a server admin's
   credentials; without them one line says so and the exit code is 4;
2. the leader doc and the sites doc, as first created (nobody leads, no
   turn granted, nobody registered): written only if absent, so an existing
   production state is never touched; and a missing leader doc only on a
   database that never held a heartbeat, a turn record or the leader doc
   itself (a deletion leaves a tombstone): elsewhere a fresh one would hand
   out turn numbers again, so init says to rebuild it with ``enqueue
   repair`` (once every lease has run out, at its revision count, above
   every turn that ran; agents under an admin's account do it themselves);
3. the access rules (``_security`` and the ``validate_doc_update`` design
   document) through ``install_security``.

On a CouchDB cluster the database is created with one copy in one shard
(``?n=1&q=1``), the only layout where a compare-and-swap is one; an existing
database with more copies is refused (exit 6, nothing written) unless
``--allow-cluster`` says to go on (``enqueue.placement``).

Output: one line per step, ``<what>: created`` or ``<what>: already
existed`` (the database's line says which node holds it), then what the
access rules step did, and a warning for a layout weaker than one node.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from typing import Any, Optional

from enqueue import documents as docs
from enqueue import placement, security, steering
from enqueue.errors import AuthFailed, ClusterRefused, Conflict, DatabaseMissing, Forbidden, StoreError
from enqueue.leadership import never_used
from enqueue.logs import add_logging_arguments
from enqueue.store import Store

NAME = "init"
HELP = "create the database, the leader and sites documents and the access rules (idempotent)"


def configure(parser: argparse.ArgumentParser) -> None:
    """Add ``init``'s arguments to its subparser."""
    steering.add_config_argument(parser)
    parser.add_argument("--allow-cluster", action="store_true",
                        help="go on with an existing database that keeps several copies of each document (n > 1), "
                             "where a 409 is no compare-and-swap (see docs/GUARANTEES.md section 5)")
    steering.add_document_options(parser)
    add_logging_arguments(parser)
    parser.epilog = ("A new database is created with n=1&q=1 (one copy, one shard). Creating the database and "
                     "installing the access rules need a server admin's credentials in CONFIG. Exit codes: "
                     "0 done (also when everything existed); 2 configuration error; 3 database unreachable; "
                     "4 credentials refused or not an admin's; 6 the database keeps several copies (n > 1) and "
                     "--allow-cluster was not given.")


def session_roles(settings: steering.AdminSettings) -> Optional[list[str]]:
    """The server roles of the configured credentials (``_admin`` for a server admin); None if unknown.

    Asks ``GET /_session``. The store has no call for it yet, so this opens
    a store whose "database" is ``_session``: its database info request is
    that very GET.
    """
    store = steering.open_store(replace(settings, connection=replace(settings.connection, database="_session")))
    try:
        answer = store.check()
    except StoreError:
        return None
    finally:
        store.close()
    ctx = answer.get("userCtx") if isinstance(answer, dict) else None
    roles = ctx.get("roles") if isinstance(ctx, dict) else None
    return [r for r in roles if isinstance(r, str)] if isinstance(roles, list) else None


def _no_rights(store: Store, config: str, detail: str) -> AuthFailed:
    return AuthFailed(
        f"cannot create {store.describe()}: the credentials in {config} are not a server admin's ({detail}); "
        f"run 'enqueue init' with an admin's credentials, or have an admin create the database"
    )


def create_database(store: Store, settings: steering.AdminSettings) -> bool:
    """Create the database if it is missing; True if it was created. Raises with one clear line without rights.

    Only a server admin may create a database. Asking first, rather than
    trying, gives the same answer on every server: pouchdb-server falls over
    when anyone else asks it to create one.
    """
    try:
        store.check()
        return False
    except DatabaseMissing:
        pass
    roles = session_roles(settings)
    if roles is not None and "_admin" not in roles:
        raise _no_rights(store, settings.config_path, f"their roles: {', '.join(roles) or 'none'}")
    try:
        return store.create_database()
    except (AuthFailed, Forbidden) as exc:
        raise _no_rights(store, settings.config_path, str(exc)) from None


def create_document(store: Store, body: dict) -> bool:
    """Write ``body`` only if no document has its id; True if it was created."""
    try:
        store.put(body)
        return True
    except Conflict:
        return False


#: What init says of a missing leader doc on a database that held turns.
LEADER_DOC_LEFT_TO_AGENTS = ("missing, not created: this database held turns; rebuild it with 'enqueue repair CONFIG' "
                             "(it waits heartbeat_stale and resumes above every turn that ran; agents under an "
                             "admin's account rebuild it themselves)")


def may_create_leader_doc(store: Store, leader_doc: str) -> bool:
    """A missing leader doc may be created fresh (turn 0): the database never held a heartbeat or a turn record
    of its document set, nor the leader doc itself (a deletion leaves a tombstone)."""
    return never_used(store, leader_doc)


def install_security(store: Store, settings: steering.AdminSettings) -> list[str]:
    """Install the database's access rules; one line per thing done.

    ``enqueue.security.install`` writes the ``_security`` object and the
    ``validate_doc_update`` design document and reports what it did.
    """
    return list(security.install(store, leader_doc=settings.leader_doc, sites_doc=settings.sites_doc))


def _existing_problems(store: Store, doc_id: str, parse: Any) -> str:
    parsed, problems = parse(store.get(doc_id), doc_id)
    if parsed is None and problems:
        return f" (but it does not parse: {'; '.join(problems)})"
    return ""


def execute(args: argparse.Namespace) -> int:
    """Create what is missing and say what existed."""
    settings = steering.load_settings(args)
    with steering.open_store(settings) as store:
        created = create_database(store, settings)
        where = placement.read(store)
        held = "" if where is None else f"; {placement.describe(where)}"
        print(f"{store.describe()}: {'created' if created else 'already existed'}{held}")
        if where is not None:
            refusal = placement.cluster_refusal(where, store.describe(), store.database, args.allow_cluster)
            if refusal is not None:
                raise ClusterRefused(refusal + "; nothing was written")

        who, when = steering.actor(settings), steering.now_text(settings)
        leader = replace(docs.new_leader_doc(settings.leader_doc), updated_by=who, updated_at=when)
        sites = docs.render_sites(docs.new_sites_doc(settings.sites_doc))
        sites.update(updated_by=who, updated_at=when)
        steps = (
            ("leader doc", settings.leader_doc, docs.render_leader(leader), docs.parse_leader),
            ("sites doc", settings.sites_doc, sites, docs.parse_sites),
        )
        for what, doc_id, body, parse in steps:
            if doc_id == settings.leader_doc and not may_create_leader_doc(store, doc_id):
                print(f"{what} {doc_id}: {LEADER_DOC_LEFT_TO_AGENTS}")
            elif create_document(store, body):
                print(f"{what} {doc_id}: created")
            else:
                print(f"{what} {doc_id}: already existed{_existing_problems(store, doc_id, parse)}")

        for line in install_security(store, settings):
            print(line)

        warning = None if where is None else placement.cluster_warning(where, store.describe(), store.database)
        if warning is not None:
            print(warning)
    return 0
