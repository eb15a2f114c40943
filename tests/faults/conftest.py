"""Fixtures of the fault suite (a fault proxy in front of the REST server) and its figures."""

from __future__ import annotations

import io
import os
import sys
import threading
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import psycopg
import pytest

from odooops_action import cli
from tests.devstack import DevStack
from tests.devstack.faultproxy import FaultProxy
from tests.faults.figures import NOTES, RECORDED
from tests.worker.helpers import WorkerFactory

CONNECTION_VARIABLES = (
    "SUPABASE_URL",
    "SUPABASE_SERVICE_ROLE_KEY",
    "SUPABASE_SECRET_KEY",
    "SUPABASE_KEY",
    "SUPABASE_ANON_KEY",
    "DATABASE_URL",
)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not RECORDED and not NOTES:
        return
    terminalreporter.section("fault matrix figures (proxy in front of the REST server)")
    for figures in RECORDED:
        terminalreporter.write_line(figures.line())
    for text in NOTES:
        terminalreporter.write_line(text)


@pytest.fixture
def proxy(devstack: DevStack) -> Iterator[FaultProxy]:
    """A fault proxy in front of the stack's REST server; no faults until the test asks."""
    with FaultProxy(devstack.url, seed=20261201, delay=(0.05, 0.2)) as started:
        yield started


@pytest.fixture
def fault_project(db: psycopg.Connection[Any]) -> Iterator[str]:
    """A fresh project with environment ``dev``, removed (with its runs) afterwards."""
    project_id = f"fm-{uuid.uuid4().hex[:12]}"
    db.execute("INSERT INTO ops.projects (project_id) VALUES (%s)", (project_id,))
    db.execute("INSERT INTO ops.environments (project_id, env_id) VALUES (%s, 'dev')", (project_id,))
    yield project_id
    db.execute("DELETE FROM ops.projects WHERE project_id = %s", (project_id,))


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str


class _PerThreadStream(io.TextIOBase):
    """sys.stdout/sys.stderr stand-in: each thread writes to the buffer it bound, others pass through."""

    def __init__(self, fallback: TextIO) -> None:
        self._fallback = fallback
        self._local = threading.local()

    def bind(self, buffer: io.StringIO | None) -> None:
        self._local.buffer = buffer

    def write(self, text: str) -> int:
        buffer = getattr(self._local, "buffer", None)
        return (buffer or self._fallback).write(text)

    def flush(self) -> None:
        buffer = getattr(self._local, "buffer", None)
        (buffer or self._fallback).flush()


class InProcessCli:
    """``odooops <args>`` through ``cli.main`` in this process (thread-safe output capture).

    The per-thread streams replace sys.stdout/sys.stderr on the first call, not in the fixture:
    pytest installs its own capture between the setup and the call of a test.
    """

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self._monkeypatch = monkeypatch
        self._lock = threading.Lock()
        self._out = _PerThreadStream(sys.stdout)
        self._err = _PerThreadStream(sys.stderr)

    def _install(self) -> None:
        with self._lock:
            if sys.stdout is not self._out:
                self._out = _PerThreadStream(sys.stdout)
                self._monkeypatch.setattr(sys, "stdout", self._out)
            if sys.stderr is not self._err:
                self._err = _PerThreadStream(sys.stderr)
                self._monkeypatch.setattr(sys, "stderr", self._err)

    def __call__(self, *args: str) -> CliResult:
        self._install()
        stdout, stderr = io.StringIO(), io.StringIO()
        self._out.bind(stdout)
        self._err.bind(stderr)
        try:
            code = cli.main(list(args))
        finally:
            self._out.bind(None)
            self._err.bind(None)
        return CliResult(code, stdout.getvalue(), stderr.getvalue())


@pytest.fixture
def odooops(
    proxy: FaultProxy, devstack: DevStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> InProcessCli:
    """The real CLI code path, in-process, talking REST to the proxy (no ``.env`` in its cwd)."""
    for name in CONNECTION_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SUPABASE_URL", proxy.url)
    monkeypatch.setenv("SUPABASE_SERVICE_ROLE_KEY", devstack.service_role_key)
    monkeypatch.chdir(tmp_path)
    return InProcessCli(monkeypatch)


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[WorkerFactory]:
    """Worker processes; the test gives each its connection variables. All killed at the end."""
    factory = WorkerFactory(tmp_path, {})
    yield factory
    factory.stop_all()


def environment_without_connection() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in CONNECTION_VARIABLES}


def run_ids_of(db: psycopg.Connection[Any], project_id: str) -> Sequence[tuple[str, str]]:
    """(run_id, git_sha) of every run of the project."""
    rows = db.execute("SELECT run_id, git_sha FROM ops.runs WHERE project_id = %s", (project_id,))
    return [(str(run_id), str(sha)) for run_id, sha in rows.fetchall()]
