#!/usr/bin/env python3
"""Deterministic simulation: the real agents on an in-memory database, under faults, by seed.

    scripts/simulate --seeds N [--steps M] [--sites K] [--seed S] [--faults SPEC] [--trace-lines L] [--jobs J]

Runs seeds 1..N (or only S) for M steps each with K sites, and checks every
invariant after every step (see tools/simulation/invariants.py). A failing
seed is printed with what failed and the trace of the steps that led to it;
``--seed S`` replays it exactly. Exit status: 0 when every invariant held on
every seed, 1 when one failed, 2 for bad arguments.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tools.simulation.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
