"""``odooops doctor`` on a stack of its own: nothing on a healthy deployment, each seeded problem
found with its cause and fix, over REST and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.devstack import DevStack
from tests.lifecycle.helpers import new_sha
from tests.operator.conftest import Cli, connection_env

# Whole stacks of their own and processes waiting out retries: not the fast tier.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def stack() -> Iterator[DevStack]:
    with DevStack() as own:
        yield own


@pytest.fixture
def sql(stack: DevStack) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(stack.database_url, autocommit=True) as conn:
        yield conn
        conn.execute("DELETE FROM ops.projects")
        conn.execute("DELETE FROM ops.workers")


@pytest.fixture(params=["rest", "postgres"])
def doctor(request: pytest.FixtureRequest, stack: DevStack, tmp_path: Path) -> Cli:
    return Cli(request.param, connection_env(stack, request.param), tmp_path)


def live_worker(sql: psycopg.Connection[Any], name: str = "worker-a", filters: str = "{}") -> None:
    sql.execute("SELECT ops.worker_beat(%s, filters => %s::jsonb)", (name, filters))


def findings(cli: Cli, *args: str) -> tuple[int, list[dict[str, Any]]]:
    done = cli("doctor", "--json", *args)
    assert done.stderr == ""
    return done.returncode, json.loads(done.stdout)["findings"]


def problems(found: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [f for f in found if f["severity"] == "problem"]


def test_a_healthy_stack_has_no_finding(doctor: Cli, sql: psycopg.Connection[Any]) -> None:
    live_worker(sql)
    code, found = findings(doctor)
    assert code == 0
    assert problems(found) == []
    checks = {f["check"] for f in found}
    assert {"reachable", "exposed", "migrations", "functions", "workers", "queue", "stalled"} <= checks
    human = doctor("doctor")
    assert human.returncode == 0
    assert human.stdout.rstrip().endswith("no problems, 0 warning(s).")


def test_no_worker(doctor: Cli, sql: psycopg.Connection[Any]) -> None:
    code, found = findings(doctor)
    assert code == 1
    [problem] = problems(found)
    assert problem["check"] == "workers"
    assert "no live worker" in problem["summary"]
    assert problem["cause"]
    assert "odooops worker" in problem["fix"]


def test_a_stopped_worker_is_not_live(doctor: Cli, sql: psycopg.Connection[Any]) -> None:
    sql.execute("SELECT ops.worker_beat('worker-gone', 'stopped')")
    code, found = findings(doctor)
    assert code == 1
    assert "worker-gone stopped" in problems(found)[0]["summary"]


def queue_run(sql: psycopg.Connection[Any], project: str) -> str:
    sql.execute("SELECT ops.create_project(%s)", (project,))
    sql.execute("SELECT ops.create_environment(%s, 'dev')", (project,))
    row = sql.execute(
        "SELECT ops.create_run(%s, 'deploy', 'main', %s) -> 'run' ->> 'run_id'", (project, new_sha())
    ).fetchone()
    assert row is not None
    return str(row[0])


def test_queued_runs_no_live_worker_may_claim(doctor: Cli, sql: psycopg.Connection[Any]) -> None:
    live_worker(sql, filters='{"project_id": "other"}')
    queue_run(sql, "shop")
    code, found = findings(doctor)
    assert code == 1
    [problem] = problems(found)
    assert problem["check"] == "queue"
    assert problem["summary"].startswith("1 run(s) queued for shop/dev/deploy, oldest queued ")
    assert "--project shop --env dev --workflow-type deploy" in problem["fix"]
    live_worker(sql, "worker-any")
    code, found = findings(doctor)
    assert code == 0


def test_a_run_stalled_past_its_lease(doctor: Cli, sql: psycopg.Connection[Any]) -> None:
    live_worker(sql)
    run_id = queue_run(sql, "shop")
    sql.execute("SELECT ops.claim_next_run('worker-crashed', 'shop')")
    sql.execute(
        "UPDATE ops.runs SET heartbeat_at = now() - interval '10 minutes' WHERE run_id = %s", (run_id,)
    )
    code, found = findings(doctor)
    assert code == 1
    [problem] = problems(found)
    assert problem["check"] == "stalled"
    assert problem["summary"].startswith(
        f"run {run_id} is claimed on worker-crashed with no heartbeat since "
    )
    assert f"odooops destroy {run_id}" in problem["fix"]
    assert findings(doctor, "--lease", "3600")[0] == 0  # within a longer lease it is not stalled


def test_an_overloaded_function(doctor: Cli, sql: psycopg.Connection[Any], stack: DevStack) -> None:
    live_worker(sql)
    sql.execute(
        "CREATE FUNCTION ops.poll_run(run_id text) RETURNS jsonb LANGUAGE sql AS $$ SELECT '{}'::jsonb $$"
    )
    sql.execute("NOTIFY pgrst, 'reload schema'")
    try:
        code, found = findings(doctor)
        assert code == 1
        [problem] = problems(found)
        assert problem["check"] == "overloaded"
        assert "ops.poll_run exists 2 times" in problem["summary"]
        assert "PGRST203" in problem["cause"]
        assert "DROP FUNCTION ops.poll_run" in problem["fix"]
    finally:
        sql.execute("DROP FUNCTION ops.poll_run(text)")
        sql.execute("NOTIFY pgrst, 'reload schema'")


def test_an_old_migration(doctor: Cli, sql: psycopg.Connection[Any]) -> None:
    live_worker(sql)
    newest = sql.execute("SELECT max(version) FROM supabase_migrations.schema_migrations").fetchone()
    assert newest is not None
    saved = sql.execute(
        "DELETE FROM supabase_migrations.schema_migrations WHERE version >= '20261202020000' RETURNING *"
    ).fetchall()
    try:
        code, found = findings(doctor)
        assert code == 1
        [problem] = problems(found)
        assert problem["check"] == "migrations"
        assert "this client needs 20261202020000" in problem["summary"]
        assert "supabase db push" in problem["fix"]
    finally:
        for row in saved:
            sql.execute("INSERT INTO supabase_migrations.schema_migrations VALUES (%s, %s, %s)", row)


def test_a_grant_too_many(doctor: Cli, sql: psycopg.Connection[Any]) -> None:
    live_worker(sql)
    sql.execute("GRANT SELECT ON ops.runs TO anon")
    try:
        code, found = findings(doctor)
        assert code == 1
        assert [p["summary"] for p in problems(found)] == ["anon has SELECT on table ops.runs"]
    finally:
        sql.execute("REVOKE SELECT ON ops.runs FROM anon")


def test_schema_not_exposed(stack: DevStack, sql: psycopg.Connection[Any], tmp_path: Path) -> None:
    with stack.new_server(["public"]).start() as hidden:
        env = connection_env(stack, "rest") | {"SUPABASE_URL": hidden.url}
        code, found = findings(Cli("rest", env, tmp_path))
    assert code == 1
    [problem] = problems(found)
    assert problem["check"] == "exposed"
    assert "PGRST106" in problem["summary"]
    assert "Exposed schemas" in problem["fix"]


def test_the_anon_key(stack: DevStack, tmp_path: Path) -> None:
    env = {"SUPABASE_URL": stack.url, "SUPABASE_SERVICE_ROLE_KEY": stack.anon_key}
    code, found = findings(Cli("rest", env, tmp_path))
    assert code == 1
    assert found[0]["check"] == "key"
    assert found[0]["summary"] == "SUPABASE_SERVICE_ROLE_KEY: a key of role anon"
    assert "service_role" in found[0]["fix"]


def test_an_unreachable_url(tmp_path: Path) -> None:
    env = {"SUPABASE_URL": "http://127.0.0.1:9", "SUPABASE_SERVICE_ROLE_KEY": "sb_secret_abcdefghijklmnop"}
    code, found = findings(Cli("rest", env, tmp_path))
    assert code == 1
    assert found[0]["summary"].startswith("SUPABASE_SERVICE_ROLE_KEY: a secret key")
    [problem] = problems(found)
    assert problem["check"] == "reachable"
    assert "127.0.0.1:9" in problem["cause"]


def test_workers_with_none_registered(doctor: Cli, sql: psycopg.Connection[Any]) -> None:
    done = doctor("workers")
    assert done.returncode == 0
    assert done.stdout == "No worker seen in the last 1 d.\n"
    assert json.loads(doctor("workers", "--json").stdout) == {"workers": []}
