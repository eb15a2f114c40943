"""Turns a followed run's events into the job log, annotations, and what the summary and check run need.

Log layout: one ``::group::`` per phase. A status event (payload ``kind: status``) opens a group
named after the new status ("Queued", "Claimed by worker-1", "Running", "Finished: failed"); an
event whose payload carries a ``phase`` or ``step`` different from the current one opens a group
named after it. Each event is one ``[level] message`` line. All event text is remote, so it goes
through :meth:`WorkflowCommands.untrusted` (neutralised lines inside a ``::stop-commands::`` block);
group titles and annotations are written by :class:`WorkflowCommands`, which escapes them.

Annotations: events whose level is in ``annotate_levels`` (status events excepted: the step's
verdict already says how the run ended) become workflow-command annotations at once, up to
GitHub's 10 per level and step minus :data:`RESERVED_FOR_STEP` (GitHub keeps the FIRST 10, so the
step's own ``::error`` verdict or check-run warning, written after the stream, needs a free
slot) and, for errors, minus the slot kept for the runner's own cancel/timeout error
(:data:`~odooops_action.github.commands.RESERVED_FOR_RUNNER`): 9 warnings, 8 errors. The rest are
counted (the summary says how many) and stay plain log lines. They are also
kept, up to :data:`MAX_CHECK_ANNOTATIONS`, for a check run.

Memory stays bounded whatever the run sends (a million events, a 10 MB message): every level is
counted, but only a bounded number of events is kept for the summary, each cut to
:data:`MAX_KEPT_MESSAGE_CHARS` with only the payload keys the summary reads.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from odooops_action.action.runtime import StopRequested
from odooops_action.errors import OdooOpsError
from odooops_action.github.annotations import Annotation, annotation_from_event
from odooops_action.github.commands import ANNOTATION_LEVELS, AnnotationLevel, WorkflowCommands

if TYPE_CHECKING:  # pydantic models: imported when a response is parsed, not at start-up
    from odooops_action.models import Run, RunEvent


MAX_CHECK_ANNOTATIONS = 1000
MAX_NOTABLE_EVENTS = 1000
MAX_STATUS_EVENTS = 100
LOG_TAIL_EVENTS = 200
# The summary shows at most 4096 characters of an event; one more keeps its "…" visible.
MAX_KEPT_MESSAGE_CHARS = 4097
MAX_KEPT_PAYLOAD_CHARS = 4096
SUMMARY_PAYLOAD_KEYS = ("kind", "from", "to")
# Annotation slots per level left for the step's own verdict and warnings (see the module docstring).
RESERVED_FOR_STEP = 1
MAX_GROUP_TITLE_CHARS = 120
NOTABLE_LEVELS = frozenset({"warn", "error"})
_COMMAND_LEVEL: dict[str, AnnotationLevel] = {
    "error": "error",
    "warn": "warning",
    "info": "notice",
    "debug": "notice",
}
_STATUS_TITLES = {
    "queued": "Queued",
    "running": "Running",
}


def group_title_for_status(payload: dict[str, Any], fallback: str) -> str:
    """A short group title for a status event's payload (``to``, ``worker``)."""
    status = payload.get("to")
    if not isinstance(status, str):
        return fallback
    if status == "claimed":
        worker = payload.get("worker")
        return f"Claimed by {worker}" if isinstance(worker, str) and worker else "Claimed"
    if status in _STATUS_TITLES:
        return _STATUS_TITLES[status]
    return f"Finished: {status}"


def phase_of(event: RunEvent) -> str | None:
    for key in ("phase", "step"):
        value = event.payload.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_GROUP_TITLE_CHARS else text[: MAX_GROUP_TITLE_CHARS - 1] + "…"


def _kept(event: RunEvent, payload_chars: int) -> RunEvent:
    """What the summary needs of ``event``: its message cut, and only the payload keys it reads."""
    if len(event.message) <= MAX_KEPT_MESSAGE_CHARS and payload_chars <= MAX_KEPT_PAYLOAD_CHARS:
        return event
    payload = {key: event.payload[key] for key in SUMMARY_PAYLOAD_KEYS if key in event.payload}
    return event.model_copy(update={"message": event.message[:MAX_KEPT_MESSAGE_CHARS], "payload": payload})


@dataclass
class RunReport:
    """Everything the log stream learnt about one run, for outputs, the summary and the check run."""

    run: Run | None = None
    total_events: int = 0
    last_seq: int = 0
    level_counts: dict[str, int] = field(default_factory=dict)
    notable_events: list[RunEvent] = field(default_factory=list)
    status_events: list[RunEvent] = field(default_factory=list)
    log_tail: deque[RunEvent] = field(default_factory=lambda: deque(maxlen=LOG_TAIL_EVENTS))
    check_annotations: list[Annotation] = field(default_factory=list)
    check_annotations_dropped: int = 0
    suppressed: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ANNOTATION_LEVELS, 0))
    groups: list[str] = field(default_factory=list)


class LogReporter:
    """A :class:`~odooops_action.waiting.WaitObserver` writing the run's log to the job log."""

    def __init__(
        self,
        commands: WorkflowCommands,
        *,
        annotate_levels: frozenset[str],
        check_annotation_path: str,
        annotation_title: str = "OdooOps",
        secrets: Sequence[str] = (),
    ) -> None:
        self._commands = commands
        self._secrets = tuple(secret for secret in secrets if secret)
        self._levels = annotate_levels
        self._check_path = check_annotation_path
        self._title = annotation_title
        self._phase: str | None = None
        self._pending: list[str] = []
        self.report = RunReport()

    # --- WaitObserver ----------------------------------------------------------------------------

    def on_status(self, run: Run, previous: str | None) -> None:
        self.report.run = run

    def on_events(self, run: Run, events: Sequence[RunEvent]) -> None:
        self.report.run = run
        for event in events:
            payload_text = json.dumps(event.payload)
            self._take(self._scrubbed(event, payload_text), len(payload_text))
        self._flush()

    def on_poll_error(self, error: Exception) -> None:
        if isinstance(error, StopRequested):  # not a failure: the step is being stopped
            return
        self._flush()
        message = error.message if isinstance(error, OdooOpsError) else str(error)  # no "Retry later" hint
        self._commands.info(f"Polling failed, retrying until the timeout: {message}")

    # --- the end of the stream -------------------------------------------------------------------

    def close(self) -> None:
        """Write what is pending and close the open group."""
        self._flush()
        self._commands.end_group()

    # --- internals -------------------------------------------------------------------------------

    def _scrubbed(self, event: RunEvent, payload_text: str) -> RunEvent:
        """The event without our secrets: a worker's log may quote one (the summary is not masked)."""
        if not any(secret in event.message or secret in payload_text for secret in self._secrets):
            return event
        message = event.message
        for secret in self._secrets:
            message = message.replace(secret, "***")
            payload_text = payload_text.replace(json.dumps(secret)[1:-1], "***")
        return event.model_copy(update={"message": message, "payload": json.loads(payload_text)})

    def _take(self, event: RunEvent, payload_chars: int) -> None:
        report = self.report
        report.total_events += 1
        report.last_seq = event.seq
        report.level_counts[event.level] = report.level_counts.get(event.level, 0) + 1
        kept = _kept(event, payload_chars)
        report.log_tail.append(kept)
        if event.level in NOTABLE_LEVELS and len(report.notable_events) < MAX_NOTABLE_EVENTS:
            report.notable_events.append(kept)
        if event.payload.get("kind") == "status" and len(report.status_events) < MAX_STATUS_EVENTS:
            report.status_events.append(kept)
        self._maybe_open_group(event)
        self._pending.append(f"[{event.level}] {event.message}")
        # A failed status is the step's own verdict already; annotating it too would say it twice.
        if event.level in self._levels and event.payload.get("kind") != "status":
            self._annotate(event)

    def _maybe_open_group(self, event: RunEvent) -> None:
        title: str | None = None
        if event.payload.get("kind") == "status":
            title = group_title_for_status(event.payload, event.message)
            self._phase = None
        else:
            phase = phase_of(event)
            if phase is not None and phase != self._phase:
                title, self._phase = phase, phase
            elif not self.report.groups:
                title = f"Run {event.run_id}"
        if title is not None:
            self._flush()
            self.report.groups.append(_short(title))
            self._commands.start_group(_short(title))

    def _annotate(self, event: RunEvent) -> None:
        report = self.report
        if len(report.check_annotations) < MAX_CHECK_ANNOTATIONS:
            report.check_annotations.append(annotation_from_event(event, self._check_path))
        else:
            report.check_annotations_dropped += 1
        level = _COMMAND_LEVEL[event.level]
        if self._commands.emitted[level] >= self._commands.limit(level) - RESERVED_FOR_STEP:
            # The line is already in the log: count it for the summary instead of repeating it.
            report.suppressed[level] += 1
            return
        annotation = annotation_from_event(event, "")
        self._flush()  # annotations cannot be read inside a stop-commands block
        located = bool(annotation.path)
        self._commands.annotate(
            level,
            annotation.message,
            title=annotation.title or self._title,
            file=annotation.path if located else None,
            line=annotation.start_line if located else None,
            end_line=annotation.end_line if located else None,
        )

    def _flush(self) -> None:
        if self._pending:
            self._commands.untrusted("\n".join(self._pending))
            self._pending = []
