"""The ``ops.*`` operations: one table, and the one implementation of ``RunStore`` over it.

Each row of :data:`OPERATIONS` says which SQL function an operation calls, the shape of its
answer, the model it is parsed into, which arguments are JSON, and how the database recognises a
repeat. :class:`OperationStore` builds each call's arguments (filling in a fresh repeat key when the
caller gave none, so that even its own retries are safe), hands the call to its transport and
parses the answer. The transports (``RestStore`` over httpx, ``PgStore`` over psycopg) only
execute a call: :meth:`OperationStore._attempt` sends it once and either returns the decoded
answer, raises :class:`Retry` for a failure a later attempt may cure, or raises the project's
error (mapped by :mod:`odooops_action.store.error_map`). The retry loop is here, the same for both.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from odooops_action.domain import CreateRunRequest, new_key
from odooops_action.errors import ApiError, TransientError
from odooops_action.store.base import MAX_EVENTS_PER_POLL, FinalStatus
from odooops_action.store.retry import RetryPolicy

if TYPE_CHECKING:
    from pydantic import BaseModel

    from odooops_action.models import (
        Artifact,
        CancelResult,
        ClaimFilter,
        CreatedRun,
        NewArtifact,
        NewEvent,
        Run,
        RunDelta,
        RunPoll,
        Transition,
    )

# "value": the function returns one value (jsonb or a number); "row": one ops.<table> row;
# "rows": a set of rows (an array over REST, possibly empty).
Shape = Literal["value", "row", "rows"]
# A model of odooops_action.models, "int", or "json": the decoded answer as it is, for the
# operations without a RunStore method (the operator commands parse it into their own views).
ModelName = Literal[
    "CreatedRun", "RunPoll", "RunDelta", "CancelResult", "Run", "Transition", "Artifact", "int", "json"
]


@dataclass(frozen=True)
class Operation:
    name: str  # the RunStore method
    function: str  # ops.<function>
    shape: Shape
    model: ModelName
    json_args: frozenset[str]  # arguments sent as jsonb
    repeat: str  # how the database recognises a repeated call


def _op(name: str, function: str, shape: Shape, model: ModelName, repeat: str, *json_args: str) -> Operation:
    return Operation(name, function, shape, model, frozenset(json_args), repeat)


OPERATIONS: dict[str, Operation] = {
    op.name: op
    for op in (
        _op(
            "create_run",
            "create_run",
            "value",
            "CreatedRun",
            "idempotency_key finds the run; request_key tells the invocation that created it",
            "metadata",
        ),
        _op("poll_run", "poll_run", "value", "RunPoll", "read-only"),
        _op("poll_run_delta", "poll_run_delta", "value", "RunDelta", "read-only"),
        _op(
            "cancel_run",
            "cancel_run",
            "value",
            "CancelResult",
            "a cancelled run stays cancelled; request_key tells the invocation that cancelled it",
        ),
        _op(
            "claim_next_run",
            "claim_next_run",
            "rows",
            "Run",
            "claim_token: a repeat returns the run this token claimed, while the claim holds",
        ),
        _op(
            "start_run",
            "start_run_v2",
            "value",
            "Transition",
            "the run already running under (worker, attempt): already_started",
        ),
        _op("heartbeat_run", "heartbeat_run_v2", "value", "Transition", "no effect beyond the lease"),
        _op(
            "finish_run",
            "finish_run_v2",
            "value",
            "Transition",
            "the run already in that status under (worker, attempt): already_finished",
        ),
        _op(
            "append_events",
            "append_events",
            "value",
            "int",
            "batch_key: a repeated batch returns its recorded last seq, nothing stored",
            "events",
        ),
        _op(
            "add_artifact",
            "add_artifact",
            "row",
            "Artifact",
            "artifact_key: a repeat returns the artifact stored the first time",
            "metadata",
        ),
        _op(
            "recover_stalled_runs",
            "recover_stalled_runs",
            "rows",
            "Run",
            "a repeat finds nothing left to recover (its list can miss runs the lost call recovered)",
        ),
        # Token management, operators only (service role or owner; docs/SECURITY.md): odooops token.
        _op(
            "create_api_token",
            "create_api_token",
            "value",
            "json",
            "none: a repeat after a lost answer creates another token (the lost one is never shown)",
        ),
        _op("list_api_tokens", "list_api_tokens", "value", "json", "read-only"),
        _op("revoke_api_token", "revoke_api_token", "value", "json", "a revoked token stays revoked"),
        # The operator commands (odooops list | status | retry | workers | doctor | selftest) and
        # the worker registry: supabase/migrations/20261202020000_operator_commands.sql. Called
        # with call_operation; odooops_action.operator.views parses their answers.
        _op("schema_version", "schema_version", "value", "json", "read-only"),
        _op("list_runs", "list_runs", "value", "json", "read-only"),
        _op("run_status", "run_status", "value", "json", "read-only"),
        _op("list_workers", "list_workers", "value", "json", "read-only"),
        _op("doctor_report", "doctor_report", "value", "json", "read-only"),
        _op("worker_beat", "worker_beat", "value", "json", "a beat sets the worker's row", "filters"),
        _op(
            "retry_run",
            "retry_run",
            "value",
            "json",
            "idempotency_key finds the retry; request_key tells the invocation that created it",
        ),
        _op(
            "create_project",
            "create_project",
            "value",
            "json",
            "a repeat answers 409 (the project exists): never created twice",
            "metadata",
        ),
        _op(
            "create_environment",
            "create_environment",
            "value",
            "json",
            "a repeat answers 409 (the environment exists): never created twice",
            "metadata",
        ),
        _op(
            "delete_selftest_project",
            "delete_selftest_project",
            "value",
            "json",
            "a repeat finds nothing left (deleted: false)",
        ),
    )
}


@dataclass(frozen=True)
class Retry(Exception):
    """One attempt failed in a way a later attempt may cure."""

    description: str
    retry_after: str | None = None


class OperationStore:
    """``RunStore`` over any transport: subclasses implement :meth:`_attempt` and :meth:`close`."""

    _policy: RetryPolicy
    _place: str  # "Supabase at <host>" or "PostgreSQL": who stayed unavailable
    _unavailable_hint: str  # what to do when it stays unavailable

    # -- the transport ------------------------------------------------------------------------

    def _attempt(self, operation: Operation, args: Mapping[str, Any]) -> Any:
        """Send the call once: its decoded answer; raises :class:`Retry` or an ``OdooOpsError``."""
        raise NotImplementedError

    def _shape_error(self, function: str, problem: str) -> ApiError:
        return ApiError(
            f"The answer of ops.{function} from {self._place} has an unexpected shape ({problem}): check "
            "that the client and the migrations are the same version (apply the migrations in "
            "supabase/migrations)."
        )

    def close(self) -> None:
        raise NotImplementedError

    # -- one call -------------------------------------------------------------------------------

    def _call(self, name: str, args: Mapping[str, Any], context: Mapping[str, Any] | None = None) -> Any:
        """Execute operation ``name`` with ``args``, retrying every transient failure, and parse it
        (``context``: what the model's validation needs beyond the answer)."""
        operation = OPERATIONS[name]
        failure: Retry | None = None
        for attempt in range(1, self._policy.max_attempts + 1):
            if failure is not None:
                self._policy.wait(attempt - 1, failure.retry_after)
            try:
                answer = self._attempt(operation, args)
            except Retry as exc:
                failure = exc
                continue
            return self._parse(operation, answer, context)
        assert failure is not None  # max_attempts >= 1
        raise TransientError(
            f"{self._place} stayed unavailable: ops.{operation.function} failed {self._policy.max_attempts} "
            f"time(s) (last: {failure.description}).",
            hint=self._unavailable_hint,
        )

    def _parse(self, operation: Operation, answer: Any, context: Mapping[str, Any] | None = None) -> Any:
        if operation.shape == "rows":
            if answer is None:
                return []
            if not isinstance(answer, list):
                raise self._shape_error(
                    operation.function, f"expected a JSON array, got {type(answer).__name__}"
                )
            return [self._model(operation, row, context) for row in answer]
        if operation.shape == "row" and isinstance(answer, list) and len(answer) == 1:
            answer = answer[0]  # one row: tolerate a one-element array too
        return self._model(operation, answer, context)

    def _model(self, operation: Operation, payload: Any, context: Mapping[str, Any] | None = None) -> Any:
        if operation.model == "json":
            return payload
        if operation.model == "int":
            if isinstance(payload, bool) or not isinstance(payload, int | str):
                raise self._shape_error(operation.function, f"expected a number, got {payload!r}")
            try:
                return int(payload)
            except ValueError:
                raise self._shape_error(operation.function, f"expected a number, got {payload!r}") from None
        from pydantic import ValidationError

        from odooops_action import models

        model: type[BaseModel] = getattr(models, operation.model)
        try:
            return model.model_validate(payload, context=dict(context) if context else None)
        except ValidationError as exc:
            first = exc.errors()[0]
            location = ".".join(str(part) for part in first["loc"]) or "<root>"
            raise self._shape_error(operation.function, f"{location}: {first['msg']}") from None

    # -- RunStore ---------------------------------------------------------------------------

    def call_operation(self, name: str, args: Mapping[str, Any]) -> Any:
        """An operation without a method of its own (model ``json``): its decoded answer."""
        if OPERATIONS[name].model != "json":
            raise ValueError(f"ops.{name} has a method of its own: call it")
        return self._call(name, args)

    def create_run(self, request: CreateRunRequest) -> CreatedRun:
        args = request.as_arguments()
        args["idempotency_key"] = request.idempotency_key or new_key("create")
        args["request_key"] = request.request_key or new_key("request")
        result: CreatedRun = self._call("create_run", args)
        return result

    def poll_run(self, run_id: str, after_seq: int = 0, max_events: int = MAX_EVENTS_PER_POLL) -> RunPoll:
        result: RunPoll = self._call(
            "poll_run", {"run_id": run_id, "after_seq": after_seq, "max_events": max_events}
        )
        return result

    def poll_run_delta(
        self,
        run_id: str,
        after_seq: int = 0,
        known_revision: int | None = None,
        max_events: int = MAX_EVENTS_PER_POLL,
        detail: bool = False,
    ) -> RunDelta:
        args = {
            "run_id": run_id,
            "after_seq": after_seq,
            "known_revision": known_revision,
            "max_events": max_events,
            "detail": detail,
        }
        result: RunDelta = self._call("poll_run_delta", args, context={"run_id": run_id})
        return result

    def cancel_run(
        self,
        run_id: str,
        reason: str | None = None,
        cancelled_by: str | None = None,
        *,
        request_key: str | None = None,
    ) -> CancelResult:
        args = {
            "run_id": run_id,
            "reason": reason,
            "cancelled_by": cancelled_by,
            "request_key": request_key or new_key("cancel"),
        }
        result: CancelResult = self._call("cancel_run", args)
        return result

    def claim_next_run(
        self, worker_id: str, filters: ClaimFilter | None = None, *, claim_token: str | None = None
    ) -> Run | None:
        args = {
            "worker_id": worker_id,
            "project_id": filters.project_id if filters else None,
            "env_id": filters.env_id if filters else None,
            "workflow_type": filters.workflow_type if filters else None,
            "claim_token": claim_token or new_key("claim"),
        }
        rows: list[Run] = self._call("claim_next_run", args)
        return rows[0] if rows else None

    def start_run(self, run_id: str, worker_id: str, *, attempt: int | None = None) -> Transition:
        result: Transition = self._call(
            "start_run", {"run_id": run_id, "worker_id": worker_id, "attempt": attempt}
        )
        return result

    def heartbeat_run(self, run_id: str, worker_id: str, *, attempt: int | None = None) -> Transition:
        result: Transition = self._call(
            "heartbeat_run", {"run_id": run_id, "worker_id": worker_id, "attempt": attempt}
        )
        return result

    def finish_run(
        self,
        run_id: str,
        worker_id: str,
        status: FinalStatus,
        exit_code: int | None = None,
        reason: str | None = None,
        *,
        attempt: int | None = None,
    ) -> Transition:
        args = {
            "run_id": run_id,
            "worker_id": worker_id,
            "status": status,
            "exit_code": exit_code,
            "reason": reason,
            "attempt": attempt,
        }
        result: Transition = self._call("finish_run", args)
        return result

    def append_events(
        self,
        run_id: str,
        events: Sequence[NewEvent],
        *,
        attempt: int | None = None,
        batch_key: str | None = None,
    ) -> int:
        args = {
            "run_id": run_id,
            "events": [event.model_dump(mode="json") for event in events],
            "attempt": attempt,
            "batch_key": batch_key or new_key("batch"),
        }
        result: int = self._call("append_events", args)
        return result

    def add_artifact(
        self,
        run_id: str,
        artifact: NewArtifact,
        *,
        attempt: int | None = None,
        artifact_key: str | None = None,
    ) -> Artifact:
        args = {
            "run_id": run_id,
            "artifact_type": artifact.artifact_type,
            "storage_path": artifact.storage_path,
            "digest": artifact.digest,
            "size_bytes": artifact.size_bytes,
            "metadata": artifact.metadata,
            "attempt": attempt,
            "artifact_key": artifact_key or new_key("artifact"),
        }
        result: Artifact = self._call("add_artifact", args)
        return result

    def recover_stalled_runs(self, lease_seconds: int, max_attempts: int) -> list[Run]:
        result: list[Run] = self._call(
            "recover_stalled_runs", {"lease_seconds": lease_seconds, "max_attempts": max_attempts}
        )
        return result
