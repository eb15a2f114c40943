"""An existing PostgreSQL server (e.g. CI's service container) prepared for the stack, never stopped.

Given a superuser URL, ``ExternalDatabase.start()`` creates Supabase's roles where missing, gives
``authenticator`` a password of its own choosing (a service container uses password auth; the
REST server logs in as ``authenticator``) and applies the migrations not yet recorded in
``supabase_migrations.schema_migrations``. ``stop()`` leaves the server and everything created
in it as they are: the server belongs to whoever started it.
"""

from __future__ import annotations

import secrets
import time
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg
from psycopg import sql

from tests.devstack.postgres import (
    DEFAULT_MIGRATIONS_DIR,
    PostgresError,
    apply_migration,
    migration_files,
    migration_version,
)

AUTHENTICATOR = "authenticator"
URL_SCHEMES = ("postgresql", "postgres")

# The subset of the cluster bootstrap (postgres.SUPABASE_BOOTSTRAP_SQL) the REST server and the
# migrations need, written to run again on a server that already has some or all of it.
EXTERNAL_BOOTSTRAP_SQL = """
DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'anon') THEN
    CREATE ROLE anon NOLOGIN NOINHERIT;
    ALTER ROLE anon SET statement_timeout = '3s';
  END IF;
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'authenticated') THEN
    CREATE ROLE authenticated NOLOGIN NOINHERIT;
    ALTER ROLE authenticated SET statement_timeout = '8s';
  END IF;
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'service_role') THEN
    CREATE ROLE service_role NOLOGIN NOINHERIT BYPASSRLS;
  END IF;
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'authenticator') THEN
    CREATE ROLE authenticator LOGIN NOINHERIT;
    ALTER ROLE authenticator SET statement_timeout = '8s';
  END IF;
END $$;
GRANT anon, authenticated, service_role TO authenticator;
GRANT USAGE ON SCHEMA public TO anon, authenticated, service_role;
CREATE SCHEMA IF NOT EXISTS supabase_migrations;
CREATE TABLE IF NOT EXISTS supabase_migrations.schema_migrations (
  version text PRIMARY KEY,
  name text,
  statements text[]
);
"""


class Database(Protocol):
    """What ``DevStack`` needs of its database: a throwaway cluster or an external server."""

    applied_migrations: list[str]

    def start(self) -> object: ...

    def stop(self) -> None: ...

    def dsn(self, user: str) -> str: ...

    @property
    def superuser_dsn(self) -> str: ...


class ExternalDatabase:
    """A database on a server someone else runs, reached through a superuser URL."""

    def __init__(
        self,
        superuser_url: str,
        migrations_dir: Path | None = DEFAULT_MIGRATIONS_DIR,
        *,
        authenticator_password: str | None = None,
        connect_timeout: float = 30.0,
    ) -> None:
        parts = urlsplit(superuser_url)
        if parts.scheme not in URL_SCHEMES or not parts.hostname:
            raise ValueError("the database URL must look like postgresql://USER:PASSWORD@HOST:PORT/DB")
        self.superuser_url = superuser_url
        self.migrations_dir = migrations_dir
        self.authenticator_password = authenticator_password or secrets.token_urlsafe(24)
        self.connect_timeout = connect_timeout
        self.applied_migrations: list[str] = []

    @property
    def superuser_dsn(self) -> str:
        return self.superuser_url

    def dsn(self, user: str) -> str:
        """The URL for ``user``: the superuser's as given, the authenticator's with its password."""
        parts = urlsplit(self.superuser_url)
        if user == parts.username:
            return self.superuser_url
        host_and_port = parts.netloc.rpartition("@")[2]
        credentials = quote(user, safe="")
        if user == AUTHENTICATOR:
            credentials += ":" + quote(self.authenticator_password, safe="")
        return urlunsplit(parts._replace(netloc=f"{credentials}@{host_and_port}"))

    def start(self) -> ExternalDatabase:
        with self._connect_when_up() as conn:
            conn.execute(EXTERNAL_BOOTSTRAP_SQL)
            conn.execute(
                sql.SQL("ALTER ROLE {} WITH LOGIN PASSWORD {}").format(
                    sql.Identifier(AUTHENTICATOR), sql.Literal(self.authenticator_password)
                )
            )
            recorded = {
                row[0] for row in conn.execute("SELECT version FROM supabase_migrations.schema_migrations")
            }
            for path in migration_files(self.migrations_dir):
                if migration_version(path) not in recorded:
                    apply_migration(conn, path)
                    self.applied_migrations.append(path.name)
            conn.execute("NOTIFY pgrst, 'reload schema'")
        return self

    def stop(self) -> None:
        """Nothing to stop: the server, its roles and the applied migrations stay."""

    def _connect_when_up(self) -> psycopg.Connection[Any]:
        # A service container can pass its health check while its entrypoint still runs the
        # socket-only init server, so the first TCP connections may be refused for a moment.
        deadline = time.monotonic() + self.connect_timeout
        while True:
            try:
                return psycopg.connect(self.superuser_url, autocommit=True, connect_timeout=5)
            except psycopg.OperationalError as exc:
                if time.monotonic() >= deadline:
                    raise PostgresError(f"cannot connect to the external database: {exc}") from exc
                time.sleep(0.5)
