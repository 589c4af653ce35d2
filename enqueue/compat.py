"""The original tool's command line, kept valid: ``enqueue_command.py [options] config sitename [cmdargs ...]``.

::

    enqueue_command.py [-h] [--heartbeat-delay MIN] [--heartbeat-stale MIN]
        [--conflict-delay MIN] [--repeat] [--time-format FORMAT]
        [--leader-doc NAME] [--sites-doc NAME] config sitename [cmdargs ...]

Arguments are parsed exactly as the original parsed them (plain ``argparse``
with ``cmdargs`` as ``nargs="*"``), so an invocation that worked before means
the same now; in particular options after the command still belong to this
tool, and a command with options of its own needs ``--``. The logging
options of every enqueue command (``--log-level``, ``--log-file``,
``--log-format``) are accepted too; the usage line stays the original's.
Minutes may be fractional, and ``30s``, ``2m``, ``1h`` are accepted as well. The settings
and the agent are the ones ``enqueue run`` uses; kill_grace and the
connection come from the configuration file and environment.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Optional, Sequence

from enqueue.cli import guarded
from enqueue.commands.run import duration_arg, split_arguments, start_agent
from enqueue.config import (
    DEFAULT_LEADER_DOC,
    DEFAULT_SITES_DOC,
    DEFAULT_TIME_FORMAT,
    load_agent_settings,
)
from enqueue.errors import ConfigError
from enqueue.logs import add_logging_arguments, setup_logging
from enqueue.usage import OneLineParser

__all__ = ["build_parser", "main"]


_USAGE = (
    "%(prog)s [-h] [--heartbeat-delay MIN] [--heartbeat-stale MIN] [--conflict-delay MIN] [--repeat] "
    "[--time-format FORMAT] [--leader-doc NAME] [--sites-doc NAME] config sitename [cmdargs ...]"
)


class _CompatParser(OneLineParser):
    """Parses as the original did; unknown words get the hint that fits where they stand."""

    def parse_args(self, args: Optional[Sequence[str]] = None, namespace: Optional[argparse.Namespace] = None
                   ) -> argparse.Namespace:  # type: ignore[override]
        tokens = list(sys.argv[1:] if args is None else args)
        parsed, unknown = self.parse_known_args(tokens, namespace)
        if unknown:
            self.error(f"unrecognized arguments: {' '.join(unknown)}; {self._hint(tokens, unknown)}")
        return parsed

    def _hint(self, tokens: list[str], unknown: list[str]) -> str:
        _options, _words, command = split_arguments(tokens, self, positionals=2)
        if all(word in command for word in unknown):
            return "put -- before a command that has options of its own"
        return (f"{self.prog} has no such option; 'enqueue run' takes many more, "
                f"and a command's own options go after --")


def build_parser(prog: Optional[str] = None) -> argparse.ArgumentParser:
    """The original tool's parser; the long option comes first so the usage line reads as it did."""
    parser = _CompatParser(
        prog=prog,
        usage=_USAGE,
        description="Take turns with other sites running a command, coordinated through CouchDB. "
                    "(The original interface; 'enqueue run' is the current one.)",
    )
    parser.add_argument(
        "--heartbeat-delay", "-d", dest="heartbeat_delay_s", metavar="MIN", type=duration_arg,
        help="minutes between heartbeats (default: 10); fractions, 30s, 2m and 1h are accepted",
    )
    parser.add_argument(
        "--heartbeat-stale", "-s", dest="heartbeat_stale_s", metavar="MIN", type=duration_arg,
        help="minutes of silence after which a site counts as gone (default: 30)",
    )
    parser.add_argument(
        "--conflict-delay", "-c", dest="conflict_delay_s", metavar="MIN", type=duration_arg,
        help="minutes to wait after losing an election (default: 1)",
    )
    parser.add_argument(
        "--repeat", "-r", dest="repeat", action="store_true", default=None,
        help="repeat the command (default: run once and exit with the command's exit code)",
    )
    parser.add_argument(
        "--time-format", "-T", dest="time_format", metavar="FORMAT",
        help=f'time format in documents (default: "{DEFAULT_TIME_FORMAT}")'.replace("%", "%%"),
    )
    parser.add_argument(
        "--leader-doc", "-L", dest="leader_doc", metavar="NAME",
        help=f"leader document name (default: {DEFAULT_LEADER_DOC})",
    )
    parser.add_argument(
        "--sites-doc", "-S", dest="sites_doc", metavar="NAME",
        help=f"sites document name (default: {DEFAULT_SITES_DOC})",
    )
    parser.add_argument("config", help="configuration file")
    parser.add_argument("sitename", help="name of this site")
    parser.add_argument("cmdargs", nargs="*", help="the command to run and its arguments")
    add_logging_arguments(parser)
    return parser


def main(argv: Optional[Sequence[str]] = None, prog: Optional[str] = None) -> int:
    """Parse the original arguments, run the agent, return the exit code (the command's own, or 2, 3, ...)."""
    parser = build_parser(prog)

    def body() -> int:
        args = parser.parse_args(argv)
        if not args.cmdargs:
            raise ConfigError(f"no command given after config and sitename (see '{parser.prog} --help')")
        setup_logging(args.log_level, args.log_file, args.log_format, args.sitename)
        overrides = {
            "heartbeat_delay_s": args.heartbeat_delay_s,
            "heartbeat_stale_s": args.heartbeat_stale_s,
            "conflict_delay_s": args.conflict_delay_s,
            "repeat": args.repeat,
            "time_format": args.time_format,
            "leader_doc": args.leader_doc,
            "sites_doc": args.sites_doc,
        }
        settings = load_agent_settings(args.config, args.sitename, args.cmdargs, overrides, os.environ)
        return start_agent(settings)

    return guarded(parser.prog, body)
