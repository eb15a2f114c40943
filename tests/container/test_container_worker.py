"""The worker from the same image: ``docker run --entrypoint odooops IMAGE worker ...`` over REST.

A real command runs each run: a build that succeeds, a deploy that runs until it is cancelled,
and a test run still going when the container gets SIGTERM (``docker stop``): the worker stops
gracefully within its grace periods (and within Docker's), finishes that run as failed naming the
signal, and exits 0 — not killed by Docker's SIGKILL.
"""

from __future__ import annotations

import json
import subprocess
import time
from typing import Any

import psycopg
import pytest

from tests.action.action_harness import run_row, wait_until
from tests.container.engine import Engine
from tests.container.runner import INSTANCE_LABEL
from tests.container.session import record

pytestmark = pytest.mark.slow

# build: log a line, register an artifact, succeed. Anything else: run until stopped.
COMMAND = (
    'sh -c \'echo "worker build of $ODOOOPS_WORKFLOW_TYPE $1 in $(hostname)"; '
    'if [ "$ODOOOPS_WORKFLOW_TYPE" = build ]; then '
    'echo "{\\"artifact_type\\": \\"image\\", \\"storage_path\\": \\"registry.example/shop:$1\\"}" '
    '>> "$ODOOOPS_ARTIFACTS_FILE"; exit 0; fi; '
    "exec sleep 600' rehearsal"
)
DOCKER_STOP_GRACE = 20  # docker stop --time: SIGTERM, then SIGKILL after this many seconds
SHUTDOWN_GRACE = 2
KILL_GRACE = 2


def queue(db: psycopg.Connection[Any], project: str, workflow_type: str) -> str:
    row = db.execute(
        "select ops.create_run(%s, %s, 'main', %s, 'dev') ->> 'run'", (project, workflow_type, "ab" * 20)
    ).fetchone()
    assert row is not None
    return str(json.loads(row[0])["run_id"])


def events_of(db: psycopg.Connection[Any], run_id: str) -> list[str]:
    rows = db.execute("select message from ops.run_events where run_id = %s order by seq", (run_id,))
    return [str(message) for (message,) in rows.fetchall()]


def test_worker_runs_cancels_and_stops_gracefully_in_the_image(
    *,
    engine: Engine,
    image: str,
    rest_url: str,
    service_key: str,
    project: str,
    db: psycopg.Connection[Any],
) -> None:
    name = f"odooops-worker-{project}"
    command = engine.command(
        "run", "--rm", "--name", name, "--label", INSTANCE_LABEL, "--network", "host",
        "-e", "SUPABASE_URL", "-e", "SUPABASE_SERVICE_ROLE_KEY",
        "--entrypoint", "odooops", image,
        "worker", "--store", "rest", "--project", project, "--worker-name", "rehearsal",
        "--poll-interval", "0.5", "--cancel-check-interval", "0.5", "--heartbeat-interval", "2",
        "--shutdown-grace", str(SHUTDOWN_GRACE), "--kill-grace", str(KILL_GRACE), "--command", COMMAND,
    )  # fmt: skip
    env = {**engine.client_env, "SUPABASE_URL": rest_url, "SUPABASE_SERVICE_ROLE_KEY": service_key}
    worker = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        # 1. A build runs to success, with its log line and artifact.
        build = queue(db, project, "build")
        wait_until(lambda: run_row(db, build)["status"] == "success", timeout=120)
        assert any(f"worker build of build {build}" in line for line in events_of(db, build))
        artifacts = db.execute(
            "select storage_path from ops.artifacts where run_id = %s", (build,)
        ).fetchall()
        assert artifacts == [(f"registry.example/shop:{build}",)]

        # 2. A deploy runs until it is cancelled; the worker stops its command and goes on.
        deploy = queue(db, project, "deploy")
        wait_until(lambda: run_row(db, deploy)["status"] == "running", timeout=60)
        db.execute("select ops.cancel_run(%s, 'rehearsal cancel', 'tests')", (deploy,))
        wait_until(lambda: any("Stopping the command" in line for line in events_of(db, deploy)), timeout=30)
        assert run_row(db, deploy)["status"] == "cancelled"
        assert worker.poll() is None, "the worker must keep going after a cancel"

        # 3. SIGTERM to the container while a run is going: graceful stop, exit 0, no SIGKILL.
        test_run = queue(db, project, "test")
        wait_until(lambda: run_row(db, test_run)["status"] == "running", timeout=60)
        started = time.monotonic()
        engine.must("stop", "--time", str(DOCKER_STOP_GRACE), name, timeout=120)
        stop_took = time.monotonic() - started
        exit_code = worker.wait(60)
    finally:
        if worker.poll() is None:
            engine.docker("rm", "--force", name, timeout=60)
            worker.wait(30)
    log = worker.stdout.read() if worker.stdout else ""

    assert exit_code == 0, log  # 137 would mean Docker had to SIGKILL it
    row = run_row(db, test_run)
    assert row["status"] == "failed"
    assert "SIGTERM" in (row["status_reason"] or ""), row
    record("worker_docker_stop_seconds", round(stop_took, 2))
