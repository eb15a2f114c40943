"""Turning the command's stdout and stderr into events, one line at a time.

One reader thread per pipe reads lines (a line longer than :data:`MAX_LINE_BYTES` is cut into
pieces), numbers them per stream, and puts them on a queue shared by both readers; the queue's
order is the arrival order. The queue is bounded: when the database is slower than the command,
``put`` blocks the reader, the pipe fills up and the command blocks on its next write
(back-pressure instead of unbounded memory).
"""

from __future__ import annotations

import codecs
import queue
import re
import threading
from dataclasses import dataclass
from typing import IO, Literal

from odooops_action.models import EventLevel, NewEvent

Stream = Literal["stdout", "stderr"]

MAX_LINE_BYTES = 64 * 1024
# Unprefixed stderr is "info": most tools (git, docker, pip, Python's logging) report progress
# on stderr, so "warn" would flag ordinary output; the payload's "stream" still tells them apart.
DEFAULT_LEVELS: dict[Stream, EventLevel] = {"stdout": "info", "stderr": "info"}

_LEVEL_PREFIX = re.compile(r"^\[(debug|info|warn|warning|error)\] ?", re.IGNORECASE)
_LEVEL_NAMES: dict[str, EventLevel] = {
    "debug": "debug",
    "info": "info",
    "warn": "warn",
    "warning": "warn",
    "error": "error",
}


@dataclass(frozen=True)
class OutputLine:
    """One line (or one piece of a very long line) of the command's output."""

    stream: Stream
    number: int
    level: EventLevel
    text: str
    part: int = 0  # 0: a whole line; 1, 2, ...: pieces of a line longer than MAX_LINE_BYTES

    def to_event(self) -> NewEvent:
        payload: dict[str, object] = {"stream": self.stream, "line": self.number}
        if self.part:
            payload["part"] = self.part
        return NewEvent(level=self.level, message=self.text, payload=payload)


@dataclass(frozen=True)
class StreamClosed:
    stream: Stream
    error: str | None = None


OutputItem = OutputLine | StreamClosed


def split_level(text: str, default: EventLevel) -> tuple[EventLevel, str]:
    """The level named by a ``[debug]``/``[info]``/``[warn]``/``[warning]``/``[error]`` prefix
    (case-insensitive, removed with one following space), else ``default``."""
    match = _LEVEL_PREFIX.match(text)
    if match is None:
        return default, text
    return _LEVEL_NAMES[match.group(1).lower()], text[match.end() :]


def clean_text(text: str) -> str:
    # PostgreSQL text cannot hold NUL characters.
    return text.rstrip("\r\n").replace("\x00", "\ufffd")


class PipeReader:
    """Reads one pipe to its end on a daemon thread, putting :class:`OutputLine` items on ``sink``."""

    def __init__(self, pipe: IO[bytes], stream: Stream, sink: queue.Queue[OutputItem]) -> None:
        self._pipe = pipe
        self._stream = stream
        self._sink = sink
        self._thread = threading.Thread(target=self._run, name=f"odooops-{stream}-reader", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        error: str | None = None
        try:
            self._read_lines()
        except (OSError, ValueError) as exc:  # the pipe was closed under us
            error = f"{type(exc).__name__}: {exc}"
        finally:
            self._sink.put(StreamClosed(self._stream, error))

    def _read_lines(self) -> None:
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        number = 0
        part = 0
        level = DEFAULT_LEVELS[self._stream]
        while True:
            chunk = self._pipe.readline(MAX_LINE_BYTES)
            if not chunk:
                tail = decoder.decode(b"", final=True)
                if tail:
                    self._put(number, level, tail, part + 1 if part else 0)
                return
            # readline(limit) stops short of a newline only at the limit or at the end of the pipe
            complete = chunk.endswith(b"\n") or len(chunk) < MAX_LINE_BYTES
            text = decoder.decode(chunk)
            if part == 0:
                number += 1
                level, text = split_level(text, DEFAULT_LEVELS[self._stream])
            if complete and part == 0:
                self._put(number, level, text, 0)
                continue
            part += 1
            if not (complete and clean_text(text) == "" and part > 1):  # skip an empty last piece
                self._put(number, level, text, part)
            if complete:
                part = 0

    def _put(self, number: int, level: EventLevel, text: str, part: int) -> None:
        self._sink.put(OutputLine(self._stream, number, level, clean_text(text), part))
