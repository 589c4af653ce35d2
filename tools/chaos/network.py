"""Cutting one site off from the server, honestly: packets are dropped, not refused.

Two ways, one interface (``url_for``, ``wrap``, ``cut``, ``heal``, ``slow``, ``lose_answers``,
``losses``, ``stop_losing``, ``close``):

``NetnsNetwork`` (root, Linux, ``ip`` from iproute2)
    The whole run lives in network namespaces created for it and deleted
    after it: a *world* namespace holds the server and the chaos harness,
    and every site's agent runs in a namespace of its own, linked to the
    world by a veth pair (``10.77.<i>.2`` -> ``10.77.<i>.1``). Both ends have
    permanent neighbour entries, so nothing depends on ARP. (At the world's
    end each link leads to a proxy, which passes bytes on to the server and
    can hold them back to make the server slow.) ``cut`` sets the
    world's end of the link down: the site's packets are dropped on the
    floor (its end loses carrier but keeps its route) and the server's
    replies have no route, so the site sees silence and time-outs, exactly
    like a black-holed network, while established TCP connections survive
    and resume when ``heal`` brings the link back. Nothing is configured in
    the host's own namespace. (iptables is not needed; the kernel may not
    even have netfilter.)

``ProxyNetwork`` (anything else)
    Every site talks to the server through a TCP proxy of its own in the
    harness. ``cut`` makes the proxy stop moving bytes in both directions
    on every connection of that site, and park new ones; ``heal`` resumes
    them, delivering what was held back (as TCP retransmission would).
    Unlike a real black hole, the site's own kernel still completes the TCP
    handshake with the proxy, so a new connection "succeeds" and then hears
    nothing; the agent sees the same time-outs either way.

Lost answers (both ways, in the proxy): ``lose_answers(index, kind)`` lets
site ``index``'s next request of ``kind`` reach the server, then throws the
server's answer away and closes the connection once the answer has come
back, at once or ``hold_s`` later (past the client's request timeout: a
slow or restarting server). The write was applied; the client never learns
it. The kind is read from the HTTP request line: ``heartbeat``, ``leader``
and ``record`` are PUTs of a heartbeat doc, the leader doc and a turn record;
``feed`` is a ``_changes`` answer, cut at its next change (an open
continuous feed included).

Not modelled: a lossy link, or a partition between two sites (sites never
talk to each other, only to the server).
"""

from __future__ import annotations

import collections
import os
import re
import selectors
import shutil
import socket
import subprocess
import threading
import time
import urllib.parse
from dataclasses import dataclass
from typing import Deque, Dict, List, Optional, Tuple

from enqueue import documents as docs

__all__ = ["NetnsError", "NetnsPlan", "NetnsNetwork", "ProxyNetwork", "BlackholeProxy", "LostAnswer",
           "REQUEST_KINDS", "netns_available", "request_kind"]

REQUEST_KINDS = ("heartbeat", "leader", "record", "feed")
LEADER_DOC_ID = "enqueue_leader"
_REQUEST_LINE = re.compile(rb"(?:^|\r\n)(GET|PUT|POST|DELETE|HEAD|COPY) (\S+) HTTP/1\.[01]\r\n")


def request_kind(method: str, target: str) -> Optional[str]:
    """Which kind of request ``method target`` is (one of ``REQUEST_KINDS``), None for any other."""
    path = urllib.parse.urlsplit(target).path
    parts = path.strip("/").split("/")
    if method in ("GET", "POST") and parts and parts[-1] == "_changes":  # POST: the ids in the body
        return "feed"
    if method != "PUT" or len(parts) != 2:
        return None
    doc_id = urllib.parse.unquote(parts[1])
    if doc_id.startswith(docs.HEARTBEAT_PREFIX):
        return "heartbeat"
    if doc_id == LEADER_DOC_ID:
        return "leader"
    if doc_id.startswith(docs.TURN_PREFIX):
        return "record"
    return None


@dataclass
class LostAnswer:
    """One request whose answer the proxy threw away: what it was and when (unix ns)."""

    kind: str
    request: str
    seen_ns: int
    answered_ns: Optional[int] = None
    closed_ns: Optional[int] = None

_SUBNET = "10.77"


class NetnsError(Exception):
    """A namespace could not be created, configured or removed."""


def _ip(*args: str) -> None:
    result = subprocess.run(["ip", *args], stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if result.returncode != 0:
        raise NetnsError(f"ip {' '.join(args)}: {result.stderr.strip() or 'exit ' + str(result.returncode)}")


def netns_available() -> bool:
    """Whether this process may create network namespaces (root and ``ip`` present)."""
    return hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("ip") is not None


def _world_name(prefix: str) -> str:
    return f"{prefix}-w"


def _site_ns(prefix: str, index: int) -> str:
    return f"{prefix}-s{index}"


def _mac(index: int, end: int) -> str:
    return f"02:77:00:00:{index:02x}:{end:02x}"


class NetnsPlan:
    """Creates and deletes the namespaces of one run (done outside the world namespace).

    ``index`` runs from 1 to ``sites``; at most 250 sites.
    """

    def __init__(self, prefix: str, sites: int) -> None:
        if not 1 <= sites <= 250:
            raise ValueError("between 1 and 250 sites")
        self.prefix = prefix
        self.sites = sites
        self.world = _world_name(prefix)
        self._created: List[str] = []

    def create(self) -> None:
        """Create the world and one namespace per site, linked; on failure, undo and raise NetnsError."""
        try:
            self._add(self.world)
            _ip("-n", self.world, "link", "set", "lo", "up")
            for i in range(1, self.sites + 1):
                ns, w_end, s_end = _site_ns(self.prefix, i), f"ecw{i}", f"ecp{i}"
                self._add(ns)
                _ip("-n", ns, "link", "set", "lo", "up")
                _ip("-n", self.world, "link", "add", w_end, "address", _mac(i, 1), "type", "veth",
                    "peer", "name", s_end, "address", _mac(i, 2), "netns", ns)
                _ip("-n", self.world, "addr", "add", f"{_SUBNET}.{i}.1/30", "dev", w_end)
                _ip("-n", ns, "addr", "add", f"{_SUBNET}.{i}.2/30", "dev", s_end)
                _ip("-n", self.world, "link", "set", w_end, "up")
                _ip("-n", ns, "link", "set", s_end, "up")
                _ip("-n", self.world, "neigh", "replace", f"{_SUBNET}.{i}.2", "lladdr", _mac(i, 2),
                    "dev", w_end, "nud", "permanent")
                _ip("-n", ns, "neigh", "replace", f"{_SUBNET}.{i}.1", "lladdr", _mac(i, 1),
                    "dev", s_end, "nud", "permanent")
        except BaseException:
            self.delete()
            raise

    def _add(self, name: str) -> None:
        _ip("netns", "add", name)
        self._created.append(name)

    def delete(self) -> None:
        """Delete every namespace this plan created (their veth pairs go with them)."""
        while self._created:
            name = self._created.pop()
            try:
                _ip("netns", "del", name)
            except NetnsError:
                pass

    def enter(self, argv: List[str]) -> List[str]:
        """``argv`` run inside the world namespace."""
        return ["ip", "netns", "exec", self.world, *argv]


class NetnsNetwork:
    """The inside view of a ``NetnsPlan``: used by the harness running in the world namespace."""

    mode = "netns"

    def __init__(self, prefix: str, sites: int) -> None:
        self.prefix = prefix
        self.sites = sites
        self.world = _world_name(prefix)
        self.server_host = "127.0.0.1"  # of the world namespace
        self._proxies: Dict[int, BlackholeProxy] = {}

    def start(self, server_port: int) -> None:
        """Open, at the world's end of each site's link, a proxy to the server (used to slow it down)."""
        for i in range(1, self.sites + 1):
            self._proxies[i] = BlackholeProxy(server_port, listen_host=f"{_SUBNET}.{i}.1")

    def url_for(self, index: int) -> str:
        """The server URL as site ``index`` reaches it, through its link."""
        return f"http://{_SUBNET}.{index}.1:{self._proxies[index].port}"

    def wrap(self, index: int, argv: List[str]) -> List[str]:
        """``argv`` run inside site ``index``'s namespace (the process keeps its pid)."""
        return ["ip", "netns", "exec", _site_ns(self.prefix, index), *argv]

    def cut(self, index: int) -> None:
        """Drop every packet between site ``index`` and the server."""
        _ip("-n", self.world, "link", "set", f"ecw{index}", "down")

    def heal(self, index: int) -> None:
        """Let site ``index``'s packets through again."""
        _ip("-n", self.world, "link", "set", f"ecw{index}", "up")

    def slow(self, index: int, latency_s: float) -> None:
        """Hold site ``index``'s traffic ``latency_s`` each way (0: back to normal)."""
        self._proxies[index].set_latency(latency_s)

    def lose_answers(self, index: int, kind: str, count: int = 1, hold_s: float = 0.0) -> None:
        """Lose the answers to site ``index``'s next ``count`` requests of ``kind`` (see the module doc)."""
        self._proxies[index].lose_answers(kind, count, hold_s)

    def losses(self, index: int) -> List["LostAnswer"]:
        """The answers lost so far on site ``index``'s link."""
        return self._proxies[index].losses()

    def stop_losing(self, index: int) -> None:
        """Lose no more answers on site ``index``'s link (connections already doomed still close)."""
        self._proxies[index].stop_losing()

    def close(self) -> None:
        """Heal every link and stop the proxies (the namespaces are deleted by the plan's owner)."""
        for i in range(1, self.sites + 1):
            try:
                self.heal(i)
            except NetnsError:
                pass
        for proxy in self._proxies.values():
            proxy.close()
        self._proxies.clear()


class _Pair:
    """One proxied connection: bytes waiting to go each way, and which sides have ended."""

    __slots__ = ("client", "upstream", "to_upstream", "to_client", "held_up", "held_down", "client_eof",
                 "upstream_eof", "feed", "in_body", "doomed", "close_at", "hold_s")

    def __init__(self, client: socket.socket) -> None:
        self.client = client
        self.upstream: Optional[socket.socket] = None
        self.to_upstream = bytearray()
        self.to_client = bytearray()
        # Bytes read but not yet due (latency): (due on time.monotonic(), bytes), oldest first.
        self.held_up: Deque[Tuple[float, bytes]] = collections.deque()
        self.held_down: Deque[Tuple[float, bytes]] = collections.deque()
        self.client_eof = False
        self.upstream_eof = False
        # The request in flight is a changes feed; its answer's headers have been passed on.
        self.feed = False
        self.in_body = False
        # The answer to the request in flight is being thrown away; closed at ``close_at`` (monotonic).
        self.doomed: Optional[LostAnswer] = None
        self.close_at: Optional[float] = None
        self.hold_s = 0.0

    def release(self, now: float) -> Optional[float]:
        """Move held bytes that are due into the send buffers; return when the next ones are due."""
        nxt: Optional[float] = None
        for held, out in ((self.held_up, self.to_upstream), (self.held_down, self.to_client)):
            while held and held[0][0] <= now:
                out.extend(held.popleft()[1])
            if held:
                nxt = held[0][0] if nxt is None else min(nxt, held[0][0])
        return nxt

    @property
    def idle_up(self) -> bool:
        return not self.to_upstream and not self.held_up

    @property
    def idle_down(self) -> bool:
        return not self.to_client and not self.held_down


class BlackholeProxy:
    """A TCP proxy on loopback for one site; ``cut()`` stops all traffic, ``heal()`` resumes it.

    One thread with a selector serves every connection. While cut, no socket
    is read or written and new connections are accepted but not connected
    upstream. If the server refuses a connection, the client's is closed.
    ``latency_s`` holds every piece of data that long, each way, before
    passing it on (a slow link or a slow server). ``lose_answers`` throws
    away the answers to chosen requests (see the module doc); requests are
    recognised by a request line at the start of what the client sent, which
    holds for HTTP/1.1 clients that do not pipeline.
    """

    def __init__(self, upstream_port: int, host: str = "127.0.0.1", listen_host: Optional[str] = None) -> None:
        self.upstream = (host, upstream_port)
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((listen_host or host, 0))
        self._listener.listen(64)
        self._listener.setblocking(False)
        self.port: int = self._listener.getsockname()[1]
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._cut = False
        self._closed = False
        self.latency_s = 0.0
        self._lock = threading.Lock()
        self._to_lose: Dict[str, Tuple[int, float]] = {}
        self._lost: List[LostAnswer] = []
        self._pairs: List[_Pair] = []
        self._thread = threading.Thread(target=self._loop, name=f"chaos-proxy-{self.port}", daemon=True)
        self._thread.start()

    @property
    def is_cut(self) -> bool:
        """Whether traffic is being dropped."""
        return self._cut

    def cut(self) -> None:
        """Stop moving bytes, both ways, on every connection."""
        self._cut = True
        self._wake()

    def heal(self) -> None:
        """Move bytes again, including those held back while cut."""
        self._cut = False
        self._wake()

    def set_latency(self, seconds: float) -> None:
        """Hold data ``seconds`` each way from now on (0: pass it on at once)."""
        self.latency_s = max(0.0, seconds)
        self._wake()

    def lose_answers(self, kind: str, count: int = 1, hold_s: float = 0.0) -> None:
        """Let the next ``count`` requests of ``kind`` through, throw their answers away, and close
        each connection ``hold_s`` after its answer came back from the server."""
        if kind not in REQUEST_KINDS:
            raise ValueError(f"unknown request kind {kind!r}")
        with self._lock:
            self._to_lose[kind] = (count, max(0.0, hold_s))
        self._wake()

    def stop_losing(self) -> None:
        """Lose no more answers (connections already doomed still close when due)."""
        with self._lock:
            self._to_lose.clear()

    def losses(self) -> List[LostAnswer]:
        """Every answer thrown away so far, oldest first (copies)."""
        with self._lock:
            return [LostAnswer(**vars(lost)) for lost in self._lost]

    def _doom(self, pair: _Pair, kind: str, request: str) -> bool:
        """Doom ``pair``'s answer if a loss of ``kind`` is armed; True if it was."""
        with self._lock:
            count, hold_s = self._to_lose.get(kind, (0, 0.0))
            if count <= 0:
                return False
            self._to_lose[kind] = (count - 1, hold_s)
            pair.doomed = LostAnswer(kind, request[:200], time.time_ns())
            self._lost.append(pair.doomed)
            pair.close_at = None
            pair.hold_s = hold_s
        return True

    def close(self) -> None:
        """Stop the proxy and close every connection."""
        self._closed = True
        self._wake()
        self._thread.join(5)

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass

    def _loop(self) -> None:
        sel = selectors.DefaultSelector()
        try:
            while not self._closed:
                due = self._release()
                closing = [p.close_at for p in self._pairs if p.close_at is not None]
                if closing:
                    due = min(closing) if due is None else min(due, min(closing))
                self._register(sel)
                timeout = 1.0 if due is None else min(1.0, max(0.0, due - time.monotonic()))
                for key, events in sel.select(timeout=timeout):
                    self._ready(key.fileobj, key.data, events)
                self._reap()
        finally:
            sel.close()
            for pair in self._pairs:
                self._drop(pair)
            for sock in (self._listener, self._wake_r, self._wake_w):
                sock.close()

    def _release(self) -> Optional[float]:
        """Pass on the held bytes that are due (not while cut); return when the next are due."""
        if self._cut:
            return None
        now = time.monotonic()
        dues = [d for d in (pair.release(now) for pair in self._pairs) if d is not None]
        return min(dues) if dues else None

    def _register(self, sel: selectors.BaseSelector) -> None:
        for key in list(sel.get_map().values()):
            sel.unregister(key.fileobj)
        sel.register(self._wake_r, selectors.EVENT_READ, None)
        sel.register(self._listener, selectors.EVENT_READ, None)
        if self._cut:
            return
        for pair in self._pairs:
            if pair.upstream is None:
                self._connect(pair)
                if pair.upstream is None:
                    continue
            for sock, out, eof in ((pair.client, pair.to_client, pair.client_eof),
                                   (pair.upstream, pair.to_upstream, pair.upstream_eof)):
                events = 0 if eof else selectors.EVENT_READ
                if out:
                    events |= selectors.EVENT_WRITE
                if events:
                    sel.register(sock, events, pair)

    def _connect(self, pair: _Pair) -> None:
        try:
            pair.upstream = socket.create_connection(self.upstream, timeout=2.0)
            pair.upstream.setblocking(False)
        except OSError:
            pair.client_eof = pair.upstream_eof = True
            pair.to_client.clear()
            pair.held_down.clear()

    def _ready(self, sock: object, pair: Optional[_Pair], events: int) -> None:
        if sock is self._wake_r:
            try:
                self._wake_r.recv(4096)
            except OSError:
                pass
            return
        if sock is self._listener:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            client.setblocking(False)
            self._pairs.append(_Pair(client))
            return
        assert pair is not None
        from_client = sock is pair.client
        out = pair.to_client if from_client else pair.to_upstream
        inbound = pair.to_upstream if from_client else pair.to_client
        held = pair.held_up if from_client else pair.held_down
        try:
            if events & selectors.EVENT_WRITE and out:
                sent = sock.send(out)  # type: ignore[attr-defined]
                del out[:sent]
            if events & selectors.EVENT_READ:
                data = sock.recv(65536)  # type: ignore[attr-defined]
                if data and from_client:
                    self._requests_in(pair, data)
                elif data:
                    data = self._answer_in(pair, data)
                if data and (self.latency_s > 0 or held):
                    held.append((time.monotonic() + self.latency_s, data))
                elif data:
                    inbound.extend(data)
                elif from_client:
                    pair.client_eof = True
                else:
                    pair.upstream_eof = True
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            pair.client_eof = pair.upstream_eof = True
            pair.to_client.clear()
            pair.to_upstream.clear()
            pair.held_up.clear()
            pair.held_down.clear()

    def _requests_in(self, pair: _Pair, data: bytes) -> None:
        """Note the requests that begin in ``data`` (from the client); doom the answers to be lost."""
        for match in _REQUEST_LINE.finditer(data):
            method, target = match.group(1).decode(), match.group(2).decode(errors="replace")
            kind = request_kind(method, target)
            pair.feed, pair.in_body = kind == "feed", False
            if kind is not None and kind != "feed" and pair.doomed is None:
                self._doom(pair, kind, f"{method} {target}")

    def _answer_in(self, pair: _Pair, data: bytes) -> bytes:
        """What of the server's ``data`` goes on to the client: nothing once the answer is doomed."""
        if pair.doomed is None and pair.feed:
            body = data
            if not pair.in_body:
                head, sep, body = data.partition(b"\r\n\r\n")
                pair.in_body = bool(sep)
                if not sep:
                    return data
            # A change (a JSON line) in the feed's answer: cut it here, after the headers and beats before it.
            brace = body.find(b"{")
            if brace >= 0 and self._doom(pair, "feed", "_changes"):
                keep = len(data) - len(body)
                # Back to the start of the chunk that holds the change (its size line).
                cut = body.rfind(b"\r\n", 0, brace)
                cut = body.rfind(b"\r\n", 0, cut) if cut > 0 else -1
                keep += cut + 2 if cut >= 0 else 0
                self._answered(pair)
                return data[:keep]
        if pair.doomed is not None:
            self._answered(pair)
            return b""
        return data

    @staticmethod
    def _answered(pair: _Pair) -> None:
        if pair.doomed is not None and pair.doomed.answered_ns is None:
            pair.doomed.answered_ns = time.time_ns()
            pair.close_at = time.monotonic() + pair.hold_s

    def _reap(self) -> None:
        """Pass a half-close on once its side's bytes are delivered; drop finished pairs."""
        now = time.monotonic()
        keep = []
        for pair in self._pairs:
            if pair.doomed is not None:
                # The client never hears the answer: the connection just ends, when due.
                due = pair.close_at is not None and now >= pair.close_at
                if not self._cut and (due or (pair.client_eof and pair.upstream_eof)):
                    pair.doomed.closed_ns = time.time_ns()
                    self._drop(pair)
                else:
                    keep.append(pair)
                continue
            if self._cut:
                keep.append(pair)
                continue
            if pair.upstream is not None:
                if pair.client_eof and pair.idle_up:
                    _shutdown_write(pair.upstream)
                if pair.upstream_eof and pair.idle_down:
                    _shutdown_write(pair.client)
            if pair.client_eof and pair.upstream_eof and pair.idle_up and pair.idle_down:
                self._drop(pair)
            else:
                keep.append(pair)
        self._pairs = keep

    @staticmethod
    def _drop(pair: _Pair) -> None:
        for sock in (pair.client, pair.upstream):
            if sock is not None:
                try:
                    sock.close()
                except OSError:
                    pass


def _shutdown_write(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        pass


class ProxyNetwork:
    """One ``BlackholeProxy`` per site, all on loopback."""

    mode = "proxy"

    def __init__(self, sites: int) -> None:
        self.sites = sites
        self.server_host = "127.0.0.1"
        self._proxies: Dict[int, BlackholeProxy] = {}

    def start(self, server_port: int) -> None:
        """Open one proxy per site towards ``server_port``."""
        for i in range(1, self.sites + 1):
            self._proxies[i] = BlackholeProxy(server_port)

    def url_for(self, index: int) -> str:
        """The URL site ``index`` uses: its own proxy."""
        return f"http://127.0.0.1:{self._proxies[index].port}"

    def wrap(self, index: int, argv: List[str]) -> List[str]:
        """Agents run as they are."""
        return list(argv)

    def cut(self, index: int) -> None:
        """Black-hole site ``index``'s traffic."""
        self._proxies[index].cut()

    def heal(self, index: int) -> None:
        """Resume site ``index``'s traffic."""
        self._proxies[index].heal()

    def slow(self, index: int, latency_s: float) -> None:
        """Hold site ``index``'s traffic ``latency_s`` each way (0: back to normal)."""
        self._proxies[index].set_latency(latency_s)

    def lose_answers(self, index: int, kind: str, count: int = 1, hold_s: float = 0.0) -> None:
        """Lose the answers to site ``index``'s next ``count`` requests of ``kind`` (see the module doc)."""
        self._proxies[index].lose_answers(kind, count, hold_s)

    def losses(self, index: int) -> List[LostAnswer]:
        """The answers lost so far on site ``index``'s proxy."""
        return self._proxies[index].losses()

    def stop_losing(self, index: int) -> None:
        """Lose no more answers on site ``index``'s proxy (connections already doomed still close)."""
        self._proxies[index].stop_losing()

    def close(self) -> None:
        """Stop every proxy."""
        for proxy in self._proxies.values():
            proxy.close()
        self._proxies.clear()
