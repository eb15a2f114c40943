"""Structured, readable worker logs: one ``key=value`` line per action, written to stderr."""

from __future__ import annotations

import contextlib
import json
import sys
import threading
from datetime import UTC, datetime
from typing import TextIO

_PLAIN = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./:@+,")


def format_value(value: object) -> str:
    """A value as a token: bare when it is plain, JSON-quoted when it has spaces, quotes or ``=``."""
    text = "-" if value is None else str(value)
    if text and all(char in _PLAIN for char in text):
        return text
    return json.dumps(text, ensure_ascii=False)


class WorkerLog:
    """Writes ``ts=... level=... worker=... action=... key=value ...`` lines; safe across threads."""

    def __init__(self, stream: TextIO | None = None, fields: dict[str, object] | None = None) -> None:
        self._stream = stream
        self._fields = dict(fields or {})
        self._lock = threading.Lock()

    def bind(self, **fields: object) -> WorkerLog:
        """A logger writing to the same stream that adds ``fields`` to every line."""
        bound = WorkerLog(self._stream, {**self._fields, **fields})
        bound._lock = self._lock
        return bound

    def __call__(self, action: str, *, level: str = "info", **fields: object) -> None:
        stamp = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        parts = [f"ts={stamp}", f"level={level}"]
        merged = {**self._fields, "action": action, **fields}
        parts.extend(f"{key}={format_value(value)}" for key, value in merged.items())
        line = " ".join(parts) + "\n"
        stream = self._stream or sys.stderr
        # A log nobody reads any more (closed pipe, full disk) must not stop the runs: the
        # database holds their record.
        with self._lock, contextlib.suppress(OSError, ValueError):
            stream.write(line)
            stream.flush()
