"""What an agent and its supervisor load: nothing their ordinary paths do not use.

Resident memory is mostly imported code (issue: agent plus supervisor under
40 MB), so the modules only a rare path needs are imported on that path, and
the check here is on the set of loaded modules, in a fresh interpreter.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def loaded_after(code: str, *flags: str) -> set[str]:
    """The modules a fresh interpreter has loaded after running ``code`` (with the package root on its path)."""
    script = f"import sys; sys.path.insert(0, {str(ROOT)!r})\n{code}\nimport json; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, *flags, "-c", script], capture_output=True, text=True, check=True,
                         cwd=ROOT).stdout
    return set(json.loads(out.splitlines()[-1]))


def test_an_agent_loads_neither_setuptools_nor_psutil_nor_file_logging() -> None:
    loaded = loaded_after("import enqueue.commands.run, enqueue.agent_process, enqueue.couchdb_store")
    assert "couchdb.http" in loaded
    assert {"pkg_resources", "psutil", "logging.handlers"} & loaded == set()


def test_a_pkg_resources_imported_before_is_left_in_place() -> None:
    loaded = loaded_after("import pkg_resources, enqueue.couchdb_store; assert sys.modules['pkg_resources'] is not None")
    assert "pkg_resources" in loaded


def test_the_run_command_line_loads_no_other_subcommand() -> None:
    loaded = loaded_after("from enqueue import cli\ntry:\n    cli.main(['run', '--help'])\nexcept SystemExit:\n    pass")
    assert "enqueue.commands.run" in loaded
    others = {m for m in loaded if m.startswith("enqueue.commands.") and m != "enqueue.commands.run"}
    assert others == set()
    assert "enqueue.devserver" not in loaded


def test_a_supervisor_loads_neither_typing_nor_argparse_nor_datetime() -> None:
    # Started as the runner starts it (-I -S); its command line read in full (fds it cannot have end it there).
    loaded = loaded_after("from enqueue import supervisor\n"
                          "assert supervisor.main(['--control-fd', '900', '--events-fd', '901', '--kill-grace', '1',"
                          " '--stop-signal', '15']) == 2", "-I", "-S")
    assert "enqueue.supervisor" in loaded and "enqueue.command_spawn" in loaded
    assert {"typing", "argparse", "datetime", "enqueue.clock"} & loaded == set()
