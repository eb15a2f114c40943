"""Fixtures of the lifecycle suite: both backends (REST and PostgreSQL) and per-test projects."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from odooops_action.store.pg import PgStore
from tests.devstack import DevStack
from tests.lifecycle.helpers import BACKENDS, Backend, unique_id


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, devstack: DevStack, project_id: str) -> Iterator[Backend]:
    """The queue through REST (service role), PostgreSQL, or REST with a scoped token of ``project_id``."""
    chosen = Backend(request.param, devstack, project_id)
    try:
        yield chosen
    finally:
        chosen.close()


@pytest.fixture
def pg_store(pg_dsn: str) -> Iterator[PgStore]:
    with PgStore(pg_dsn) as store:
        yield store


@pytest.fixture
def project_id(db: psycopg.Connection[Any]) -> Iterator[str]:
    """A unique project id, deleted (with its environments, runs, events) after the test."""
    project = unique_id("lc")
    yield project
    db.execute("DELETE FROM ops.projects WHERE project_id = %s", (project,))


@pytest.fixture
def project(db: psycopg.Connection[Any], project_id: str) -> str:
    """A registered project with environments dev, staging and prod."""
    db.execute("INSERT INTO ops.projects (project_id) VALUES (%s)", (project_id,))
    for env_id in ("dev", "staging", "prod"):
        db.execute("INSERT INTO ops.environments (project_id, env_id) VALUES (%s, %s)", (project_id, env_id))
    return project_id
