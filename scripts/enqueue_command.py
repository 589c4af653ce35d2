#!/usr/bin/env python3
"""The original tool's entry point, kept so existing site loops keep working.

    enqueue_command.py [-h] [--heartbeat-delay MIN] [--heartbeat-stale MIN]
        [--conflict-delay MIN] [--repeat] [--time-format FORMAT]
        [--leader-doc NAME] [--sites-doc NAME] config sitename [cmdargs ...]

Runs the ``enqueue`` package of the checkout it lives in, like every script
here (an installation has the ``enqueue-command`` console script instead).
A Python that lacks the package or the libraries it needs gets one line
saying how to install them (exit 2), not a traceback.
"""

import importlib.util
import os
import sys

#: The modules of the distributions setup.cfg's install_requires names.
REQUIRED_MODULES = {"couchdb": "couchdb", "dateutil": "python-dateutil", "psutil": "psutil"}

_CHECKOUT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, _CHECKOUT)


def _missing() -> list:
    """What this Python lacks to run enqueue: 'enqueue' itself, or the distributions it needs."""
    if importlib.util.find_spec("enqueue") is None:
        return ["enqueue"]
    return [dist for module, dist in REQUIRED_MODULES.items() if importlib.util.find_spec(module) is None]


def _install_hint(missing: list) -> str:
    source = _CHECKOUT if os.path.isfile(os.path.join(_CHECKOUT, "setup.cfg")) else "/path/to/enqueue"
    what = "the enqueue package" if missing == ["enqueue"] else "the packages enqueue needs (" + ", ".join(missing) + ")"
    return (f"{os.path.basename(sys.argv[0] or 'enqueue_command.py')}: this Python ({sys.executable}) lacks {what}: "
            f"install enqueue into it with '{sys.executable} -m pip install {source}', or run the "
            f"'enqueue-command' of the environment enqueue is installed in")


if __name__ == "__main__":
    absent = _missing()
    if absent:
        print(_install_hint(absent), file=sys.stderr)
        sys.exit(2)
    from enqueue.compat import main

    sys.exit(main())
