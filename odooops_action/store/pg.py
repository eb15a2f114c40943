"""The run queue over a direct PostgreSQL connection (``DATABASE_URL``, psycopg 3).

A thin transport: the operations, their arguments and answers, and the retry loop are in
:mod:`odooops_action.store.operations`. Each call is one ``SELECT`` of an ``ops.*`` function in
autocommit mode, so the function's transaction is the unit of work. A lost connection is re-opened
and the call sent again (every call carries its repeat key); errors the server rolled back
(timeouts, lock waits, serialization, shutdown) are retried too; other database errors go through
the shared table of :mod:`odooops_action.store.error_map`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from odooops_action.errors import ApiError, AuthError, InputError, OdooOpsError, TransientError
from odooops_action.store.error_map import Refusal, Remedies, error_for, is_transient_code
from odooops_action.store.operations import Operation, OperationStore, Retry
from odooops_action.store.retry import RetryPolicy

Row = dict[str, Any]

_REMEDIES = Remedies(
    role="The connection's role",
    migrate="apply the migrations in supabase/migrations (supabase db push, or psql -f each file in order)",
    credentials="a role with those grants in DATABASE_URL (service_role or the database owner)",
)

# statement_timeout is enforced by the server; a server or network that dies mid-call is noticed
# only by the client's TCP stack. These end such a wait in about 20 s instead of Linux's ~15 min.
_TCP_DEFAULTS: dict[str, Any] = {
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 2,
    "tcp_user_timeout": 20_000,  # milliseconds
}


class PgStore(OperationStore):
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
        self._policy = retry or RetryPolicy(max_attempts=4)
        self._place = "PostgreSQL"
        self._unavailable_hint = "Retry later, or check that the server in DATABASE_URL is up and reachable."
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

    def listen_connection(self) -> psycopg.Connection[Row]:
        """A new connection with this store's settings, for LISTEN (a listening connection must
        stay idle, so it is never the store's own)."""
        return self._connect()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> PgStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- one attempt ------------------------------------------------------------------------------

    def _attempt(self, operation: Operation, args: Mapping[str, Any]) -> Any:
        try:
            connection = self.connection()
        except TransientError as exc:
            raise Retry(exc.message) from None
        query = _query(operation, args)
        values = {
            name: Jsonb(value) if name in operation.json_args else value for name, value in args.items()
        }
        try:
            with connection.cursor() as cur:
                cur.execute(query, values)
                if operation.shape == "value":
                    row = cur.fetchone()
                    return None if row is None else row["result"]
                if operation.shape == "row":
                    return cur.fetchone()
                return cur.fetchall()
        except psycopg.Error as exc:
            state = exc.sqlstate
            if is_transient_code(state) or (state is None and isinstance(exc, psycopg.OperationalError)):
                if state is None or connection.broken:
                    self.close()  # a lost connection is re-opened by the next attempt
                raise Retry(f"{state or 'connection lost'}: {_first_line(str(exc))}") from None
            raise _error_from_database(exc, operation.function) from exc


def _query(operation: Operation, args: Mapping[str, Any]) -> sql.Composed:
    named = sql.SQL(", ").join(
        sql.SQL("{} => {}").format(sql.Identifier(name), sql.Placeholder(name)) for name in args
    )
    function = sql.Identifier("ops", operation.function)
    if operation.shape == "value":
        return sql.SQL("SELECT {}({}) AS result").format(function, named)
    return sql.SQL("SELECT * FROM {}({})").format(function, named)


# -- errors -------------------------------------------------------------------------------------


def _error_from_database(exc: psycopg.Error, function: str) -> OdooOpsError:
    """The shared table's error for the SQLSTATE, keeping the database's message and hint."""
    state = exc.sqlstate
    diag = exc.diag
    message = diag.message_primary or _first_line(str(exc))
    refusal = Refusal(state, message, diag.message_hint or None, function, f"SQLSTATE {state or 'unknown'}")
    return error_for(refusal, _REMEDIES) or ApiError(
        f"ops.{function} failed on PostgreSQL ({refusal.where}): {message}.", hint=refusal.hint
    )


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
