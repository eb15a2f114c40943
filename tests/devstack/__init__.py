"""The local stack used by the tests, the demo and ``make stack``.

``DevStack`` = a throwaway PostgreSQL with Supabase's roles and ``supabase/migrations`` applied
+ a PostgREST-compatible REST server + the project's API keys. With ``database_url`` (a superuser
URL of a running server, e.g. CI's service container) it prepares that server instead of
starting one, and leaves it running on ``stop()``.
"""

from __future__ import annotations

from pathlib import Path
from types import TracebackType
from typing import Any

from tests.devstack.external import Database, ExternalDatabase
from tests.devstack.faults import Fault, FaultPlan, RequestRecord
from tests.devstack.keys import ApiKeys, decode_jwt, mint_jwt, role_jwt
from tests.devstack.postgres import DEFAULT_MIGRATIONS_DIR, PostgresCluster
from tests.devstack.restserver import RestServer

DEFAULT_SCHEMAS: tuple[str, ...] = ("public", "ops")


class DevStack:
    """PostgreSQL + REST server + keys, started together and stopped together."""

    def __init__(
        self,
        *,
        db_schemas: tuple[str, ...] | list[str] = DEFAULT_SCHEMAS,
        migrations_dir: Path | None = DEFAULT_MIGRATIONS_DIR,
        max_rows: int | None = 1000,
        keys: ApiKeys | None = None,
        database_url: str | None = None,
    ) -> None:
        self.keys = keys or ApiKeys.generate()
        self.database: Database = (
            ExternalDatabase(database_url, migrations_dir)
            if database_url
            else PostgresCluster(migrations_dir)
        )
        self.db_schemas = list(db_schemas)
        self.max_rows = max_rows
        self._server: RestServer | None = None

    @property
    def cluster(self) -> PostgresCluster:
        """The stack's own PostgreSQL (restart, halt, ...); there is none with ``database_url``."""
        if not isinstance(self.database, PostgresCluster):
            raise RuntimeError("this DevStack uses an external database (database_url), not a cluster")
        return self.database

    def start(self) -> DevStack:
        self.database.start()
        try:
            self._server = self.new_server(self.db_schemas).start()
        except BaseException:
            self.database.stop()
            raise
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        try:
            if server is not None:
                server.stop()
        finally:
            self.database.stop()

    def __enter__(self) -> DevStack:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def new_server(self, db_schemas: tuple[str, ...] | list[str], **options: Any) -> RestServer:
        """Another (not started) REST server over the same database, e.g. with other exposed schemas."""
        merged: dict[str, Any] = {"max_rows": self.max_rows, **options}
        return RestServer(
            self.database.dsn("authenticator"), db_schemas=list(db_schemas), keys=self.keys, **merged
        )

    @property
    def server(self) -> RestServer:
        if self._server is None:
            raise RuntimeError("DevStack not started")
        return self._server

    @property
    def url(self) -> str:
        """The Supabase URL (REST lives under ``/rest/v1``)."""
        return self.server.url

    @property
    def rest_url(self) -> str:
        return self.server.rest_url

    @property
    def database_url(self) -> str:
        return self.database.superuser_dsn

    @property
    def service_role_key(self) -> str:
        return self.keys.service_role

    @property
    def anon_key(self) -> str:
        return self.keys.anon

    @property
    def secret_key(self) -> str:
        return self.keys.secret

    @property
    def publishable_key(self) -> str:
        return self.keys.publishable

    def env(self) -> dict[str, str]:
        """The variables a client of this stack needs (what ``.devstack.env`` holds)."""
        return {
            "SUPABASE_URL": self.url,
            "SUPABASE_SERVICE_ROLE_KEY": self.keys.service_role,
            "SUPABASE_ANON_KEY": self.keys.anon,
            "SUPABASE_SECRET_KEY": self.keys.secret,
            "SUPABASE_PUBLISHABLE_KEY": self.keys.publishable,
            "SUPABASE_JWT_SECRET": self.keys.jwt_secret,
            "DATABASE_URL": self.database_url,
        }


__all__ = [
    "DEFAULT_SCHEMAS",
    "ApiKeys",
    "DevStack",
    "ExternalDatabase",
    "Fault",
    "FaultPlan",
    "PostgresCluster",
    "RequestRecord",
    "RestServer",
    "decode_jwt",
    "mint_jwt",
    "role_jwt",
]
