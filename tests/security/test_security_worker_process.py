"""Real worker processes with least-privilege credentials: a ``work`` token over REST, and a
login in ``odooops_worker`` over PostgreSQL. Each runs its own project's run, never another's."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from tests.devstack import DevStack
from tests.lifecycle.helpers import unique_id
from tests.security.conftest import Api, queued_run
from tests.worker.helpers import WorkerFactory, write_script


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[WorkerFactory]:
    factory = WorkerFactory(tmp_path, {})
    yield factory
    factory.stop_all()


def status(db: psycopg.Connection[Any], run_id: str) -> str:
    row = db.execute("SELECT status FROM ops.runs WHERE run_id = %s", (run_id,)).fetchone()
    assert row is not None
    return str(row[0])


def test_a_rest_worker_with_a_work_token_runs_only_its_projects_runs(
    *,
    devstack: DevStack,
    projects: tuple[str, str],
    token_for: Callable[..., str],
    service: Api,
    workers: WorkerFactory,
    db: psycopg.Connection[Any],
    tmp_path: Path,
) -> None:
    theirs = queued_run(service, projects[1])  # older: first in line for an unscoped worker
    mine = queued_run(service, projects[0])
    token = token_for(projects[0], ("work",))
    env = {
        "SUPABASE_URL": devstack.url,
        "SUPABASE_PUBLISHABLE_KEY": devstack.publishable_key,
        "ODOOOPS_TOKEN": token,
    }
    command = write_script(tmp_path, "build.sh", "echo building\n")
    worker = workers("--once", "--command", command, env=env)
    assert worker.wait(60) == 0, worker.log()
    assert (status(db, mine), status(db, theirs)) == ("success", "queued")
    assert token not in worker.log()


def test_a_worker_login_runs_only_its_projects_runs(
    *,
    devstack: DevStack,
    projects: tuple[str, str],
    service: Api,
    workers: WorkerFactory,
    db: psycopg.Connection[Any],
    tmp_path: Path,
) -> None:
    login = unique_id("host").replace("-", "_")
    db.execute(sql.SQL("CREATE ROLE {} LOGIN IN ROLE odooops_worker").format(sql.Identifier(login)))
    db.execute("INSERT INTO ops.worker_scopes (role_name, project_id) VALUES (%s, %s)", (login, projects[0]))
    try:
        theirs = queued_run(service, projects[1])
        mine = queued_run(service, projects[0])
        command = write_script(tmp_path, "build.sh", "echo building\n")
        worker = workers("--once", "--command", command, env={"DATABASE_URL": devstack.cluster.dsn(login)})
        assert worker.wait(60) == 0, worker.log()
        assert (status(db, mine), status(db, theirs)) == ("success", "queued")
    finally:
        db.execute("DELETE FROM ops.worker_scopes WHERE role_name = %s", (login,))
        db.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(login)))
        db.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(login)))
