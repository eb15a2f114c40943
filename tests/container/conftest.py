"""Fixtures of the container rehearsal (the session fixtures `engine` and `image`: tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.action.action_harness import FakeGitHub, new_project
from tests.container.engine import Engine
from tests.container.runner import RunnerJob


@pytest.fixture
def github() -> FakeGitHub:
    return FakeGitHub()


@pytest.fixture
def job(engine: Engine, image: str, tmp_path: Path, github: FakeGitHub) -> RunnerJob:
    return RunnerJob(engine, image, tmp_path, github=github)


@pytest.fixture
def project(db: Any) -> str:
    return new_project(db)


@pytest.fixture
def connection(rest_url: str, service_key: str) -> dict[str, str]:
    return {"supabase_url": rest_url, "supabase_key": service_key}
