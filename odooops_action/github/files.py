"""File commands: step outputs, saved state and the job summary.

The runner hands each step files named by ``GITHUB_OUTPUT``, ``GITHUB_STATE`` and
``GITHUB_STEP_SUMMARY`` and reads them after the step. Outside Actions those variables are absent;
writes then go to an optional fallback stream, or nowhere, and never fail.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from secrets import token_hex
from typing import TextIO

# GitHub rejects a step summary file larger than this (the check is ``size > limit``).
SUMMARY_LIMIT_BYTES = 1024 * 1024
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


class SecretInOutputError(ValueError):
    """A value about to be written to a file command contains a registered secret."""


@dataclass(frozen=True)
class SummaryAppend:
    written_bytes: int
    omitted_bytes: int  # bytes of the markdown left out to respect the 1 MiB limit


def _utf8_prefix(data: bytes, limit: int) -> bytes:
    """The longest prefix of ``data`` of at most ``limit`` bytes that ends on a character boundary."""
    if len(data) <= limit:
        return data
    cut = max(limit, 0)
    while cut > 0 and (data[cut] & 0xC0) == 0x80:  # never split a multi-byte sequence
        cut -= 1
    return data[:cut]


def truncate_utf8(text: str, limit: int) -> str:
    return _utf8_prefix(text.encode("utf-8"), limit).decode("utf-8")


# A "secret" shorter than this (say a placeholder token "x") would match ordinary text and block
# every output; it is still masked in the log, but not searched for in outputs.
MIN_GUARDED_SECRET_CHARS = 8


class FileCommands:
    """Writes to the runner's file commands, refusing any value that holds a known secret."""

    def __init__(
        self,
        environ: Mapping[str, str] | None = None,
        *,
        secrets: Iterable[str] = (),
        fallback: TextIO | None = None,
    ) -> None:
        self._environ = environ if environ is not None else os.environ
        self._secrets = {value for value in secrets if len(value) >= MIN_GUARDED_SECRET_CHARS}
        self._fallback = fallback
        self._outputs: dict[str, str] = {}  # written by this step, so that none is repeated

    def add_secret(self, value: str) -> None:
        if len(value) >= MIN_GUARDED_SECRET_CHARS:
            self._secrets.add(value)

    def _refuse_secrets(self, kind: str, name: str, value: str) -> None:
        if any(secret in name or secret in value for secret in self._secrets):
            # The message names the output, never the value.
            raise SecretInOutputError(f"refusing to write {kind} {name!r}: its value contains a secret")

    def _path(self, variable: str) -> str | None:
        return self._environ.get(variable) or None

    def _append(self, variable: str, text: str) -> None:
        path = self._path(variable)
        if path is None:
            if self._fallback is not None:
                self._fallback.write(text)
                self._fallback.flush()
            return
        with open(path, "a", encoding="utf-8", newline="") as handle:
            handle.write(text)

    def _key_value(self, kind: str, name: str, value: str) -> str:
        if not _NAME.match(name):
            raise ValueError(f"invalid {kind} name {name!r}")
        self._refuse_secrets(kind, name, value)
        if "\n" not in value and "\r" not in value:
            return f"{name}={value}\n"
        delimiter = f"ghadelimiter_{token_hex(16)}"
        while delimiter in value:  # practically never; a collision must still not corrupt the file
            delimiter = f"ghadelimiter_{token_hex(16)}"
        return f"{name}<<{delimiter}\n{value}\n{delimiter}\n"

    def set_output(self, name: str, value: str) -> None:
        """Write ``name=value`` to ``$GITHUB_OUTPUT``, once: the same value again is not repeated."""
        if self._outputs.get(name) == value:
            return
        self._append("GITHUB_OUTPUT", self._key_value("output", name, value))
        self._outputs[name] = value

    def save_state(self, name: str, value: str) -> None:
        self._append("GITHUB_STATE", self._key_value("state", name, value))

    def read_state(self, name: str) -> str | None:
        return self._environ.get(f"STATE_{name}")

    def summary_budget(self) -> int:
        """Bytes that can still be appended to this step's summary."""
        path = self._path("GITHUB_STEP_SUMMARY")
        used = os.path.getsize(path) if path is not None and os.path.exists(path) else 0
        return max(SUMMARY_LIMIT_BYTES - used, 0)

    def append_summary(self, markdown: str) -> SummaryAppend:
        """Append to the step summary; cut (with a note) whatever would pass the 1 MiB limit."""
        data = markdown.encode("utf-8")
        budget = self.summary_budget()
        if len(data) <= budget:
            self._append("GITHUB_STEP_SUMMARY", markdown)
            return SummaryAppend(written_bytes=len(data), omitted_bytes=0)
        note = (
            f"\n\n> [!WARNING]\n> Summary truncated: {len(data) - budget:,} bytes or more were left out "
            "(GitHub accepts at most 1 MiB per step).\n"
        ).encode()
        kept = _utf8_prefix(data, budget - len(note)) if budget > len(note) else b""
        if kept:
            newline = kept.rfind(b"\n")
            kept = kept[: newline + 1] if newline > 0 else kept
        chunk = kept + note if len(kept) + len(note) <= budget else b""
        if chunk:
            self._append("GITHUB_STEP_SUMMARY", chunk.decode("utf-8"))
        return SummaryAppend(written_bytes=len(chunk), omitted_bytes=len(data) - len(kept))


def set_output(name: str, value: str, *, secrets: Iterable[str] = ()) -> None:
    FileCommands(secrets=secrets).set_output(name, value)


def save_state(name: str, value: str, *, secrets: Iterable[str] = ()) -> None:
    FileCommands(secrets=secrets).save_state(name, value)


def read_state(name: str) -> str | None:
    return FileCommands().read_state(name)


def append_summary(markdown: str) -> SummaryAppend:
    return FileCommands().append_summary(markdown)
