"""The answers of the operator operations, typed (pydantic, like :mod:`odooops_action.models`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from odooops_action.models import Artifact, Run, RunEvent


class _Answer(BaseModel):
    # Later migrations may add fields; an older client keeps working.
    model_config = ConfigDict(extra="ignore", frozen=True, defer_build=True)


class RunList(_Answer):
    now: datetime
    runs: list[Run] = Field(default_factory=list)
    has_more: bool = False


class RunStatus(_Answer):
    now: datetime
    run: Run
    artifacts: list[Artifact] = Field(default_factory=list)
    timeline: list[RunEvent] = Field(default_factory=list)
    events: list[RunEvent] = Field(default_factory=list)


class Worker(_Answer):
    worker_id: str
    host: str | None = None
    pid: int | None = None
    version: str | None = None
    filters: dict[str, Any] = Field(default_factory=dict)
    state: str
    current_run_id: str | None = None
    started_at: datetime
    last_seen_at: datetime
    live: bool | None = None


class WorkerList(_Answer):
    now: datetime
    workers: list[Worker] = Field(default_factory=list)


class RetriedRun(_Answer):
    run: Run
    created: bool
    retry_of: str


class SchemaVersion(_Answer):
    version: str
    source: str
    now: datetime


class QueueGroup(_Answer):
    project_id: str
    env_id: str
    workflow_type: str
    queued: int
    oldest_queued_at: datetime
    live_workers: int


class StalledRun(_Answer):
    run_id: str
    status: str
    claimed_by: str | None = None
    heartbeat_at: datetime | None = None
    attempt: int = 0


class Overload(_Answer):
    function: str
    signatures: list[str]


class DoctorReport(_Answer):
    now: datetime
    version: str
    overloaded: list[Overload] = Field(default_factory=list)
    missing_operations: list[str] = Field(default_factory=list)
    grant_problems: list[str] = Field(default_factory=list)
    workers: list[Worker] = Field(default_factory=list)
    queue: list[QueueGroup] = Field(default_factory=list)
    stalled: list[StalledRun] = Field(default_factory=list)
