"""Workflow cancellation with real signals to the entry point run as a plain process, and the post step.

In a job the runner signals the ``docker run`` client, which passes SIGINT (and, 7.5 s later,
SIGTERM) on to our PID 1; 2.5 s after that it kills the CLIENT only, never the container. Here the
entry point gets the signals directly, which is what the client's forwarding delivers;
tests/container rehearses the whole sequence with a real container and client. The remote run must
be cancelled well inside the 7.5 s window. The post step cancels when the main step could not: its
container was killed (OOM, the runner host lost), which ends our process without any signal we
can handle — SIGKILL here.
"""

from __future__ import annotations

import signal
from typing import Any

import psycopg
from action_harness import POST_ENTRYPOINT, FakeWorker, Workspace, queue_run, run_row, wait_until

from tests.devstack import DevStack
from tests.devstack.faults import Fault

RUNNER_GRACE_SECONDS = 7.5
RUNNER_KILL_AFTER_SECONDS = 2.5


def wait_inputs(connection: dict[str, str], run_id: str, **more: str) -> dict[str, str]:
    return {**connection, "mode": "wait", "run_id": run_id, "poll_interval_seconds": "1", **more}


def test_sigint_then_sigterm_cancels_the_remote_run_in_time(
    workspace: Workspace, connection: dict[str, str], project: str, pg_dsn: str, db: psycopg.Connection[Any]
) -> None:
    run_id = queue_run(db, project)
    worker = FakeWorker(pg_dsn, project, events=[("info", "compiling", {})], final_status=None).start()
    worker.started.wait(10)
    step = workspace.start(wait_inputs(connection, run_id))
    step.wait_for_output("[info] compiling")

    step.signal(signal.SIGINT)
    # The runner's rule, not a budget: the run is cancelled before the runner's SIGKILL would come.
    wait_until(lambda: run_row(db, run_id)["status"] == "cancelled", timeout=RUNNER_GRACE_SECONDS)
    step.signal(signal.SIGTERM)  # what the runner sends next; it must not crash the step
    result = step.finish(timeout=RUNNER_KILL_AFTER_SECONDS + RUNNER_GRACE_SECONDS)
    worker.join()

    assert result.exit_code == 1
    assert result.outputs["outcome"] == "interrupted"
    assert result.outputs["status"] == "cancelled"
    assert result.state["should_cancel"] == "false"
    assert result.state["abort_cancel"] == "cancelled"
    (error,) = result.annotations("error")
    assert "cancelled while waiting" in error.data
    row = run_row(db, run_id)
    assert "the GitHub workflow was cancelled while waiting" in row["status_reason"]
    assert "octocat" in row["status_reason"]
    assert "Traceback" not in result.stderr

    # The post step sees that the main step did the cancelling: no request at all (closed port).
    post = workspace.run_post(
        result, {**wait_inputs(connection, run_id), "supabase_url": "http://127.0.0.1:9"}
    )
    assert post.exit_code == 0
    assert not post.annotations("error")
    assert not post.annotations("warning")


def test_sigterm_alone_also_cancels(
    workspace: Workspace, connection: dict[str, str], project: str, db: psycopg.Connection[Any]
) -> None:
    run_id = queue_run(db, project)
    step = workspace.start(wait_inputs(connection, run_id))
    step.wait_for_output("Waiting up to")

    step.signal(signal.SIGTERM)
    result = step.finish(timeout=RUNNER_GRACE_SECONDS)

    assert result.exit_code == 1
    assert run_row(db, run_id)["status"] == "cancelled"  # within the runner's grace (finish above)


def test_abort_without_cancel_on_abort_leaves_the_run_alone(
    workspace: Workspace, connection: dict[str, str], project: str, db: psycopg.Connection[Any]
) -> None:
    run_id = queue_run(db, project)
    inputs = wait_inputs(connection, run_id, cancel_on_abort="false")
    step = workspace.start(inputs)
    step.wait_for_output("Waiting up to")

    step.signal(signal.SIGINT)
    result = step.finish(timeout=RUNNER_GRACE_SECONDS)

    assert result.exit_code == 1
    assert result.outputs["outcome"] == "interrupted"
    assert "cancel_on_abort is false" in result.annotations("error")[0].data
    assert run_row(db, run_id)["status"] == "queued"
    assert "should_cancel" not in result.state
    post = workspace.run_post(result, inputs)
    assert post.exit_code == 0
    assert run_row(db, run_id)["status"] == "queued"


def test_post_step_cancels_when_the_main_step_was_killed(
    workspace: Workspace, connection: dict[str, str], project: str, db: psycopg.Connection[Any]
) -> None:
    inputs = {
        **connection,
        "mode": "create",
        "project_id": project,
        "workflow_type": "deploy",
        "wait": "true",
    }
    step = workspace.start(inputs)
    step.wait_for_output("Waiting up to")

    step.process.kill()  # its container killed (OOM, host lost): no chance to cancel
    main = step.finish(timeout=5)
    run_id = main.outputs["run_id"]
    assert main.state == {"run_id": run_id, "should_cancel": "true"}
    assert run_row(db, run_id)["status"] == "queued"

    post = workspace.run_post(main, inputs)

    assert post.exit_code == 0, post.stdout
    row = run_row(db, run_id)
    assert row["status"] == "cancelled"
    assert "post step" in row["status_reason"]
    (warning,) = post.annotations("warning")
    assert "cancelled by the post step" in warning.data


def test_post_step_without_state_does_nothing(workspace: Workspace, connection: dict[str, str]) -> None:
    env_inputs = {**connection, "mode": "create", "supabase_url": "http://127.0.0.1:9"}
    post = workspace.start(env_inputs, entrypoint=POST_ENTRYPOINT).finish(10)

    assert post.exit_code == 0
    assert not post.runner.processed or all(c.name in ("add-mask", "debug") for c in post.runner.processed)


def test_post_step_after_a_run_that_ended_does_nothing(
    workspace: Workspace, connection: dict[str, str], project: str, db: psycopg.Connection[Any]
) -> None:
    run_id = queue_run(db, project)
    main = workspace.run(wait_inputs(connection, run_id, timeout_seconds="0.3"))
    assert main.state["should_cancel"] == "false"

    post = workspace.run_post(main, wait_inputs(connection, run_id))

    assert post.exit_code == 0
    assert run_row(db, run_id)["status"] == "queued"


def test_sigint_abandons_a_poll_stuck_in_the_server(
    *,
    workspace: Workspace,
    connection: dict[str, str],
    project: str,
    devstack: DevStack,
    db: psycopg.Connection[Any],
) -> None:
    """A poll in flight does not hold the step: it is abandoned, the run cancelled, everything written."""
    run_id = queue_run(db, project)
    step = workspace.start(wait_inputs(connection, run_id))
    step.wait_for_output("Waiting up to")
    faults = devstack.server.faults
    faults.push(Fault.delay(20_000, path=r"rpc/poll_run(_delta)?$", times=1))
    wait_until(lambda: not faults.pending(), timeout=10)  # the next poll is stuck in the server

    step.signal(signal.SIGINT)
    result = step.finish(timeout=RUNNER_GRACE_SECONDS)  # the runner's window: else the files are lost

    assert result.exit_code == 1
    assert run_row(db, run_id)["status"] == "cancelled"
    assert result.outputs["outcome"] == "interrupted"
    assert result.outputs["status"] == "cancelled"
    assert result.state["should_cancel"] == "false"
    assert "cancelled" in result.summary
    assert "Polling failed" not in result.stdout  # an abandoned poll is not a failure to report
