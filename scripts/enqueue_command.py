#!/usr/bin/env python3
"""The original tool's entry point, kept so existing site loops keep working.

    enqueue_command.py [-h] [--heartbeat-delay MIN] [--heartbeat-stale MIN]
        [--conflict-delay MIN] [--repeat] [--time-format FORMAT]
        [--leader-doc NAME] [--sites-doc NAME] config sitename [cmdargs ...]

Runs from a checkout as well as from an installation: when ``enqueue`` is
not importable, the repository this script lives in is put on ``sys.path``.
"""

import os
import sys

try:
    import enqueue  # noqa: F401
except ImportError:
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from enqueue.compat import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
