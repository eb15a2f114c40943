"""The Action with a scoped token and the project's publishable key (requests run as anon)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
from action_harness import FakeWorker, Workspace, new_project, run_row

from tests.devstack import DevStack
from tests.lifecycle.helpers import mint_token


def token_connection(devstack: DevStack, token: str) -> dict[str, str]:
    return {"supabase_url": devstack.url, "supabase_key": devstack.publishable_key, "token": token}


def assert_token_only_masked(stdout: str, *texts: str, token: str) -> None:
    """The token appears only in the ``::add-mask::`` command the runner consumes."""
    assert f"::add-mask::{token}" in stdout
    assert token not in stdout.replace(f"::add-mask::{token}", "")
    for text in texts:
        assert token not in text


def test_create_and_wait_with_a_token_in_the_tokens_project(
    workspace: Workspace, devstack: DevStack, project: str, pg_dsn: str, db: psycopg.Connection[Any]
) -> None:
    token = mint_token(devstack.database_url, project, ("create", "read", "cancel"))
    worker = FakeWorker(pg_dsn, project, events=[("info", "Building", {})], claim_after=0.2).start()
    inputs = {**token_connection(devstack, token), "mode": "create", "workflow_type": "build"}
    result = workspace.run({**inputs, "wait": "true", "poll_interval_seconds": "0.3"})
    worker.join()

    assert result.exit_code == 0, result.stdout + result.stderr
    assert run_row(db, result.outputs["run_id"])["project_id"] == project  # no project_id input: the token's
    assert result.outputs["status"] == "success"
    assert_token_only_masked(
        result.stdout,
        result.stderr,
        result.summary,
        *result.outputs.values(),
        *result.state.values(),
        token=token,
    )


def test_a_read_only_token_says_why_it_cannot_create(
    workspace: Workspace, devstack: DevStack, db: psycopg.Connection[Any], tmp_path: Path
) -> None:
    project = new_project(db)
    token = mint_token(devstack.database_url, project, ("read",))
    inputs = {**token_connection(devstack, token), "mode": "create", "workflow_type": "build"}
    result = workspace.run(inputs)

    assert result.exit_code == 1
    (error,) = result.annotations("error")
    assert "may read; ops.create_run needs the scope create" in error.data
    assert "Create a token whose --scope includes create" in error.data
    assert_token_only_masked(result.stdout, result.stderr, result.summary, token=token)
    count = db.execute("select count(*) from ops.runs where project_id = %s", (project,)).fetchone()
    assert count == (0,)


def test_a_token_that_is_not_one_is_refused_before_any_request(
    workspace: Workspace, devstack: DevStack
) -> None:
    result = workspace.run(
        {**token_connection(devstack, "ghp_notatoken1234567890"), "mode": "create", "workflow_type": "build"}
    )
    assert result.exit_code != 0
    errors = [error.data for error in result.annotations("error")]
    assert errors[0].startswith(
        "token (INPUT_TOKEN) is not an OdooOps token: a token starts with odooops_pat_"
    )
    assert "ghp_notatoken1234567890" not in result.stdout.replace("::add-mask::ghp_notatoken1234567890", "")
