"""Bad arguments are refused with exit 2 and a message naming the argument, before any request.

The CLI runs in-process here (fast) against endpoints that record what reaches them: the REST
server's request log, and for PostgreSQL a TCP listener counting the connections made to it.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from odooops_action.cli import main
from tests.devstack import DevStack
from tests.lifecycle.helpers import CONNECTION_VARIABLES, cli_environment, new_sha

SHA = new_sha()
RUN = "run-20260214-120000-abc123d"

BAD_ARGUMENTS: list[tuple[str, list[str], str]] = [
    (
        "short sha",
        ["create", "p", "build", "main", "abc123d"],
        "commit_sha must be the full 40-character commit SHA (got 'abc123d', 7 characters)",
    ),
    (
        "non-hex sha",
        ["create", "p", "build", "main", "z" * 40],
        "commit_sha must be a hexadecimal commit SHA",
    ),
    (
        "unknown workflow",
        ["create", "p", "bild", "main", SHA],
        "workflow_type must be one of build, deploy, test, got 'bild'",
    ),
    (
        "bad project id",
        ["create", "my project", "build", "main", SHA],
        "project_id must be 1 to 100 characters",
    ),
    (
        "bad environment",
        ["create", "p", "build", "main", SHA, "dev env"],
        "env_id must be 1 to 63 characters",
    ),
    ("empty git ref", ["create", "p", "build", "", SHA], "git_ref must be a branch or tag name"),
    (
        "empty idempotency key",
        ["create", "p", "build", "main", SHA, "--idempotency-key", ""],
        "idempotency_key must be 1 to 255",
    ),
    (
        "too few for create",
        ["create", "p", "build", "main"],
        "the following arguments are required: commit_sha",
    ),
    (
        "too many for create",
        ["create", "p", "build", "main", SHA, "dev", "extra"],
        "unrecognized arguments: extra",
    ),
    ("not a run id", ["wait", "run-123"], "run_id must look like run-YYYYMMDD-HHMMSS-<sha7>"),
    ("upper-case run id", ["destroy", RUN.upper()], "run_id must look like run-YYYYMMDD-HHMMSS-<sha7>"),
    (
        "non-numeric timeout",
        ["wait", RUN, "soon"],
        "max_wait_seconds must be a number of seconds, got 'soon'",
    ),
    (
        "negative timeout",
        ["wait", RUN, "-5"],
        "max_wait_seconds must be a positive number of seconds, got '-5'",
    ),
    (
        "zero interval",
        ["wait", RUN, "60", "0"],
        "sleep_seconds must be a positive number of seconds, got '0'",
    ),
    ("infinite interval", ["wait", RUN, "60", "inf"], "sleep_seconds must be a positive number of seconds"),
    (
        "interval below the polling floor",
        ["wait", RUN, "60", "0.01"],
        "sleep_seconds must be at least 0.2 seconds (polling faster only loads the server), got '0.01'",
    ),
    ("too many for wait", ["wait", RUN, "60", "5", "7"], "unrecognized arguments: 7"),
    ("too few for destroy", ["destroy"], "the following arguments are required: run_id"),
    ("no command", [], "the following arguments are required: command"),
    ("unknown command", ["deploy", RUN], "invalid choice: 'deploy'"),
    ("two connection choices", ["destroy", RUN, "--rest", "--postgres"], "not allowed with argument"),
    (
        "database url that is no url",
        ["destroy", RUN, "--database-url", "not a url"],
        "--database-url must be a PostgreSQL URL (postgresql://...) or a key=value connection string, "
        "got 'not a url'",
    ),
    (
        "database url with a bad port",
        ["wait", RUN, "--database-url", "postgresql://u:secret@db:five/postgres"],
        "--database-url is not a valid PostgreSQL URL",
    ),
]


class ConnectionCounter:
    """A TCP listener that accepts and closes connections, counting them."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self.port = int(self._listener.getsockname()[1])
        self.accepted = 0
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._closing.is_set():
            try:
                connection, _ = self._listener.accept()
            except TimeoutError:
                continue
            self.accepted += 1
            connection.close()

    def close(self) -> None:
        self._closing.set()
        self._thread.join(timeout=5)
        self._listener.close()


@pytest.fixture
def counter() -> Iterator[ConnectionCounter]:
    listener = ConnectionCounter()
    yield listener
    listener.close()


@pytest.fixture
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No connection variable from the outer environment and no ``.env`` file in the way."""
    for name in CONNECTION_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


@pytest.mark.usefixtures("isolated")
@pytest.mark.parametrize(
    ("argv", "expected"), [case[1:] for case in BAD_ARGUMENTS], ids=[c[0] for c in BAD_ARGUMENTS]
)
def test_bad_arguments_send_no_request_to_rest(
    argv: list[str],
    expected: str,
    devstack: DevStack,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("SUPABASE_URL", devstack.url)
    monkeypatch.setenv("SUPABASE_SERVICE_ROLE_KEY", devstack.service_role_key)
    devstack.server.clear_requests()
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith("error: ")
    assert expected in err
    assert devstack.server.requests == []


@pytest.mark.usefixtures("isolated")
@pytest.mark.parametrize(
    ("argv", "expected"), [case[1:] for case in BAD_ARGUMENTS], ids=[c[0] for c in BAD_ARGUMENTS]
)
def test_bad_arguments_open_no_database_connection(
    argv: list[str],
    expected: str,
    counter: ConnectionCounter,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("DATABASE_URL", f"postgresql://postgres@127.0.0.1:{counter.port}/postgres")
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert expected in err
    assert counter.accepted == 0


@pytest.mark.slow  # a real connection attempt that waits for its timeout
@pytest.mark.usefixtures("isolated")
def test_the_counter_does_see_a_real_attempt(
    counter: ConnectionCounter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Guards the test above: a valid command does reach the listener."""
    monkeypatch.setenv(
        "DATABASE_URL", f"postgresql://postgres@127.0.0.1:{counter.port}/postgres?connect_timeout=2"
    )
    assert main(["destroy", RUN]) == 1
    assert counter.accepted >= 1


@pytest.mark.usefixtures("isolated")
def test_upper_case_sha_is_accepted_and_lower_cased(
    devstack: DevStack, project: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", devstack.database_url)
    sha = new_sha()
    assert main(["create", project, "deploy", "main", sha.upper()]) == 0
    assert capsys.readouterr().out.strip().endswith(f"-{sha[:7]}")


def test_help_lists_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in ("create", "wait", "destroy", "worker"):
        assert f"    {command} " in out


def test_rest_use_does_not_import_psycopg(devstack: DevStack, tmp_path: Path) -> None:
    script = (
        "import sys\n"
        "from odooops_action.cli import main\n"
        f"code = main(['destroy', '{RUN}'])\n"
        "print(code, 'psycopg' in sys.modules)\n"
    )
    env = {"SUPABASE_URL": devstack.url, "SUPABASE_SERVICE_ROLE_KEY": devstack.service_role_key}
    done = subprocess.run(
        [sys.executable, "-c", script],
        env=cli_environment(env),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.stdout.strip() == "1 False", done.stderr  # 1: the run does not exist
