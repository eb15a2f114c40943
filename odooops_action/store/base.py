"""The one interface every run-queue client implements.

Each method maps to exactly one SQL function of the ``ops`` schema (the table in
:mod:`odooops_action.store.operations`), so the REST store (``POST /rest/v1/rpc/<fn>``) and the
PostgreSQL store (``SELECT ops.<fn>(...)``) share the rules the database enforces. Errors are
raised as the :mod:`odooops_action.errors` classes, never as transport exceptions.

Every write is safe to repeat: it carries a repeat key (``request_key``, ``claim_token``,
``batch_key``, ``artifact_key``; generated per call when the caller gives none, so the store's own
retries are safe; a caller that retries across calls passes its own) and a worker's writes name
their ``attempt`` (attempt fencing: a superseded attempt gets :class:`StaleAttemptError`).
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
        RunDelta,
        RunPoll,
        Transition,
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

    def poll_run_delta(
        self,
        run_id: str,
        after_seq: int = 0,
        known_revision: int | None = None,
        max_events: int = MAX_EVENTS_PER_POLL,
        detail: bool = False,
    ) -> RunDelta:
        """``ops.poll_run_delta``: events with ``seq > after_seq`` (seq, level, message; ``detail``
        adds created_at and payload), and the run and its artifacts when its revision is not
        ``known_revision``."""
        ...

    def cancel_run(
        self,
        run_id: str,
        reason: str | None = None,
        cancelled_by: str | None = None,
        *,
        request_key: str | None = None,
    ) -> CancelResult:
        """``ops.cancel_run``: cancel a queued/claimed/running run; outcome ``cancelled`` when this
        invocation (``request_key``) cancelled it, ``already_cancelled`` when somebody else did."""
        ...

    def claim_next_run(
        self, worker_id: str, filters: ClaimFilter | None = None, *, claim_token: str | None = None
    ) -> Run | None:
        """``ops.claim_next_run``: claim the oldest queued run (``FOR UPDATE SKIP LOCKED``); the same
        ``claim_token`` again returns the run it claimed (while that claim holds) instead of another."""
        ...

    def start_run(self, run_id: str, worker_id: str, *, attempt: int | None = None) -> Transition:
        """``ops.start_run_v2``: claimed → running, only for the worker and attempt holding the claim."""
        ...

    def heartbeat_run(self, run_id: str, worker_id: str, *, attempt: int | None = None) -> Transition:
        """``ops.heartbeat_run_v2``: refresh the lease; the returned status reveals a cancellation."""
        ...

    def finish_run(
        self,
        run_id: str,
        worker_id: str,
        status: FinalStatus,
        exit_code: int | None = None,
        reason: str | None = None,
        *,
        attempt: int | None = None,
    ) -> Transition:
        """``ops.finish_run_v2``: running → success|failed, only while still this worker's attempt."""
        ...

    def append_events(
        self,
        run_id: str,
        events: Sequence[NewEvent],
        *,
        attempt: int | None = None,
        batch_key: str | None = None,
    ) -> int:
        """``ops.append_events``: append in order; returns the batch's last event ``seq`` (the same
        answer for a repeated ``batch_key``, nothing stored again)."""
        ...

    def add_artifact(
        self,
        run_id: str,
        artifact: NewArtifact,
        *,
        attempt: int | None = None,
        artifact_key: str | None = None,
    ) -> Artifact:
        """``ops.add_artifact``: register an artifact of the run (once per ``artifact_key``)."""
        ...

    def recover_stalled_runs(self, lease_seconds: int, max_attempts: int) -> list[Run]:
        """``ops.recover_stalled_runs``: requeue (or fail) runs whose worker stopped heartbeating."""
        ...

    def call_operation(self, name: str, args: Mapping[str, Any]) -> Any:
        """An ``ops.*`` operation of the table without a method of its own (the operator
        commands' reads, ``worker_beat``, ``retry_run``, ...): its decoded JSON answer."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...
