"""``enqueue`` command line: argument parsing into settings, exit codes, one-line errors.

The agent is replaced by a fake module, so no server is needed.
"""

from __future__ import annotations

import argparse
import logging
import os

import pytest

from enqueue import __version__, cli, logs
from enqueue.commands import run
from enqueue.errors import EnqueueError, Unreachable
from enqueue.timing import Timing
from tests.support.fake_agent import CONFIG, FakeAgent, agent, config  # noqa: F401  (fixtures)
from tests.support.log_state import restore_logging  # noqa: F401  (fixture)

pytestmark = pytest.mark.usefixtures("restore_logging")


def run_main(*argv: str) -> int:
    return cli.main(list(argv))


# --------------------------------------------------------------------------- parsing into settings


def test_minimal_run(agent, config) -> None:
    assert run_main("run", config, "alpha", "submit.sh") == 0
    s = agent.settings
    assert s is not None
    assert (s.site, s.command, s.repeat, s.config_path) == ("alpha", ["submit.sh"], False, config)
    assert s.timing == Timing()
    assert (s.time_format, s.leader_doc, s.sites_doc, s.wall_clock_offset_s) == (
        "%Y-%m-%d %H:%M:%S", "enqueue_leader", "enqueue_sites", 0.0)


@pytest.mark.parametrize(
    "argv, command",
    [
        (["alpha", "ls", "-l"], ["ls", "-l"]),
        (["alpha", "--", "ls", "-l"], ["ls", "-l"]),
        (["alpha", "--", "-weird", "x"], ["-weird", "x"]),
        (["alpha", "--", "--", "x"], ["--", "x"]),
        (["alpha", "-r", "ls", "-r"], ["ls", "-r"]),
        (["alpha", "sh", "-c", "echo $ENQUEUE_TURN"], ["sh", "-c", "echo $ENQUEUE_TURN"]),
        (["alpha", "-d", "1", "ls", "-d", "2"], ["ls", "-d", "2"]),
    ],
)
def test_command_is_kept_verbatim(agent, config, argv, command) -> None:
    assert run_main("run", config, *argv) == 0
    assert agent.settings.command == command


@pytest.mark.parametrize(
    "options, expected",
    [
        (["-d", "1"], {"heartbeat_delay_s": 60}),
        (["--heartbeat-delay", "0.05", "--heartbeat-stale", "0.2"],
         {"heartbeat_delay_s": 3, "heartbeat_stale_s": 12, "kill_grace_s": 3}),
        (["-d", "30s", "-s", "2m", "-c", "5s", "--kill-grace", "10s"],
         {"heartbeat_delay_s": 30, "heartbeat_stale_s": 120, "conflict_delay_s": 5, "kill_grace_s": 10}),
        (["--heartbeat-delay=1h", "--heartbeat-stale=3h"], {"heartbeat_delay_s": 3600, "heartbeat_stale_s": 10800}),
        (["-d5"], {"heartbeat_delay_s": 300}),
        (["-rd", "5"], {"heartbeat_delay_s": 300, "repeat": True}),
        (["-r"], {"repeat": True}),
        (["--repeat", "--no-repeat"], {"repeat": False}),
        (["-T", "%H:%M %d.%m.%Y"], {"time_format": "%H:%M %d.%m.%Y"}),
        (["-L", "lead", "-S", "sites"], {"leader_doc": "lead", "sites_doc": "sites"}),
        (["--leader-doc", "lead", "--sites-doc", "sites"], {"leader_doc": "lead", "sites_doc": "sites"}),
        (["--wall-clock-offset", "-7200"], {"wall_clock_offset_s": -7200.0}),
        (["--wall-clock-offset=3600.5"], {"wall_clock_offset_s": 3600.5}),
        (["--stop-signal", "INT"], {"stop_signal": 2}),
        (["--stop-signal=SIGUSR1", "--max-failures", "3"], {"stop_signal": 10, "max_failures": 3}),
        (["--max-failures=1"], {"max_failures": 1}),
    ],
)
@pytest.mark.parametrize("where", ["before CONFIG", "after SITENAME"])
def test_options(agent, config, options, expected, where) -> None:
    if where == "before CONFIG":
        argv = ["run", *options, config, "alpha", "cmd"]
    else:
        argv = ["run", config, "alpha", *options, "cmd"]
    assert run_main(*argv) == 0
    s = agent.settings
    for key, value in expected.items():
        actual = getattr(s.timing, key) if key.endswith("_s") and hasattr(s.timing, key) else getattr(s, key)
        assert actual == pytest.approx(value) if isinstance(value, float) else actual == value, key
    assert s.command == ["cmd"]


def test_options_between_config_and_sitename(agent, config) -> None:
    assert run_main("run", config, "-d", "2", "alpha", "cmd") == 0
    assert agent.settings.timing.heartbeat_delay_s == 120
    assert agent.settings.site == "alpha"


def test_later_option_wins(agent, config) -> None:
    assert run_main("run", "-d", "1", config, "alpha", "-d", "2", "cmd") == 0
    assert agent.settings.timing.heartbeat_delay_s == 120


def test_flags_override_file(agent, tmp_path) -> None:
    path = tmp_path / "c.ini"
    path.write_text(CONFIG + "[enqueue]\nheartbeat_delay = 2\nrepeat = true\n")
    assert run_main("run", str(path), "alpha", "--no-repeat", "-d", "3", "cmd") == 0
    assert agent.settings.timing.heartbeat_delay_s == 180 and agent.settings.repeat is False


def test_environment_reaches_connection(agent, config, monkeypatch) -> None:
    monkeypatch.setenv("ENQUEUE_COUCHDB_DATABASE", "from_env")
    assert run_main("run", config, "alpha", "cmd") == 0
    assert agent.settings.connection.database == "from_env"


# --------------------------------------------------------------------------- exit codes and errors


def test_agent_exit_code_is_returned(agent, config) -> None:
    agent.result = lambda: 42
    assert run_main("run", config, "alpha", "cmd") == 42


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["run", "{config}", "alpha"], "no command given"),
        (["run", "{config}"], "required: SITENAME"),
        (["run"], "required: CONFIG"),
        ([], "required: COMMAND"),
        (["nosuchcommand"], "invalid choice: 'nosuchcommand'"),
        (["run", "{config}", "alpha", "-d", "soon", "cmd"], "argument -d/--heartbeat-delay: 'soon' is not a duration"),
        (["run", "{config}", "alpha", "-s", "-5", "cmd"], "argument -s/--heartbeat-stale"),
        (["run", "{config}", "alpha", "--kill-grace", "x", "cmd"], "argument --kill-grace"),
        (["run", "{config}", "alpha", "--wall-clock-offset", "x", "cmd"], "argument --wall-clock-offset"),
        (["run", "{config}", "alpha", "--bogus", "cmd"], "unrecognized arguments: --bogus"),
        (["run", "{config}", "alpha", "-d"], "expected one argument"),
        (["run", "{config}", "alpha", "--log-level", "loud", "cmd"], "argument --log-level: invalid choice"),
        (["run", "{config}", "al pha", "cmd"], "SITENAME 'al pha' is invalid"),
        (["run", "{config}", "alpha", "-d", "10", "-s", "20", "--kill-grace", "10", "cmd"],
         "heartbeat_stale (20 min) must be more than 2 x heartbeat_delay"),
        (["run", "{config}", "alpha", "-T", "%s", "cmd"], "--time-format: '%s' cannot be read back"),
        (["run", "{missing}", "alpha", "cmd"], "no such configuration file"),
    ],
)
def test_usage_and_config_errors_exit_2_with_one_line(agent, config, tmp_path, capsys, argv, expected) -> None:
    argv = [a.format(config=config, missing=str(tmp_path / "missing.ini")) for a in argv]
    assert run_main(*argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("enqueue: ")
    assert expected in lines[0]
    assert "Traceback" not in err
    assert agent.settings is None


def test_enqueue_error_from_agent(agent, config, capsys) -> None:
    def unreachable() -> int:
        raise Unreachable("cannot reach database 'enqueue' at http://127.0.0.1:5984: connection refused")

    agent.result = unreachable
    assert run_main("run", config, "alpha", "cmd") == Unreachable.exit_code == 3
    err = capsys.readouterr().err
    assert err == ("enqueue: cannot reach database 'enqueue' at http://127.0.0.1:5984: connection refused; "
                   f"check url = in {os.path.abspath(config)}\n")


@pytest.mark.parametrize("given", ["0", "-1", "x", "1.5", ""])
def test_a_bad_max_failures_is_one_line_and_exit_2(agent, config, capsys, given) -> None:
    assert run_main("run", config, "alpha", "--max-failures", given, "cmd") == 2
    err = capsys.readouterr().err
    assert err == (f"enqueue: argument --max-failures: {given!r} is not a whole number of turns, at least 1 "
                   "(see 'enqueue run --help')\n")


def test_error_messages_are_one_line_and_redacted(agent, config, capsys) -> None:
    logs.register_secret("topsecret")

    def fail() -> int:
        raise EnqueueError("first line with topsecret\nsecond line http://u:pw@h")

    agent.result = fail
    assert run_main("run", config, "alpha", "cmd") == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "topsecret" not in err and ":pw@" not in err


def test_keyboard_interrupt_is_130(agent, config) -> None:
    def interrupted() -> int:
        raise KeyboardInterrupt

    agent.result = interrupted
    assert run_main("run", config, "alpha", "cmd") == 130


def test_internal_error_is_1_with_redacted_traceback(agent, config, capsys) -> None:
    logs.register_secret("topsecret")

    def bug() -> int:
        raise RuntimeError("oops topsecret")

    agent.result = bug
    assert run_main("run", config, "alpha", "cmd") == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "internal error: RuntimeError" in err
    assert "topsecret" not in err


def test_version(capsys) -> None:
    assert run_main("--version") == 0
    assert capsys.readouterr().out.strip() == f"enqueue {__version__}"


# --------------------------------------------------------------------------- help texts


def test_run_help_mentions_defaults(capsys) -> None:
    assert run_main("run", "--help") == 0
    text = " ".join(capsys.readouterr().out.split())
    for expected in ("CONFIG SITENAME [options] [--] CMD [ARGS...]", "(default: 10 min)", "(default: 30 min)",
                     "(default: 1 min)", "(default: 30 s", "(default: %Y-%m-%d %H:%M:%S)",
                     "(default: enqueue_leader)", "(default: enqueue_sites)", "clock skew", "--log-level",
                     "--log-file", "--log-format", "minutes", "--stop-signal SIG", "(default: TERM;",
                     "docs/LAUNCHERS.md", "--max-failures K", "drain this site after its command failed K turns",
                     "undrain SITE' (default: never)"):
        assert expected in text, expected


def test_help_after_sitename(capsys) -> None:
    assert run_main("run", "cfg", "alpha", "-h") == 0
    assert "usage: enqueue run" in capsys.readouterr().out


def test_top_level_help_lists_run(capsys) -> None:
    assert run_main("--help") == 0
    assert "run" in capsys.readouterr().out


# --------------------------------------------------------------------------- logging and the pieces


def test_logging_is_set_up_for_the_site(agent, config, tmp_path) -> None:
    log_file = tmp_path / "agent.log"

    def log_something() -> int:
        logging.getLogger("enqueue.agent").info("waiting for a turn")
        return 0

    agent.result = log_something
    assert run_main("run", config, "alpha", "--log-file", str(log_file), "--log-format", "json", "cmd") == 0
    assert '"site": "alpha"' in log_file.read_text()
    assert '"message": "waiting for a turn"' in log_file.read_text()


def _options() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(add_help=False)
    run.add_agent_options(parser)
    logs.add_logging_arguments(parser)
    return parser


@pytest.mark.parametrize(
    "tokens, split",
    [
        (["alpha", "ls"], ([], ["alpha"], ["ls"])),
        (["-r", "alpha", "-d", "5", "ls", "-r"], (["-r", "-d", "5"], ["alpha"], ["ls", "-r"])),
        (["alpha", "--", "-x"], ([], ["alpha"], ["-x"])),
        (["--", "alpha", "ls"], ([], ["alpha"], ["ls"])),
        (["alpha", "--heartbeat-del", "5", "ls"], (["--heartbeat-del", "5"], ["alpha"], ["ls"])),
        (["alpha", "--bogus", "ls"], (["--bogus"], ["alpha"], ["ls"])),
        (["alpha", "-rd5", "ls"], (["-rd5"], ["alpha"], ["ls"])),
        (["alpha", "-"], ([], ["alpha"], ["-"])),
        (["alpha"], ([], ["alpha"], [])),
        ([], ([], [], [])),
    ],
)
def test_split_arguments(tokens, split) -> None:
    assert run.split_arguments(tokens, _options(), positionals=1) == split


def test_command_modules_lists_run() -> None:
    names = [module.NAME for module in cli.command_modules()]
    assert names[0] == "run"
    assert "dev-server" in names


def test_command_names_are_the_command_modules_in_order() -> None:
    assert [m.__name__.rpartition(".")[2] for m in cli.command_modules()] == list(cli.COMMAND_NAMES)


def test_a_named_subcommand_is_its_module_alone_and_anything_else_is_none() -> None:
    assert cli.named_command(["run", "x.ini", "s"]).NAME == "run"
    assert cli.named_command(["dev-server"]).NAME == "dev-server"
    assert cli.named_command(["dev_server"]) is None
    assert cli.named_command(["nosuch"]) is None
    assert cli.named_command(["--version"]) is None
