"""Small builders for the queue's models, so tests state only what matters to them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from odooops_action.models import Artifact, Run, RunEvent

T0 = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)


def make_run(**changes: Any) -> Run:
    fields: dict[str, Any] = {
        "run_id": "run-0001",
        "project_id": "acme",
        "env_id": "staging",
        "workflow_type": "build",
        "git_sha": "0123456789abcdef0123456789abcdef01234567",
        "git_ref": "refs/heads/main",
        "status": "success",
        "claimed_by": "worker-1",
        "queued_at": T0,
        "claimed_at": T0 + timedelta(seconds=5),
        "started_at": T0 + timedelta(seconds=7),
        "finished_at": T0 + timedelta(seconds=72),
        "exit_code": 0,
        "created_by": "octocat",
    }
    fields.update(changes)
    return Run(**fields)


def make_event(seq: int, message: str, level: str = "info", **changes: Any) -> RunEvent:
    fields: dict[str, Any] = {
        "event_id": f"ev-{seq}",
        "run_id": "run-0001",
        "seq": seq,
        "level": level,
        "message": message,
        "payload": {},
        "created_at": T0 + timedelta(seconds=seq),
    }
    fields.update(changes)
    return RunEvent(**fields)


def make_artifact(storage_path: str, **changes: Any) -> Artifact:
    fields: dict[str, Any] = {
        "artifact_id": "art-1",
        "run_id": "run-0001",
        "artifact_type": "image",
        "storage_path": storage_path,
        "digest": "sha256:" + "ab" * 32,
        "size_bytes": 12_900_000,
        "created_at": T0 + timedelta(seconds=70),
    }
    fields.update(changes)
    return Artifact(**fields)
