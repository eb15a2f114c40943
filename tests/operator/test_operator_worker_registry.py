"""Workers register in ops.workers while idle, show the run they execute, and say when they stop."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.devstack import DevStack
from tests.worker.helpers import WorkerFactory, new_project, queue_run, wait_until, write_script


@pytest.fixture(params=["postgres", "rest"])
def workers(request: pytest.FixtureRequest, tmp_path: Path, devstack: DevStack) -> Iterator[WorkerFactory]:
    env = (
        {"DATABASE_URL": devstack.database_url}
        if request.param == "postgres"
        else {"SUPABASE_URL": devstack.url, "SUPABASE_SERVICE_ROLE_KEY": devstack.service_role_key}
    )
    factory = WorkerFactory(tmp_path, env)
    yield factory
    factory.stop_all()


def row(db: psycopg.Connection[Any], worker_id: str) -> dict[str, Any] | None:
    with db.cursor(row_factory=psycopg.rows.dict_row) as cur:
        return cur.execute("SELECT * FROM ops.workers WHERE worker_id = %s", (worker_id,)).fetchone()


def test_idle_busy_and_stopped(workers: WorkerFactory, db: psycopg.Connection[Any], tmp_path: Path) -> None:
    project = new_project(db)
    name = f"reg-{project}"
    script = write_script(tmp_path, "slow.sh", "#!/bin/sh\necho working\nsleep 3\n")
    worker = workers(
        "--command", script, "--project", project, "--worker-name", name, "--poll-interval", "0.5"
    )
    try:
        idle = wait_until(lambda: row(db, name), 20, "the idle worker's registration")
        assert idle["state"] == "idle"
        assert idle["filters"] == {"project_id": project}
        assert idle["pid"] == worker.pid
        run_id = queue_run(db, project)
        busy = wait_until(lambda: (r := row(db, name)) and r["state"] == "busy" and r, 20, "the busy state")
        assert busy["current_run_id"] == run_id
        wait_until(lambda: (r := row(db, name)) and r["state"] == "idle", 30, "idle again after the run")
        worker.signal(signal.SIGTERM)
        assert worker.wait(30) == 0
        stopped = row(db, name)
        assert stopped is not None
        assert stopped["state"] == "stopped"
        assert stopped["current_run_id"] is None
    finally:
        db.execute("DELETE FROM ops.workers WHERE worker_id = %s", (name,))
        db.execute("DELETE FROM ops.projects WHERE project_id = %s", (project,))


def test_an_idle_worker_keeps_checking_in(monkeypatch: pytest.MonkeyPatch, devstack: DevStack) -> None:
    """The registry beats on its interval with nothing else happening (driven in-process)."""
    from odooops_action.models import ClaimFilter
    from odooops_action.store.pg import PgStore
    from odooops_action.worker.log import WorkerLog
    from odooops_action.worker.registry import WorkerRegistry

    beats: list[str] = []
    from odooops_action.operator import calls

    real_call = calls.call

    def counting(store: Any, function: str, arguments: Any) -> Any:
        beats.append(arguments["state"])
        return real_call(store, function, arguments)

    monkeypatch.setattr(calls, "call", counting)
    registry = WorkerRegistry(
        lambda: PgStore(devstack.database_url), ["reg-beat"], ClaimFilter(), WorkerLog(), interval=0.05
    )
    registry.start()
    try:
        wait_until(lambda: len(beats) >= 3, 20, "three beats while idle")
    finally:
        registry.stop()
        with psycopg.connect(devstack.database_url, autocommit=True) as db:
            db.execute("DELETE FROM ops.workers WHERE worker_id = 'reg-beat'")
    assert set(beats[:3]) == {"idle"}
    assert beats[-1] == "stopped"


def test_a_role_without_worker_beat_is_reported_once_and_the_worker_goes_on(devstack: DevStack) -> None:
    from odooops_action.config import ConnectionSettings
    from odooops_action.models import ClaimFilter
    from odooops_action.store.factory import open_store
    from odooops_action.worker.registry import WorkerRegistry

    logged: list[str] = []

    def log(action: str, **fields: Any) -> None:
        logged.append(action)

    # A key the server refuses (401): what a worker role without the grant sees.
    refused = ConnectionSettings(supabase_url=devstack.url, supabase_key="sb_secret_not_a_key_of_this_stack")
    registry = WorkerRegistry(
        lambda: open_store(refused, "rest"),
        ["reg-refused"],
        ClaimFilter(),
        log,
        interval=0.05,
    )
    registry.start()
    wait_until(lambda: "registry_unavailable" in logged, 20, "the refusal logged")
    registry.stop()
    assert logged.count("registry_unavailable") == 1
    assert "registry_failed" not in logged
