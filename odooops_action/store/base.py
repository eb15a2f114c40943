"""The one interface every run-queue client implements.

Each method maps to exactly one SQL function of the ``ops`` schema (see
``supabase/migrations``), so the REST store (``POST /rest/v1/rpc/<fn>``) and the PostgreSQL store
(``SELECT ops.<fn>(...)``) share the rules the database enforces. Errors are raised as the
:mod:`odooops_action.errors` classes, never as transport exceptions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, Protocol

from odooops_action.domain import CreateRunRequest

if TYPE_CHECKING:  # the response models import pydantic: only needed once a response arrives
    from odooops_action.models import (
        Artifact,
        CancelResult,
        ClaimFilter,
        CreatedRun,
        NewArtifact,
        NewEvent,
        Run,
        RunPoll,
    )

FinalStatus = Literal["success", "failed"]

# Server-side cap on events returned by one poll (Supabase also caps responses at 1000 rows).
MAX_EVENTS_PER_POLL = 1000


class RunStore(Protocol):
    """Operations on the run queue. Implementations: ``RestStore`` and ``PgStore``."""

    def create_run(self, request: CreateRunRequest) -> CreatedRun:
        """``ops.create_run``: queue a run (or return the run already queued with the same key)."""
        ...

    def poll_run(self, run_id: str, after_seq: int = 0, max_events: int = MAX_EVENTS_PER_POLL) -> RunPoll:
        """``ops.poll_run``: the run, its events with ``seq > after_seq`` (in order), its artifacts."""
        ...

    def cancel_run(
        self, run_id: str, reason: str | None = None, cancelled_by: str | None = None
    ) -> CancelResult:
        """``ops.cancel_run``: cancel a queued/claimed/running run; no-op when already cancelled."""
        ...

    def claim_next_run(self, worker_id: str, filters: ClaimFilter | None = None) -> Run | None:
        """``ops.claim_next_run``: claim the oldest queued run (``FOR UPDATE SKIP LOCKED``)."""
        ...

    def start_run(self, run_id: str, worker_id: str) -> Run:
        """``ops.start_run``: claimed → running, only for the worker that holds the claim."""
        ...

    def heartbeat_run(self, run_id: str, worker_id: str) -> Run:
        """``ops.heartbeat_run``: refresh the lease; the returned status reveals a cancellation."""
        ...

    def finish_run(
        self,
        run_id: str,
        worker_id: str,
        status: FinalStatus,
        exit_code: int | None = None,
        reason: str | None = None,
    ) -> Run:
        """``ops.finish_run``: running → success|failed, only while still running and this worker's."""
        ...

    def append_events(self, run_id: str, events: Sequence[NewEvent]) -> int:
        """``ops.append_events``: append in order; returns the run's last event ``seq``."""
        ...

    def add_artifact(self, run_id: str, artifact: NewArtifact) -> Artifact:
        """``ops.add_artifact``: register an artifact of the run."""
        ...

    def recover_stalled_runs(self, lease_seconds: int, max_attempts: int) -> list[Run]:
        """``ops.recover_stalled_runs``: requeue (or fail) runs whose worker stopped heartbeating."""
        ...

    def call_function(self, function: str, arguments: Mapping[str, Any]) -> Any:
        """``ops.<function>`` returning one JSON value (token management: ops.*_api_token*)."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...
