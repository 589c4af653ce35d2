"""``enqueue users CONFIG add|list|remove``: the sites' own CouchDB accounts (admin only).

Each site logs in with its own account, named like the site, holding the
site role; the rules installed by ``enqueue init`` (``enqueue.security``)
then let it make only the writes a site may make. CONFIG is an admin's
configuration: its ``[couchdb]`` credentials must be a server admin's (or
another account allowed to write ``_users``).

``add SITE`` creates the account with a generated password and writes the
password to a file of mode 0600 (``SITE.password`` in the current
directory unless ``--password-file`` says otherwise; an existing file is
never overwritten unless ``--replace``). The password is printed only with
``--show-password``. ``--replace`` gives an existing account a new password
and leaves it the site role (or ``--role``) only, dropping any other role.
Copy the file to the site and point its configuration at it::

    [couchdb]
    username = SITE
    password_file = /path/to/SITE.password

``list`` prints every account with its roles; ``remove SITE`` deletes one.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import secrets
from typing import Any, Optional

from enqueue import security, table
from enqueue.connection import Connection, load_connection
from enqueue.errors import EXIT_OK, ConfigError, Conflict, DatabaseMissing, EnqueueError
from enqueue.logs import register_secret
from enqueue.site_names import validate_site_name
from enqueue.store import Store

NAME = "users"
HELP = "create, list and remove the sites' own CouchDB accounts (admin)"

USERS_DB = "_users"
USER_PREFIX = "org.couchdb.user:"
PASSWORD_BYTES = 24


class UsersError(EnqueueError):
    """An account could not be created or removed as asked."""


def configure(parser: argparse.ArgumentParser) -> None:
    """Add ``users``' arguments to its subparser."""
    parser.add_argument("config", metavar="CONFIG", help="an admin's configuration file")
    actions = parser.add_subparsers(title="actions", dest="action", metavar="ACTION")
    actions.required = True

    add = actions.add_parser("add", help="create a site's account with a generated password")
    add.add_argument("site", metavar="SITE", help="the site name, which is also the account name")
    add.add_argument("--password-file", metavar="FILE", default=None,
                     help="where to write the password, mode 0600 (default: SITE.password here)")
    add.add_argument("--show-password", action="store_true", help="also print the password on stdout")
    add.add_argument("--replace", action="store_true",
                     help="give an existing account a new password and only the site role (and overwrite FILE)")
    add.add_argument("--role", metavar="ROLE", default=None,
                     help="the site role (default: the one 'enqueue init' installed, else "
                          f"{security.DEFAULT_SITE_ROLE})")

    actions.add_parser("list", help="list the accounts and their roles")

    remove = actions.add_parser("remove", help="delete a site's account")
    remove.add_argument("site", metavar="SITE", help="the site name")


def user_id(name: str) -> str:
    """The id of an account's document in ``_users``."""
    return USER_PREFIX + name


def new_password() -> str:
    """A fresh random password, URL-safe, registered for redaction before anyone can log it."""
    password = secrets.token_urlsafe(PASSWORD_BYTES)
    register_secret(password)
    return password


def user_document(name: str, role: str, password: str, existing: Optional[dict] = None) -> dict:
    """The ``_users`` document of a site account, holding exactly ``role``.

    An existing document keeps its other fields but not its other roles: a
    password reset also undoes a role the account should not have.
    """
    doc = dict(existing) if existing else {"_id": user_id(name)}
    doc.update({"type": "user", "name": name, "password": password, "roles": [role]})
    for derived in ("derived_key", "salt", "iterations", "password_scheme", "pbkdf2_prf"):
        doc.pop(derived, None)
    return doc


def write_private(path: str, text: str, *, overwrite: bool) -> None:
    """Write ``text`` to ``path`` with mode 0600; an existing file is an error unless ``overwrite``."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if overwrite else os.O_EXCL)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        raise ConfigError(f"{path} exists; pick another --password-file, or add --replace to overwrite it") from None
    except OSError as exc:
        raise ConfigError(f"cannot write the password file {path}: {exc.strerror or exc}") from None
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        os.fchmod(handle.fileno(), 0o600)
        handle.write(text + "\n")


def _store(connection: Connection, database: str) -> Store:
    """A store on ``database`` of the configured server, with the configured credentials."""
    from enqueue.couchdb_store import open_store  # the CouchDB client loads only when an action needs it

    return open_store(dataclasses.replace(connection, database=database))


def _site_role(connection: Connection) -> str:
    """The site role ``enqueue init`` recorded in the database, else the default."""
    store = _store(connection, connection.database)
    try:
        settings = security.installed_settings(store)
    except DatabaseMissing:
        settings = None
    finally:
        store.close()
    role = (settings or {}).get("site_role")
    return role if isinstance(role, str) and role else security.DEFAULT_SITE_ROLE


def add(connection: Connection, site: str, *, password_file: Optional[str], show_password: bool,
        replace: bool, role: Optional[str]) -> list[str]:
    """Create (or with ``replace`` re-key) a site account; return the lines to print."""
    site = validate_site_name(site, "SITE")
    role = role or _site_role(connection)
    path = os.path.abspath(password_file or f"{site}.password")
    users = _store(connection, USERS_DB)
    try:
        existing = users.get(user_id(site))
        if existing is not None and not replace:
            raise UsersError(f"the account {site} exists; add --replace to give it a new password")
        password = new_password()
        created_file = not os.path.exists(path)
        write_private(path, password, overwrite=replace)
        try:
            users.put(user_document(site, role, password, existing))
        except Conflict:
            raise UsersError(f"the account {site} changed while it was being written; try again") from None
        except BaseException:
            if created_file:
                os.unlink(path)
            raise
    finally:
        users.close()
    verb = "gave a new password to" if existing is not None else "created"
    lines = [
        f"{verb} the account of site {site} (role {role})",
        f"password written to {path} (mode 0600); in {site}'s configuration: "
        f"username = {site}, password_file = <that file, copied to the site>",
    ]
    if show_password:
        lines.append(f"password: {password}")
    return lines


def list_accounts(connection: Connection) -> list[str]:
    """A table of the accounts: name and roles, in aligned columns."""
    users = _store(connection, USERS_DB)
    try:
        docs = users.list_prefix(USER_PREFIX)
    finally:
        users.close()
    rows = []
    for doc in docs:
        name = doc.get("name") or str(doc.get("_id", ""))[len(USER_PREFIX):]
        roles = doc.get("roles") if isinstance(doc.get("roles"), list) else []
        rows.append([str(name), ", ".join(str(r) for r in roles) or "-"])
    return table.render(["ACCOUNT", "ROLES"], rows) if rows else ["no accounts"]


def remove(connection: Connection, site: str) -> list[str]:
    """Delete a site's account."""
    users = _store(connection, USERS_DB)
    try:
        doc = users.get(user_id(site))
        if doc is None:
            raise UsersError(f"there is no account {site}")
        try:
            users.delete(doc)
        except Conflict:
            raise UsersError(f"the account {site} changed while it was being removed; try again") from None
    finally:
        users.close()
    return [f"removed the account of site {site}"]


def execute(args: argparse.Namespace) -> int:
    """Run the chosen action and print what it did."""
    connection, _ = load_connection(args.config)
    if connection.username is None:
        raise ConfigError(f"{args.config}: managing accounts needs an admin's username and password_file")
    lines: list[Any]
    if args.action == "add":
        lines = add(connection, args.site, password_file=args.password_file, show_password=args.show_password,
                    replace=args.replace, role=args.role)
    elif args.action == "list":
        lines = list_accounts(connection)
    else:
        lines = remove(connection, args.site)
    for line in lines:
        print(line)
    return EXIT_OK
