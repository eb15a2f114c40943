"""The log stream: thousands of events arriving while the step waits, each shown exactly once, in
order, grouped by phase; annotations within GitHub's per-step limits, the rest counted."""

from __future__ import annotations

import re

import pytest
from action_harness import FakeWorker, StepResult, Workspace

EVENT_LINE = re.compile(r"^\[(debug|info|warn|error)\] (.*)$")


def event_lines(result: StepResult) -> list[str]:
    """The ``[level] message`` lines the runner would show, in order."""
    return [line for line in result.runner.plain if EVENT_LINE.match(line)]


@pytest.mark.slow
def test_thousands_of_events_arrive_once_in_order_and_grouped(
    workspace: Workspace, connection: dict[str, str], project: str, pg_dsn: str
) -> None:
    phases = ["checkout", "install", "build", "test", "push"]
    events = [("info", f"line {n:05d}", {"phase": phases[n // 800]}) for n in range(4000)]
    # Small batches with pauses: the events keep arriving across many polls of the waiting step.
    worker = FakeWorker(pg_dsn, project, events=events, batch_size=97, pause=0.02, claim_after=0.5).start()

    result = workspace.run(
        {
            **connection,
            "mode": "create",
            "project_id": project,
            "workflow_type": "build",
            "wait": "true",
            "poll_interval_seconds": "0.3",
        },
        timeout=120,
    )
    worker.join()

    assert result.exit_code == 0, result.stdout[-3000:]
    shown = [line for line in event_lines(result) if line.startswith("[info] line ")]
    assert shown == [f"[info] {message}" for _, message, _ in events]
    groups = [command.data for command in result.commands("group")]
    assert groups == ["Queued", "Claimed by worker-7", "Running", *phases, "Finished: success"]
    assert len(result.commands("endgroup")) == len(groups)
    assert not result.runner.paused  # every stop-commands block was closed
    status_lines = [line for line in event_lines(result) if not line.startswith("[info] line ")]
    assert status_lines == [
        "[info] Run queued",
        "[info] Worker worker-7 claimed run (attempt 1)",
        "[info] Run started on worker worker-7",
        "[info] Run succeeded",
    ]
    assert "4,004 events" in result.summary


def test_events_in_order_inside_their_groups(
    workspace: Workspace, connection: dict[str, str], project: str, pg_dsn: str
) -> None:
    events = [
        ("info", "fetch sources", {"step": "checkout"}),
        ("debug", "git fetch --depth 1", {"step": "checkout"}),
        ("info", "pip install", {"step": "deps"}),
        ("info", "no step in this one", {}),
        ("info", "odoo -i base", {"step": "tests"}),
    ]
    worker = FakeWorker(pg_dsn, project, events=events).start()
    result = workspace.run(
        {**connection, "mode": "create", "project_id": project, "workflow_type": "test", "wait": "true"}
    )
    worker.join()

    # Walk the runner's view: every event line belongs to the group opened last.
    current: str | None = None
    placed: list[tuple[str | None, str]] = []
    for command_or_line in _interleaved(result):
        if command_or_line[0] == "group":
            current = command_or_line[1]
        elif command_or_line[0] == "line":
            placed.append((current, command_or_line[1]))
    assert ("checkout", "[info] fetch sources") in placed
    assert ("checkout", "[debug] git fetch --depth 1") in placed
    assert ("deps", "[info] pip install") in placed
    assert ("deps", "[info] no step in this one") in placed  # no phase: stays in the current group
    assert ("tests", "[info] odoo -i base") in placed
    assert ("Finished: success", "[info] Run succeeded") in placed


def _interleaved(result: StepResult) -> list[tuple[str, str]]:
    from tests.github.gh_runner_model import RunnerModel, dotnet_read_lines

    items: list[tuple[str, str]] = []
    model = RunnerModel()
    for line in dotnet_read_lines(result.stdout):
        before = len(model.processed)
        model.feed(line + "\n")
        if len(model.processed) > before:
            command = model.processed[-1]
            items.append((command.name.lower(), command.data))
        elif EVENT_LINE.match(line):
            items.append(("line", line))
    return items


def test_annotations_respect_the_per_step_limit_and_are_counted(
    workspace: Workspace, connection: dict[str, str], project: str, pg_dsn: str
) -> None:
    events = [("warn", f"deprecated call {n}", {}) for n in range(25)]
    events += [
        ("error", f"assertion {n} failed", {"file": "addons/shop/tests/test_cart.py", "line": 10 + n})
        for n in range(12)
    ]
    events += [("info", "not an annotation", {})]
    worker = FakeWorker(pg_dsn, project, events=events).start()

    result = workspace.run(
        {**connection, "mode": "create", "project_id": project, "workflow_type": "test", "wait": "true"}
    )
    worker.join()

    assert result.exit_code == 0
    warnings, errors = result.annotations("warning"), result.annotations("error")
    # 9 of GitHub's 10 per level: the 10th stays free for the step's own verdict or warning; and
    # 8 errors: one more stays free for the runner's own error when the job is cancelled.
    assert len(warnings) == 9
    assert len(errors) == 8
    assert [w.data for w in warnings] == [f"deprecated call {n}" for n in range(9)]
    assert errors[0].properties["file"] == "addons/shop/tests/test_cart.py"
    assert errors[0].properties["line"] == "10"
    assert not result.annotations("notice")
    # Every event is still a log line, and the summary says how many were not annotated.
    lines = event_lines(result)
    assert sum(1 for line in lines if line.startswith("[warn] deprecated call")) == 25
    assert re.search(r"16\W{0,3}warning", result.summary)
    assert re.search(r"4\W{0,3}error", result.summary)
    assert "not annotated" in result.summary


def test_the_verdict_is_annotated_after_many_error_events(
    workspace: Workspace, connection: dict[str, str], project: str, pg_dsn: str
) -> None:
    """GitHub keeps only the first 10 errors of a step: the run's errors must leave room for ours."""
    events = [("error", f"assertion {n} failed", {}) for n in range(15)]
    worker = FakeWorker(pg_dsn, project, events=events, final_status="failed", exit_code=3).start()

    result = workspace.run(
        {**connection, "mode": "create", "project_id": project, "workflow_type": "test", "wait": "true"}
    )
    worker.join()

    assert result.exit_code == 1
    errors = result.annotations("error")
    assert len(errors) <= 9  # the 10th is the runner's, should the job be cancelled
    verdict = errors[-1]
    assert verdict.properties["title"] == "OdooOps run failed"
    assert "failed (exit code 3)" in verdict.data
    assert "ops.run_events" in verdict.data  # where to look
    assert not any("not annotated" in line and "OdooOps run failed" in line for line in result.runner.plain)


def test_annotate_levels_none_emits_no_annotation(
    workspace: Workspace, connection: dict[str, str], project: str, pg_dsn: str
) -> None:
    worker = FakeWorker(pg_dsn, project, events=[("error", "boom", {}), ("warn", "hmm", {})]).start()

    result = workspace.run(
        {
            **connection,
            "mode": "create",
            "project_id": project,
            "workflow_type": "test",
            "wait": "true",
            "annotate_levels": "none",
        }
    )
    worker.join()

    assert result.exit_code == 0
    assert not result.annotations("error")
    assert not result.annotations("warning")
    assert "[error] boom" in event_lines(result)
