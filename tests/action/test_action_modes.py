"""Every mode, run as the runner runs the container's entry point, against the local stack."""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest
from action_harness import FakeWorker, Workspace, load_manifest, queue_run, run_row

from tests.devstack import DevStack, Fault
from tests.devstack.keys import mint_jwt

DECLARED_OUTPUTS = set(load_manifest()["outputs"])


def create_inputs(connection: dict[str, str], project: str, **more: str) -> dict[str, str]:
    return {**connection, "mode": "create", "project_id": project, "workflow_type": "build", **more}


def assert_outputs_declared(outputs: dict[str, str]) -> None:
    assert set(outputs) <= DECLARED_OUTPUTS, set(outputs) - DECLARED_OUTPUTS


def test_create_queues_a_run_and_sets_outputs(
    workspace: Workspace, connection: dict[str, str], project: str, db: psycopg.Connection[Any]
) -> None:
    result = workspace.run(create_inputs(connection, project))

    assert result.exit_code == 0, result.stdout + result.stderr
    run_id = result.outputs["run_id"]
    row = run_row(db, run_id)
    # The defaults came from the github context: ref_name and sha.
    assert (row["project_id"], row["git_ref"], row["git_sha"]) == (project, "main", workspace.github.sha)
    assert row["status"] == "queued"
    assert row["created_by"].startswith("octocat via GitHub Actions in acme/shop run 9900001")
    assert row["idempotency_key"].startswith("gha-")
    assert result.outputs["status"] == "queued"
    assert result.outputs["outcome"] == "queued"
    assert result.outputs["artifacts"] == "[]"
    assert result.state["run_id"] == run_id
    assert "should_cancel" not in result.state  # nothing followed: nothing to cancel on abort
    assert run_id in result.summary
    notices = result.annotations("notice")
    assert len(notices) == 1
    assert run_id in notices[0].data
    assert_outputs_declared(result.outputs)


def test_create_whose_first_answer_was_lost_reports_queued(
    workspace: Workspace,
    connection: dict[str, str],
    project: str,
    db: psycopg.Connection[Any],
    devstack: DevStack,
) -> None:
    # The database queued the run, then the connection dropped before the answer: the Action's
    # retry finds the run its own request queued. There was no earlier try of the step.
    devstack.server.faults.push(Fault.drop(path=r"/rpc/create_run$", after=True))
    try:
        result = workspace.run(create_inputs(connection, project))
    finally:
        pending = devstack.server.faults.pending()
        devstack.server.faults.clear()

    assert result.exit_code == 0, result.stdout + result.stderr
    assert pending == []
    assert result.outputs["outcome"] == "queued"
    assert "earlier try" not in result.stdout
    assert f"Queued run {result.outputs['run_id']}" in result.stdout
    rows = db.execute("SELECT count(*) FROM ops.runs WHERE project_id = %s", (project,)).fetchone()
    assert rows == (1,)


def test_create_that_stays_unanswered_says_the_run_may_be_queued(
    workspace: Workspace,
    connection: dict[str, str],
    project: str,
    db: psycopg.Connection[Any],
    devstack: DevStack,
) -> None:
    faults = devstack.server.faults
    faults.push(Fault.unavailable(retry_after=0, path=r"/rpc/create_run$", after=True, times=None))
    try:
        result = workspace.run(create_inputs(connection, project))
    finally:
        faults.clear()

    assert result.exit_code == 1
    (key,) = db.execute(
        "SELECT idempotency_key FROM ops.runs WHERE project_id = %s", (project,)
    ).fetchone() or ("",)
    errors = [a.data for a in result.annotations("error")]
    assert len(errors) == 1
    assert f"The run may have been queued before that (idempotency key {key})" in errors[0]
    assert '"Re-run jobs" starts a new workflow attempt, which queues a new run' in errors[0]
    assert f"WHERE idempotency_key = '{key}';" in errors[0]


def test_create_is_idempotent_within_an_attempt_but_not_across_attempts(
    workspace: Workspace, connection: dict[str, str], project: str, db: psycopg.Connection[Any]
) -> None:
    first = workspace.run(create_inputs(connection, project))
    retry = workspace.run(create_inputs(connection, project))

    assert retry.exit_code == 0
    assert retry.outputs["run_id"] == first.outputs["run_id"]
    assert retry.outputs["outcome"] == "existing"
    assert "was already queued by an earlier try" in retry.stdout

    workspace.github.run_attempt = "2"
    rerun = workspace.run(create_inputs(connection, project))
    assert rerun.outputs["outcome"] == "queued"
    assert rerun.outputs["run_id"] != first.outputs["run_id"]
    count = db.execute("select count(*) from ops.runs where project_id = %s", (project,)).fetchone()
    assert count == (2,)


def test_check_run_without_wait_says_it_has_no_effect(
    workspace: Workspace, connection: dict[str, str], project: str
) -> None:
    result = workspace.run(create_inputs(connection, project, check_run="true"))

    assert result.exit_code == 0
    (warning,) = result.annotations("warning")
    assert "check_run (INPUT_CHECK_RUN) is true but wait (INPUT_WAIT) is false" in warning.data
    assert result.outputs["outcome"] == "queued"


def test_create_with_metadata_and_explicit_key(
    workspace: Workspace, connection: dict[str, str], project: str, db: psycopg.Connection[Any]
) -> None:
    inputs = create_inputs(
        connection, project, metadata='{"pr": 42, "labels": ["a", "b"]}', idempotency_key="release-1.2.3"
    )
    result = workspace.run(inputs)

    assert result.exit_code == 0, result.stdout
    row = run_row(db, result.outputs["run_id"])
    assert row["idempotency_key"] == "release-1.2.3"
    assert row["metadata"]["pr"] == 42
    assert row["metadata"]["labels"] == ["a", "b"]


def test_create_and_wait_follows_the_run_to_success(
    workspace: Workspace, connection: dict[str, str], project: str, pg_dsn: str
) -> None:
    events = [
        ("info", "Building image", {"phase": "build"}),
        ("debug", "Layer 1/2", {"phase": "build"}),
        ("info", "Pushing", {"phase": "push"}),
    ]
    worker = FakeWorker(
        pg_dsn,
        project,
        events=events,
        artifacts=[("sbom", "s3://bucket/sbom.json"), ("image", "ghcr.io/acme/shop:3f7a1c2")],
        claim_after=0.3,
    ).start()

    result = workspace.run(create_inputs(connection, project, wait="true", poll_interval_seconds="0.5"))
    worker.join()

    assert result.exit_code == 0, result.stdout + result.stderr
    assert result.outputs["run_id"] == worker.run_id
    assert result.outputs["status"] == "success"
    assert result.outputs["outcome"] == "success"
    assert result.outputs["artifact_url"] == "ghcr.io/acme/shop:3f7a1c2"
    artifacts = json.loads(result.outputs["artifacts"])
    assert [a["artifact_type"] for a in artifacts] == ["sbom", "image"]
    assert result.state["should_cancel"] == "false"
    groups = [command.data for command in result.commands("group")]
    assert groups == ["Queued", "Claimed by worker-7", "Running", "build", "push", "Finished: success"]
    log = result.visible_log
    for level, message, _ in events:
        assert log.count(f"[{level}] {message}") == 1
    assert "The build run" in result.summary
    assert "succeeded" in result.summary
    assert not result.annotations("error")
    assert_outputs_declared(result.outputs)


def test_wait_reports_a_failed_run(
    workspace: Workspace, connection: dict[str, str], project: str, pg_dsn: str, db: psycopg.Connection[Any]
) -> None:
    run_id = queue_run(db, project)
    worker = FakeWorker(
        pg_dsn,
        project,
        events=[("error", "odoo-bin exited: ImportError: no module named foo", {})],
        final_status="failed",
        exit_code=3,
        reason="tests failed",
    ).start()

    result = workspace.run({**connection, "mode": "wait", "run_id": run_id, "poll_interval_seconds": "0.5"})
    worker.join()

    assert result.exit_code == 1
    assert result.outputs["status"] == "failed"
    assert result.outputs["outcome"] == "failed"
    errors = result.annotations("error")
    # The error event itself, then the step's verdict (the "Run failed" status event is not repeated).
    assert len(errors) == 2
    assert "ImportError" in errors[0].data
    verdict = errors[-1]
    assert verdict.properties["title"] == "OdooOps run failed"
    assert run_id in verdict.data
    assert "tests failed" in verdict.data
    assert "exit code 3" in verdict.data
    assert "ops.run_events" in verdict.data
    assert "failed" in result.summary


def test_wait_times_out_and_says_why(
    workspace: Workspace, connection: dict[str, str], project: str, db: psycopg.Connection[Any]
) -> None:
    run_id = queue_run(db, project)

    result = workspace.run(
        {
            **connection,
            "mode": "wait",
            "run_id": run_id,
            "timeout_seconds": "1",
            "poll_interval_seconds": "0.2",
        }
    )

    assert result.exit_code == 1
    assert result.outputs["outcome"] == "timeout"
    assert result.outputs["status"] == "queued"
    (error,) = result.annotations("error")
    assert "after 1s" in error.data
    assert "No worker claimed it" in error.data
    assert "cancel_on_timeout" in error.data
    assert run_row(db, run_id)["status"] == "queued"  # not cancelled by default
    assert result.state["should_cancel"] == "false"


def test_wait_cancels_on_timeout_when_asked(
    workspace: Workspace, connection: dict[str, str], project: str, db: psycopg.Connection[Any]
) -> None:
    run_id = queue_run(db, project)

    result = workspace.run(
        {
            **connection,
            "mode": "wait",
            "run_id": run_id,
            "timeout_seconds": "0.5",
            "cancel_on_timeout": "TRUE",
        }
    )

    assert result.exit_code == 1
    assert result.outputs["outcome"] == "timeout"
    row = run_row(db, run_id)
    assert row["status"] == "cancelled"
    assert "cancel_on_timeout" in row["status_reason"]
    assert "octocat" in row["status_reason"]


def test_wait_for_an_unknown_run_fails_clearly(workspace: Workspace, connection: dict[str, str]) -> None:
    run_id = "run-20200101-000000-abcdef0"

    result = workspace.run({**connection, "mode": "wait", "run_id": run_id})

    assert result.exit_code == 1
    assert result.outputs["outcome"] == "not_found"
    (error,) = result.annotations("error")
    assert run_id in error.data
    assert "not found" in error.data


def test_wait_reports_a_run_cancelled_elsewhere(
    workspace: Workspace, connection: dict[str, str], project: str, db: psycopg.Connection[Any]
) -> None:
    run_id = queue_run(db, project)
    step = workspace.start({**connection, "mode": "wait", "run_id": run_id, "poll_interval_seconds": "0.2"})
    step.wait_for_output("Waiting up to")
    db.execute("select ops.cancel_run(%s, 'superseded', 'ops-team')", (run_id,))

    result = step.finish()

    assert result.exit_code == 1
    assert result.outputs["outcome"] == "cancelled"
    (error,) = result.annotations("error")
    assert "was cancelled" in error.data
    assert "superseded" in error.data


def test_destroy_cancels_then_reports_already_cancelled(
    workspace: Workspace, connection: dict[str, str], project: str, db: psycopg.Connection[Any]
) -> None:
    run_id = queue_run(db, project)

    first = workspace.run({**connection, "mode": "destroy", "run_id": run_id})
    second = workspace.run({**connection, "mode": "destroy", "run_id": run_id})

    assert first.exit_code == 0, first.stdout
    assert first.outputs["outcome"] == "cancelled"
    assert first.outputs["status"] == "cancelled"
    row = run_row(db, run_id)
    assert row["status"] == "cancelled"
    assert "destroy step" in row["status_reason"]
    assert second.exit_code == 0
    assert second.outputs["outcome"] == "already_cancelled"
    (notice,) = second.annotations("notice")
    assert "already cancelled" in notice.data
    assert_outputs_declared(first.outputs)


def test_destroy_whose_answer_was_lost_reports_that_it_cancelled(
    workspace: Workspace,
    connection: dict[str, str],
    project: str,
    db: psycopg.Connection[Any],
    devstack: DevStack,
) -> None:
    run_id = queue_run(db, project)
    devstack.server.faults.push(Fault.gateway_error(path=r"/rpc/cancel_run$", after=True))
    try:
        result = workspace.run({**connection, "mode": "destroy", "run_id": run_id})
    finally:
        pending = devstack.server.faults.pending()
        devstack.server.faults.clear()

    assert result.exit_code == 0, result.stdout
    assert pending == []  # the 520 came after the cancel was committed
    assert result.outputs["outcome"] == "cancelled"
    assert f"Cancelled run {run_id}." in result.stdout
    assert result.annotations("notice") == []  # no "already cancelled"


def test_destroy_of_a_finished_run_warns_without_failing(
    workspace: Workspace, connection: dict[str, str], project: str, pg_dsn: str, db: psycopg.Connection[Any]
) -> None:
    run_id = queue_run(db, project)
    FakeWorker(pg_dsn, project).start().join()

    result = workspace.run({**connection, "mode": "destroy", "run_id": run_id})

    assert result.exit_code == 0
    assert result.outputs["outcome"] == "already_finished"
    assert result.outputs["status"] == "success"
    (warning,) = result.annotations("warning")
    assert "already finished (success)" in warning.data
    assert run_row(db, run_id)["status"] == "success"


def test_destroy_of_an_unknown_run_fails(workspace: Workspace, connection: dict[str, str]) -> None:
    result = workspace.run({**connection, "mode": "destroy", "run_id": "run-20200101-000000-abcdef0"})

    assert result.exit_code == 1
    assert result.outputs["outcome"] == "not_found"
    assert "not found" in result.annotations("error")[0].data


def test_wrong_key_fails_with_the_servers_reason(
    workspace: Workspace, rest_url: str, anon_key: str, project: str
) -> None:
    result = workspace.run(
        {
            "supabase_url": rest_url,
            "supabase_key": anon_key,
            "mode": "destroy",
            "run_id": "run-20200101-000000-abcdef0",
        }
    )

    assert result.exit_code == 2
    (error,) = result.annotations("error")
    assert "anon" in error.data
    assert result.outputs == {}


def test_a_refused_key_is_named_by_the_input_it_came_from(workspace: Workspace, rest_url: str) -> None:
    forged = mint_jwt({"role": "service_role", "iss": "supabase"}, "not-the-stack-secret")
    result = workspace.run(
        {
            "supabase_url": rest_url,
            "supabase_key": forged,
            "mode": "destroy",
            "run_id": "run-20200101-000000-abcdef0",
        }
    )

    assert result.exit_code == 1
    (error,) = result.annotations("error")
    assert "401" in error.data
    assert "supabase_key (INPUT_SUPABASE_KEY)" in error.data
    assert "SUPABASE_SERVICE_ROLE_KEY" not in error.data
    assert forged not in result.visible_log + result.stderr + error.data


@pytest.mark.parametrize("mode", ["create", "wait", "destroy"])
def test_unreachable_server_fails_the_step_with_an_error(
    workspace: Workspace, service_key: str, mode: str
) -> None:
    inputs = {
        "supabase_url": "http://127.0.0.1:9",
        "supabase_key": service_key,
        "mode": mode,
        "project_id": "shop",
        "workflow_type": "build",
        "run_id": "run-20200101-000000-abcdef0",
        "timeout_seconds": "1",
    }
    result = workspace.run(inputs)

    assert result.exit_code == 1
    assert result.annotations("error"), result.stdout
    assert "Traceback" not in result.stdout + result.stderr
