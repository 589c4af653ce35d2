#!/usr/bin/env python3
"""The original tool's entry point, kept so existing site loops keep working.

    enqueue_command.py [-h] [--heartbeat-delay MIN] [--heartbeat-stale MIN]
        [--conflict-delay MIN] [--repeat] [--time-format FORMAT]
        [--leader-doc NAME] [--sites-doc NAME] config sitename [cmdargs ...]

Runs the ``enqueue`` package of the checkout it lives in, like every script
here (an installation has the ``enqueue-command`` console script instead).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from enqueue.compat import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
