"""One table from the database's codes to the project's errors, for both transports.

A refusal reaches the client as a SQLSTATE (PostgreSQL, and PostgREST's ``code`` for database
errors) or as a PostgREST ``PGRST…`` code. Both transports hand it to :func:`error_for`, so the same
code becomes the same error class, and so the same exit code, whichever way the call travelled.
What differs by transport is only the remedy text (which key or URL to fix), given by
:class:`Remedies`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from odooops_action.errors import (
    AuthError,
    InputError,
    MigrationMissingError,
    OdooOpsError,
    OverloadedFunctionError,
    RunNotFoundError,
    SchemaNotExposedError,
    StaleAttemptError,
    StateConflictError,
)

SCHEMA = "ops"

# Errors after which the server rolled the statement back, or never ran it: repeating is the cure.
# 57014 statement timeout, 55P03 lock timeout, 40001/40P01 serialization/deadlock, 08 connection,
# 53 insufficient resources, 57P0x shutdown; PGRST000-003: PostgREST lost or could not get a
# database connection or its schema cache.
TRANSIENT_CODES = frozenset(
    {
        "57014",
        "55P03",
        "40001",
        "40P01",
        "57P01",
        "57P02",
        "57P03",
        "PGRST000",
        "PGRST001",
        "PGRST002",
        "PGRST003",
    }
)
TRANSIENT_CLASSES = ("08", "53")


def is_transient_code(code: str | None) -> bool:
    return code is not None and (code in TRANSIENT_CODES or code.startswith(TRANSIENT_CLASSES))


@dataclass(frozen=True)
class Remedies:
    """What to tell the user to fix, in the words of the transport at hand."""

    role: str  # whose privileges: "The API key's role", "The connection's role"
    migrate: str  # how to apply the migrations
    credentials: str  # which credentials to use for the service role
    refused_key: str = ""  # REST: where to find the key, and the variable to put it in


@dataclass(frozen=True)
class Refusal:
    """One error answer: its code, the server's message and hint, where it came from."""

    code: str | None
    message: str
    hint: str | None
    function: str
    where: str  # "HTTP 409 PT409" or "SQLSTATE PT409"


Mapper = Callable[[Refusal, Remedies], OdooOpsError]


def _token_refused(r: Refusal, _: Remedies) -> OdooOpsError:
    """A token-checked operation refused the caller (docs/SECURITY.md): its message names cause and fix."""
    return AuthError(r.message or f"ops.{r.function} was refused ({r.where}).", hint=r.hint)


def not_found(r: Refusal, _: Remedies) -> OdooOpsError:
    return RunNotFoundError(r.message or f"ops.{r.function}: not found ({r.where}).", hint=r.hint)


def _conflict(r: Refusal, _: Remedies) -> OdooOpsError:
    return StateConflictError(r.message or f"ops.{r.function}: state conflict ({r.where}).", hint=r.hint)


def _stale(r: Refusal, _: Remedies) -> OdooOpsError:
    return StaleAttemptError(
        r.message or f"ops.{r.function}: the attempt was superseded ({r.where}).", hint=r.hint
    )


def _input(r: Refusal, _: Remedies) -> OdooOpsError:
    return InputError(r.message or f"ops.{r.function} rejected its input ({r.where}).", hint=r.hint)


def privileges(r: Refusal, remedies: Remedies) -> OdooOpsError:
    return AuthError(
        f"{remedies.role} lacks privileges on schema {SCHEMA} ({r.where}: {r.message}): apply the "
        f"migration's grants ({remedies.migrate}) and use {remedies.credentials}."
    )


def _missing_function(r: Refusal, remedies: Remedies) -> OdooOpsError:
    # 42883 names the function that is missing: the one called, or one it calls.
    called = r.code == "PGRST202" or f"{SCHEMA}.{r.function}(" in r.message
    missing = f"function {SCHEMA}.{r.function}" if called else "a function it uses"
    return MigrationMissingError(
        f"The database lacks {missing} ({r.where}: {r.message}): {remedies.migrate}, then reload the API "
        "schema cache (NOTIFY pgrst, 'reload schema')."
    )


def _missing_table(r: Refusal, remedies: Remedies) -> OdooOpsError:
    return MigrationMissingError(
        f"A table of schema {SCHEMA} is missing ({r.where}: {r.message}): {remedies.migrate}."
    )


def _missing_schema(r: Refusal, remedies: Remedies) -> OdooOpsError:
    return MigrationMissingError(
        f"Schema {SCHEMA} does not exist ({r.where}: {r.message}): {remedies.migrate}."
    )


def _overloaded(r: Refusal, remedies: Remedies) -> OdooOpsError:
    return OverloadedFunctionError(
        f"The database has more than one function {SCHEMA}.{r.function} matching this call ({r.where}: "
        f"{r.message}): an old signature was left behind next to the current one. Drop the old signature "
        f"(DROP FUNCTION {SCHEMA}.{r.function}(<its argument types>)), keeping the one of the latest "
        f"migration, or {remedies.migrate}; then reload the API schema cache (NOTIFY pgrst, 'reload schema')."
    )


def _not_exposed(r: Refusal, _: Remedies) -> OdooOpsError:
    return SchemaNotExposedError(
        f"Schema {SCHEMA} is not exposed by the Supabase Data API ({r.where}): add {SCHEMA} to "
        f'Dashboard → Project Settings → API → "Exposed schemas" (Data API settings; '
        f"PGRST_DB_SCHEMAS when self-hosting)."
    )


_KEY_REFUSALS = {
    "PGRST301": "Supabase refused the API key",
    "PGRST302": "Supabase received no usable API key",
    "PGRST303": "Supabase refused the API key's claims (expired or invalid)",
}


def refused_key(r: Refusal, remedies: Remedies) -> OdooOpsError:
    reason = _KEY_REFUSALS.get(r.code or "", "Supabase refused the API key")
    detail = f"{r.where}: {r.message}" if r.message else r.where
    return AuthError(f"{reason} ({detail}): {remedies.refused_key}.")


# The one table. Codes not listed fall back to their class (CLASS_MAP), then to the transport's
# generic error.
CODE_MAP: dict[str, Mapper] = {
    "PT401": _token_refused,  # no, unknown, expired or revoked token
    "PT403": _token_refused,  # not in the token's (or the worker role's) scope
    "PT404": not_found,
    "PT409": _conflict,
    "PT412": _stale,
    "23505": _conflict,  # unique violation: the row exists (HTTP 409)
    "23503": _conflict,  # foreign key: the row it needs is gone, or still needed (HTTP 409)
    "PT400": _input,
    "P0001": _input,
    "23514": _input,
    "23502": _input,
    "42501": privileges,
    "42883": _missing_function,
    "PGRST202": _missing_function,
    "42P01": _missing_table,
    "PGRST205": _missing_table,
    "3F000": _missing_schema,
    "PGRST203": _overloaded,
    "42725": _overloaded,  # PostgreSQL's "function … is not unique" for the same overloads
    "PGRST106": _not_exposed,
    "PGRST301": refused_key,
    "PGRST302": refused_key,
    "PGRST303": refused_key,
}
CLASS_MAP: dict[str, Mapper] = {
    "22": _input,  # data exceptions: bad input
}

# Over HTTP, an error answer without a code the table knows still has a status PostgREST chose.
STATUS_MAP: dict[int, Mapper] = {
    400: _input,
    409: _conflict,
    412: _stale,
}


def error_for(refusal: Refusal, remedies: Remedies) -> OdooOpsError | None:
    """The project's error for ``refusal``'s code, or None when the table does not know it."""
    code = refusal.code
    if code is None:
        return None
    mapper = CODE_MAP.get(code) or CLASS_MAP.get(code[:2])
    return None if mapper is None else mapper(refusal, remedies)
