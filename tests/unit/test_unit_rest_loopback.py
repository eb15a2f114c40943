"""RestStore over real loopback sockets: keep-alive reuse, real timeouts and refused connections."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from rest_fakes import SECRET_KEY, run_row

from odooops_action.config import ConnectionSettings
from odooops_action.errors import TransientError
from odooops_action.models import NewEvent
from odooops_action.store.rest import RestStore
from odooops_action.store.retry import RetryPolicy

RUN_ID = "run-20261201-120000-0123abc"


class FakePostgrest(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), PollHandler)
        self.connections = 0
        self.requests: list[tuple[str, dict[str, object]]] = []
        self.stall = threading.Event()  # when set, requests are read but never answered
        self.release = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class PollHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    server: FakePostgrest

    def setup(self) -> None:
        super().setup()
        self.server.connections += 1

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append((self.path, body))
        if self.server.stall.is_set():
            self.server.release.wait(5)
            return
        answer = {
            "run": run_row(status="running", claimed_by="w1"),
            "events": [],
            "artifacts": [],
            "has_more": False,
        }
        payload = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
        return


@pytest.fixture
def server() -> Iterator[FakePostgrest]:
    fake = FakePostgrest()
    thread = threading.Thread(target=fake.serve_forever, daemon=True)
    thread.start()
    yield fake
    fake.release.set()
    fake.shutdown()
    fake.server_close()


def store_for(url: str, sleeps: list[float], timeout: float = 5.0) -> RestStore:
    settings = ConnectionSettings(supabase_url=url, supabase_key=SECRET_KEY, timeout_seconds=timeout)
    return RestStore(
        settings, retry_policy=RetryPolicy(max_attempts=3, sleep=sleeps.append, random=lambda: 0.0)
    )


def test_polls_reuse_one_keep_alive_connection(server: FakePostgrest) -> None:
    with store_for(server.url, []) as store:
        for cursor in range(3):
            store.poll_run(RUN_ID, after_seq=cursor)

    assert server.connections == 1
    assert [path for path, _ in server.requests] == ["/rest/v1/rpc/poll_run"] * 3
    assert [body["after_seq"] for _, body in server.requests] == [0, 1, 2]


def test_a_read_timeout_on_append_events_is_repeated_with_the_same_batch_key(server: FakePostgrest) -> None:
    server.stall.set()
    sleeps: list[float] = []

    with store_for(server.url, sleeps, timeout=0.3) as store, pytest.raises(TransientError) as caught:
        store.append_events(RUN_ID, [NewEvent(message="once")], attempt=1)

    assert "ReadTimeout" in str(caught.value)
    assert len(server.requests) == 3
    assert len({body["batch_key"] for _, body in server.requests}) == 1
    assert [body["attempt"] for _, body in server.requests] == [1, 1, 1]
    assert len(sleeps) == 2


def test_a_read_timeout_on_poll_is_retried_until_the_attempts_run_out(server: FakePostgrest) -> None:
    server.stall.set()
    sleeps: list[float] = []

    with store_for(server.url, sleeps, timeout=0.3) as store, pytest.raises(TransientError, match="3 time"):
        store.poll_run(RUN_ID)

    assert len(server.requests) == 3
    assert len(sleeps) == 2


def test_a_refused_connection_is_retried_then_reported() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again before the store connects: nothing listens there
    sleeps: list[float] = []

    with store_for(f"http://127.0.0.1:{port}", sleeps) as store, pytest.raises(TransientError) as caught:
        store.claim_next_run("w1")

    assert f"127.0.0.1:{port}" in str(caught.value)
    assert "ConnectError" in str(caught.value)
    assert len(sleeps) == 2
