"""The PostgreSQL store keeps what DATABASE_URL says and adds its own defaults around it."""

from __future__ import annotations

import threading
from urllib.parse import quote

import psycopg
import pytest

from odooops_action.errors import TransientError
from odooops_action.models import NewEvent
from odooops_action.store.pg import PgStore
from odooops_action.store.retry import RetryPolicy
from tests.lifecycle.helpers import queue_run


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


def test_a_statement_rolled_back_by_a_timeout_is_retried_even_when_not_repeatable(
    pg_dsn: str, project: str
) -> None:
    """append_events must not be repeated after a lost connection, but a statement timeout is an
    answer: the server rolled it back, so the store tries again instead of reporting "maybe applied"."""
    sleeps: list[float] = []
    retry = RetryPolicy(max_attempts=8, sleep=sleeps.append, random=lambda: 0.0)
    with PgStore(pg_dsn) as setup:
        queued = queue_run(setup, project)
    blocker = psycopg.connect(pg_dsn)
    blocker.execute("SELECT 1 FROM ops.runs WHERE run_id = %s FOR UPDATE", (queued.run_id,))
    release = threading.Timer(0.6, blocker.rollback)
    release.start()
    try:
        with PgStore(pg_dsn, statement_timeout_ms=200, retry=retry) as store:
            last_seq = store.append_events(queued.run_id, [NewEvent(message="after the lock")])
            poll = store.poll_run(queued.run_id)
    finally:
        release.join()
        blocker.close()

    assert sleeps  # at least one attempt timed out on the lock and was tried again
    assert [event.message for event in poll.events].count("after the lock") == 1
    assert poll.events[-1].seq == last_seq


def test_rolled_back_statements_that_keep_failing_end_clearly(pg_dsn: str, project: str) -> None:
    retry = RetryPolicy(max_attempts=2, sleep=lambda _: None)
    with PgStore(pg_dsn) as setup:
        queued = queue_run(setup, project)
    blocker = psycopg.connect(pg_dsn)
    try:
        blocker.execute("SELECT 1 FROM ops.runs WHERE run_id = %s FOR UPDATE", (queued.run_id,))
        with (
            PgStore(pg_dsn, statement_timeout_ms=100, retry=retry) as store,
            pytest.raises(TransientError, match="failed 2 time") as raised,
        ):
            store.append_events(queued.run_id, [NewEvent(message="never")])
    finally:
        blocker.close()

    assert "may or may not" not in str(raised.value)
