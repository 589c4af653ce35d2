"""A deterministic simulation of the real agents, on an in-memory database, under faults.

``scripts/simulate`` runs it; ``tools.simulation.simulation`` is one run, by
seed. Not part of the installed package.
"""
