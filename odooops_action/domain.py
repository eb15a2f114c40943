"""The run queue's vocabulary, in plain Python: statuses, levels, types, and the create request.

Nothing here imports pydantic, so the Action can validate its inputs and send its first request
before pydantic (the largest import) is loaded; the response models live in
:mod:`odooops_action.models`, imported when a response is parsed.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from odooops_action.models import Artifact

RunStatus = Literal["queued", "claimed", "running", "success", "failed", "cancelled"]
WorkflowType = Literal["build", "deploy", "test"]
EventLevel = Literal["debug", "info", "warn", "error"]
ArtifactType = Literal["image", "sbom", "logs", "evidence", "manifest"]

RUN_STATUSES: tuple[str, ...] = ("queued", "claimed", "running", "success", "failed", "cancelled")
TERMINAL_STATUSES: frozenset[str] = frozenset({"success", "failed", "cancelled"})
ACTIVE_STATUSES: frozenset[str] = frozenset({"queued", "claimed", "running"})
WORKFLOW_TYPES: tuple[str, ...] = ("build", "deploy", "test")
EVENT_LEVELS: tuple[str, ...] = ("debug", "info", "warn", "error")
ARTIFACT_TYPES: tuple[str, ...] = ("image", "sbom", "logs", "evidence", "manifest")


@dataclass(frozen=True)
class CreateRunRequest:
    """The arguments of ``ops.create_run`` (validated by the caller and again by the database).

    ``project_id`` None: the project of the scoped token the request is sent with.
    """

    project_id: str | None
    workflow_type: WorkflowType
    git_ref: str
    git_sha: str
    env_id: str = "dev"
    created_by: str | None = None
    idempotency_key: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    # One per invocation (kept across its retries): the database answers created=True to the
    # invocation that queued the run, even when its first answer was lost.
    request_key: str | None = None

    def as_arguments(self) -> dict[str, Any]:
        """The named arguments of ``ops.create_run``."""
        return dataclasses.asdict(self)


def new_key(prefix: str) -> str:
    """A fresh repeat key (idempotency key, request key, claim token, batch or artifact key)."""
    return f"{prefix}-{uuid.uuid4().hex}"


def artifact_url(artifacts: Sequence[Artifact]) -> str:
    """What a run produced, in one string: the image's location if there is one, else the first
    artifact's, else empty (the CLI's ``wait`` prints it, the Action's ``artifact_url`` output)."""
    for artifact in artifacts:
        if artifact.artifact_type == "image":
            return artifact.storage_path
    return artifacts[0].storage_path if artifacts else ""


def utc_text(at: datetime) -> str:
    """The one way a moment is written for people: ``2026-12-01 21:01:18 UTC`` (as the database's
    ``ops.utc_text`` writes it in its messages)."""
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
