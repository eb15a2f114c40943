"""The run queue over a direct PostgreSQL connection (``DATABASE_URL``, psycopg 3).

Same operations, same SQL functions and same errors as the REST store: each method is one
``SELECT`` of an ``ops.*`` function in autocommit mode, so the function's transaction is the
unit of work. A lost connection is re-opened; the call is repeated only when that cannot apply it
twice (see ``_SAFE_TO_REPEAT``), otherwise the caller gets a TransientError saying so.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from odooops_action.errors import (
    AuthError,
    InputError,
    MigrationMissingError,
    OdooOpsError,
    RunNotFoundError,
    StateConflictError,
    TransientError,
)
from odooops_action.models import (
    Artifact,
    CancelResult,
    ClaimFilter,
    CreatedRun,
    CreateRunRequest,
    NewArtifact,
    NewEvent,
    Run,
    RunPoll,
)
from odooops_action.store.base import MAX_EVENTS_PER_POLL, FinalStatus
from odooops_action.store.retry import RetryPolicy

# Calls a second time are no-ops or return the same answer (start/finish recognise their own
# retried call); claim, append and add_artifact are not, and create only with an idempotency key.
# Errors after which the server has rolled the statement back (timeouts, lock waits, serialization):
# nothing was applied, unlike a lost connection.
_ROLLED_BACK = frozenset({"57014", "55P03", "40001", "40P01"})
_SAFE_TO_REPEAT = frozenset({"poll_run", "cancel_run", "start_run", "heartbeat_run", "finish_run"})

Row = dict[str, Any]

# statement_timeout is enforced by the server; a server or network that dies mid-call is noticed
# only by the client's TCP stack. These end such a wait in about 20 s instead of Linux's ~15 min.
_TCP_DEFAULTS: dict[str, Any] = {
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 2,
    "tcp_user_timeout": 20_000,  # milliseconds
}


class PgStore:
    """``RunStore`` over psycopg. Not thread-safe: use one store per thread."""

    def __init__(
        self,
        dsn: str,
        *,
        connect_timeout: float = 10.0,
        statement_timeout_ms: int = 30_000,
        retry: RetryPolicy | None = None,
    ) -> None:
        self._dsn = dsn
        self._connect_timeout = connect_timeout
        self._statement_timeout_ms = statement_timeout_ms
        self._retry = retry or RetryPolicy(max_attempts=4)
        self._conn: psycopg.Connection[Row] | None = None

    # -- connection -------------------------------------------------------------------------

    def connection(self) -> psycopg.Connection[Row]:
        """The open connection, (re)connecting when needed. Also used by the worker for LISTEN."""
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = self._connect()
        return self._conn

    def _connect(self) -> psycopg.Connection[Row]:
        try:
            return psycopg.connect(
                self._dsn, autocommit=True, row_factory=dict_row, **self._connection_parameters()
            )
        except psycopg.OperationalError as exc:
            raise _connect_error(exc) from exc

    def _connection_parameters(self) -> dict[str, Any]:
        """Our defaults, added to (never replacing) what DATABASE_URL says: its ``options`` (for
        example ``-c role=service_role``) are kept and come last, so the user's settings win."""
        given = conninfo_to_dict(self._dsn)
        ours = f"-c statement_timeout={self._statement_timeout_ms}"
        parameters: dict[str, Any] = {
            "options": f"{ours} {given['options']}" if given.get("options") else ours
        }
        if "connect_timeout" not in given:
            parameters["connect_timeout"] = max(1, int(self._connect_timeout))
        if "application_name" not in given:
            parameters["application_name"] = "odooops"
        parameters.update({name: value for name, value in _TCP_DEFAULTS.items() if name not in given})
        return parameters

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> PgStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- calls ------------------------------------------------------------------------------

    def _call(self, function: str, args: dict[str, Any], *, shape: str, repeatable: bool = False) -> Any:
        """Run ``ops.<function>(name => value, ...)``; ``shape`` is scalar, row or rows."""
        named = sql.SQL(", ").join(
            sql.SQL("{} => {}").format(sql.Identifier(name), sql.Placeholder(name)) for name in args
        )
        if shape == "scalar":
            query = sql.SQL("SELECT ops.{}({}) AS result").format(sql.Identifier(function), named)
        else:
            query = sql.SQL("SELECT * FROM ops.{}({})").format(sql.Identifier(function), named)
        repeat = repeatable or function in _SAFE_TO_REPEAT
        return self._with_retries(lambda: self._execute(query, args, shape), repeat=repeat, what=function)

    def _execute(self, query: sql.Composed, args: dict[str, Any], shape: str) -> Any:
        with self.connection().cursor() as cur:
            cur.execute(query, args)
            if shape == "scalar":
                row = cur.fetchone()
                return None if row is None else row["result"]
            if shape == "row":
                return cur.fetchone()
            return cur.fetchall()

    def _with_retries(self, attempt: Callable[[], Any], *, repeat: bool, what: str) -> Any:
        retry_number = 0
        while True:
            sent = False
            try:
                self.connection()  # connecting is always safe to retry: nothing was sent
                sent = True
                return attempt()
            except TransientError as exc:
                if sent and not repeat:
                    raise
                last: Exception = exc
            except psycopg.OperationalError as exc:
                if exc.sqlstate not in _ROLLED_BACK:
                    # The connection is gone: a call already sent may or may not have been applied.
                    self.close()
                    if sent and not repeat:
                        raise TransientError(
                            f"the connection to PostgreSQL was lost during ops.{what}; it may or may not "
                            "have been applied — check the run before repeating it."
                        ) from exc
                last = exc
            except psycopg.Error as exc:
                raise _error_from_database(exc) from exc
            retry_number += 1
            if retry_number >= self._retry.max_attempts:
                if isinstance(last, OdooOpsError):
                    raise last
                raise TransientError(
                    f"ops.{what} did not complete after {retry_number} attempts: {_first_line(str(last))}"
                ) from last
            self._retry.wait(retry_number)

    # -- RunStore ---------------------------------------------------------------------------

    def create_run(self, request: CreateRunRequest) -> CreatedRun:
        args = request.as_arguments()
        args["metadata"] = Jsonb(args["metadata"])
        result = self._call(
            "create_run", args, shape="scalar", repeatable=request.idempotency_key is not None
        )
        return CreatedRun.model_validate(result)

    def poll_run(self, run_id: str, after_seq: int = 0, max_events: int = MAX_EVENTS_PER_POLL) -> RunPoll:
        args = {"run_id": run_id, "after_seq": after_seq, "max_events": max_events}
        return RunPoll.model_validate(self._call("poll_run", args, shape="scalar"))

    def cancel_run(
        self, run_id: str, reason: str | None = None, cancelled_by: str | None = None
    ) -> CancelResult:
        args = {"run_id": run_id, "reason": reason, "cancelled_by": cancelled_by}
        return CancelResult.model_validate(self._call("cancel_run", args, shape="scalar"))

    def claim_next_run(self, worker_id: str, filters: ClaimFilter | None = None) -> Run | None:
        args: dict[str, Any] = {"worker_id": worker_id, **(filters or ClaimFilter()).model_dump()}
        rows = self._call("claim_next_run", args, shape="rows")
        return Run.model_validate(rows[0]) if rows else None

    def start_run(self, run_id: str, worker_id: str) -> Run:
        return Run.model_validate(
            self._call("start_run", {"run_id": run_id, "worker_id": worker_id}, shape="row")
        )

    def heartbeat_run(self, run_id: str, worker_id: str) -> Run:
        args = {"run_id": run_id, "worker_id": worker_id}
        return Run.model_validate(self._call("heartbeat_run", args, shape="row"))

    def finish_run(
        self,
        run_id: str,
        worker_id: str,
        status: FinalStatus,
        exit_code: int | None = None,
        reason: str | None = None,
    ) -> Run:
        args = {
            "run_id": run_id,
            "worker_id": worker_id,
            "status": status,
            "exit_code": exit_code,
            "reason": reason,
        }
        return Run.model_validate(self._call("finish_run", args, shape="row"))

    def append_events(self, run_id: str, events: Sequence[NewEvent]) -> int:
        payload = Jsonb([event.model_dump() for event in events])
        return int(self._call("append_events", {"run_id": run_id, "events": payload}, shape="scalar"))

    def add_artifact(self, run_id: str, artifact: NewArtifact) -> Artifact:
        args: dict[str, Any] = {"run_id": run_id, **artifact.model_dump()}
        args["metadata"] = Jsonb(args["metadata"])
        return Artifact.model_validate(self._call("add_artifact", args, shape="row"))

    def recover_stalled_runs(self, lease_seconds: int, max_attempts: int) -> list[Run]:
        args = {"lease_seconds": lease_seconds, "max_attempts": max_attempts}
        rows = self._call("recover_stalled_runs", args, shape="rows", repeatable=True)
        return [Run.model_validate(row) for row in rows]

    def call_function(self, function: str, arguments: Mapping[str, Any]) -> Any:
        return self._call(function, dict(arguments), shape="scalar")


# -- errors -------------------------------------------------------------------------------------

_MIGRATE_HINT = (
    "Apply the migrations in supabase/migrations (supabase db push, or psql -f each file in order)."
)


def _error_from_database(exc: psycopg.Error) -> OdooOpsError:
    """Map an error raised by PostgreSQL to the user-facing error class, keeping its message."""
    state = exc.sqlstate or ""
    diag = exc.diag
    message = diag.message_primary or _first_line(str(exc))
    hint = diag.message_hint or None
    if state in ("PT401", "PT403"):
        return AuthError(message, hint=hint)
    if state == "PT404":
        return RunNotFoundError(message, hint=hint)
    if state == "PT409" or state.startswith("23505") or state == "40001":
        return StateConflictError(message, hint=hint)
    if state == "PT400" or state.startswith("22") or state.startswith("23") or state == "P0001":
        return InputError(message, hint=hint)
    if state in {"42P01", "42883", "3F000"}:
        return MigrationMissingError(f"the ops schema is missing a part: {message}.", hint=_MIGRATE_HINT)
    if state == "42501":
        return AuthError(
            f"PostgreSQL refused the operation: {message}.",
            hint="Connect as a role with the migration's grants (service_role or the database owner).",
        )
    return OdooOpsError(f"PostgreSQL error {state or 'unknown'}: {message}")


def _connect_error(exc: psycopg.OperationalError) -> OdooOpsError:
    text = _first_line(str(exc))
    if "password authentication failed" in text or ("role" in text and "does not exist" in text):
        return AuthError(
            f"PostgreSQL refused the login: {text}.", hint="Check the user and password in DATABASE_URL."
        )
    if "does not exist" in text and "database" in text:
        return InputError(
            f"PostgreSQL has no such database: {text}.", hint="Check the database name in DATABASE_URL."
        )
    return TransientError(f"could not connect to PostgreSQL: {text}.")


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else text
