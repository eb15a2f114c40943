"""``odooops wait`` streams every event exactly once and in order while a worker is still writing.

A thread appends 3,000 events (small batches, then one burst bigger than a poll's page) while
the CLI waits in a real process. Over REST, the server's request log shows that each poll is a
single ``rpc/poll_run_delta`` request, that the cursor only moves forward, that a burst is drained
page by page, and that the run travels only when its revision moved.
"""

from __future__ import annotations

import itertools
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from odooops_action.models import NewEvent
from odooops_action.store.pg import PgStore
from tests.devstack import DevStack
from tests.lifecycle.helpers import Backend, cli_command, cli_environment, run_in_status

SMALL_BATCHES = 20
SMALL_BATCH = 25
BURST = 2500
TOTAL = SMALL_BATCHES * SMALL_BATCH + BURST
WORKER = "worker-lc"
POLL_INTERVAL = 0.5


def batch(start: int, size: int) -> list[NewEvent]:
    levels = ("debug", "info", "warn", "error")
    return [NewEvent(level=levels[n % 4], message=f"stream line {n:05d}") for n in range(start, start + size)]


def write_log_then_finish(dsn: str, run_id: str) -> None:
    with PgStore(dsn) as store:
        for number in range(SMALL_BATCHES):
            store.append_events(run_id, batch(number * SMALL_BATCH, SMALL_BATCH))
            time.sleep(0.02)
        store.append_events(run_id, batch(SMALL_BATCHES * SMALL_BATCH, BURST))
        store.finish_run(run_id, WORKER, "success", exit_code=0)


def all_event_lines(db: psycopg.Connection[Any], run_id: str) -> list[str]:
    rows = db.execute("SELECT level, message FROM ops.run_events WHERE run_id = %s ORDER BY seq", (run_id,))
    return [f"[{level}] {message}" for level, message in rows.fetchall()]


@pytest.fixture
def streamed(
    backend: Backend, devstack: DevStack, project: str, pg_store: PgStore, tmp_path: Path
) -> dict[str, Any]:
    """Run the CLI's wait while the log is written; what it printed and how long it took."""
    run = run_in_status(pg_store, project, "running", worker=WORKER)
    writer = threading.Thread(target=write_log_then_finish, args=(devstack.database_url, run.run_id))
    started = time.monotonic()
    with subprocess.Popen(
        cli_command("wait", run.run_id, "60", str(POLL_INTERVAL)),
        env=cli_environment(backend.cli_env),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as waiting:
        assert waiting.stderr is not None
        assert waiting.stdout is not None
        first_lines = [waiting.stderr.readline()]
        while not first_lines[-1].startswith("Status: ") and first_lines[-1]:
            first_lines.append(waiting.stderr.readline())  # the events so far, then their status
        assert first_lines[-1] == "Status: running - waiting...\n"
        writer.start()
        rest = waiting.stderr.read()  # not communicate(): it would skip what readline() buffered
        stdout = waiting.stdout.read()
        waiting.wait(timeout=30)
    writer.join(timeout=30)
    return {
        "run_id": run.run_id,
        "returncode": waiting.returncode,
        "stdout": stdout,
        "lines": "".join(first_lines).splitlines() + rest.splitlines(),
        "seconds": time.monotonic() - started,
    }


def test_every_event_is_printed_once_in_order(streamed: dict[str, Any], db: psycopg.Connection[Any]) -> None:
    assert (streamed["returncode"], streamed["stdout"]) == (0, "success\n")
    printed = [line for line in streamed["lines"] if line.startswith("[")]
    expected = all_event_lines(db, streamed["run_id"])
    assert len(expected) > TOTAL  # the log lines plus the status events
    assert printed == expected
    assert streamed["lines"][-1] == f"Run completed successfully: {streamed['run_id']}"


@pytest.mark.parametrize("backend", ["rest"], indirect=True)
def test_each_poll_is_one_request_and_the_cursor_moves_forward(
    streamed: dict[str, Any], devstack: DevStack, db: psycopg.Connection[Any]
) -> None:
    requests = [
        record
        for record in devstack.server.requests
        if record.body and (record.json_body() or {}).get("run_id") == streamed["run_id"]
    ]
    assert {(record.method, record.path) for record in requests} == {("POST", "/rest/v1/rpc/poll_run_delta")}
    cursors = [record.json_body()["after_seq"] for record in requests]
    assert cursors == sorted(cursors)
    steps = [later - earlier for earlier, later in itertools.pairwise(cursors)]
    assert 1000 in steps, f"the burst was not drained page by page: {steps}"
    assert all(step <= 1000 for step in steps)
    last_seq = len(all_event_lines(db, streamed["run_id"]))
    assert cursors[-1] < last_seq  # the last poll asked for (and got) the final events
    # One poll per interval, plus the pages of a backlog: no busy loop, whatever the number of events.
    assert len(requests) <= streamed["seconds"] / POLL_INTERVAL + last_seq / 1000 + 2
    # The CLI asks for the run only when it changed: the first time, then with the revision it has.
    known = [record.json_body()["known_revision"] for record in requests]
    assert known[0] is None
    assert all(isinstance(revision, int) for revision in known[1:])
