"""``RunStore`` over Supabase's REST API: every operation is ``POST /rest/v1/rpc/<fn>`` in schema ``ops``.

Retry rules, per method (transient failures are defined in :mod:`odooops_action.store.retry`):

* Repeatable — retried on every transient failure, including "sent but no answer":
  ``poll_run`` and ``heartbeat_run`` (no effect beyond the lease), ``cancel_run`` (a second
  cancel is a no-op; the outcome then reads ``already_cancelled``), ``create_run`` only with an
  ``idempotency_key`` (the retry returns the same run with ``created`` False),
  ``recover_stalled_runs`` (a repeat finds nothing left to recover, so the returned list can then
  miss runs recovered by the lost attempt), ``start_run`` and ``finish_run``: their repeat answers
  409 when the first attempt was applied, so a 409 after an uncertain attempt is resolved by
  re-reading the run and accepting it when it is already in the target state under this worker.
* Once — retried only when the server certainly did not run the request (connect failure,
  429/503/520, 504 ``PGRST003``): ``claim_next_run`` (a lost claim is requeued by
  ``recover_stalled_runs`` once its lease expires), ``append_events``, ``add_artifact`` and
  ``create_run`` without a key. Otherwise they raise :class:`TransientError` saying the change may
  or may not have been applied.

Errors are mapped on the PostgREST ``code`` and the HTTP status, never on message text.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

import httpx

from odooops_action import __version__
from odooops_action.config import TOKEN_HEADER, ConnectionSettings, looks_like_jwt
from odooops_action.domain import CreateRunRequest
from odooops_action.errors import (
    ApiError,
    AuthError,
    InputError,
    MigrationMissingError,
    OdooOpsError,
    RunNotFoundError,
    SchemaNotExposedError,
    StateConflictError,
    TransientError,
)
from odooops_action.store.base import MAX_EVENTS_PER_POLL, FinalStatus
from odooops_action.store.retry import Outcome, RetryPolicy, outcome_of_exception, outcome_of_status

if TYPE_CHECKING:
    # The response models (pydantic) are imported when the first answer is parsed, not before
    # the first request: the Action's start-up budget.
    from pydantic import BaseModel

    from odooops_action.models import (
        Artifact,
        CancelResult,
        ClaimFilter,
        CreatedRun,
        NewArtifact,
        NewEvent,
        Run,
        RunPoll,
    )

SCHEMA = "ops"
USER_AGENT = f"odooops-action/{__version__}"

_ModelT = TypeVar("_ModelT", bound="BaseModel")

_JWT_CODES = frozenset({"PGRST301", "PGRST302", "PGRST303"})
# Refusals of the token-checked operations (docs/SECURITY.md): the message names cause and fix.
_TOKEN_CODES = frozenset({"PT401", "PT403"})
_MISSING_TABLE_CODES = frozenset({"PGRST205", "42P01"})
_MISSING_FUNCTION_CODES = frozenset({"PGRST202", "42883"})
_CONFLICT_CODES = frozenset({"PT409", "23505", "23503"})
_INPUT_CODES = frozenset({"PT400", "P0001", "23514", "23502"})
_MIGRATE = "apply the migrations with `supabase db push`"
_KEY_LOCATION = "Dashboard → Project Settings → API"
_MAX_SERVER_TEXT = 500


class Safety(enum.Enum):
    REPEATABLE = "repeatable"  # the same call twice has the effect of one
    ONCE = "once"  # repeating could apply the change twice


class ConflictOnRetryError(StateConflictError):
    """409 answered to a retry whose earlier attempt may have been applied already."""


@dataclass(frozen=True)
class _Transient:
    outcome: Outcome
    description: str
    retry_after: str | None = None


@dataclass(frozen=True)
class _ErrorBody:
    code: str | None
    message: str
    hint: str | None
    from_postgrest: bool  # a JSON error object, not a gateway page

    @classmethod
    def parse(cls, response: httpx.Response) -> _ErrorBody:
        try:
            body = response.json()
        except ValueError:
            return cls(code=None, message=response.text.strip(), hint=None, from_postgrest=False)
        if not isinstance(body, dict):
            return cls(code=None, message=str(body), hint=None, from_postgrest=False)
        code = body.get("code")
        hint = body.get("hint")
        return cls(
            code=str(code) if code is not None else None,
            message=str(body.get("message") or body.get("error") or ""),
            hint=str(hint) if hint else None,
            from_postgrest=code is not None,
        )


class RestStore:
    """The run queue through PostgREST RPC; one keep-alive HTTP client reused across calls."""

    def __init__(
        self,
        settings: ConnectionSettings,
        *,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        retry_policy: RetryPolicy | None = None,
    ) -> None:
        base_url, key = settings.require_rest()
        self._base_url = base_url
        self._host = urlsplit(base_url).netloc
        self._key = key
        self._token = settings.token
        self._key_variable = settings.key_variable
        # A policy given explicitly carries its own sleep.
        self._policy = retry_policy or RetryPolicy.with_retries(settings.max_retries, sleep=sleep)
        self._client = httpx.Client(
            base_url=f"{base_url}/rest/v1/",
            headers=_headers(key, settings.token),
            timeout=httpx.Timeout(settings.timeout_seconds),
            transport=transport,
            follow_redirects=False,
        )

    def __repr__(self) -> str:
        return f"RestStore(url={self._base_url!r})"

    def __enter__(self) -> RestStore:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    # -- RunStore ---------------------------------------------------------------------------

    def create_run(self, request: CreateRunRequest) -> CreatedRun:
        body = {
            "project_id": request.project_id,
            "workflow_type": request.workflow_type,
            "git_ref": request.git_ref,
            "git_sha": request.git_sha,
            "env_id": request.env_id,
            "created_by": request.created_by,
            "idempotency_key": request.idempotency_key,
            "metadata": request.metadata,
        }
        safety = Safety.REPEATABLE if request.idempotency_key else Safety.ONCE
        answer = self._rpc("create_run", body, safety)
        from odooops_action import models

        return self._parse(models.CreatedRun, answer, "create_run")

    def poll_run(self, run_id: str, after_seq: int = 0, max_events: int = MAX_EVENTS_PER_POLL) -> RunPoll:
        body = {"run_id": run_id, "after_seq": after_seq, "max_events": max_events}
        answer = self._rpc("poll_run", body, Safety.REPEATABLE)
        from odooops_action import models

        return self._parse(models.RunPoll, answer, "poll_run")

    def cancel_run(
        self, run_id: str, reason: str | None = None, cancelled_by: str | None = None
    ) -> CancelResult:
        body = {"run_id": run_id, "reason": reason, "cancelled_by": cancelled_by}
        answer = self._rpc("cancel_run", body, Safety.REPEATABLE)
        from odooops_action import models

        return self._parse(models.CancelResult, answer, "cancel_run")

    def claim_next_run(self, worker_id: str, filters: ClaimFilter | None = None) -> Run | None:
        from odooops_action import models

        chosen = filters or models.ClaimFilter()
        body = {
            "worker_id": worker_id,
            "project_id": chosen.project_id,
            "env_id": chosen.env_id,
            "workflow_type": chosen.workflow_type,
        }
        rows = self._rows("claim_next_run", body, Safety.ONCE)
        return rows[0] if rows else None

    def start_run(self, run_id: str, worker_id: str) -> Run:
        body = {"run_id": run_id, "worker_id": worker_id}
        try:
            return self._row("start_run", body, Safety.REPEATABLE)
        except ConflictOnRetryError as conflict:
            return self._accept_if_already(run_id, worker_id, "running", conflict)

    def heartbeat_run(self, run_id: str, worker_id: str) -> Run:
        return self._row("heartbeat_run", {"run_id": run_id, "worker_id": worker_id}, Safety.REPEATABLE)

    def finish_run(
        self,
        run_id: str,
        worker_id: str,
        status: FinalStatus,
        exit_code: int | None = None,
        reason: str | None = None,
    ) -> Run:
        body = {
            "run_id": run_id,
            "worker_id": worker_id,
            "status": status,
            "exit_code": exit_code,
            "reason": reason,
        }
        try:
            return self._row("finish_run", body, Safety.REPEATABLE)
        except ConflictOnRetryError as conflict:
            return self._accept_if_already(run_id, worker_id, status, conflict)

    def append_events(self, run_id: str, events: Sequence[NewEvent]) -> int:
        body = {"run_id": run_id, "events": [event.model_dump(mode="json") for event in events]}
        last_seq = self._rpc("append_events", body, Safety.ONCE)
        if isinstance(last_seq, bool) or not isinstance(last_seq, int | str):
            raise self._shape_error("append_events", f"expected the last seq as a number, got {last_seq!r}")
        try:
            return int(last_seq)
        except ValueError:
            raise self._shape_error("append_events", f"expected a number, got {last_seq!r}") from None

    def add_artifact(self, run_id: str, artifact: NewArtifact) -> Artifact:
        body = {
            "run_id": run_id,
            "artifact_type": artifact.artifact_type,
            "storage_path": artifact.storage_path,
            "digest": artifact.digest,
            "size_bytes": artifact.size_bytes,
            "metadata": artifact.metadata,
        }
        answer = _single(self._rpc("add_artifact", body, Safety.ONCE))
        from odooops_action import models

        return self._parse(models.Artifact, answer, "add_artifact")

    def recover_stalled_runs(self, lease_seconds: int, max_attempts: int) -> list[Run]:
        body = {"lease_seconds": lease_seconds, "max_attempts": max_attempts}
        return self._rows("recover_stalled_runs", body, Safety.REPEATABLE)

    def call_function(self, function: str, arguments: Mapping[str, Any]) -> Any:
        return self._rpc(function, arguments, Safety.ONCE)

    # -- conflict resolution ------------------------------------------------------------------

    def _accept_if_already(
        self, run_id: str, worker_id: str, status: str, conflict: StateConflictError
    ) -> Run:
        """After a retried transition answered 409: was it our own earlier attempt that applied it?"""
        run = self.poll_run(run_id, after_seq=0, max_events=1).run
        if run.status == status and run.claimed_by == worker_id:
            return run
        raise StateConflictError(conflict.message, hint=conflict.hint) from conflict

    # -- transport ----------------------------------------------------------------------------

    def _row(self, function: str, body: Mapping[str, Any], safety: Safety) -> Run:
        answer = _single(self._rpc(function, body, safety))
        from odooops_action import models

        return self._parse(models.Run, answer, function)

    def _rows(self, function: str, body: Mapping[str, Any], safety: Safety) -> list[Run]:
        payload = self._rpc(function, body, safety)
        if payload is None:
            return []
        if not isinstance(payload, list):
            raise self._shape_error(function, f"expected a JSON array, got {type(payload).__name__}")
        from odooops_action import models

        return [self._parse(models.Run, row, function) for row in payload]

    def _rpc(self, function: str, body: Mapping[str, Any], safety: Safety) -> Any:
        """POST the call, retrying per ``safety``; the decoded JSON answer or a mapped error."""
        may_have_applied = False
        failure: _Transient | None = None
        for attempt in range(1, self._policy.max_attempts + 1):
            if failure is not None:
                self._policy.wait(attempt - 1, failure.retry_after)
            result = self._send(function, body)
            if isinstance(result, httpx.Response):
                return self._answer(result, function, may_have_applied)
            failure = result
            if failure.outcome is Outcome.MAYBE_APPLIED:
                if safety is Safety.ONCE:
                    raise TransientError(self._ambiguous_message(function, failure))
                may_have_applied = True
        assert failure is not None  # max_attempts >= 1
        raise TransientError(
            f"Supabase at {self._host} stayed unavailable: ops.{function} failed {self._policy.max_attempts} "
            f"time(s) (last: {failure.description}).",
            hint="Retry later, or check the project's status in the Supabase dashboard.",
        )

    def _send(self, function: str, body: Mapping[str, Any]) -> httpx.Response | _Transient:
        """One attempt: the final response (success or a non-transient error) or a transient failure."""
        try:
            response = self._client.post(f"rpc/{function}", json=body)
        except httpx.TransportError as exc:
            outcome = outcome_of_exception(exc)
            description = f"{type(exc).__name__}: {self._server_text(str(exc)) or 'no details'}"
            if outcome is None:
                raise ApiError(f"Cannot send ops.{function} to {self._host} ({description}).") from None
            return _Transient(outcome, description)
        if response.is_success:
            return response
        code = _ErrorBody.parse(response).code
        outcome = outcome_of_status(response.status_code, code)
        if outcome is None:
            return response
        return _Transient(
            outcome, _status_text(response.status_code, code), response.headers.get("Retry-After")
        )

    def _answer(self, response: httpx.Response, function: str, may_have_applied: bool) -> Any:
        if not response.is_success:
            raise self._error_for(response, function, may_have_applied)
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise ApiError(
                f"ops.{function} on {self._host} answered HTTP {response.status_code} with a body that is "
                "not JSON: check that SUPABASE_URL is the project's API URL."
            ) from None

    # -- error mapping ------------------------------------------------------------------------

    def _error_for(self, response: httpx.Response, function: str, may_have_applied: bool) -> OdooOpsError:
        status = response.status_code
        error = _ErrorBody.parse(response)
        code = error.code
        where = _status_text(status, code)
        message = self._server_text(error.message)
        hint = self._server_text(error.hint) or None
        if code in _TOKEN_CODES:
            return AuthError(message or f"ops.{function} was refused ({where}).", hint=hint)
        if code in _JWT_CODES or (status == 401 and code != "42501"):
            return AuthError(self._refused_key_message(where, code, message))
        if code == "42501" or status == 403:
            return AuthError(
                f"The API key's role lacks privileges on schema {SCHEMA} ({where}: {message}): apply the "
                f"migration's grants ({_MIGRATE}) and use the service_role key in {self._key_variable}."
            )
        if code == "PGRST106":
            return SchemaNotExposedError(
                f"Schema {SCHEMA} is not exposed by the Supabase Data API ({where}): add {SCHEMA} to "
                f'Dashboard → Project Settings → API → "Exposed schemas" (Data API settings; '
                f"PGRST_DB_SCHEMAS when self-hosting)."
            )
        if code in _MISSING_FUNCTION_CODES:
            missing = f"function {SCHEMA}.{function}" if code == "PGRST202" else "a function it uses"
            return MigrationMissingError(
                f"The database lacks {missing} ({where}: {message}): {_MIGRATE}, then reload the API schema "
                "cache (NOTIFY pgrst, 'reload schema')."
            )
        if code in _MISSING_TABLE_CODES:
            return MigrationMissingError(
                f"A table of schema {SCHEMA} is missing ({where}: {message}): {_MIGRATE}."
            )
        if code == "PT404" or (
            status == 404 and error.from_postgrest and not (code or "").startswith("PGRST")
        ):
            return RunNotFoundError(message or f"ops.{function}: not found ({where}).", hint=hint)
        if code in _CONFLICT_CODES or status == 409:
            conflict_class = ConflictOnRetryError if may_have_applied else StateConflictError
            return conflict_class(message or f"ops.{function}: state conflict ({where}).", hint=hint)
        if code in _INPUT_CODES or (code or "").startswith("22") or status == 400:
            return InputError(message or f"ops.{function} rejected its input ({where}).", hint=hint)
        if 300 <= status < 400:
            location = response.headers.get("Location", "another address")
            return ApiError(
                f"{self._host} redirected ops.{function} to {location} ({where}): set SUPABASE_URL to the "
                "project's final address (usually https://)."
            )
        if status == 404:
            return ApiError(
                f"{self._host} has no endpoint for ops.{function} ({where}): check that SUPABASE_URL is the "
                "project's API URL (https://<project>.supabase.co)."
            )
        return ApiError(
            f"ops.{function} on {self._host} failed ({where}): {message or 'no message'}.", hint=hint
        )

    def _refused_key_message(self, where: str, code: str | None, message: str) -> str:
        reason = {
            "PGRST301": "Supabase refused the API key",
            "PGRST302": "Supabase received no usable API key",
            "PGRST303": "Supabase refused the API key's claims (expired or invalid)",
        }.get(code or "", "Supabase refused the API key")
        detail = f"{where}: {message}" if message else where
        return (
            f"{reason} ({detail}): use the project's service_role key ({_KEY_LOCATION}) "
            f"in {self._key_variable}."
        )

    def _ambiguous_message(self, function: str, failure: _Transient) -> str:
        return (
            f"ops.{function} was sent to {self._host} but no answer came back ({failure.description}): "
            "it may or may not have been applied. It was not retried because repeating it is not safe; "
            "check the run's state before trying again."
        )

    def _shape_error(self, function: str, problem: str) -> ApiError:
        return ApiError(
            f"The answer of ops.{function} from {self._host} has an unexpected shape ({problem}): check that "
            f"the client and the migrations are the same version ({_MIGRATE})."
        )

    def _parse(self, model: type[_ModelT], payload: Any, function: str) -> _ModelT:
        from pydantic import ValidationError

        try:
            return model.model_validate(payload)
        except ValidationError as exc:
            first = exc.errors()[0]
            location = ".".join(str(part) for part in first["loc"]) or "<root>"
            raise self._shape_error(function, f"{location}: {first['msg']}") from None

    def _server_text(self, text: str | None) -> str:
        """Server-provided text, shortened and with the key masked should it ever be echoed."""
        if not text:
            return ""
        cleaned = text.replace(self._key, "<redacted>")
        if self._token:
            cleaned = cleaned.replace(self._token, "<redacted>")
        cleaned = cleaned.strip()
        return cleaned if len(cleaned) <= _MAX_SERVER_TEXT else cleaned[:_MAX_SERVER_TEXT] + "…"


def _headers(key: str, token: str | None = None) -> dict[str, str]:
    headers = {
        "apikey": key,
        "Accept-Profile": SCHEMA,
        "Content-Profile": SCHEMA,
        "Content-Type": "application/json",
        "Accept": "application/json",
        "User-Agent": USER_AGENT,
    }
    # New-style keys (sb_secret_…) are not JWTs; PostgREST rejects them as a Bearer token (PGRST301).
    if looks_like_jwt(key):
        headers["Authorization"] = f"Bearer {key}"
    # A header, never the body or the URL: it stays out of request logs that keep URLs.
    if token:
        headers[TOKEN_HEADER] = token
    return headers


def _single(payload: Any) -> Any:
    """A function returning one row answers an object; tolerate a one-element array too."""
    if isinstance(payload, list) and len(payload) == 1:
        return payload[0]
    return payload


def _status_text(status: int, code: str | None) -> str:
    return f"HTTP {status} {code}" if code else f"HTTP {status}"
