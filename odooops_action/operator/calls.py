"""The ``ops.*`` operations behind the operator commands, in one table, executed by either store.

Each entry is one SQL function of ``supabase/migrations/20261202020000_operator_commands.sql``
(all return ``jsonb``) and whether repeating a call after a lost answer is harmless. The stores'
own call paths execute them, so retries and the mapping of errors (SQLSTATE over PostgreSQL,
PGRST codes and HTTP statuses over REST) are the same as for every other operation.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from odooops_action.store.base import RunStore


@dataclass(frozen=True)
class Operation:
    function: str
    repeatable: bool  # a second identical call has the effect of one


OPERATIONS: dict[str, Operation] = {
    op.function: op
    for op in (
        Operation("schema_version", repeatable=True),
        Operation("list_runs", repeatable=True),
        Operation("run_status", repeatable=True),
        Operation("list_workers", repeatable=True),
        Operation("doctor_report", repeatable=True),
        Operation("worker_beat", repeatable=True),
        # With an idempotency key (the CLI always sends one) a repeat returns the same new run.
        Operation("retry_run", repeatable=True),
        # A repeat answers "already exists" (409) instead of creating twice: safe, not silent.
        Operation("create_project", repeatable=False),
        Operation("create_environment", repeatable=False),
        Operation("delete_selftest_project", repeatable=True),
    )
}


def call(store: RunStore, function: str, arguments: Mapping[str, Any]) -> Any:
    """``ops.<function>(**arguments)`` through ``store``; the decoded JSON answer."""
    operation = OPERATIONS[function]
    rpc = getattr(store, "_rpc", None)
    if rpc is not None:  # RestStore
        from odooops_action.store.rest import Safety

        safety = Safety.REPEATABLE if operation.repeatable else Safety.ONCE
        return rpc(function, dict(arguments), safety)
    from psycopg.types.json import Jsonb

    pg_call = store._call  # type: ignore[attr-defined]
    wrapped = {
        name: Jsonb(value) if isinstance(value, dict | list) else value for name, value in arguments.items()
    }
    return pg_call(function, wrapped, shape="scalar", repeatable=operation.repeatable)


# The oldest schema (newest migration file, by its version prefix) this client's operations need.
# Bump it when the client starts calling a function a newer migration adds.
SCHEMA_VERSION = "20261202020000"
