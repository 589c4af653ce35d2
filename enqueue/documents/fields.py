"""Reading typed fields from a hand-edited document without ever raising (docs/PROTOCOL.md §2).

``document_parser`` turns away what is not a document object before a
parser reads it. ``Fields`` collects problems instead of raising: a field with a wrong type
reads as its default with a problem noted, and a required field that is
missing or unusable also sets ``fatal``, so the document's parser can refuse
the whole document. Not here: which fields a document has.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Mapping, TypeVar

from enqueue.site_names import is_site_name

_Parser = TypeVar("_Parser", bound=Callable[..., "tuple[Any, list[str]]"])


def document_parser(parse: _Parser) -> _Parser:
    """The rule every document's parser keeps before reading a field: no document parses to None with no
    problem, a document that is not a JSON object to None with that problem; ``parse`` sees objects only."""
    @functools.wraps(parse)
    def parse_object(raw: object, *names: str) -> tuple[Any, list[str]]:
        if raw is None:
            return None, []
        if not isinstance(raw, Mapping):
            return None, ["document is not an object"]
        return parse(raw, *names)
    return parse_object  # type: ignore[return-value]


class Fields:
    """Reads typed fields from a raw document, collecting problems instead of raising."""

    def __init__(self, raw: Mapping[str, Any]) -> None:
        self.raw = raw
        self.problems: list[str] = []
        self.fatal = False

    def _get(self, key: str, kinds: tuple, default: Any, required: bool, what: str) -> Any:
        if key not in self.raw or self.raw[key] is None:
            if required:
                # Even when the caller has a default: a missing 'turn' read as 0
                # would send the fencing token back without a word.
                self.problems.append(f"field '{key}' is missing")
                self.fatal = True
            return default
        value = self.raw[key]
        if isinstance(value, bool) and bool not in kinds:
            ok = False
        else:
            ok = isinstance(value, kinds)
        if not ok:
            self.problems.append(f"field '{key}' should be {what}, not {value!r:.60}")
            if required:
                self.fatal = True
            return default
        return value

    def text(self, key: str, *, required: bool = False) -> str | None:
        return self._get(key, (str,), None, required, "a string or null")

    def integer(self, key: str, default: int | None = 0, *, required: bool = False, minimum: int = 0,
                maximum: int | None = None) -> int | None:
        value = self._get(key, (int,), default, required, "an integer")
        if isinstance(value, int) and (value < minimum or (maximum is not None and value > maximum)):
            bound = f"at least {minimum}" if value < minimum else f"at most {maximum}"
            self.problems.append(f"field '{key}' should be {bound}, not {value}")
            if required:
                self.fatal = True
            return default
        return value

    def seconds(self, key: str) -> float | None:
        """A positive duration in seconds; anything else reads as unknown (None)."""
        value = self._get(key, (int, float), None, False, "a number of seconds")
        if value is not None and not (0 < value < float("inf")):
            self.problems.append(f"field '{key}' should be a positive number of seconds, not {value!r:.60}")
            return None
        return None if value is None else float(value)

    def flag(self, key: str, *, if_malformed: bool = False) -> bool:
        """A boolean; a value of the wrong type reads as ``if_malformed`` (pick the safe side)."""
        value = self._get(key, (bool,), None, False, "true or false")
        if value is None:
            return if_malformed if self.raw.get(key) is not None else False
        return bool(value)

    def choice(self, key: str, choices: tuple, *, required: bool = False) -> str | None:
        value = self.text(key, required=required)
        if value is not None and value not in choices:
            self.problems.append(f"field '{key}' should be one of {', '.join(choices)}, not {value!r:.60}")
            if required:
                self.fatal = True
            return None
        return value

    def site(self, key: str, *, required: bool = False) -> str | None:
        value = self.text(key, required=required)
        if value is not None and not is_site_name(value):
            self.problems.append(f"field '{key}' is not a site name: {value!r:.60}")
            if required:
                self.fatal = True
            return None
        return value
