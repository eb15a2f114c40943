"""Errors that reach a user: each says what went wrong and what to do about it, in one sentence."""

from __future__ import annotations


class OdooOpsError(Exception):
    """Base class: ``str(err)`` is the whole user-facing message."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(f"{_sentence(message)} {hint}" if hint else message)


def _sentence(text: str) -> str:
    """``text`` ending like a sentence, so that a hint can follow it."""
    stripped = text.rstrip()
    return stripped if stripped.endswith((".", "!", "?", ":")) else f"{stripped}."


class StoppedBySignal(OdooOpsError):
    """The command was stopped by a signal: exit code 128 + its number, as a shell reports it
    (SIGINT when the signal is not known)."""

    def __init__(self, message: str, *, signal_number: int | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.exit_code = 128 + (signal_number if signal_number is not None else _SIGINT)


_SIGINT = 2


class InputError(OdooOpsError):
    """A user-supplied argument or input is invalid; raised before any side effect."""

    exit_code = 2


class ConfigError(OdooOpsError):
    """Connection settings are missing or malformed (no URL, no key)."""

    exit_code = 2


class AuthError(OdooOpsError):
    """The server refused the key (401) or the key's role lacks a privilege (403)."""


class SchemaNotExposedError(OdooOpsError):
    """PostgREST answered PGRST106: schema ``ops`` is not in the exposed schemas."""


class MigrationMissingError(OdooOpsError):
    """A table or function of the ``ops`` schema does not exist (PGRST205/PGRST202/42P01)."""


class RunNotFoundError(OdooOpsError):
    """The run id does not exist."""


class StateConflictError(OdooOpsError):
    """The run's state does not allow the requested change (HTTP 409 / SQLSTATE PT409)."""


class StaleAttemptError(StateConflictError):
    """A worker wrote for an attempt of the run that was superseded (SQLSTATE PT412, HTTP 412)."""


class OverloadedFunctionError(OdooOpsError):
    """Two signatures of one ``ops`` function match a call (PostgREST PGRST203)."""


class TransientError(OdooOpsError):
    """The server stayed unavailable after the retries (connect errors, 503, 520, 504, 429)."""


class ApiError(OdooOpsError):
    """Any other error answer from the server, with its code and message."""
