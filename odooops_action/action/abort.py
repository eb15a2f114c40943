"""Cancel the remote run the moment the workflow is cancelled, and leave a note for the post step.

When a job is cancelled, actions/runner sends SIGINT to the ``docker run`` client, which passes it
on to the container's PID 1 (our entry point); if the client is still there 7.5 s later it gets
SIGTERM (passed on too), and 2.5 s after that the runner kills the CLIENT only
(``killProcessOnCancel: false``): the container itself is never killed and may outlive the step,
but the step's file commands (outputs, state, summary) are read the moment the client exits. So
everything must be cancelled and written within 7.5 s of SIGINT.

The signal handler only sets ``stop``. A request in flight on the main path is abandoned at once
(:class:`~odooops_action.action.runtime.StoppableStore`), and this watcher, a thread of its own,
sends ONE cancel request with a short timeout through a fresh store that ``stop`` does not
interrupt.

State handshake with the post step (``GITHUB_STATE``, read back as ``STATE_<name>``):
``should_cancel=true`` is saved when the wait starts; ``should_cancel=false`` once the wait ended
normally or this watcher cancelled the run. A main step killed before either leaves ``true``
behind and the post step cancels.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from odooops_action.action.runtime import CancelReport
from odooops_action.github.commands import WorkflowCommands
from odooops_action.github.files import FileCommands

STATE_RUN_ID = "run_id"
STATE_SHOULD_CANCEL = "should_cancel"
STATE_ABORT_CANCEL = "abort_cancel"
_WATCH_INTERVAL = 0.05


class AbortCanceller:
    """Watches ``stop`` while a wait is armed; on stop, cancels once and records the outcome."""

    def __init__(
        self,
        run_id: str,
        stop: threading.Event,
        cancel: Callable[[], CancelReport],
        files: FileCommands,
        commands: WorkflowCommands,
    ) -> None:
        self._run_id = run_id
        self._stop = stop
        self._cancel = cancel
        self._files = files
        self._commands = commands
        self._disarmed = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="odooops-abort-cancel", daemon=True)
        self.report: CancelReport | None = None

    def arm(self) -> None:
        self._files.save_state(STATE_RUN_ID, self._run_id)
        self._files.save_state(STATE_SHOULD_CANCEL, "true")
        self._thread.start()

    def disarm(self) -> None:
        """The wait ended on its own: nothing to cancel on abort any more."""
        self._disarmed.set()
        self._thread.join(timeout=1.0)
        if self.report is None:
            self._files.save_state(STATE_SHOULD_CANCEL, "false")

    def result(self, timeout: float) -> CancelReport | None:
        """The cancel's outcome once it is done (None if it did not finish within ``timeout``)."""
        self._thread.join(timeout)
        return self.report

    def _watch(self) -> None:
        # A short poll instead of one blocking wait, so that disarm() can end the thread.
        while not self._disarmed.is_set():
            if self._stop.wait(_WATCH_INTERVAL):
                break
        else:
            return
        self._commands.info(f"Stop requested: cancelling run {self._run_id}…")
        try:
            report = self._cancel()
        except Exception as exc:  # reported like any failed cancel; the post step retries
            report = CancelReport("error", None, f"{type(exc).__name__}: {exc}")
        if report.stopped:
            self._files.save_state(STATE_SHOULD_CANCEL, "false")
            self._files.save_state(STATE_ABORT_CANCEL, report.outcome)
        self.report = report
