"""The argument parser every command line of enqueue uses: errors are one line, not usage text + exit.

``enqueue.cli``, the subcommands in ``enqueue.commands`` and the original
tool's interface (``enqueue.compat``) all build their parsers from this
class, so every error of every command looks alike; the line is printed by
``enqueue.cli.guarded``.
"""

from __future__ import annotations

import argparse
from typing import NoReturn

from enqueue.errors import UsageError

__all__ = ["OneLineParser"]


class OneLineParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors raise a ``UsageError`` of one line instead of exiting.

    Tests can therefore call ``main`` without catching ``SystemExit``.
    """

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see '{self.prog} --help')")
