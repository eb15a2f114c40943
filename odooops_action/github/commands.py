"""Workflow commands on stdout: groups, masks, annotations and text that came from elsewhere.

How the runner reads our output (actions/runner, ``ProcessInvoker`` and ``ActionCommandManager``):

* stdout is cut into lines by .NET ``StreamReader.ReadLine``: ``\\n``, ``\\r\\n`` AND a lone ``\\r``
  each end a line.
* Each line is tried as a v2 command: leading whitespace is trimmed (.NET ``TrimStart``), the rest
  must start with ``::`` and hold a second ``::``; the name (up to the first space) must be a
  registered command, compared case-insensitively (``error``, ``warning``, ``notice``, ``debug``,
  ``group``, ``endgroup``, ``add-mask``, ``echo``, ``stop-commands``, ``add-matcher``, ...).
* Then as a v1 command: ``##[name props]data`` where ``##[`` may appear ANYWHERE in the line.
* ``::stop-commands::TOKEN`` pauses processing until a line that parses (v1 or v2) as a command
  named TOKEN.

Untrusted text (remote event messages, build logs) therefore gets three independent defences:

1. every line is neutralised: a ``\\`` goes before each ``[`` that follows ``##``, and before a
   line whose first visible characters are ``::``. "Visible" skips zero-width, combining and
   control characters, since the parser's culture-aware ``StartsWith``/``IndexOf`` may ignore them;
2. the block is wrapped in ``::stop-commands::<fresh random token>`` ... ``::<token>::``;
3. text is split with ``str.splitlines`` (a superset of the runner's line ends, so a lone ``\\r``,
   ``\\x85`` or U+2028 cannot smuggle a second line), and control characters are removed.

Choice on ANSI colour: all escape sequences (CSI, OSC and lone ESC) are stripped together with
every other C0/C1 control character except tab, as are bidirectional overrides and zero-width
characters.
Colours would be nice, but an SGR "conceal" or same-colour sequence can hide text from the
reader and OSC sequences can forge hyperlinks; a plain log is the safer trade.

Problem matchers registered by earlier steps still see every line; they are a workflow's own
choice and cannot be turned off from here.
"""

from __future__ import annotations

import re
import secrets
import sys
import threading
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal, TextIO

from actions_toolkit.command import escape_data, escape_property

AnnotationLevel = Literal["notice", "warning", "error"]
ANNOTATION_LEVELS: tuple[AnnotationLevel, ...] = ("notice", "warning", "error")
# GitHub keeps at most this many annotations of each level per step (the first ones).
ANNOTATIONS_PER_LEVEL = 10
# When a job is cancelled or times out, the runner adds an error annotation of its own to the step
# ("The operation was canceled."): one error slot is always left free for it.
RESERVED_FOR_RUNNER: dict[str, int] = {"error": 1}
# The runner cuts an annotation's message at 4,096 characters (.NET string length: UTF-16 code
# units; ExecutionContext._maxIssueMessageLength). Longer messages are cut here, with a note, after
# the full text has been written to the log.
MAX_ANNOTATION_MESSAGE_CHARS = 4096
_CUT_NOTE = "… (cut at 4,096 characters: the full text is in the log above)"

_ANSI_ESCAPE = re.compile(
    r"""
    \x1b\[[0-?]*[ -/]*[@-~]            # CSI ... final byte
    | \x1b\][^\x07\x1b]*(?:\x07|\x1b\\)? # OSC ... BEL or ST (or unterminated)
    | \x1b[PX^_][^\x1b]*(?:\x1b\\)?    # DCS / SOS / PM / APC strings
    | \x1b[@-_]?                         # any other (or lone) ESC
    """,
    re.VERBOSE,
)
# Bidirectional overrides and invisible characters that can hide or reorder text on screen.
_HIDING_CHARACTERS = frozenset(
    "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u200b\u2060\ufeff\u00ad"
)
_IGNORABLE_CATEGORIES = frozenset({"Cc", "Cf", "Mn", "Me"})


# Text made only of these has nothing to strip or escape (the usual build log line): fast paths.
_PRINTABLE_ASCII = re.compile(r"[\x20-\x7e]*")
_PLAIN = re.compile(r"[\t\x20-\x7e]*")
_PLAIN_WITH_NEWLINES = re.compile(r"[\t\n\x20-\x7e]*")


def strip_controls(text: str, *, keep_newlines: bool = False) -> str:
    """Remove escape sequences and control characters (tab kept; ``\\n`` kept on request)."""
    if (_PLAIN_WITH_NEWLINES if keep_newlines else _PLAIN).fullmatch(text):
        return text
    text = _ANSI_ESCAPE.sub("", text)
    return "".join(
        ch
        for ch in text
        if ch == "\t"
        or (keep_newlines and ch == "\n")
        or (unicodedata.category(ch) != "Cc" and ch not in _HIDING_CHARACTERS)
    )


def split_lines(text: str) -> list[str]:
    """Split on every line end any reader might honour (``\\r``, ``\\n``, ``\\x85``, U+2028, ...)."""
    return text.splitlines() or [""]


def _ignorable(ch: str) -> bool:
    """Characters a culture-aware string comparison may skip (zero-width, combining, control)."""
    return unicodedata.category(ch) in _IGNORABLE_CATEGORIES


def _starts_like_v2(line: str) -> bool:
    """Whether the line starts with ``::`` once leading whitespace and invisible characters go.

    Python's ``isspace`` covers everything .NET ``TrimStart`` removes; ignorable characters are
    skipped too because .NET's default ``StartsWith`` compares culture-aware and may ignore them.
    """
    visible: list[str] = []
    for ch in line:
        if _ignorable(ch) or (not visible and ch.isspace()):
            continue
        visible.append(ch)
        if len(visible) == 2:
            break
    return visible == [":", ":"]


def _break_v1_prefixes(line: str) -> str:
    """Put ``\\`` before every ``[`` that follows ``##`` (ignorable characters in between included)."""
    if _PRINTABLE_ASCII.fullmatch(line):  # no ignorable character can sit between the ``#``s
        return line.replace("##[", "##\\[")
    return _break_v1_prefixes_by_character(line)


def _break_v1_prefixes_by_character(line: str) -> str:
    out: list[str] = []
    hashes = 0
    for ch in line:
        if ch == "[" and hashes >= 2:
            out.append("\\")
        out.append(ch)
        if not _ignorable(ch):
            hashes = hashes + 1 if ch == "#" else 0
    return "".join(out)


def neutralise_line(line: str) -> str:
    """Make one line of foreign text unable to parse as a v1 or v2 workflow command."""
    line = _break_v1_prefixes(strip_controls(line))
    return "\\" + line if _starts_like_v2(line) else line


def neutralise(text: str) -> list[str]:
    """Foreign text as safe lines (see the module docstring)."""
    return [neutralise_line(line) for line in split_lines(text)]


def _clean_data(text: str) -> str:
    return str(escape_data(strip_controls(text, keep_newlines=True)))


def _clean_property(value: str | int) -> str:
    text = value if isinstance(value, str) else str(value)
    return str(escape_property(strip_controls(text, keep_newlines=True)))


def _utf16_length(text: str) -> int:
    """The length .NET sees: characters outside the BMP (emoji) count twice."""
    return len(text) + sum(1 for ch in text if ord(ch) > 0xFFFF)


def _cut_utf16(text: str, units: int) -> str:
    """The longest prefix of ``text`` of at most ``units`` UTF-16 code units."""
    total = 0
    for index, ch in enumerate(text):
        total += 2 if ord(ch) > 0xFFFF else 1
        if total > units:
            return text[:index]
    return text


class WorkflowCommands:
    """Writes workflow commands and log lines to one stream, whole lines, flushed after every call.

    ``stream`` defaults to whatever ``sys.stdout`` is at write time (so test capture works). A
    block (such as an untrusted text with its stop/resume pair) is written under one lock, so
    threads cannot interleave lines into it.
    """

    def __init__(self, stream: TextIO | None = None, *, per_level_limit: int = ANNOTATIONS_PER_LEVEL) -> None:
        self._stream = stream
        self._lock = threading.RLock()
        self._group_open = False
        self.per_level_limit = per_level_limit
        self.emitted: dict[str, int] = dict.fromkeys(ANNOTATION_LEVELS, 0)
        self.suppressed: dict[str, int] = dict.fromkeys(ANNOTATION_LEVELS, 0)

    @property
    def stream(self) -> TextIO:
        return self._stream if self._stream is not None else sys.stdout

    def _write(self, lines: list[str]) -> None:
        with self._lock:
            stream = self.stream
            stream.write("".join(line + "\n" for line in lines))
            stream.flush()

    def _command(self, name: str, data: str, properties: dict[str, str | int] | None = None) -> str:
        props = ""
        if properties:
            props = " " + ",".join(f"{key}={_clean_property(value)}" for key, value in properties.items())
        return f"::{name}{props}::{_clean_data(data)}"

    # --- log lines -------------------------------------------------------------------------------

    def info(self, text: str) -> None:
        """Plain log lines; neutralised because our messages often quote remote values."""
        self._write(neutralise(text))

    def untrusted(self, text: str) -> None:
        """Print text from a remote run so that it can never act as a workflow command."""
        token = secrets.token_hex(16)
        self._write([f"::stop-commands::{token}", *neutralise(text), f"::{token}::"])

    def debug(self, message: str) -> None:
        self._write([self._command("debug", message)])

    # --- groups ----------------------------------------------------------------------------------

    def start_group(self, title: str) -> None:
        with self._lock:
            if self._group_open:  # the runner does not nest groups
                self.end_group()
            self._write([self._command("group", title)])
            self._group_open = True

    def end_group(self) -> None:
        with self._lock:
            if self._group_open:
                self._write(["::endgroup::"])
                self._group_open = False

    @contextmanager
    def group(self, title: str) -> Iterator[None]:
        self.start_group(title)
        try:
            yield
        finally:
            self.end_group()

    # --- secrets ---------------------------------------------------------------------------------

    def mask(self, secret: str) -> None:
        """Register a secret with the runner's masker; each line of a multi-line one as well."""
        if not secret or secret.isspace():
            return
        values = [secret]
        if "\n" in secret or "\r" in secret:
            values += [line for line in secret.splitlines() if line and not line.isspace()]
        # Masks must carry the exact value: escape it, but do not strip any character.
        self._write([f"::add-mask::{escape_data(value)}" for value in values])

    # --- annotations -----------------------------------------------------------------------------

    def limit(self, level: AnnotationLevel) -> int:
        """How many annotations of ``level`` this step may emit (the runner's own error excepted)."""
        return self.per_level_limit - RESERVED_FOR_RUNNER.get(level, 0)

    def annotate(
        self,
        level: AnnotationLevel,
        message: str,
        *,
        title: str | None = None,
        file: str | None = None,
        line: int | None = None,
        end_line: int | None = None,
        col: int | None = None,
    ) -> bool:
        """Emit an annotation unless the per-step limit for ``level`` is reached; say which."""
        if level not in ANNOTATION_LEVELS:
            raise ValueError(f"unknown annotation level {level!r}")
        with self._lock:
            if self.emitted[level] >= self.limit(level):
                self.suppressed[level] += 1
                prefix = f"{level.capitalize()} (not annotated: {self.limit(level)} per step shown)"
                self.info(f"{prefix}: {title}: {message}" if title else f"{prefix}: {message}")
                return False
            if _utf16_length(message) > MAX_ANNOTATION_MESSAGE_CHARS:
                self.info(f"{level.capitalize()} (full text of the annotation that follows): {message}")
                message = (
                    _cut_utf16(message, MAX_ANNOTATION_MESSAGE_CHARS - _utf16_length(_CUT_NOTE)) + _CUT_NOTE
                )
            properties: dict[str, str | int] = {}
            if title:
                properties["title"] = title
            if file:
                properties["file"] = file
            if line is not None:
                properties["line"] = line
            if end_line is not None:
                properties["endLine"] = end_line
            if col is not None:
                properties["col"] = col
            self._write([self._command(level, message, properties)])
            self.emitted[level] += 1
            return True

    def error(
        self,
        message: str,
        *,
        title: str | None = None,
        file: str | None = None,
        line: int | None = None,
        end_line: int | None = None,
    ) -> bool:
        return self.annotate("error", message, title=title, file=file, line=line, end_line=end_line)

    def warning(
        self,
        message: str,
        *,
        title: str | None = None,
        file: str | None = None,
        line: int | None = None,
        end_line: int | None = None,
    ) -> bool:
        return self.annotate("warning", message, title=title, file=file, line=line, end_line=end_line)

    def notice(
        self,
        message: str,
        *,
        title: str | None = None,
        file: str | None = None,
        line: int | None = None,
        end_line: int | None = None,
    ) -> bool:
        return self.annotate("notice", message, title=title, file=file, line=line, end_line=end_line)
