"""RestStore's HTTP layer: headers, bodies, parsing, retries and error mapping (respx)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import respx
from rest_fakes import (
    BASE_URL,
    RPC_URL,
    SECRET_KEY,
    SERVICE_JWT,
    artifact_row,
    event_row,
    run_row,
)

from odooops_action import __version__
from odooops_action.errors import (
    ApiError,
    AuthError,
    InputError,
    MigrationMissingError,
    OdooOpsError,
    OverloadedFunctionError,
    RunNotFoundError,
    SchemaNotExposedError,
    StaleAttemptError,
    StateConflictError,
    TransientError,
)
from odooops_action.models import ClaimFilter, CreateRunRequest, NewArtifact, NewEvent
from odooops_action.store.rest import RestStore

RUN_ID = "run-20261201-120000-0123abc"
SHA = "0123abc" + "0" * 33


def body_of(request: httpx.Request) -> dict[str, Any]:
    decoded = json.loads(request.content)
    assert isinstance(decoded, dict)
    return decoded


class Key:
    """Equals any generated repeat key with this prefix (``<prefix>-<32 hex>``)."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, str)
            and other.startswith(f"{self.prefix}-")
            and len(other) == len(self.prefix) + 33
        )

    def __repr__(self) -> str:
        return f"Key({self.prefix!r})"

    __hash__ = None  # type: ignore[assignment]


def transition(outcome: str, **row: Any) -> dict[str, Any]:
    return {"run": run_row(**row), "outcome": outcome}


def created_answer(created: bool = True) -> dict[str, Any]:
    return {"run": run_row(), "created": created}


def poll_answer() -> dict[str, Any]:
    return {
        "run": run_row(status="running", claimed_by="w1"),
        "events": [],
        "artifacts": [],
        "has_more": False,
    }


# -- one table drives the per-function checks: call, function name, exact body, answer --------

CALLS: list[tuple[str, Callable[[RestStore], Any], dict[str, Any], Any]] = [
    (
        "create_run",
        lambda s: s.create_run(
            CreateRunRequest(project_id="acme", workflow_type="build", git_ref="main", git_sha=SHA)
        ),
        {
            "project_id": "acme",
            "workflow_type": "build",
            "git_ref": "main",
            "git_sha": SHA,
            "env_id": "dev",
            "created_by": None,
            "idempotency_key": Key("create"),
            "metadata": {},
            "request_key": Key("request"),
        },
        created_answer(),
    ),
    (
        "poll_run",
        lambda s: s.poll_run(RUN_ID, after_seq=7, max_events=50),
        {"run_id": RUN_ID, "after_seq": 7, "max_events": 50},
        poll_answer(),
    ),
    (
        "cancel_run",
        lambda s: s.cancel_run(RUN_ID, reason="stop", cancelled_by="alice"),
        {"run_id": RUN_ID, "reason": "stop", "cancelled_by": "alice", "request_key": Key("cancel")},
        {"run": run_row(status="cancelled", finished_at="2026-12-01T12:01:00+00:00"), "outcome": "cancelled"},
    ),
    (
        "claim_next_run",
        lambda s: s.claim_next_run("w1", ClaimFilter(project_id="acme", workflow_type="deploy")),
        {
            "worker_id": "w1",
            "project_id": "acme",
            "env_id": None,
            "workflow_type": "deploy",
            "claim_token": Key("claim"),
        },
        [],
    ),
    (
        "start_run_v2",
        lambda s: s.start_run(RUN_ID, "w1", attempt=2),
        {"run_id": RUN_ID, "worker_id": "w1", "attempt": 2},
        transition("started", status="running", claimed_by="w1"),
    ),
    (
        "heartbeat_run_v2",
        lambda s: s.heartbeat_run(RUN_ID, "w1", attempt=2),
        {"run_id": RUN_ID, "worker_id": "w1", "attempt": 2},
        transition("refreshed", status="running", claimed_by="w1"),
    ),
    (
        "finish_run_v2",
        lambda s: s.finish_run(RUN_ID, "w1", "failed", exit_code=3, reason="tests failed", attempt=2),
        {
            "run_id": RUN_ID,
            "worker_id": "w1",
            "status": "failed",
            "exit_code": 3,
            "reason": "tests failed",
            "attempt": 2,
        },
        transition("finished", status="failed", claimed_by="w1", exit_code=3),
    ),
    (
        "append_events",
        lambda s: s.append_events(
            RUN_ID,
            [NewEvent(message="a"), NewEvent(level="warn", message="b", payload={"x": 1})],
            attempt=1,
            batch_key="batch-7",
        ),
        {
            "run_id": RUN_ID,
            "events": [
                {"level": "info", "message": "a", "payload": {}},
                {"level": "warn", "message": "b", "payload": {"x": 1}},
            ],
            "attempt": 1,
            "batch_key": "batch-7",
        },
        12,
    ),
    (
        "add_artifact",
        lambda s: s.add_artifact(RUN_ID, NewArtifact(artifact_type="sbom", storage_path="s3://b/sbom.json")),
        {
            "run_id": RUN_ID,
            "artifact_type": "sbom",
            "storage_path": "s3://b/sbom.json",
            "digest": None,
            "size_bytes": None,
            "metadata": {},
            "attempt": None,
            "artifact_key": Key("artifact"),
        },
        artifact_row(artifact_type="sbom", storage_path="s3://b/sbom.json"),
    ),
    (
        "recover_stalled_runs",
        lambda s: s.recover_stalled_runs(lease_seconds=90, max_attempts=2),
        {"lease_seconds": 90, "max_attempts": 2},
        [],
    ),
]


@pytest.mark.parametrize(("function", "call", "expected_body", "answer"), CALLS, ids=[c[0] for c in CALLS])
def test_each_function_posts_its_exact_parameters_with_the_ops_profiles(
    api: respx.MockRouter,
    store: RestStore,
    *,
    function: str,
    call: Callable[[RestStore], Any],
    expected_body: dict[str, Any],
    answer: Any,
) -> None:
    route = api.post(f"{RPC_URL}/{function}").mock(return_value=httpx.Response(200, json=answer))

    call(store)

    assert route.call_count == 1
    request = route.calls.last.request
    assert request.method == "POST"
    assert request.url.query == b""
    assert body_of(request) == expected_body
    assert request.headers["Accept-Profile"] == "ops"
    assert request.headers["Content-Profile"] == "ops"
    assert request.headers["Content-Type"] == "application/json"


def test_jwt_key_is_sent_as_apikey_and_bearer_token(api: respx.MockRouter, store: RestStore) -> None:
    route = api.post(f"{RPC_URL}/poll_run").mock(return_value=httpx.Response(200, json=poll_answer()))

    store.poll_run(RUN_ID)

    headers = route.calls.last.request.headers
    assert headers["apikey"] == SERVICE_JWT
    assert headers["Authorization"] == f"Bearer {SERVICE_JWT}"
    assert headers["User-Agent"] == f"odooops-action/{__version__}"


def test_secret_key_is_sent_only_as_apikey(
    api: respx.MockRouter, make_store: Callable[..., RestStore]
) -> None:
    route = api.post(f"{RPC_URL}/poll_run").mock(return_value=httpx.Response(200, json=poll_answer()))

    make_store(key=SECRET_KEY).poll_run(RUN_ID)

    headers = route.calls.last.request.headers
    assert headers["apikey"] == SECRET_KEY
    assert "Authorization" not in headers
    assert headers["Accept-Profile"] == "ops"
    assert headers["Content-Profile"] == "ops"


def test_hostile_run_id_travels_only_in_the_json_body(api: respx.MockRouter, store: RestStore) -> None:
    hostile = "x&status=neq.zzz"
    route = api.post(f"{RPC_URL}/cancel_run").mock(
        return_value=httpx.Response(200, json={"run": run_row(status="cancelled"), "outcome": "cancelled"})
    )

    store.cancel_run(hostile)

    request = route.calls.last.request
    assert str(request.url) == f"{RPC_URL}/cancel_run"
    assert request.url.params.multi_items() == []
    assert body_of(request)["run_id"] == hostile


def test_polls_reuse_one_client_with_timeouts_on_every_phase(store: RestStore, api: respx.MockRouter) -> None:
    route = api.post(f"{RPC_URL}/poll_run").mock(return_value=httpx.Response(200, json=poll_answer()))

    store.poll_run(RUN_ID)
    store.poll_run(RUN_ID, after_seq=1)

    timeouts = [call.request.extensions["timeout"] for call in route.calls]
    assert timeouts == [{"connect": 10.0, "read": 10.0, "write": 10.0, "pool": 10.0}] * 2


# -- parsing -----------------------------------------------------------------------------------


def test_create_run_parses_the_created_flag(api: respx.MockRouter, store: RestStore) -> None:
    api.post(f"{RPC_URL}/create_run").mock(
        return_value=httpx.Response(200, json=created_answer(created=False))
    )

    created = store.create_run(
        CreateRunRequest(
            project_id="acme", workflow_type="build", git_ref="main", git_sha=SHA, idempotency_key="k"
        )
    )

    assert created.created is False
    assert created.run.run_id == RUN_ID


def test_poll_run_parses_events_artifacts_and_has_more(api: respx.MockRouter, store: RestStore) -> None:
    answer = {
        "run": run_row(status="running", claimed_by="w1", event_seq=3),
        "events": [event_row(2, "two"), event_row(3, "three")],
        "artifacts": [artifact_row()],
        "has_more": True,
    }
    api.post(f"{RPC_URL}/poll_run").mock(return_value=httpx.Response(200, json=answer))

    poll = store.poll_run(RUN_ID, after_seq=1)

    assert [event.message for event in poll.events] == ["two", "three"]
    assert poll.cursor_after(1) == 3
    assert poll.artifacts[0].digest == "sha256:abc"
    assert poll.has_more is True
    assert poll.run.status == "running"


def test_cancel_run_parses_the_outcome(api: respx.MockRouter, store: RestStore) -> None:
    answer = {"run": run_row(status="cancelled"), "outcome": "already_cancelled"}
    api.post(f"{RPC_URL}/cancel_run").mock(return_value=httpx.Response(200, json=answer))

    assert store.cancel_run(RUN_ID).outcome == "already_cancelled"


def test_claim_next_run_returns_none_for_an_empty_array(api: respx.MockRouter, store: RestStore) -> None:
    api.post(f"{RPC_URL}/claim_next_run").mock(return_value=httpx.Response(200, json=[]))

    assert store.claim_next_run("w1") is None


def test_claim_next_run_returns_the_first_row(api: respx.MockRouter, store: RestStore) -> None:
    row = run_row(status="claimed", claimed_by="w1", claimed_at="2026-12-01T12:00:01+00:00")
    api.post(f"{RPC_URL}/claim_next_run").mock(return_value=httpx.Response(200, json=[row]))

    claimed = store.claim_next_run("w1")

    assert claimed is not None
    assert (claimed.status, claimed.claimed_by) == ("claimed", "w1")


def test_transitions_parse_the_run_and_what_this_call_did(api: respx.MockRouter, store: RestStore) -> None:
    api.post(f"{RPC_URL}/heartbeat_run_v2").mock(
        return_value=httpx.Response(200, json=transition("not_held", status="cancelled", claimed_by="w1"))
    )

    answer = store.heartbeat_run(RUN_ID, "w1", attempt=1)

    assert (answer.outcome, answer.run.status) == ("not_held", "cancelled")


def test_append_events_returns_the_last_seq(api: respx.MockRouter, store: RestStore) -> None:
    api.post(f"{RPC_URL}/append_events").mock(return_value=httpx.Response(200, json=41))

    assert store.append_events(RUN_ID, [NewEvent(message="x")]) == 41


def test_add_artifact_parses_the_row(api: respx.MockRouter, store: RestStore) -> None:
    api.post(f"{RPC_URL}/add_artifact").mock(
        return_value=httpx.Response(200, json=artifact_row(size_bytes=99))
    )

    artifact = store.add_artifact(RUN_ID, NewArtifact(artifact_type="image", storage_path="ghcr.io/a/b"))

    assert artifact.size_bytes == 99


def test_recover_stalled_runs_parses_every_row(api: respx.MockRouter, store: RestStore) -> None:
    rows = [run_row(run_id=RUN_ID, attempt=1), run_row(run_id=RUN_ID + "-2", status="failed", attempt=3)]
    api.post(f"{RPC_URL}/recover_stalled_runs").mock(return_value=httpx.Response(200, json=rows))

    recovered = store.recover_stalled_runs(60, 3)

    assert [(run.run_id, run.status) for run in recovered] == [(RUN_ID, "queued"), (RUN_ID + "-2", "failed")]


def test_an_answer_of_the_wrong_shape_is_an_api_error(api: respx.MockRouter, store: RestStore) -> None:
    api.post(f"{RPC_URL}/poll_run").mock(return_value=httpx.Response(200, json={"run": {"run_id": RUN_ID}}))

    with pytest.raises(ApiError, match=r"unexpected shape .*run\.project_id"):
        store.poll_run(RUN_ID)


def test_a_non_json_answer_is_an_api_error(api: respx.MockRouter, store: RestStore) -> None:
    api.post(f"{RPC_URL}/poll_run").mock(return_value=httpx.Response(200, text="<html>hello</html>"))

    with pytest.raises(ApiError, match="not JSON"):
        store.poll_run(RUN_ID)


# -- retries -----------------------------------------------------------------------------------


def test_503_with_retry_after_seconds_is_retried_after_that_wait(
    api: respx.MockRouter, store: RestStore, sleeps: list[float]
) -> None:
    route = api.post(f"{RPC_URL}/poll_run").mock(
        side_effect=[
            httpx.Response(
                503, headers={"Retry-After": "2"}, json={"code": "PGRST002", "message": "reloading"}
            ),
            httpx.Response(503, headers={"Retry-After": "3"}),
            httpx.Response(200, json=poll_answer()),
        ]
    )

    store.poll_run(RUN_ID)

    assert route.call_count == 3
    assert sleeps == [2.0, 3.0]


def test_retry_after_as_http_date_is_converted_and_capped(
    api: respx.MockRouter, store: RestStore, sleeps: list[float]
) -> None:
    # The fake clock reads 1_000_000 s = Mon, 12 Jan 1970 13:46:40 GMT.
    route = api.post(f"{RPC_URL}/poll_run").mock(
        side_effect=[
            httpx.Response(503, headers={"Retry-After": "Mon, 12 Jan 1970 13:46:45 GMT"}),
            httpx.Response(503, headers={"Retry-After": "3600"}),
            httpx.Response(200, json=poll_answer()),
        ]
    )

    store.poll_run(RUN_ID)

    assert route.call_count == 3
    assert sleeps == [5.0, 30.0]


@pytest.mark.parametrize(
    "failure",
    [
        httpx.Response(520, text="<html>origin error</html>"),
        httpx.Response(504, json={"code": "PGRST003", "message": "Timed out acquiring connection"}),
        httpx.Response(429, text="slow down"),
        httpx.Response(503, json={"code": "PGRST001", "message": "no connection"}),
        httpx.ConnectError("connection refused"),
        httpx.ConnectTimeout("connect timed out"),
    ],
    ids=["520", "504-PGRST003", "429", "503", "connect-error", "connect-timeout"],
)
def test_failures_are_retried_for_claim_with_the_same_claim_token(
    api: respx.MockRouter, store: RestStore, sleeps: list[float], failure: httpx.Response | Exception
) -> None:
    row = run_row(status="claimed", claimed_by="w1", claimed_at="2026-12-01T12:00:01+00:00")
    route = api.post(f"{RPC_URL}/claim_next_run").mock(
        side_effect=[failure, failure, httpx.Response(200, json=[row])]
    )

    claimed = store.claim_next_run("w1")

    assert claimed is not None
    assert route.call_count == 3
    tokens = {body_of(call.request)["claim_token"] for call in route.calls}
    assert len(tokens) == 1
    # Full jitter with random() fixed at 0.5: half of 1 s, then half of 2 s.
    assert sleeps == [0.5, 1.0]


AMBIGUOUS = [
    httpx.ReadTimeout("read timed out"),
    httpx.RemoteProtocolError("Server disconnected without sending a response."),
    httpx.ReadError("connection reset"),
    httpx.Response(504, text="gateway timeout"),
    httpx.Response(502, text="bad gateway"),
]
AMBIGUOUS_IDS = ["read-timeout", "disconnect", "read-error", "504-gateway", "502"]


@pytest.mark.parametrize("failure", AMBIGUOUS, ids=AMBIGUOUS_IDS)
@pytest.mark.parametrize(
    ("function", "call", "answer", "key"),
    [
        ("claim_next_run", lambda s: s.claim_next_run("w1"), [], "claim_token"),
        ("append_events", lambda s: s.append_events(RUN_ID, [NewEvent(message="m")]), 5, "batch_key"),
        (
            "add_artifact",
            lambda s: s.add_artifact(RUN_ID, NewArtifact(artifact_type="logs", storage_path="p")),
            artifact_row(),
            "artifact_key",
        ),
        (
            "create_run",
            lambda s: s.create_run(
                CreateRunRequest(project_id="a", workflow_type="test", git_ref="m", git_sha=SHA)
            ),
            created_answer(),
            "idempotency_key",
        ),
        (
            "cancel_run",
            lambda s: s.cancel_run(RUN_ID),
            transition("cancelled", status="cancelled"),
            "request_key",
        ),
    ],
    ids=["claim", "append", "artifact", "create-without-key", "cancel"],
)
def test_every_write_is_repeated_with_the_same_key_after_a_lost_answer(
    api: respx.MockRouter,
    store: RestStore,
    *,
    sleeps: list[float],
    function: str,
    call: Callable[[RestStore], Any],
    answer: Any,
    key: str,
    failure: httpx.Response | Exception,
) -> None:
    route = api.post(f"{RPC_URL}/{function}").mock(side_effect=[failure, httpx.Response(200, json=answer)])

    call(store)

    assert route.call_count == 2
    first, second = (body_of(c.request) for c in route.calls)
    assert first == second
    assert first[key]
    assert len(sleeps) == 1


def test_create_run_with_an_idempotency_key_is_repeated_after_a_read_timeout(
    api: respx.MockRouter, store: RestStore, sleeps: list[float]
) -> None:
    route = api.post(f"{RPC_URL}/create_run").mock(
        side_effect=[
            httpx.ReadTimeout("read timed out"),
            httpx.Response(200, json=created_answer(created=False)),
        ]
    )

    created = store.create_run(
        CreateRunRequest(
            project_id="acme", workflow_type="build", git_ref="m", git_sha=SHA, idempotency_key="gh-1"
        )
    )

    assert created.created is False
    assert route.call_count == 2
    assert body_of(route.calls[0].request) == body_of(route.calls[1].request)
    assert len(sleeps) == 1


@pytest.mark.parametrize("failure", AMBIGUOUS, ids=AMBIGUOUS_IDS)
def test_repeatable_calls_are_retried_after_an_ambiguous_failure(
    api: respx.MockRouter, store: RestStore, failure: httpx.Response | Exception
) -> None:
    route = api.post(f"{RPC_URL}/heartbeat_run_v2").mock(
        side_effect=[
            failure,
            httpx.Response(200, json=transition("refreshed", status="running", claimed_by="w1")),
        ]
    )

    assert store.heartbeat_run(RUN_ID, "w1").run.status == "running"
    assert route.call_count == 2


def test_exhausted_retries_raise_transient_error_naming_host_and_last_status(
    api: respx.MockRouter, store: RestStore, sleeps: list[float]
) -> None:
    route = api.post(f"{RPC_URL}/poll_run").mock(
        side_effect=[
            httpx.ConnectError("refused"),
            httpx.Response(503),
            httpx.Response(520),
            httpx.Response(504, json={"code": "PGRST003", "message": "pool timeout"}),
        ]
    )

    with pytest.raises(TransientError) as caught:
        store.poll_run(RUN_ID)

    assert route.call_count == 4
    assert sleeps == [0.5, 1.0, 2.0]
    message = str(caught.value)
    assert "abcdefgh.supabase.co" in message
    assert "HTTP 504 PGRST003" in message
    assert "4 time(s)" in message


def test_backoff_is_capped(
    api: respx.MockRouter, make_store: Callable[..., RestStore], sleeps: list[float]
) -> None:
    api.post(f"{RPC_URL}/poll_run").mock(return_value=httpx.Response(503))

    with pytest.raises(TransientError):
        make_store(max_attempts=7).poll_run(RUN_ID)

    assert sleeps == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]


def test_max_retries_from_the_settings_bounds_the_attempts(
    api: respx.MockRouter, sleeps: list[float]
) -> None:
    from odooops_action.config import ConnectionSettings

    route = api.post(f"{RPC_URL}/poll_run").mock(
        return_value=httpx.Response(503, headers={"Retry-After": "1"})
    )
    settings = ConnectionSettings(supabase_url=BASE_URL, supabase_key=SECRET_KEY, max_retries=1)

    with RestStore(settings, sleep=sleeps.append) as store, pytest.raises(TransientError):
        store.poll_run(RUN_ID)

    assert route.call_count == 2
    assert sleeps == [1.0]


def test_final_errors_are_not_retried(api: respx.MockRouter, store: RestStore, sleeps: list[float]) -> None:
    route = api.post(f"{RPC_URL}/poll_run").mock(
        return_value=httpx.Response(500, json={"code": "XX000", "message": "internal error"})
    )

    with pytest.raises(ApiError, match="XX000"):
        store.poll_run(RUN_ID)

    assert route.call_count == 1
    assert sleeps == []


# -- start/finish: a 409 is a conflict, nothing more is asked ----------------------------------


def conflict(message: str = "run is running (claimed by w1), so worker w1 cannot start it") -> httpx.Response:
    return httpx.Response(409, json={"code": "PT409", "message": message, "details": None, "hint": None})


def test_a_409_is_a_conflict_without_rereading(api: respx.MockRouter, store: RestStore) -> None:
    api.post(f"{RPC_URL}/finish_run_v2").mock(return_value=conflict("run is cancelled"))
    poll = api.post(f"{RPC_URL}/poll_run")

    with pytest.raises(StateConflictError, match="run is cancelled"):
        store.finish_run(RUN_ID, "w1", "success")

    assert poll.call_count == 0


# -- error mapping -----------------------------------------------------------------------------


def pgrst(status: int, code: str, message: str, hint: str | None = None) -> httpx.Response:
    return httpx.Response(status, json={"code": code, "message": message, "details": None, "hint": hint})


@pytest.mark.parametrize(
    ("answer", "error_class", "words"),
    [
        (
            pgrst(401, "PGRST301", "Expected 3 parts in JWT; got 1"),
            AuthError,
            ["HTTP 401 PGRST301", "service_role key", "Project Settings → API", "SUPABASE_SERVICE_ROLE_KEY"],
        ),
        (pgrst(401, "PGRST303", "JWT expired"), AuthError, ["expired", "PGRST303", "service_role key"]),
        (
            pgrst(401, "PGRST302", "Anonymous access is disabled"),
            AuthError,
            ["no usable API key", "PGRST302"],
        ),
        (
            httpx.Response(401, json={"message": "Invalid API key"}),
            AuthError,
            ["HTTP 401", "Invalid API key", "service_role"],
        ),
        (
            pgrst(403, "42501", "permission denied for schema ops"),
            AuthError,
            ["lacks privileges on schema ops", "grants", "permission denied for schema ops"],
        ),
        (
            pgrst(406, "PGRST106", "The schema must be one of the following: public, graphql_public"),
            SchemaNotExposedError,
            ["Exposed schemas", "Project Settings → API", "PGRST_DB_SCHEMAS", "ops"],
        ),
        (
            pgrst(404, "PGRST202", "Could not find the function ops.poll_run(after_seq, max_events, run_id)"),
            MigrationMissingError,
            ["function ops.poll_run", "supabase db push"],
        ),
        (
            pgrst(404, "PGRST205", "Could not find the table 'ops.runs' in the schema cache"),
            MigrationMissingError,
            ["'ops.runs'", "supabase db push"],
        ),
        (
            pgrst(404, "42P01", 'relation "ops.run_events" does not exist'),
            MigrationMissingError,
            ["ops.run_events", "supabase db push"],
        ),
        (
            pgrst(404, "42883", "function ops.raise_error(unknown, text) does not exist"),
            MigrationMissingError,
            ["ops.raise_error", "supabase db push"],
        ),
        (
            pgrst(404, "PT404", "run run-20261201-120000-0123abc not found"),
            RunNotFoundError,
            ["run run-20261201-120000-0123abc not found"],
        ),
        (
            pgrst(409, "PT409", "run is success, so it cannot be cancelled"),
            StateConflictError,
            ["cannot be cancelled"],
        ),
        (
            pgrst(409, "23505", "duplicate key value violates unique constraint"),
            StateConflictError,
            ["duplicate key"],
        ),
        (
            pgrst(409, "23503", 'violates foreign key constraint "runs_project_id_fkey"'),
            StateConflictError,
            ["runs_project_id_fkey"],
        ),
        (
            pgrst(412, "PT412", "run r: attempt 1 was superseded (the run is now queued at attempt 1)"),
            StaleAttemptError,
            ["attempt 1 was superseded"],
        ),
        (
            pgrst(
                300,
                "PGRST203",
                "Could not choose the best candidate function between: ops.poll_run(run_id, after_seq), "
                "ops.poll_run(run_id, after_seq, max_events)",
            ),
            OverloadedFunctionError,
            ["more than one function ops.poll_run", "Drop the old signature", "HTTP 300 PGRST203"],
        ),
        (pgrst(400, "PT400", "max_events must be between 1 and 1000"), InputError, ["max_events must be"]),
        (pgrst(400, "P0001", "custom raise"), InputError, ["custom raise"]),
        (
            pgrst(400, "22P02", 'invalid input syntax for type bigint: "x"'),
            InputError,
            ["invalid input syntax"],
        ),
        (
            pgrst(400, "23514", 'violates check constraint "runs_git_sha_format"'),
            InputError,
            ["runs_git_sha_format"],
        ),
        (
            pgrst(500, "XX000", "internal error"),
            ApiError,
            ["HTTP 500 XX000", "internal error", "ops.poll_run"],
        ),
        (httpx.Response(404, text="<html>not found</html>"), ApiError, ["HTTP 404", "SUPABASE_URL"]),
        (
            httpx.Response(301, headers={"Location": "https://abcdefgh.supabase.co/rest/v1/rpc/poll_run"}),
            ApiError,
            ["redirected", "https://"],
        ),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_error_answers_map_to_user_facing_errors(
    api: respx.MockRouter,
    store: RestStore,
    answer: httpx.Response,
    error_class: type[OdooOpsError],
    words: list[str],
) -> None:
    api.post(f"{RPC_URL}/poll_run").mock(return_value=answer)

    with pytest.raises(OdooOpsError) as caught:
        store.poll_run(RUN_ID)

    assert type(caught.value) is error_class
    for word in words:
        assert word in str(caught.value)


def test_the_auth_message_names_the_variable_the_key_came_from(api: respx.MockRouter) -> None:
    from odooops_action.config import ConnectionSettings

    api.post(f"{RPC_URL}/poll_run").mock(return_value=pgrst(401, "PGRST301", "bad"))
    settings = ConnectionSettings(supabase_url=BASE_URL, supabase_key=SECRET_KEY, key_variable="SUPABASE_KEY")

    with RestStore(settings) as store, pytest.raises(AuthError, match="in SUPABASE_KEY"):
        store.poll_run(RUN_ID)


# -- the key never leaks ---------------------------------------------------------------------


@pytest.mark.parametrize("key", [SERVICE_JWT, SECRET_KEY], ids=["jwt", "secret"])
def test_the_key_never_appears_in_errors_or_repr(
    api: respx.MockRouter, make_store: Callable[..., RestStore], key: str
) -> None:
    store = make_store(key=key, max_attempts=1)
    echoing: list[httpx.Response | Exception] = [
        pgrst(401, "PGRST301", f"bad token {key}", hint=f"the token was {key}"),
        pgrst(500, "XX000", f"boom {key}", hint=key),
        pgrst(400, "PT400", f"bad input {key}", hint=key),
        httpx.Response(503, text=key),
        httpx.ConnectError(f"cannot connect with {key}"),
    ]
    api.post(f"{RPC_URL}/poll_run").mock(side_effect=echoing)

    texts = [repr(store)]
    for _ in echoing:
        with pytest.raises(OdooOpsError) as caught:
            store.poll_run(RUN_ID)
        texts += [str(caught.value), repr(caught.value), str(caught.value.hint)]

    assert all(key not in text for text in texts)
    assert any("<redacted>" in text for text in texts)
