"""A TCP proxy that misbehaves like the network between a client and Supabase.

``FaultProxy`` listens on a loopback port and relays HTTP/1.1 requests to an upstream server on
loopback (the devstack's REST server), one upstream connection per client connection, keeping
both alive between requests. It understands just enough HTTP to find where each request and
each answer ends (``Content-Length``; answers without one are read to the end of the
connection), so it can fault one request of a keep-alive connection and not the others.

For every request whose path matches ``match``, a seeded RNG decides, at ``rate``, whether to
inject a fault and which one (weights in ``kinds``). ``force()`` queues faults that take
precedence over the dice, for tests that need one exact fault on one exact call. The kinds:

``503``        answer 503 (PostgREST's ``PGRST001``, database unreachable) without forwarding
``520``        answer 520 (the edge's HTML error page) without forwarding
``520_after``  forward, let the server apply it, discard its answer and answer 520 instead
               (what Cloudflare does when the origin answers too late)
``reset``      reset the client's connection (RST) after reading the request, before forwarding
``drop_after`` forward, let the server apply it, read its answer, then reset the client instead
               of relaying it (an answer lost after the commit)
``delay``      forward, let the server apply it, hold the answer ``delay`` seconds (drawn
               uniformly from the configured range), then relay it

A client cannot tell ``reset`` from ``drop_after``, nor ``520`` from ``520_after``: that is the
point. What happened is counted per kind (and per RPC function) in ``stats()``.

Bounds: loopback only (the listening address and the upstream), at most ``max_connections``
client connections at a time (further clients wait in the listen backlog), socket timeouts on
both sides, and request heads/bodies capped. Chunked request bodies are refused with 501 (no
client of this project sends one).
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import random
import re
import select
import socket
import struct
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from types import TracebackType
from typing import BinaryIO
from urllib.parse import urlsplit

FAULT_KINDS = ("503", "520", "520_after", "reset", "drop_after", "delay")
# Kinds whose request reaches the server (it may have committed it).
FORWARDED_KINDS = frozenset({"520_after", "drop_after", "delay"})

MAX_HEAD_BYTES = 64 * 1024
MAX_BODY_BYTES = 64 * 1024 * 1024
_RPC_PATH = re.compile(r"/rest/v1/rpc/([A-Za-z_][A-Za-z0-9_]*)")

_PGRST001 = json.dumps(
    {
        "code": "PGRST001",
        "details": "connection to server failed",
        "hint": None,
        "message": "Could not connect with the database due to an internal error.",
    }
).encode()
_EDGE_520 = b"<html><body>error code: 520</body></html>"


class ProxyError(RuntimeError):
    """The proxy cannot be set up as asked."""


@dataclass
class ProxyEvent:
    """One request as the proxy handled it."""

    method: str
    path: str
    fault: str | None  # None: relayed untouched
    upstream_status: int | None = None  # what the server answered (None: not forwarded)

    @property
    def function(self) -> str | None:
        """The ``ops`` RPC function called (``create_run``), or None for other paths."""
        found = _RPC_PATH.search(self.path)
        return found.group(1) if found else None


@dataclass
class ProxyStats:
    requests: int = 0
    forwarded: int = 0
    upstream_errors: int = 0  # the server could not be reached or answered garbage: the client got a reset
    faults: Counter[str] = field(default_factory=Counter)
    faults_by_function: Counter[tuple[str, str]] = field(default_factory=Counter)

    @property
    def injected(self) -> int:
        return sum(self.faults.values())

    def summary(self) -> str:
        kinds = ", ".join(f"{kind}={self.faults.get(kind, 0)}" for kind in FAULT_KINDS)
        return (
            f"requests={self.requests} forwarded={self.forwarded} faults={self.injected} ({kinds}) "
            f"upstream_errors={self.upstream_errors}"
        )


@dataclass
class _Forced:
    kind: str
    path: re.Pattern[str] | None
    remaining: int


class _Closed(Exception):
    """The peer closed the connection between requests."""


class _BadRequest(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def _require_loopback(host: str, what: str) -> None:
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        raise ProxyError(f"{what} must be on loopback (127.0.0.1 or ::1), got {host!r}")


def _check_kinds(kinds: dict[str, float]) -> dict[str, float]:
    unknown = sorted(set(kinds) - set(FAULT_KINDS))
    if unknown:
        raise ProxyError(f"unknown fault kind(s) {unknown}; expected some of {FAULT_KINDS}")
    if not kinds or any(weight < 0 for weight in kinds.values()) or sum(kinds.values()) <= 0:
        raise ProxyError(f"fault weights must be non-negative with a positive sum, got {kinds}")
    return dict(kinds)


class FaultProxy:
    """``FaultProxy(upstream_url, rate=0.3, seed=1).start()``; ``url`` replaces the upstream's URL."""

    def __init__(
        self,
        upstream_url: str,
        *,
        rate: float = 0.0,
        kinds: dict[str, float] | None = None,
        seed: int = 0,
        delay: tuple[float, float] = (2.0, 5.0),
        match: str = r"^/rest/v1/",
        max_connections: int = 64,
        io_timeout: float = 60.0,
    ) -> None:
        parts = urlsplit(upstream_url)
        if parts.scheme != "http" or not parts.hostname or not parts.port:
            raise ProxyError(f"upstream must be http://<loopback>:<port>, got {upstream_url!r}")
        _require_loopback(parts.hostname, "the upstream")
        self._upstream = (parts.hostname, parts.port)
        self._lock = threading.Lock()
        self._random = random.Random(seed)
        self._rate = 0.0
        self._kinds: dict[str, float] = {}
        self._delay = (0.0, 0.0)
        self.configure(rate=rate, kinds=kinds or dict.fromkeys(FAULT_KINDS, 1.0), delay=delay)
        self._match = re.compile(match)
        self._forced: deque[_Forced] = deque()
        self._stats = ProxyStats()
        self._events: list[ProxyEvent] = []
        self._slots = threading.BoundedSemaphore(max_connections)
        self._io_timeout = io_timeout
        self._listener: socket.socket | None = None
        self._accept_thread: threading.Thread | None = None
        self._clients: set[socket.socket] = set()
        self._stopping = threading.Event()

    # -- configuration ----------------------------------------------------------------------
    def configure(
        self,
        *,
        rate: float | None = None,
        kinds: dict[str, float] | None = None,
        delay: tuple[float, float] | None = None,
    ) -> None:
        """Change the dice for the requests that follow (the RNG's sequence goes on)."""
        with self._lock:
            if rate is not None:
                if not 0.0 <= rate <= 1.0:
                    raise ProxyError(f"rate must be between 0 and 1, got {rate}")
                self._rate = rate
            if kinds is not None:
                self._kinds = _check_kinds(kinds)
            if delay is not None:
                low, high = delay
                if not 0.0 <= low <= high:
                    raise ProxyError(f"delay must be a range (low, high) with 0 <= low <= high, got {delay}")
                self._delay = (low, high)

    def force(self, kind: str, *, path: str | None = None, times: int = 1) -> None:
        """Inject ``kind`` into the next ``times`` requests whose path matches ``path`` (a regex)."""
        _check_kinds({kind: 1.0})
        if times < 1:
            raise ProxyError(f"times must be at least 1, got {times}")
        with self._lock:
            self._forced.append(_Forced(kind, re.compile(path) if path else None, times))

    def clear_forced(self) -> None:
        with self._lock:
            self._forced.clear()

    # -- figures ----------------------------------------------------------------------------
    def stats(self) -> ProxyStats:
        with self._lock:
            return ProxyStats(
                self._stats.requests,
                self._stats.forwarded,
                self._stats.upstream_errors,
                Counter(self._stats.faults),
                Counter(self._stats.faults_by_function),
            )

    def events(self) -> list[ProxyEvent]:
        with self._lock:
            return list(self._events)

    def reset_stats(self) -> None:
        with self._lock:
            self._stats = ProxyStats()
            self._events.clear()

    # -- lifecycle ----------------------------------------------------------------------------
    @property
    def port(self) -> int:
        if self._listener is None:
            raise ProxyError("proxy not started")
        return int(self._listener.getsockname()[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FaultProxy:
        if self._listener is not None:
            return self
        self._stopping.clear()
        self._listener = socket.create_server(("127.0.0.1", 0), backlog=128)
        self._accept_thread = threading.Thread(target=self._accept_loop, name="faultproxy", daemon=True)
        self._accept_thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        with self._lock:
            clients = list(self._clients)
        for client in clients:
            with contextlib.suppress(OSError):
                client.shutdown(socket.SHUT_RDWR)
        if self._accept_thread is not None:
            self._accept_thread.join(timeout=5)
            self._accept_thread = None

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- connections --------------------------------------------------------------------------
    def _accept_loop(self) -> None:
        listener = self._listener
        assert listener is not None
        while not self._stopping.is_set():
            self._slots.acquire()
            try:
                client, _ = listener.accept()
            except OSError:
                self._slots.release()
                return
            with self._lock:
                self._clients.add(client)
            threading.Thread(target=self._serve_client, args=(client,), daemon=True).start()

    def _serve_client(self, client: socket.socket) -> None:
        client.settimeout(self._io_timeout)
        session = _Session(self, client)
        try:
            session.serve()
        finally:
            session.close()
            with self._lock:
                self._clients.discard(client)
            self._slots.release()

    def _decide(self, method: str, path: str) -> tuple[str | None, float]:
        """The fault for this request (None: relay it) and, for ``delay``, how long to hold it."""
        with self._lock:
            self._stats.requests += 1
            kind = self._take_forced(path)
            eligible = kind is None and self._rate > 0 and self._match.search(path) is not None
            if eligible and self._random.random() < self._rate:
                names = list(self._kinds)
                kind = self._random.choices(names, weights=[self._kinds[n] for n in names])[0]
            seconds = self._random.uniform(*self._delay) if kind == "delay" else 0.0
            return kind, seconds

    def _take_forced(self, path: str) -> str | None:
        for forced in self._forced:
            if forced.path is None or forced.path.search(path):
                forced.remaining -= 1
                if forced.remaining <= 0:
                    self._forced.remove(forced)
                return forced.kind
        return None

    def _record(self, event: ProxyEvent, *, upstream_error: bool = False) -> None:
        with self._lock:
            self._events.append(event)
            self._stats.upstream_errors += upstream_error
            if event.upstream_status is not None:
                self._stats.forwarded += 1
            if event.fault is not None:
                self._stats.faults[event.fault] += 1
                self._stats.faults_by_function[(event.function or event.path, event.fault)] += 1


class _Session:
    """One client connection and its upstream connection."""

    def __init__(self, proxy: FaultProxy, client: socket.socket) -> None:
        self._proxy = proxy
        self._client = client
        self._client_in = client.makefile("rb")
        self._upstream: socket.socket | None = None
        self._upstream_reader: _Reader | None = None
        self._reader = _Reader(self._client_in)

    def serve(self) -> None:
        while not self._proxy._stopping.is_set():
            try:
                head, body = self._reader.read_request()
            except _Closed:
                return
            except _BadRequest as bad:
                self._client.sendall(_response(bad.status, bad.reason.encode(), "text/plain", close=True))
                return
            except OSError:
                return
            if not self._handle(head, body):
                return

    def _handle(self, head: bytes, body: bytes) -> bool:
        """Serve one request; False when the client connection is finished.

        The request is recorded before the client can see the outcome, so a test that reads
        ``stats()`` right after its call returned finds it counted.
        """
        method, path = _request_target(head)
        kind, seconds = self._proxy._decide(method, path)
        event = ProxyEvent(method, path, kind)
        if kind in ("503", "520", "reset"):
            self._proxy._record(event)
            if kind == "reset":
                self._reset_client()
                return False
            body_bytes, content_type = (_PGRST001, "application/json; charset=utf-8")
            if kind == "520":
                body_bytes, content_type = _EDGE_520, "text/html"
            return self._send(_response(int(kind), body_bytes, content_type))
        try:
            answer, event.upstream_status, keep_upstream = self._forward(head, body, method)
        except (OSError, ValueError, IndexError, _Closed, _BadRequest):
            self._proxy._record(event, upstream_error=True)  # the client sees a reset, as behind a gateway
            self._reset_client()
            return False
        if not keep_upstream:
            self._close_upstream()
        self._proxy._record(event)
        if kind == "520_after":
            return self._send(_response(520, _EDGE_520, "text/html"))
        if kind == "drop_after":
            self._reset_client()
            return False
        if kind == "delay":
            time.sleep(seconds)
        return self._send(answer)

    def _send(self, data: bytes) -> bool:
        try:
            self._client.sendall(data)
        except OSError:
            return False
        return True

    def _forward(self, head: bytes, body: bytes, method: str) -> tuple[bytes, int, bool]:
        """Send the request upstream; its whole answer, the status, and whether the connection lives on."""
        if self._upstream is not None and _closed_by_peer(self._upstream):
            self._close_upstream()  # an idle keep-alive connection the server closed: it saw nothing
        if self._upstream is None:
            upstream = socket.create_connection(self._proxy._upstream, timeout=self._proxy._io_timeout)
            self._upstream = upstream
            self._upstream_reader = _Reader(upstream.makefile("rb"))
        assert self._upstream_reader is not None
        self._upstream.sendall(head + body)
        return self._upstream_reader.read_response(method)

    def _reset_client(self) -> None:
        """Close with RST (SO_LINGER 0): the client sees 'connection reset by peer'."""
        with contextlib.suppress(OSError):
            self._client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    def _close_upstream(self) -> None:
        upstream, self._upstream = self._upstream, None
        self._upstream_reader = None
        if upstream is not None:
            with contextlib.suppress(OSError):
                upstream.close()

    def close(self) -> None:
        self._close_upstream()
        with contextlib.suppress(OSError):
            self._client_in.close()
        with contextlib.suppress(OSError):
            self._client.close()


class _Reader:
    """Reads HTTP/1.1 messages (head + Content-Length body) from a buffered socket file."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream

    def _readline(self) -> bytes:
        line: bytes = self._stream.readline(MAX_HEAD_BYTES + 1)
        if len(line) > MAX_HEAD_BYTES:
            raise _BadRequest(431, "header line too long")
        return line

    def _read_head(self) -> tuple[bytes, dict[str, str]]:
        first = self._readline()
        while first in (b"\r\n", b"\n"):  # tolerated between messages
            first = self._readline()
        if not first:
            raise _Closed
        lines = [first]
        headers: dict[str, str] = {}
        size = len(first)
        while True:
            line = self._readline()
            if not line:
                raise _Closed
            lines.append(line)
            size += len(line)
            if size > MAX_HEAD_BYTES:
                raise _BadRequest(431, "request head too large")
            if line in (b"\r\n", b"\n"):
                return b"".join(lines), headers
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()

    def _read_exactly(self, count: int) -> bytes:
        data: bytes = self._stream.read(count)
        if len(data) != count:
            raise _Closed
        return data

    def read_request(self) -> tuple[bytes, bytes]:
        head, headers = self._read_head()
        if "chunked" in headers.get("transfer-encoding", "").lower():
            raise _BadRequest(501, "chunked request bodies are not supported by the fault proxy")
        length = int(headers.get("content-length") or 0)
        if length > MAX_BODY_BYTES:
            raise _BadRequest(413, "request body too large for the fault proxy")
        return head, self._read_exactly(length) if length else b""

    def read_response(self, method: str) -> tuple[bytes, int, bool]:
        head, headers = self._read_head()
        status = int(head.split(b" ", 2)[1])
        keep_alive = headers.get("connection", "").lower() != "close"
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            return head, status, keep_alive
        if "content-length" in headers:
            length = int(headers["content-length"])
            if length > MAX_BODY_BYTES:
                raise OSError("upstream answer too large for the fault proxy")
            return head + self._read_exactly(length), status, keep_alive
        rest: bytes = self._stream.read(MAX_BODY_BYTES)
        return head + rest, status, False


def _closed_by_peer(sock: socket.socket) -> bool:
    """True when the peer closed an idle connection (readable, and at end of stream)."""
    readable, _, _ = select.select([sock], [], [], 0)
    if not readable:
        return False
    try:
        return sock.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


def _request_target(head: bytes) -> tuple[str, str]:
    parts = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ")
    method = parts[0] if parts else ""
    target = parts[1] if len(parts) > 1 else "/"
    return method, urlsplit(target).path


def _response(status: int, body: bytes, content_type: str, *, close: bool = False) -> bytes:
    reason = {501: "Not Implemented", 503: "Service Unavailable", 520: "Unknown Error"}.get(status, "Error")
    lines = [
        f"HTTP/1.1 {status} {reason}",
        f"Content-Type: {content_type}",
        f"Content-Length: {len(body)}",
    ]
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


__all__ = ["FAULT_KINDS", "FORWARDED_KINDS", "FaultProxy", "ProxyError", "ProxyEvent", "ProxyStats"]
