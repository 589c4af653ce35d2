"""``enqueue run CONFIG SITENAME [options] [--] CMD [ARGS...]``: take turns running CMD.

Options may come anywhere before CMD; the first word after SITENAME that is
not one of ours (or an option's value) starts the command, and ``--`` ends
our options explicitly (needed only when CMD itself starts with ``-``).
Everything from CMD on is passed to the command untouched, so
``enqueue run cfg alpha ls -l`` runs ``ls -l``.

Durations on the command line are minutes unless suffixed (``30s``, ``2m``,
``1h``), as in the original tool. Flags override the configuration file.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
from typing import Any, Optional, Sequence

from enqueue import site_names
from enqueue.config import (
    DEFAULT_LEADER_DOC,
    DEFAULT_SITES_DOC,
    DEFAULT_TIME_FORMAT,
    OVERRIDE_KEYS,
    AgentSettings,
    load_agent_settings,
)
from enqueue.durations import format_duration, parse_duration
from enqueue.errors import (
    EXIT_AUTH,
    EXIT_CLUSTER_REFUSED,
    EXIT_DATABASE_MISSING,
    EXIT_FAILURE,
    EXIT_NOT_EXECUTABLE,
    EXIT_NO_TURN,
    EXIT_NOT_FOUND,
    EXIT_SITE_IN_USE,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    UsageError,
)
from enqueue.logs import add_logging_arguments
from enqueue.stop_signals import parse_stop_signal
from enqueue.timing import DEFAULT_KILL_GRACE_S, Timing
from enqueue.usage import OneLineParser

log = logging.getLogger("enqueue.run")

NAME = "run"
HELP = "take turns with the other sites running a command"
USAGE = "%(prog)s CONFIG SITENAME [options] [--] CMD [ARGS...]"

DURATION_HELP = "minutes, or a number with s, m or h"


def duration_arg(text: str) -> float:
    """``argparse`` type for durations: float seconds, or an ``ArgumentTypeError`` with the reason."""
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def stop_signal_arg(text: str) -> int:
    """``argparse`` type for ``--stop-signal``: a signal's number, or an ``ArgumentTypeError`` with the reason."""
    try:
        return parse_stop_signal(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def turn_count_arg(text: str) -> int:
    """``argparse`` type for ``--max-failures``: a whole number of turns, at least 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of turns, at least 1")
    return value


def _escape(text: str) -> str:
    """argparse %-formats help strings; a time format's % must survive that."""
    return text.replace("%", "%%")


def add_agent_options(parser: argparse.ArgumentParser) -> None:
    """The turn-taking options of ``enqueue run``; every default is None, meaning "not given"."""
    group = parser.add_argument_group("turn-taking options (override the configuration file)")
    group.add_argument(
        "-d", "--heartbeat-delay", dest="heartbeat_delay_s", metavar="DURATION", type=duration_arg,
        help=f"time between heartbeats; {DURATION_HELP} (default: {format_duration(Timing.heartbeat_delay_s)})",
    )
    group.add_argument(
        "-s", "--heartbeat-stale", dest="heartbeat_stale_s", metavar="DURATION", type=duration_arg,
        help="silence after which a site counts as gone; more than twice the heartbeat delay, else the "
             "agent beats more often than asked and logs it "
             f"(default: {format_duration(Timing.heartbeat_stale_s)})",
    )
    group.add_argument(
        "-c", "--conflict-delay", dest="conflict_delay_s", metavar="DURATION", type=duration_arg,
        help=f"wait after losing an election, with jitter (default: {format_duration(Timing.conflict_delay_s)})",
    )
    group.add_argument(
        "--kill-grace", dest="kill_grace_s", metavar="DURATION", type=duration_arg,
        help="time between SIGTERM and SIGKILL when the command must stop; at most (heartbeat-stale - "
             f"2 x heartbeat-delay) / 2 (default: {format_duration(DEFAULT_KILL_GRACE_S)}, or less to fit)",
    )
    group.add_argument(
        "-r", "--repeat", dest="repeat", action="store_true", default=None,
        help="take a turn again and again until stopped (default: run once and exit with the command's exit code)",
    )
    group.add_argument(
        "--no-repeat", dest="repeat", action="store_false", default=None,
        help="run once, even if the configuration file says repeat",
    )
    group.add_argument(
        "--max-wait", dest="max_wait_s", metavar="DURATION", type=duration_arg,
        help="run-once only: when no turn has started within DURATION, leave cleanly (step down, say left) "
             "and exit 75, so that a site loop goes back to monitoring (default: wait for as long as it takes)",
    )
    group.add_argument(
        "-T", "--time-format", dest="time_format", metavar="FORMAT",
        help=_escape(f"strftime format of the UTC times in documents (default: {DEFAULT_TIME_FORMAT})"),
    )
    group.add_argument(
        "-L", "--leader-doc", dest="leader_doc", metavar="NAME",
        help=f"id of the leader document (default: {DEFAULT_LEADER_DOC})",
    )
    group.add_argument(
        "-S", "--sites-doc", dest="sites_doc", metavar="NAME",
        help=f"id of the sites document (default: {DEFAULT_SITES_DOC})",
    )
    group.add_argument(
        "--allow-cluster", dest="allow_cluster", action="store_true", default=None,
        help="run even on a database that keeps several copies (n > 1), where a conflict check is no "
             "compare-and-swap and two sites could both win a turn (default: refuse; see docs/GUARANTEES.md)",
    )
    group.add_argument(
        "--stop-signal", dest="stop_signal", metavar="SIG", type=stop_signal_arg,
        help="the signal that starts the command's stop (on skip, revocation, the agent's stop, and at the "
             "lease's SIGTERM moment), by name (INT, SIGHUP) or number, for launchers such as srun, mpirun or "
             "'ssh -tt' that pass on only that one to the remote work; SIGKILL still follows after the kill grace "
             "(default: TERM; see docs/LAUNCHERS.md)",
    )
    group.add_argument(
        "--max-failures", dest="max_failures", metavar="K", type=turn_count_arg,
        help="drain this site after its command failed K turns in a row (exit code not 0, or not startable; "
             "fenced, revoked, skipped and stopped turns neither count nor break the run), with the reason and "
             "the last exit code in the registry, until 'enqueue sites CONFIG undrain SITE' (default: never)",
    )
    group.add_argument(
        "--wall-clock-offset", dest="wall_clock_offset_s", metavar="SECONDS", type=float,
        help="for testing clock skew: shift this site's wall clock by SECONDS (may be negative)",
    )
    add_side_options(parser)


def add_side_options(parser: argparse.ArgumentParser) -> None:
    """The side commands of ``enqueue run``, run outside the site's turns (enqueue.side_steps)."""
    group = parser.add_argument_group("side commands (shell command lines run outside this site's turns, "
                                      "never exclusive; see docs/OPERATIONS.md)")
    group.add_argument(
        "--between", dest="between", metavar="CMDLINE",
        help="run CMDLINE (with sh -c) before each wait for a turn: at the start and after every turn, e.g. "
             "the monitoring step; the site says 'between' meanwhile and is offered no turn",
    )
    group.add_argument(
        "--between-every", dest="between_every_s", metavar="DURATION", type=duration_arg,
        help=f"also run the --between command again while waiting, whenever DURATION has passed since it last "
             f"started (paused, drained, other sites' turns); {DURATION_HELP}",
    )
    group.add_argument(
        "--ready", dest="ready", metavar="CMDLINE",
        help="check CMDLINE (with sh -c) before each wait for a turn, after --between; while it exits non-zero "
             "the site is 'not ready: <first line of its output>' in status, is offered no turn, and the "
             "check runs again every 30 s (every heartbeat delay, if shorter)",
    )


def _takes_value(parser: argparse.ArgumentParser) -> dict[str, bool]:
    """Every option string of ``parser`` -> whether it consumes a value."""
    return {
        option: action.nargs != 0
        for action in parser._actions
        for option in action.option_strings
    }


def split_arguments(
    tokens: Sequence[str], options: argparse.ArgumentParser, positionals: int
) -> tuple[list[str], list[str], list[str]]:
    """Split ``tokens`` into (our options with their values, the first ``positionals`` words, the command).

    Options may appear anywhere before the command. The command starts at
    the first word after the positionals that is neither one of ``options``'
    option strings nor the value of one, or right after ``--``. Unknown
    ``-x`` words stay with the options, where the parser reports them.
    """
    takes_value = _takes_value(options)
    long_options = [option for option in takes_value if option.startswith("--")]
    leading: list[str] = []
    words: list[str] = []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token == "--":
            i += 1
            break
        if not token.startswith("-") or token == "-":
            if len(words) == positionals:
                break
            words.append(token)
            i += 1
            continue
        leading.append(token)
        i += 1
        if token.startswith("--"):
            name, has_equals, _ = token.partition("=")
            matches = [name] if name in takes_value else [o for o in long_options if o.startswith(name)]
            if not has_equals and len(matches) == 1 and takes_value[matches[0]] and i < len(tokens):
                leading.append(tokens[i])
                i += 1
            continue
        # Short options, possibly bundled (-rd5, -rd 5).
        for position in range(1, len(token)):
            option = "-" + token[position]
            if option not in takes_value:
                break
            if takes_value[option]:
                if position == len(token) - 1 and i < len(tokens):
                    leading.append(tokens[i])
                    i += 1
                break
    # Words after "--" that the positionals still need are positionals, not the command.
    rest = list(tokens[i:])
    while len(words) < positionals and rest:
        words.append(rest.pop(0))
    return leading, words, rest


class _SiteAndCommandAction(argparse.Action):
    """Receives everything after CONFIG: our options, SITENAME, then the command, kept verbatim.

    ``argparse`` alone cannot tell options between SITENAME and CMD from
    CMD's own, and how it treats ``--`` differs between Python versions, so
    this action splits the words itself.
    """

    def __init__(self, option_strings: list[str], dest: str, options_parser: argparse.ArgumentParser,
                 **kwargs: Any) -> None:
        super().__init__(option_strings, dest, **kwargs)
        self.options_parser = options_parser

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: Optional[str] = None) -> None:
        leading, words, command = split_arguments(list(values or []), self.options_parser, positionals=1)
        if "-h" in leading or "--help" in leading:
            parser.print_help()
            parser.exit()
        if leading:
            self.options_parser.parse_args(leading, namespace)
        if not words:
            parser.error("the following arguments are required: SITENAME, CMD")
        if not command:
            parser.error("no command given: CMD [ARGS...] must follow CONFIG SITENAME")
        namespace.site = words[0]
        namespace.command = command


def _options_only_parser(prog: str) -> argparse.ArgumentParser:
    parser = OneLineParser(prog=prog, add_help=False)
    add_agent_options(parser)
    add_logging_arguments(parser)
    return parser


def configure(parser: argparse.ArgumentParser) -> None:
    """Add ``run``'s arguments to its subparser."""
    parser.usage = USAGE
    parser.epilog = (
        "Durations are minutes unless suffixed: 0.5 = 30 s; 30s, 2m, 1h. The command runs with "
        "ENQUEUE_SITE, ENQUEUE_TURN and ENQUEUE_LEADER in its environment. Exit codes: the command's own "
        "(128 + the signal's number when it or the agent was stopped by one: 130 Ctrl-C, 143 SIGTERM); "
        f"{EXIT_FAILURE} the turn ended with no exit code of the command's (it could not be started in time, "
        f"or its supervisor died); {EXIT_USAGE} usage or configuration error; {EXIT_UNREACHABLE} database "
        f"unreachable; {EXIT_AUTH} credentials refused or not allowed; {EXIT_DATABASE_MISSING} database "
        f"missing; {EXIT_CLUSTER_REFUSED} clustered database refused; {EXIT_SITE_IN_USE} an agent of this "
        f"site already runs on this host; {EXIT_NO_TURN} no turn within --max-wait (the agent left cleanly); "
        f"{EXIT_NOT_EXECUTABLE}/{EXIT_NOT_FOUND} the command is not "
        "executable / not found."
    )
    parser.add_argument("config", metavar="CONFIG", help="configuration file (INI, see the README)")
    parser.add_argument(
        "site_and_command", metavar="SITENAME [--] CMD [ARGS...]", nargs=argparse.REMAINDER,
        action=_SiteAndCommandAction, options_parser=_options_only_parser(parser.prog),
        help=f"this site's name ({site_names.RULE}), "
             "then the command to run with its arguments",
    )
    parser.set_defaults(site=None, command=None)
    add_agent_options(parser)
    add_logging_arguments(parser)


def overrides_from(args: argparse.Namespace) -> dict[str, Any]:
    """The flag values of ``args`` as ``load_agent_settings`` overrides (None: not given)."""
    return {key: getattr(args, key, None) for key in OVERRIDE_KEYS}


def start_agent(settings: AgentSettings) -> int:
    """Log the settings' start-up notes, hand ``settings`` to the agent and return its exit code."""
    for note in settings.notes:
        log.info("%s", note)
    from enqueue.agent_process import run_agent  # loaded here so that the other commands start without it

    return run_agent(settings)


def execute(args: argparse.Namespace) -> int:
    """Load the settings for this site and run the agent until it is done."""
    if not args.site or not args.command:
        raise UsageError("CONFIG, SITENAME and CMD are required (see 'enqueue run --help')")
    settings = load_agent_settings(args.config, args.site, args.command, overrides_from(args), os.environ)
    if getattr(args, "max_wait_s", None) is not None:
        settings = dataclasses.replace(settings, max_wait_s=args.max_wait_s)
    return start_agent(settings)
