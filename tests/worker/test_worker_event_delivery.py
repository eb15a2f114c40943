"""Events and artifacts reach the database exactly once even when answers are lost (real PostgreSQL)."""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from typing import Any

import psycopg
import pytest

from odooops_action.errors import TransientError
from odooops_action.models import Artifact, NewArtifact, NewEvent
from odooops_action.store.pg import PgStore
from odooops_action.worker.artifacts import ArtifactRegistrar, ArtifactsFile
from odooops_action.worker.events import EventBuffer
from odooops_action.worker.log import WorkerLog
from tests.worker.helpers import queue_run, run_events


class FlakyStore(PgStore):
    """A real PgStore whose next calls fail: before reaching the database, or after it applied them
    (as a call whose retries all lost their answers: the caller sends it again later, same key)."""

    def __init__(self, dsn: str) -> None:
        super().__init__(dsn)
        self.failures: list[str] = []  # "before" / "after", consumed one per append/add call

    def _fail(self, when: str) -> None:
        raise TransientError(f"simulated connection loss {when} the call")

    def append_events(self, run_id: str, events: Sequence[NewEvent], **keys: Any) -> int:
        when = self.failures.pop(0) if self.failures else None
        if when == "before":
            self._fail("before")
        seq = super().append_events(run_id, events, **keys)
        if when == "after":
            self._fail("after")
        return seq

    def add_artifact(self, run_id: str, artifact: NewArtifact, **keys: Any) -> Artifact:
        when = self.failures.pop(0) if self.failures else None
        if when == "before":
            self._fail("before")
        stored = super().add_artifact(run_id, artifact, **keys)
        if when == "after":
            self._fail("after")
        return stored


@pytest.fixture
def flaky(pg_dsn: str) -> Iterator[FlakyStore]:
    with FlakyStore(pg_dsn) as store:
        yield store


def line(number: int) -> NewEvent:
    return NewEvent(message=f"line {number}", payload={"stream": "stdout", "line": number})


def stored_lines(db: psycopg.Connection[Any], run_id: str) -> list[int]:
    return [e["payload"]["line"] for e in run_events(db, run_id) if "line" in e["payload"]]


def test_lost_answers_neither_duplicate_nor_lose_events(
    db: psycopg.Connection[Any], project: str, flaky: FlakyStore
) -> None:
    run_id = queue_run(db, project)
    clock = [0.0]
    buffer = EventBuffer(flaky, run_id, WorkerLog(io.StringIO()), clock=lambda: clock[0])
    flaky.failures = ["after", "before", "after"]
    number = 0
    for _ in range(4):
        for _ in range(300):
            number += 1
            buffer.add(line(number))
        while not buffer.flush():
            clock[0] += 5  # past the retry delay
    assert buffer.empty
    assert stored_lines(db, run_id) == list(range(1, number + 1))
    assert buffer.confirmed_seq == run_events(db, run_id)[-1]["seq"]


def test_an_unsure_batch_that_did_not_land_is_sent_again_once(
    db: psycopg.Connection[Any], project: str, flaky: FlakyStore
) -> None:
    run_id = queue_run(db, project)
    clock = [0.0]
    buffer = EventBuffer(flaky, run_id, WorkerLog(io.StringIO()), clock=lambda: clock[0])
    buffer.add(line(1))
    flaky.failures = ["before"]
    assert not buffer.flush()
    # Someone else appends meanwhile: the check must not mistake it for our batch.
    flaky.append_events(run_id, [NewEvent(message="line 1", payload={"stream": "stderr", "line": 1})])
    clock[0] += 5
    assert buffer.flush()
    assert stored_lines(db, run_id) == [1, 1]
    assert [e["payload"]["stream"] for e in run_events(db, run_id) if "line" in e["payload"]] == [
        "stderr",
        "stdout",
    ]


def test_artifacts_are_registered_once_and_bad_lines_become_warnings(
    db: psycopg.Connection[Any], project: str, flaky: FlakyStore, tmp_path: Any
) -> None:
    run_id = queue_run(db, project)
    path = tmp_path / "artifacts.jsonl"
    digest = "sha256:" + "ab" * 32
    path.write_text(
        f'{{"artifact_type": "image", "storage_path": "ghcr.io/a/b:1", "digest": "{digest}"}}\n'
        "garbage\n"
        '{"artifact_type": "sbom", "storage_path": "s3://b/sbom.json", "digest": "md5:123"}\n'
        '{"artifact_type": "logs", "storage_path": "s3://b/build.log", "size_bytes": 10}\n'
    )
    clock = [0.0]
    events = EventBuffer(flaky, run_id, WorkerLog(io.StringIO()), clock=lambda: clock[0])
    registrar = ArtifactRegistrar(
        flaky, run_id, ArtifactsFile(path), events, WorkerLog(io.StringIO()), clock=lambda: clock[0]
    )
    flaky.failures = ["after", "before"]
    registrar.scan()
    while not registrar.done:
        clock[0] += 5
        registrar.register()
    assert events.flush()
    rows = db.execute(
        "SELECT artifact_type, storage_path FROM ops.artifacts WHERE run_id = %s ORDER BY created_at",
        (run_id,),
    ).fetchall()
    assert rows == [("image", "ghcr.io/a/b:1"), ("logs", "s3://b/build.log")]
    warnings = [e["message"] for e in run_events(db, run_id) if e["level"] == "warn"]
    assert len(warnings) == 2
    assert "line 2" in warnings[0]
    assert "not valid JSON" in warnings[0]
    assert "line 3" in warnings[1]
    assert "digest" in warnings[1]
