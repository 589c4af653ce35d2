"""The ``enqueue`` command line: one subcommand per module in ``enqueue.commands``.

Exit codes: what the subcommand returns (for ``run``, the command's own);
2 for usage and configuration errors; the ``exit_code`` of any other
``EnqueueError`` (see ``enqueue.errors``); 130 on Ctrl-C; 1 for an internal
error. Expected errors print exactly one line, ``enqueue: <message>``, to
stderr and no traceback; nothing printed contains a registered secret.
"""

from __future__ import annotations

import importlib
import sys
import traceback
from types import ModuleType
from typing import Callable, Optional, Sequence

from enqueue import __version__, hints
from enqueue.errors import EXIT_FAILURE, EnqueueError
from enqueue.logs import add_logging_arguments, final_error_line, redact, setup_logging
from enqueue.usage import OneLineParser

__all__ = ["main", "command_modules", "build_parser", "guarded"]

EXIT_INTERRUPTED = 130

# The subcommands' module names under enqueue.commands, in the order ``enqueue
# --help`` lists them (``command_modules``). A command line that names one
# imports that module alone: an agent (``enqueue run``) stays small when it
# does not load ``status``, ``history`` or the embedded server's code.
COMMAND_NAMES = ("run", "status", "init", "repair", "sites", "pause", "resume", "skip", "history", "prune",
                 "dev_server", "users")


def command_modules() -> list[ModuleType]:
    """The subcommand modules, in the order ``enqueue --help`` lists them (``COMMAND_NAMES``)."""
    from enqueue.commands import (dev_server, history, init, pause, prune, repair, resume, run, sites, skip, status,
                                  users)

    return [run, status, init, repair, sites, pause, resume, skip, history, prune, dev_server, users]


def named_command(argv: Sequence[str]) -> Optional[ModuleType]:
    """The module of the subcommand ``argv`` names, if its first word that is not an option names one.

    The top-level parser's options take no value, so that word is the subcommand.
    """
    first = next((arg for arg in argv if not arg.startswith("-")), None)
    if first is None or first.replace("-", "_") not in COMMAND_NAMES:
        return None
    module = importlib.import_module(f"enqueue.commands.{first.replace('-', '_')}")
    return module if module.NAME == first else None


def build_parser(modules: Optional[Sequence[ModuleType]] = None) -> OneLineParser:
    """The top-level parser with one subparser per module (``_module`` names the chosen one)."""
    parser = OneLineParser(
        prog="enqueue",
        description="Let many sites take turns running one command, coordinated through CouchDB.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(title="commands", dest="subcommand", metavar="COMMAND")
    subparsers.required = True
    for module in modules if modules is not None else command_modules():
        sub = subparsers.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        module.configure(sub)
        if not any("--log-level" in action.option_strings for action in sub._actions):
            add_logging_arguments(sub)
        sub.set_defaults(_module=module)
    return parser


def _one_line(text: str) -> str:
    return " ".join(redact(text).split("\n")).strip()


def guarded(prog: str, body: Callable[[], int]) -> int:
    """Run ``body`` and turn every way it can end into an exit code, printing one line on error."""
    try:
        return int(body())
    except SystemExit as exc:  # --help and --version end this way
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else EXIT_FAILURE)
    except EnqueueError as exc:
        print(final_error_line(prog, _one_line(hints.explain(exc)), exc.exit_code), file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # a bug: show where, but never a secret
        print(redact(traceback.format_exc()).rstrip("\n"), file=sys.stderr)
        print(f"{prog}: internal error: {_one_line(f'{type(exc).__name__}: {exc}')}", file=sys.stderr)
        return EXIT_FAILURE


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Parse ``argv`` (default: ``sys.argv[1:]``), run the subcommand, return its exit code."""

    def body() -> int:
        words = sys.argv[1:] if argv is None else list(argv)
        named = named_command(words)
        args = build_parser(None if named is None else [named]).parse_args(words)
        if getattr(args, "log_level", None) is not None:
            setup_logging(args.log_level, args.log_file, args.log_format, getattr(args, "site", None))
        return args._module.execute(args)

    return guarded("enqueue", body)
