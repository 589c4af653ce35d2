"""Helpers shared by the test suites: servers, databases, agent processes."""
