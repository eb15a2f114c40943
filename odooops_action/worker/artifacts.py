"""The artifacts channel: JSON lines the command appends to ``$ODOOOPS_ARTIFACTS_FILE``.

The file is read while the run executes (every second) and once more after the command exits,
so artifacts appear while a long build is still going. Only complete lines (ending in a newline)
are read during the run; after the exit a last line without a newline counts too. Each line
becomes one ``add_artifact`` call; a line that is not valid JSON, not an object, misses
``artifact_type``/``storage_path``, has an unknown key, or that the database refuses (bad digest,
unknown type) becomes a ``warn`` event naming the line number, and the run goes on.

Each line is registered under an artifact key (this execution's prefix and the line number) and
the attempt: a call repeated after a lost answer returns the artifact stored the first time, and a
superseded attempt cannot register anything (``StaleAttemptError``).
"""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from pydantic import ValidationError

from odooops_action.domain import new_key
from odooops_action.errors import OdooOpsError, RunNotFoundError, StaleAttemptError, TransientError
from odooops_action.models import Artifact, NewArtifact
from odooops_action.store.base import RunStore
from odooops_action.worker.events import EventBuffer
from odooops_action.worker.log import WorkerLog

MAX_LINE_BYTES = 64 * 1024
MAX_READ_BYTES = 1024 * 1024
RETRY_DELAY = 1.0


def parse_artifact_line(text: str) -> NewArtifact:
    """One line of the artifacts file; raises ValueError saying what is wrong with it."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    try:
        return NewArtifact.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'line'}: {err['msg']}" for err in exc.errors()
        )
        raise ValueError(problems) from None


class ArtifactsFile:
    """Reads the lines appended to a file since the last read."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self._partial = b""
        self.line_number = 0

    def new_lines(self, *, final: bool = False) -> list[tuple[int, str]]:
        try:
            with self.path.open("rb") as handle:
                handle.seek(self._offset)
                data = handle.read(MAX_READ_BYTES)
        except FileNotFoundError:
            data = b""
        self._offset += len(data)
        data = self._partial + data
        *complete, self._partial = data.split(b"\n")
        if final and self._partial:
            complete.append(self._partial)
            self._partial = b""
        lines: list[tuple[int, str]] = []
        for raw in complete:
            self.line_number += 1
            if raw.strip():
                lines.append((self.line_number, raw[:MAX_LINE_BYTES].decode("utf-8", errors="replace")))
        return lines

    @property
    def has_unread(self) -> bool:
        try:
            return self.path.stat().st_size > self._offset
        except FileNotFoundError:
            return False


class ArtifactRegistrar:
    """Registers the artifacts of one run; invalid lines become ``warn`` events. One thread only."""

    def __init__(
        self,
        store: RunStore,
        run_id: str,
        file: ArtifactsFile,
        events: EventBuffer,
        log: WorkerLog,
        *,
        attempt: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._run_id = run_id
        self._attempt = attempt
        self._key_prefix = new_key(f"artifacts-a{attempt}")
        self._file = file
        self._events = events
        self._log = log
        self._clock = clock
        self._pending: deque[tuple[int, NewArtifact]] = deque()
        self._retry_at = 0.0
        self.registered: list[Artifact] = []

    def scan(self, *, final: bool = False) -> None:
        while True:
            for number, text in self._file.new_lines(final=final):
                self._parse(number, text)
            if not (final and self._file.has_unread):
                break
        self.register()

    @property
    def done(self) -> bool:
        return not self._pending

    def _parse(self, number: int, text: str) -> None:
        try:
            self._pending.append((number, parse_artifact_line(text)))
        except ValueError as exc:
            self._reject(number, str(exc))

    def _reject(self, number: int, why: str) -> None:
        self._events.note(
            "warn",
            f"Ignored line {number} of the artifacts file: {why}",
            kind="artifact_rejected",
            artifacts_line=number,
        )
        self._log("artifact_rejected", level="warn", run=self._run_id, line=number, reason=why)

    def register(self) -> None:
        """Register what waits; stops at the first transient failure and resumes later."""
        while self._pending and self._clock() >= self._retry_at:
            number, artifact = self._pending[0]
            try:
                self._register_one(number, artifact)
            except TransientError as exc:
                self._retry_at = self._clock() + RETRY_DELAY
                self._log("artifact_retry", level="warn", run=self._run_id, line=number, error=exc)
                return
            except (RunNotFoundError, StaleAttemptError):  # deleted, or this attempt was superseded
                self._pending.clear()
                return
            except OdooOpsError as exc:  # refused by the database (bad digest, ...)
                self._reject(number, exc.message)
            self._pending.popleft()

    def _register_one(self, number: int, artifact: NewArtifact) -> None:
        stored = self._store.add_artifact(
            self._run_id, artifact, attempt=self._attempt, artifact_key=f"{self._key_prefix}-line{number}"
        )
        self._accept(stored)

    def _accept(self, stored: Artifact) -> None:
        self.registered.append(stored)
        self._log("artifact_added", run=self._run_id, type=stored.artifact_type, path=stored.storage_path)
