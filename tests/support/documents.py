"""Helpers for the tests of the shared documents."""

from __future__ import annotations

import json


def stored(body: dict) -> dict:
    """What a document looks like after a trip through JSON (as CouchDB returns it)."""
    return json.loads(json.dumps(body))
