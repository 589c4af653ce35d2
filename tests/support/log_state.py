"""The process-wide logging state a test may change, put back as it was.

``enqueue.cli.main`` installs handlers on the root logger, registers
secrets for redaction and tags lines with the site; a test that runs it
must leave none of that to the next test.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import Iterator

import pytest

from enqueue import logs


@contextmanager
def logging_restored() -> Iterator[None]:
    """On exit: only the root logger's earlier handlers (new ones closed), its level, no secrets, no site."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        yield
    finally:
        for handler in list(root.handlers):
            if handler not in handlers:
                root.removeHandler(handler)
                handler.close()
        root.setLevel(level)
        logs._forget_secrets()
        logs.set_site(None)


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """The logging state after the test as it was before (see ``logging_restored``)."""
    with logging_restored():
        yield
