"""One error table for both transports: a database code becomes the same error, and the same exit
code, whether the call went over REST (the PostgREST stand-in) or over a direct connection.

A database of its own holds an ``ops.poll_run`` that raises the SQLSTATE it is given as run id,
so every code in the table is produced by the real server and travels the real way, and two
overloads of ``ops.cancel_run``, the mistake PostgREST answers with PGRST203.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from odooops_action.config import ConnectionSettings
from odooops_action.errors import (
    ApiError,
    AuthError,
    InputError,
    MigrationMissingError,
    OdooOpsError,
    OverloadedFunctionError,
    RunNotFoundError,
    StaleAttemptError,
    StateConflictError,
    TransientError,
)
from odooops_action.store.base import RunStore
from odooops_action.store.pg import PgStore
from odooops_action.store.rest import RestStore
from odooops_action.store.retry import RetryPolicy
from tests.devstack import DevStack, RestServer
from tests.lifecycle.helpers import unique_id

FAKE_OPS = """
CREATE SCHEMA ops;
GRANT USAGE ON SCHEMA ops TO service_role;
CREATE FUNCTION ops.poll_run(run_id text, after_seq bigint DEFAULT 0, max_events integer DEFAULT 1000)
RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION USING ERRCODE = poll_run.run_id, MESSAGE = 'simulated ' || poll_run.run_id,
        HINT = 'the hint of ' || poll_run.run_id;
END;
$$;
-- A later migration that added a parameter but left the previous signature behind.
CREATE FUNCTION ops.cancel_run(run_id text, reason text DEFAULT NULL, cancelled_by text DEFAULT NULL,
                               request_key text DEFAULT NULL)
RETURNS jsonb LANGUAGE sql AS $$ SELECT '{}'::jsonb $$;
CREATE FUNCTION ops.cancel_run(run_id text, reason text DEFAULT NULL, cancelled_by text DEFAULT NULL,
                               request_key text DEFAULT NULL, notify boolean DEFAULT true)
RETURNS jsonb LANGUAGE sql AS $$ SELECT '{}'::jsonb $$;
"""

# SQLSTATE -> the error every transport must raise (its class fixes the exit code).
EXPECTED: dict[str, type[OdooOpsError]] = {
    "PT404": RunNotFoundError,
    "PT409": StateConflictError,
    "PT412": StaleAttemptError,
    "23505": StateConflictError,
    "23503": StateConflictError,
    "PT400": InputError,
    "P0001": InputError,
    "23514": InputError,
    "23502": InputError,
    "22P02": InputError,
    "42501": AuthError,
    "42883": MigrationMissingError,
    "42P01": MigrationMissingError,
    "XX000": ApiError,
    "57014": TransientError,  # rolled back: retried, then reported as unavailable
    "40001": TransientError,
}


@pytest.fixture(scope="module")
def fake_database(devstack: DevStack) -> Iterator[str]:
    name = unique_id("lc_parity").replace("-", "_")
    with psycopg.connect(devstack.database_url, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    try:
        with psycopg.connect(_dsn(devstack.cluster.dsn(), name), autocommit=True) as conn:
            conn.execute(FAKE_OPS)
        yield name
    finally:
        with psycopg.connect(devstack.database_url, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE {name} WITH (FORCE)")


def _dsn(base: str, database: str) -> str:
    return base.rsplit("/", 1)[0] + f"/{database}"


@pytest.fixture(scope="module")
def stores(devstack: DevStack, fake_database: str) -> Iterator[dict[str, RunStore]]:
    quick = RetryPolicy(max_attempts=2, sleep=lambda _: None)
    authenticator = _dsn(devstack.cluster.dsn("authenticator"), fake_database)
    with RestServer(authenticator, db_schemas=["public", "ops"], keys=devstack.keys) as server:
        settings = ConnectionSettings(supabase_url=server.url, supabase_key=devstack.service_role_key)
        rest = RestStore(settings, retry_policy=quick)
        pg = PgStore(_dsn(devstack.cluster.dsn(), fake_database), retry=quick)
        try:
            yield {"rest": rest, "postgres": pg}
        finally:
            rest.close()
            pg.close()


def raised_by(store: RunStore, call: Any) -> OdooOpsError:
    with pytest.raises(OdooOpsError) as caught:
        call(store)
    return caught.value


@pytest.mark.parametrize("sqlstate", list(EXPECTED))
def test_a_sqlstate_is_the_same_error_and_exit_code_over_rest_and_postgres(
    stores: dict[str, RunStore], sqlstate: str
) -> None:
    errors = {name: raised_by(store, lambda s: s.poll_run(sqlstate)) for name, store in stores.items()}

    assert {name: type(error) for name, error in errors.items()} == dict.fromkeys(stores, EXPECTED[sqlstate])
    assert errors["rest"].exit_code == errors["postgres"].exit_code
    if EXPECTED[sqlstate] in (RunNotFoundError, StateConflictError, StaleAttemptError, InputError):
        # The database's own message and hint reach the user unchanged, both ways.
        for error in errors.values():
            assert (error.message, error.hint) == (f"simulated {sqlstate}", f"the hint of {sqlstate}")


def test_a_foreign_key_violation_exits_1_both_ways(stores: dict[str, RunStore]) -> None:
    codes = {raised_by(store, lambda s: s.poll_run("23503")).exit_code for store in stores.values()}
    assert codes == {1}


@pytest.mark.parametrize("transport", ["rest", "postgres"])
def test_two_overloads_of_a_function_are_named_with_the_fix(
    stores: dict[str, RunStore], transport: str
) -> None:
    error = raised_by(stores[transport], lambda s: s.cancel_run("run-x", reason="r"))

    assert type(error) is OverloadedFunctionError
    message = str(error)
    assert "more than one function ops.cancel_run matching this call" in message
    assert "Drop the old signature (DROP FUNCTION ops.cancel_run(<its argument types>))" in message
    assert ("HTTP 300 PGRST203" if transport == "rest" else "SQLSTATE 42725") in message
    assert "redirected" not in message
