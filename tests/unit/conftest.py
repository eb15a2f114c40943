"""Fixtures of the HTTP-layer unit tests: a respx router and a store whose waits are recorded."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import respx
from rest_fakes import BASE_URL, SERVICE_JWT

from odooops_action.config import ConnectionSettings
from odooops_action.store.rest import RestStore
from odooops_action.store.retry import RetryPolicy


@pytest.fixture
def api() -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_called=False, assert_all_mocked=True) as router:
        yield router


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def make_store(sleeps: list[float]) -> Iterator[Callable[..., RestStore]]:
    """Build a RestStore whose waits are recorded instead of slept (jitter fixed at 0.5)."""
    stores: list[RestStore] = []

    def build(key: str = SERVICE_JWT, max_attempts: int = 4, **settings: Any) -> RestStore:
        policy = RetryPolicy(
            max_attempts=max_attempts, sleep=sleeps.append, random=lambda: 0.5, clock=lambda: 1_000_000.0
        )
        store = RestStore(
            ConnectionSettings(supabase_url=BASE_URL, supabase_key=key, **settings), retry_policy=policy
        )
        stores.append(store)
        return store

    yield build
    for store in stores:
        store.close()


@pytest.fixture
def store(make_store: Callable[..., RestStore]) -> RestStore:
    return make_store()
