"""open_store: which store each preference yields, and that REST never imports psycopg."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from rest_fakes import BASE_URL, SECRET_KEY

from odooops_action.config import ConnectionSettings
from odooops_action.errors import ConfigError
from odooops_action.store.factory import open_store
from odooops_action.store.rest import RestStore

DSN = "postgresql://postgres:pw@127.0.0.1:1/postgres"
BOTH = ConnectionSettings(supabase_url=BASE_URL, supabase_key=SECRET_KEY, database_url=DSN)


def test_auto_prefers_rest_when_both_are_configured() -> None:
    store = open_store(BOTH)
    try:
        assert isinstance(store, RestStore)
    finally:
        store.close()


def test_postgres_preference_yields_the_pg_store() -> None:
    from odooops_action.store.pg import PgStore

    store = open_store(BOTH, prefer="postgres")
    try:
        assert isinstance(store, PgStore)
    finally:
        store.close()


def test_auto_falls_back_to_postgres_without_a_supabase_url() -> None:
    from odooops_action.store.pg import PgStore

    store = open_store(ConnectionSettings(database_url=DSN))
    try:
        assert isinstance(store, PgStore)
    finally:
        store.close()


def test_postgres_preference_without_database_url_says_what_to_set() -> None:
    with pytest.raises(ConfigError, match="DATABASE_URL is not set: export DATABASE_URL=postgresql://"):
        open_store(ConnectionSettings(supabase_url=BASE_URL, supabase_key=SECRET_KEY), prefer="postgres")


def test_rest_preference_without_a_key_says_what_to_set() -> None:
    with pytest.raises(ConfigError, match="SUPABASE_SERVICE_ROLE_KEY is not set"):
        open_store(ConnectionSettings(supabase_url=BASE_URL, database_url=DSN), prefer="rest")


def test_nothing_configured_names_supabase_url() -> None:
    with pytest.raises(ConfigError, match="SUPABASE_URL is not set"):
        open_store(ConnectionSettings())


def test_rest_users_never_import_psycopg() -> None:
    script = textwrap.dedent(
        f"""
        import sys
        from odooops_action.config import ConnectionSettings
        from odooops_action.store.factory import open_store
        store = open_store(ConnectionSettings(supabase_url={BASE_URL!r}, supabase_key={SECRET_KEY!r}))
        store.close()
        print(sorted(name for name in sys.modules if name.split(".")[0] in ("psycopg", "psycopg_binary")))
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)

    assert result.stdout.strip() == "[]"
