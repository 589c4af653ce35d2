"""``python -m enqueue`` runs the command line."""

import sys

from enqueue.cli import main

sys.exit(main())
