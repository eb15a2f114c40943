"""Idle cost, heartbeats through silence, large output, a second stop signal, and REST-only workers."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.devstack import DevStack
from tests.devstack.faults import Fault, FaultPlan
from tests.worker.helpers import (
    WorkerFactory,
    WorkerProcess,
    fresh_connection,
    kill_group,
    output_lines,
    process_gone,
    queue_run,
    run_events,
    run_row,
    wait_status,
    wait_until,
    write_script,
)

MEASURE_SECONDS = 3.0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def claims_of(devstack: DevStack, project: str) -> int:
    return sum(
        1
        for record in devstack.server.requests
        if record.path.endswith("/rpc/claim_next_run")
        and (record.json_body() or {}).get("project_id") == project
    )


@pytest.fixture(params=["listen", "rest"])
def start_any_worker(
    request: pytest.FixtureRequest, start_worker: WorkerFactory, start_rest_worker: WorkerFactory
) -> WorkerFactory:
    """Workers with DATABASE_URL (LISTEN/NOTIFY), then workers with only the REST API."""
    return start_worker if request.param == "listen" else start_rest_worker


def test_an_idle_worker_does_not_busy_loop(
    devstack: DevStack, project: str, start_any_worker: WorkerFactory
) -> None:
    worker = start_any_worker("--project", project, "--poll-interval", "1", "--command", "true")
    worker.wait_log("action=idle")
    time.sleep(0.5)
    cpu_before, claims_before = cpu_seconds(worker.pid), claims_of(devstack, project)
    time.sleep(MEASURE_SECONDS)
    used = cpu_seconds(worker.pid) - cpu_before
    # A busy loop takes a whole core; an idle worker a fraction of a percent (its figure, with a
    # budget of 10 %, is measured by bench/responsiveness.py, not asserted here).
    assert used < 0.5 * MEASURE_SECONDS, f"{used:.2f}s of CPU in {MEASURE_SECONDS}s while idle"
    if (
        "mode=poll" in worker.log()
    ):  # REST: polling is the only way to learn of a run: once per --poll-interval
        claims = claims_of(devstack, project) - claims_before
        assert 1 <= claims <= MEASURE_SECONDS + 2, claims  # a busy loop made 65
    worker.signal(signal.SIGTERM)
    assert worker.wait(10) == 0


def test_a_silent_command_longer_than_the_lease_keeps_its_run(
    db: psycopg.Connection[Any], project: str, start_any_worker: WorkerFactory, tmp_path: Path
) -> None:
    command = write_script(tmp_path, "quiet.sh", "sleep 4.5\necho done\n")
    run_id = queue_run(db, project)
    # The worker runs recover_stalled_runs every second with a 2 s lease: only heartbeats keep
    # the run from being requeued while the command says nothing.
    worker = start_any_worker(
        "--once", "--project", project, "--lease", "2", "--heartbeat-interval", "0.5", "--command", command
    )
    assert worker.wait(30) == 0
    run = run_row(db, run_id)
    assert (run["status"], run["attempt"]) == ("success", 1), worker.log()
    assert [e["message"] for e in output_lines(db, run_id)] == ["done"]
    assert (run["heartbeat_at"] - run["started_at"]).total_seconds() >= 3.5
    assert "action=recovered" not in worker.log()


def test_megabytes_of_output_are_stored_whole_and_in_order(
    db: psycopg.Connection[Any], project: str, start_worker: WorkerFactory, tmp_path: Path
) -> None:
    command = write_script(
        tmp_path,
        "huge.sh",
        "python3 - <<'PY'\n"
        "import sys\n"
        "for i in range(1, 41):\n"
        "    sys.stdout.write(f'{i}:' + 'x' * 200_000 + '\\n')\n"
        "sys.stderr.write('[error] ' + 'y' * 3_000_000)\n"  # one 3 MB line, no newline at the end
        "PY\n",
    )
    run_id = queue_run(db, project)
    assert start_worker("--once", "--project", project, "--command", command).wait(120) == 0
    assert run_row(db, run_id)["status"] == "success"
    lines: dict[tuple[str, int], list[str]] = defaultdict(list)
    levels: dict[tuple[str, int], set[str]] = defaultdict(set)
    for event in run_events(db, run_id):  # in seq order
        payload = event["payload"]
        if "stream" in payload:
            key = (payload["stream"], payload["line"])
            assert payload.get("part", 1) == len(lines[key]) + 1  # pieces in order, none missing
            lines[key].append(event["message"])
            levels[key].add(event["level"])
    stdout = {number: "".join(parts) for (stream, number), parts in lines.items() if stream == "stdout"}
    assert stdout == {i: f"{i}:" + "x" * 200_000 for i in range(1, 41)}
    assert "".join(lines[("stderr", 1)]) == "y" * 3_000_000
    assert levels[("stderr", 1)] == {"error"}
    assert len(lines) == 41


def test_a_second_signal_skips_the_shutdown_grace(
    db: psycopg.Connection[Any], project: str, start_worker: WorkerFactory, tmp_path: Path
) -> None:
    command = write_script(tmp_path, "long.sh", "echo started\nexec sleep 300\n")
    run_id = queue_run(db, project)
    worker = start_worker(
        "--project", project, "--shutdown-grace", "60", "--kill-grace", "1", "--command", command
    )
    wait_until(lambda: output_lines(db, run_id), 15, "the command to start")
    pid = int(
        next(e["payload"]["pid"] for e in run_events(db, run_id) if e["payload"].get("kind") == "command")
    )
    worker.signal(signal.SIGTERM)
    worker.wait_log("action=shutdown_requested")
    time.sleep(0.5)
    assert run_row(db, run_id)["status"] == "running"  # still within the 60 s grace
    worker.signal(signal.SIGTERM)
    assert worker.wait(30) == 0  # well inside the 60 s grace: the second signal skipped it
    assert process_gone(pid)
    run = run_row(db, run_id)
    assert (run["status"], run["exit_code"]) == ("failed", 128 + signal.SIGTERM)
    assert "SIGTERM" in run["status_reason"]
    assert "a second signal ended its grace period" in run["status_reason"]
    assert "action=shutdown_forced" in worker.log()


def test_a_rest_only_worker_runs_and_recovers_a_run_whose_worker_was_killed(
    db: psycopg.Connection[Any], project: str, start_rest_worker: WorkerFactory, tmp_path: Path
) -> None:
    busy = write_script(tmp_path, "busy.sh", "echo working\nexec sleep 300\n")
    quick = write_script(tmp_path, "quick.sh", 'echo "attempt $ODOOOPS_ATTEMPT"\n')
    run_id = queue_run(db, project)
    doomed = start_rest_worker("--project", project, "--poll-interval", "0.5", "--command", busy)
    wait_until(lambda: output_lines(db, run_id), 15, "the first attempt to start")
    assert run_row(db, run_id)["status"] == "running"
    doomed.signal(signal.SIGKILL)
    doomed.wait(10)
    pid = int(
        next(e["payload"]["pid"] for e in run_events(db, run_id) if e["payload"].get("kind") == "command")
    )
    kill_group(pid)  # the orphaned command, as a lost host would take it along
    db.execute("UPDATE ops.runs SET heartbeat_at = now() - interval '1 hour' WHERE run_id = %s", (run_id,))

    rescuer: WorkerProcess = start_rest_worker(
        "--project", project, "--poll-interval", "0.5", "--command", quick
    )
    run = wait_status(db, run_id, {"success", "failed"}, timeout=20)
    assert (run["status"], run["attempt"]) == ("success", 2)
    assert run["claimed_by"].endswith(f"-{rescuer.pid}")
    assert [e["message"] for e in output_lines(db, run_id)] == ["working", "attempt 2"]
    log = rescuer.log()
    assert "mode=poll" in log  # REST: no DATABASE_URL in its environment
    assert f"action=recovered run={run_id}" in log
    rescuer.signal(signal.SIGTERM)
    assert rescuer.wait(10) == 0


@pytest.fixture
def faults(devstack: DevStack) -> Iterator[FaultPlan]:
    """The REST server's fault plan, cleared after the test (the server is shared)."""
    yield devstack.server.faults
    devstack.server.faults.clear()


@pytest.mark.slow
def test_a_rest_only_worker_loses_nothing_across_lost_answers_and_a_database_restart(
    devstack: DevStack,
    project: str,
    start_rest_worker: WorkerFactory,
    tmp_path: Path,
    faults: FaultPlan,
) -> None:
    pg_dsn = devstack.database_url
    total = 800
    command = write_script(
        tmp_path,
        "ticker.sh",
        "python3 - <<'PY'\n"
        "import sys, time\n"
        f"for i in range(1, {total + 1}):\n"
        "    print(f'tick {i}', flush=True)\n"
        "    time.sleep(0.005)\n"
        "PY\n",
    )
    with psycopg.connect(pg_dsn, autocommit=True) as db:
        run_id = queue_run(db, project)
    worker = start_rest_worker(
        "--project", project, "--poll-interval", "0.5", "--heartbeat-interval", "1", "--command", command
    )
    with psycopg.connect(pg_dsn, autocommit=True) as db:
        wait_until(lambda: len(output_lines(db, run_id)) > 100, 20, "the first lines")
    # Appends whose answers are lost after the database applied them, appends and heartbeats
    # refused, then the database itself restarts.
    faults.push(
        Fault.drop(path="rpc/append_events", after=True, times=2),
        Fault.unavailable(path="rpc/append_events", times=2),
        Fault.unavailable(path="rpc/heartbeat_run", times=2),
    )
    wait_until(lambda: not [f for f in faults.pending() if "append" in (f.path or "")], 10, "the faults")
    devstack.cluster.restart()
    with fresh_connection(pg_dsn) as db:
        run = wait_status(db, run_id, {"success", "failed", "cancelled"}, timeout=60)
        assert (run["status"], run["attempt"]) == ("success", 1)
        lines = [(e["payload"]["line"], e["message"]) for e in output_lines(db, run_id)]
    assert lines == [(i, f"tick {i}") for i in range(1, total + 1)]
    # The appends whose answers were lost were sent again with their batch keys: every line
    # above is there exactly once, in order.
    worker.signal(signal.SIGTERM)
    assert worker.wait(10) == 0


def test_a_rest_only_worker_whose_claim_answer_was_lost_gets_the_run_in_the_same_attempt(
    db: psycopg.Connection[Any], project: str, start_rest_worker: WorkerFactory, faults: FaultPlan
) -> None:
    # The claim is applied, its answer lost: the repeat with the same claim token returns the run
    # that token claimed, so no lease expires and no attempt is burnt.
    run_id = queue_run(db, project)
    faults.push(Fault.drop(path="rpc/claim_next_run", after=True))
    worker = start_rest_worker(
        "--project", project, "--poll-interval", "0.5", "--lease", "2", "--heartbeat-interval", "0.5",
        "--command", "true",
    )  # fmt: skip
    run = wait_status(db, run_id, {"success", "failed"}, timeout=20)
    assert (run["status"], run["attempt"]) == ("success", 1)
    assert not faults.pending()  # the fault did fire
    assert db.execute("SELECT count(*) FROM ops.run_claims WHERE run_id = %s", (run_id,)).fetchone() == (1,)
    assert "action=recovered" not in worker.log()


def test_stop_signals_in_a_burst_still_end_in_a_clean_exit(project: str, start_worker: WorkerFactory) -> None:
    # Ctrl-C pressed repeatedly, or a supervisor that signals again: every signal until the
    # process is gone must find the worker's handler, never the default one (death by signal).
    worker = start_worker("--project", project, "--command", "true")
    worker.wait_log("action=idle")
    deadline = time.monotonic() + 10
    while worker.popen.poll() is None and time.monotonic() < deadline:
        with contextlib.suppress(ProcessLookupError):
            worker.signal(signal.SIGTERM)
        time.sleep(0.005)
    assert worker.wait(5) == 0, worker.log()
    assert "action=worker_stopped exit_code=0" in worker.log()
