"""Annotations derived from run events, for the Checks API or for workflow commands.

An event may point at a place in the repository through its payload: ``file`` (a relative path),
``line``, ``end_line`` and ``title``. Anything missing or malformed falls back to the workflow
file, line 1, so that every annotation stays valid for the API.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from odooops_action.github.commands import AnnotationLevel, WorkflowCommands, strip_controls
from odooops_action.github.files import truncate_utf8

if TYPE_CHECKING:  # pydantic models: imported when a response is parsed, not at start-up
    from odooops_action.models import RunEvent


CheckLevel = Literal["notice", "warning", "failure"]
MAX_MESSAGE_BYTES = 64 * 1024 - 1
MAX_TITLE_CHARS = 255
MAX_PATH_CHARS = 1024
_ELLIPSIS = "…"
_CHECK_LEVEL_OF_EVENT: dict[str, CheckLevel] = {
    "error": "failure",
    "warn": "warning",
    "info": "notice",
    "debug": "notice",
}
_COMMAND_LEVEL_OF_CHECK: dict[CheckLevel, AnnotationLevel] = {
    "failure": "error",
    "warning": "warning",
    "notice": "notice",
}


@dataclass(frozen=True)
class Annotation:
    level: CheckLevel
    message: str
    title: str | None
    path: str
    start_line: int
    end_line: int

    def as_check_annotation(self) -> dict[str, str | int]:
        """The shape ``output.annotations[]`` of the Checks API expects."""
        body: dict[str, str | int] = {
            "path": self.path,
            "start_line": self.start_line,
            "end_line": self.end_line,
            "annotation_level": self.level,
            "message": self.message,
        }
        if self.title:
            body["title"] = self.title
        return body


def limit_message(message: str) -> str:
    message = strip_controls(message, keep_newlines=True).strip() or "(no message)"
    if len(message.encode("utf-8")) <= MAX_MESSAGE_BYTES:
        return message
    return truncate_utf8(message, MAX_MESSAGE_BYTES - len(_ELLIPSIS.encode())) + _ELLIPSIS


def limit_title(title: str) -> str:
    title = " ".join(strip_controls(title).split())
    return title if len(title) <= MAX_TITLE_CHARS else title[: MAX_TITLE_CHARS - 1] + _ELLIPSIS


def _valid_path(value: Any) -> str | None:
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_PATH_CHARS:
        return None
    if value != strip_controls(value) or value.startswith("/") or "\\" in value:
        return None
    normalised = posixpath.normpath(value)
    if normalised == "." or normalised.startswith("../") or normalised == "..":
        return None
    return normalised


def _valid_line(value: Any) -> int | None:
    # bool is an int subclass; "true" is not a line number.
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        return None
    return value


def annotation_from_event(event: RunEvent, default_path: str) -> Annotation:
    payload = event.payload
    path = _valid_path(payload.get("file"))
    start = _valid_line(payload.get("line")) if path else None
    end = _valid_line(payload.get("end_line")) if start else None
    title = payload.get("title")
    return Annotation(
        level=_CHECK_LEVEL_OF_EVENT.get(event.level, "notice"),
        message=limit_message(event.message),
        title=limit_title(title) if isinstance(title, str) and title.strip() else None,
        path=path or default_path,
        start_line=start or 1,
        end_line=end if end is not None and start is not None and end >= start else (start or 1),
    )


def annotations_from_events(
    events: Iterable[RunEvent], levels: set[str], default_path: str
) -> list[Annotation]:
    """One annotation per event whose level is in ``levels`` (e.g. ``{"warn", "error"}``)."""
    return [annotation_from_event(event, default_path) for event in events if event.level in levels]


def emit_annotations(commands: WorkflowCommands, annotations: Iterable[Annotation]) -> int:
    """Write annotations as workflow commands (within the per-step limit); return how many showed."""
    shown = 0
    for annotation in annotations:
        shown += commands.annotate(
            _COMMAND_LEVEL_OF_CHECK[annotation.level],
            annotation.message,
            title=annotation.title,
            file=annotation.path,
            line=annotation.start_line,
            end_line=annotation.end_line,
        )
    return shown
