"""``enqueue.run`` / ``enqueue.turn`` options and refusals: everything decided before the database is touched."""

from __future__ import annotations

import datetime as _dt
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import enqueue
from enqueue import api
from enqueue.config import load_agent_settings
from enqueue.errors import ConfigError, SiteInUse

# Nothing listens on port 9: a test that got as far as the database would fail with Unreachable.
CONFIG = "[couchdb]\nurl = http://127.0.0.1:9\ndatabase = nowhere\n"


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "enqueue.ini"
    path.write_text(CONFIG)
    return path


def test_durations_take_seconds_timedeltas_and_the_files_duration_text() -> None:
    overrides = api.overrides_from("enqueue.run", dict(
        heartbeat_delay=2, heartbeat_stale=_dt.timedelta(seconds=9), conflict_delay="30s", kill_grace="0.05"))
    assert overrides == dict(heartbeat_delay_s=2.0, heartbeat_stale_s=9.0, conflict_delay_s=30.0, kill_grace_s=3.0)
    assert api.overrides_from("enqueue.run", dict(kill_grace=0, repeat=None)) == dict(kill_grace_s=0.0)


def test_flags_texts_and_the_clock_offset_keep_their_values() -> None:
    overrides = api.overrides_from("enqueue.run", dict(repeat=True, allow_cluster=False, leader_doc="l",
                                                       sites_doc="s", time_format="%Y", wall_clock_offset=-3600))
    assert overrides == dict(repeat=True, allow_cluster=False, leader_doc="l", sites_doc="s", time_format="%Y",
                             wall_clock_offset_s=-3600.0)


@pytest.mark.parametrize("options, message", [
    (dict(heartbeat_dealy=5), "enqueue.run: unknown option 'heartbeat_dealy'; the options are heartbeat_delay,"),
    (dict(heartbeat_delay="5 parsecs"), "enqueue.run: heartbeat_delay='5 parsecs': '5 parsecs' is not a duration"),
    (dict(heartbeat_delay=-1), "enqueue.run: heartbeat_delay=-1: must be a finite number of seconds, not negative"),
    (dict(heartbeat_stale=float("nan")), "heartbeat_stale=nan: must be a finite number of seconds"),
    (dict(conflict_delay=0), "enqueue.run: conflict_delay=0: must be more than 0"),
    (dict(kill_grace=True), "enqueue.run: kill_grace=True: expected seconds (a number), a timedelta or text"),
    (dict(kill_grace=[1]), "kill_grace=[1]: expected seconds"),
    (dict(repeat="yes"), "enqueue.run: repeat='yes': expected True or False"),
    (dict(leader_doc=5), "enqueue.run: leader_doc=5: expected text"),
    (dict(wall_clock_offset="1h"), "wall_clock_offset='1h': expected a finite number of seconds"),
])
def test_a_bad_option_is_a_config_error_naming_it(options: dict, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        api.overrides_from("enqueue.run", options)
    assert str(raised.value).startswith(message) or message in str(raised.value), str(raised.value)


def test_options_reach_the_settings_as_the_flags_of_enqueue_run_do(config: Path) -> None:
    settings = api.load_settings("enqueue.run", config, "alpha", ["true"],
                                 dict(heartbeat_delay=0.5, heartbeat_stale="2s", kill_grace=0.3, repeat=True), None)
    expected = load_agent_settings(str(config), "alpha", ["true"], dict(
        heartbeat_delay_s=0.5, heartbeat_stale_s=2.0, kill_grace_s=0.3, repeat=True), {})
    assert settings == expected
    assert (settings.timing.heartbeat_delay_s, settings.timing.heartbeat_stale_s, settings.repeat) == (0.5, 2.0, True)


def test_timings_that_break_the_rules_are_refused_as_enqueue_run_refuses_them(config: Path) -> None:
    with pytest.raises(ConfigError) as raised:
        enqueue.run(config, "alpha", ["true"], heartbeat_delay=1, heartbeat_stale="2s", kill_grace=1)
    assert "heartbeat_stale (2 s) must be more than 2 x heartbeat_delay (2 x 1 s)" in str(raised.value)
    assert ("(heartbeat_delay: enqueue.run(heartbeat_delay=1), heartbeat_stale: enqueue.run(heartbeat_stale='2s'), "
            "kill_grace: enqueue.run(kill_grace=1))") in str(raised.value)


def test_the_environment_given_overrides_the_connection(config: Path) -> None:
    settings = api.load_settings("enqueue.run", config, "alpha", ["true"], {},
                                 {"ENQUEUE_COUCHDB_DATABASE": "elsewhere"})
    assert settings.connection.database == "elsewhere"


@pytest.mark.parametrize("argv", ["ls -l", b"ls", [], ["ls", 3], None])
def test_argv_must_be_a_list_of_strings(config: Path, argv: object) -> None:
    with pytest.raises(ConfigError, match=r"enqueue.run: argv=.*expected a (non-empty )?list of strings"):
        enqueue.run(config, "alpha", argv)  # type: ignore[arg-type]


def test_a_bad_site_name_or_config_is_a_config_error(config: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="SITENAME"):
        enqueue.run(config, "Not A Site", ["true"])
    with pytest.raises(ConfigError, match="site=3: expected the site's name as text"):
        enqueue.run(config, 3, ["true"])  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="no such configuration file"):
        enqueue.run(tmp_path / "missing.ini", "alpha", ["true"])


def test_turn_takes_no_repeat_and_checks_its_options_on_entering(config: Path) -> None:
    with pytest.raises(ConfigError, match="enqueue.turn: repeat is not an option here"):
        with enqueue.turn(config, "alpha", repeat=False):
            pass
    with pytest.raises(ConfigError, match="enqueue.turn: unknown option 'stale'"):
        with enqueue.turn(config, "alpha", stale=3):
            pass


def test_handle_signals_outside_the_main_thread_is_refused_before_anything_runs(config: Path) -> None:
    raised: list[BaseException] = []

    def call() -> None:
        try:
            enqueue.run(config, "alpha", ["true"], handle_signals=True)
        except BaseException as exc:  # noqa: BLE001
            raised.append(exc)

    thread = threading.Thread(target=call)
    thread.start()
    thread.join(timeout=30)
    assert len(raised) == 1 and isinstance(raised[0], ConfigError)
    assert "handle_signals=True works only in the main thread" in str(raised[0])


def test_a_site_runs_one_agent_per_process_and_database(config: Path) -> None:
    settings = api.load_settings("enqueue.run", config, "alpha", ["true"], {}, None)
    with api.claimed(settings):
        with pytest.raises(SiteInUse, match="site alpha already has an agent in this process"):
            enqueue.run(config, "alpha", ["true"])
        with pytest.raises(SiteInUse):
            with enqueue.turn(config, "alpha"):
                pass
        with api.claimed(api.load_settings("enqueue.run", config, "bravo", ["true"], {}, None)):
            pass
    with api.claimed(settings):  # released when the block ended
        pass


def test_importing_enqueue_loads_no_agent() -> None:
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, enqueue; print(' '.join(sorted(m for m in sys.modules if m.split('.')[0] == 'enqueue')))"],
        capture_output=True, text=True, check=True).stdout.split()
    assert loaded == ["enqueue", "enqueue.errors"]
    assert callable(enqueue.run) and callable(enqueue.turn) and issubclass(enqueue.TurnLost, enqueue.EnqueueError)
