"""Every refusal of the queue's functions tells the user what to do next, not only what went wrong.

A "not found" or a state conflict travels from PL/pgSQL (message + HINT) to the user through both
stores; the hint is the "what to do" half of the sentence, so each refusal a user or a worker can
meet must carry one.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

from odooops_action.errors import OdooOpsError, RunNotFoundError, StateConflictError
from odooops_action.models import NewEvent
from odooops_action.store.pg import PgStore
from tests.lifecycle.helpers import Backend, run_cli, run_in_status

MISSING_RUN = "run-20000101-000000-0000000"


def refusal(action: Callable[[], Any], expected: type[OdooOpsError]) -> OdooOpsError:
    with pytest.raises(expected) as refused:
        action()
    return refused.value


def test_each_missing_run_refusal_says_how_to_find_the_run(backend: Backend) -> None:
    store = backend.store
    calls: list[Callable[[], Any]] = [
        lambda: store.poll_run(MISSING_RUN),
        lambda: store.cancel_run(MISSING_RUN),
        lambda: store.append_events(MISSING_RUN, [NewEvent(message="x")]),
        lambda: store.start_run(MISSING_RUN, "w"),
        lambda: store.heartbeat_run(MISSING_RUN, "w"),
    ]
    for call in calls:
        error = refusal(call, RunNotFoundError)
        assert error.message == f"run {MISSING_RUN} not found"
        assert error.hint is not None, error
        assert "ops.runs" in error.hint, error


def test_destroying_a_missing_run_says_what_to_check(backend: Backend, tmp_path: Path) -> None:
    result = run_cli(backend.cli_env, "destroy", MISSING_RUN, cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr_lines == [
        f"error: run {MISSING_RUN} not found. Check the run id (format run-YYYYMMDD-HHMMSS-<sha7>); "
        "runs are listed in ops.runs."
    ]


@pytest.mark.parametrize("status", ["success", "failed"])
def test_cancelling_a_finished_run_says_there_is_nothing_to_stop(
    status: str, backend: Backend, project: str, pg_store: PgStore
) -> None:
    run = run_in_status(pg_store, project, status)
    error = refusal(lambda: backend.store.cancel_run(run.run_id), StateConflictError)
    assert error.hint == "Nothing is left to stop; queue a new run to run it again."


def test_a_worker_that_does_not_hold_the_run_is_told_to_claim_another(
    backend: Backend, project: str, pg_store: PgStore
) -> None:
    run = run_in_status(pg_store, project, "claimed", worker="holder")
    for call in (
        lambda: backend.store.start_run(run.run_id, "stranger"),
        lambda: backend.store.finish_run(run.run_id, "stranger", "failed"),
    ):
        error = refusal(call, StateConflictError)
        assert error.message.startswith(
            f"run {run.run_id} is claimed (claimed by holder), so worker stranger "
        )
        assert error.hint == "Only the worker that claimed a run can start or finish it; claim another run."


def direct_update(db: psycopg.Connection[Any], run_id: str, assignment: str) -> psycopg.Error:
    """The error of ``UPDATE ops.runs SET <assignment>`` as service_role (which must be refused)."""
    try:
        with db.transaction():
            db.execute("SET LOCAL ROLE service_role")
            db.execute(f"UPDATE ops.runs SET {assignment} WHERE run_id = %s", (run_id,))
    except psycopg.Error as error:
        return error
    raise AssertionError(f"UPDATE ops.runs SET {assignment} was accepted")


def test_direct_edits_refused_by_the_guard_say_what_to_do(
    db: psycopg.Connection[Any], pg_store: PgStore, project: str
) -> None:
    run = run_in_status(pg_store, project, "running", worker="holder")
    identity = direct_update(db, run.run_id, "git_ref = 'elsewhere'")
    assert (identity.sqlstate, identity.diag.message_hint) == (
        "PT409",
        "Queue a new run for another commit, ref, workflow or environment.",
    )
    reassigned = direct_update(db, run.run_id, "claimed_by = 'thief'")
    assert (reassigned.sqlstate, reassigned.diag.message_hint) == (
        "PT409",
        "Cancel the run, or requeue it (status queued) so that another worker can claim it.",
    )
