"""What the CLI says when it cannot know: a server that never answers, a create interrupted mid-way.

Real processes against real sockets: a listener that reads a request and never answers (so the
request was certainly sent), and a port where nothing listens.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.lifecycle.helpers import cli_command, cli_environment, new_sha
from tests.unit.rest_fakes import SERVICE_JWT

pytestmark = pytest.mark.slow  # real CLI processes
RUN = "run-20260214-120000-abc123d"


class SilentServer:
    """Accepts connections and reads what arrives, never answering; ``received`` is set by the first
    complete request line."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self.received = threading.Event()
        self._connections: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return
            self._connections.append(connection)
            threading.Thread(target=self._read, args=(connection,), daemon=True).start()

    def _read(self, connection: socket.socket) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            try:
                chunk = connection.recv(65536)
            except OSError:
                return
            if not chunk:
                return
            data += chunk
        self.received.set()

    def close(self) -> None:
        self._listener.close()
        for connection in self._connections:
            connection.close()


@pytest.fixture
def silent_server() -> Iterator[SilentServer]:
    server = SilentServer()
    yield server
    server.close()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("key", [None, "deploy-42"])
def test_an_interrupted_create_says_the_run_may_be_queued_and_how_to_find_it(
    silent_server: SilentServer, tmp_path: Path, key: str | None
) -> None:
    sha = new_sha()
    args = ["create", "acme", "deploy", "main", sha, "prod"] + (["--idempotency-key", key] if key else [])
    env = cli_environment({"SUPABASE_URL": silent_server.url, "SUPABASE_SERVICE_ROLE_KEY": SERVICE_JWT})
    with subprocess.Popen(
        cli_command(*args), env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as creating:
        assert silent_server.received.wait(30), "the create request never arrived"
        creating.send_signal(signal.SIGINT)
        out, err = creating.communicate(timeout=30)
    assert creating.returncode == 128 + signal.SIGINT
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith("error: interrupted while queuing the run: it may or may not have been queued.")
    # Without --idempotency-key the invocation generated one: the message gives it to reuse.
    shown = f"'{key}'" if key is not None else "'cli-"
    assert f"repeat the command with the same --idempotency-key {shown}" in err


def test_wait_against_an_unreachable_server_says_unreachable_not_not_found(tmp_path: Path) -> None:
    env = cli_environment({"DATABASE_URL": f"postgresql://nobody@127.0.0.1:{closed_port()}/postgres"})
    done = subprocess.run(
        cli_command("wait", RUN, "1", "0.5"),
        check=False,
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (done.returncode, done.stdout) == (1, "")
    error = done.stderr.splitlines()[-1]
    assert error.startswith(f"error: could not reach the server: no poll of run {RUN} was answered in 1s")
    assert "Connection refused" in error
    assert "not found" not in error
