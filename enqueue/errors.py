"""The project's own error types and the exit codes they map to.

Every error that reaches the command line carries one line of text that says
what went wrong and where, never a secret, and an exit code that scripts can
tell apart. Errors from the CouchDB client never leave the CouchDB driver; they
are translated into the store errors below.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_AUTH = 4
EXIT_DATABASE_MISSING = 5
EXIT_CLUSTER_REFUSED = 6
EXIT_SITE_IN_USE = 7
EXIT_NO_TURN = 75  # EX_TEMPFAIL: try again later
EXIT_NOT_EXECUTABLE = 126
EXIT_NOT_FOUND = 127


class EnqueueError(Exception):
    """Base of every error enqueue reports to a user; ``exit_code`` says how to exit."""

    exit_code = EXIT_FAILURE


class ConfigError(EnqueueError):
    """A bad configuration file, environment variable or command-line value."""

    exit_code = EXIT_USAGE


class UsageError(ConfigError):
    """Bad command-line arguments; exits 2 like every configuration error."""


class StoreError(EnqueueError):
    """Something went wrong talking to CouchDB."""


class Unreachable(StoreError):
    """The server did not answer (refused, timed out, DNS, TLS)."""

    exit_code = EXIT_UNREACHABLE


class AuthFailed(StoreError):
    """The server refused the credentials (401)."""

    exit_code = EXIT_AUTH


class Forbidden(StoreError):
    """The server refused this write or read for these credentials (403)."""

    exit_code = EXIT_AUTH


class DatabaseMissing(StoreError):
    """The configured database does not exist."""

    exit_code = EXIT_DATABASE_MISSING


class Conflict(StoreError):
    """A compare-and-swap lost: the document changed since it was read (409)."""


class SiteLockedOut(EnqueueError):
    """The server refuses this site's writes for good (its own heartbeat, or documents no installed rule knows)."""

    exit_code = EXIT_AUTH


class ClusterRefused(EnqueueError):
    """The database keeps several copies, where a 409 is no compare-and-swap."""

    exit_code = EXIT_CLUSTER_REFUSED


class NoTurnInTime(EnqueueError):
    """A run-once agent got no turn within --max-wait; it left cleanly, and a site loop goes on."""

    exit_code = EXIT_NO_TURN


class SiteInUse(EnqueueError):
    """Another agent already runs as this site on this host."""

    exit_code = EXIT_SITE_IN_USE


class TurnLost(EnqueueError):
    """In-process code's turn is no longer its own (``enqueue.turn``): fenced, revoked, skipped or stopped.

    Raised by ``Turn.check()``, and by ``enqueue.turn`` when the agent ends before the turn begins.
    """
