"""Workflow cancellation as GitHub does it, with a real container and a REST server that answers slowly.

The runner (``ProcessInvoker.CancelAndKillProcessTree`` with ``killProcessOnCancel: false``) sends
SIGINT to the ``docker run`` CLIENT, waits up to 7.5 s, sends SIGTERM, waits up to 2.5 s, then
kills the client only. The client passes the signals on to the container's PID 1 (our entry
point); the container is never killed by the runner, but the step's file commands are read the
moment the client has exited. So whatever the step has not written by then is lost.

Here a poll is stuck in the server for 20 s when SIGINT arrives: the step must still cancel the
run and write its error, outputs and summary before the client exits, and the client must exit
within the SIGINT window (no SIGTERM needed). Timings are recorded (BENCHMARKS.md), not asserted,
apart from the runner's own 7.5 s window, which is the escalation itself.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import psycopg
import pytest

from tests.action.action_harness import FakeWorker, queue_run, run_row, wait_until
from tests.container.runner import RunnerJob
from tests.container.session import record
from tests.devstack import DevStack
from tests.devstack.faults import Fault

pytestmark = pytest.mark.slow

STUCK_POLL_MS = 20_000


def watch_status(
    dsn: str, run_id: str, status: str, started: list[float]
) -> tuple[threading.Thread, list[float]]:
    """A thread recording when ``run_id`` reaches ``status`` (seconds after ``started[0]``)."""
    seen: list[float] = []

    def watch() -> None:
        with psycopg.connect(dsn, autocommit=True) as conn:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                row = conn.execute("select status from ops.runs where run_id = %s", (run_id,)).fetchone()
                if row is not None and row[0] == status and started:
                    seen.append(time.monotonic() - started[0])
                    return
                time.sleep(0.02)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread, seen


def test_cancel_with_a_poll_stuck_in_flight_cancels_and_reports_before_the_client_exits(
    *,
    job: RunnerJob,
    devstack: DevStack,
    connection: dict[str, str],
    project: str,
    pg_dsn: str,
    db: psycopg.Connection[Any],
) -> None:
    run_id = queue_run(db, project)
    worker = FakeWorker(pg_dsn, project, events=[("info", "compiling", {})], final_status=None).start()
    worker.started.wait(10)
    inputs = {**connection, "mode": "wait", "run_id": run_id, "poll_interval_seconds": "1"}
    step = job.start(inputs)
    step.wait_for_output("[info] compiling")

    faults = devstack.server.faults
    faults.push(Fault.delay(STUCK_POLL_MS, path=r"rpc/poll_run(_delta)?$", times=1))
    wait_until(lambda: not faults.pending(), timeout=30)  # the next poll is now stuck in the server
    started: list[float] = []
    watcher, cancelled_at = watch_status(pg_dsn, run_id, "cancelled", started)
    started.append(time.monotonic())
    outcome = step.cancel_like_the_runner()
    watcher.join(30)
    worker.join()

    # The runner's window: the client left after SIGINT alone (no SIGTERM, no kill) ...
    assert [name for _, name in outcome.signals] == ["SIGINT"], outcome.signals
    assert outcome.exit_code == 1
    # ... and by then the step had cancelled the run and written everything.
    assert cancelled_at, "the run was not cancelled"
    assert run_row(db, run_id)["status"] == "cancelled"
    assert outcome.outputs["outcome"] == "interrupted"
    assert outcome.outputs["status"] == "cancelled"
    assert outcome.outputs["run_id"] == run_id
    assert outcome.state["should_cancel"] == "false"
    assert outcome.state["abort_cancel"] == "cancelled"
    (error,) = outcome.annotations("error")
    assert "cancelled while waiting" in error.data
    assert "cancelled" in outcome.summary
    assert "Traceback" not in outcome.text
    # The container ends on its own (the runner never kills it).
    gone = wait_until(step.container_gone, timeout=60)
    record("cancel_sigint_to_run_cancelled_seconds", round(cancelled_at[0], 2))
    record("cancel_sigint_to_client_exit_seconds", round(outcome.client_exit_after_first_signal or 0, 2))
    record("cancel_client_exit_to_container_gone_seconds", round(gone, 2))

    # The post step: the main step did the cancelling, so no request at all (a closed port).
    post = job.run_post(outcome, {**inputs, "supabase_url": "http://127.0.0.1:9"})
    assert post.exit_code == 0, post.text
    assert not post.annotations("error")


def test_post_step_cancels_when_the_main_step_was_killed(
    job: RunnerJob, connection: dict[str, str], project: str, db: psycopg.Connection[Any]
) -> None:
    inputs = {
        **connection,
        "mode": "create",
        "project_id": project,
        "workflow_type": "deploy",
        "wait": "true",
    }
    step = job.start(inputs)
    step.wait_for_output("Waiting up to")

    # The main step dies without a chance to cancel (OOM kill, the runner host going away, ...).
    job.engine.must("kill", "--signal", "KILL", step.container)
    main = step.finish(timeout=60)
    assert main.exit_code == 137
    run_id = main.outputs["run_id"]
    assert main.state == {"run_id": run_id, "should_cancel": "true"}
    assert run_row(db, run_id)["status"] == "queued"

    post = job.run_post(main, inputs)

    assert post.exit_code == 0, post.text
    row = run_row(db, run_id)
    assert row["status"] == "cancelled"
    assert "post step" in row["status_reason"]
    (warning,) = post.annotations("warning")
    assert "cancelled by the post step" in warning.data


def test_sigint_without_cancel_on_abort_leaves_the_run_alone(
    job: RunnerJob, connection: dict[str, str], project: str, db: psycopg.Connection[Any]
) -> None:
    run_id = queue_run(db, project)
    inputs = {**connection, "mode": "wait", "run_id": run_id, "cancel_on_abort": "false"}
    step = job.start(inputs)
    step.wait_for_output("Waiting up to")

    outcome = step.cancel_like_the_runner()

    assert [name for _, name in outcome.signals] == ["SIGINT"]
    assert outcome.exit_code == 1
    assert outcome.outputs["outcome"] == "interrupted"
    assert "cancel_on_abort is false" in outcome.annotations("error")[0].data
    assert run_row(db, run_id)["status"] == "queued"
