"""The odooops_worker role on a direct connection: the worker's operations and nothing else."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

from odooops_action.errors import AuthError
from odooops_action.models import ClaimFilter, NewArtifact, NewEvent
from odooops_action.store.pg import PgStore
from tests.devstack import DevStack
from tests.lifecycle.helpers import unique_id
from tests.security.conftest import Api, queued_run


def login_dsn(devstack: DevStack, role: str) -> str:
    return devstack.cluster.dsn(role)


@pytest.fixture
def worker_login(db: psycopg.Connection[Any], projects: tuple[str, str]) -> Iterator[str]:
    """A login role in odooops_worker, limited to project A by ops.worker_scopes."""
    role = unique_id("worker").replace("-", "_")
    db.execute(sql.SQL("CREATE ROLE {} LOGIN IN ROLE odooops_worker").format(sql.Identifier(role)))
    db.execute("INSERT INTO ops.worker_scopes (role_name, project_id) VALUES (%s, %s)", (role, projects[0]))
    yield role
    db.execute("DELETE FROM ops.worker_scopes WHERE role_name = %s", (role,))
    db.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


@pytest.fixture
def worker_db(devstack: DevStack, worker_login: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(login_dsn(devstack, worker_login), autocommit=True) as conn:
        yield conn


def test_the_worker_role_has_no_table_privilege_anywhere(
    db: psycopg.Connection[Any], worker_login: str
) -> None:
    granted = db.execute(
        "SELECT c.oid::regclass::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE c.relkind IN ('r', 'v', 'm', 'p', 'f', 'S')"
        "   AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%%'"
        "   AND (has_table_privilege(%(r)s, c.oid,"
        "                            'SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER')"
        "        OR (c.relkind = 'S' AND has_sequence_privilege(%(r)s, c.oid, 'USAGE, SELECT, UPDATE')))",
        {"r": worker_login},
    ).fetchall()
    assert granted == []
    attributes = db.execute(
        "SELECT rolsuper, rolbypassrls, rolcreaterole, rolcreatedb FROM pg_roles"
        " WHERE rolname IN (%s, 'odooops_worker')",
        (worker_login,),
    ).fetchall()
    assert attributes == [(False, False, False, False)] * 2


@pytest.mark.parametrize(
    "statement",
    [
        "SELECT count(*) FROM ops.runs",
        "SELECT count(*) FROM ops.api_tokens",
        "SELECT count(*) FROM ops_private.operations",
        "CREATE TABLE public.worker_was_here (x int)",
        "CREATE TABLE ops.worker_was_here (x int)",
        "SELECT ops.create_run('x', 'build', 'main', repeat('a', 40))",
        "SELECT ops.cancel_run('run-20260101-000000-0000000')",
        "SELECT ops.create_api_token('x', array['read'])",
        "SELECT ops.raise_error('PT400', 'x')",
        "SELECT ops_private.claim_next_run('w')",
    ],
)
def test_the_worker_role_touches_nothing_else(statement: str, worker_db: psycopg.Connection[Any]) -> None:
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        worker_db.execute(statement)


def test_a_scoped_worker_cannot_claim_another_projects_run(
    devstack: DevStack,
    worker_login: str,
    projects: tuple[str, str],
    service: Api,
    db: psycopg.Connection[Any],
) -> None:
    theirs = queued_run(service, projects[1])
    with PgStore(login_dsn(devstack, worker_login)) as store:
        assert store.claim_next_run("w-a") is None
        with pytest.raises(
            AuthError, match=f"may work only on project\\(s\\) {projects[0]}, not {projects[1]}"
        ):
            store.claim_next_run("w-a", ClaimFilter(project_id=projects[1]))
        with pytest.raises(Exception, match=f"run {theirs} not found"):
            store.heartbeat_run(theirs, "w-a")
    assert db.execute("SELECT status FROM ops.runs WHERE run_id = %s", (theirs,)).fetchone() == ("queued",)


def test_a_scoped_worker_runs_its_projects_runs_end_to_end(
    devstack: DevStack, worker_login: str, projects: tuple[str, str], service: Api
) -> None:
    mine = queued_run(service, projects[0])
    with PgStore(login_dsn(devstack, worker_login)) as store:
        claimed = store.claim_next_run("w-a")
        assert claimed is not None
        assert claimed.run_id == mine
        store.start_run(mine, "w-a")
        store.append_events(mine, [NewEvent(level="info", message="building")])
        store.add_artifact(mine, NewArtifact(artifact_type="logs", storage_path="s3://logs/1"))
        store.heartbeat_run(mine, "w-a")
        finished = store.finish_run(mine, "w-a", "success", exit_code=0)
        assert finished.run.status == "success"
        polled = store.poll_run(mine)
    assert "building" in [event.message for event in polled.events]
    assert polled.run.status == "success"
    assert [artifact.storage_path for artifact in polled.artifacts] == ["s3://logs/1"]


def test_a_scoped_worker_recovers_only_its_projects_runs(
    devstack: DevStack,
    worker_login: str,
    projects: tuple[str, str],
    service: Api,
    db: psycopg.Connection[Any],
) -> None:
    stalled = {}
    for project in projects:
        run_id = queued_run(service, project)
        claimed = service.rpc("claim_next_run", {"worker_id": "gone", "project_id": project})
        assert claimed.json()[0]["run_id"] == run_id
        db.execute(
            "UPDATE ops.runs SET heartbeat_at = now() - interval '1 hour' WHERE run_id = %s", (run_id,)
        )
        stalled[project] = run_id
    with PgStore(login_dsn(devstack, worker_login)) as store:
        recovered = store.recover_stalled_runs(lease_seconds=60, max_attempts=3)
    assert [run.run_id for run in recovered] == [stalled[projects[0]]]
    status = db.execute("SELECT status FROM ops.runs WHERE run_id = %s", (stalled[projects[1]],)).fetchone()
    assert status == ("claimed",)
    # Leave nothing stalled for other tests' recoveries.
    service.rpc("cancel_run", {"run_id": stalled[projects[1]]})


def test_set_role_does_not_widen_a_scoped_worker(
    worker_db: psycopg.Connection[Any], projects: tuple[str, str], service: Api
) -> None:
    theirs = queued_run(service, projects[1])
    worker_db.execute("SET ROLE odooops_worker")
    rows = worker_db.execute("SELECT run_id FROM ops.claim_next_run('w-a')").fetchall()
    assert theirs not in [row[0] for row in rows]
