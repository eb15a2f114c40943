"""State shared by the slots of one worker process: options, logs, wake-ups, shutdown, recovery."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from odooops_action.errors import OdooOpsError
from odooops_action.store.base import RunStore
from odooops_action.worker.log import WorkerLog
from odooops_action.worker.notify import CancelWatch, Wakeup
from odooops_action.worker.options import WorkerOptions
from odooops_action.worker.registry import WorkerRegistry


class Shutdown:
    """Set by SIGTERM/SIGINT: the first asks for a graceful stop, a second one forces it."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.requested_at: float | None = None
        self.forced = False
        self.signal_name = ""

    def request(self, signal_name: str) -> None:
        if self.requested_at is not None:
            self.forced = True
        else:
            self.requested_at = time.monotonic()
            self.signal_name = signal_name
        self._event.set()

    @property
    def requested(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: float) -> bool:
        return self._event.wait(timeout)

    def grace_expired(self, grace: float) -> bool:
        if self.requested_at is None:
            return False
        return self.forced or time.monotonic() >= self.requested_at + grace


class Recovery:
    """``recover_stalled_runs`` once per ``interval`` per process, by whichever slot comes first."""

    def __init__(self, options: WorkerOptions) -> None:
        self._options = options
        self._lock = threading.Lock()
        self._next_at = 0.0

    def maybe_run(self, store: RunStore, log: WorkerLog) -> None:
        with self._lock:
            now = time.monotonic()
            if now < self._next_at:
                return
            self._next_at = now + self._options.recovery_interval
        try:
            recovered = store.recover_stalled_runs(self._options.lease_seconds, self._options.max_attempts)
        except OdooOpsError as exc:
            log("recover_failed", level="warn", error=exc)
            return
        for run in recovered:
            log(
                "recovered",
                level="warn",
                run=run.run_id,
                status=run.status,
                attempt=run.attempt,
                reason=run.status_reason,
            )


@dataclass
class WorkerContext:
    options: WorkerOptions
    log: WorkerLog
    shutdown: Shutdown = field(default_factory=Shutdown)
    wakeup: Wakeup = field(default_factory=Wakeup)
    cancel_watch: CancelWatch = field(default_factory=CancelWatch)
    recovery: Recovery = field(init=False)
    registry: WorkerRegistry | None = None  # ops.workers (worker/registry.py), set by the supervisor

    def __post_init__(self) -> None:
        self.recovery = Recovery(self.options)
