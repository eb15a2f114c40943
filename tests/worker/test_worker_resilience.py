"""Worker processes that are killed, stopped, or lose their database, and what happens to the runs."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.devstack import DevStack
from tests.worker.helpers import (
    WorkerFactory,
    fresh_connection,
    kill_group,
    live_group_members,
    output_lines,
    process_gone,
    queue_run,
    run_events,
    run_row,
    wait_status,
    wait_until,
    write_script,
)

TERMINATE_WORKER_CONNECTIONS = (
    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
    " WHERE application_name LIKE 'odooops%%' AND pid <> pg_backend_pid()"
)


def command_pid(db: psycopg.Connection[Any], run_id: str, key: str = "pid") -> int:
    """The command's pid (or, with ``key="pgid"``, its process group) from its "Started" event."""
    return int(
        next(e["payload"][key] for e in run_events(db, run_id) if e["payload"].get("kind") == "command")
    )


def test_sigkilled_worker_runs_are_recovered_by_another_worker(
    db: psycopg.Connection[Any], project: str, start_worker: WorkerFactory, tmp_path: Path
) -> None:
    busy = write_script(tmp_path, "busy.sh", "echo working\nexec sleep 300\n")
    quick = write_script(tmp_path, "quick.sh", 'echo "attempt $ODOOOPS_ATTEMPT"\n')
    requeued, exhausted = queue_run(db, project), queue_run(db, project)
    doomed = start_worker("--project", project, "--concurrency", "2", "--command", busy)
    for run_id in (requeued, exhausted):
        wait_until(lambda run_id=run_id: output_lines(db, run_id), 15, f"{run_id} to start")
    doomed.signal(signal.SIGKILL)
    doomed.wait(10)
    for run_id in (requeued, exhausted):
        kill_group(command_pid(db, run_id, "pgid"))  # sooner than their guards would
        assert run_row(db, run_id)["status"] == "running"
    # The lease expires (without waiting for it); one run already used its last attempt.
    db.execute(
        "UPDATE ops.runs SET heartbeat_at = now() - interval '1 hour' WHERE run_id = ANY(%s)",
        ([requeued, exhausted],),
    )
    db.execute("UPDATE ops.runs SET attempt = 3 WHERE run_id = %s", (exhausted,))

    rescuer = start_worker("--project", project, "--lease", "60", "--max-attempts", "3", "--command", quick)
    done = wait_status(db, requeued, {"success", "failed"}, timeout=15)
    assert (done["status"], done["attempt"]) == ("success", 2)
    assert done["claimed_by"].endswith(f"-{rescuer.pid}")
    assert [e["message"] for e in output_lines(db, requeued)] == ["working", "attempt 2"]
    requeue_event = next(
        e for e in run_events(db, requeued) if e["payload"].get("to") == "queued" and e["seq"] > 1
    )
    assert requeue_event["level"] == "warn"
    assert "sent no heartbeat" in requeue_event["message"]
    assert "requeued" in requeue_event["message"]
    failed = run_row(db, exhausted)
    assert failed["status"] == "failed"
    assert "no attempts left" in failed["status_reason"]
    assert "action=recovered" in rescuer.log()


def test_a_sigkilled_workers_silent_command_dies_with_it(
    db: psycopg.Connection[Any], project: str, start_worker: WorkerFactory, tmp_path: Path
) -> None:
    """A command that writes nothing for minutes, and its child, are stopped when their worker is
    SIGKILLed, long before the lease would let another worker start the run again."""
    pid_file = tmp_path / "command.pid"
    silent = write_script(tmp_path, "silent.sh", f"echo $$ > {pid_file}\nsleep 300 &\nwait\n")
    run_id = queue_run(db, project)
    worker = start_worker("--project", project, "--command", silent)
    wait_status(db, run_id, {"running"}, timeout=15)
    pid = int(wait_until(lambda: pid_file.exists() and pid_file.read_text().strip(), 15, "the command"))
    pgid = os.getpgid(pid)
    started = wait_until(
        lambda: [e for e in run_events(db, run_id) if e["payload"].get("kind") == "command"],
        15,
        "the command's Started event",
    )
    assert (started[0]["payload"]["pid"], started[0]["payload"]["pgid"]) == (pid, pgid)
    wait_until(lambda: len(live_group_members(pgid)) >= 3, 15, "the guard, the command and its sleep")
    assert pid in live_group_members(pgid)

    worker.signal(signal.SIGKILL)
    assert worker.wait(10) == -signal.SIGKILL
    wait_until(lambda: not live_group_members(pgid), 30, f"process group {pgid} to be stopped")
    assert run_row(db, run_id)["status"] == "running"  # nothing recorded: the lease requeues it


def test_a_worker_that_lost_its_run_stops_the_command(
    db: psycopg.Connection[Any], project: str, start_worker: WorkerFactory, tmp_path: Path
) -> None:
    command = write_script(
        tmp_path,
        "second_try.sh",
        'echo "attempt $ODOOOPS_ATTEMPT"\n[ "$ODOOOPS_ATTEMPT" -ge 2 ] && exit 0\nexec sleep 300\n',
    )
    run_id = queue_run(db, project)
    worker = start_worker("--project", project, "--kill-grace", "1", "--command", command)
    wait_until(lambda: output_lines(db, run_id), 15, "the first attempt to start")
    first_pid = command_pid(db, run_id)
    # Another worker's recovery decides this one stalled (its heartbeat is made to look old).
    db.execute("UPDATE ops.runs SET heartbeat_at = now() - interval '1 hour' WHERE run_id = %s", (run_id,))
    assert db.execute("SELECT count(*) FROM ops.recover_stalled_runs(60, 3)").fetchone() == (1,)
    wait_until(lambda: process_gone(first_pid), 5, "the first attempt's command to be stopped")
    run = wait_status(db, run_id, {"success", "failed"}, timeout=15)
    assert (run["status"], run["attempt"]) == ("success", 2)  # requeued, claimed again, done
    assert [e["message"] for e in output_lines(db, run_id)] == ["attempt 1", "attempt 2"]
    log = worker.log()
    assert "action=stop_requested reason=lost" in log
    # Attempt fencing: once the run was requeued, attempt 1 can no longer write into it; its
    # closing note is refused and dropped, so the run's log holds nothing attempt 1 wrote after it.
    assert "action=events_dropped" in log
    assert "attempt 1 was superseded" in log
    stopped = [e for e in run_events(db, run_id) if e["payload"].get("kind") == "command_stopped"]
    assert stopped == []


def test_sigterm_lets_the_current_run_finish_and_claims_nothing_more(
    db: psycopg.Connection[Any], project: str, start_worker: WorkerFactory, tmp_path: Path
) -> None:
    command = write_script(tmp_path, "steady.sh", "echo begin\nsleep 1.5\necho end\n")
    first = queue_run(db, project)
    worker = start_worker("--project", project, "--shutdown-grace", "10", "--command", command)
    wait_until(lambda: output_lines(db, first), 15, "the first run to start")
    second = queue_run(db, project)
    worker.signal(signal.SIGTERM)
    assert worker.wait(10) == 0
    assert run_row(db, first)["status"] == "success"
    assert [e["message"] for e in output_lines(db, first)] == ["begin", "end"]
    assert run_row(db, second)["status"] == "queued"
    assert "action=shutdown_requested signal=SIGTERM" in worker.log()


def test_sigterm_past_the_grace_fails_the_run_and_kills_its_processes(
    db: psycopg.Connection[Any], project: str, start_worker: WorkerFactory, tmp_path: Path
) -> None:
    command = write_script(tmp_path, "endless.sh", 'sleep 300 &\necho "child $!"\nwait\n')
    run_id = queue_run(db, project)
    worker = start_worker(
        "--project", project, "--shutdown-grace", "1", "--kill-grace", "1", "--command", command
    )
    lines = wait_until(lambda: output_lines(db, run_id), 15, "the command to start")
    child, leader = int(lines[0]["message"].split()[1]), command_pid(db, run_id)
    started = time.monotonic()
    worker.signal(signal.SIGINT)
    assert worker.wait(60) == 0  # the command sleeps 300 s: only the graces can have ended it
    assert time.monotonic() - started >= 1.0  # not before the 1 s shutdown grace
    assert process_gone(child)
    assert process_gone(leader)
    run = run_row(db, run_id)
    assert run["status"] == "failed"
    assert "SIGINT" in run["status_reason"]
    assert "--shutdown-grace 1s" in run["status_reason"]
    assert run["exit_code"] == 128 + signal.SIGTERM


def test_idle_worker_survives_a_database_restart_and_dropped_connections(
    devstack: DevStack, pg_dsn: str, project: str, start_worker: WorkerFactory
) -> None:
    worker = start_worker("--project", project, "--poll-interval", "60", "--command", "true")
    worker.wait_log("action=idle")
    devstack.cluster.restart()
    worker.wait_log("action=listening", count=2, timeout=20)
    with fresh_connection(pg_dsn) as db:
        after_restart = queue_run(db, project)
        assert wait_status(db, after_restart, {"success"}, timeout=15)["attempt"] == 1
        worker.wait_log("action=idle", count=2)
        terminated = db.execute(TERMINATE_WORKER_CONNECTIONS).fetchone()
        assert terminated is not None
        assert terminated[0] >= 2
        worker.wait_log("action=listening", count=3, timeout=20)
        after_terminate = queue_run(db, project)
        assert wait_status(db, after_terminate, {"success"}, timeout=15)["attempt"] == 1
    worker.signal(signal.SIGTERM)
    assert worker.wait(10) == 0


@pytest.mark.slow
def test_running_worker_loses_no_event_across_dropped_connections_and_a_restart(
    devstack: DevStack, pg_dsn: str, project: str, start_worker: WorkerFactory, tmp_path: Path
) -> None:
    total = 1200
    command = write_script(
        tmp_path,
        "ticker.sh",
        "python3 - <<'PY'\n"
        "import sys, time\n"
        f"for i in range(1, {total + 1}):\n"
        "    print(f'tick {i}', flush=True)\n"
        "    time.sleep(0.004)\n"
        "PY\n",
    )
    with fresh_connection(pg_dsn) as db:
        run_id = queue_run(db, project)
    worker = start_worker("--project", project, "--heartbeat-interval", "1", "--command", command)
    with fresh_connection(pg_dsn) as db:
        wait_until(lambda: len(output_lines(db, run_id)) > 100, 20, "the first lines")
        for _ in range(3):
            db.execute(TERMINATE_WORKER_CONNECTIONS)
            time.sleep(0.3)
    devstack.cluster.restart()
    with fresh_connection(pg_dsn) as db:
        run = wait_status(db, run_id, {"success", "failed", "cancelled"}, timeout=60)
        assert (run["status"], run["attempt"]) == ("success", 1)
        lines = [(e["payload"]["line"], e["message"]) for e in output_lines(db, run_id)]
    assert lines == [(i, f"tick {i}") for i in range(1, total + 1)]
    # (The store retried the calls the terminated connections and the restart cut: every call is
    # sent again with its repeat key, so the lines above are all there, each once.)
    worker.signal(signal.SIGTERM)
    assert worker.wait(10) == 0
