"""How the operator commands print: aligned tables, ``--json``, colour, times.

* One timestamp format for humans everywhere: ``2026-12-01 21:01:18 UTC`` (the database's
  ``ops.utc_text``); ``--json`` uses ISO 8601 with an offset (``2026-12-01T21:01:18.070244+00:00``).
* Relative times ("3 min ago") are computed against the database's clock (each answer carries
  ``now``), so a client with a wrong clock still tells the truth.
* Colour only when the stream is a terminal, never when ``NO_COLOR`` is set (https://no-color.org)
  or ``TERM=dumb``.
* Text from the database (event messages, reasons, worker names) is shown with control characters
  escaped, so a log line can neither move the cursor nor start a workflow command (``::...``) at
  the beginning of a line.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, TextIO

from odooops_action.domain import utc_text

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")

_COLOURS = {
    "success": "32",
    "failed": "31",
    "cancelled": "33",
    "running": "36",
    "claimed": "36",
    "queued": "34",
    "error": "31",
    "warn": "33",
    "debug": "2",
    "ok": "32",
    "problem": "31",
    "warning": "33",
    "idle": "32",
    "busy": "36",
    "stopping": "33",
    "stopped": "2",
    "bold": "1",
    "dim": "2",
}


def colour_enabled(stream: TextIO, environ: Mapping[str, str] | None = None) -> bool:
    env = os.environ if environ is None else environ
    if "NO_COLOR" in env or env.get("TERM") == "dumb":
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


class Printer:
    """Writes the human output of one command to ``stream`` (stdout by default)."""

    def __init__(self, stream: TextIO | None = None, *, colour: bool | None = None) -> None:
        self.stream = stream if stream is not None else sys.stdout
        self.colour = colour_enabled(self.stream) if colour is None else colour

    def paint(self, text: str, style: str) -> str:
        code = _COLOURS.get(style)
        if not self.colour or code is None or not text:
            return text
        return f"\x1b[{code}m{text}\x1b[0m"

    def line(self, text: str = "") -> None:
        self.stream.write(text + "\n")

    def table(
        self, headers: Sequence[str], rows: Sequence[Sequence[str]], styles: Sequence[str | None] = ()
    ) -> None:
        """Columns aligned on the widest cell; ``styles[i]`` names the column whose cell value is
        its own colour (a status), or a fixed style."""
        widths = [len(header) for header in headers]
        for row in rows:
            for index, cell in enumerate(row):
                widths[index] = max(widths[index], len(cell))
        self.line(self.paint(_join([h.ljust(w) for h, w in zip(headers, widths, strict=True)]), "bold"))
        for row in rows:
            cells = []
            for index, cell in enumerate(row):
                padded = cell.ljust(widths[index])
                style = styles[index] if index < len(styles) else None
                cells.append(self.paint(padded, cell if style == "value" else style or ""))
            self.line(_join(cells))

    def facts(self, pairs: Sequence[tuple[str, str]]) -> None:
        """``name: value`` lines with the values aligned."""
        width = max((len(name) for name, _ in pairs), default=0)
        for name, value in pairs:
            self.line(f"{(name + ':').ljust(width + 1)} {value}")


def _join(cells: Sequence[str]) -> str:
    return "  ".join(cells).rstrip()


def print_json(payload: Any, stream: TextIO | None = None) -> None:
    out = stream if stream is not None else sys.stdout
    out.write(json.dumps(payload, indent=2, sort_keys=True, default=_json_default) + "\n")


def _json_default(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def timestamp(at: datetime | None) -> str:
    """``2026-12-01 21:01:18 UTC``, or ``-``."""
    return "-" if at is None else utc_text(at)


def ago(at: datetime | None, now: datetime) -> str:
    """``just now``, ``42 s ago``, ``3 min ago``, ``2 h ago``, ``5 d ago`` (``in ...`` ahead of now)."""
    if at is None:
        return "-"
    seconds = (now - at).total_seconds()
    text = duration(abs(seconds))
    if abs(seconds) < 1:
        return "just now"
    return f"{text} ago" if seconds >= 0 else f"in {text}"


def duration(seconds: float) -> str:
    """``42 s``, ``3 min``, ``2 h 5 min``, ``5 d``."""
    whole = int(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min"
    if whole < 86400:
        hours, minutes = divmod(whole // 60, 60)
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    return f"{whole // 86400} d"


def when(at: datetime | None, now: datetime) -> str:
    """``2026-12-01 21:01:18 UTC (3 min ago)``."""
    return "-" if at is None else f"{timestamp(at)} ({ago(at, now)})"


def between(start: datetime | None, end: datetime | None) -> str:
    if start is None or end is None:
        return "-"
    return duration(max((end - start).total_seconds(), 0.0))


def safe(text: str | None, limit: int = 0) -> str:
    """Untrusted text made inert for a terminal or a CI log: control characters escaped; shortened
    to ``limit`` characters when given."""
    if not text:
        return ""
    cleaned = _CONTROL.sub(lambda match: f"\\x{ord(match.group()):02x}", text)
    if limit and len(cleaned) > limit:
        return cleaned[: limit - 1] + "…"
    return cleaned


def lines_of(text: str | None) -> list[str]:
    """Untrusted multi-line text as inert lines: the first as it is, the others behind ``  | `` so
    that none can start with ``::`` even after the runner trims it (control characters escaped)."""
    parts = (text or "").replace("\r\n", "\n").split("\n")
    return [safe(parts[0])] + [f"  | {safe(part)}" for part in parts[1:]]


def since_cutoff(now: datetime, seconds: float) -> datetime:
    return now - timedelta(seconds=seconds)
