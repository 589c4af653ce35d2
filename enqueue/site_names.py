"""The site-name rule: 1-64 letters, digits, ``_ . -``, starting with a letter or digit.

A site name is also its account name and part of its heartbeat document's
id, so every reader and writer must agree on it. This is the one copy in
Python; the server's copy is the ``SITE_NAME`` pattern in
``validate_doc_update.js`` (JavaScript cannot import this one), and
tests/unit/test_site_names.py checks that the two agree on a table of names.
"""

from __future__ import annotations

import re

from enqueue.errors import ConfigError

__all__ = ["RULE", "is_site_name", "validate_site_name"]

#: The rule in words, for error messages.
RULE = "1-64 letters, digits, '_', '.' or '-', starting with a letter or digit"

# Matched whole with ``fullmatch``: ``$`` would let a trailing newline through,
# which the JavaScript pattern refuses.
_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def is_site_name(value: object) -> bool:
    """Whether ``value`` is a string that is a valid site name."""
    return isinstance(value, str) and _PATTERN.fullmatch(value) is not None


def validate_site_name(site: object, where: str = "site name") -> str:
    """Return ``site`` if it is a valid site name, else raise a one-line ``ConfigError`` naming ``where``."""
    if not is_site_name(site):
        raise ConfigError(f"{where} {site!r} is invalid: use {RULE}")
    return site  # type: ignore[return-value]
