"""Row-level security and grants: public keys can do nothing with the queue; service keys can."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from psycopg import sql

from odooops_action.models import Run
from odooops_action.store.pg import PgStore
from tests.devstack import DevStack
from tests.lifecycle.helpers import new_sha, rest_headers, run_cli, run_in_status

PUBLIC_KEYS = ("anon", "publishable")
SERVICE_KEYS = ("service_role", "secret")
TABLES = ("projects", "environments", "runs", "run_events", "artifacts")


def key_of(stack: DevStack, kind: str) -> str:
    return {
        "anon": stack.anon_key,
        "publishable": stack.publishable_key,
        "service_role": stack.service_role_key,
        "secret": stack.secret_key,
    }[kind]


def rpc(stack: DevStack, key: str, function: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{stack.url}/rest/v1/rpc/{function}", json=body, headers=rest_headers(key))


def create_body(project: str) -> dict[str, Any]:
    return {"project_id": project, "workflow_type": "build", "git_ref": "main", "git_sha": new_sha()}


@pytest.fixture
def active_run(pg_store: PgStore, project: str) -> Run:
    return run_in_status(pg_store, project, "running")


def assert_refused(response: httpx.Response) -> None:
    assert response.status_code in (401, 403), response.text
    assert "run_id" not in response.text


@pytest.mark.parametrize("kind", PUBLIC_KEYS)
def test_public_keys_cannot_create_runs(
    kind: str, devstack: DevStack, db: psycopg.Connection[Any], project: str
) -> None:
    assert_refused(rpc(devstack, key_of(devstack, kind), "create_run", create_body(project)))
    assert db.execute("SELECT count(*) FROM ops.runs WHERE project_id = %s", (project,)).fetchone() == (0,)


@pytest.mark.parametrize("kind", PUBLIC_KEYS)
def test_public_keys_cannot_cancel_or_poll_runs(
    kind: str, devstack: DevStack, pg_store: PgStore, active_run: Run
) -> None:
    key = key_of(devstack, kind)
    assert_refused(rpc(devstack, key, "cancel_run", {"run_id": active_run.run_id}))
    assert_refused(rpc(devstack, key, "poll_run", {"run_id": active_run.run_id}))
    assert pg_store.poll_run(active_run.run_id).run.status == "running"


@pytest.mark.parametrize("kind", PUBLIC_KEYS)
@pytest.mark.parametrize("table", TABLES)
def test_public_keys_read_no_rows(kind: str, table: str, devstack: DevStack, active_run: Run) -> None:
    response = httpx.get(f"{devstack.url}/rest/v1/{table}", headers=rest_headers(key_of(devstack, kind)))
    assert_refused(response)


@pytest.mark.parametrize("kind", PUBLIC_KEYS)
def test_public_keys_cannot_write_tables(
    kind: str, devstack: DevStack, active_run: Run, pg_store: PgStore
) -> None:
    headers = rest_headers(key_of(devstack, kind))
    patched = httpx.patch(
        f"{devstack.url}/rest/v1/runs",
        params={"run_id": f"eq.{active_run.run_id}"},
        json={"status": "cancelled"},
        headers=headers,
    )
    assert_refused(patched)
    inserted = httpx.post(
        f"{devstack.url}/rest/v1/projects", json={"project_id": "intruder"}, headers=headers
    )
    assert_refused(inserted)
    assert pg_store.poll_run(active_run.run_id).run.status == "running"


def execute_as(db: psycopg.Connection[Any], role: str, statement: str) -> None:
    with db.transaction():
        db.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(role)))
        db.execute(statement)


@pytest.mark.parametrize("role", ["anon", "authenticated"])
def test_database_roles_without_grants_see_nothing(
    role: str, db: psycopg.Connection[Any], active_run: Run
) -> None:
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        execute_as(db, role, "SELECT count(*) FROM ops.runs")


@pytest.mark.parametrize("role", ["anon", "authenticated"])
def test_database_roles_without_a_token_are_refused_by_the_operations(
    role: str, db: psycopg.Connection[Any], active_run: Run
) -> None:
    with pytest.raises(psycopg.Error) as refused:
        execute_as(db, role, f"SELECT ops.poll_run('{active_run.run_id}')")
    assert refused.value.sqlstate == "PT401"
    assert "no OdooOps token" in str(refused.value)


@pytest.mark.parametrize("kind", SERVICE_KEYS)
def test_service_keys_can_create_read_and_cancel(kind: str, devstack: DevStack, project: str) -> None:
    key = key_of(devstack, kind)
    created = rpc(devstack, key, "create_run", create_body(project))
    assert created.status_code == 200, created.text
    run_id = created.json()["run"]["run_id"]
    listed = httpx.get(
        f"{devstack.url}/rest/v1/runs",
        params={"run_id": f"eq.{run_id}", "select": "status"},
        headers=rest_headers(key),
    )
    assert (listed.status_code, listed.json()) == (200, [{"status": "queued"}])
    cancelled = rpc(devstack, key, "cancel_run", {"run_id": run_id})
    assert (cancelled.status_code, cancelled.json()["outcome"]) == (200, "cancelled")


@pytest.mark.parametrize("variable", ["SUPABASE_SERVICE_ROLE_KEY", "SUPABASE_SECRET_KEY"])
@pytest.mark.parametrize("kind", PUBLIC_KEYS)
def test_the_cli_refuses_a_public_key_before_any_request(
    variable: str, kind: str, devstack: DevStack, tmp_path: Path
) -> None:
    devstack.server.clear_requests()
    env = {"SUPABASE_URL": devstack.url, variable: key_of(devstack, kind)}
    result = run_cli(env, "create", "p", "build", "main", new_sha(), cwd=tmp_path)
    assert result.returncode == 2
    assert len(result.stderr_lines) == 1
    assert result.stderr.startswith(f"error: {variable} holds ")
    assert devstack.server.requests == []
