"""Helpers of the lifecycle suite: the CLI as a subprocess, backends, runs brought to a status."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg

from odooops_action.config import ConnectionSettings
from odooops_action.models import ClaimFilter, CreateRunRequest, NewEvent, Run
from odooops_action.store.base import RunStore
from odooops_action.store.pg import PgStore
from odooops_action.store.rest import RestStore
from tests.devstack import DevStack

REPO_ROOT = Path(__file__).resolve().parents[2]
CONNECTION_VARIABLES = (
    "SUPABASE_URL",
    "SUPABASE_SERVICE_ROLE_KEY",
    "SUPABASE_SECRET_KEY",
    "SUPABASE_KEY",
    "SUPABASE_ANON_KEY",
    "DATABASE_URL",
)
RUN_ID_PATTERN = r"^run-\d{8}-\d{6}-[0-9a-f]{7}(-[1-9]\d{0,3})?$"
# "token": REST as anon (the publishable key) with a scoped token of the test's project that may
# create, read, cancel and work, as CI and a REST worker would together.
BACKENDS = ("rest", "postgres", "token")
TOKEN_SCOPES = ("create", "read", "cancel", "work")


def new_sha() -> str:
    return secrets.token_hex(20)


def unique_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(5)}"


def rest_headers(key: str) -> dict[str, str]:
    headers = {"apikey": key, "Content-Profile": "ops", "Accept-Profile": "ops"}
    if key.count(".") == 2:
        headers["Authorization"] = f"Bearer {key}"
    return headers


def rest_store(url: str, key: str) -> RestStore:
    return RestStore(ConnectionSettings(supabase_url=url, supabase_key=key))


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str

    @property
    def stderr_lines(self) -> list[str]:
        return self.stderr.splitlines()


def cli_environment(connection: Mapping[str, str]) -> dict[str, str]:
    """The test process's environment without any connection variable, plus ``connection``."""
    env = {name: value for name, value in os.environ.items() if name not in CONNECTION_VARIABLES}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env.update(connection)
    return env


def cli_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "odooops_action", *args]


def run_cli(connection: Mapping[str, str], *args: str, cwd: Path, timeout: float = 60) -> CliResult:
    """``odooops <args>`` as a real process, in ``cwd`` (so no stray ``.env`` is read)."""
    done = subprocess.run(
        cli_command(*args),
        env=cli_environment(connection),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return CliResult(done.returncode, done.stdout, done.stderr)


def mint_token(
    database_url: str, project_id: str, scopes: tuple[str, ...] = TOKEN_SCOPES, **limits: Any
) -> str:
    """A scoped token of ``project_id``, created by the owner (``ops.create_api_token``)."""
    arguments = {"env_ids": None, "workflow_types": None, "expires_at": None, "note": "test", **limits}
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT ops.create_api_token(%(project)s, %(scopes)s, %(env_ids)s, %(workflow_types)s,"
            " %(expires_at)s, %(note)s)",
            {"project": project_id, "scopes": list(scopes), **arguments},
        ).fetchone()
    assert row is not None
    return str(row[0]["token"])


def token_store(url: str, public_key: str, token: str) -> RestStore:
    return RestStore(ConnectionSettings(supabase_url=url, supabase_key=public_key, token=token))


class Backend:
    """One way to reach the queue: its store, the CLI's environment and how projects are set up.

    With ``token`` the store and the CLI are made at first use, with a token minted for
    ``project_id`` (registered then if the test has not registered it itself).
    """

    def __init__(self, name: str, stack: DevStack, project_id: str) -> None:
        self.name = name
        self.stack = stack
        self.project_id = project_id
        self._store: RunStore | None = None
        self._cli_env: dict[str, str] | None = None

    @property
    def store(self) -> RunStore:
        if self._store is None:
            if self.name == "rest":
                self._store = rest_store(self.stack.url, self.stack.service_role_key)
            elif self.name == "postgres":
                self._store = PgStore(self.stack.database_url)
            else:
                self._store = token_store(self.stack.url, self.stack.publishable_key, self._token())
        return self._store

    @property
    def cli_env(self) -> dict[str, str]:
        if self._cli_env is None:
            if self.name == "rest":
                self._cli_env = {
                    "SUPABASE_URL": self.stack.url,
                    "SUPABASE_SERVICE_ROLE_KEY": self.stack.service_role_key,
                }
            elif self.name == "postgres":
                self._cli_env = {"DATABASE_URL": self.stack.database_url}
            else:
                self._cli_env = {
                    "SUPABASE_URL": self.stack.url,
                    "SUPABASE_PUBLISHABLE_KEY": self.stack.publishable_key,
                    "ODOOOPS_TOKEN": self._token(),
                }
        return self._cli_env

    def close(self) -> None:
        if self._store is not None:
            self._store.close()

    _minted: str | None = None

    def _token(self) -> str:
        if self._minted is None:
            with psycopg.connect(self.stack.database_url, autocommit=True) as conn:
                conn.execute(
                    "INSERT INTO ops.projects (project_id, name) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                    (self.project_id, f"Lifecycle {self.project_id}"),
                )
            self._minted = mint_token(self.stack.database_url, self.project_id)
        return self._minted

    def create_project(self, project_id: str) -> None:
        if self.name == "rest":
            self._rest_insert("projects", {"project_id": project_id, "name": f"Lifecycle {project_id}"})
        else:
            with psycopg.connect(self.stack.database_url, autocommit=True) as conn:
                conn.execute(
                    "INSERT INTO ops.projects (project_id, name) VALUES (%s, %s)",
                    (project_id, f"Lifecycle {project_id}"),
                )

    def create_environment(self, project_id: str, env_id: str) -> None:
        if self.name == "rest":
            self._rest_insert("environments", {"project_id": project_id, "env_id": env_id})
        else:
            with psycopg.connect(self.stack.database_url, autocommit=True) as conn:
                conn.execute(
                    "INSERT INTO ops.environments (project_id, env_id) VALUES (%s, %s)", (project_id, env_id)
                )

    def _rest_insert(self, table: str, row: dict[str, Any]) -> None:
        response = httpx.post(
            f"{self.stack.url}/rest/v1/{table}",
            json=row,
            headers={**rest_headers(self.stack.service_role_key), "Prefer": "return=representation"},
        )
        assert response.status_code == 201, response.text
        assert response.json()[0] == response.json()[0] | row


def queue_run(store: RunStore, project: str, *, sha: str | None = None, workflow: str = "build") -> Run:
    request = CreateRunRequest(
        project_id=project, workflow_type=workflow, git_ref="main", git_sha=sha or new_sha(), env_id="dev"
    )
    created = store.create_run(request)
    assert created.created
    return created.run


def run_in_status(store: RunStore, project: str, status: str, worker: str = "worker-lc") -> Run:
    """A fresh run of ``project`` brought to ``status`` through the queue's functions."""
    run = queue_run(store, project)
    if status == "queued":
        return run
    if status == "cancelled":
        return store.cancel_run(run.run_id, reason="test").run
    claimed = store.claim_next_run(worker, ClaimFilter(project_id=project))
    assert claimed is not None
    assert claimed.run_id == run.run_id, "another queued run of the project was claimed"
    if status == "claimed":
        return claimed
    running = store.start_run(run.run_id, worker, attempt=claimed.attempt).run
    if status == "running":
        return running
    assert status in ("success", "failed")
    return store.finish_run(
        run.run_id, worker, status, exit_code=0 if status == "success" else 3, attempt=claimed.attempt
    ).run


def log_lines(count: int, prefix: str) -> list[NewEvent]:
    return [NewEvent(level="info", message=f"{prefix} {index:05d}") for index in range(count)]
