"""Pick the store for the settings at hand.

``prefer`` is explicit because the two callers want different things: the Action talks to
Supabase over HTTPS (``"auto"`` or ``"rest"``), while the worker, which can LISTEN and hold a
connection open, asks for ``"postgres"`` when ``DATABASE_URL`` is set. With ``"auto"`` and both
configured, REST wins: it needs no database credentials and goes through the project's API
gateway like every other Supabase client.

The PostgreSQL store is imported lazily so that REST users never load psycopg.
"""

from __future__ import annotations

from typing import Literal

from odooops_action.config import ConnectionSettings
from odooops_action.errors import ConfigError
from odooops_action.store.base import RunStore
from odooops_action.store.retry import RetryPolicy

StorePreference = Literal["auto", "rest", "postgres"]


def open_store(settings: ConnectionSettings, prefer: StorePreference = "auto") -> RunStore:
    """A ``RestStore`` or a ``PgStore``; raises :class:`ConfigError` when the chosen one is not configured."""
    if prefer == "rest":
        return _rest_store(settings)
    if prefer == "postgres":
        return _pg_store(settings)
    if prefer != "auto":
        raise ConfigError(f"Unknown store {prefer!r}: choose auto, rest or postgres.")
    if settings.has_rest:
        return _rest_store(settings)
    if settings.database_url is not None:
        return _pg_store(settings)
    settings.require_rest()  # raises the message naming the missing variable
    raise ConfigError("No connection is configured: set SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY.")


def _rest_store(settings: ConnectionSettings) -> RunStore:
    from odooops_action.store.rest import RestStore

    return RestStore(settings)


def _pg_store(settings: ConnectionSettings) -> RunStore:
    from odooops_action.store.pg import PgStore

    return PgStore(
        settings.require_database_url(),
        connect_timeout=settings.timeout_seconds,
        retry=RetryPolicy.with_retries(settings.max_retries),
    )
