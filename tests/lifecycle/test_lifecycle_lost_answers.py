"""Answers lost after the database committed (the REST stand-in drops the connection or answers
520 once the call was applied): the client sends the call again, nothing is applied twice, and
what the CLI says is true."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from odooops_action.models import ClaimFilter, NewArtifact, NewEvent
from odooops_action.store.rest import RestStore
from tests.devstack import DevStack, Fault, FaultPlan
from tests.lifecycle.helpers import new_sha, queue_run, rest_store, run_cli

AFTER_COMMIT = {
    "dropped": lambda path: Fault.drop(path=path, after=True),
    "520": lambda path: Fault.gateway_error(path=path, after=True),
    "503": lambda path: Fault.unavailable(retry_after=0, path=path, after=True),
}


@pytest.fixture
def faults(devstack: DevStack) -> Iterator[FaultPlan]:
    plan = devstack.server.faults
    plan.clear()
    yield plan
    plan.clear()


@pytest.fixture
def rest(devstack: DevStack) -> Iterator[RestStore]:
    store = rest_store(devstack.url, devstack.service_role_key)
    yield store
    store.close()


def rest_env(devstack: DevStack) -> dict[str, str]:
    return {"SUPABASE_URL": devstack.url, "SUPABASE_SERVICE_ROLE_KEY": devstack.service_role_key}


def runs_of(db: psycopg.Connection[Any], project: str) -> list[tuple[str, str]]:
    rows = db.execute("SELECT run_id, status FROM ops.runs WHERE project_id = %s", (project,)).fetchall()
    return [(run_id, status) for run_id, status in rows]


@pytest.mark.parametrize("fault", list(AFTER_COMMIT))
def test_create_whose_answer_was_lost_queues_one_run_and_says_it_queued_it(
    devstack: DevStack,
    faults: FaultPlan,
    project: str,
    *,
    db: psycopg.Connection[Any],
    tmp_path: Path,
    fault: str,
) -> None:
    faults.push(AFTER_COMMIT[fault](r"/rpc/create_run$"))

    result = run_cli(rest_env(devstack), "create", project, "build", "main", new_sha(), cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    assert faults.pending() == []  # the answer was lost once
    assert runs_of(db, project) == [(result.stdout.strip(), "queued")]
    assert "already exists" not in result.stderr


def test_a_second_invocation_with_the_same_key_is_told_the_run_exists(
    devstack: DevStack, faults: FaultPlan, project: str, db: psycopg.Connection[Any], tmp_path: Path
) -> None:
    sha = new_sha()
    faults.push(Fault.drop(path=r"/rpc/create_run$", after=True))
    first = run_cli(
        rest_env(devstack), "create", project, "build", "main", sha, "--idempotency-key", "k1", cwd=tmp_path
    )
    second = run_cli(
        rest_env(devstack), "create", project, "build", "main", sha, "--idempotency-key", "k1", cwd=tmp_path
    )

    assert (first.returncode, second.returncode) == (0, 0)
    assert first.stdout == second.stdout
    assert "already exists" not in first.stderr
    assert f"Run {second.stdout.strip()} already exists for idempotency key 'k1'" in second.stderr
    assert len(runs_of(db, project)) == 1


@pytest.mark.parametrize("fault", list(AFTER_COMMIT))
def test_destroy_whose_answer_was_lost_says_it_cancelled_the_run(
    devstack: DevStack, faults: FaultPlan, project: str, *, rest: RestStore, tmp_path: Path, fault: str
) -> None:
    run = queue_run(rest, project)
    faults.push(AFTER_COMMIT[fault](r"/rpc/cancel_run$"))

    result = run_cli(rest_env(devstack), "destroy", run.run_id, cwd=tmp_path)

    assert (result.returncode, result.stdout) == (0, f"cancelled:{run.run_id}\n")
    assert faults.pending() == []
    assert result.stderr_lines[-1] == f"Run {run.run_id} cancelled."


@pytest.mark.parametrize("fault", list(AFTER_COMMIT))
def test_a_claim_whose_answer_was_lost_returns_the_same_run_in_the_same_attempt(
    faults: FaultPlan, project: str, rest: RestStore, db: psycopg.Connection[Any], fault: str
) -> None:
    first = queue_run(rest, project)
    second = queue_run(rest, project)
    faults.push(AFTER_COMMIT[fault](r"/rpc/claim_next_run$"))

    claimed = rest.claim_next_run("worker-lost", ClaimFilter(project_id=project))

    assert claimed is not None
    assert (claimed.run_id, claimed.attempt) == (first.run_id, 1)
    assert sorted(runs_of(db, project)) == sorted([(first.run_id, "claimed"), (second.run_id, "queued")])


@pytest.mark.parametrize("fault", list(AFTER_COMMIT))
def test_appends_and_artifacts_whose_answers_were_lost_are_stored_once(
    faults: FaultPlan, project: str, rest: RestStore, db: psycopg.Connection[Any], fault: str
) -> None:
    queue_run(rest, project)
    run = rest.claim_next_run("worker-lost", ClaimFilter(project_id=project))
    assert run is not None
    faults.push(AFTER_COMMIT[fault](r"/rpc/append_events$"), AFTER_COMMIT[fault](r"/rpc/add_artifact$"))

    seq = rest.append_events(
        run.run_id, [NewEvent(message=f"line {i}") for i in range(3)], attempt=run.attempt
    )
    artifact = rest.add_artifact(
        run.run_id, NewArtifact(artifact_type="image", storage_path="ghcr.io/a/b:1"), attempt=run.attempt
    )

    assert faults.pending() == []
    messages = [
        m for (m,) in db.execute("SELECT message FROM ops.run_events WHERE run_id = %s", (run.run_id,))
    ]
    assert [m for m in messages if m.startswith("line ")] == ["line 0", "line 1", "line 2"]
    last = db.execute("SELECT max(seq) FROM ops.run_events WHERE run_id = %s", (run.run_id,)).fetchone()
    assert last == (seq,)
    stored = db.execute("SELECT artifact_id FROM ops.artifacts WHERE run_id = %s", (run.run_id,)).fetchall()
    assert stored == [(artifact.artifact_id,)]


def test_a_create_that_stays_unanswered_says_the_run_may_be_queued_and_how_to_get_it(
    devstack: DevStack, faults: FaultPlan, project: str, db: psycopg.Connection[Any], tmp_path: Path
) -> None:
    sha = new_sha()
    faults.push(Fault.unavailable(retry_after=0, path=r"/rpc/create_run$", after=True, times=None))

    result = run_cli(rest_env(devstack), "create", project, "build", "main", sha, cwd=tmp_path)

    faults.clear()
    assert (result.returncode, result.stdout) == (1, "")
    error = result.stderr_lines[-1]
    assert error.startswith("error: Supabase at ")
    assert "failed 4 time(s) (last: HTTP 503 PGRST002). The run may have been queued before that" in error
    ((run_id, key),) = db.execute(
        "SELECT run_id, idempotency_key FROM ops.runs WHERE project_id = %s", (project,)
    ).fetchall()
    assert f"again with --idempotency-key {key} to get it" in error
    assert f"WHERE idempotency_key = '{key}';" in error
    # Doing what it says gets the run that was queued, not a second one.
    again = run_cli(
        rest_env(devstack), "create", project, "build", "main", sha, "--idempotency-key", key, cwd=tmp_path
    )
    assert (again.returncode, again.stdout) == (0, f"{run_id}\n")
    assert len(runs_of(db, project)) == 1
