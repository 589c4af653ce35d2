"""The ``enqueue`` command line: one subcommand per module in ``enqueue.commands``.

Exit codes: what the subcommand returns (for ``run``, the command's own);
2 for usage and configuration errors; the ``exit_code`` of any other
``EnqueueError`` (see ``enqueue.errors``); 130 on Ctrl-C; 1 for an internal
error. Expected errors print exactly one line, ``enqueue: <message>``, to
stderr and no traceback; nothing printed contains a registered secret.
"""

from __future__ import annotations

import sys
import traceback
from types import ModuleType
from typing import Callable, Optional, Sequence

from enqueue import __version__
from enqueue.commands import dev_server, history, init, pause, prune, resume, run, sites, skip, status, users
from enqueue.errors import EXIT_FAILURE, EnqueueError
from enqueue.logs import add_logging_arguments, redact, setup_logging
from enqueue.usage import OneLineParser

__all__ = ["main", "command_modules", "build_parser", "guarded"]

EXIT_INTERRUPTED = 130


def command_modules() -> list[ModuleType]:
    """The subcommand modules, in the order ``enqueue --help`` lists them."""
    return [run, status, init, sites, pause, resume, skip, history, prune, dev_server, users]


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
        print(f"{prog}: {_one_line(str(exc))}", file=sys.stderr)
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
        args = build_parser().parse_args(argv)
        if getattr(args, "log_level", None) is not None:
            setup_logging(args.log_level, args.log_file, args.log_format, getattr(args, "site", None))
        return args._module.execute(args)

    return guarded("enqueue", body)
