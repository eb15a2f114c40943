"""What a user sees when something is wrong: one ``error:`` line on stderr and a known exit code."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from odooops_action.models import NewArtifact
from odooops_action.store.pg import PgStore
from tests.devstack import DevStack, RestServer, role_jwt
from tests.lifecycle.helpers import (
    Backend,
    CliResult,
    cli_command,
    cli_environment,
    new_sha,
    run_cli,
    run_in_status,
    unique_id,
)

MISSING_RUN = "run-20000101-000000-0000000"


def error_lines(result: CliResult) -> list[str]:
    return [line for line in result.stderr_lines if line.startswith("error:")]


def only_error(result: CliResult) -> str:
    """The single ``error:`` line, checked to be the last thing printed."""
    errors = error_lines(result)
    assert len(errors) == 1, result.stderr
    assert result.stderr_lines[-1] == errors[0]
    return errors[0]


def test_missing_supabase_url(tmp_path: Path) -> None:
    result = run_cli({}, "wait", MISSING_RUN, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr_lines == [
        "error: SUPABASE_URL is not set: export SUPABASE_URL=https://<project>.supabase.co "
        "(or set DATABASE_URL for a direct PostgreSQL connection)."
    ]


def test_settings_come_from_a_dotenv_file(devstack: DevStack, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(
        f"SUPABASE_URL={devstack.url}\nSUPABASE_SERVICE_ROLE_KEY={devstack.service_role_key}\n"
    )
    result = run_cli({}, "destroy", MISSING_RUN, cwd=tmp_path)
    assert result.returncode == 1
    assert only_error(result).startswith(f"error: run {MISSING_RUN} not found")


def test_missing_service_key(devstack: DevStack, tmp_path: Path) -> None:
    result = run_cli({"SUPABASE_URL": devstack.url}, "destroy", MISSING_RUN, cwd=tmp_path)
    assert result.returncode == 2
    assert only_error(result).startswith("error: SUPABASE_SERVICE_ROLE_KEY is not set: export ")


def test_key_with_a_bad_signature(devstack: DevStack, tmp_path: Path) -> None:
    forged = role_jwt("service_role", "not-the-project-secret-" + "x" * 20)
    env = {"SUPABASE_URL": devstack.url, "SUPABASE_SERVICE_ROLE_KEY": forged}
    result = run_cli(env, "wait", MISSING_RUN, cwd=tmp_path)
    assert result.returncode == 1
    line = only_error(result)
    # The gateway checks the apikey header before PostgREST sees the JWT.
    assert line.startswith("error: Supabase refused the API key (HTTP 401: Invalid API key)")
    assert line.endswith("in SUPABASE_SERVICE_ROLE_KEY.")
    assert forged not in result.stderr


@pytest.fixture
def public_only_server(devstack: DevStack) -> Iterator[RestServer]:
    server = devstack.new_server(["public"]).start()
    yield server
    server.stop()


def test_schema_ops_not_exposed(public_only_server: RestServer, devstack: DevStack, tmp_path: Path) -> None:
    env = {"SUPABASE_URL": public_only_server.url, "SUPABASE_SERVICE_ROLE_KEY": devstack.service_role_key}
    result = run_cli(env, "destroy", MISSING_RUN, cwd=tmp_path)
    assert result.returncode == 1
    line = only_error(result)
    assert line.startswith("error: Schema ops is not exposed by the Supabase Data API (HTTP 406 PGRST106)")
    assert '"Exposed schemas"' in line


@pytest.fixture
def unmigrated_database(devstack: DevStack, db: psycopg.Connection[Any]) -> Iterator[str]:
    """A database of the same cluster where the migration never ran (only an empty schema ops)."""
    name = unique_id("lc_nomig").replace("-", "_")
    db.execute(f"CREATE DATABASE {name}")
    dsn = devstack.cluster.dsn().rsplit("/", 1)[0] + f"/{name}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA ops; GRANT USAGE ON SCHEMA ops TO service_role")
    yield name
    db.execute(f"DROP DATABASE {name} WITH (FORCE)")


def test_migration_missing_over_rest(unmigrated_database: str, devstack: DevStack, tmp_path: Path) -> None:
    authenticator = devstack.cluster.dsn("authenticator").rsplit("/", 1)[0] + f"/{unmigrated_database}"
    with RestServer(authenticator, db_schemas=["public", "ops"], keys=devstack.keys) as server:
        env = {"SUPABASE_URL": server.url, "SUPABASE_SERVICE_ROLE_KEY": devstack.service_role_key}
        result = run_cli(env, "wait", MISSING_RUN, cwd=tmp_path)
    assert result.returncode == 1
    line = only_error(result)
    assert line.startswith("error: The database lacks function ops.poll_run (HTTP 404 PGRST202")
    assert "supabase db push" in line


def test_migration_missing_over_postgres(
    unmigrated_database: str, devstack: DevStack, tmp_path: Path
) -> None:
    dsn = devstack.cluster.dsn().rsplit("/", 1)[0] + f"/{unmigrated_database}"
    result = run_cli({"DATABASE_URL": dsn}, "destroy", MISSING_RUN, cwd=tmp_path)
    assert result.returncode == 1
    line = only_error(result)
    # The same error as over REST (test above), in the words of a direct connection.
    assert line.startswith("error: The database lacks function ops.cancel_run (SQLSTATE 42883")
    assert "apply the migrations in supabase/migrations" in line


@pytest.mark.parametrize("command", ["wait", "destroy"])
def test_run_not_found(command: str, backend: Backend, tmp_path: Path) -> None:
    result = run_cli(backend.cli_env, command, MISSING_RUN, cwd=tmp_path)
    assert (result.returncode, result.stdout) == (1, "")
    assert only_error(result).startswith(f"error: run {MISSING_RUN} not found")


@pytest.mark.parametrize("status", ["success", "failed"])
def test_destroying_a_finished_run_is_refused(
    status: str, backend: Backend, project: str, tmp_path: Path
) -> None:
    run = run_in_status(backend.store, project, status)
    result = run_cli(backend.cli_env, "destroy", run.run_id, cwd=tmp_path)
    assert (result.returncode, result.stdout) == (1, "")
    line = only_error(result)
    assert line.startswith(f"error: run {run.run_id} already finished as {status} at ")
    assert line.endswith(
        "a finished run cannot be cancelled. Nothing is left to stop; queue a new run to run it again."
    )


def test_destroying_a_cancelled_run_again_succeeds_and_says_so(
    backend: Backend, project: str, tmp_path: Path
) -> None:
    run = run_in_status(backend.store, project, "cancelled")
    result = run_cli(backend.cli_env, "destroy", run.run_id, cwd=tmp_path)
    assert (result.returncode, result.stdout) == (0, f"cancelled:{run.run_id}\n")
    assert result.stderr_lines[-1].startswith(f"Run {run.run_id} was already cancelled at ")


def test_creating_for_an_unknown_project(backend: Backend, tmp_path: Path) -> None:
    project = unique_id("nowhere")
    result = run_cli(backend.cli_env, "create", project, "build", "main", new_sha(), cwd=tmp_path)
    assert (result.returncode, result.stdout) == (1, "")
    if backend.name == "token":  # a token is bound to its own project, and says so
        assert only_error(result).startswith("error: OdooOps token tok-")
        assert f"is for project {backend.project_id}, not {project}." in only_error(result)
    else:
        assert only_error(result).startswith(f"error: project {project} not found in ops.projects")


def test_idempotent_create_prints_the_existing_run(backend: Backend, project: str, tmp_path: Path) -> None:
    args = ("create", project, "deploy", "main", new_sha(), "prod", "--idempotency-key", unique_id("key"))
    first = run_cli(backend.cli_env, *args, cwd=tmp_path)
    again = run_cli(backend.cli_env, *args, cwd=tmp_path)
    assert (first.returncode, again.returncode) == (0, 0)
    assert again.stdout == first.stdout
    assert "no new run was queued" in again.stderr


def test_wait_times_out_and_can_cancel(
    backend: Backend, project: str, pg_store: PgStore, tmp_path: Path
) -> None:
    run = run_in_status(pg_store, project, "running")
    started = time.monotonic()
    result = run_cli(backend.cli_env, "wait", run.run_id, "1.5", "0.3", "--cancel-on-timeout", cwd=tmp_path)
    assert time.monotonic() - started >= 1.5  # the whole timeout was waited
    assert (result.returncode, result.stdout) == (1, "")
    assert f"Cancelled run {run.run_id} after the timeout (cancelled)." in result.stderr_lines
    assert only_error(result).startswith(
        f"error: timed out after 1.5s waiting for run {run.run_id} (last status: running)."
    )
    assert pg_store.poll_run(run.run_id).run.status == "cancelled"


def test_wait_reports_a_cancelled_run(backend: Backend, project: str, tmp_path: Path) -> None:
    run = run_in_status(backend.store, project, "cancelled")
    result = run_cli(backend.cli_env, "wait", run.run_id, "10", "1", cwd=tmp_path)
    assert (result.returncode, result.stdout) == (1, "")
    assert only_error(result).startswith(f"error: run {run.run_id} was cancelled (by ")


def test_wait_succeeds_with_success_when_there_is_no_artifact(
    backend: Backend, project: str, tmp_path: Path
) -> None:
    run = run_in_status(backend.store, project, "success")
    result = run_cli(backend.cli_env, "wait", run.run_id, cwd=tmp_path)
    assert (result.returncode, result.stdout) == (0, "success\n")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_the_wait_at_once(
    signum: signal.Signals, devstack: DevStack, project: str, pg_store: PgStore, tmp_path: Path
) -> None:
    run = run_in_status(pg_store, project, "running")
    env = cli_environment({"DATABASE_URL": devstack.database_url})
    with subprocess.Popen(
        cli_command("wait", run.run_id, "600", "30"), env=env, cwd=tmp_path, stderr=subprocess.PIPE, text=True
    ) as waiting:
        assert waiting.stderr is not None
        assert waiting.stderr.readline().startswith("Waiting for run")
        events = []  # the run's events so far come first, then the status they led to
        while not (line := waiting.stderr.readline()).startswith("Status: ") and line:
            events.append(line)
        assert line == "Status: running - waiting...\n"
        assert any("Run started on worker" in event for event in events)
        sent = time.monotonic()
        waiting.send_signal(signum)
        returncode = waiting.wait(timeout=10)
        rest = waiting.stderr.read()
    assert time.monotonic() - sent < 30 / 2  # ended by the signal, not after the 30 s sleep
    assert returncode == 128 + signum
    assert f"error: interrupted by {signum.name} while waiting for run {run.run_id} (status running)." in rest
    assert pg_store.poll_run(run.run_id).run.status == "running"


@pytest.mark.parametrize(
    "case",
    [(["sbom", "logs"], "s3://bucket/sbom-0.json"), (["sbom", "image", "image"], "ghcr.io/org/repo:image-1")],
    ids=["no image", "first image"],
)
def test_wait_prints_the_first_image_else_the_first_artifact(
    case: tuple[list[str], str], devstack: DevStack, project: str, pg_store: PgStore, tmp_path: Path
) -> None:
    kinds, printed = case
    run = run_in_status(pg_store, project, "running")
    for index, kind in enumerate(kinds):
        path = f"ghcr.io/org/repo:image-{index}" if kind == "image" else f"s3://bucket/{kind}-{index}.json"
        pg_store.add_artifact(run.run_id, NewArtifact(artifact_type=kind, storage_path=path))
    pg_store.finish_run(run.run_id, "worker-lc", "success", exit_code=0)
    result = run_cli({"DATABASE_URL": devstack.database_url}, "wait", run.run_id, cwd=tmp_path)
    assert (result.returncode, result.stdout) == (0, printed + "\n")
