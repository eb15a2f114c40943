"""The fault proxy itself: each kind of fault does what it says, the dice are seeded and bounded."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import psycopg
import pytest

from tests.devstack import DevStack
from tests.devstack.faultproxy import FAULT_KINDS, FaultProxy, ProxyError


class CountingServer(ThreadingHTTPServer):
    """An upstream that counts the POSTs it applied and answers each with the new count."""

    daemon_threads = True

    def __init__(self) -> None:
        self.applied = 0
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _CountingHandler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _CountingHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # head and body are two writes: no 40 ms delayed-ACK stall
    server: CountingServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        with self.server.lock:
            self.server.applied += 1
            count = self.server.applied
        self._answer({"applied": count, "echo": json.loads(body or b"null")})

    def do_GET(self) -> None:
        with self.server.lock:
            count = self.server.applied
        self._answer({"applied": count})

    def _answer(self, payload: object) -> None:
        data = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def upstream() -> Iterator[CountingServer]:
    server = CountingServer()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def proxy(upstream: CountingServer) -> Iterator[FaultProxy]:
    with FaultProxy(upstream.url, seed=7, delay=(0.3, 0.3)) as started:
        yield started


@pytest.fixture
def client(proxy: FaultProxy) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=proxy.url, timeout=10) as http:
        yield http


def raw_post(url: str, body: bytes = b'{"n": 1}') -> bytes:
    """One POST over a raw socket; the bytes of the answer (raises ConnectionResetError on RST)."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        request = (
            f"POST /rest/v1/rpc/probe HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        ).encode() + body
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)


def test_without_faults_requests_and_answers_pass_untouched_on_one_kept_alive_connection(
    proxy: FaultProxy, client: httpx.Client, upstream: CountingServer
) -> None:
    answers = [client.post("/rest/v1/rpc/probe", json={"i": i}).json() for i in range(5)]
    assert answers == [{"applied": i + 1, "echo": {"i": i}} for i in range(5)]
    big = "x" * 300_000
    assert client.post("/rest/v1/rpc/probe", json={"big": big}).json()["echo"] == {"big": big}
    stats = proxy.stats()
    assert (stats.requests, stats.forwarded, stats.injected) == (6, 6, 0)
    assert upstream.applied == 6


@pytest.mark.parametrize(("kind", "status"), [("503", 503), ("520", 520)])
def test_an_error_answer_before_forwarding_leaves_the_server_untouched(
    proxy: FaultProxy, client: httpx.Client, upstream: CountingServer, kind: str, status: int
) -> None:
    proxy.force(kind)
    response = client.post("/rest/v1/rpc/probe", json={})
    assert response.status_code == status
    if kind == "503":
        assert response.json()["code"] == "PGRST001"
    else:
        assert "text/html" in response.headers["Content-Type"]
    assert upstream.applied == 0
    assert client.post("/rest/v1/rpc/probe", json={}).json()["applied"] == 1  # same connection goes on
    assert proxy.stats().faults == {kind: 1}


def test_520_after_lets_the_server_apply_the_request_then_answers_520(
    proxy: FaultProxy, client: httpx.Client, upstream: CountingServer
) -> None:
    proxy.force("520_after")
    response = client.post("/rest/v1/rpc/probe", json={})
    assert response.status_code == 520
    assert upstream.applied == 1
    assert client.post("/rest/v1/rpc/probe", json={}).json()["applied"] == 2
    assert proxy.stats().faults == {"520_after": 1}
    assert [event.upstream_status for event in proxy.events()] == [200, 200]


def test_reset_resets_the_connection_before_the_server_sees_the_request(
    proxy: FaultProxy, upstream: CountingServer
) -> None:
    proxy.force("reset")
    with pytest.raises(ConnectionResetError):
        raw_post(proxy.url)
    assert upstream.applied == 0
    assert proxy.stats().forwarded == 0


def test_drop_after_resets_the_client_after_the_server_applied_the_request(
    proxy: FaultProxy, upstream: CountingServer
) -> None:
    proxy.force("drop_after")
    with pytest.raises(ConnectionResetError):
        raw_post(proxy.url)
    assert upstream.applied == 1
    assert proxy.events()[0].upstream_status == 200


def test_httpx_sees_a_lost_answer_as_a_read_error_and_the_next_request_works(
    proxy: FaultProxy, client: httpx.Client, upstream: CountingServer
) -> None:
    proxy.force("drop_after")
    with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
        client.post("/rest/v1/rpc/probe", json={})
    assert client.post("/rest/v1/rpc/probe", json={}).json()["applied"] == 2


def test_delay_holds_the_answer_of_an_applied_request_then_relays_it(
    proxy: FaultProxy, client: httpx.Client, upstream: CountingServer
) -> None:
    proxy.force("delay")
    started = time.monotonic()
    response = client.post("/rest/v1/rpc/probe", json={"i": 1})
    assert time.monotonic() - started >= 0.3  # a lower bound: a loaded machine only adds to it
    assert response.json() == {"applied": 1, "echo": {"i": 1}}
    proxy.force("delay")
    with pytest.raises(httpx.ReadTimeout):
        client.post("/rest/v1/rpc/probe", json={}, timeout=0.05)
    assert upstream.applied == 2  # applied although the client gave up waiting
    assert proxy.stats().faults == {"delay": 2}


def test_a_forced_fault_hits_only_the_matching_path_and_only_as_often_as_asked(
    proxy: FaultProxy, client: httpx.Client
) -> None:
    proxy.force("503", path=r"/rpc/target$", times=2)
    assert client.post("/rest/v1/rpc/other", json={}).status_code == 200
    statuses = [client.post("/rest/v1/rpc/target", json={}).status_code for _ in range(3)]
    assert statuses == [503, 503, 200]
    assert proxy.stats().faults_by_function == {("target", "503"): 2}


def _fault_sequence(upstream_url: str, seed: int, rate: float, count: int) -> list[str | None]:
    kinds = {"503": 1.0, "520": 1.0, "520_after": 1.0, "delay": 1.0}
    with (
        FaultProxy(upstream_url, rate=rate, seed=seed, kinds=kinds, delay=(0.0, 0.0)) as proxy,
        httpx.Client(base_url=proxy.url, timeout=10) as http,
    ):
        for number in range(count):
            http.post("/rest/v1/rpc/probe", json={})
            if number % 10 == 0:
                http.get("/__admin")  # outside ``match``: never faulted, draws no dice
        assert {event.fault for event in proxy.events() if event.path == "/__admin"} == {None}
        return [event.fault for event in proxy.events() if event.path != "/__admin"]


def test_the_dice_are_seeded_hit_at_the_rate_and_pick_every_allowed_kind(upstream: CountingServer) -> None:
    first = _fault_sequence(upstream.url, seed=42, rate=0.3, count=100)
    assert _fault_sequence(upstream.url, seed=42, rate=0.3, count=100) == first
    assert _fault_sequence(upstream.url, seed=43, rate=0.3, count=100) != first
    faulted = [kind for kind in first if kind is not None]
    assert 15 <= len(faulted) <= 45  # 30 % of 100, for this seed
    assert set(faulted) == {"503", "520", "520_after", "delay"}
    assert _fault_sequence(upstream.url, seed=1, rate=0.0, count=20) == [None] * 20
    assert None not in _fault_sequence(upstream.url, seed=1, rate=1.0, count=20)


def test_bad_settings_are_refused_before_anything_listens(upstream: CountingServer) -> None:
    with pytest.raises(ProxyError, match="loopback"):
        FaultProxy("http://10.1.2.3:80")
    with pytest.raises(ProxyError, match="unknown fault kind"):
        FaultProxy(upstream.url, kinds={"teleport": 1.0})
    with pytest.raises(ProxyError, match="rate"):
        FaultProxy(upstream.url, rate=1.5)
    with pytest.raises(ProxyError, match="delay"):
        FaultProxy(upstream.url, delay=(5.0, 2.0))
    assert set(FAULT_KINDS) == {"503", "520", "520_after", "reset", "drop_after", "delay"}


def test_connections_are_bounded_and_a_waiting_client_is_served_once_a_slot_frees(
    upstream: CountingServer,
) -> None:
    with FaultProxy(upstream.url, max_connections=1) as proxy:
        holder = socket.create_connection(("127.0.0.1", proxy.port))
        holder.sendall(b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n")  # takes the only slot, kept alive
        assert holder.recv(65536).startswith(b"HTTP/1.1 200")
        answers: list[int] = []
        waiting = threading.Thread(
            target=lambda: answers.append(httpx.get(f"{proxy.url}/x", timeout=10).status_code)
        )
        waiting.start()
        waiting.join(0.5)
        assert answers == []  # queued in the backlog, not served
        holder.close()
        waiting.join(10)
        assert answers == [200]


@pytest.mark.slow  # needs the PostgreSQL stack
def test_in_front_of_the_rest_server_a_lost_answer_still_commits(devstack: DevStack, pg_dsn: str) -> None:
    """The proxy relays real PostgREST calls: a create_run whose answer is dropped is in the database."""
    headers = {
        "apikey": devstack.service_role_key,
        "Authorization": f"Bearer {devstack.service_role_key}",
        "Content-Profile": "ops",
        "Accept-Profile": "ops",
    }
    project = f"fp-{time.monotonic_ns()}"
    with psycopg.connect(pg_dsn, autocommit=True) as db:
        db.execute("INSERT INTO ops.projects (project_id) VALUES (%s)", (project,))
        db.execute("INSERT INTO ops.environments (project_id, env_id) VALUES (%s, 'dev')", (project,))
        with FaultProxy(devstack.url) as proxy, httpx.Client(base_url=proxy.url, headers=headers) as http:
            proxy.force("drop_after", path=r"/rpc/create_run$")
            body = {"project_id": project, "workflow_type": "build", "git_ref": "main", "git_sha": "a" * 40}
            with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
                http.post("/rest/v1/rpc/create_run", json=body)
            row = db.execute("SELECT count(*) FROM ops.runs WHERE project_id = %s", (project,)).fetchone()
            assert row == (1,)
            assert proxy.stats().faults_by_function == {("create_run", "drop_after"): 1}
        db.execute("DELETE FROM ops.projects WHERE project_id = %s", (project,))


class _RudeHandler(_CountingHandler):
    """Closes every connection after its answer without saying so (no ``Connection: close``)."""

    def do_POST(self) -> None:
        super().do_POST()
        self.close_connection = True


def test_an_idle_connection_the_server_closed_is_replaced_not_reported_as_a_fault() -> None:
    server = CountingServer()
    server.RequestHandlerClass = _RudeHandler
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        with FaultProxy(server.url) as proxy, httpx.Client(base_url=proxy.url, timeout=10) as http:
            answers = [http.post("/rest/v1/rpc/probe", json={}).json()["applied"] for _ in range(3)]
            assert answers == [1, 2, 3]
            assert (proxy.stats().upstream_errors, proxy.stats().injected) == (0, 0)
    finally:
        server.shutdown()
        server.server_close()


def test_an_unreachable_server_resets_the_client_and_is_counted_apart_from_the_faults() -> None:
    with socket.socket() as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        port = placeholder.getsockname()[1]  # nothing listens there once the socket is closed
    with FaultProxy(f"http://127.0.0.1:{port}") as proxy:
        with pytest.raises(ConnectionResetError):
            raw_post(proxy.url)
        stats = proxy.stats()
        assert (stats.requests, stats.forwarded, stats.upstream_errors, stats.injected) == (1, 0, 1, 0)
