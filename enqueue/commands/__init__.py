"""One module per ``enqueue`` subcommand.

Each module defines ``NAME``, ``HELP``, ``configure(parser)`` that adds its
arguments to an ``argparse`` parser, and ``execute(args) -> int`` that runs it
and returns the exit code. ``enqueue.cli`` lists them.
"""
