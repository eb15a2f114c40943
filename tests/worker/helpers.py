"""Helpers for the worker tests: projects and runs in SQL, real worker processes, waiting."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import psycopg

REPO_ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")


def new_project(db: psycopg.Connection[Any]) -> str:
    """A fresh project (with environment ``dev``): workers filtered on it see only this test's runs."""
    project_id = f"wk-{uuid.uuid4().hex[:12]}"
    db.execute("INSERT INTO ops.projects (project_id) VALUES (%s)", (project_id,))
    db.execute("INSERT INTO ops.environments (project_id, env_id) VALUES (%s, 'dev')", (project_id,))
    return project_id


def queue_run(db: psycopg.Connection[Any], project_id: str, metadata: dict[str, Any] | None = None) -> str:
    sha = uuid.uuid4().hex + uuid.uuid4().hex[:8]
    row = db.execute(
        "SELECT ops.create_run(project_id => %s, workflow_type => 'build', git_ref => 'main', "
        "git_sha => %s, metadata => %s::jsonb) AS result",
        (project_id, sha, json.dumps(metadata or {})),
    ).fetchone()
    assert row is not None
    return str(row[0]["run"]["run_id"])


def queue_runs(db: psycopg.Connection[Any], project_id: str, count: int) -> list[str]:
    rows = db.execute(
        "SELECT (ops.create_run(project_id => %s, workflow_type => 'build', git_ref => 'main', "
        "git_sha => md5(%s || i::text) || left(md5(i::text), 8))) -> 'run' ->> 'run_id' "
        "FROM generate_series(1, %s) AS i",
        (project_id, uuid.uuid4().hex, count),
    ).fetchall()
    return [str(row[0]) for row in rows]


def run_row(db: psycopg.Connection[Any], run_id: str) -> dict[str, Any]:
    with db.cursor(row_factory=psycopg.rows.dict_row) as cur:
        row = cur.execute("SELECT * FROM ops.runs WHERE run_id = %s", (run_id,)).fetchone()
    assert row is not None, run_id
    return row


def run_events(db: psycopg.Connection[Any], run_id: str) -> list[dict[str, Any]]:
    with db.cursor(row_factory=psycopg.rows.dict_row) as cur:
        return cur.execute(
            "SELECT seq, level, message, payload FROM ops.run_events WHERE run_id = %s ORDER BY seq",
            (run_id,),
        ).fetchall()


def output_lines(db: psycopg.Connection[Any], run_id: str, stream: str = "stdout") -> list[dict[str, Any]]:
    return [e for e in run_events(db, run_id) if e["payload"].get("stream") == stream]


def wait_until(condition: Callable[[], T], timeout: float, what: str, interval: float = 0.05) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def fresh_connection(dsn: str) -> psycopg.Connection[Any]:
    return wait_until(lambda: _try_connect(dsn), 30, "the database to accept connections")


def _try_connect(dsn: str) -> psycopg.Connection[Any] | None:
    try:
        return psycopg.connect(dsn, autocommit=True, connect_timeout=2)
    except psycopg.OperationalError:
        return None


def wait_status(
    db: psycopg.Connection[Any], run_id: str, statuses: set[str], timeout: float
) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        row = run_row(db, run_id)
        return row if row["status"] in statuses else None

    return wait_until(reached, timeout, f"run {run_id} to reach {sorted(statuses)}")


def write_script(directory: Path, name: str, body: str) -> str:
    """An executable bash script; returns its path (for ``--command``)."""
    path = directory / name
    path.write_text("#!/usr/bin/env bash\n" + body)
    path.chmod(0o755)
    return str(path)


def process_gone(pid: int) -> bool:
    """True when ``pid`` no longer runs (a zombie nobody reaped counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return True
    return state in ("Z", "X")


def live_group_members(pgid: int) -> list[int]:
    """The processes of process group ``pgid`` that still run (zombies nobody reaped do not)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        state, group = fields[0], int(fields[2])
        if group == pgid and state not in ("Z", "X"):
            members.append(int(stat.parent.name))
    return members


def kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


class WorkerProcess:
    """``python -m odooops_action.worker ...`` with its log in a file."""

    def __init__(self, log_path: Path, args: list[str], env: dict[str, str]) -> None:
        self.log_path = log_path
        self._log = log_path.open("wb")
        base = {k: v for k, v in os.environ.items() if not k.startswith(("SUPABASE_", "DATABASE_URL"))}
        base["PYTHONPATH"] = str(REPO_ROOT)
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "odooops_action.worker", *args],
            cwd=REPO_ROOT,
            env={**base, **env},
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_log(self, needle: str, timeout: float = 10.0, count: int = 1) -> None:
        def seen() -> bool:
            if self.popen.poll() is not None and self.log().count(needle) < count:
                raise AssertionError(
                    f"worker exited ({self.popen.returncode}) before logging {needle!r}:\n{self.log()}"
                )
            return self.log().count(needle) >= count

        wait_until(seen, timeout, f"{needle!r} in the worker log")

    def signal(self, sig: signal.Signals) -> None:
        self.popen.send_signal(sig)

    def wait(self, timeout: float) -> int:
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"worker did not exit within {timeout}s:\n{self.log()}") from None

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait()
        self._log.close()


class WorkerFactory:
    """Starts workers against the test database; every worker is killed at the end of the test."""

    def __init__(self, tmp_path: Path, env: dict[str, str]) -> None:
        self._tmp_path = tmp_path
        self._env = env
        self.started: list[WorkerProcess] = []

    def __call__(self, *args: str, env: dict[str, str] | None = None) -> WorkerProcess:
        log_path = self._tmp_path / f"worker-{len(self.started) + 1}.log"
        worker = WorkerProcess(log_path, list(args), {**self._env, **(env or {})})
        self.started.append(worker)
        return worker

    def stop_all(self) -> None:
        for worker in self.started:
            worker.stop()
