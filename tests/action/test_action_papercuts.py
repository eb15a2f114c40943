"""What a newcomer tripped over in the Action's output (issue 11, item 6), each pinned."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
from action_harness import FakeWorker, Workspace

from odooops_action.github.summary import SummaryView, render_summary
from tests.github.gh_factories import T0, make_run


def create_inputs(connection: dict[str, str], project: str, **more: str) -> dict[str, str]:
    return {**connection, "mode": "create", "project_id": project, "workflow_type": "build", **more}


def raw_outputs(workspace: Workspace) -> str:
    """Everything the last step wrote to $GITHUB_OUTPUT."""
    files = sorted(
        workspace.file_commands.glob("github_output_*"), key=lambda p: int(p.name.rsplit("_", 1)[1])
    )
    return Path(files[-1]).read_text(encoding="utf-8")


def test_run_id_is_written_once_to_github_output(
    workspace: Workspace, connection: dict[str, str], project: str, pg_dsn: str
) -> None:
    worker = FakeWorker(pg_dsn, project, artifacts=[("image", "ghcr.io/acme/shop:1")]).start()
    result = workspace.run(create_inputs(connection, project, wait="true"))
    worker.join()
    assert result.exit_code == 0, result.stdout
    lines = raw_outputs(workspace).splitlines()
    assert [line for line in lines if line.startswith("run_id")] == [f"run_id={result.outputs['run_id']}"]
    names = [line.split("=", 1)[0] for line in lines if "=" in line and not line.startswith(("[", "{"))]
    assert len(names) == len(set(names)), names


def test_a_create_that_finds_its_run_finished_says_so_and_gives_its_artifact(
    workspace: Workspace, connection: dict[str, str], project: str, pg_dsn: str
) -> None:
    first = workspace.run(create_inputs(connection, project))
    FakeWorker(pg_dsn, project, artifacts=[("image", "ghcr.io/acme/shop:abc")]).start().join()
    again = workspace.run(create_inputs(connection, project))  # same step attempt: same key

    assert again.outputs["run_id"] == first.outputs["run_id"]
    assert again.outputs["outcome"] == "existing"
    assert again.outputs["status"] == "success"
    assert again.outputs["artifact_url"] == "ghcr.io/acme/shop:abc"
    assert json.loads(again.outputs["artifacts"])[0]["storage_path"] == "ghcr.io/acme/shop:abc"
    (notice,) = again.annotations("notice")
    assert notice.properties["title"] == "OdooOps run already queued"
    assert "queued:" not in notice.data
    assert notice.data.endswith(", success.")
    assert "it is success" in again.summary


def test_summary_metadata_does_not_repeat_the_facts(
    workspace: Workspace, connection: dict[str, str], project: str, pg_dsn: str, db: psycopg.Connection[Any]
) -> None:
    worker = FakeWorker(pg_dsn, project).start()
    result = workspace.run(create_inputs(connection, project, wait="true", metadata='{"ticket": "OPS-7"}'))
    worker.join()
    metadata = result.summary.split("<summary>Run metadata</summary>")[1].split("</details>")[0]
    assert "| ` ticket ` | ` OPS-7 ` |" in metadata
    for fact in ("workflow_type", "git_ref", "created_by"):
        assert fact not in metadata


def test_a_cancelled_runs_last_timeline_row_says_who_and_why() -> None:
    run = make_run(
        status="cancelled",
        exit_code=None,
        status_reason="by alice (odooops destroy)",
        finished_at=T0 + timedelta(seconds=30),
    )
    view = SummaryView(
        run=run,
        outcome="cancelled",
        now=T0,
        outcome_detail=None,
        artifacts=[],
        notable_events=[],
        log_tail=[],
        total_events=0,
        suppressed_annotations={},
        github=None,
        level_counts={},
        status_events=[],
    )
    timeline = render_summary(view).split("### Timeline")[1]
    last = [line for line in timeline.splitlines() if line.startswith("| ")][-1]
    assert last.endswith("| finished: cancelled: ` by alice (odooops destroy) ` |")
