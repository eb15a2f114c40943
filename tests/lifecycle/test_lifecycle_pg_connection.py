"""The PostgreSQL store keeps what DATABASE_URL says and adds its own defaults around it."""

from __future__ import annotations

from urllib.parse import quote

from odooops_action.store.pg import PgStore


def test_options_in_database_url_are_kept_next_to_the_statement_timeout(pg_dsn: str) -> None:
    separator = "&" if "?" in pg_dsn else "?"
    dsn = f"{pg_dsn}{separator}options={quote('-c role=service_role')}&application_name=ops-test"
    with PgStore(dsn, statement_timeout_ms=12_000) as store:
        row = (
            store.connection()
            .execute(
                "select current_user as who, current_setting('statement_timeout') as timeout,"
                " current_setting('application_name') as app"
            )
            .fetchone()
        )

    assert row == {"who": "service_role", "timeout": "12s", "app": "ops-test"}


def test_the_users_statement_timeout_wins_over_the_default(pg_dsn: str) -> None:
    separator = "&" if "?" in pg_dsn else "?"
    dsn = f"{pg_dsn}{separator}options={quote('-c statement_timeout=5s')}"
    with PgStore(dsn) as store:
        row = store.connection().execute("select current_setting('statement_timeout') as timeout").fetchone()

    assert row == {"timeout": "5s"}
