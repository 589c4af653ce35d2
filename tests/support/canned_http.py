"""A server on 127.0.0.1 that gives one canned JSON answer, to show what a driver does with a reply no real
server gives on demand (a refusal CouchDB gives only on a cluster, a TLS certificate of the test's making).

``canned_server`` answers every request of one method with one status and body, records the paths asked
for, and is shut down and its thread joined when the ``with`` block ends (no thread outlives the test).
"""

from __future__ import annotations

import ssl
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator, List, Optional


@dataclass
class Canned:
    url: str
    asked: List[str] = field(default_factory=list)  # the paths of the requests answered, in order


@contextmanager
def canned_server(method: str, status: int, body: bytes, tls: Optional[ssl.SSLContext] = None) -> Iterator[Canned]:
    """Every ``method`` request answered with ``status`` and the JSON ``body``; https when ``tls`` is given."""
    canned = Canned(url="")

    class Handler(BaseHTTPRequestHandler):
        def answer(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            canned.asked.append(self.path)
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    setattr(Handler, f"do_{method}", Handler.answer)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    if tls is not None:
        httpd.socket = tls.wrap_socket(httpd.socket, server_side=True)
    canned.url = f"{'https' if tls else 'http'}://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, name=f"canned-{method}-server", daemon=True)
    thread.start()
    try:
        yield canned
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)
