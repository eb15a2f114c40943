"""The run state machine holds for every writer: plain SQL as service_role and REST PATCH alike.

The legal transitions are written out here independently of the migration:
queued -> claimed -> running -> success | failed, cancel from any active status, a claimed run
may fail, and recovery puts a claimed or running run back in the queue.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import httpx
import psycopg
import pytest
from psycopg import sql

from odooops_action.errors import StateConflictError
from odooops_action.models import NewEvent, Run
from odooops_action.store.pg import PgStore
from tests.devstack import DevStack
from tests.lifecycle.helpers import Backend, rest_headers, run_in_status

STATUSES = ("queued", "claimed", "running", "success", "failed", "cancelled")
TERMINAL = ("success", "failed", "cancelled")
LEGAL = frozenset(
    {
        ("queued", "claimed"),
        ("queued", "cancelled"),
        ("claimed", "running"),
        ("claimed", "failed"),
        ("claimed", "cancelled"),
        ("claimed", "queued"),
        ("running", "success"),
        ("running", "failed"),
        ("running", "cancelled"),
        ("running", "queued"),
    }
)
TRANSITIONS = [pair for pair in itertools.product(STATUSES, STATUSES) if pair[0] != pair[1]]
WRITERS = ("sql", "rest")


def transition_changes(target: str) -> dict[str, Any]:
    # A claim needs a claimer; every other column follows from the status (the guard fills it in).
    return {"status": target, "claimed_by": "intruder"} if target == "claimed" else {"status": target}


def sql_update(db: psycopg.Connection[Any], run_id: str, changes: dict[str, Any]) -> list[dict[str, Any]]:
    """``UPDATE ops.runs`` as the service_role (as a client with a direct connection would)."""
    assignments = sql.SQL(", ").join(
        sql.SQL("{} = {}").format(sql.Identifier(column), sql.Placeholder(column)) for column in changes
    )
    query = sql.SQL(
        "UPDATE ops.runs SET {} WHERE run_id = %(run_id)s RETURNING to_jsonb(runs.*) AS row"
    ).format(assignments)
    with db.transaction():
        db.execute("SET LOCAL ROLE service_role")
        rows = db.execute(query, {**changes, "run_id": run_id}).fetchall()
    return [row[0] for row in rows]


def rest_patch(stack: DevStack, run_id: str, changes: dict[str, Any]) -> httpx.Response:
    return httpx.patch(
        f"{stack.url}/rest/v1/runs",
        params={"run_id": f"eq.{run_id}"},
        json=changes,
        headers={**rest_headers(stack.service_role_key), "Prefer": "return=representation"},
    )


def apply(
    writer: str, stack: DevStack, db: psycopg.Connection[Any], run_id: str, changes: dict[str, Any]
) -> Any:
    """The new row, or the refusal as (SQLSTATE or PostgREST code, HTTP status or None, message)."""
    if writer == "sql":
        try:
            return sql_update(db, run_id, changes)[0]
        except psycopg.Error as error:
            return (error.sqlstate, None, error.diag.message_primary)
    response = rest_patch(stack, run_id, changes)
    if response.is_success:
        return response.json()[0]
    body = response.json()
    return (body["code"], response.status_code, body["message"])


@dataclass
class Bench:
    """A project of its own plus every way of reaching the database."""

    stack: DevStack
    db: psycopg.Connection[Any]
    store: PgStore
    project: str

    def run_in(self, status: str) -> Run:
        return run_in_status(self.store, self.project, status)

    def row(self, run_id: str) -> dict[str, Any]:
        return current(self.db, run_id)

    def apply(self, writer: str, run_id: str, changes: dict[str, Any]) -> Any:
        return apply(writer, self.stack, self.db, run_id, changes)


@pytest.fixture
def bench(devstack: DevStack, db: psycopg.Connection[Any], pg_store: PgStore, project: str) -> Bench:
    return Bench(devstack, db, pg_store, project)


def current(db: psycopg.Connection[Any], run_id: str) -> dict[str, Any]:
    row = db.execute("SELECT to_jsonb(r.*) FROM ops.runs r WHERE run_id = %s", (run_id,)).fetchone()
    assert row is not None
    return dict(row[0])


@pytest.mark.parametrize("writer", WRITERS)
@pytest.mark.parametrize("transition", TRANSITIONS, ids=[f"{a}->{b}" for a, b in TRANSITIONS])
def test_every_transition_is_refused_unless_legal(
    writer: str, transition: tuple[str, str], bench: Bench
) -> None:
    source, target = transition
    run = bench.run_in(source)
    before = bench.row(run.run_id)
    outcome = bench.apply(writer, run.run_id, transition_changes(target))
    if transition in LEGAL:
        assert isinstance(outcome, dict), outcome
        assert outcome["status"] == target
        assert bench.row(run.run_id)["status"] == target
    else:
        code, http_status, message = outcome
        assert code == "PT409"
        assert http_status == (409 if writer == "rest" else None)
        assert run.run_id in message
        assert bench.row(run.run_id) == before


@pytest.mark.parametrize("writer", WRITERS)
@pytest.mark.parametrize("status", STATUSES)
def test_setting_the_same_status_changes_nothing(writer: str, status: str, bench: Bench) -> None:
    run = bench.run_in(status)
    before = bench.row(run.run_id)
    assert bench.apply(writer, run.run_id, {"status": status}) == before
    assert bench.row(run.run_id) == before


# One new value per column: identity columns, claim and timing columns, results, metadata.
# (The counters attempt and event_seq are not writable at all: test_lifecycle_tampering.py.)
TERMINAL_EDITS: list[tuple[str, Any]] = [
    ("git_ref", "tampered"),
    ("git_sha", "f" * 40),
    ("project_id", "another-project"),
    ("queued_at", "2001-01-01T00:00:00Z"),
    ("claimed_by", "someone-else"),
    ("started_at", "2001-01-01T00:00:00Z"),
    ("finished_at", "2001-01-01T00:00:00Z"),
    ("heartbeat_at", "2001-01-01T00:00:00Z"),
    ("exit_code", 99),
    ("status_reason", "rewritten history"),
    ("metadata", psycopg.types.json.Jsonb({"tampered": True})),
]


@pytest.mark.parametrize("status", TERMINAL)
@pytest.mark.parametrize("edit", TERMINAL_EDITS, ids=[column for column, _ in TERMINAL_EDITS])
def test_a_finished_run_cannot_be_touched(status: str, edit: tuple[str, Any], bench: Bench) -> None:
    column, value = edit
    run = bench.run_in(status)
    before = bench.row(run.run_id)
    with pytest.raises(psycopg.Error) as refused:
        sql_update(bench.db, run.run_id, {column: value})
    assert refused.value.sqlstate == "PT409"
    assert bench.row(run.run_id) == before


@pytest.mark.parametrize("status", TERMINAL)
def test_a_finished_run_cannot_be_touched_over_rest(
    status: str, devstack: DevStack, db: psycopg.Connection[Any], pg_store: PgStore, project: str
) -> None:
    run = run_in_status(pg_store, project, status)
    before = current(db, run.run_id)
    response = rest_patch(
        devstack, run.run_id, {"status_reason": "rewritten", "metadata": {"tampered": True}}
    )
    assert (response.status_code, response.json()["code"]) == (409, "PT409")
    assert "finished run cannot be changed" in response.json()["message"]
    assert current(db, run.run_id) == before


def test_late_log_lines_of_a_finished_run_are_still_recorded(pg_store: PgStore, project: str) -> None:
    run = run_in_status(pg_store, project, "success")
    last = pg_store.append_events(run.run_id, [])  # no-op batch: the current last seq
    assert pg_store.append_events(run.run_id, [NewEvent(message="late line")]) == last + 1
    assert pg_store.poll_run(run.run_id, after_seq=last).events[0].message == "late line"


@pytest.mark.parametrize("status", ["queued", "claimed", "running"])
def test_cancel_of_an_active_run_cancels_it(
    status: str, backend: Backend, project: str, pg_store: PgStore
) -> None:
    run = run_in_status(pg_store, project, status)
    result = backend.store.cancel_run(run.run_id, reason="no longer needed", cancelled_by="tester")
    assert (result.outcome, result.run.status) == ("cancelled", "cancelled")
    assert result.run.status_reason == "by tester (no longer needed)"
    assert result.run.finished_at is not None


def test_cancel_of_a_cancelled_run_is_a_no_op(backend: Backend, project: str, pg_store: PgStore) -> None:
    run = run_in_status(pg_store, project, "cancelled")
    events_before = pg_store.poll_run(run.run_id).run.event_seq
    result = backend.store.cancel_run(run.run_id, reason="again")
    assert result.outcome == "already_cancelled"
    assert result.run == run.model_copy(update={"event_seq": events_before})
    assert pg_store.poll_run(run.run_id).run.event_seq == events_before


@pytest.mark.parametrize("status", ["success", "failed"])
def test_cancel_of_a_finished_run_is_refused_with_a_message(
    status: str, backend: Backend, project: str, pg_store: PgStore
) -> None:
    run = run_in_status(pg_store, project, status)
    with pytest.raises(StateConflictError) as refused:
        backend.store.cancel_run(run.run_id)
    assert refused.value.message.startswith(f"run {run.run_id} already finished as {status} at ")
    assert refused.value.message.endswith("a finished run cannot be cancelled")
    assert pg_store.poll_run(run.run_id).run.status == status
