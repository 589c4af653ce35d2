"""The black-hole proxy: bytes flow, stop both ways when cut, and flow again (held ones too) when healed;
chosen answers are lost after the server applied the request."""

from __future__ import annotations

import http.client
import socket
import threading
import urllib.parse
from typing import Iterator, List, Tuple

import pytest

from tools.chaos.network import BlackholeProxy, ProxyNetwork, request_kind


class Echo:
    """A loopback echo server, one thread per connection."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self._threads = []
        self._conns = []
        self._accept = threading.Thread(target=self._serve, daemon=True)
        self._accept.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self._conns.append(conn)
            thread = threading.Thread(target=self._echo, args=(conn,), daemon=True)
            thread.start()
            self._threads.append(thread)

    @staticmethod
    def _echo(conn: socket.socket) -> None:
        with conn:
            while True:
                try:
                    data = conn.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                conn.sendall(data)

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        for conn in self._conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._accept.join(5)
        for thread in self._threads:
            thread.join(5)


@pytest.fixture
def echo_and_proxy() -> Iterator[Tuple[Echo, BlackholeProxy]]:
    echo = Echo()
    proxy = BlackholeProxy(echo.port)
    yield echo, proxy
    proxy.close()
    echo.close()


def connect(proxy: BlackholeProxy) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
    return sock


def test_bytes_flow_through(echo_and_proxy):
    _, proxy = echo_and_proxy
    with connect(proxy) as sock:
        sock.sendall(b"hello")
        assert sock.recv(100) == b"hello"


def test_a_cut_drops_nothing_but_delivers_nothing_and_a_heal_delivers_what_was_held(echo_and_proxy):
    _, proxy = echo_and_proxy
    with connect(proxy) as sock:
        sock.sendall(b"before")
        assert sock.recv(100) == b"before"
        proxy.cut()
        assert proxy.is_cut
        sock.sendall(b"during")
        sock.settimeout(0.3)
        with pytest.raises(socket.timeout):
            sock.recv(100)
        proxy.heal()
        sock.settimeout(5)
        assert sock.recv(100) == b"during"


def test_a_new_connection_while_cut_hears_nothing_until_healed(echo_and_proxy):
    _, proxy = echo_and_proxy
    proxy.cut()
    with connect(proxy) as sock:
        sock.sendall(b"knock")
        sock.settimeout(0.3)
        with pytest.raises(socket.timeout):
            sock.recv(100)
        proxy.heal()
        sock.settimeout(5)
        assert sock.recv(100) == b"knock"


def test_a_server_that_is_down_closes_the_client_connection():
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    proxy = BlackholeProxy(port)
    try:
        with connect(proxy) as sock:
            sock.settimeout(5)
            assert sock.recv(100) == b""
    finally:
        proxy.close()


def test_the_proxy_network_gives_each_site_its_own_proxy(echo_and_proxy):
    echo, _ = echo_and_proxy
    network = ProxyNetwork(2)
    network.start(echo.port)
    try:
        urls = {network.url_for(1), network.url_for(2)}
        assert len(urls) == 2 and all(u.startswith("http://127.0.0.1:") for u in urls)
        assert network.wrap(1, ["agent"]) == ["agent"]
        network.cut(1)
        port_2 = int(network.url_for(2).rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port_2), timeout=5) as sock:
            sock.sendall(b"site 2 is fine")
            assert sock.recv(100) == b"site 2 is fine"
        network.heal(1)
    finally:
        network.close()


def test_latency_holds_data_each_way_and_keeps_its_order(echo_and_proxy):
    import time

    _, proxy = echo_and_proxy
    proxy.set_latency(0.2)
    with connect(proxy) as sock:
        started = time.monotonic()
        sock.sendall(b"one ")
        sock.sendall(b"two")
        got = b""
        while len(got) < 7:
            got += sock.recv(100)
        took = time.monotonic() - started
    assert got == b"one two"
    assert 0.4 <= took < 2.0, took


class Couchish:
    """A tiny HTTP/1.1 server (keep-alive): records every request it applied and answers with JSON.

    ``GET .../_changes`` streams a chunked answer: one beat, then a change once ``send_change`` is set.
    """

    def __init__(self) -> None:
        import http.server

        self.applied: List[Tuple[str, str]] = []
        self.send_change = threading.Event()
        self.done = threading.Event()
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_PUT(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                owner.applied.append((self.path, body.decode()))
                self._answer(b'{"ok":true,"rev":"2-x"}')

            def do_GET(self) -> None:
                if "_changes" not in self.path:
                    self._answer(b'{"ok":true}')
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                self.wfile.write(b"1\r\n\n\r\n")
                self.wfile.flush()
                owner.send_change.wait(10)
                line = b'{"seq":1,"id":"enqueue_leader","changes":[]}\n'
                self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
                self.wfile.flush()
                owner.done.wait(10)

            def _answer(self, body: bytes) -> None:
                self.send_response(201)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = False
        self.server.block_on_close = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.send_change.set()
        self.done.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def couch_and_proxy() -> Iterator[Tuple[Couchish, BlackholeProxy]]:
    couch = Couchish()
    proxy = BlackholeProxy(couch.port)
    yield couch, proxy
    proxy.close()
    couch.close()


def put(conn: "http.client.HTTPConnection", doc_id: str, body: str = '{"a":1}') -> int:
    conn.request("PUT", "/db/" + urllib.parse.quote(doc_id, safe=""), body=body.encode(),
                 headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    resp.read()
    return resp.status


@pytest.mark.parametrize(
    "method, target, kind",
    [
        ("PUT", "/enqueue/enqueue_heartbeat%3Aalpha", "heartbeat"),
        ("PUT", "/enqueue/enqueue_leader", "leader"),
        ("PUT", "/enqueue/enqueue_turn%3A000000000042", "record"),
        ("GET", "/enqueue/_changes?feed=continuous&heartbeat=500", "feed"),
        ("POST", "/enqueue/_changes?feed=continuous&filter=_doc_ids", "feed"),
        ("GET", "/enqueue/enqueue_leader", None),
        ("PUT", "/enqueue/enqueue_sites", None),
        ("POST", "/enqueue/_all_docs?include_docs=true", None),
    ],
)
def test_request_kinds_are_read_from_the_request_line(method, target, kind):
    assert request_kind(method, target) == kind


def test_a_lost_answer_reaches_the_server_and_the_client_hears_only_a_closed_connection(couch_and_proxy):
    couch, proxy = couch_and_proxy
    proxy.lose_answers("heartbeat")
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=5)
    try:
        assert put(conn, "enqueue_leader") == 201  # another kind passes
        with pytest.raises((http.client.RemoteDisconnected, ConnectionResetError)):
            put(conn, "enqueue_heartbeat:alpha", '{"beat":1}')
    finally:
        conn.close()
    assert ("/db/enqueue_heartbeat%3Aalpha", '{"beat":1}') in couch.applied  # the write was applied
    (lost,) = proxy.losses()
    assert lost.kind == "heartbeat" and lost.request.startswith("PUT /db/enqueue_heartbeat%3Aalpha")
    assert lost.answered_ns is not None and lost.closed_ns is not None
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=5)
    try:
        assert put(conn, "enqueue_heartbeat:alpha", '{"beat":2}') == 201  # one answer lost, not more
    finally:
        conn.close()


@pytest.mark.parametrize("kind, doc_id", [("leader", "enqueue_leader"), ("record", "enqueue_turn:000000000007")])
def test_each_write_kind_can_lose_its_answer(couch_and_proxy, kind, doc_id):
    couch, proxy = couch_and_proxy
    proxy.lose_answers(kind)
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=5)
    try:
        assert put(conn, "enqueue_heartbeat:alpha") == 201
        with pytest.raises((http.client.RemoteDisconnected, ConnectionResetError)):
            put(conn, doc_id)
    finally:
        conn.close()
    assert [p for p, _ in couch.applied][-1] == "/db/" + urllib.parse.quote(doc_id, safe="")
    assert [lost.kind for lost in proxy.losses()] == [kind]


def test_a_held_answer_outlasts_the_clients_timeout(couch_and_proxy):
    couch, proxy = couch_and_proxy
    proxy.lose_answers("leader", hold_s=30.0)
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=0.5)
    try:
        with pytest.raises(socket.timeout):
            put(conn, "enqueue_leader")
    finally:
        conn.close()
    assert [p for p, _ in couch.applied] == ["/db/enqueue_leader"]
    (lost,) = proxy.losses()
    assert lost.answered_ns is not None


def test_a_held_answer_ends_with_the_connection_closed_once_the_hold_is_over(couch_and_proxy):
    _, proxy = couch_and_proxy
    proxy.lose_answers("record", hold_s=0.3)
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
    try:
        with pytest.raises((http.client.RemoteDisconnected, ConnectionResetError)):
            put(conn, "enqueue_turn:000000000001")
    finally:
        conn.close()
    (lost,) = proxy.losses()
    assert lost.closed_ns - lost.answered_ns >= 0.3e9


def test_a_feed_is_cut_at_its_next_change_even_when_already_open(couch_and_proxy):
    couch, proxy = couch_and_proxy
    with connect(proxy) as sock:
        sock.sendall(b"GET /db/_changes?feed=continuous HTTP/1.1\r\nHost: x\r\n\r\n")
        got = b""
        while b"1\r\n\n\r\n" not in got:  # the headers and the first beat come through
            got += sock.recv(65536)
        proxy.lose_answers("feed")
        couch.send_change.set()
        sock.settimeout(5)
        while True:
            data = sock.recv(65536)
            if not data:
                break
            got += data
    assert got.startswith(b"HTTP/1.1 200") and b"{" not in got
    assert [lost.kind for lost in proxy.losses()] == ["feed"]
