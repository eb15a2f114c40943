"""The seed guide's end-to-end suite (test_e2e.sh: 12 scenarios, 14 checks), once per backend.

Each scenario is its own test: it replays the earlier steps on a fresh project of its own and
then checks its step. The CLI runs as a real process against the same backend (REST:
SUPABASE_URL + SUPABASE_SERVICE_ROLE_KEY; PostgreSQL: DATABASE_URL).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest

from odooops_action.models import Artifact, ClaimFilter, CreateRunRequest, NewArtifact, NewEvent, Run
from tests.lifecycle.helpers import RUN_ID_PATTERN, Backend, CliResult, new_sha, run_cli

IMAGE = "ghcr.io/org/repo:abc123d"
DIGEST = "sha256:" + "ab" * 32
WORKER = "worker-001"
LOG_EVENTS = [
    NewEvent(level="info", message="Starting build process"),
    NewEvent(level="debug", message="Layer 1/5 complete"),
    NewEvent(level="warn", message="Cache miss, building from scratch"),
]


@dataclass
class E2E:
    """The guide's steps, against one backend and one project."""

    backend: Backend
    project_id: str
    cwd: Path
    sha: str = field(default_factory=new_sha)
    run_id: str = ""

    @property
    def store(self) -> Any:
        return self.backend.store

    def cli(self, *args: str) -> CliResult:
        return run_cli(self.backend.cli_env, *args, cwd=self.cwd)

    def setup_project(self) -> None:  # 1
        self.backend.create_project(self.project_id)

    def setup_environment(self) -> None:  # 2
        self.backend.create_environment(self.project_id, "dev")

    def create_run(self) -> CliResult:  # 3
        created = self.cli("create", self.project_id, "build", "main", self.sha, "dev")
        self.run_id = created.stdout.strip()
        return created

    def create_run_quickly(self) -> None:
        """Step 3 through the store: replays skip the CLI's start-up time."""
        request = CreateRunRequest(
            project_id=self.project_id, workflow_type="build", git_ref="main", git_sha=self.sha
        )
        self.run_id = self.store.create_run(request).run.run_id

    def status(self) -> Run:  # 4
        return self.store.poll_run(self.run_id).run

    def claim(self) -> Run | None:  # 5
        return self.store.claim_next_run(WORKER, ClaimFilter(project_id=self.project_id))

    def log_events(self) -> int:  # 6
        return int(self.store.append_events(self.run_id, LOG_EVENTS))

    def start(self) -> Run:  # 7
        return self.store.start_run(self.run_id, WORKER).run

    def add_artifact(self) -> Artifact:  # 8
        artifact = NewArtifact(artifact_type="image", storage_path=IMAGE, digest=DIGEST, size_bytes=1234)
        return self.store.add_artifact(self.run_id, artifact)

    def succeed(self) -> Run:  # 9
        return self.store.finish_run(self.run_id, WORKER, "success", exit_code=0).run

    def replay(self, steps: int) -> None:
        """Scenarios 1..steps, each checked only as far as the next one needs."""
        actions = [
            self.setup_project,
            self.setup_environment,
            self.create_run_quickly,
            self.status,
            self.claim,
            self.log_events,
            self.start,
            self.add_artifact,
            self.succeed,
        ]
        for action in actions[:steps]:
            action()
        if steps >= 3:
            assert re.match(RUN_ID_PATTERN, self.run_id), self.run_id


@pytest.fixture
def e2e(backend: Backend, project_id: str, tmp_path: Path) -> E2E:
    return E2E(backend, project_id, tmp_path)


def test_01_project_setup(e2e: E2E, db: psycopg.Connection[Any]) -> None:
    e2e.setup_project()
    row = db.execute("SELECT name FROM ops.projects WHERE project_id = %s", (e2e.project_id,)).fetchone()
    assert row == (f"Lifecycle {e2e.project_id}",)


def test_02_environment_setup(e2e: E2E, db: psycopg.Connection[Any]) -> None:
    e2e.replay(1)
    e2e.setup_environment()
    rows = db.execute(
        "SELECT env_id FROM ops.environments WHERE project_id = %s", (e2e.project_id,)
    ).fetchall()
    assert rows == [("dev",)]


def test_03_create_prints_only_the_run_id(e2e: E2E) -> None:
    e2e.replay(2)
    created = e2e.create_run()
    assert created.returncode == 0, created.stderr
    assert re.fullmatch(r"run-\d{8}-\d{6}-" + e2e.sha[:7] + r"\n", created.stdout)


def test_04_new_run_is_queued(e2e: E2E) -> None:
    e2e.replay(3)
    run = e2e.status()
    assert (run.status, run.git_sha, run.git_ref, run.env_id) == ("queued", e2e.sha, "main", "dev")
    assert run.metadata["workflow_type"] == "build"


def test_05_worker_claims_the_run(e2e: E2E) -> None:
    e2e.replay(4)
    claimed = e2e.claim()
    assert claimed is not None
    assert (claimed.run_id, claimed.status, claimed.claimed_by) == (e2e.run_id, "claimed", WORKER)
    assert claimed.claimed_at is not None


def test_06_log_events_are_recorded_in_order(e2e: E2E) -> None:
    e2e.replay(5)
    last_seq = e2e.log_events()
    events = e2e.store.poll_run(e2e.run_id).events
    assert [(e.level, e.message) for e in events[-3:]] == [(e.level, e.message) for e in LOG_EVENTS]
    assert [e.seq for e in events] == list(range(1, last_seq + 1))


def test_07_run_marked_running(e2e: E2E) -> None:
    e2e.replay(6)
    running = e2e.start()
    assert running.status == "running"
    assert running.started_at is not None


def test_08_artifact_stored(e2e: E2E) -> None:
    e2e.replay(7)
    artifact = e2e.add_artifact()
    assert re.fullmatch(
        r"art-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", artifact.artifact_id
    )
    assert e2e.store.poll_run(e2e.run_id).artifacts == [artifact]


def test_09_run_marked_success(e2e: E2E) -> None:
    e2e.replay(8)
    finished = e2e.succeed()
    assert (finished.status, finished.exit_code) == ("success", 0)
    assert finished.finished_at is not None


def test_10_wait_returns_the_artifact_url(e2e: E2E) -> None:
    e2e.replay(9)
    waited = e2e.cli("wait", e2e.run_id, "30", "1")
    assert waited.returncode == 0, waited.stderr
    assert waited.stdout == IMAGE + "\n"
    lines = waited.stderr_lines
    assert lines[0] == f"Waiting for run {e2e.run_id} to complete (timeout: 30s)..."
    assert lines[-1] == f"Run completed successfully: {e2e.run_id}"
    for event in LOG_EVENTS:
        assert lines.count(f"[{event.level}] {event.message}") == 1


def test_11_destroy_cancels_a_queued_run(e2e: E2E) -> None:
    e2e.replay(2)
    e2e.create_run()
    destroyed = e2e.cli("destroy", e2e.run_id)
    assert (destroyed.returncode, destroyed.stdout) == (0, f"cancelled:{e2e.run_id}\n"), destroyed.stderr
    assert e2e.status().status == "cancelled"


def test_12_wait_detects_a_failed_run(e2e: E2E) -> None:
    e2e.replay(7)
    failed = e2e.store.finish_run(e2e.run_id, WORKER, "failed", exit_code=2, reason="docker build failed").run
    assert failed.status == "failed"
    waited = e2e.cli("wait", e2e.run_id, "30", "1")
    assert (waited.returncode, waited.stdout) == (1, "")
    last = waited.stderr_lines[-1]
    assert last.startswith(f"error: run {e2e.run_id} failed (exit code 2: docker build failed).")
    assert "ops.run_events" in last
