"""One slot: claim a run, execute it, repeat; wait for a wake-up (or the poll interval) when idle."""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable

from odooops_action.domain import new_key
from odooops_action.errors import OdooOpsError, TransientError
from odooops_action.models import Run
from odooops_action.store.base import RunStore
from odooops_action.worker.context import WorkerContext
from odooops_action.worker.execution import RunExecution

CLAIM_RETRY_DELAYS = (0.5, 1.0, 2.0, 5.0)
# With --once, a database unreachable for this long ends the worker (exit 1) instead of waiting for
# it forever: a job-per-run setup (a CI job, a Kubernetes Job) must end and say so.
ONCE_GIVE_UP_AFTER = 30.0

# Runs this worker claimed but did not hear about (the answer to claim_next_run was lost).
ClaimedRunsLookup = Callable[[str], list[Run]]


class Slot:
    """Executes runs one after the other with its own store (stores are not thread-safe)."""

    def __init__(
        self,
        ctx: WorkerContext,
        worker_id: str,
        store: RunStore,
        find_claimed: ClaimedRunsLookup | None = None,
    ) -> None:
        self._ctx = ctx
        self._options = ctx.options
        self.worker_id = worker_id
        self._store = store
        self._find_claimed = find_claimed
        self._log = ctx.log.bind(worker=worker_id)
        self._unsure_claim = False
        # Kept until a claim is answered: a claim repeated after a lost answer returns its run.
        self._claim_token = new_key("claim")
        self.processed = 0

    def run(self) -> int:
        """Work until shutdown (or after one run with ``--once``); 0, or 1 on a fatal error."""
        filters = self._options.filters
        self._log(
            "slot_started",
            project=filters.project_id,
            env=filters.env_id,
            workflow_type=filters.workflow_type,
        )
        failures = 0
        failing_since = 0.0
        idle_logged = False
        while not self._ctx.shutdown.requested:
            self._ctx.recovery.maybe_run(self._store, self._log)
            seen = self._ctx.wakeup.generation
            try:
                run = self._claim()
            except TransientError as exc:
                failing_since = failing_since if failures else time.monotonic()
                if self._options.once and time.monotonic() - failing_since >= ONCE_GIVE_UP_AFTER:
                    self._log("gave_up", level="error", error=exc, unreachable_for=ONCE_GIVE_UP_AFTER)
                    return 1
                delay = CLAIM_RETRY_DELAYS[min(failures, len(CLAIM_RETRY_DELAYS) - 1)]
                failures += 1
                self._log("claim_retry", level="warn", error=exc, retry_in=delay)
                self._ctx.shutdown.wait(delay)
                continue
            except OdooOpsError as exc:
                self._log("fatal", level="error", error=exc)
                return 1
            failures = 0
            if run is not None:
                idle_logged = False
                self._execute(run)
                if self._options.once:
                    break
                continue
            if self._options.once:
                self._log("queue_empty")
                break
            if not idle_logged:
                self._log("idle", poll_interval=self._options.poll_interval)
                idle_logged = True
            self._ctx.wakeup.wait(seen, self._options.poll_interval)
        self._log("slot_stopped", runs=self.processed)
        return 0

    def _claim(self) -> Run | None:
        if self._unsure_claim and self._find_claimed is not None:
            orphans = self._find_claimed(self.worker_id)
            self._unsure_claim = False
            if orphans:
                self._log("claim_adopted", run=orphans[0].run_id)
                self._claim_token = new_key("claim")  # its claim is answered now
                return orphans[0]
        try:
            run = self._store.claim_next_run(
                self.worker_id, self._options.filters, claim_token=self._claim_token
            )
        except TransientError:
            self._unsure_claim = True
            raise
        self._claim_token = new_key("claim")
        return run

    def _execute(self, run: Run) -> None:
        registry = self._ctx.registry
        if registry is not None:
            registry.set_state(self.worker_id, "busy", run.run_id)
        try:
            self._execute_run(run)
        finally:
            if registry is not None:
                registry.set_state(self.worker_id, "idle")

    def _execute_run(self, run: Run) -> None:
        self.processed += 1
        self._log("claimed", run=run.run_id, attempt=run.attempt, workflow_type=run.workflow_type)
        try:
            outcome = RunExecution(self._ctx, self._store, self.worker_id, run, self._log).execute()
        except Exception as exc:  # a bug must not stop the worker; the lease recovers the run
            self._log("run_crashed", level="error", run=run.run_id, error=repr(exc))
            traceback.print_exc()
            return
        self._log("run_done", run=run.run_id, outcome=outcome)
