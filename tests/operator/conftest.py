"""Fixtures of the operator-command tests: the CLI over REST and over PostgreSQL, and a project
with runs in known states (made through the ops functions, as a worker would)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from odooops_action.models import ClaimFilter, CreateRunRequest, NewArtifact, NewEvent
from odooops_action.store.base import RunStore
from odooops_action.store.pg import PgStore
from tests.devstack import DevStack
from tests.lifecycle.helpers import CliResult, new_sha, run_cli, unique_id


@dataclass
class Cli:
    """``odooops`` as a process with one transport's connection variables."""

    transport: str
    env: dict[str, str]
    cwd: Path

    def __call__(self, *args: str, timeout: float = 120) -> CliResult:
        return run_cli(self.env, *args, cwd=self.cwd, timeout=timeout)


def connection_env(devstack: DevStack, transport: str) -> dict[str, str]:
    if transport == "rest":
        return {
            "SUPABASE_URL": devstack.url,
            "SUPABASE_SERVICE_ROLE_KEY": devstack.service_role_key,
            "SUPABASE_ANON_KEY": devstack.anon_key,
        }
    return {"DATABASE_URL": devstack.database_url}


@pytest.fixture(params=["rest", "postgres"])
def cli(request: pytest.FixtureRequest, devstack: DevStack, tmp_path: Path) -> Cli:
    return Cli(request.param, connection_env(devstack, request.param), tmp_path)


@pytest.fixture
def store(pg_dsn: str) -> Iterator[RunStore]:
    with PgStore(pg_dsn) as pg:
        yield pg


@dataclass
class Runs:
    project_id: str
    success: str
    failed: str
    queued: str
    running: str


def make_runs(store: RunStore, db: psycopg.Connection[Any]) -> Runs:
    """A project with env dev holding one run of each interesting status, queued in this order."""
    project = unique_id("op")
    db.execute("INSERT INTO ops.projects (project_id) VALUES (%s)", (project,))
    db.execute("INSERT INTO ops.environments (project_id, env_id) VALUES (%s, 'dev')", (project,))
    worker = unique_id("op-worker")

    def queue(workflow_type: str = "build") -> str:
        request = CreateRunRequest(
            project_id=project,
            workflow_type=workflow_type,
            git_ref="main",
            git_sha=new_sha(),
            metadata={"k": 1},
        )  # type: ignore[arg-type]
        return store.create_run(request).run.run_id

    def claim_and_start(run_id: str) -> None:
        claimed = store.claim_next_run(worker, ClaimFilter(project_id=project))
        assert claimed is not None
        assert claimed.run_id == run_id
        store.start_run(run_id, worker)

    success = queue()
    claim_and_start(success)
    store.append_events(
        success,
        [
            NewEvent(level="debug", message="debug line"),
            NewEvent(level="info", message="info line"),
            NewEvent(level="warn", message="warn line"),
            NewEvent(level="error", message="::error::not a workflow command\x1b[31m"),
        ],
    )
    store.add_artifact(success, NewArtifact(artifact_type="image", storage_path="ghcr.io/o/r:abc1234"))
    store.finish_run(success, worker, "success", exit_code=0)
    failed = queue("deploy")
    claim_and_start(failed)
    store.finish_run(failed, worker, "failed", exit_code=3, reason="the command exited with code 3")
    running = queue("test")
    claim_and_start(running)
    queued = queue()
    return Runs(project, success, failed, queued, running)


@pytest.fixture
def runs(store: RunStore, db: psycopg.Connection[Any]) -> Iterator[Runs]:
    made = make_runs(store, db)
    yield made
    db.execute("DELETE FROM ops.projects WHERE project_id = %s", (made.project_id,))
