"""Fault injection for enqueue: the pieces of ``scripts/chaos``.

* ``network``: how a site is cut off from the server (a network namespace
  per site with a veth link that can be taken down, or a black-hole TCP
  proxy per site where namespaces are not available);
* ``verdict``: what a run proves, read from the commands' own probe log and
  the documents left in the database: overlaps, fencing tokens, turn
  records, stalls after faults.

Nothing here is used by the agent; it is test and operations tooling.
"""
