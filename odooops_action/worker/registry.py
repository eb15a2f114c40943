"""The worker registry: every worker process keeps its slots' rows of ``ops.workers`` current.

A thread of its own, with its own store (stores are not thread-safe), calls ``ops.worker_beat``
for each slot every :data:`BEAT_INTERVAL` seconds — idle or busy, so that ``odooops workers`` and
``odooops doctor`` see an idle fleet — and at once when a slot's state changes (idle → busy with
the run it executes, and back; ``stopped`` on exit). The registry never stops the worker: a
failed beat is logged and tried again at the next interval; a schema without ``ops.worker_beat``
(migrations older than 20261202020000) or a role that may not call it is logged once and the
registry goes quiet.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass

from odooops_action import __version__
from odooops_action.errors import AuthError, MigrationMissingError, OdooOpsError
from odooops_action.models import ClaimFilter
from odooops_action.store.base import RunStore
from odooops_action.worker.log import WorkerLog

BEAT_INTERVAL = 15.0


@dataclass
class _SlotState:
    state: str = "idle"
    run_id: str | None = None
    dirty: bool = True


class WorkerRegistry:
    def __init__(
        self,
        open_store: Callable[[], RunStore],
        worker_ids: list[str],
        filters: ClaimFilter,
        log: WorkerLog,
        interval: float = BEAT_INTERVAL,
    ) -> None:
        self._open_store = open_store
        self._filters = {k: v for k, v in filters.model_dump().items() if v is not None}
        self._log = log
        self._interval = interval
        self._slots = {worker_id: _SlotState() for worker_id in worker_ids}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._quiet = False

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="odooops-registry", daemon=True)
        self._thread.start()

    def set_state(self, worker_id: str, state: str, run_id: str | None = None) -> None:
        with self._lock:
            self._slots[worker_id] = _SlotState(state, run_id)
        self._wake.set()

    def stop(self) -> None:
        """Record every slot as ``stopped`` (one last beat) and end the thread."""
        for worker_id in self._slots:
            self.set_state(worker_id, "stopped")
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(10.0)

    def _loop(self) -> None:
        store: RunStore | None = None
        try:
            while True:
                stopping = self._stopping.is_set()
                if not self._quiet:
                    store = store or self._open_quietly()
                    if store is not None:
                        self._beat_all(store)
                if stopping:
                    return
                self._wake.wait(self._interval)
                self._wake.clear()
        finally:
            if store is not None:
                with contextlib.suppress(Exception):
                    store.close()

    def _open_quietly(self) -> RunStore | None:
        try:
            return self._open_store()
        except OdooOpsError as exc:
            self._log("registry_failed", level="warn", error=exc)
            return None

    def _beat_all(self, store: RunStore) -> None:
        from odooops_action.operator.calls import call

        with self._lock:
            slots = {worker_id: _SlotState(s.state, s.run_id) for worker_id, s in self._slots.items()}
            for state in self._slots.values():
                state.dirty = False
        for worker_id, slot in slots.items():
            arguments = {
                "worker_id": worker_id,
                "state": slot.state,
                "current_run_id": slot.run_id,
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "version": __version__,
                "filters": self._filters,
            }
            try:
                call(store, "worker_beat", arguments)
            except (MigrationMissingError, AuthError) as exc:
                # An older schema, or a role without ops.worker_beat: say so once, then stay quiet.
                self._log("registry_unavailable", level="warn", error=exc)
                self._quiet = True
                return
            except OdooOpsError as exc:
                self._log("registry_failed", level="warn", error=exc)
                return
