"""A TCP proxy on loopback that counts what a client costs the server: requests and bytes.

``CountingProxy(port, "http")`` counts HTTP/1.1 requests (a request line and headers, then a body
of ``Content-Length`` bytes; keep-alive connections carry several), ``"pg"`` counts PostgreSQL
round trips of the frontend protocol: simple queries (``Q``) and extended-protocol ``Sync``
messages (one per parameterised statement), after the startup packet (and an SSL/GSS request
answered ``N``). Both directions' bytes are counted as they pass. Used by the tests (the size of an
idle poll's answer) and by ``bench/follow_bench.py``.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from dataclasses import dataclass
from typing import Literal

Protocol = Literal["http", "pg"]

_SSL_REQUEST = 80877103
_GSS_REQUEST = 80877104
_CANCEL_REQUEST = 80877102


@dataclass(frozen=True)
class Counts:
    requests: int = 0
    bytes_sent: int = 0  # client -> server
    bytes_received: int = 0  # server -> client
    connections: int = 0

    def __sub__(self, other: Counts) -> Counts:
        return Counts(
            self.requests - other.requests,
            self.bytes_sent - other.bytes_sent,
            self.bytes_received - other.bytes_received,
            self.connections - other.connections,
        )


class _HttpRequests:
    """Counts requests in a client byte stream (no chunked request bodies: clients here send none)."""

    def __init__(self) -> None:
        self._buffer = b""
        self._body_left = 0

    def feed(self, data: bytes) -> int:
        found = 0
        while data:
            if self._body_left:
                taken = min(self._body_left, len(data))
                self._body_left -= taken
                data = data[taken:]
                continue
            self._buffer += data
            data = b""
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                return found
            head, data = self._buffer[:end], self._buffer[end + 4 :]
            self._buffer = b""
            found += 1
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    self._body_left = int(value.strip())
        return found


class _PgRoundTrips:
    """Counts ``Q`` and ``S`` messages in a PostgreSQL frontend byte stream."""

    def __init__(self) -> None:
        self._buffer = b""
        self._startup = True

    def feed(self, data: bytes) -> int:
        self._buffer += data
        found = 0
        while True:
            if self._startup:
                if len(self._buffer) < 8:
                    return found
                length, code = struct.unpack("!ii", self._buffer[:8])
                if len(self._buffer) < length:
                    return found
                self._buffer = self._buffer[length:]
                # After an SSL/GSS request the server answers one byte and the startup follows.
                self._startup = code in (_SSL_REQUEST, _GSS_REQUEST)
                if code == _CANCEL_REQUEST:
                    self._startup = True
                continue
            if len(self._buffer) < 5:
                return found
            kind = self._buffer[:1]
            (length,) = struct.unpack("!i", self._buffer[1:5])
            if len(self._buffer) < 1 + length:
                return found
            self._buffer = self._buffer[1 + length :]
            if kind in (b"Q", b"S"):
                found += 1


class CountingProxy:
    """Listens on a free loopback port and forwards every connection to ``127.0.0.1:target_port``."""

    def __init__(self, target_port: int, protocol: Protocol, target_host: str = "127.0.0.1") -> None:
        self._target = (target_host, target_port)
        self._protocol = protocol
        self._lock = threading.Lock()
        self._counts = Counts()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._sockets: list[socket.socket] = []
        self._closed = False
        threading.Thread(target=self._accept, name="counting-proxy", daemon=True).start()

    @property
    def counts(self) -> Counts:
        with self._lock:
            return self._counts

    def _add(self, *, requests: int = 0, sent: int = 0, received: int = 0, connections: int = 0) -> None:
        with self._lock:
            c = self._counts
            self._counts = Counts(
                c.requests + requests,
                c.bytes_sent + sent,
                c.bytes_received + received,
                c.connections + connections,
            )

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self._target)
            except OSError:
                client.close()
                continue
            for sock in (client, server):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._sockets += [client, server]
            self._add(connections=1)
            parser = _HttpRequests() if self._protocol == "http" else _PgRoundTrips()
            threading.Thread(target=self._pump, args=(client, server, parser), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, None), daemon=True).start()

    def _pump(
        self, source: socket.socket, sink: socket.socket, parser: _HttpRequests | _PgRoundTrips | None
    ) -> None:
        try:
            while data := source.recv(65536):
                if parser is not None:
                    self._add(requests=parser.feed(data), sent=len(data))
                else:
                    self._add(received=len(data))
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def drop_connections(self) -> None:
        """Cut every connection open through the proxy (clients see the server vanish)."""
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def close(self) -> None:
        self._closed = True
        self._listener.close()
        self.drop_connections()

    def __enter__(self) -> CountingProxy:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
