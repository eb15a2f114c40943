"""Upgrading a live queue to 20261202000000_exactly_once: data intact, previous clients unaffected.

A stack of its own starts with only the released migration; runs, events and artifacts are
written the previous version's way; then the new migration is applied as ``supabase db push``
would. Everything written before must read the same, and every call a previous Action, CLI or
worker makes (same function names, same argument sets, over REST and over SQL) must still work
and give the answer shape it expects.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from psycopg.rows import dict_row

from odooops_action.config import ConnectionSettings
from odooops_action.models import ClaimFilter, CreateRunRequest, NewEvent
from odooops_action.store.rest import RestStore
from tests.devstack import DevStack
from tests.devstack.postgres import DEFAULT_MIGRATIONS_DIR, apply_migration
from tests.lifecycle.helpers import new_sha, rest_headers

RELEASED = "20261201000000_ops_schema_core.sql"
THIS = "20261202000000_exactly_once.sql"
PROJECT = "upgrade-demo"
OLD_WORKER = "worker-v0"
SNAPSHOT = {
    "runs": "SELECT run_id, project_id, env_id, workflow_type, git_sha, git_ref, status, claimed_by,"
    " queued_at, claimed_at, started_at, finished_at, heartbeat_at, attempt, exit_code, status_reason,"
    " created_by, idempotency_key, event_seq, metadata FROM ops.runs ORDER BY run_id",
    "events": "SELECT event_id, run_id, seq, level, message, payload, created_at FROM ops.run_events"
    " ORDER BY run_id, seq",
    "artifacts": "SELECT artifact_id, run_id, artifact_type, storage_path, digest, size_bytes, metadata,"
    " created_at FROM ops.artifacts ORDER BY artifact_id",
}

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def old_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    released_only = tmp_path_factory.mktemp("released-migrations")
    shutil.copy(DEFAULT_MIGRATIONS_DIR / RELEASED, released_only / RELEASED)
    with DevStack(migrations_dir=released_only) as stack:
        yield stack


def sql(stack: DevStack) -> psycopg.Connection[dict[str, Any]]:
    return psycopg.connect(stack.database_url, autocommit=True, row_factory=dict_row)


def old_rpc(stack: DevStack, function: str, body: dict[str, Any]) -> Any:
    """A call exactly as the previous RestStore sent it (its argument set, no repeat keys)."""
    response = httpx.post(
        f"{stack.url}/rest/v1/rpc/{function}", json=body, headers=rest_headers(stack.service_role_key)
    )
    assert response.status_code == 200, response.text
    return response.json()


def write_the_old_way(conn: psycopg.Connection[dict[str, Any]]) -> str:
    """A finished run with events and an artifact, a queued one, a cancelled one; positional SQL."""
    conn.execute("INSERT INTO ops.projects (project_id) VALUES (%s)", (PROJECT,))
    conn.execute("INSERT INTO ops.environments (project_id, env_id) VALUES (%s, 'dev')", (PROJECT,))
    create = "SELECT ops.create_run(%s, 'build', 'main', %s, 'dev', 'ci', %s, '{}'::jsonb) AS r"
    done = conn.execute(create, (PROJECT, new_sha(), "old-key-1")).fetchone()
    assert done is not None
    run_id = done["r"]["run"]["run_id"]
    conn.execute("SELECT * FROM ops.claim_next_run(%s, %s)", (OLD_WORKER, PROJECT))
    conn.execute("SELECT ops.start_run(%s, %s)", (run_id, OLD_WORKER))
    conn.execute("SELECT ops.append_events(%s, %s::jsonb)", (run_id, '[{"message": "compiling"}]'))
    conn.execute(
        "SELECT ops.add_artifact(%s, 'image', 'ghcr.io/acme/odoo:1', NULL, 12, '{}'::jsonb)", (run_id,)
    )
    conn.execute("SELECT ops.finish_run(%s, %s, 'success', 0, NULL)", (run_id, OLD_WORKER))
    conn.execute(create, (PROJECT, new_sha(), "old-key-2"))
    cancelled = conn.execute(create, (PROJECT, new_sha(), None)).fetchone()
    assert cancelled is not None
    conn.execute("SELECT ops.cancel_run(%s, 'no longer needed', 'alice')", (cancelled["r"]["run"]["run_id"],))
    return run_id


def snapshot(conn: psycopg.Connection[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    return {name: conn.execute(query).fetchall() for name, query in SNAPSHOT.items()}


@dataclass(frozen=True)
class Upgrade:
    stack: DevStack
    before: dict[str, list[dict[str, Any]]]
    after: dict[str, list[dict[str, Any]]]  # read right after the migration (tests run in any order)
    new_columns_set: int
    finished: str


@pytest.fixture(scope="module")
def upgraded(old_stack: DevStack) -> Upgrade:
    with sql(old_stack) as conn:
        finished = write_the_old_way(conn)
        before = snapshot(conn)
        apply_migration(conn, DEFAULT_MIGRATIONS_DIR / THIS)
        after = snapshot(conn)
        row = conn.execute(
            "SELECT count(*) AS n FROM ops.runs"
            " WHERE create_request_key IS NOT NULL OR cancel_request_key IS NOT NULL"
        ).fetchone()
    old_stack.server.reload_schema()  # what NOTIFY pgrst does, without waiting for it
    assert row is not None
    return Upgrade(old_stack, before, after, row["n"], finished)


def test_the_data_written_before_reads_the_same_after(upgraded: Upgrade) -> None:
    assert upgraded.after == upgraded.before
    assert len(upgraded.before["runs"]) == 3
    events = [e["message"] for e in upgraded.before["events"] if e["run_id"] == upgraded.finished]
    assert events.count("compiling") == 1
    assert len(upgraded.before["artifacts"]) == 1
    assert upgraded.new_columns_set == 0


def test_the_previous_worker_and_action_calls_work_over_rest(
    upgraded: Upgrade,
) -> None:
    stack = upgraded.stack
    body = {
        "project_id": PROJECT,
        "workflow_type": "deploy",
        "git_ref": "main",
        "git_sha": new_sha(),
        "env_id": "dev",
        "created_by": "old-action",
        "idempotency_key": "old-rest-key",
        "metadata": {},
    }
    created = old_rpc(stack, "create_run", body)
    assert created["created"] is True
    assert old_rpc(stack, "create_run", body)["created"] is False  # the old client's retry: existing
    claim = {"worker_id": OLD_WORKER, "project_id": PROJECT, "env_id": None, "workflow_type": "deploy"}
    claimed = old_rpc(stack, "claim_next_run", claim)
    assert [row["run_id"] for row in claimed] == [created["run"]["run_id"]]
    run_id = created["run"]["run_id"]
    held = {"run_id": run_id, "worker_id": OLD_WORKER}
    assert old_rpc(stack, "start_run", held)["status"] == "running"  # a row, as before
    assert old_rpc(stack, "heartbeat_run", held)["status"] == "running"
    last = old_rpc(stack, "append_events", {"run_id": run_id, "events": [{"message": "deploying"}]})
    assert isinstance(last, int)
    artifact = {
        "run_id": run_id,
        "artifact_type": "logs",
        "storage_path": "s3://logs/1",
        "digest": None,
        "size_bytes": None,
        "metadata": {},
    }
    assert old_rpc(stack, "add_artifact", artifact)["storage_path"] == "s3://logs/1"
    finish = {**held, "status": "success", "exit_code": 0, "reason": None}
    assert old_rpc(stack, "finish_run", finish)["status"] == "success"
    assert old_rpc(stack, "finish_run", finish)["status"] == "success"  # its retry, as before
    poll = old_rpc(stack, "poll_run", {"run_id": run_id, "after_seq": 0, "max_events": 1000})
    assert [e["message"] for e in poll["events"]].count("deploying") == 1
    queued = old_rpc(stack, "create_run", {**body, "idempotency_key": "old-rest-key-2"})["run"]["run_id"]
    cancel = {"run_id": queued, "reason": "stop", "cancelled_by": "old-action"}
    assert old_rpc(stack, "cancel_run", cancel)["outcome"] == "cancelled"
    assert old_rpc(stack, "cancel_run", cancel)["outcome"] == "already_cancelled"


def test_the_previous_calls_work_over_sql_positionally(
    upgraded: Upgrade,
) -> None:
    stack = upgraded.stack
    with sql(stack) as conn:
        created = conn.execute(
            "SELECT ops.create_run(%s, 'test', 'main', %s, 'dev', 'psql', 'old-sql-key', '{}'::jsonb) AS r",
            (PROJECT, new_sha()),
        ).fetchone()
        assert created is not None
        assert created["r"]["created"] is True
        run_id = created["r"]["run"]["run_id"]
        claimed = conn.execute(
            "SELECT run_id FROM ops.claim_next_run(%s, %s, NULL, 'test')", (OLD_WORKER, PROJECT)
        ).fetchall()
        assert claimed == [{"run_id": run_id}]
        row = conn.execute("SELECT (ops.start_run(%s, %s)).status", (run_id, OLD_WORKER)).fetchone()
        assert row == {"status": "running"}
        conn.execute('SELECT ops.append_events(%s, \'[{"message": "x"}]\'::jsonb)', (run_id,))
        conn.execute("SELECT ops.add_artifact(%s, 'sbom', 's3://sbom', NULL, NULL, '{}'::jsonb)", (run_id,))
        row = conn.execute(
            "SELECT (ops.finish_run(%s, %s, 'failed', 2, 'x')).status", (run_id, OLD_WORKER)
        ).fetchone()
        assert row == {"status": "failed"}


def test_the_new_client_works_on_the_upgraded_queue(
    upgraded: Upgrade,
) -> None:
    stack = upgraded.stack
    settings = ConnectionSettings(supabase_url=stack.url, supabase_key=stack.service_role_key)
    only_builds = ClaimFilter(project_id=PROJECT, workflow_type="build")
    with RestStore(settings) as store:
        created = store.create_run(
            CreateRunRequest(project_id=PROJECT, workflow_type="build", git_ref="main", git_sha=new_sha())
        )
        # First the build queued before the upgrade (by the previous version), then the new one.
        claimed = [store.claim_next_run("worker-v1", only_builds) for _ in range(2)]
        assert [run.idempotency_key if run else None for run in claimed] == [
            "old-key-2",
            created.run.idempotency_key,
        ]
        for run in claimed:
            assert run is not None
            assert store.start_run(run.run_id, "worker-v1", attempt=run.attempt).outcome == "started"
            store.append_events(run.run_id, [NewEvent(message="new way")], attempt=run.attempt)
            done = store.finish_run(run.run_id, "worker-v1", "success", exit_code=0, attempt=run.attempt)
            assert (done.outcome, done.run.status) == ("finished", "success")


def test_the_migration_leaves_one_signature_per_function(
    upgraded: Upgrade,
) -> None:
    stack = upgraded.stack
    with sql(stack) as conn:
        overloaded = conn.execute(
            "SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
            " WHERE n.nspname = 'ops' GROUP BY p.proname HAVING count(*) > 1"
        ).fetchall()
    assert overloaded == []  # PostgREST would answer PGRST203 for any of them


def test_the_released_migration_file_is_unchanged() -> None:
    # Append-only: the upgrade above starts from the file as released.
    released = (Path(DEFAULT_MIGRATIONS_DIR) / RELEASED).read_text()
    assert "create function ops.create_run(" in released
    assert "request_key" not in released
