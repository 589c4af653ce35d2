"""``enqueue prune CONFIG --keep N [--dry-run]``: delete all but the newest N turn records.

Records are ordered by turn number (their ids are zero-padded). Each delete
is a compare-and-swap on the revision read; a record that changed meanwhile
(a site adding its own report to it) is read again and deleted at its new
revision, since its age has not changed. Records that do not parse are
pruned by their id like the others.

Output (stdout), one of::

    deleted D turn records (turns A to B); kept K (turns C to E)
    would delete D turn records (turns A to B); would keep K (turns C to E)
    nothing to prune: K turn records, keeping up to N
"""

from __future__ import annotations

import argparse

from enqueue import documents as docs
from enqueue import steering
from enqueue.commands.history import _count
from enqueue.errors import Conflict, Forbidden
from enqueue.logs import add_logging_arguments
from enqueue.store import Store

NAME = "prune"
HELP = "delete all but the newest N turn records"


def configure(parser: argparse.ArgumentParser) -> None:
    """Add ``prune``'s arguments to its subparser."""
    steering.add_config_argument(parser)
    parser.add_argument("--keep", type=_count, required=True, metavar="N",
                        help="how many of the newest turn records to keep (0 deletes them all)")
    parser.add_argument("--dry-run", action="store_true", help="say what would be deleted, delete nothing")
    steering.add_document_options(parser)
    add_logging_arguments(parser)
    parser.epilog = "Exit codes: 0 done; 1 a record could not be deleted; 2 usage or configuration error; " \
                    "3 database unreachable; 4 credentials refused (deleting needs write access); " \
                    "5 database missing."


def _turn_of(doc_id: str) -> str:
    number = doc_id.rsplit(":", 1)[-1]
    if not number.isdigit():
        return doc_id
    return number.lstrip("0") or "0"


def _records(count: int) -> str:
    return f"{count} turn record{'' if count == 1 else 's'}"


def _span(ids: list[str]) -> str:
    if not ids:
        return ""
    first, last = _turn_of(ids[0]), _turn_of(ids[-1])
    return f" (turn {first})" if first == last else f" (turns {first} to {last})"


def delete_record(store: Store, doc: dict) -> bool:
    """Delete one record by compare-and-swap, re-reading on conflict; False when it is already gone."""
    for _ in range(steering.WRITE_ATTEMPTS):
        try:
            store.delete(doc)
            return True
        except Forbidden as exc:
            raise steering.needs_admin(exc) from None
        except Conflict:
            current = store.get(doc["_id"])
            if current is None:
                return False
            doc = current
    raise steering.Refused(f"turn record {doc['_id']} kept changing while it was being deleted; run prune again")


def execute(args: argparse.Namespace) -> int:
    """Delete the older turn records and say which."""
    settings = steering.load_settings(args)
    with steering.open_store(settings) as store:
        store.check()
        records = store.list_prefix(docs.turn_prefix(settings.leader_doc))
        records.sort(key=lambda d: d["_id"])
        cut = max(0, len(records) - args.keep)
        old, kept = records[:cut], records[cut:]
        kept_ids = [d["_id"] for d in kept]
        if not old:
            print(f"nothing to prune: {_records(len(records))}, keeping up to {args.keep}")
            return 0
        old_ids = [d["_id"] for d in old]
        if args.dry_run:
            print(f"would delete {_records(len(old))}{_span(old_ids)}; would keep {len(kept)}{_span(kept_ids)}")
            return 0
        deleted = sum(1 for doc in old if delete_record(store, doc))
    print(f"deleted {_records(deleted)}{_span(old_ids)}; kept {len(kept)}{_span(kept_ids)}")
    return 0
