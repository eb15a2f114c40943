"""Fixtures of the container rehearsal: our own Docker engine, the image built from the Dockerfile.

The engine and the image are built once per session; the stand-in base image and the build's
layers stay in the cache directory (``~/.cache/odooops-rehearsal``, or ``ODOOOPS_REHEARSAL_CACHE``)
for the next session. Figures (build times, image size) go to ``<cache>/figures.json``.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.action.action_harness import FakeGitHub, new_project
from tests.container.engine import (
    EXTERNAL_VARIABLE,
    REPO,
    Engine,
    EngineUnavailable,
    cache_dir,
    ensure_base_image,
    ensure_debian_packages,
    from_image,
)
from tests.container.runner import INSTANCE_LABEL, RunnerJob

IMAGE = "odooops-action:rehearsal"
FIGURES: dict[str, Any] = {}


def record(name: str, value: Any) -> None:
    FIGURES[name] = value


@pytest.fixture(scope="session")
def engine() -> Iterator[Engine]:
    started = time.monotonic()
    try:
        ensure_debian_packages()
        engine = Engine(cache_dir(), os.environ.get(EXTERNAL_VARIABLE)).start()
    except EngineUnavailable as exc:
        pytest.skip(f"no Docker engine for the container rehearsal: {exc}")
    record("engine_start_seconds", round(time.monotonic() - started, 2))
    record("storage_driver", engine.storage_driver)
    try:
        engine.remove_containers(INSTANCE_LABEL)  # left by an interrupted session
        yield engine
    finally:
        try:
            engine.remove_containers(INSTANCE_LABEL)
        finally:
            engine.stop()
            figures = cache_dir() / "figures.json"
            previous = json.loads(figures.read_text()) if figures.exists() else {}
            figures.write_text(json.dumps({**previous, **FIGURES}, indent=2, sort_keys=True))


@pytest.fixture(scope="session")
def image(engine: Engine) -> str:
    """The project's Dockerfile, unmodified, built on the stand-in base (``docker build --network host``)."""
    log: list[str] = []
    started = time.monotonic()
    base = from_image()
    built_base = ensure_base_image(engine, base, log)
    record("base_image", base)
    record("base_stand_in_built_seconds" if built_base else "base_stand_in_cached_seconds",
           round(time.monotonic() - started, 2))  # fmt: skip
    started = time.monotonic()
    engine.must("build", "--network", "host", "--tag", IMAGE, str(REPO), timeout=1800)
    record("image_build_seconds", round(time.monotonic() - started, 2))
    return IMAGE


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
