"""Test, fault-injection and simulation tooling; not part of the installed package."""
