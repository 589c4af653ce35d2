"""The black-hole proxy: bytes flow, stop both ways when cut, and flow again (held ones too) when healed."""

from __future__ import annotations

import socket
import threading
from typing import Iterator, Tuple

import pytest

from tools.chaos.network import BlackholeProxy, ProxyNetwork


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
