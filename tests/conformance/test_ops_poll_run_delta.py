"""The REST stand-in serves ``ops.poll_run_delta`` as PostgREST does: the function's jsonb, unchanged.

Each call is made twice — ``POST /rest/v1/rpc/poll_run_delta`` (JSON arguments, defaults omitted)
and ``SELECT ops.poll_run_delta(...)`` as service_role — and the answers must be equal.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest

from tests.devstack import DevStack


@pytest.fixture
def run_id(devstack: DevStack) -> Iterator[str]:
    project = f"cf-{secrets.token_hex(4)}"
    with psycopg.connect(devstack.database_url, autocommit=True) as conn:
        conn.execute("INSERT INTO ops.projects (project_id) VALUES (%s)", (project,))
        conn.execute("INSERT INTO ops.environments (project_id, env_id) VALUES (%s, 'dev')", (project,))
        created = conn.execute(
            "SELECT ops.create_run(%s, 'build', 'main', %s)", (project, secrets.token_hex(20))
        ).fetchone()
        assert created is not None
        run: str = created[0]["run"]["run_id"]
        conn.execute(
            "SELECT ops.append_events(%s, %s::jsonb)",
            (run, '[{"message": "a"}, {"level": "warn", "message": "b", "payload": {"step": "x"}}]'),
        )
        yield run
        conn.execute("DELETE FROM ops.projects WHERE project_id = %s", (project,))


def over_sql(devstack: DevStack, arguments: dict[str, Any]) -> Any:
    named = ", ".join(f"{name} => %({name})s" for name in arguments)
    with psycopg.connect(devstack.database.dsn("authenticator"), autocommit=True) as conn:
        conn.execute("SET ROLE service_role")
        row = conn.execute(f"SELECT ops.poll_run_delta({named})", arguments).fetchone()
    assert row is not None
    return row[0]


@pytest.mark.parametrize(
    "extra",
    [
        {},
        {"after_seq": 1},
        {"after_seq": 1, "known_revision": 0},
        {"after_seq": 3, "known_revision": 0},
        {"after_seq": 0, "known_revision": None, "max_events": 2, "detail": True},
        {"after_seq": 1, "known_revision": 7, "max_events": 0, "detail": False},
    ],
)
def test_rest_answers_what_sql_answers(devstack: DevStack, run_id: str, extra: dict[str, Any]) -> None:
    arguments = {"run_id": run_id, **extra}
    key = devstack.service_role_key
    headers = {
        "apikey": key,
        "Authorization": f"Bearer {key}",
        "Content-Profile": "ops",
        "Accept-Profile": "ops",
    }
    response = httpx.post(f"{devstack.rest_url}/rpc/poll_run_delta", json=arguments, headers=headers)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.json() == over_sql(devstack, arguments)


def test_a_missing_run_is_404_pt404(devstack: DevStack) -> None:
    key = devstack.service_role_key
    headers = {
        "apikey": key,
        "Authorization": f"Bearer {key}",
        "Content-Profile": "ops",
        "Accept-Profile": "ops",
    }
    response = httpx.post(
        f"{devstack.rest_url}/rpc/poll_run_delta",
        json={"run_id": "run-20260101-000000-0000000"},
        headers=headers,
    )
    assert response.status_code == 404
    assert response.json()["code"] == "PT404"


def test_public_keys_cannot_call_it(devstack: DevStack, run_id: str) -> None:
    key = devstack.anon_key
    headers = {
        "apikey": key,
        "Authorization": f"Bearer {key}",
        "Content-Profile": "ops",
        "Accept-Profile": "ops",
    }
    response = httpx.post(f"{devstack.rest_url}/rpc/poll_run_delta", json={"run_id": run_id}, headers=headers)
    assert response.status_code in (401, 403)
