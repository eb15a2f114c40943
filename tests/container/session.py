"""The rehearsal's session: one engine and one image for the whole test session, and its figures.

Used by the ``engine`` and ``image`` fixtures of ``tests/conftest.py`` (shared by tests/container
and tests/delivery, so that one session never starts two engines). Figures (times, sizes) are
merged into ``<cache>/figures.json`` at the end (BENCHMARKS.md, "Container rehearsal").
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from typing import Any

import pytest

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

IMAGE = "odooops-action:rehearsal"
INSTANCE_LABEL = "odooops-rehearsal"
FIGURES: dict[str, Any] = {}


def record(name: str, value: Any) -> None:
    FIGURES[name] = value


def recorded() -> dict[str, Any]:
    """The figures of earlier sessions (``<cache>/figures.json``)."""
    figures = cache_dir() / "figures.json"
    loaded: dict[str, Any] = json.loads(figures.read_text()) if figures.exists() else {}
    return loaded


_RUNNING: list[Engine] = []


def engine_for_session() -> Iterator[Engine]:
    started = time.monotonic()
    try:
        ensure_debian_packages()
        engine = Engine(cache_dir(), os.environ.get(EXTERNAL_VARIABLE)).start()
    except EngineUnavailable as exc:
        pytest.skip(f"no Docker engine for the container rehearsal: {exc}")
    _RUNNING.append(engine)
    record("engine_start_seconds", round(time.monotonic() - started, 2))
    record("storage_driver", engine.storage_driver)
    try:
        engine.remove_containers(INSTANCE_LABEL)  # left by an interrupted session
        yield engine
    finally:
        release_engine()


def release_engine() -> None:
    """Remove our containers, stop the engine, write the figures; at once after the last test that
    uses the engine (tests/conftest.py), so that another session waiting for the cache's lock does
    not wait for the rest of this one."""
    while _RUNNING:
        engine = _RUNNING.pop()
        try:
            engine.remove_containers(INSTANCE_LABEL)
        finally:
            engine.stop()
            merged = {**recorded(), **FIGURES}
            (cache_dir() / "figures.json").write_text(json.dumps(merged, indent=2, sort_keys=True))


def build_image(engine: Engine) -> str:
    """The project's Dockerfile, unmodified, on the (stood-in) base: ``docker build --network host``."""
    log: list[str] = []
    started = time.monotonic()
    base = from_image()
    built_base = ensure_base_image(engine, base, log)
    record("base_image", base)
    key = "base_built_seconds" if built_base else "base_cached_seconds"
    record(key, round(time.monotonic() - started, 2))
    started = time.monotonic()
    engine.must("build", "--network", "host", "--tag", IMAGE, str(REPO), timeout=1800)
    record("image_build_seconds", round(time.monotonic() - started, 2))
    return IMAGE
