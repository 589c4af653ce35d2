"""``enqueue init CONFIG``: create the database and the shared documents, install the access rules.

Steps, each idempotent (running ``init`` again changes nothing and says so):

1. the database: created when missing, which needs a server admin's
   credentials; without them one line says so and the exit code is 4;
2. the leader doc and the sites doc, as first created (nobody leads, no
   turn granted, nobody registered): written only if absent, so an existing
   production state is never touched; and a missing leader doc only on a
   database that never held a heartbeat or a turn record: elsewhere a fresh
   one would hand out turn numbers again, so the agents rebuild it instead
   (once every lease has run out, above every turn known) and init says so;
3. the access rules (``_security`` and the ``validate_doc_update`` design
   document) through ``install_security``.

Output: one line per step, ``<what>: created`` or ``<what>: already
existed``, then what the access rules step did, and a warning when the
database keeps more than one copy of each document (agents refuse it).
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from typing import Any, Optional

from enqueue import documents as docs
from enqueue import security, steering
from enqueue.errors import EXIT_CLUSTER_REFUSED, AuthFailed, Conflict, DatabaseMissing, Forbidden, StoreError
from enqueue.leadership import never_used
from enqueue.logs import add_logging_arguments

NAME = "init"
HELP = "create the database, the leader and sites documents and the access rules (idempotent)"


def configure(parser: argparse.ArgumentParser) -> None:
    """Add ``init``'s arguments to its subparser."""
    steering.add_config_argument(parser)
    steering.add_document_options(parser)
    add_logging_arguments(parser)
    parser.epilog = ("Creating the database and installing the access rules need a server admin's credentials "
                     "in CONFIG. Exit codes: 0 done (also when everything existed); 2 configuration error; "
                     "3 database unreachable; 4 credentials refused or not an admin's.")


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


def _no_rights(store: Any, config: str, detail: str) -> AuthFailed:
    return AuthFailed(
        f"cannot create {store.describe()}: the credentials in {config} are not a server admin's ({detail}); "
        f"run 'enqueue init' with an admin's credentials, or have an admin create the database"
    )


def create_database(store: Any, settings: steering.AdminSettings) -> bool:
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


def create_document(store: Any, body: dict) -> bool:
    """Write ``body`` only if no document has its id; True if it was created."""
    try:
        store.put(body)
        return True
    except Conflict:
        return False


#: What init says of a missing leader doc on a database that held turns.
LEADER_DOC_LEFT_TO_AGENTS = ("missing, not created: this database held turns, so the agents rebuild it above every "
                             "turn known, once heartbeat_stale has passed")


def may_create_leader_doc(store: Any) -> bool:
    """A missing leader doc may be created fresh (turn 0): the database never held a heartbeat or a turn record."""
    return never_used(store)


def install_security(store: Any, settings: steering.AdminSettings) -> list[str]:
    """Install the database's access rules; one line per thing done.

    ``enqueue.security.install`` writes the ``_security`` object and the
    ``validate_doc_update`` design document and reports what it did.
    """
    return list(security.install(store, leader_doc=settings.leader_doc, sites_doc=settings.sites_doc))


def _existing_problems(store: Any, doc_id: str, parse: Any) -> str:
    parsed, problems = parse(store.get(doc_id), doc_id)
    if parsed is None and problems:
        return f" (but it does not parse: {'; '.join(problems)})"
    return ""


def execute(args: argparse.Namespace) -> int:
    """Create what is missing and say what existed."""
    settings = steering.load_settings(args)
    with steering.open_store(settings) as store:
        created = create_database(store, settings)
        print(f"{store.describe()}: {'created' if created else 'already existed'}")

        who, when = steering.actor(settings), steering.now_text(settings)
        leader = replace(docs.new_leader_doc(settings.leader_doc), updated_by=who, updated_at=when)
        sites = docs.render_sites(docs.new_sites_doc(settings.sites_doc))
        sites.update(updated_by=who, updated_at=when)
        steps = (
            ("leader doc", settings.leader_doc, docs.render_leader(leader), docs.parse_leader),
            ("sites doc", settings.sites_doc, sites, docs.parse_sites),
        )
        for what, doc_id, body, parse in steps:
            if doc_id == settings.leader_doc and not may_create_leader_doc(store):
                print(f"{what} {doc_id}: {LEADER_DOC_LEFT_TO_AGENTS}")
            elif create_document(store, body):
                print(f"{what} {doc_id}: created")
            else:
                print(f"{what} {doc_id}: already existed{_existing_problems(store, doc_id, parse)}")

        for line in install_security(store, settings):
            print(line)

        copies = store.copies()
        if copies > 1:
            print(f"warning: {store.describe()} keeps {copies} copies of each document (n={copies}); agents refuse "
                  f"it (exit code {EXIT_CLUSTER_REFUSED}) unless allow_cluster = true: a 409 is no compare-and-swap "
                  f"on a cluster. Create the database with n=1 (PUT /{store.database}?n=1)")
    return 0
