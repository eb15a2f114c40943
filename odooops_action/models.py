"""Typed shapes of the ``ops`` schema's rows and of the requests the store accepts.

The database owns the rules (see ``supabase/migrations``); these models only describe the data
crossing the wire so that every client (REST or PostgreSQL) hands the rest of the code the same
objects.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, model_validator

from odooops_action.domain import (
    ACTIVE_STATUSES,
    ARTIFACT_TYPES,
    EVENT_LEVELS,
    TERMINAL_STATUSES,
    WORKFLOW_TYPES,
    ArtifactType,
    CreateRunRequest,
    EventLevel,
    RunStatus,
    WorkflowType,
)

__all__ = [
    "ACTIVE_STATUSES",
    "ARTIFACT_TYPES",
    "EVENT_LEVELS",
    "TERMINAL_STATUSES",
    "WORKFLOW_TYPES",
    "Artifact",
    "ArtifactType",
    "CancelResult",
    "ClaimFilter",
    "CreateRunRequest",
    "CreatedRun",
    "EventLevel",
    "NewArtifact",
    "NewEvent",
    "Run",
    "RunDelta",
    "RunEvent",
    "RunPoll",
    "RunStatus",
    "Transition",
    "WorkflowType",
]


class _Row(BaseModel):
    # Rows may grow columns in later migrations; an old client must keep working.
    model_config = ConfigDict(extra="ignore", frozen=True, defer_build=True)


class Run(_Row):
    run_id: str
    project_id: str
    env_id: str
    workflow_type: WorkflowType
    git_sha: str
    git_ref: str
    status: RunStatus
    claimed_by: str | None = None
    queued_at: datetime
    claimed_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    heartbeat_at: datetime | None = None
    attempt: int = 0
    exit_code: int | None = None
    status_reason: str | None = None
    created_by: str | None = None
    idempotency_key: str | None = None
    event_seq: int = 0
    revision: int = 0  # moves when anything a waiter shows changes (ops.poll_run_delta)
    metadata: dict[str, Any] = Field(default_factory=dict)

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @property
    def short_sha(self) -> str:
        return self.git_sha[:7]


class RunEvent(_Row):
    """An event of a run. ``ops.poll_run_delta`` sends only what a waiter prints: no ``event_id``,
    and ``created_at`` (and a non-empty ``payload``) only when asked for ``detail``."""

    event_id: str | None = None
    run_id: str
    seq: int
    level: EventLevel
    message: str
    payload: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime | None = None


class Artifact(_Row):
    artifact_id: str
    run_id: str
    artifact_type: ArtifactType
    storage_path: str
    digest: str | None = None
    size_bytes: int | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime


class RunPoll(_Row):
    """One poll: the run, its events with ``seq`` greater than the cursor, and its artifacts."""

    run: Run
    events: list[RunEvent] = Field(default_factory=list)
    artifacts: list[Artifact] = Field(default_factory=list)
    has_more: bool = False

    def cursor_after(self, current: int) -> int:
        """The cursor for the next poll: the last event's ``seq``, or ``current`` when none came."""
        return self.events[-1].seq if self.events else current


class RunDelta(_Row):
    """One ``ops.poll_run_delta`` answer: the events after the cursor, and the run and its
    artifacts only when the run's ``revision`` differs from the one the caller sent."""

    revision: int
    events: list[RunEvent] = Field(default_factory=list)
    has_more: bool = False
    run: Run | None = None
    artifacts: list[Artifact] | None = None

    @model_validator(mode="before")
    @classmethod
    def _events_of_the_run(cls, answer: Any, info: ValidationInfo) -> Any:
        """The answer's events do not repeat the run id: it comes from the validation context."""
        run_id = (info.context or {}).get("run_id")
        if run_id is not None and isinstance(answer, dict) and isinstance(answer.get("events"), list):
            events = answer["events"]
            return {
                **answer,
                "events": [{"run_id": run_id, **e} if isinstance(e, dict) else e for e in events],
            }
        return answer


class CreatedRun(_Row):
    run: Run
    # True when this invocation queued the run (its request_key is the one that created it, also
    # when the first answer was lost and a retry read it); False for a run queued by another.
    created: bool

    @property
    def outcome(self) -> Literal["queued", "existing"]:
        return "queued" if self.created else "existing"


class CancelResult(_Row):
    run: Run
    outcome: Literal["cancelled", "already_cancelled"]


TransitionOutcome = Literal[
    "started", "already_started", "refreshed", "not_held", "finished", "already_finished"
]


class Transition(_Row):
    """What ``start_run``, ``heartbeat_run`` or ``finish_run`` did: the run as it is now, and
    whether this call made the change (``started``, ``refreshed``, ``finished``) or found it
    already made by an earlier send of the same attempt (``already_…``; ``not_held``: the run is
    no longer this worker's to heartbeat, its status says why)."""

    run: Run
    outcome: TransitionOutcome


class NewEvent(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    level: EventLevel = "info"
    message: str
    payload: dict[str, Any] = Field(default_factory=dict)


class NewArtifact(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    artifact_type: ArtifactType
    storage_path: str
    digest: str | None = None
    size_bytes: int | None = Field(default=None, ge=0)
    metadata: dict[str, Any] = Field(default_factory=dict)


class ClaimFilter(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    project_id: str | None = None
    env_id: str | None = None
    workflow_type: WorkflowType | None = None
