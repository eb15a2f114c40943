"""Real worker processes executing real commands against the test database."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import psycopg

from tests.worker.helpers import (
    REPO_ROOT,
    WorkerFactory,
    output_lines,
    process_gone,
    queue_run,
    run_events,
    run_row,
    wait_status,
    wait_until,
    write_script,
)

EXAMPLE = str(REPO_ROOT / "examples" / "execute_run.sh")
FAST_DEMO = {"ODOOOPS_DEMO_STEP_SECONDS": "0"}


def test_example_command_succeeds_with_events_levels_and_artifact(
    db: psycopg.Connection[Any], project: str, start_worker: WorkerFactory
) -> None:
    run_id = queue_run(db, project, metadata={"ticket": "OPS-1"})
    worker = start_worker("--once", "--project", project, "--command", EXAMPLE, env=FAST_DEMO)
    assert worker.wait(30) == 0
    run = run_row(db, run_id)
    assert (run["status"], run["exit_code"], run["attempt"]) == ("success", 0, 1)
    assert run["claimed_by"].startswith("worker-")
    assert run["claimed_by"].endswith(f"-{worker.pid}")
    stdout = output_lines(db, run_id, "stdout")
    assert [e["payload"]["line"] for e in stdout] == list(range(1, len(stdout) + 1))
    assert any(e["level"] == "warn" and e["message"].startswith("Module web_kanban_gauge") for e in stdout)
    assert any(e["level"] == "debug" for e in stdout)
    assert all(not e["message"].startswith("[") for e in stdout)  # prefixes are stripped
    stderr = output_lines(db, run_id, "stderr")
    assert next(e["message"] for e in stderr) == "Step 1/4 : FROM odoo:17.0"
    assert {e["level"] for e in stderr} == {"info"}
    sha7 = run["git_sha"][:7]
    artifacts = db.execute(
        "SELECT artifact_type, storage_path, digest, size_bytes FROM ops.artifacts WHERE run_id = %s",
        (run_id,),
    ).fetchall()
    assert len(artifacts) == 1
    assert artifacts[0][:2] == ("image", f"ghcr.io/example/odoo:{sha7}")
    assert artifacts[0][2].startswith("sha256:")
    assert artifacts[0][3] > 0
    # The run's facts reached the command's environment.
    assert f"Run {run_id}: build of {project} (main @ {sha7}) on dev, attempt 1" in [
        e["message"] for e in stdout
    ]
    events = run_events(db, run_id)
    assert events[-1]["message"] == "Run succeeded"  # every output event was stored before finishing


def test_failing_command_records_exit_code_and_stderr_tail(
    db: psycopg.Connection[Any], project: str, start_worker: WorkerFactory, tmp_path: Path
) -> None:
    command = write_script(
        tmp_path,
        "fail.sh",
        'echo "credentials: ${DATABASE_URL:-none}"\n'
        'for i in $(seq 1 30); do echo "problem $i" >&2; done\n'
        'echo "env: $ODOOOPS_WORKFLOW_TYPE $ODOOOPS_ENV_ID $ODOOOPS_GIT_REF"'
        ' "$ODOOOPS_ATTEMPT $ODOOOPS_METADATA"\n'
        "exit 7\n",
    )
    run_id = queue_run(db, project, metadata={"k": "v"})
    assert start_worker("--once", "--project", project, "--command", command).wait(30) == 0
    run = run_row(db, run_id)
    assert (run["status"], run["exit_code"]) == ("failed", 7)
    assert "exited with code 7" in run["status_reason"]
    failure = next(e for e in run_events(db, run_id) if e["payload"].get("kind") == "command_failed")
    assert failure["level"] == "error"
    assert failure["payload"]["exit_code"] == 7
    assert failure["payload"]["stderr_tail"] == [f"problem {i}" for i in range(11, 31)]
    assert "problem 30" in failure["message"]
    expected_metadata = '{"git_ref":"main","k":"v","workflow_type":"build"}'  # create_run adds two keys
    assert [e["message"] for e in output_lines(db, run_id)] == [
        "credentials: none",  # the worker's DATABASE_URL is not handed to the command
        f"env: build dev main 1 {expected_metadata}",
    ]


def test_once_with_an_empty_queue_exits_zero(project: str, start_worker: WorkerFactory) -> None:
    worker = start_worker("--once", "--project", project, "--command", "true")
    assert worker.wait(15) == 0
    assert "action=queue_empty" in worker.log()


def test_queued_run_wakes_an_idle_worker_through_listen(
    db: psycopg.Connection[Any], project: str, start_worker: WorkerFactory
) -> None:
    worker = start_worker("--project", project, "--poll-interval", "60", "--command", "true")
    worker.wait_log("action=listening")
    worker.wait_log("action=idle")
    time.sleep(0.3)  # well inside the 60 s poll interval
    run_id = queue_run(db, project)
    run = wait_status(db, run_id, {"success"}, timeout=10)
    latency = (run["claimed_at"] - run["queued_at"]).total_seconds()
    # Woken by the notification, not by the 60 s poll (the latency itself, with a budget of 1 s, is
    # a figure of bench/responsiveness.py).
    assert latency < 30, f"claimed {latency:.3f}s after being queued"
    worker.signal(signal.SIGTERM)
    assert worker.wait(10) == 0


def test_many_workers_claim_and_finish_every_run_exactly_once(
    db: psycopg.Connection[Any], project: str, start_worker: WorkerFactory
) -> None:
    from tests.worker.helpers import queue_runs

    run_ids = queue_runs(db, project, 500)
    workers = [
        start_worker("--project", project, "--poll-interval", "0.5", "--command", "true") for _ in range(8)
    ]

    def finished() -> bool:
        row = db.execute(
            "SELECT count(*) FROM ops.runs"
            " WHERE project_id = %s AND status IN ('success', 'failed', 'cancelled')",
            (project,),
        ).fetchone()
        return row is not None and row[0] == len(run_ids)

    wait_until(finished, 120, "all 500 runs to finish", interval=0.5)
    for worker in workers:
        worker.signal(signal.SIGTERM)
    for worker in workers:
        assert worker.wait(20) == 0
    stuck = db.execute(
        "SELECT count(*) FROM ops.runs WHERE project_id = %s AND status NOT IN ('success', 'failed')",
        (project,),
    ).fetchone()
    assert stuck == (0,)
    summary = db.execute(
        "SELECT status, attempt, count(*) FROM ops.runs WHERE project_id = %s GROUP BY 1, 2", (project,)
    ).fetchall()
    assert summary == [("success", 1, 500)]
    claims = db.execute(
        "SELECT e.run_id, count(*) FILTER (WHERE e.payload->>'to' = 'claimed'),"
        "       count(*) FILTER (WHERE e.payload->>'to' = 'success'), count(DISTINCT r.claimed_by)"
        "  FROM ops.run_events e JOIN ops.runs r USING (run_id)"
        " WHERE r.project_id = %s AND e.payload->>'kind' = 'status' GROUP BY e.run_id",
        (project,),
    ).fetchall()
    assert len(claims) == 500
    assert {row[1:] for row in claims} == {(1, 1, 1)}
    used = db.execute(
        "SELECT count(DISTINCT claimed_by) FROM ops.runs WHERE project_id = %s", (project,)
    ).fetchone()
    assert used is not None
    assert used[0] >= 4  # shared out (a slot that started late may find nothing left)
    assert sum(w.log().count("action=finished status=success") for w in workers) == 500


def test_hundred_thousand_lines_are_all_stored_in_order(
    db: psycopg.Connection[Any], project: str, start_worker: WorkerFactory, tmp_path: Path
) -> None:
    command = write_script(
        tmp_path,
        "loud.sh",
        "python3 - <<'PY'\n"
        "import sys\n"
        "for i in range(1, 100001):\n"
        "    sys.stdout.write(f'out {i}\\n')\n"
        "    if i % 1000 == 0:\n"
        "        sys.stderr.write(f'[warn] err {i // 1000}\\n')\n"
        "PY\n",
    )
    run_id = queue_run(db, project)
    assert start_worker("--once", "--project", project, "--command", command).wait(120) == 0
    assert run_row(db, run_id)["status"] == "success"
    rows = db.execute(
        "SELECT payload->>'stream', (payload->>'line')::int, message, level FROM ops.run_events"
        " WHERE run_id = %s AND payload ? 'stream' ORDER BY seq",
        (run_id,),
    ).fetchall()
    stdout = [(line, message) for stream, line, message, _ in rows if stream == "stdout"]
    assert stdout == [(i, f"out {i}") for i in range(1, 100001)]
    stderr = [(line, message, level) for stream, line, message, level in rows if stream == "stderr"]
    assert stderr == [(i, f"err {i}", "warn") for i in range(1, 101)]


def test_cancelling_kills_the_whole_process_group_then_takes_the_next_run(
    db: psycopg.Connection[Any], project: str, start_worker: WorkerFactory, tmp_path: Path
) -> None:
    _cancel_and_check(db, project, start_worker, tmp_path, poll_only=False)


def test_cancellation_is_noticed_by_polling_over_rest(
    db: psycopg.Connection[Any], project: str, start_rest_worker: WorkerFactory, tmp_path: Path
) -> None:
    _cancel_and_check(db, project, start_rest_worker, tmp_path, poll_only=True)


def _cancel_and_check(
    db: psycopg.Connection[Any], project: str, start: WorkerFactory, tmp_path: Path, *, poll_only: bool
) -> None:
    command = write_script(
        tmp_path,
        "tree.sh",
        'case "$ODOOOPS_METADATA" in *quick*) echo quick; exit 0;; esac\n'
        "sleep 300 &\n"
        'echo "child $!"\n'
        # A grandchild that ignores SIGTERM (the ignore survives exec): only SIGKILL stops it.
        'bash -c \'trap "" TERM; echo "grandchild $$"; exec sleep 300\' &\n'
        "wait\n",
    )
    run_id = queue_run(db, project)
    # With LISTEN the check interval is made longer than the test: only the notification can be
    # what stops the command. (How soon it is noticed is a figure of bench/responsiveness.py.)
    check = ["--cancel-check-interval", "2" if poll_only else "600"]
    worker = start(
        "--project", project, "--kill-grace", "1", "--poll-interval", "0.5", *check, "--command", command
    )

    def pids() -> list[int]:
        """[child, grandchild] once both printed their pid."""
        found = dict(e["message"].split() for e in output_lines(db, run_id))
        return [int(found["child"]), int(found["grandchild"])] if len(found) == 2 else []

    children = wait_until(pids, 15, "the command's children")
    leader = next(
        e["payload"]["pid"] for e in run_events(db, run_id) if e["payload"].get("kind") == "command"
    )
    db.execute("SELECT ops.cancel_run(%s, 'test', 'pytest')", (run_id,))
    cancelled_at = time.monotonic()
    # The child obeys SIGTERM: it dies as soon as the cancellation is noticed.
    wait_until(lambda: process_gone(children[0]), 60, "the child to die on SIGTERM", interval=0.01)
    noticed = time.monotonic() - cancelled_at
    assert not process_gone(children[1]), "the grandchild ignores SIGTERM: it must wait for the SIGKILL"
    wait_until(lambda: all(process_gone(pid) for pid in [leader, *children]), 60, "the process group to die")
    # The grandchild dies of the SIGKILL sent once the 1 s kill grace has passed, not before.
    assert time.monotonic() - cancelled_at >= 1.0, noticed
    worker.wait_log("action=run_stopped")
    assert run_row(db, run_id)["status"] == "cancelled"
    notes = [e["message"] for e in run_events(db, run_id) if e["payload"].get("kind") == "worker"]
    assert any("SIGTERM to process group" in note for note in notes)
    assert any("sent SIGKILL" in note for note in notes)
    next_run = queue_run(db, project, metadata={"quick": True})
    assert (
        wait_status(db, next_run, {"success"}, timeout=10)["claimed_by"] == run_row(db, run_id)["claimed_by"]
    )
    worker.signal(signal.SIGTERM)
    assert worker.wait(10) == 0


def test_a_missing_command_stops_the_worker_before_it_claims(
    db: psycopg.Connection[Any], project: str, start_worker: WorkerFactory, tmp_path: Path
) -> None:
    run_id = queue_run(db, project)
    worker = start_worker("--project", project, "--command", str(tmp_path / "missing.sh"))
    assert worker.wait(15) == 2
    assert "is not an executable file" in worker.log()
    assert run_row(db, run_id)["status"] == "queued"


def test_filters_restrict_what_is_claimed(
    db: psycopg.Connection[Any], project: str, start_worker: WorkerFactory
) -> None:
    build = queue_run(db, project)
    worker = start_worker("--once", "--project", project, "--workflow-type", "deploy", "--command", "true")
    assert worker.wait(15) == 0
    assert "action=queue_empty" in worker.log()
    assert run_row(db, build)["status"] == "queued"
    other_env = start_worker("--once", "--project", project, "--env", "staging", "--command", "true")
    assert other_env.wait(15) == 0
    assert run_row(db, build)["status"] == "queued"
    matching = start_worker(
        "--once", "--project", project, "--env", "dev", "--workflow-type", "build", "--command", "true"
    )
    assert matching.wait(15) == 0
    assert run_row(db, build)["status"] == "success"


def test_example_command_failing_on_demand(
    db: psycopg.Connection[Any], project: str, start_worker: WorkerFactory
) -> None:
    run_id = queue_run(db, project)
    env = {**FAST_DEMO, "ODOOOPS_DEMO_EXIT": "3"}
    assert start_worker("--once", "--project", project, "--command", EXAMPLE, env=env).wait(30) == 0
    run = run_row(db, run_id)
    assert (run["status"], run["exit_code"]) == ("failed", 3)
    failure = next(e for e in run_events(db, run_id) if e["payload"].get("kind") == "command_failed")
    assert failure["payload"]["stderr_tail"][-1] == "Build failed (demo exit code 3)"
    assert db.execute("SELECT count(*) FROM ops.artifacts WHERE run_id = %s", (run_id,)).fetchone() == (0,)
