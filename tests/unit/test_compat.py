"""The original ``enqueue_command.py`` interface: same usage, same parsing, same settings as ``enqueue run``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from enqueue import compat
from enqueue.timing import Timing
from tests.support.fake_agent import agent, config  # noqa: F401  (fixtures)
from tests.support.log_state import restore_logging  # noqa: F401  (fixture)

pytestmark = pytest.mark.usefixtures("restore_logging")

REPO = Path(__file__).resolve().parents[2]
ORIGINAL_USAGE = (
    "usage: enqueue_command.py [-h] [--heartbeat-delay MIN] [--heartbeat-stale MIN] "
    "[--conflict-delay MIN] [--repeat] [--time-format FORMAT] [--leader-doc NAME] "
    "[--sites-doc NAME] config sitename [cmdargs ...]"
)


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
    agent.result = lambda: 17
    assert main(config, "alpha", "cmd") == 17


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["{config}", "alpha"], "no command given"),
        (["{config}"], "required: sitename"),
        (["-d", "ten", "{config}", "alpha", "cmd"], "argument --heartbeat-delay/-d: 'ten' is not a duration"),
        (["-s", "-3", "{config}", "alpha", "cmd"], "argument --heartbeat-stale/-s"),
        (["{config}", "alpha", "ls", "-l"], "unrecognized arguments: -l; put -- before a command"),
        (["--kill-grace", "5", "{config}", "alpha", "cmd"],
         "unrecognized arguments: --kill-grace; enqueue_command.py has no such option; 'enqueue run' takes"),
        (["{config}", "alpha", "cmd", "--bogus"], "unrecognized arguments: --bogus; put -- before a command"),
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


def test_stale_twice_the_delay_is_accepted_and_said_in_the_log_file(agent, config, tmp_path, capsys) -> None:
    """The original tool accepted -d 10 -s 20; it runs with a shorter delay, and --log-file gets the line."""
    log_file = tmp_path / "agent.log"
    assert main("-d", "10", "-s", "20", "--log-file", str(log_file), config, "alpha", "submit.sh") == 0
    assert agent.settings.timing == Timing(570, 1200, 60, 30)
    lines = log_file.read_text().splitlines()
    assert len(lines) == 1 and lines[0].endswith(
        "alpha INFO heartbeat every 9 min 30 s instead of every 10 min: heartbeat_stale (20 min) needs more than "
        "2 x heartbeat_delay, with room for the kill grace and a late heartbeat (the delay is the longest time "
        "between beats)")
    assert capsys.readouterr().err == ""


def test_logging_options_after_the_command_belong_to_the_tool_like_the_others(agent, config, tmp_path) -> None:
    log_file = tmp_path / "agent.log"
    assert main(config, "alpha", "submit.sh", "--log-format", "json", "--log-file", str(log_file)) == 0
    assert agent.settings.command == ["submit.sh"]
    assert log_file.exists()


def test_an_unfixable_timing_is_still_refused(agent, tmp_path, capsys) -> None:
    path = tmp_path / "grace.ini"
    path.write_text("[couchdb]\nurl = http://127.0.0.1:5984\ndatabase = enqueue\n[enqueue]\nkill_grace = 10\n")
    assert main("-d", "10", "-s", "20", str(path), "alpha", "cmd") == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "heartbeat_stale (20 min) must be more than 2 x heartbeat_delay" in err


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


def _bare_python(script: Path, cwd: Path, *argv: str) -> subprocess.CompletedProcess:
    """``script`` run by this Python without its site-packages: no enqueue installed, none of its libraries."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([sys.executable, "-S", str(script), *argv], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=60)


def test_script_without_the_libraries_says_how_to_install_them(tmp_path) -> None:
    result = _bare_python(REPO / "scripts" / "enqueue_command.py", tmp_path, "cfg.ini", "alpha", "true")
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("enqueue_command.py: this Python (")
    assert "lacks the packages enqueue needs (couchdb, python-dateutil, psutil)" in lines[0]
    assert f"-m pip install {REPO}'" in lines[0]


def test_script_away_from_a_checkout_without_the_package_says_how_to_install_it(tmp_path) -> None:
    copy = tmp_path / "bin" / "enqueue_command.py"
    copy.parent.mkdir()
    copy.write_text((REPO / "scripts" / "enqueue_command.py").read_text())
    result = _bare_python(copy, tmp_path, "--help")
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "lacks the enqueue package: install enqueue into it with '" in lines[0]
    assert "-m pip install /path/to/enqueue'" in lines[0]


def test_script_checks_the_libraries_setup_cfg_requires() -> None:
    import configparser
    import importlib.util

    spec = importlib.util.spec_from_file_location("enqueue_command_script", REPO / "scripts" / "enqueue_command.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    required = {line.split(">")[0].split("=")[0].strip()
                for line in cfg["options"]["install_requires"].splitlines() if line.strip()}
    assert set(module.REQUIRED_MODULES.values()) == required
