""".github/scripts/tcp_forward.py: the bridge from the Action's container to the stack in ci.yml."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / ".github" / "scripts" / "tcp_forward.py"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def echo_port() -> Iterator[int]:
    """A server that sends back everything it receives, then closes after the client's half-close."""
    server = socket.create_server(("127.0.0.1", 0))
    port = int(server.getsockname()[1])

    def serve() -> None:
        while True:
            try:
                connection, _ = server.accept()
            except OSError:
                return
            with connection:
                while data := connection.recv(65536):
                    connection.sendall(data)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield port
    server.close()


def start_forwarder(listen_port: int, target_port: int) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, str(SCRIPT), "127.0.0.1", str(listen_port), "127.0.0.1", str(target_port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    assert process.stdout.readline().startswith(f"tcp_forward: 127.0.0.1:{listen_port} -> ")
    return process


def exchange(port: int, payload: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
        client.sendall(payload)
        client.shutdown(socket.SHUT_WR)
        received = b""
        while chunk := client.recv(65536):
            received += chunk
    return received


def test_forwards_both_ways_and_passes_the_half_close_on(echo_port: int) -> None:
    listen_port = free_port()
    forwarder = start_forwarder(listen_port, echo_port)
    try:
        payload = bytes(range(256)) * 4096  # 1 MiB, more than one read
        assert exchange(listen_port, payload) == payload
        assert exchange(listen_port, b"second connection") == b"second connection"
    finally:
        forwarder.terminate()
    assert forwarder.wait(10) == 0


def test_an_unreachable_target_closes_the_client_and_keeps_listening() -> None:
    listen_port, closed_port = free_port(), free_port()
    forwarder = start_forwarder(listen_port, closed_port)
    try:
        assert exchange(listen_port, b"hello") == b""
        assert exchange(listen_port, b"again") == b""
    finally:
        forwarder.terminate()
    _, stderr = forwarder.communicate(timeout=10)
    assert f"cannot reach 127.0.0.1:{closed_port}" in stderr


def test_a_client_still_writing_after_the_refusal_gets_an_orderly_close() -> None:
    """The order that made the test above fail now and then, made certain: the forwarder has
    given up on the target before the client sends. Closing with the client's data unread would
    answer with a reset (ENOTCONN on shutdown, ECONNRESET on recv); an orderly close reads it."""
    listen_port, closed_port = free_port(), free_port()
    forwarder = start_forwarder(listen_port, closed_port)
    assert forwarder.stderr is not None
    try:
        with socket.create_connection(("127.0.0.1", listen_port), timeout=10) as client:
            assert f"cannot reach 127.0.0.1:{closed_port}" in forwarder.stderr.readline()
            assert client.recv(16) == b""  # the forwarder's end of stream, not a reset
            client.sendall(b"late request")
            client.shutdown(socket.SHUT_WR)
            assert client.recv(16) == b""
    finally:
        forwarder.terminate()
    assert forwarder.wait(10) == 0


def test_a_port_in_use_is_reported() -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = int(taken.getsockname()[1])
        done = subprocess.run(
            [sys.executable, str(SCRIPT), "127.0.0.1", str(port), "127.0.0.1", "1"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    assert done.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr


def test_wrong_arguments_print_the_usage() -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "127.0.0.1", "http"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 2
    assert "usage: tcp_forward.py" in done.stderr
