"""What this host observed of documents' revisions, and when.

One ``Revisions`` tracker answers, per key (a document id, a site), three
questions the agent side keeps asking: which revision did I see last, since
when (on this host's monotonic clock: the moment I first saw it), and is a
revision someone hands me now older than what I have (a late delivery).

Guarantees
----------
* ``since`` moves only when the observed revision changes (a missing
  document is the revision ``None``): seeing the same revision again keeps
  the moment it was first seen.
* ``is_older`` compares revision generations ("7-ab12..." is generation
  7); the highest generation known of a key is kept across a deletion,
  whose revision is unknown.

Not kept: any time written inside a document.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping


@dataclass
class _Seen:
    rev: str | None
    since: float
    generation: int | None


def generation(rev: Any) -> int | None:
    """The generation of a revision ("7-ab12..." -> 7); None when unknown."""
    if rev is None:
        return None
    try:
        return int(str(rev).split("-", 1)[0])
    except ValueError:
        return None


def revision_of(raw: Mapping[str, Any] | None) -> str | None:
    """The ``_rev`` of a document body; None for a missing document or one without."""
    rev = raw.get("_rev") if isinstance(raw, Mapping) else None
    return None if rev is None else str(rev)


class Revisions:
    """Per key: the last revision observed, when it was first seen, the highest generation known."""

    def __init__(self) -> None:
        self._seen: dict[str, _Seen] = {}

    def observe(self, key: str, rev: str | None, now: float) -> bool:
        """Note that ``key`` has revision ``rev`` at ``now``; True when that is a change or a first sighting."""
        seen = self._seen.get(key)
        gen = generation(rev)
        if seen is None:
            self._seen[key] = _Seen(rev, now, gen)
            return True
        if gen is not None:
            seen.generation = gen
        if seen.rev != rev:
            seen.rev, seen.since = rev, now
            return True
        return False

    def is_older(self, key: str, rev: str | None) -> bool:
        """``rev`` is of a lower generation than the highest known for ``key`` (unknown counts as not older)."""
        seen = self._seen.get(key)
        gen = generation(rev)
        return seen is not None and gen is not None and seen.generation is not None and gen < seen.generation

    def rev(self, key: str) -> str | None:
        """The last revision observed of ``key``; None if never observed (or missing)."""
        seen = self._seen.get(key)
        return None if seen is None else seen.rev

    def since(self, key: str) -> float | None:
        """When the current revision of ``key`` was first observed; None if never observed."""
        seen = self._seen.get(key)
        return None if seen is None else seen.since

    def forget(self, key: str) -> None:
        """Drop what is known about ``key``."""
        self._seen.pop(key, None)
