"""Session-wide fixtures: one local stack (PostgreSQL + REST server) shared by every test."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from tests.devstack import DevStack


@pytest.fixture(scope="session", autouse=True)
def one_tls_context() -> Iterator[None]:
    """Every httpx client of the session shares one TLS context: building one loads the CA bundle
    (about 65 ms of CPU, most of a unit test's cost), and the tests only speak plain HTTP on
    loopback or to respx. The clients' own settings are untouched (the context is cached by them)."""
    from httpx._transports import default as transport

    original = transport.create_ssl_context
    transport.create_ssl_context = functools.cache(original)  # type: ignore[assignment]
    yield
    transport.create_ssl_context = original


@pytest.fixture(scope="session")
def devstack() -> Iterator[DevStack]:
    with DevStack() as stack:
        yield stack


@pytest.fixture(scope="session")
def pg_dsn(devstack: DevStack) -> str:
    """Superuser DSN of the test database."""
    return devstack.database_url


@pytest.fixture(scope="session")
def rest_url(devstack: DevStack) -> str:
    """The Supabase URL of the stack (REST lives under ``/rest/v1``)."""
    return devstack.url


@pytest.fixture(scope="session")
def service_key(devstack: DevStack) -> str:
    return devstack.service_role_key


@pytest.fixture(scope="session")
def anon_key(devstack: DevStack) -> str:
    return devstack.anon_key


@pytest.fixture(scope="session")
def secret_key(devstack: DevStack) -> str:
    return devstack.secret_key


@pytest.fixture
def db(pg_dsn: str) -> Iterator[psycopg.Connection[Any]]:
    """An autocommit superuser connection."""
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        yield conn


# -- the fast tier ---------------------------------------------------------------------------------
# `pytest -m "not slow"` is the everyday run: the unit and GitHub-layer tests, no database, no
# worker processes. A test is slow when it needs the local stack (PostgreSQL + REST server, through
# the `devstack` fixture, however indirectly), lives in a directory whose tests start real tools and
# processes, or is marked @pytest.mark.slow itself. `make test` runs everything.
SLOW_DIRECTORIES = frozenset({"delivery", "faults"})  # lint tools; real TCP faults with delays


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    slow = pytest.mark.slow
    for item in items:
        directory = item.path.parent.name
        if directory in SLOW_DIRECTORIES or "devstack" in getattr(item, "fixturenames", ()):
            item.add_marker(slow)


# The container rehearsal's Docker engine and image (tests/container, tests/delivery): one of each
# per session, built lazily, so that sessions that do not use them never start an engine.
@pytest.fixture(scope="session")
def engine() -> Iterator[Any]:
    from tests.container.session import engine_for_session

    yield from engine_for_session()


@pytest.fixture(scope="session")
def image(engine: Any) -> str:
    from tests.container.session import build_image

    return build_image(engine)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    """Stop the rehearsal's engine right after the last test that uses it (it holds a lock)."""
    yield  # the test's own fixtures are torn down first
    if "engine" not in getattr(item, "fixturenames", ()):
        return
    items = item.session.items
    later = items[items.index(item) + 1 :] if nextitem is not None else []
    if not any("engine" in getattr(other, "fixturenames", ()) for other in later):
        from tests.container.session import release_engine

        release_engine()
