"""Fixtures of the worker tests (built on the shared ``devstack``/``pg_dsn``/``db`` fixtures)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.worker.helpers import WorkerFactory, new_project


@pytest.fixture
def project(db: psycopg.Connection[Any]) -> str:
    return new_project(db)


@pytest.fixture
def start_worker(tmp_path: Path, pg_dsn: str) -> Iterator[WorkerFactory]:
    """Start ``python -m odooops_action.worker`` processes connected with DATABASE_URL."""
    factory = WorkerFactory(tmp_path, {"DATABASE_URL": pg_dsn})
    yield factory
    factory.stop_all()


@pytest.fixture
def start_rest_worker(tmp_path: Path, rest_url: str, service_key: str) -> Iterator[WorkerFactory]:
    """Workers that only have SUPABASE_URL and the service key (REST, polling)."""
    factory = WorkerFactory(tmp_path, {"SUPABASE_URL": rest_url, "SUPABASE_SERVICE_ROLE_KEY": service_key})
    yield factory
    factory.stop_all()
