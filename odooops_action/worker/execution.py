"""Executing one claimed run: start it, run the command, stream its output, finish it.

One thread does everything that talks to the store (it is not thread-safe): it takes output
from the readers' queue, flushes events, heartbeats, checks for cancellation, registers artifacts
and signals the command. Reader threads only read pipes.
"""

from __future__ import annotations

import json
import os
import queue
import shlex
import shutil
import signal
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from pathlib import Path

from odooops_action.errors import (
    OdooOpsError,
    RunNotFoundError,
    StaleAttemptError,
    StateConflictError,
    TransientError,
)
from odooops_action.models import Run
from odooops_action.store.base import FinalStatus, RunStore
from odooops_action.worker.artifacts import ArtifactRegistrar, ArtifactsFile
from odooops_action.worker.context import WorkerContext
from odooops_action.worker.events import EventBuffer
from odooops_action.worker.log import WorkerLog
from odooops_action.worker.output import OutputItem, PipeReader, StreamClosed
from odooops_action.worker.process import CommandProcess, describe_exit

QUEUE_SIZE = 1000
MAX_TAKE_PER_TICK = 1000
TICK = 0.2
ARTIFACT_SCAN_INTERVAL = 1.0
STDERR_TAIL_LINES = 20
STDERR_TAIL_LINE_CHARS = 500
# After the command exits, processes it left behind may still hold the pipes open.
LEFTOVER_KILL_AFTER = 5.0
ABANDON_PIPES_AFTER = 10.0
RETRY_PAUSE = 0.5
HEARTBEAT_RETRY_AFTER = 1.0  # a heartbeat or check that failed transiently is tried again this much later
# Past the shutdown grace plus the kill grace, this much longer is spent on recording the outcome.
RECORD_AFTER_SHUTDOWN = 10.0
FAR_SEQ = 2**62  # poll_run(after_seq=FAR_SEQ, max_events=0): just the run row


# The worker's own credentials: the command reports through its output and the artifacts file.
CREDENTIAL_VARIABLES = frozenset(
    {"DATABASE_URL", "SUPABASE_SERVICE_ROLE_KEY", "SUPABASE_SECRET_KEY", "SUPABASE_KEY"}
)


def command_environment(
    run: Run,
    artifacts_file: Path,
    worker_id: str,
    base: Mapping[str, str] | None = None,
    *,
    keep_credentials: bool = False,
) -> dict[str, str]:
    env = dict(os.environ if base is None else base)
    if not keep_credentials:
        env = {name: value for name, value in env.items() if name not in CREDENTIAL_VARIABLES}
    env.update(
        ODOOOPS_RUN_ID=run.run_id,
        ODOOOPS_PROJECT_ID=run.project_id,
        ODOOOPS_ENV_ID=run.env_id,
        ODOOOPS_WORKFLOW_TYPE=run.workflow_type,
        ODOOOPS_GIT_REF=run.git_ref,
        ODOOOPS_GIT_SHA=run.git_sha,
        ODOOOPS_ATTEMPT=str(run.attempt),
        ODOOOPS_METADATA=json.dumps(run.metadata, separators=(",", ":"), sort_keys=True),
        ODOOOPS_ARTIFACTS_FILE=str(artifacts_file),
        ODOOOPS_WORKER_ID=worker_id,
    )
    return env


class RunExecution:
    def __init__(self, ctx: WorkerContext, store: RunStore, worker_id: str, run: Run, log: WorkerLog) -> None:
        self._ctx = ctx
        self._options = ctx.options
        self._store = store
        self._worker_id = worker_id
        self._run = run
        self._log = log.bind(run=run.run_id)
        self._cancel_flag = threading.Event()
        self._queue: queue.Queue[OutputItem] = queue.Queue(maxsize=QUEUE_SIZE)
        self._open_streams = {"stdout", "stderr"}
        self._stderr_tail: deque[str] = deque(maxlen=STDERR_TAIL_LINES)
        self._stop_reason: str | None = None
        self._stop_detail = ""
        self._term_at: float | None = None
        self._killed = False
        self._exited_at: float | None = None
        self._returncode: int | None = None
        self._leftovers_killed = False
        self._cut_short_by_signal = False
        self._next_heartbeat = 0.0
        self._next_check = 0.0
        self._next_artifacts = 0.0
        self._events: EventBuffer
        self._artifacts: ArtifactRegistrar
        self._process: CommandProcess

    # -- the whole run ----------------------------------------------------------------------

    def execute(self) -> str:
        """Run it; returns the outcome for the logs (success, failed, cancelled, lost, not_started)."""
        started = self._start()
        if started is None:
            return "not_started"
        self._cancel_flag = self._ctx.cancel_watch.watch(started.run_id)
        workdir = Path(tempfile.mkdtemp(prefix=f"odooops-{started.run_id}-"))
        try:
            return self._execute_in(started, workdir)
        finally:
            self._ctx.cancel_watch.unwatch(started.run_id)
            shutil.rmtree(workdir, ignore_errors=True)

    def _start(self) -> Run | None:
        while True:
            try:
                return self._store.start_run(self._run.run_id, self._worker_id, attempt=self._run.attempt).run
            except StateConflictError as exc:  # cancelled (or recovered) between claim and start
                self._log("start_refused", level="warn", reason=exc.message)
                return None
            except RunNotFoundError:
                self._log("start_refused", level="warn", reason="the run was deleted")
                return None
            except TransientError as exc:
                if self._ctx.shutdown.requested:
                    self._log("start_abandoned", level="warn", error=exc)
                    return None
                self._log("start_retry", level="warn", error=exc)
                time.sleep(RETRY_PAUSE)

    def _execute_in(self, run: Run, workdir: Path) -> str:
        artifacts_path = workdir / "artifacts.jsonl"
        artifacts_path.touch()
        self._events = EventBuffer(
            self._store, run.run_id, self._log, confirmed_seq=run.event_seq, attempt=run.attempt
        )
        self._artifacts = ArtifactRegistrar(
            self._store,
            run.run_id,
            ArtifactsFile(artifacts_path),
            self._events,
            self._log,
            attempt=run.attempt,
        )
        argv = [*self._options.command, run.run_id]
        try:
            self._process = CommandProcess.start(
                argv,
                command_environment(
                    run, artifacts_path, self._worker_id, keep_credentials=self._options.keep_credentials
                ),
                kill_grace=self._options.kill_grace,
            )
        except OSError as exc:
            why = f"the command {shlex.join(argv)} could not be started: {exc}"
            self._events.note("error", f"Could not start {shlex.join(argv)}: {exc}", kind="command_error")
            self._record_events()
            self._finish("failed", None, why)
            return "failed"
        self._events.note(
            "info",
            f"Started {shlex.join(argv)} (pid {self._process.pid})",
            kind="command",
            pid=self._process.pid,
            pgid=self._process.pgid,
        )
        self._log("command_started", pid=self._process.pid, pgid=self._process.pgid, attempt=run.attempt)
        PipeReader(self._process.stdout, "stdout", self._queue).start()
        PipeReader(self._process.stderr, "stderr", self._queue).start()
        self._supervise()
        return self._conclude()

    # -- while the command runs --------------------------------------------------------------

    def _supervise(self) -> None:
        now = time.monotonic()
        self._next_heartbeat = now + self._options.heartbeat_interval
        self._next_check = now + self._options.cancel_check_interval
        while self._open_streams or self._returncode is None:
            self._take_output(self._wait_budget())
            now = time.monotonic()
            self._watch_exit(now)
            self._check_run(now)
            self._enforce_stop(now)
            self._events.flush_if_due()
            if now >= self._next_artifacts:
                self._artifacts.scan()
                self._next_artifacts = now + ARTIFACT_SCAN_INTERVAL
            self._ctx.recovery.maybe_run(self._store, self._log)
        self._process.signal_group(signal.SIGKILL)  # nothing the run started outlives it
        self._process.close_pipes()

    def _wait_budget(self) -> float:
        due = self._events.next_due()
        budget = TICK if due is None else min(TICK, due - time.monotonic())
        return max(0.0, budget)

    def _take_output(self, budget: float) -> None:
        if not self._open_streams:  # output is over: wait for the exit instead
            if self._returncode is None and budget > 0:
                self._process.wait(budget)
            return
        if self._events.full:  # back-pressure: leave the lines in the queue, the readers wait
            self._cancel_flag.wait(budget)
            return
        try:
            item = self._queue.get(timeout=budget) if budget > 0 else self._queue.get_nowait()
        except queue.Empty:
            return
        self._accept(item)
        for _ in range(MAX_TAKE_PER_TICK):
            if self._events.full:
                return
            try:
                self._accept(self._queue.get_nowait())
            except queue.Empty:
                return

    def _accept(self, item: OutputItem) -> None:
        if isinstance(item, StreamClosed):
            self._open_streams.discard(item.stream)
            if item.error:
                self._events.note("warn", f"Reading {item.stream} failed: {item.error}", kind="worker")
            return
        self._events.add(item.to_event())
        if item.stream == "stderr":
            self._stderr_tail.append(item.text[:STDERR_TAIL_LINE_CHARS])

    def _watch_exit(self, now: float) -> None:
        if self._returncode is None:
            self._returncode = self._process.poll()
            if self._returncode is None:
                return
            self._exited_at = now
            self._log("command_exited", pid=self._process.pid, code=describe_exit(self._returncode)[0])
        assert self._exited_at is not None
        if not self._open_streams:
            return
        if not self._leftovers_killed and now >= self._exited_at + LEFTOVER_KILL_AFTER:
            self._leftovers_killed = True
            if self._process.signal_group(signal.SIGKILL):
                self._note_worker(
                    "warn", "Killed processes the command left running (they held its output open)"
                )
        if now >= self._exited_at + ABANDON_PIPES_AFTER:
            self._note_worker("warn", "Stopped reading output still held open by processes outside the run")
            self._open_streams.clear()

    def _check_run(self, now: float) -> None:
        if self._stop_reason is not None:
            return
        if self._cancel_flag.is_set():
            self._stop("cancelled", "its cancellation was notified")
            return
        if now < min(self._next_heartbeat, self._next_check):
            return
        heartbeat = now >= self._next_heartbeat
        try:
            if heartbeat:
                row = self._store.heartbeat_run(
                    self._run.run_id, self._worker_id, attempt=self._run.attempt
                ).run
            else:
                row = self._store.poll_run(self._run.run_id, after_seq=FAR_SEQ, max_events=0).run
        except RunNotFoundError:
            self._stop("lost", "the run was deleted")
            return
        except StaleAttemptError as exc:  # requeued or claimed again: this attempt must stop
            self._stop("lost", exc.message)
            return
        except TransientError as exc:
            self._log("heartbeat_retry" if heartbeat else "check_retry", level="warn", error=exc)
            self._next_check = now + HEARTBEAT_RETRY_AFTER
            if heartbeat:  # from now: the due time that failed is already past
                self._next_heartbeat = now + HEARTBEAT_RETRY_AFTER
            return
        except OdooOpsError as exc:
            self._log("check_failed", level="error", error=exc)
            self._next_check = now + self._options.cancel_check_interval
            return
        self._next_check = now + self._options.cancel_check_interval
        if heartbeat:
            self._next_heartbeat = now + self._options.heartbeat_interval
        self._judge(row)

    def _judge(self, row: Run) -> None:
        if row.status == "cancelled":
            self._stop("cancelled", row.status_reason or "it was cancelled")
        elif row.claimed_by != self._worker_id or row.status not in ("claimed", "running"):
            self._stop("lost", f"the run is now {row.status} (claimed by {row.claimed_by or 'nobody'})")

    def _stop(self, reason: str, detail: str) -> None:
        self._stop_reason, self._stop_detail = reason, detail
        self._log("stop_requested", level="warn", reason=reason, detail=detail)

    def _enforce_stop(self, now: float) -> None:
        shutdown = self._ctx.shutdown
        if (
            self._stop_reason is None
            and self._returncode is None
            and shutdown.grace_expired(self._options.shutdown_grace)
        ):
            self._cut_short_by_signal = shutdown.forced
            self._stop("shutdown", f"the worker was asked to stop ({shutdown.signal_name})")
        if self._stop_reason is None:
            return
        if self._term_at is None:  # the whole group, even when its leader has already exited
            self._term_at = now
            self._process.signal_group(signal.SIGTERM)
            self._note_worker(
                "warn",
                f"Stopping the command (SIGTERM to process group {self._process.pgid}): {self._stop_detail}",
            )
        elif not self._killed and now >= self._term_at + self._options.kill_grace:
            self._killed = True
            if self._process.signal_group(signal.SIGKILL):
                grace = self._options.kill_grace
                self._note_worker("warn", f"The command outlived --kill-grace {grace:g}s: sent SIGKILL")

    def _note_worker(self, level: str, message: str) -> None:
        self._events.note(level, message, kind="worker", worker=self._worker_id)
        self._log("note", level=level, message=message)

    # -- after the command ------------------------------------------------------------------

    def _conclude(self) -> str:
        self._artifacts.scan(final=True)
        self._keep_trying(self._artifacts.register, lambda: self._artifacts.done, "artifacts")
        assert self._returncode is not None
        exit_code, how = describe_exit(self._returncode)
        if self._stop_reason in ("cancelled", "lost"):
            return self._stopped(exit_code, how)
        if self._stop_reason == "shutdown":
            stopped = f"worker {self._worker_id} was stopped ({self._ctx.shutdown.signal_name})"
            why = f"{stopped} and {self._cut_short()}; it {how}"
            self._events.note("error", f"Run failed: {why}", kind="worker_shutdown", exit_code=exit_code)
            self._record_events()
            return self._finish("failed", exit_code, why)
        if exit_code == 0:
            self._record_events()
            return self._finish("success", 0, None)
        self._record_failure(exit_code, how)
        self._record_events()
        return self._finish("failed", exit_code, f"the command {how}")

    def _cut_short(self) -> str:
        if self._cut_short_by_signal:
            return "a second signal ended its grace period"
        return f"the command did not finish within --shutdown-grace {self._options.shutdown_grace:g}s"

    def _stopped(self, exit_code: int, how: str) -> str:
        level = "info" if self._stop_reason == "cancelled" else "warn"
        self._events.note(
            level,
            f"The command {how} after it was stopped because {self._stop_detail}",
            kind="command_stopped",
            exit_code=exit_code,
            reason=self._stop_reason,
        )
        self._record_events()
        self._log("run_stopped", level=level, reason=self._stop_reason, exit_code=exit_code)
        return str(self._stop_reason)

    def _record_failure(self, exit_code: int, how: str) -> None:
        tail = list(self._stderr_tail)
        message = f"The command {how}"
        if tail:
            message += f"; last {len(tail)} lines of stderr:\n" + "\n".join(tail)
        self._events.note("error", message, kind="command_failed", exit_code=exit_code, stderr_tail=tail)

    def _record_events(self) -> None:
        if not self._events.run_gone:
            self._keep_trying(self._events.flush, lambda: self._events.empty, "events")

    def _finish(self, status: FinalStatus, exit_code: int | None, reason: str | None) -> str:
        while True:
            try:
                row = self._store.finish_run(
                    self._run.run_id, self._worker_id, status, exit_code, reason, attempt=self._run.attempt
                ).run
            except (StateConflictError, RunNotFoundError) as exc:  # cancelled or recovered meanwhile
                self._log("finish_refused", level="warn", wanted=status, reason=exc.message)
                return "finish_refused"
            except TransientError as exc:
                self._log("finish_retry", level="warn", error=exc)
                if self._past_recording_deadline():
                    self._log("finish_abandoned", level="error", wanted=status)
                    return "unrecorded"
                time.sleep(RETRY_PAUSE)
                continue
            self._log("finished", status=row.status, exit_code=exit_code, reason=reason)
            return status

    def _keep_trying(self, step: Callable[[], object], done: Callable[[], bool], what: str) -> None:
        """Repeat ``step`` (which handles transient errors itself) until ``done()``. Without a
        shutdown request this waits for the database however long it is away; after one it gives
        up once the grace periods plus RECORD_AFTER_SHUTDOWN are spent."""
        step()
        while not done():
            if self._past_recording_deadline():
                self._log(f"{what}_abandoned", level="error")
                return
            time.sleep(RETRY_PAUSE)
            step()

    def _past_recording_deadline(self) -> bool:
        limit = self._options.shutdown_grace + self._options.kill_grace + RECORD_AFTER_SHUTDOWN
        return self._ctx.shutdown.grace_expired(limit)
