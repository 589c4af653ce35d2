"""Fault injection for enqueue: the pieces of ``scripts/chaos``.

* ``network``: how a site is cut off from the server (a network namespace
  per site with a veth link that can be taken down, or a black-hole TCP
  proxy per site where namespaces are not available);
* ``verdict``: what a run proves, read from the commands' own probe log and
  the documents left in the database: overlaps, fencing tokens, turn
  records, stalls after faults;
* ``probe``: the command the agents run in tests, demos, benchmarks and
  chaos runs, which records its own start and end;
* ``checker``: reads the probe log and judges it (overlaps, handoff gaps).

Nothing here is used by the agent and none of it is installed: it is test
and operations tooling, importable from a checkout of the repository.
"""
