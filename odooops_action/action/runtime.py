"""What every mode shares: the step's context, opening the store, outputs, and a safe cancel."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar, cast

from odooops_action.action.settings import ActionSettings
from odooops_action.domain import artifact_url
from odooops_action.errors import OdooOpsError, RunNotFoundError, StateConflictError, TransientError
from odooops_action.github.commands import WorkflowCommands
from odooops_action.github.context import GitHubContext
from odooops_action.github.files import FileCommands
from odooops_action.store.base import RunStore

if TYPE_CHECKING:  # pydantic models: imported when a response is parsed, not at start-up
    from odooops_action.models import Artifact, Run

_T = TypeVar("_T")

# The request timeout of ordinary calls, and of the one cancel sent when the workflow is
# cancelled. The runner sends SIGINT to the `docker run` client (which passes it on to our PID 1),
# SIGTERM 7.5 s later, and kills the CLIENT 2.5 s after that; the container is not killed, but the
# step's file commands (outputs, summary, state) are read as soon as the client is gone. So the
# cancel, the outputs and the summary must all be done within 7.5 s of SIGINT.
REQUEST_TIMEOUT_SECONDS = 10.0
REQUEST_RETRIES = 3
ABORT_CANCEL_TIMEOUT_SECONDS = 3.0
ABORT_CANCEL_RETRIES = 1


class StoreOpener(Protocol):
    """(url, key, request timeout, retries, where the key came from — named in an authentication
    error) and the scoped token, if any: a store."""

    def __call__(
        self,
        url: str,
        key: str,
        timeout_seconds: float,
        max_retries: int,
        key_source: str,
        *,
        token: str | None,
    ) -> RunStore: ...


def open_rest_store(
    url: str, key: str, timeout_seconds: float, max_retries: int, key_source: str, *, token: str | None
) -> RunStore:
    """A ``RestStore`` for the validated URL and key (imported here: only modes that talk need it)."""
    from odooops_action.config import ConnectionSettings
    from odooops_action.store.factory import open_store

    settings = ConnectionSettings(
        supabase_url=url,
        supabase_key=key,
        timeout_seconds=timeout_seconds,
        max_retries=max_retries,
        key_variable=key_source,
        token=token,
    )
    return open_store(settings, prefer="rest")


@dataclass(frozen=True)
class ActionContext:
    """One step: its settings, the GitHub side it reports to, and the event that signals stop."""

    settings: ActionSettings
    environ: Mapping[str, str]
    commands: WorkflowCommands
    files: FileCommands
    github: GitHubContext
    stop: threading.Event
    secrets: tuple[str, ...] = ()
    store_opener: StoreOpener = open_rest_store

    def open_store(
        self,
        timeout_seconds: float = REQUEST_TIMEOUT_SECONDS,
        max_retries: int = REQUEST_RETRIES,
        *,
        interruptible: bool = True,
    ) -> RunStore:
        """The store; unless told otherwise, ``stop`` abandons a call in flight (:class:`StoppableStore`)."""
        key = self.settings.supabase_key.get_secret_value()
        settings = self.settings
        token = settings.token.get_secret_value() if settings.token else None
        store = self.store_opener(
            settings.supabase_url, key, timeout_seconds, max_retries, settings.key_source, token=token
        )
        return cast("RunStore", StoppableStore(store, self.stop)) if interruptible else store

    def redact(self, text: str) -> str:
        """``text`` without any secret (a remote event could quote one; summaries are not masked)."""
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text

    @property
    def identity(self) -> str:
        """Who acts, as recorded in ``created_by`` and in a cancellation's reason."""
        return actor_identity(self.github)


def actor_identity(github: GitHubContext) -> str:
    who = github.actor or "github-actions"
    where = f" in {github.repository} run {github.run_id}" if github.repository and github.run_id else ""
    return f"{who} via GitHub Actions{where}"


def describe(run: Run) -> str:
    return f"{run.workflow_type} of {run.project_id} @ {run.short_sha} ({run.git_ref}) in {run.env_id}"


def artifacts_json(artifacts: Sequence[Artifact]) -> str:
    return json.dumps([artifact.model_dump(mode="json") for artifact in artifacts], separators=(",", ":"))


def set_run_outputs(
    files: FileCommands, *, run: Run | None, outcome: str, artifacts: Sequence[Artifact] = ()
) -> None:
    if run is not None:
        files.set_output("run_id", run.run_id)
        files.set_output("status", run.status)
    files.set_output("outcome", outcome)
    files.set_output("artifact_url", artifact_url(artifacts))
    files.set_output("artifacts", artifacts_json(artifacts))


CancelOutcome = Literal["cancelled", "already_cancelled", "already_finished", "not_found", "error"]


@dataclass(frozen=True)
class CancelReport:
    outcome: CancelOutcome
    run: Run | None
    detail: str

    @property
    def stopped(self) -> bool:
        """The run is no longer active (whether or not this cancel did it)."""
        return self.outcome in ("cancelled", "already_cancelled", "already_finished")


def cancel_safely(store: RunStore, run_id: str, *, reason: str, cancelled_by: str) -> CancelReport:
    """Cancel ``run_id``; every answer, including errors, becomes a :class:`CancelReport`."""
    try:
        result = store.cancel_run(run_id, reason=reason, cancelled_by=cancelled_by)
    except RunNotFoundError as exc:
        return CancelReport("not_found", None, str(exc))
    except StateConflictError as exc:
        return CancelReport("already_finished", _current(store, run_id), str(exc))
    except OdooOpsError as exc:
        return CancelReport("error", None, str(exc))
    if result.outcome == "already_cancelled":
        reason_text = f" ({result.run.status_reason})" if result.run.status_reason else ""
        return CancelReport(
            "already_cancelled", result.run, f"run {run_id} was already cancelled{reason_text}"
        )
    return CancelReport("cancelled", result.run, f"run {run_id} cancelled")


def _current(store: RunStore, run_id: str) -> Run | None:
    try:
        return store.poll_run(run_id, max_events=0).run
    except OdooOpsError:
        return None


class StopRequested(TransientError):
    """The step was stopped while a request was in flight; the request was abandoned, not awaited."""


class StoppableStore:
    """A :class:`RunStore` proxy whose calls end as soon as ``stop`` is set, even with a request in flight.

    A poll stuck on a slow server can take a request timeout times the attempts (10 s x 4); the
    runner gives the step 7.5 s after SIGINT. Each call runs in a daemon thread; the caller waits
    for its answer or for ``stop``, whichever comes first, and on ``stop`` gets :class:`StopRequested`
    (a :class:`TransientError`, so the wait loop treats it like a failed poll and then sees ``stop``).
    The abandoned request ends on its own or with the process; its answer is dropped.
    """

    def __init__(self, store: RunStore, stop: threading.Event, check_interval: float = 0.02) -> None:
        self._store = store
        self._stop = stop
        self._check_interval = check_interval
        self._abandoned = False

    def _call(self, name: str, call: Callable[[], _T]) -> _T:
        if self._stop.is_set():
            raise StopRequested(f"The step was stopped before ops.{name} was sent.")
        answers: list[tuple[bool, object]] = []
        done = threading.Event()

        def target() -> None:
            try:
                answers.append((True, call()))
            except BaseException as exc:  # handed to the caller's thread
                answers.append((False, exc))
            finally:
                done.set()

        threading.Thread(target=target, name=f"odooops-{name}", daemon=True).start()
        while not done.wait(self._check_interval):
            if self._stop.is_set():
                self._abandoned = True
                raise StopRequested(f"The step was stopped while ops.{name} was in flight; it was abandoned.")
        ok, value = answers[0]
        if not ok:
            assert isinstance(value, BaseException)
            raise value
        return value  # type: ignore[return-value]

    def __getattr__(self, name: str) -> Any:
        """Each operation of the wrapped store, made stoppable (whatever the interface's signatures)."""
        attribute = getattr(self._store, name)
        if not callable(attribute):
            return attribute

        def stoppable(*args: Any, **kwargs: Any) -> Any:
            return self._call(name, lambda: attribute(*args, **kwargs))

        return stoppable

    def close(self) -> None:
        # A request still in flight owns the connection: leave it to the end of the process.
        if not self._abandoned:
            self._store.close()
