"""The original ``enqueue_command.py`` interface: same usage, same parsing, same settings as ``enqueue run``."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import types
from pathlib import Path
from typing import Iterator, Optional

import pytest

from enqueue import compat, logs
from enqueue.config import AgentSettings, Timing

REPO = Path(__file__).resolve().parents[2]
ORIGINAL_USAGE = (
    "usage: enqueue_command.py [-h] [--heartbeat-delay MIN] [--heartbeat-stale MIN] "
    "[--conflict-delay MIN] [--repeat] [--time-format FORMAT] [--leader-doc NAME] "
    "[--sites-doc NAME] config sitename [cmdargs ...]"
)


class Recorder:
    settings: Optional[AgentSettings] = None
    code = 0

    def run_agent(self, settings: AgentSettings) -> int:
        self.settings = settings
        return self.code


@pytest.fixture
def agent(monkeypatch) -> Recorder:
    recorder = Recorder()
    module = types.ModuleType("enqueue.agent_process")
    module.run_agent = recorder.run_agent  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "enqueue.agent_process", module)
    return recorder


@pytest.fixture
def config(tmp_path) -> str:
    path = tmp_path / "enqueue.ini"
    path.write_text("[couchdb]\nurl = http://127.0.0.1:5984\ndatabase = enqueue\n")
    return str(path)


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)
    logs.set_site(None)


def main(*argv: str) -> int:
    return compat.main(list(argv), prog="enqueue_command.py")


def test_usage_is_the_original(capsys) -> None:
    assert main("--help") == 0
    out = capsys.readouterr().out
    usage = " ".join(out.split("\n\n")[0].split())
    assert usage == ORIGINAL_USAGE


def test_help_shows_the_original_defaults(capsys) -> None:
    assert main("--help") == 0
    text = " ".join(capsys.readouterr().out.split())
    for expected in ("-d MIN", "-s MIN", "-c MIN", "-r", "-T FORMAT", "-L NAME", "-S NAME",
                     "(default: 10)", "(default: 30)", "(default: 1)", '(default: "%Y-%m-%d %H:%M:%S")',
                     "(default: enqueue_leader)", "(default: enqueue_sites)", "run once and exit with the command's exit code"):
        assert expected in text, expected


def test_defaults(agent, config) -> None:
    assert main(config, "alpha", "submit.sh", "x") == 0
    s = agent.settings
    assert (s.site, s.command, s.repeat) == ("alpha", ["submit.sh", "x"], False)
    assert s.timing == Timing(600, 1800, 60, 30)
    assert (s.time_format, s.leader_doc, s.sites_doc) == ("%Y-%m-%d %H:%M:%S", "enqueue_leader", "enqueue_sites")


@pytest.mark.parametrize(
    "argv, timing, others",
    [
        (["--heartbeat-delay", "5", "--heartbeat-stale", "20", "--conflict-delay", "0.5"],
         Timing(300, 1200, 30, 30), {}),
        (["-d", "0.05", "-s", "0.2"], Timing(3, 12, 60, 3), {}),
        (["-d", "30s", "-s", "2m", "-c", "1s"], Timing(30, 120, 1, 30), {}),
        (["-d", "1h", "-s", "3h"], Timing(3600, 10800, 60, 30), {}),
        (["--repeat"], Timing(), {"repeat": True}),
        (["-r", "-T", "%d.%m.%Y %H:%M", "-L", "lead", "-S", "sites"], Timing(),
         {"repeat": True, "time_format": "%d.%m.%Y %H:%M", "leader_doc": "lead", "sites_doc": "sites"}),
        (["--time-format", "%H:%M:%S", "--leader-doc", "L", "--sites-doc", "S"], Timing(),
         {"time_format": "%H:%M:%S", "leader_doc": "L", "sites_doc": "S"}),
    ],
)
def test_options_map_to_settings(agent, config, argv, timing, others) -> None:
    assert main(*argv, config, "alpha", "cmd") == 0
    s = agent.settings
    assert s.timing == timing
    for key, value in others.items():
        assert getattr(s, key) == value


def test_double_dash_passes_command_options(agent, config) -> None:
    assert main(config, "alpha", "--", "ls", "-l") == 0
    assert agent.settings.command == ["ls", "-l"]


def test_options_after_the_command_belong_to_the_tool_as_before(agent, config) -> None:
    assert main(config, "alpha", "submit.sh", "--repeat") == 0
    assert agent.settings.command == ["submit.sh"] and agent.settings.repeat is True


def test_exit_code_of_the_command(agent, config) -> None:
    agent.code = 17
    assert main(config, "alpha", "cmd") == 17


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["{config}", "alpha"], "no command given"),
        (["{config}"], "required: sitename"),
        (["-d", "ten", "{config}", "alpha", "cmd"], "argument --heartbeat-delay/-d: 'ten' is not a duration"),
        (["-s", "-3", "{config}", "alpha", "cmd"], "argument --heartbeat-stale/-s"),
        (["{config}", "alpha", "ls", "-l"], "unrecognized arguments: -l; put -- before a command"),
        (["-d", "10", "-s", "15", "{config}", "alpha", "cmd"], "heartbeat_stale (15 min) must be more than"),
        (["{config}", "bad name", "cmd"], "SITENAME 'bad name' is invalid"),
    ],
)
def test_errors_exit_2_with_one_line(agent, config, capsys, argv, expected) -> None:
    code = main(*[a.format(config=config) for a in argv])
    err = capsys.readouterr().err
    assert code == 2, err
    assert len(err.splitlines()) == 1, err
    assert err.startswith("enqueue_command.py: ")
    assert expected in err


def test_script_runs_from_a_checkout(tmp_path) -> None:
    """The wrapper finds the package next to it, from any working directory, without PYTHONPATH."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "enqueue_command.py"), "--help"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert " ".join(result.stdout.split("\n\n")[0].split()) == ORIGINAL_USAGE


def test_script_reports_bad_config_with_exit_2(tmp_path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "enqueue_command.py"), str(tmp_path / "none.ini"), "alpha", "true"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip().endswith("none.ini: no such configuration file")
    assert len(result.stderr.splitlines()) == 1
