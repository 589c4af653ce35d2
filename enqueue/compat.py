"""The original tool's command line, kept valid: ``enqueue_command.py [options] config sitename [cmdargs ...]``.

::

    enqueue_command.py [-h] [--heartbeat-delay MIN] [--heartbeat-stale MIN]
        [--conflict-delay MIN] [--repeat] [--time-format FORMAT]
        [--leader-doc NAME] [--sites-doc NAME] config sitename [cmdargs ...]

Arguments are parsed exactly as the original parsed them (plain ``argparse``
with ``cmdargs`` as ``nargs="*"``), so an invocation that worked before means
the same now; in particular options after the command still belong to this
tool, and a command with options of its own needs ``--``. Minutes may be
fractional, and ``30s``, ``2m``, ``1h`` are accepted as well. The settings
and the agent are the ones ``enqueue run`` uses; kill_grace and the
connection come from the configuration file and environment.
"""

from __future__ import annotations

import argparse
import os
from typing import NoReturn, Optional, Sequence

from enqueue.cli import guarded
from enqueue.commands.run import duration_arg, start_agent
from enqueue.config import (
    DEFAULT_LEADER_DOC,
    DEFAULT_SITES_DOC,
    DEFAULT_TIME_FORMAT,
    load_agent_settings,
)
from enqueue.errors import ConfigError
from enqueue.logs import setup_logging
from enqueue.usage import OneLineParser

__all__ = ["build_parser", "main"]


class _CompatParser(OneLineParser):
    """Adds the hint users of the original tool most often need."""

    def error(self, message: str) -> NoReturn:
        if message.startswith("unrecognized arguments"):
            message += "; put -- before a command that has options of its own"
        super().error(message)


def build_parser(prog: Optional[str] = None) -> argparse.ArgumentParser:
    """The original tool's parser; the long option comes first so the usage line reads as it did."""
    parser = _CompatParser(
        prog=prog,
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
    return parser


def main(argv: Optional[Sequence[str]] = None, prog: Optional[str] = None) -> int:
    """Parse the original arguments, run the agent, return the exit code (the command's own, or 2, 3, ...)."""
    parser = build_parser(prog)

    def body() -> int:
        args = parser.parse_args(argv)
        if not args.cmdargs:
            raise ConfigError(f"no command given after config and sitename (see '{parser.prog} --help')")
        setup_logging("info", None, "text", args.sitename)
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
