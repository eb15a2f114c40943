"""Every write is safe to repeat: the same call twice gives the same answer and stores once.

Each test runs over both transports (REST stand-in and direct PostgreSQL) against the real
schema; "twice" is what a client does when the first answer was lost after the commit.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import psycopg
import pytest

from odooops_action.errors import StaleAttemptError, StateConflictError
from odooops_action.models import ClaimFilter, CreateRunRequest, NewArtifact, NewEvent, Run
from odooops_action.store.pg import PgStore
from tests.lifecycle.helpers import Backend, new_sha, queue_run, run_in_status

WORKER = "worker-x1"


def count(db: psycopg.Connection[Any], sql: str, *args: object) -> int:
    row = db.execute(sql, args).fetchone()
    assert row is not None
    return int(row[0])


def request(project: str, key: str, request_key: str) -> CreateRunRequest:
    return CreateRunRequest(
        project_id=project,
        workflow_type="build",
        git_ref="main",
        git_sha="ab" * 20,
        idempotency_key=key,
        request_key=request_key,
    )


def claimed_run(backend: Backend, project: str) -> Run:
    queue_run(backend.store, project)
    claimed = backend.store.claim_next_run(WORKER, ClaimFilter(project_id=project))
    assert claimed is not None
    return claimed


# -- create_run ----------------------------------------------------------------------------------


def test_a_repeated_create_is_reported_as_queued_by_this_invocation(
    backend: Backend, project: str, db: psycopg.Connection[Any]
) -> None:
    key = f"k-{new_sha()[:12]}"
    first = backend.store.create_run(request(project, key, "invocation-1"))
    again = backend.store.create_run(request(project, key, "invocation-1"))

    assert (first.created, again.created) == (True, True)
    assert (first.outcome, again.outcome) == ("queued", "queued")
    assert again.run.run_id == first.run.run_id
    assert count(db, "SELECT count(*) FROM ops.runs WHERE idempotency_key = %s", key) == 1


def test_another_invocation_with_the_same_key_finds_the_existing_run(backend: Backend, project: str) -> None:
    key = f"k-{new_sha()[:12]}"
    first = backend.store.create_run(request(project, key, "invocation-1"))
    other = backend.store.create_run(request(project, key, "invocation-2"))

    assert (other.created, other.outcome) == (False, "existing")
    assert other.run.run_id == first.run.run_id


# -- cancel_run ----------------------------------------------------------------------------------


def test_a_repeated_cancel_is_reported_as_cancelled_by_this_invocation(
    backend: Backend, project: str
) -> None:
    run = queue_run(backend.store, project)
    first = backend.store.cancel_run(run.run_id, reason="r", request_key="cancel-1")
    again = backend.store.cancel_run(run.run_id, reason="r", request_key="cancel-1")
    other = backend.store.cancel_run(run.run_id, reason="r", request_key="cancel-2")

    assert (first.outcome, again.outcome, other.outcome) == ("cancelled", "cancelled", "already_cancelled")
    assert again.run.finished_at == first.run.finished_at


# -- claim_next_run -----------------------------------------------------------------------------


def test_a_repeated_claim_returns_the_run_its_token_claimed(
    backend: Backend, project: str, db: psycopg.Connection[Any]
) -> None:
    first_run = queue_run(backend.store, project)
    second_run = queue_run(backend.store, project)
    only = ClaimFilter(project_id=project)

    first = backend.store.claim_next_run(WORKER, only, claim_token="token-1")
    again = backend.store.claim_next_run(WORKER, only, claim_token="token-1")

    assert first is not None
    assert again is not None
    assert (first.run_id, again.run_id) == (first_run.run_id, first_run.run_id)
    assert (first.attempt, again.attempt) == (1, 1)
    status = db.execute("SELECT status FROM ops.runs WHERE run_id = %s", (second_run.run_id,)).fetchone()
    assert status == ("queued",)  # the repeat claimed nothing else
    assert count(db, "SELECT count(*) FROM ops.run_claims WHERE run_id = %s", first_run.run_id) == 1


def test_a_claim_token_whose_claim_lapsed_claims_nothing(
    backend: Backend, project: str, db: psycopg.Connection[Any]
) -> None:
    run = queue_run(backend.store, project)
    only = ClaimFilter(project_id=project)
    assert backend.store.claim_next_run(WORKER, only, claim_token="token-2") is not None
    db.execute("UPDATE ops.runs SET status = 'queued' WHERE run_id = %s", (run.run_id,))  # requeued

    assert backend.store.claim_next_run(WORKER, only, claim_token="token-2") is None
    assert db.execute("SELECT status FROM ops.runs WHERE run_id = %s", (run.run_id,)).fetchone() == (
        "queued",
    )


def test_a_claim_token_of_another_worker_is_refused(backend: Backend, project: str) -> None:
    queue_run(backend.store, project)
    only = ClaimFilter(project_id=project)
    assert backend.store.claim_next_run(WORKER, only, claim_token="token-3") is not None

    with pytest.raises(StateConflictError, match="claim token 'token-3' belongs to worker worker-x1"):
        backend.store.claim_next_run("worker-y2", only, claim_token="token-3")


# -- append_events / add_artifact ----------------------------------------------------------------


def test_a_repeated_batch_is_acknowledged_not_stored_again(
    backend: Backend, project: str, db: psycopg.Connection[Any]
) -> None:
    run = claimed_run(backend, project)
    batch = [NewEvent(message="one"), NewEvent(message="two")]

    first = backend.store.append_events(run.run_id, batch, attempt=run.attempt, batch_key="b-1")
    again = backend.store.append_events(run.run_id, batch, attempt=run.attempt, batch_key="b-1")

    assert again == first
    messages = [
        m for (m,) in db.execute("SELECT message FROM ops.run_events WHERE run_id = %s", (run.run_id,))
    ]
    assert (messages.count("one"), messages.count("two")) == (1, 1)


def test_a_batch_key_reused_for_another_batch_is_refused(backend: Backend, project: str) -> None:
    run = claimed_run(backend, project)
    backend.store.append_events(run.run_id, [NewEvent(message="one")], attempt=run.attempt, batch_key="b-2")

    with pytest.raises(StateConflictError, match="batch key 'b-2' was already used for a batch of 1 events"):
        backend.store.append_events(
            run.run_id, [NewEvent(message="x"), NewEvent(message="y")], attempt=run.attempt, batch_key="b-2"
        )


def test_a_repeated_artifact_returns_the_one_stored(
    backend: Backend, project: str, db: psycopg.Connection[Any]
) -> None:
    run = claimed_run(backend, project)
    artifact = NewArtifact(artifact_type="image", storage_path="ghcr.io/acme/odoo:1")

    first = backend.store.add_artifact(run.run_id, artifact, attempt=run.attempt, artifact_key="line-1")
    again = backend.store.add_artifact(run.run_id, artifact, attempt=run.attempt, artifact_key="line-1")

    assert again.artifact_id == first.artifact_id
    assert count(db, "SELECT count(*) FROM ops.artifacts WHERE run_id = %s", run.run_id) == 1
    other = NewArtifact(artifact_type="logs", storage_path="s3://b/log")
    with pytest.raises(StateConflictError, match="artifact key 'line-1' was already used"):
        backend.store.add_artifact(run.run_id, other, attempt=run.attempt, artifact_key="line-1")


# -- start / finish: what this call did ---------------------------------------------------------------


def test_start_and_finish_say_whether_this_call_made_the_change(backend: Backend, project: str) -> None:
    run = claimed_run(backend, project)

    started = backend.store.start_run(run.run_id, WORKER, attempt=run.attempt)
    started_again = backend.store.start_run(run.run_id, WORKER, attempt=run.attempt)
    finished = backend.store.finish_run(run.run_id, WORKER, "success", exit_code=0, attempt=run.attempt)
    finished_again = backend.store.finish_run(run.run_id, WORKER, "success", exit_code=0, attempt=run.attempt)

    assert (started.outcome, started_again.outcome) == ("started", "already_started")
    assert (finished.outcome, finished_again.outcome) == ("finished", "already_finished")
    assert finished_again.run.finished_at == finished.run.finished_at


# -- attempt fencing ---------------------------------------------------------------------------------


def requeue(db: psycopg.Connection[Any], run_id: str) -> None:
    """What recover_stalled_runs does to a run whose worker went silent: back to the queue."""
    db.execute("UPDATE ops.runs SET heartbeat_at = now() - interval '1 hour' WHERE run_id = %s", (run_id,))
    recovered = db.execute("SELECT run_id FROM ops.recover_stalled_runs(60, 3)").fetchall()
    assert (run_id,) in recovered


STALE_WRITES = {
    "append": lambda store, run: store.append_events(run.run_id, [NewEvent(message="late")], attempt=1),
    "artifact": lambda store, run: store.add_artifact(
        run.run_id, NewArtifact(artifact_type="logs", storage_path="s3://late"), attempt=1
    ),
    "start": lambda store, run: store.start_run(run.run_id, WORKER, attempt=1),
    "heartbeat": lambda store, run: store.heartbeat_run(run.run_id, WORKER, attempt=1),
    "finish": lambda store, run: store.finish_run(run.run_id, WORKER, "success", exit_code=0, attempt=1),
}


@pytest.mark.parametrize("claimed_again", [False, True], ids=["requeued", "claimed-again"])
@pytest.mark.parametrize("write", list(STALE_WRITES))
def test_a_superseded_attempt_cannot_write(
    backend: Backend, project: str, db: psycopg.Connection[Any], write: str, claimed_again: bool
) -> None:
    run = run_in_status(backend.store, project, "running", worker=WORKER)
    assert run.attempt == 1
    requeue(db, run.run_id)
    if claimed_again:  # attempt 2, by the same worker name even: the attempt tells them apart
        again = backend.store.claim_next_run(WORKER, ClaimFilter(project_id=project))
        assert again is not None
        assert again.attempt == 2
    before = db.execute(
        "SELECT status, attempt, event_seq, finished_at FROM ops.runs WHERE run_id = %s", (run.run_id,)
    ).fetchone()
    artifacts = count(db, "SELECT count(*) FROM ops.artifacts WHERE run_id = %s", run.run_id)

    with pytest.raises(StaleAttemptError, match=f"run {run.run_id}: attempt 1 was superseded") as refused:
        STALE_WRITES[write](backend.store, run)

    assert "stop this attempt" in str(refused.value)
    after = db.execute(
        "SELECT status, attempt, event_seq, finished_at FROM ops.runs WHERE run_id = %s", (run.run_id,)
    ).fetchone()
    assert after == before
    assert count(db, "SELECT count(*) FROM ops.artifacts WHERE run_id = %s", run.run_id) == artifacts


def test_a_batch_stored_before_the_requeue_is_still_acknowledged(
    backend: Backend, project: str, db: psycopg.Connection[Any]
) -> None:
    run = run_in_status(backend.store, project, "running", worker=WORKER)
    batch = [NewEvent(message="before the requeue")]
    first = backend.store.append_events(run.run_id, batch, attempt=run.attempt, batch_key="b-late")
    requeue(db, run.run_id)

    # Its answer was lost; the repeat gets the first answer, not a refusal, and nothing new.
    assert backend.store.append_events(run.run_id, batch, attempt=run.attempt, batch_key="b-late") == first
    with pytest.raises(StaleAttemptError):
        backend.store.append_events(run.run_id, batch, attempt=run.attempt, batch_key="b-new")


def test_the_current_attempt_writes_normally(
    backend: Backend, project: str, db: psycopg.Connection[Any]
) -> None:
    run = run_in_status(backend.store, project, "running", worker=WORKER)
    requeue(db, run.run_id)
    again = backend.store.claim_next_run(WORKER, ClaimFilter(project_id=project))
    assert again is not None
    assert again.attempt == 2

    backend.store.start_run(run.run_id, WORKER, attempt=2)
    backend.store.append_events(run.run_id, [NewEvent(message="attempt 2 line")], attempt=2)
    backend.store.add_artifact(
        run.run_id, NewArtifact(artifact_type="logs", storage_path="s3://2"), attempt=2
    )
    done = backend.store.finish_run(run.run_id, WORKER, "success", exit_code=0, attempt=2)

    assert (done.outcome, done.run.status, done.run.attempt) == ("finished", "success", 2)


# -- a repeat that arrives while the first call is still running ------------------------------------


def waiting_on_locks(db: psycopg.Connection[Any], application: str) -> int:
    return count(
        db,
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s AND wait_event_type = 'Lock'",
        application,
    )


def in_parallel(calls: list[Any], db: psycopg.Connection[Any], application: str, release: Any) -> list[Any]:
    """Start ``calls`` on threads, wait until each is blocked on a lock, ``release()``, collect."""
    results: list[Any] = [None] * len(calls)

    def runner(index: int) -> None:
        results[index] = calls[index]()

    threads = [threading.Thread(target=runner, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 30
    while waiting_on_locks(db, application) < len(calls):
        assert time.monotonic() < deadline, "the calls never queued up behind the lock"
        time.sleep(0.02)
    release()
    for thread in threads:
        thread.join(30)
    return results


def test_two_claims_with_one_token_in_flight_together_claim_one_run(
    pg_dsn: str, project: str, db: psycopg.Connection[Any]
) -> None:
    application = f"claim-race-{new_sha()[:8]}"
    dsn = (
        f"{pg_dsn}?application_name={application}"
        if "?" not in pg_dsn
        else f"{pg_dsn}&application_name={application}"
    )
    first_run = queue_run_sql(db, project)
    second_run = queue_run_sql(db, project)
    only = ClaimFilter(project_id=project)
    token = f"race-{new_sha()[:8]}"
    blocker = psycopg.connect(pg_dsn, autocommit=True)
    blocker.execute("SELECT pg_advisory_lock(hashtextextended(%s, 0))", (f"ops.claim_next_run:{token}",))
    stores = [PgStore(dsn), PgStore(dsn)]
    try:
        results = in_parallel(
            [lambda s=s: s.claim_next_run(WORKER, only, claim_token=token) for s in stores],
            db,
            application,
            lambda: blocker.execute("SELECT pg_advisory_unlock_all()"),
        )
    finally:
        blocker.close()
        for store in stores:
            store.close()

    assert [run.run_id for run in results] == [first_run, first_run]
    assert db.execute("SELECT status FROM ops.runs WHERE run_id = %s", (second_run,)).fetchone() == (
        "queued",
    )


def test_two_appends_of_one_batch_in_flight_together_store_it_once(
    pg_dsn: str, project: str, db: psycopg.Connection[Any]
) -> None:
    application = f"append-race-{new_sha()[:8]}"
    dsn = (
        f"{pg_dsn}?application_name={application}"
        if "?" not in pg_dsn
        else f"{pg_dsn}&application_name={application}"
    )
    run_id = queue_run_sql(db, project)
    batch = [NewEvent(message="raced")]
    blocker = psycopg.connect(pg_dsn)  # a transaction holding the run's row lock
    blocker.execute("SELECT 1 FROM ops.runs WHERE run_id = %s FOR UPDATE", (run_id,))
    stores = [PgStore(dsn), PgStore(dsn)]
    try:
        results = in_parallel(
            [lambda s=s: s.append_events(run_id, batch, batch_key="b-race") for s in stores],
            db,
            application,
            blocker.commit,
        )
    finally:
        blocker.close()
        for store in stores:
            store.close()

    assert results[0] == results[1]
    stored = db.execute(
        "SELECT count(*) FROM ops.run_events WHERE run_id = %s AND message = 'raced'", (run_id,)
    )
    assert stored.fetchone() == (1,)


def queue_run_sql(db: psycopg.Connection[Any], project: str) -> str:
    row = db.execute(
        "SELECT ops.create_run(%s, 'build', 'main', %s) -> 'run' ->> 'run_id'", (project, new_sha())
    ).fetchone()
    assert row is not None
    return str(row[0])
