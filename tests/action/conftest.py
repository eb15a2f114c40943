"""Fixtures of the Action tests: a job workspace laid out like the runner's, and a registered project."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pytest
from action_harness import FakeGitHub, Workspace, new_project


@pytest.fixture
def github() -> FakeGitHub:
    return FakeGitHub()


@pytest.fixture
def workspace(tmp_path: Path, github: FakeGitHub) -> Workspace:
    return Workspace(tmp_path, github)


@pytest.fixture
def project(db: psycopg.Connection[Any]) -> str:
    return new_project(db)


@pytest.fixture
def connection(rest_url: str, service_key: str) -> dict[str, str]:
    """The connection inputs of a step against the local stack."""
    return {"supabase_url": rest_url, "supabase_key": service_key}
