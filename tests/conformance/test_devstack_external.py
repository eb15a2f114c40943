"""``DevStack(database_url=...)``: the stack on a PostgreSQL someone else runs (CI's service container).

The "external" server is the session's cluster, with a database created for each test, or a
cluster of the test's own that only lets ``authenticator`` in with a password, as a service
container does.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest
from psycopg import sql

from tests.devstack import DevStack, PostgresCluster
from tests.devstack.postgres import DEFAULT_MIGRATIONS_DIR, migration_files

MIGRATIONS = [path.name for path in migration_files(DEFAULT_MIGRATIONS_DIR)]


def with_database(url: str, database: str) -> str:
    return url.rsplit("/", 1)[0] + f"/{database}"


@pytest.fixture
def external_url(pg_dsn: str) -> Iterator[str]:
    """Superuser URL of a fresh database on the session's server, dropped after the test."""
    name = f"devstack_external_{secrets.token_hex(4)}"
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield with_database(pg_dsn, name)
    finally:
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def ops_client(stack: DevStack) -> httpx.Client:
    key = stack.service_role_key
    headers = {
        "apikey": key,
        "Authorization": f"Bearer {key}",
        "Accept-Profile": "ops",
        "Content-Profile": "ops",
    }
    return httpx.Client(base_url=stack.rest_url, headers=headers, timeout=10)


def queue_and_poll_a_run(stack: DevStack, project_id: str) -> dict[str, Any]:
    with ops_client(stack) as api:
        api.post("/projects", json={"project_id": project_id, "name": project_id}).raise_for_status()
        api.post("/environments", json={"project_id": project_id, "env_id": "dev"}).raise_for_status()
        created = api.post(
            "/rpc/create_run",
            json={"project_id": project_id, "workflow_type": "build", "git_ref": "main", "git_sha": "a" * 40},
        )
        created.raise_for_status()
        run_id = created.json()["run"]["run_id"]
        polled = api.post("/rpc/poll_run", json={"run_id": run_id})
        polled.raise_for_status()
        result: dict[str, Any] = polled.json()
        return result


def rows(url: str, statement: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(statement, params or None).fetchall()


def test_the_stack_migrates_an_external_database_and_answers_rpcs(
    external_url: str, devstack: DevStack
) -> None:
    with DevStack(database_url=external_url) as stack:
        assert stack.database_url == external_url
        assert stack.database.applied_migrations == MIGRATIONS
        polled = queue_and_poll_a_run(stack, "external-one")
    run = polled["run"]
    assert run["status"] == "queued"
    assert [event["seq"] for event in polled["events"]] == [1]

    # The run lives in the external database, not in the session stack's own.
    query = "SELECT status FROM ops.runs WHERE run_id = %s"
    assert rows(external_url, query, run["run_id"]) == [("queued",)]
    assert rows(devstack.database_url, query, run["run_id"]) == []
    # Stopping the stack left the server, the database and the migration in place.
    assert rows(external_url, "SELECT count(*) FROM supabase_migrations.schema_migrations") == [
        (len(MIGRATIONS),)
    ]
    assert devstack.cluster.running


def test_a_second_stack_on_the_same_database_applies_nothing_again(external_url: str) -> None:
    with DevStack(database_url=external_url) as first:
        first_run = queue_and_poll_a_run(first, "external-two")["run"]["run_id"]
    with DevStack(database_url=external_url) as second:
        assert second.database.applied_migrations == []
        with ops_client(second) as api:
            response = api.post("/rpc/poll_run", json={"run_id": first_run})
    assert response.status_code == 200
    assert response.json()["run"]["run_id"] == first_run


def test_an_external_stack_has_no_cluster_to_restart(external_url: str) -> None:
    stack = DevStack(database_url=external_url)
    with pytest.raises(RuntimeError, match="external database"):
        _ = stack.cluster


def test_a_url_that_is_not_postgresql_is_refused() -> None:
    with pytest.raises(ValueError, match="postgresql://"):
        DevStack(database_url="mysql://root@127.0.0.1/db")


def test_authenticator_is_created_with_a_password_when_the_server_asks_for_one() -> None:
    # Like a service container: password auth for authenticator, which does not exist yet.
    with PostgresCluster(None) as server:
        with server.connect() as conn:
            conn.execute("DROP ROLE authenticator")
        hba = server.data_dir / "pg_hba.conf"
        hba.write_text("host all authenticator 127.0.0.1/32 scram-sha-256\n" + hba.read_text())
        with server.connect() as conn:
            conn.execute("SELECT pg_reload_conf()")
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(server.dsn("authenticator"), connect_timeout=5).close()

        with DevStack(database_url=server.superuser_dsn) as stack:
            polled = queue_and_poll_a_run(stack, "external-password")
        assert polled["run"]["status"] == "queued"
        assert rows(
            server.superuser_dsn,
            "SELECT rolcanlogin, rolpassword LIKE 'SCRAM-SHA-256$%%' FROM pg_authid WHERE rolname = %s",
            "authenticator",
        ) == [(True, True)]
        assert server.running
