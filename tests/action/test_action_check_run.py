"""``check_run: true``: a check run through a loopback GitHub API that validates every request body
against GitHub's OpenAPI request schemas; a 403 degrades to a warning without failing the step."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from action_harness import FakeWorker, StepResult, Workspace

from tests.github.gh_fake_api import CREATE, UPDATE, serve
from tests.github.gh_fake_api import FakeGitHub as FakeGitHubApi


@pytest.fixture
def api(workspace: Workspace) -> Iterator[FakeGitHubApi]:
    with serve(FakeGitHubApi()) as server:
        workspace.github.api_url = server.base_url
        yield server


def follow_with_check(
    workspace: Workspace,
    connection: dict[str, str],
    project: str,
    pg_dsn: str,
    *,
    final_status: str = "success",
    warnings: int = 60,
) -> tuple[StepResult, FakeWorker]:
    events = [
        ("warn", f"deprecated API {n}", {"file": "addons/shop/models/cart.py", "line": n + 1})
        for n in range(warnings)
    ]
    worker = FakeWorker(pg_dsn, project, events=events, final_status=final_status, reason="boom").start()
    result = workspace.run(
        {
            **connection,
            "mode": "create",
            "project_id": project,
            "workflow_type": "deploy",
            "wait": "true",
            "check_run": "true",
        }
    )
    worker.join()
    return result, worker


def test_check_run_carries_summary_and_every_annotation(
    workspace: Workspace, connection: dict[str, str], project: str, pg_dsn: str, api: FakeGitHubApi
) -> None:
    result, _ = follow_with_check(workspace, connection, project, pg_dsn)

    assert result.exit_code == 0, result.stdout[-2000:]
    assert api.problems == []
    operations = [request.operation for request in api.requests]
    assert operations == [CREATE, UPDATE]  # 60 annotations: 50 with the creation, 10 appended
    create, update = (request.body for request in api.requests)
    assert create["name"] == "OdooOps deploy"
    assert create["head_sha"] == workspace.github.sha
    assert create["status"] == "completed"
    assert create["conclusion"] == "success"
    assert create["details_url"] == "https://github.com/acme/shop/actions/runs/9900001"
    assert result.outputs["run_id"] in create["output"]["summary"]
    assert len(create["output"]["annotations"]) == 50
    assert len(update["output"]["annotations"]) == 10
    assert create["output"]["annotations"][0]["path"] == "addons/shop/models/cart.py"
    assert create["output"]["annotations"][0]["annotation_level"] == "warning"
    assert api.requests[0].path == "/repos/acme/shop/check-runs"
    assert api.requests[0].headers["Authorization"].split()[-1] == workspace.github.token
    assert result.outputs["check_run_url"].startswith("https://github.com/acme/shop/runs/")
    assert len(result.annotations("warning")) == 9  # the job log keeps its own 9 (1 slot kept free)


def test_failed_run_concludes_failure(
    workspace: Workspace, connection: dict[str, str], project: str, pg_dsn: str, api: FakeGitHubApi
) -> None:
    result, _ = follow_with_check(workspace, connection, project, pg_dsn, final_status="failed", warnings=1)

    assert result.exit_code == 1
    assert api.problems == []
    assert api.requests[0].body["conclusion"] == "failure"


def test_forbidden_check_run_degrades_to_a_warning(
    workspace: Workspace, connection: dict[str, str], project: str, pg_dsn: str, api: FakeGitHubApi
) -> None:
    api.fail[CREATE] = (403, {"message": "Resource not accessible by integration"})

    result, _ = follow_with_check(workspace, connection, project, pg_dsn, warnings=3)

    assert result.exit_code == 0  # the run succeeded: a missing permission does not fail the step
    degraded = [
        w for w in result.annotations("warning") if w.properties.get("title") == "Check run not created"
    ]
    assert len(degraded) == 1
    assert "checks: write" in degraded[0].data
    assert workspace.github.token not in result.stdout.replace(f"::add-mask::{workspace.github.token}", "")
    # The annotations are still in the job log.
    assert sum(1 for w in result.annotations("warning") if w.data.startswith("deprecated API")) == 3
    assert "check_run_url" not in result.outputs


def test_forbidden_check_run_warning_is_shown_after_many_warning_events(
    workspace: Workspace, connection: dict[str, str], project: str, pg_dsn: str, api: FakeGitHubApi
) -> None:
    api.fail[CREATE] = (403, {"message": "Resource not accessible by integration"})

    result, _ = follow_with_check(workspace, connection, project, pg_dsn, warnings=30)

    warnings = result.annotations("warning")
    assert len(warnings) <= 10  # GitHub drops the 11th and later
    assert warnings[-1].properties.get("title") == "Check run not created"
    assert "checks: write" in warnings[-1].data


def test_no_check_run_unless_asked(
    workspace: Workspace, connection: dict[str, str], project: str, pg_dsn: str, api: FakeGitHubApi
) -> None:
    worker = FakeWorker(pg_dsn, project).start()
    result = workspace.run(
        {**connection, "mode": "create", "project_id": project, "workflow_type": "build", "wait": "true"}
    )
    worker.join()

    assert result.exit_code == 0
    assert api.requests == []
