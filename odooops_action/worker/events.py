"""Batching events into ``append_events`` calls without losing or duplicating any.

Events wait in ``pending`` and go out in order, in batches: as soon as 500 are waiting or the
oldest has waited 200 ms, at most 5000 (the SQL limit) and about 4 MB per call. While the database
is away the batch stays here and is sent again later; ``pending`` is bounded (5000 events or
8 MB), and once full the runner stops taking output from the readers (back-pressure).

Duplicates: each batch gets a batch key when it is formed, and the batch is sent again with that
same key until an answer comes: the database acknowledges a repeated key with the first answer
and stores nothing twice. Every batch names the run's attempt, so once the run was requeued (or
claimed again) the batches of this attempt are refused (:class:`StaleAttemptError`) and dropped.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

from odooops_action.domain import new_key
from odooops_action.errors import InputError, RunNotFoundError, StaleAttemptError, TransientError
from odooops_action.models import NewEvent
from odooops_action.store.base import RunStore
from odooops_action.worker.log import WorkerLog

MAX_EVENTS_PER_CALL = 5000
BATCH_SIZE = 500
MAX_BATCH_DELAY = 0.2
MAX_BYTES_PER_CALL = 4 * 1024 * 1024
MAX_PENDING_EVENTS = 5000
MAX_PENDING_BYTES = 8 * 1024 * 1024
RETRY_DELAYS = (0.25, 0.5, 1.0, 2.0)


def _size(event: NewEvent) -> int:
    return len(event.message) + 64


class EventBuffer:
    """The events of one run on their way to ``ops.run_events``. Used from one thread only."""

    def __init__(
        self,
        store: RunStore,
        run_id: str,
        log: WorkerLog,
        *,
        confirmed_seq: int = 0,
        attempt: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._run_id = run_id
        self._attempt = attempt
        self._log = log
        self._clock = clock
        self.confirmed_seq = confirmed_seq
        self._pending: deque[NewEvent] = deque()
        self._pending_bytes = 0
        self._oldest_at: float | None = None
        self._unsure: list[NewEvent] | None = None  # sent, no answer yet: sent again with its key
        self._unsure_key = ""
        self._failures = 0
        self._retry_at = 0.0
        self.sent = 0
        self.dropped = 0
        self.run_gone = False

    # -- adding -----------------------------------------------------------------------------

    def add(self, event: NewEvent) -> None:
        if not self._pending:
            self._oldest_at = self._clock()
        self._pending.append(event)
        self._pending_bytes += _size(event)

    def note(self, level: str, message: str, **payload: object) -> None:
        """An event written by the worker itself (``payload.kind`` tells it apart from output)."""
        self.add(NewEvent.model_validate({"level": level, "message": message, "payload": payload}))

    @property
    def full(self) -> bool:
        return len(self._pending) >= MAX_PENDING_EVENTS or self._pending_bytes >= MAX_PENDING_BYTES

    @property
    def empty(self) -> bool:
        return not self._pending and self._unsure is None

    def next_due(self) -> float | None:
        """When a flush is due (monotonic time), or None when nothing waits."""
        if self.empty:
            return None
        if self._unsure is not None or len(self._pending) >= BATCH_SIZE:
            return self._retry_at
        assert self._oldest_at is not None
        return max(self._retry_at, self._oldest_at + MAX_BATCH_DELAY)

    # -- sending ----------------------------------------------------------------------------

    def flush_if_due(self) -> None:
        due = self.next_due()
        if due is not None and self._clock() >= due:
            self.flush()

    def flush(self) -> bool:
        """Send what waits (in batches). False when the database is away; it is tried again later."""
        while not self.empty:
            if self._clock() < self._retry_at:
                return False
            try:
                self._send_next()
            except TransientError as exc:
                self._failures += 1
                delay = RETRY_DELAYS[min(self._failures, len(RETRY_DELAYS)) - 1]
                self._retry_at = self._clock() + delay
                self._log("events_retry", level="warn", run=self._run_id, waiting=self.waiting, error=exc)
                return False
            self._failures = 0
            self._retry_at = 0.0
        return True

    @property
    def waiting(self) -> int:
        return len(self._pending) + len(self._unsure or ())

    def _send_next(self) -> None:
        if self._unsure is None:
            self._unsure = self._take_batch()
            self._unsure_key = new_key("batch")
        batch = self._unsure
        try:
            self.confirmed_seq = self._store.append_events(
                self._run_id, batch, attempt=self._attempt, batch_key=self._unsure_key
            )
        except (InputError, RunNotFoundError, StaleAttemptError) as exc:
            # Retrying cannot help: the run was deleted, this attempt was superseded, or the batch
            # is malformed (a bug).
            self._unsure = None
            self.dropped += len(batch)
            self.run_gone = self.run_gone or isinstance(exc, RunNotFoundError | StaleAttemptError)
            self._log("events_dropped", level="error", run=self._run_id, count=len(batch), error=exc)
            return
        self._unsure = None
        self.sent += len(batch)

    def _take_batch(self) -> list[NewEvent]:
        batch: list[NewEvent] = []
        size = 0
        while self._pending and len(batch) < MAX_EVENTS_PER_CALL:
            event_size = _size(self._pending[0])
            if batch and size + event_size > MAX_BYTES_PER_CALL:
                break
            batch.append(self._pending.popleft())
            size += event_size
        self._pending_bytes -= size
        self._oldest_at = self._clock() if self._pending else None
        return batch
