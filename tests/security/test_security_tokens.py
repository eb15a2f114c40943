"""Scoped project tokens over the REST stand-in (real roles, grants, RLS; requests as anon)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest

from odooops_action.config import ConnectionSettings
from odooops_action.errors import AuthError, RunNotFoundError
from odooops_action.store.rest import RestStore
from tests.devstack import DevStack
from tests.security.conftest import Api, create_body, queued_run

Minter = Callable[..., str]
ApiFor = Callable[[str | None], Api]


def refusal(response: httpx.Response) -> tuple[int, str, str]:
    body = response.json()
    return response.status_code, body["code"], body["message"]


def run_status(db: psycopg.Connection[Any], run_id: str) -> str:
    row = db.execute("SELECT status FROM ops.runs WHERE run_id = %s", (run_id,)).fetchone()
    assert row is not None
    return str(row[0])


# -- what a token of project A reaches -------------------------------------------------------------


def test_a_token_creates_reads_and_cancels_in_its_own_project(
    projects: tuple[str, str], token_for: Minter, api: ApiFor
) -> None:
    mine = api(token_for(projects[0]))
    created = mine.rpc("create_run", create_body(projects[0]))
    assert created.status_code == 200, created.text
    run_id = created.json()["run"]["run_id"]
    polled = mine.rpc("poll_run", {"run_id": run_id})
    assert (polled.status_code, polled.json()["run"]["project_id"]) == (200, projects[0])
    cancelled = mine.rpc("cancel_run", {"run_id": run_id})
    assert (cancelled.status_code, cancelled.json()["outcome"]) == (200, "cancelled")
    assert cancelled.json()["run"]["status_reason"].startswith("by token tok-")


def test_create_without_a_project_uses_the_tokens(
    projects: tuple[str, str], token_for: Minter, api: ApiFor
) -> None:
    created = api(token_for(projects[0])).rpc("create_run", create_body(None))
    assert created.status_code == 200, created.text
    assert created.json()["run"]["project_id"] == projects[0]


@pytest.mark.parametrize("function", ["poll_run", "cancel_run"])
def test_a_token_cannot_learn_of_another_projects_runs(
    *,
    function: str,
    projects: tuple[str, str],
    token_for: Minter,
    api: ApiFor,
    service: Api,
    db: psycopg.Connection[Any],
) -> None:
    theirs = queued_run(service, projects[1])
    mine = api(token_for(projects[0]))
    foreign = mine.rpc(function, {"run_id": theirs})
    missing = mine.rpc(function, {"run_id": "run-20260101-000000-0000000"})
    # The run of B is answered exactly as a run that does not exist.
    assert refusal(foreign) == (404, "PT404", f"run {theirs} not found")
    assert foreign.json()["hint"] == missing.json()["hint"]
    assert run_status(db, theirs) == "queued"


def test_a_token_cannot_create_in_another_project(
    projects: tuple[str, str], token_for: Minter, api: ApiFor, db: psycopg.Connection[Any]
) -> None:
    token = token_for(projects[0])
    answer = api(token).rpc("create_run", create_body(projects[1]))
    status, code, message = refusal(answer)
    assert (status, code) == (403, "PT403")
    assert f"is for project {projects[0]}, not {projects[1]}" in message
    assert token not in answer.text
    count = db.execute("SELECT count(*) FROM ops.runs WHERE project_id = %s", (projects[1],)).fetchone()
    assert count == (0,)


def test_a_work_token_cannot_claim_another_projects_runs(
    projects: tuple[str, str], token_for: Minter, api: ApiFor, service: Api, db: psycopg.Connection[Any]
) -> None:
    theirs = queued_run(service, projects[1])
    worker = api(token_for(projects[0], ("work",)))
    unfiltered = worker.rpc("claim_next_run", {"worker_id": "w-a"})
    assert (unfiltered.status_code, unfiltered.json()) == (200, [])
    filtered = worker.rpc("claim_next_run", {"worker_id": "w-a", "project_id": projects[1]})
    assert refusal(filtered)[:2] == (403, "PT403")
    assert run_status(db, theirs) == "queued"
    mine = queued_run(service, projects[0])
    claimed = worker.rpc("claim_next_run", {"worker_id": "w-a"})
    assert [row["run_id"] for row in claimed.json()] == [mine]


def test_read_without_cancel_cannot_cancel(
    projects: tuple[str, str], token_for: Minter, api: ApiFor, service: Api, db: psycopg.Connection[Any]
) -> None:
    run_id = queued_run(service, projects[0])
    reader = api(token_for(projects[0], ("read",)))
    assert reader.rpc("poll_run", {"run_id": run_id}).status_code == 200
    status, code, message = refusal(reader.rpc("cancel_run", {"run_id": run_id}))
    assert (status, code) == (403, "PT403")
    assert "may read; ops.cancel_run needs the scope cancel" in message
    assert run_status(db, run_id) == "queued"


@pytest.mark.parametrize(
    ("function", "body"),
    [
        ("claim_next_run", {"worker_id": "w"}),
        ("recover_stalled_runs", {"lease_seconds": 1, "max_attempts": 1}),
        ("append_events", {"run_id": "run-20260101-000000-0000000", "events": []}),
    ],
)
def test_a_ci_token_cannot_do_a_workers_operations(
    function: str, body: dict[str, Any], projects: tuple[str, str], token_for: Minter, api: ApiFor
) -> None:
    status, code, message = refusal(api(token_for(projects[0])).rpc(function, body))
    assert (status, code) == (403, "PT403")
    assert f"ops.{function} needs the scope work" in message


def test_environment_and_workflow_limits(
    projects: tuple[str, str], token_for: Minter, api: ApiFor, service: Api
) -> None:
    limited = api(token_for(projects[0], env_ids=["prod"], workflow_types=["deploy"]))
    assert limited.rpc("create_run", create_body(None, "deploy", "prod")).status_code == 200
    wrong_env = refusal(limited.rpc("create_run", create_body(None, "deploy", "dev")))
    assert wrong_env[:2] == (403, "PT403")
    assert "may act only in environment(s) prod, not dev" in wrong_env[2]
    wrong_type = refusal(limited.rpc("create_run", create_body(None, "build", "prod")))
    assert "may act only on workflow type(s) deploy, not build" in wrong_type[2]
    dev_run = queued_run(service, projects[0], "deploy", "dev")
    assert "not dev" in refusal(limited.rpc("poll_run", {"run_id": dev_run}))[2]


# -- refused tokens: each with its own message, before any change -----------------------------------


def test_an_expired_token_is_refused_with_its_date(
    projects: tuple[str, str], token_for: Minter, api: ApiFor, service: Api, db: psycopg.Connection[Any]
) -> None:
    run_id = queued_run(service, projects[0])
    token = token_for(projects[0], expires_at=datetime.now(UTC) + timedelta(hours=1))
    db.execute(
        "UPDATE ops.api_tokens SET expires_at = '2026-01-02 03:04:05+00'"
        " WHERE token_hash = sha256(%s::bytea)",
        (token.encode(),),
    )
    status, code, message = refusal(api(token).rpc("cancel_run", {"run_id": run_id}))
    assert (status, code) == (401, "PT401")
    assert message.endswith(f"of project {projects[0]} expired at 2026-01-02 03:04:05 UTC")
    assert run_status(db, run_id) == "queued"


def test_a_revoked_token_is_refused(
    projects: tuple[str, str], token_for: Minter, api: ApiFor, service: Api, db: psycopg.Connection[Any]
) -> None:
    run_id = queued_run(service, projects[0])
    token = token_for(projects[0])
    token_id = db.execute(
        "SELECT token_id FROM ops.api_tokens WHERE token_hash = sha256(%s::bytea)", (token.encode(),)
    ).fetchone()
    assert token_id is not None
    revoked = service.rpc("revoke_api_token", {"token_id": token_id[0]})
    assert revoked.json()["outcome"] == "revoked"
    status, code, message = refusal(api(token).rpc("cancel_run", {"run_id": run_id}))
    assert (status, code) == (401, "PT401")
    assert f"token {token_id[0]} of project {projects[0]} was revoked at " in message
    assert run_status(db, run_id) == "queued"


def test_an_unknown_token_and_a_near_miss_get_the_same_answer(
    projects: tuple[str, str], token_for: Minter, api: ApiFor
) -> None:
    token = token_for(projects[0])
    near_miss = token[:-1] + ("A" if token[-1] != "A" else "B")
    far_miss = "odooops_pat_" + "x" * (len(token) - len("odooops_pat_"))
    answers = [
        api(guess).rpc("poll_run", {"run_id": "run-20260101-000000-0000000"})
        for guess in (near_miss, far_miss)
    ]
    assert [refusal(answer) for answer in answers] == [
        (401, "PT401", "unknown OdooOps token: no token with this value exists")
    ] * 2
    assert answers[0].json()["hint"] == answers[1].json()["hint"]


def test_the_anon_key_alone_reaches_nothing(projects: tuple[str, str], api: ApiFor, service: Api) -> None:
    run_id = queued_run(service, projects[0])
    anonymous = api(None)
    for function, body in [
        ("poll_run", {"run_id": run_id}),
        ("create_run", create_body(projects[0])),
        ("cancel_run", {"run_id": run_id}),
        ("claim_next_run", {"worker_id": "w"}),
    ]:
        status, code, message = refusal(anonymous.rpc(function, body))
        assert (status, code) == (401, "PT401"), function
        assert message.startswith("no OdooOps token in the request"), function


@pytest.mark.parametrize(
    "table", ["runs", "run_events", "artifacts", "projects", "environments", "api_tokens"]
)
def test_a_token_reads_no_table_directly(
    table: str, projects: tuple[str, str], token_for: Minter, api: ApiFor
) -> None:
    answer = api(token_for(projects[0], ("create", "read", "cancel", "work"))).get(table)
    assert answer.status_code in (401, 403), answer.text
    assert answer.json()["code"] == "42501"


@pytest.mark.parametrize(
    ("function", "body"),
    [
        ("raise_error", {"code": "PT400", "message": "x"}),
        ("require_run", {"run_id": "run-20260101-000000-0000000"}),
        ("create_api_token", {"project_id": "x", "scopes": ["read"]}),
        ("list_api_tokens", {}),
        ("revoke_api_token", {"token_id": "tok-000000000000"}),
    ],
)
def test_a_token_calls_no_function_outside_its_scope(
    function: str, body: dict[str, Any], projects: tuple[str, str], token_for: Minter, api: ApiFor
) -> None:
    answer = api(token_for(projects[0], ("create", "read", "cancel", "work"))).rpc(function, body)
    # 401: the publishable key is not a JWT (PostgREST answers 42501 with 401 without one).
    assert (answer.status_code, answer.json()["code"]) == (401, "42501"), answer.text


# -- storage and secrecy -------------------------------------------------------------------------------


def test_tokens_are_stored_as_a_hash_only(
    projects: tuple[str, str], token_for: Minter, db: psycopg.Connection[Any]
) -> None:
    token = token_for(projects[0])
    secret_part = token.removeprefix("odooops_pat_")
    rows = db.execute(
        "SELECT to_jsonb(t)::text, token_hash FROM ops.api_tokens t WHERE project_id = %s", (projects[0],)
    )
    (text, stored_hash), *others = rows.fetchall()
    assert others == []
    assert bytes(stored_hash) == hashlib.sha256(token.encode()).digest()
    # No column holds the token or any 8 characters of its secret part.
    assert not any(secret_part[i : i + 8] in text for i in range(len(secret_part) - 7))
    assert token.startswith("odooops_pat_")
    assert len(secret_part) >= 43


def test_last_used_is_recorded(
    projects: tuple[str, str], token_for: Minter, api: ApiFor, db: psycopg.Connection[Any]
) -> None:
    token = token_for(projects[0])
    before = db.execute(
        "SELECT last_used_at FROM ops.api_tokens WHERE project_id = %s", (projects[0],)
    ).fetchone()
    assert before == (None,)
    api(token).rpc("create_run", create_body(None))
    after = db.execute(
        "SELECT last_used_at FROM ops.api_tokens WHERE project_id = %s", (projects[0],)
    ).fetchone()
    assert after is not None
    assert after[0] is not None


def test_the_client_names_the_cause_and_never_the_token(
    devstack: DevStack, projects: tuple[str, str], token_for: Minter, db: psycopg.Connection[Any]
) -> None:
    token = token_for(projects[0], ("read",))
    settings = ConnectionSettings(supabase_url=devstack.url, supabase_key=devstack.anon_key, token=token)
    assert token not in repr(settings)
    with RestStore(settings) as store:
        with pytest.raises(AuthError) as refused:
            store.cancel_run("run-20260101-000000-0000000")
        with pytest.raises(RunNotFoundError):
            store.poll_run("run-20260101-000000-0000000")
    assert "needs the scope cancel" in str(refused.value)
    assert "Create a token whose --scope includes cancel" in str(refused.value)
    assert token not in str(refused.value)


def test_operator_reads_follow_the_token_scope(
    projects: tuple[str, str], token_for: Minter, api: ApiFor, service: Api
) -> None:
    """run_status is a read and retry_run a create, of the token's project only; list_runs and
    doctor_report are for operators."""
    mine, theirs = queued_run(service, projects[0]), queued_run(service, projects[1])
    reader = api(token_for(projects[0], ("read",)))
    assert reader.rpc("run_status", {"run_id": mine}).status_code == 200
    assert refusal(reader.rpc("run_status", {"run_id": theirs}))[:2] == (404, "PT404")
    assert "needs the scope create" in refusal(reader.rpc("retry_run", {"run_id": mine}))[2]
    for function in ("list_runs", "doctor_report", "list_workers"):
        assert reader.rpc(function, {}).json()["code"] == "42501", function


def test_a_work_token_keeps_its_worker_registry_row(
    projects: tuple[str, str], token_for: Minter, api: ApiFor, db: psycopg.Connection[Any]
) -> None:
    worker_id = f"w-token-{projects[0]}"
    try:
        beat = api(token_for(projects[0], ("work",))).rpc(
            "worker_beat", {"worker_id": worker_id, "state": "idle"}
        )
        assert beat.status_code == 200, beat.text
        assert db.execute("SELECT state FROM ops.workers WHERE worker_id = %s", (worker_id,)).fetchone() == (
            "idle",
        )
    finally:
        db.execute("DELETE FROM ops.workers WHERE worker_id = %s", (worker_id,))
