"""Argument checks shared by the CLI and the GitHub Action, run before any request is sent.

The patterns mirror the CHECK constraints of ``supabase/migrations`` so that a bad value is
refused locally, with a message naming the argument, instead of by the database after a round
trip. Every check raises :class:`~odooops_action.errors.InputError` (exit code 2).

Commit SHAs are accepted in upper case and lower-cased: git treats hex case-insensitively, while
the database stores (and compares) lower case only.
"""

from __future__ import annotations

import math
import re
from typing import cast
from urllib.parse import urlsplit

from odooops_action.domain import WORKFLOW_TYPES, WorkflowType
from odooops_action.errors import InputError

SHA_LENGTH = 40
MAX_GIT_REF_LENGTH = 255
MAX_IDEMPOTENCY_KEY_LENGTH = 255
_MAX_ECHO = 60  # how much of a bad value a message repeats

_HEX = re.compile(r"^[0-9a-f]+$")
_RUN_ID = re.compile(r"^run-\d{8}-\d{6}-[0-9a-f]{7}(-[1-9]\d{0,3})?$", re.ASCII)
_PROJECT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_ENV_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
_SHA_HINT = "Use `git rev-parse HEAD` (or ${{ github.sha }} in a workflow)."


def _shown(value: str) -> str:
    """The value quoted for a message, shortened when long."""
    text = value if len(value) <= _MAX_ECHO else value[:_MAX_ECHO] + "…"
    return repr(text)


def validate_sha(value: str, name: str = "commit_sha") -> str:
    """The full commit SHA in lower case; a short or non-hex SHA is an error naming ``name``."""
    sha = value.strip().lower()
    if not sha:
        raise InputError(f"{name} is empty: pass the full 40-character commit SHA.", hint=_SHA_HINT)
    if not _HEX.fullmatch(sha):
        raise InputError(
            f"{name} must be a hexadecimal commit SHA (got {_shown(value)}, which has characters "
            "other than 0-9 and a-f).",
            hint=_SHA_HINT,
        )
    if len(sha) != SHA_LENGTH:
        raise InputError(
            f"{name} must be the full {SHA_LENGTH}-character commit SHA "
            f"(got {_shown(value)}, {len(sha)} characters).",
            hint=_SHA_HINT,
        )
    return sha


def validate_run_id(value: str, name: str = "run_id") -> str:
    """A run id as ``ops.create_run`` makes them: ``run-YYYYMMDD-HHMMSS-<sha7>[-N]``."""
    if not _RUN_ID.fullmatch(value):
        raise InputError(
            f"{name} must look like run-YYYYMMDD-HHMMSS-<sha7> (optionally with a -N suffix), "
            f"got {_shown(value)}.",
            hint="Use the id printed by `odooops create`.",
        )
    return value


def validate_workflow_type(value: str, name: str = "workflow_type") -> WorkflowType:
    if value not in WORKFLOW_TYPES:
        raise InputError(f"{name} must be one of {', '.join(WORKFLOW_TYPES)}, got {_shown(value)}.")
    return cast(WorkflowType, value)


def validate_project_id(value: str, name: str = "project_id") -> str:
    if not _PROJECT_ID.fullmatch(value):
        raise InputError(
            f"{name} must be 1 to 100 characters of letters, digits, '.', '_' or '-', starting with a "
            f"letter or digit, got {_shown(value)}."
        )
    return value


def validate_env_id(value: str, name: str = "env_id") -> str:
    if not _ENV_ID.fullmatch(value):
        raise InputError(
            f"{name} must be 1 to 63 characters of letters, digits, '.', '_' or '-', starting with a "
            f"letter or digit (e.g. dev, staging, prod), got {_shown(value)}."
        )
    return value


def validate_git_ref(value: str, name: str = "git_ref") -> str:
    if not 1 <= len(value) <= MAX_GIT_REF_LENGTH or not value.strip():
        raise InputError(
            f"{name} must be a branch or tag name of 1 to {MAX_GIT_REF_LENGTH} characters "
            f"(got {len(value)} characters)."
        )
    return value


def validate_idempotency_key(value: str, name: str = "idempotency_key") -> str:
    if not 1 <= len(value) <= MAX_IDEMPOTENCY_KEY_LENGTH or not value.strip():
        raise InputError(
            f"{name} must be 1 to {MAX_IDEMPOTENCY_KEY_LENGTH} characters (got {len(value)} characters)."
        )
    return value


# The smallest poll interval accepted (at most one poll per interval). Faster only loads the server.
MIN_POLL_INTERVAL_SECONDS = 0.2


def parse_positive_seconds(value: str | float, name: str, *, minimum: float = 0.0) -> float:
    """A finite number of seconds greater than zero (and at least ``minimum``), from text
    (``"1200"``, ``"2.5"``) or a number."""
    text = value.strip() if isinstance(value, str) else value
    try:
        seconds = float(text)
    except ValueError:
        raise InputError(f"{name} must be a number of seconds, got {_shown(str(value))}.") from None
    if not math.isfinite(seconds) or seconds <= 0:
        raise InputError(f"{name} must be a positive number of seconds, got {_shown(str(value))}.")
    if seconds < minimum:
        raise InputError(
            f"{name} must be at least {minimum:g} seconds (polling faster only loads the server), "
            f"got {_shown(str(value))}."
        )
    return seconds


def parse_non_negative_seconds(value: str | float, name: str) -> float:
    """A finite number of seconds, zero or more (a grace period that may be skipped)."""
    text = value.strip() if isinstance(value, str) else value
    try:
        seconds = float(text)
    except ValueError:
        raise InputError(f"{name} must be a number of seconds, got {_shown(str(value))}.") from None
    if not math.isfinite(seconds) or seconds < 0:
        raise InputError(f"{name} must be zero or a positive number of seconds, got {_shown(str(value))}.")
    return seconds


def parse_poll_interval(value: str | float, name: str) -> float:
    return parse_positive_seconds(value, name, minimum=MIN_POLL_INTERVAL_SECONDS)


_POSTGRES_SCHEMES = ("postgresql://", "postgres://")
_CONNINFO_PAIR = re.compile(r"\s*[A-Za-z_]+\s*=\s*(?:'(?:[^'\\]|\\.)*'|[^\s']+)\s*")
_DSN_HINT = (
    "Use postgresql://<user>:<password>@<host>:5432/<database> (URL-encode special characters in "
    "the password), or libpq's key=value form: host=... port=5432 dbname=... user=..."
)


def validate_database_url(value: str, name: str = "DATABASE_URL") -> str:
    """A PostgreSQL connection string libpq can parse: a ``postgresql://`` (or ``postgres://``) URL
    with a numeric port, or ``key=value`` pairs. Checked without importing psycopg; the value is not
    repeated when it may hold a password."""
    text = value.strip()
    if text.lower().startswith(_POSTGRES_SCHEMES):
        try:
            _ = urlsplit(text).port
        except ValueError as exc:
            raise InputError(f"{name} is not a valid PostgreSQL URL ({exc}).", hint=_DSN_HINT) from None
        return text
    position = 0
    while position < len(text) and (pair := _CONNINFO_PAIR.match(text, position)):
        position = pair.end()
    if text and position == len(text):
        return text
    shown = "(not repeated: it may hold a password)" if "@" in text or "password" in text else _shown(text)
    raise InputError(
        f"{name} must be a PostgreSQL URL (postgresql://...) or a key=value connection string, got {shown}.",
        hint=_DSN_HINT,
    )


# -- operator commands (odooops list | logs | status | retry | workers) --------------------------

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|d|w)?$", re.ASCII)
_DURATION_UNITS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800, None: 1}
MAX_LIST_LIMIT = 1000


def parse_duration(value: str, name: str = "--since") -> float:
    """A positive duration such as ``90s``, ``15m``, ``2h``, ``7d``, ``1w`` (a bare number is
    seconds), in seconds."""
    match = _DURATION.fullmatch(value.strip().lower())
    seconds = float(match.group(1)) * _DURATION_UNITS[match.group(2)] if match else 0.0
    if not match or not math.isfinite(seconds) or seconds <= 0:
        raise InputError(
            f"{name} must be a positive duration like 90s, 15m, 2h, 7d or 1w, got {_shown(value)}."
        )
    return seconds


def validate_choice(value: str, choices: tuple[str, ...], name: str) -> str:
    if value not in choices:
        raise InputError(f"{name} must be one of {', '.join(choices)}, got {_shown(value)}.")
    return value


def parse_count(value: str, name: str, *, minimum: int = 0, maximum: int | None = None) -> int:
    """A whole number between ``minimum`` and ``maximum``."""
    text = value.strip()
    if not re.fullmatch(r"[0-9]{1,18}", text):
        raise InputError(f"{name} must be a whole number, got {_shown(value)}.")
    number = int(text)
    if number < minimum or (maximum is not None and number > maximum):
        upper = f" and {maximum}" if maximum is not None else ""
        bounds = f"between {minimum}{upper}" if maximum is not None else f"at least {minimum}"
        raise InputError(f"{name} must be {bounds}, got {_shown(value)}.")
    return number
