"""enqueue: many sites take turns running one command, coordinated through CouchDB."""

__version__ = "0.1.0"
