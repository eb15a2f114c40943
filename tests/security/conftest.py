"""Fixtures of the least-privilege suite: two projects, tokens minted by the owner, raw REST calls."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import psycopg
import pytest

from tests.devstack import DevStack
from tests.lifecycle.helpers import mint_token, new_sha, unique_id

TOKEN_HEADER = "X-OdooOps-Token"


@dataclass
class Api:
    """Raw PostgREST calls against the stack with a given key and, optionally, a token."""

    stack: DevStack
    key: str
    token: str | None = None

    def headers(self) -> dict[str, str]:
        headers = {"apikey": self.key, "Content-Profile": "ops", "Accept-Profile": "ops"}
        if self.key.count(".") == 2:
            headers["Authorization"] = f"Bearer {self.key}"
        if self.token is not None:
            headers[TOKEN_HEADER] = self.token
        return headers

    def rpc(self, function: str, body: dict[str, Any]) -> httpx.Response:
        return httpx.post(f"{self.stack.url}/rest/v1/rpc/{function}", json=body, headers=self.headers())

    def get(self, table: str) -> httpx.Response:
        return httpx.get(f"{self.stack.url}/rest/v1/{table}", params={"select": "*"}, headers=self.headers())


def create_body(project: str | None, workflow: str = "build", env: str = "dev") -> dict[str, Any]:
    return {
        "project_id": project,
        "workflow_type": workflow,
        "git_ref": "main",
        "git_sha": new_sha(),
        "env_id": env,
        "created_by": None,
        "idempotency_key": None,
        "metadata": {},
    }


@pytest.fixture
def projects(db: psycopg.Connection[Any]) -> Iterator[tuple[str, str]]:
    """Two registered projects, A and B, each with environments dev and prod."""
    pair = (unique_id("sec-a"), unique_id("sec-b"))
    for project in pair:
        db.execute("INSERT INTO ops.projects (project_id) VALUES (%s)", (project,))
        for env in ("dev", "prod"):
            db.execute("INSERT INTO ops.environments (project_id, env_id) VALUES (%s, %s)", (project, env))
    yield pair
    for project in pair:
        db.execute("DELETE FROM ops.projects WHERE project_id = %s", (project,))


@pytest.fixture
def token_for(devstack: DevStack) -> Callable[..., str]:
    def mint(project: str, scopes: tuple[str, ...] = ("create", "read", "cancel"), **limits: Any) -> str:
        return mint_token(devstack.database_url, project, scopes, **limits)

    return mint


@pytest.fixture
def api(devstack: DevStack) -> Callable[[str | None], Api]:
    """An Api with the project's publishable (public) key and the given token."""
    return lambda token: Api(devstack, devstack.publishable_key, token)


@pytest.fixture
def service(devstack: DevStack) -> Api:
    return Api(devstack, devstack.service_role_key)


def queued_run(service: Api, project: str, workflow: str = "build", env: str = "dev") -> str:
    created = service.rpc("create_run", create_body(project, workflow, env))
    assert created.status_code == 200, created.text
    return str(created.json()["run"]["run_id"])
