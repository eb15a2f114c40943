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


def test_a_dead_server_is_noticed_without_waiting_for_the_kernel(pg_dsn: str) -> None:
    """statement_timeout runs on the server: if the server or the network dies mid-call, only
    TCP keepalives and tcp_user_timeout on our side end the wait (Linux would take ~15 minutes)."""
    with PgStore(pg_dsn, connect_timeout=10) as store:
        parameters = store.connection().info.get_parameters()

    assert parameters["keepalives"] == "1"
    assert (
        int(parameters["keepalives_idle"])
        + int(parameters["keepalives_interval"]) * int(parameters["keepalives_count"])
        <= 30
    )
    assert 0 < int(parameters["tcp_user_timeout"]) <= 30_000


def test_the_users_keepalive_settings_win(pg_dsn: str) -> None:
    separator = "&" if "?" in pg_dsn else "?"
    with PgStore(f"{pg_dsn}{separator}keepalives_idle=99&tcp_user_timeout=1234") as store:
        parameters = store.connection().info.get_parameters()

    assert (parameters["keepalives_idle"], parameters["tcp_user_timeout"]) == ("99", "1234")
