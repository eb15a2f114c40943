"""Writes that go around the queue's functions cannot break it, whoever holds the service key.

The state machine tests cover status changes; these cover the rest of what a client with the
service_role key could try directly on the tables, over REST and over SQL: choosing an event's
``seq`` (which would break the exactly-once cursor of every waiter), rewinding or jumping the event
counter, rewriting the attempt counter, editing or deleting logged events, inserting a run that is
not queued, and deleting a run that a worker may hold.
"""

from __future__ import annotations

from typing import Any

import httpx
import psycopg
import pytest
from psycopg import sql

from odooops_action.models import NewEvent, Run
from odooops_action.store.pg import PgStore
from tests.devstack import DevStack
from tests.lifecycle.helpers import new_sha, rest_headers, run_in_status

WRITERS = ("sql", "rest")
ACTIVE = ("queued", "claimed", "running")
FINISHED = ("success", "failed", "cancelled")


def as_service_role(db: psycopg.Connection[Any], statement: sql.Composable | str, params: Any = None) -> None:
    with db.transaction():
        db.execute("SET LOCAL ROLE service_role")
        db.execute(statement, params)


def sql_refusal(db: psycopg.Connection[Any], statement: sql.Composable | str, params: Any = None) -> str:
    """The SQLSTATE of the refused statement (fails the test if it was accepted)."""
    with pytest.raises(psycopg.Error) as refused:
        as_service_role(db, statement, params)
    return str(refused.value.sqlstate)


def rest(stack: DevStack, method: str, table: str, **kwargs: Any) -> httpx.Response:
    headers = {**rest_headers(stack.service_role_key), "Prefer": "return=representation"}
    return httpx.request(method, f"{stack.url}/rest/v1/{table}", headers=headers, timeout=10, **kwargs)


def events_of(db: psycopg.Connection[Any], run_id: str) -> list[tuple[int, str]]:
    rows = db.execute("SELECT seq, message FROM ops.run_events WHERE run_id = %s ORDER BY seq", (run_id,))
    return [(int(seq), str(message)) for seq, message in rows.fetchall()]


def row_of(db: psycopg.Connection[Any], run_id: str) -> dict[str, Any] | None:
    row = db.execute("SELECT to_jsonb(r.*) FROM ops.runs r WHERE run_id = %s", (run_id,)).fetchone()
    return None if row is None else dict(row[0])


@pytest.fixture
def running(pg_store: PgStore, project: str) -> Run:
    return run_in_status(pg_store, project, "running")


# -- event sequence numbers ---------------------------------------------------------------------


@pytest.mark.parametrize("writer", WRITERS)
def test_an_event_cannot_be_inserted_with_a_chosen_seq(
    writer: str, devstack: DevStack, db: psycopg.Connection[Any], pg_store: PgStore, running: Run
) -> None:
    before = events_of(db, running.run_id)
    cursor = before[-1][0]  # a waiter that has seen everything so far
    if writer == "sql":
        statement = "INSERT INTO ops.run_events (run_id, seq, message) VALUES (%s, %s, 'jump')"
        assert sql_refusal(db, statement, (running.run_id, cursor + 1000)) == "42501"
    else:
        body = {"run_id": running.run_id, "seq": cursor + 1000, "message": "jump"}
        response = rest(devstack, "POST", "run_events", json=body)
        assert (response.status_code, response.json()["code"]) == (403, "42501")
    assert events_of(db, running.run_id) == before
    # The counter is intact: the next line gets the next number and the waiter sees it.
    assert pg_store.append_events(running.run_id, [NewEvent(message="next")]) == cursor + 1
    assert [event.message for event in pg_store.poll_run(running.run_id, after_seq=cursor).events] == ["next"]


@pytest.mark.parametrize("writer", WRITERS)
def test_an_event_inserted_directly_gets_the_next_seq(
    writer: str, devstack: DevStack, db: psycopg.Connection[Any], running: Run
) -> None:
    """The guide's scenario 6 inserts log lines into ops.run_events itself; that still works."""
    last = events_of(db, running.run_id)[-1][0]
    if writer == "sql":
        statement = (
            "INSERT INTO ops.run_events (run_id, level, message, payload) VALUES (%s, 'warn', 'direct', '{}')"
        )
        as_service_role(db, statement, (running.run_id,))
    else:
        body = {"run_id": running.run_id, "level": "warn", "message": "direct", "payload": {"step": 1}}
        response = rest(devstack, "POST", "run_events", json=body)
        assert response.status_code == 201, response.text
        assert response.json()[0]["seq"] == last + 1
    assert events_of(db, running.run_id)[-1] == (last + 1, "direct")


@pytest.mark.parametrize("writer", WRITERS)
@pytest.mark.parametrize("change", [{"seq": 1}, {"seq": 10_000}, {"message": "rewritten"}])
def test_a_logged_event_cannot_be_edited(
    writer: str, change: dict[str, Any], devstack: DevStack, db: psycopg.Connection[Any], running: Run
) -> None:
    before = events_of(db, running.run_id)
    last = before[-1][0]
    if writer == "sql":
        assignments = sql.SQL(", ").join(
            sql.SQL("{} = {}").format(sql.Identifier(column), sql.Literal(value))
            for column, value in change.items()
        )
        statement = sql.SQL("UPDATE ops.run_events SET {} WHERE run_id = {} AND seq = {}").format(
            assignments, sql.Literal(running.run_id), sql.Literal(last)
        )
        assert sql_refusal(db, statement) == "42501"
    else:
        response = rest(
            devstack,
            "PATCH",
            "run_events",
            params={"run_id": f"eq.{running.run_id}", "seq": f"eq.{last}"},
            json=change,
        )
        assert (response.status_code, response.json()["code"]) == (403, "42501")
    assert events_of(db, running.run_id) == before


@pytest.mark.parametrize("writer", WRITERS)
def test_a_logged_event_cannot_be_deleted(
    writer: str, devstack: DevStack, db: psycopg.Connection[Any], pg_store: PgStore, running: Run
) -> None:
    """A hole could be refilled below a waiter's cursor; events go only with their run."""
    before = events_of(db, running.run_id)
    if writer == "sql":
        statement = "DELETE FROM ops.run_events WHERE run_id = %s AND seq = 1"
        assert sql_refusal(db, statement, (running.run_id,)) == "42501"
    else:
        response = rest(
            devstack, "DELETE", "run_events", params={"run_id": f"eq.{running.run_id}", "seq": "eq.1"}
        )
        assert (response.status_code, response.json()["code"]) == (403, "42501")
    assert events_of(db, running.run_id) == before


# -- counters of the run row --------------------------------------------------------------------


@pytest.mark.parametrize("writer", WRITERS)
@pytest.mark.parametrize(
    "change", [{"event_seq": 0}, {"event_seq": 1_000_000}, {"attempt": 0}, {"attempt": 9}]
)
def test_the_run_counters_cannot_be_rewritten(
    writer: str,
    change: dict[str, Any],
    *,
    devstack: DevStack,
    db: psycopg.Connection[Any],
    pg_store: PgStore,
    running: Run,
) -> None:
    before = row_of(db, running.run_id)
    if writer == "sql":
        ((column, value),) = change.items()
        statement = sql.SQL("UPDATE ops.runs SET {} = {} WHERE run_id = {}").format(
            sql.Identifier(column), sql.Literal(value), sql.Literal(running.run_id)
        )
        assert sql_refusal(db, statement) == "42501"
    else:
        response = rest(devstack, "PATCH", "runs", params={"run_id": f"eq.{running.run_id}"}, json=change)
        assert (response.status_code, response.json()["code"]) == (403, "42501")
    assert row_of(db, running.run_id) == before
    assert before is not None
    assert (
        pg_store.append_events(running.run_id, [NewEvent(message="still counting")])
        == before["event_seq"] + 1
    )


# -- inserting and deleting runs ----------------------------------------------------------------


@pytest.mark.parametrize("writer", WRITERS)
@pytest.mark.parametrize("status", ["claimed", "running", "success", "failed", "cancelled"])
def test_a_run_cannot_be_inserted_in_another_status_than_queued(
    writer: str, status: str, devstack: DevStack, db: psycopg.Connection[Any], project: str
) -> None:
    sha = new_sha()
    row = {
        "run_id": f"run-20260101-000000-{sha[:7]}",
        "project_id": project,
        "env_id": "dev",
        "workflow_type": "build",
        "git_sha": sha,
        "git_ref": "main",
        "status": status,
        "claimed_by": "intruder",
    }
    if writer == "sql":
        columns = sql.SQL(", ").join(map(sql.Identifier, row))
        statement = sql.SQL("INSERT INTO ops.runs ({}) VALUES ({})").format(
            columns, sql.SQL(", ").join(map(sql.Literal, row.values()))
        )
        assert sql_refusal(db, statement) == "PT409"
    else:
        response = rest(devstack, "POST", "runs", json=row)
        assert (response.status_code, response.json()["code"]) == (409, "PT409")
        assert "created in status queued" in response.json()["message"]
    assert row_of(db, row["run_id"]) is None


@pytest.mark.parametrize("writer", WRITERS)
@pytest.mark.parametrize("status", ACTIVE)
def test_an_active_run_cannot_be_deleted(
    writer: str,
    status: str,
    *,
    devstack: DevStack,
    db: psycopg.Connection[Any],
    pg_store: PgStore,
    project: str,
) -> None:
    run = run_in_status(pg_store, project, status)
    before = row_of(db, run.run_id)
    if writer == "sql":
        assert sql_refusal(db, "DELETE FROM ops.runs WHERE run_id = %s", (run.run_id,)) == "PT409"
    else:
        response = rest(devstack, "DELETE", "runs", params={"run_id": f"eq.{run.run_id}"})
        assert (response.status_code, response.json()["code"]) == (409, "PT409")
        body = response.json()
        assert body["message"] == f"run {run.run_id} is {status}: only a finished run can be deleted"
        assert f"odooops destroy {run.run_id}" in body["hint"]
    assert row_of(db, run.run_id) == before


@pytest.mark.parametrize("writer", WRITERS)
@pytest.mark.parametrize("status", FINISHED)
def test_a_finished_run_can_be_deleted_with_its_events(
    writer: str,
    status: str,
    *,
    devstack: DevStack,
    db: psycopg.Connection[Any],
    pg_store: PgStore,
    project: str,
) -> None:
    run = run_in_status(pg_store, project, status)
    if writer == "sql":
        as_service_role(db, "DELETE FROM ops.runs WHERE run_id = %s", (run.run_id,))
    else:
        response = rest(devstack, "DELETE", "runs", params={"run_id": f"eq.{run.run_id}"})
        assert response.status_code == 200, response.text
    assert row_of(db, run.run_id) is None
    assert events_of(db, run.run_id) == []


def test_deleting_a_project_removes_all_its_runs(
    db: psycopg.Connection[Any], pg_store: PgStore, project: str
) -> None:
    """Tearing a project down is deliberate: its runs go with it, whatever their state."""
    runs = [run_in_status(pg_store, project, status) for status in ("running", "success")]
    as_service_role(db, "DELETE FROM ops.projects WHERE project_id = %s", (project,))
    assert [row_of(db, run.run_id) for run in runs] == [None, None]
